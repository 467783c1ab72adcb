//! A run's event trace: what happened, in simulated time, one line per event. Two runs of
//! one seed must produce the same lines; [`Trace::hash`] compares them.

use std::fmt;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    events: Vec<(u64, String)>,
}

impl Trace {
    pub fn push(&mut self, ms: u64, text: String) {
        self.events.push((ms, text));
    }

    /// Orders events by time; events of one instant keep the order they were recorded in.
    pub fn sort(&mut self) {
        self.events.sort_by_key(|(ms, _)| *ms);
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// SHA-256 of the printed trace, hex.
    pub fn hash(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.to_string().as_bytes());
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (ms, text) in &self.events {
            writeln!(f, "{:>12}  {text}", crate::world::fmt_ms(*ms))?;
        }
        Ok(())
    }
}

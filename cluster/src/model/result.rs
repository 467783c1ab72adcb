//! Probe results as produced by pollers and replicated in batches.

use serde::{Deserialize, Serialize};

use super::status::{Reason, Status};

/// Longest result message kept; longer messages are cut at a char boundary.
pub const RESULT_MESSAGE_BYTES_MAX: usize = 256;
/// Performance data items kept per result.
pub const PERFDATA_ITEMS_MAX: usize = 16;
/// Longest perfdata label or unit kept.
pub const PERF_LABEL_BYTES_MAX: usize = 64;

/// One Nagios performance data item: `label=value[unit];[warn];[crit];[min];[max]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Perf {
    pub label: String,
    pub value: f64,
    /// `s`, `ms`, `us`, `%`, `B`, `KB`, `MB`, `TB`, `c` or empty.
    pub unit: String,
    pub warn: Option<f64>,
    pub crit: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Perf {
    /// A plain measurement (bounded label and unit).
    pub fn new(label: &str, value: f64, unit: &str) -> Self {
        Self {
            label: truncate(label, PERF_LABEL_BYTES_MAX),
            value,
            unit: truncate(unit, PERF_LABEL_BYTES_MAX),
            warn: None,
            crit: None,
            min: None,
            max: None,
        }
    }
}

/// One probe outcome at one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub check: String,
    pub status: Status,
    pub reason: Reason,
    pub latency_ms: u64,
    pub message: String,
    /// Measurements (at most `PERFDATA_ITEMS_MAX`): phase timings, RTT, loss, days left,
    /// a plugin's own perfdata.
    pub perfdata: Vec<Perf>,
    /// The probing node's wall clock, for display only; decisions never compare clocks.
    pub observed_at_ms: u64,
    /// The leader tick the probing node had applied when the probe ended (0: unknown, taken
    /// as the tick it is applied at). Freshness counts from here, so a batch that reaches
    /// the log late (held by a leader cut off in a partition) is old, not fresh.
    #[serde(default)]
    pub observed_tick: u64,
}

impl ProbeResult {
    /// Builds a result with the message cut to `RESULT_MESSAGE_BYTES_MAX`.
    pub fn new(
        check: &str,
        status: Status,
        reason: Reason,
        latency_ms: u64,
        message: &str,
    ) -> Self {
        Self {
            check: check.to_string(),
            status,
            reason,
            latency_ms,
            message: truncate(&displayable(message), RESULT_MESSAGE_BYTES_MAX),
            perfdata: Vec::new(),
            observed_at_ms: 0,
            observed_tick: 0,
        }
    }

    /// Adds measurements, keeping at most `PERFDATA_ITEMS_MAX`.
    pub fn with_perfdata(mut self, perf: impl IntoIterator<Item = Perf>) -> Self {
        let room = PERFDATA_ITEMS_MAX.saturating_sub(self.perfdata.len());
        self.perfdata.extend(perf.into_iter().take(room));
        self
    }
}

/// `s` without control characters and invisible formatting characters (bidi overrides,
/// zero-width marks): messages carry text from targets, possibly hostile ones, to
/// dashboards, terminals and webhooks.
pub fn displayable(s: &str) -> String {
    s.chars()
        .map(|c| if c == '\n' || c == '\t' { ' ' } else { c })
        .filter(|c| !c.is_control() && !is_invisible_format(*c))
        .collect()
}

fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}')
}

/// Cuts `s` to at most `max` bytes on a char boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Results flushed by one node in one raft entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultBatch {
    pub node_id: u64,
    pub site: String,
    pub results: Vec<ProbeResult>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Reason, Status};

    #[test]
    fn messages_from_targets_are_displayable() {
        let hostile = "220 ok\u{202E}gnp.exe\u{200B}\x1b[31m\r\nnext";
        let r = ProbeResult::new("c", Status::Ok, Reason::None, 1, hostile);
        assert_eq!(r.message, "220 okgnp.exe[31m next");
        let long = "あ".repeat(200);
        let r = ProbeResult::new("c", Status::Ok, Reason::None, 1, &long);
        assert!(
            r.message.len() <= RESULT_MESSAGE_BYTES_MAX && r.message.chars().all(|c| c == 'あ')
        );
    }
}

//! Polling with explicit deadlines: the only way the suite waits.

use std::thread::sleep;
use std::time::Duration;

use super::clock::now;

/// Pause between two polls: short against a 1 s check interval, long enough that a
/// poll (one CLI process or one HTTP request) does not load the two cores.
pub const POLL_PAUSE: Duration = Duration::from_millis(250);

/// Polls `probe` until it returns `Ok`, and returns that value.
///
/// `probe` returns `Err(observation)` while the condition does not hold yet; the last
/// observation is in the panic message when `timeout` passes.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let start = now();
    let mut polls = 0_u32;
    loop {
        polls += 1;
        match probe() {
            Ok(value) => return value,
            Err(observation) => {
                let waited = now().saturating_duration_since(start);
                if waited >= timeout {
                    panic!(
                        "timed out after {:.1}s ({polls} polls) waiting for {what}\n  last observation: {observation}",
                        waited.as_secs_f64()
                    );
                }
            }
        }
        sleep(POLL_PAUSE);
    }
}

/// Checks that `probe` keeps returning `Ok` for the whole `window`; panics at the first
/// `Err(violation)`. Used for "nothing more happens" assertions after an expected event.
pub fn hold_for(what: &str, window: Duration, mut probe: impl FnMut() -> Result<(), String>) {
    let start = now();
    loop {
        if let Err(violation) = probe() {
            panic!(
                "expected to hold for {:.1}s: {what}\n  violated after {:.1}s: {violation}",
                window.as_secs_f64(),
                now().saturating_duration_since(start).as_secs_f64()
            );
        }
        if now().saturating_duration_since(start) >= window {
            return;
        }
        sleep(POLL_PAUSE);
    }
}

/// A point in time a sequence of waits must all finish by, e.g. "the incident and its
/// webhook, both within interval x rounds + slack of the outage".
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: std::time::Instant,
}

impl Deadline {
    pub fn after(duration: Duration) -> Self {
        Self {
            at: now() + duration,
        }
    }

    /// Time left; zero once passed (a wait then still polls once).
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(now())
    }
}

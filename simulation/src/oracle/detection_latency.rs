//! Invariant 3: an outage's incident opens within its bound.
//!
//! Undisturbed, a site reports down after `confirm.rounds` probes, the first of which may
//! come up to one interval after the outage starts, plus the last probe's timeout and a few
//! seconds of batching and commit. A node crash, leader kill or partition inside that window
//! adds an election and a reconnect.

use crate::judge::{opened_during, required_outages, Alert, Availability};
use crate::schedule::{CONFIRM_ROUNDS, INTERVAL_MS, TIMEOUT_MS};
use crate::world::{check_name, fmt_ms, RunRecord};

/// The bound without cluster faults.
pub const BOUND_MS: u64 = CONFIRM_ROUNDS * INTERVAL_MS + TIMEOUT_MS + 5_000;
/// Added when a node was down or cut off during the window.
pub const DISTURBED_EXTRA_MS: u64 = 20_000;

pub fn check(run: &RunRecord, avail: &Availability, alerts: &[Alert]) -> Vec<String> {
    let mut out = Vec::new();
    for outage in required_outages(&run.schedule, avail) {
        let Some(opened) = opened_during(alerts, outage).iter().map(|a| a.opened).min() else {
            continue;
        };
        let from = outage.window.from;
        let bound = if avail.disturbed(from, from + BOUND_MS) {
            BOUND_MS + DISTURBED_EXTRA_MS
        } else {
            BOUND_MS
        };
        let latency = opened - from;
        if latency > bound {
            out.push(format!(
                "{} went down at {} and its incident opened {} ms later (bound {} ms)",
                check_name(outage.target),
                fmt_ms(from),
                latency,
                bound
            ));
        }
    }
    out
}

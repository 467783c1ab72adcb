//! Invariant 1: no incident for a target that a quorum of sites could reach.
//!
//! An incident is false when its target was up throughout the lookback before it opened
//! and fewer than a quorum of sites had a path failure to it then ([`crate::judge::is_false`]).

use crate::judge::{is_false, Alert};
use crate::world::{check_name, fmt_ms, RunRecord};

pub fn check(run: &RunRecord) -> Vec<String> {
    run.incidents
        .iter()
        .filter(|i| {
            is_false(
                &run.schedule,
                &Alert {
                    target: i.target,
                    opened: i.opened_ms,
                    closed: i.closed_ms,
                },
            )
        })
        .map(|i| {
            format!(
                "incident {} for {} opened at {} (sites {}) while the target was up and reachable by a quorum",
                i.id,
                check_name(i.target),
                fmt_ms(i.opened_ms),
                i.sites.join(",")
            )
        })
        .collect()
}

//! The oracle: consentry's promises as invariants over one run, one file each.
//!
//! 1. [`no_false_incident`]: no incident for a target a quorum of sites could reach.
//! 2. [`no_missed_outage`]: every outage longer than the confirmation window, while a
//!    quorum could commit, opens exactly one incident.
//! 3. [`detection_latency`]: each of those opened within its bound.
//! 4. [`effects_once`]: no notification sent twice without its dedup key, and never two
//!    intents for one incident transition.
//! 5. [`replicas_agree`]: all replicas had the same state at the same applied index.
//! 6. [`convergence`]: after the faults stop, every replica is back, agrees, and its
//!    incidents match the truth.

pub mod convergence;
pub mod detection_latency;
pub mod effects_once;
pub mod no_false_incident;
pub mod no_missed_outage;
pub mod replicas_agree;

use std::fmt;

use crate::judge::{self, Alert, Availability, Score};
use crate::world::RunRecord;

/// One broken promise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

/// The oracle's finding on one run.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub violations: Vec<Violation>,
    pub score: Score,
    /// Notifications delivered again by a later leader with the same dedup key.
    pub resends: u64,
}

/// consentry's incidents as alerts, for scoring.
pub fn alerts(run: &RunRecord) -> Vec<Alert> {
    run.incidents
        .iter()
        .map(|i| Alert {
            target: i.target,
            opened: i.opened_ms,
            closed: i.closed_ms,
        })
        .collect()
}

/// Judges one run.
pub fn judge(run: &RunRecord) -> Verdict {
    let avail = Availability {
        schedule: &run.schedule,
        down: &run.down,
    };
    let alerts = alerts(run);
    let mut violations = Vec::new();
    let mut add = |invariant: &'static str, details: Vec<String>| {
        violations.extend(
            details
                .into_iter()
                .map(|detail| Violation { invariant, detail }),
        );
    };
    add("1 no false incident", no_false_incident::check(run));
    add(
        "2 no missed outage",
        no_missed_outage::check(run, &avail, &alerts),
    );
    add(
        "3 detection latency",
        detection_latency::check(run, &avail, &alerts),
    );
    let (effects, resends, duplicates) = effects_once::check(run);
    add("4 effects once", effects);
    add("5 replicas agree", replicas_agree::check(run));
    add("6 convergence", convergence::check(run));
    let mut score = judge::score(&run.schedule, &avail, &alerts);
    score.duplicates = duplicates;
    Verdict {
        violations,
        score,
        resends,
    }
}

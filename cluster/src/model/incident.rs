//! Incidents and the notification intents they create.

use serde::{Deserialize, Serialize};

use super::result::ProbeResult;
use super::status::Status;

/// One agreeing site's evidence when an incident opened or closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub site: String,
    pub consecutive: u32,
    pub last: ProbeResult,
}

/// Whether an incident is firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Firing,
    Resolved,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Firing => "firing",
            Transition::Resolved => "resolved",
        }
    }
}

/// An incident: opened when a quorum of fresh sites agreed the check is down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// The log index of the entry that opened it: unique and identical on every replica.
    pub id: u64,
    pub check: String,
    pub severity: Status,
    pub opened_index: u64,
    pub opened_tick: u64,
    /// Observed wall time of the evidence that opened it (display only).
    pub opened_at_ms: u64,
    pub opened_by: Vec<Evidence>,
    pub closed_index: Option<u64>,
    pub closed_tick: Option<u64>,
    pub closed_at_ms: Option<u64>,
    pub closed_by: Vec<Evidence>,
    /// `Some((n, m))` when opened on a degraded quorum: n of m probing sites were fresh.
    pub unconfirmed: Option<(u32, u32)>,
    /// Why it closed when not by recovery (e.g. the check was removed).
    pub close_note: Option<String>,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.closed_index.is_none()
    }
}

/// A notification the leader must deliver exactly once per dedup key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyIntent {
    /// Stable id: identical on every replica (log index * 256 + ordinal within the entry).
    pub id: u64,
    pub incident_id: u64,
    pub check: String,
    pub notifier: String,
    pub transition: Transition,
    /// `incident/transition/channel`: receivers that dedupe use it.
    pub dedup_key: String,
    pub created_index: u64,
    pub attempts: u32,
    pub outcome: Option<Delivery>,
}

/// The committed result of delivering an intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    Delivered {
        leader_id: u64,
        term: u64,
    },
    Failed {
        leader_id: u64,
        term: u64,
        error: String,
    },
}

/// What the leader commits after trying an intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyOutcome {
    pub intent_id: u64,
    pub attempts: u32,
    pub delivery: Delivery,
}

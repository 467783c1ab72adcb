//! What a raft log entry carries, and what applying it answers.

use serde::{Deserialize, Serialize};

use crate::model::{Catalog, NotifyOutcome, ResultBatch};

/// A replicated command. Every variant is applied by `ClusterState::apply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Replace checks and notifiers (`consentry apply`).
    ApplyCatalog(Catalog),
    /// A batch of probe results from one node.
    Results(ResultBatch),
    /// The leader's clock tick: freshness is measured in these, never by wall clocks.
    Tick { leader_id: u64 },
    /// The leader's record of a notification attempt's outcome.
    NotifyOutcome(NotifyOutcome),
}

/// The state machine's answer to a command.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CommandResponse {
    #[default]
    Ok,
    /// The command was valid raft data but the state machine refused it (with why).
    Rejected(String),
}

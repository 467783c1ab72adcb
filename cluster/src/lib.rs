//! consentry's cluster: the domain model, the replicated state machine, and raft over QUIC.
//!
//! Pollers submit [`command::Command::Results`] batches; raft (openraft) replicates them over
//! the QUIC transport; every replica applies them to [`state::ClusterState`], a pure state
//! machine that runs the decision rule, opens and closes incidents, and records the
//! notification intents that only the leader executes.

pub mod agent;
pub mod backup;
pub mod command;
pub mod membership;
pub mod model;
pub mod recovery;
pub mod types;

pub use consentry_storage::codec;
pub mod rule;
pub mod runtime;
pub mod state;
pub mod tls;
pub mod transport;

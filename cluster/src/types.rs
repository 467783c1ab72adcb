//! The openraft type configuration shared by every node.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandResponse};

/// A raft node id. Node certificates name it (`node-<id>.consentry`).
pub type NodeId = u64;

/// What the cluster knows about a member: where its QUIC endpoint listens, which site it
/// stands in, and whether it probes (a witness votes but never probes).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClusterNode {
    /// `host:port` of the node's QUIC (UDP) raft endpoint.
    pub addr: String,
    /// Site name, e.g. `site-a`.
    pub site: String,
    /// False for a witness.
    pub probe: bool,
    /// Base URL of the node's HTTP API, for operators (`cluster status`). May be empty.
    pub api: String,
}

impl fmt::Display for ClusterNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.site, self.addr)
    }
}

openraft::declare_raft_types!(
    /// consentry's raft types.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = ClusterNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = crate::runtime::ConsentryRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Membership = openraft::StoredMembership<NodeId, ClusterNode>;

//! What a node sends on a raft stream.

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::{Deserialize, Serialize};

use crate::command::Command;
use crate::membership::AdminRequest;
use crate::types::{NodeId, TypeConfig};

/// One RPC: who sends it and what it asks. The server checks `from` (and the raft vote a
/// body carries) against the node id in the sender's certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RpcRequest {
    pub from: NodeId,
    pub body: RpcBody,
}

/// The RPCs a node serves: raft's three, and two that operators' requests travel by.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RpcBody {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A write a follower forwards to the leader.
    ClientWrite(Command),
    /// A membership operation for the leader, or a leadership hand-over for the receiver.
    Admin(AdminRequest),
    /// A follower's consistent read: the leader confirms it leads and answers its read
    /// index. Kept last: bincode numbers variants by position.
    ReadIndex,
}

impl RpcBody {
    /// The RPC's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::AppendEntries(_) => "AppendEntries",
            Self::Vote(_) => "Vote",
            Self::InstallSnapshot(_) => "InstallSnapshot",
            Self::ClientWrite(_) => "ClientWrite",
            Self::Admin(_) => "Admin",
            Self::ReadIndex => "ReadIndex",
        }
    }

    /// The node the body's raft vote names as its sender (the leader for AppendEntries and
    /// InstallSnapshot, the candidate for Vote); `None` for bodies without a vote.
    pub fn vote_sender(&self) -> Option<NodeId> {
        let vote = match self {
            Self::AppendEntries(rpc) => &rpc.vote,
            Self::Vote(rpc) => &rpc.vote,
            Self::InstallSnapshot(rpc) => &rpc.vote,
            Self::ClientWrite(_) | Self::Admin(_) | Self::ReadIndex => return None,
        };
        vote.leader_id().voted_for()
    }
}

//! What a node answers on a raft stream.

use openraft::error::{ClientWriteError, InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesResponse, ClientWriteResponse, InstallSnapshotResponse, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::membership::AdminResult;
use crate::types::{ClusterNode, NodeId, TypeConfig};

/// The answer to one [`crate::transport::RpcRequest`]: the local raft's result for the
/// matching body, or a protocol-level refusal.
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    ClientWrite(
        Result<
            ClientWriteResponse<TypeConfig>,
            RaftError<NodeId, ClientWriteError<NodeId, ClusterNode>>,
        >,
    ),
    /// The server would not run the request (undecodable, too large, sender mismatch,
    /// handler timeout), with why.
    Refused(String),
    /// The outcome of an [`crate::transport::RpcBody::Admin`] request.
    Admin(AdminResult),
    /// The answer to [`crate::transport::RpcBody::ReadIndex`]. Kept last: bincode numbers
    /// variants by position.
    ReadIndex(Result<crate::membership::LeaderRead, crate::membership::AdminError>),
}

impl RpcResponse {
    /// The response's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::AppendEntries(_) => "AppendEntries",
            Self::Vote(_) => "Vote",
            Self::InstallSnapshot(_) => "InstallSnapshot",
            Self::ClientWrite(_) => "ClientWrite",
            Self::Refused(_) => "Refused",
            Self::Admin(_) => "Admin",
            Self::ReadIndex(_) => "ReadIndex",
        }
    }
}

//! What the server calls for each RPC: the local raft, or a fake in tests.

use std::future::Future;

use openraft::error::{ClientWriteError, InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, ClientWriteResponse, InstallSnapshotRequest,
    InstallSnapshotResponse, VoteRequest, VoteResponse,
};

use crate::agent::{AgentRequest, AgentResponse};
use crate::command::Command;
use crate::membership::{self, AdminRequest, AdminResult};
use crate::types::{ClusterNode, NodeId, Raft, TypeConfig};

/// Serves the raft RPCs, forwarded writes and operators' requests. Implemented by [`Raft`], which delegates to openraft.
///
/// The server has already checked that the request comes from the node named in the
/// connection's certificate; a handler answers with the local raft's result, including
/// raft-level errors (`ForwardToLeader`, `Fatal`), which travel back to the caller.
pub trait RpcHandler: Send + Sync + 'static {
    /// Replicates entries from the leader (openraft `Raft::append_entries`).
    fn append_entries(
        &self,
        rpc: AppendEntriesRequest<TypeConfig>,
    ) -> impl Future<Output = Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>> + Send;

    /// Answers a candidate's vote request (openraft `Raft::vote`).
    fn vote(
        &self,
        rpc: VoteRequest<NodeId>,
    ) -> impl Future<Output = Result<VoteResponse<NodeId>, RaftError<NodeId>>> + Send;

    /// Receives one snapshot chunk from the leader (openraft `Raft::install_snapshot`).
    fn install_snapshot(
        &self,
        rpc: InstallSnapshotRequest<TypeConfig>,
    ) -> impl Future<
        Output = Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    > + Send;

    /// Proposes a command a follower forwarded (openraft `Raft::client_write`); answers
    /// `ForwardToLeader` when this node is not the leader either.
    fn client_write(
        &self,
        command: Command,
    ) -> impl Future<
        Output = Result<
            ClientWriteResponse<TypeConfig>,
            RaftError<NodeId, ClientWriteError<NodeId, ClusterNode>>,
        >,
    > + Send;

    /// Runs an operator's membership or leadership request (see [`crate::membership`]).
    fn admin(&self, request: AdminRequest) -> impl Future<Output = AdminResult> + Send;

    /// Confirms this node leads and answers the read index of a follower's consistent read
    /// (see [`membership::read_index`]).
    /// Refused by default (test handlers).
    fn read_index(
        &self,
    ) -> impl Future<Output = Result<membership::LeaderRead, membership::AdminError>> + Send {
        async {
            Err(membership::AdminError::Refused(
                "this node does not serve consistent reads".into(),
            ))
        }
    }

    /// Serves one request of host agent `agent` (the name in its certificate). Refused by
    /// default: only a node's own handler knows the applied state and can commit.
    fn agent(
        &self,
        agent: &str,
        request: AgentRequest,
    ) -> impl Future<Output = AgentResponse> + Send {
        let _ = (agent, request);
        async { AgentResponse::Refused("this node does not serve agents".into()) }
    }
}

impl RpcHandler for Raft {
    async fn append_entries(
        &self,
        rpc: AppendEntriesRequest<TypeConfig>,
    ) -> Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        Raft::append_entries(self, rpc).await
    }

    async fn vote(
        &self,
        rpc: VoteRequest<NodeId>,
    ) -> Result<VoteResponse<NodeId>, RaftError<NodeId>> {
        Raft::vote(self, rpc).await
    }

    async fn install_snapshot(
        &self,
        rpc: InstallSnapshotRequest<TypeConfig>,
    ) -> Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        Raft::install_snapshot(self, rpc).await
    }

    async fn client_write(
        &self,
        command: Command,
    ) -> Result<
        ClientWriteResponse<TypeConfig>,
        RaftError<NodeId, ClientWriteError<NodeId, ClusterNode>>,
    > {
        Raft::client_write(self, command).await
    }

    async fn read_index(&self) -> Result<membership::LeaderRead, membership::AdminError> {
        membership::read_index(self).await
    }

    async fn admin(&self, request: AdminRequest) -> AdminResult {
        if !request.raft_only() {
            return Err(membership::AdminError::Refused(
                "this node cannot run that request".into(),
            ));
        }
        membership::execute(self, request).await
    }
}

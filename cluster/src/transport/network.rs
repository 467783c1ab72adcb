//! openraft's view of one peer: its three RPCs over a [`PeerConnection`].

use std::error::Error;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::transport::peer::PeerConnection;
use crate::transport::{RpcBody, RpcResponse, TransportError};
use crate::types::{ClusterNode, NodeId, TypeConfig};

/// Sends raft RPCs to one peer. Made by [`crate::transport::QuicNetworkFactory`].
///
/// Errors map to what openraft should do next: no connection, a lost stream or a refusal
/// is `Unreachable` (back off); an answer that does not decode or does not match is
/// `Network` (retry); an RPC that outlived its `hard_ttl` is `Timeout`; an AppendEntries
/// too large for one frame is `PayloadTooLarge` (send fewer entries); the peer raft's own
/// error is `RemoteError`.
pub struct QuicNetwork {
    peer: PeerConnection,
    self_id: NodeId,
    node: ClusterNode,
}

impl QuicNetwork {
    pub(crate) fn new(peer: PeerConnection, self_id: NodeId, node: ClusterNode) -> Self {
        Self {
            peer,
            self_id,
            node,
        }
    }

    fn target(&self) -> NodeId {
        self.peer.target()
    }

    fn transport_error<E: Error>(
        &self,
        action: RPCTypes,
        ttl: Duration,
        error: TransportError,
    ) -> RPCError<NodeId, ClusterNode, E> {
        match error {
            TransportError::RpcTimeout { .. } => RPCError::Timeout(Timeout {
                action,
                id: self.self_id,
                target: self.target(),
                timeout: ttl,
            }),
            error if error.is_unreachable() => RPCError::Unreachable(Unreachable::new(&error)),
            error => RPCError::Network(NetworkError::new(&error)),
        }
    }

    fn remote_error<E: Error>(&self, error: E) -> RPCError<NodeId, ClusterNode, E> {
        RPCError::RemoteError(RemoteError::new_with_node(
            self.target(),
            self.node.clone(),
            error,
        ))
    }

    fn unexpected<E: Error>(
        &self,
        expected: &'static str,
        response: &RpcResponse,
    ) -> RPCError<NodeId, ClusterNode, E> {
        let error = TransportError::UnexpectedResponse {
            target: self.target(),
            expected,
            got: response.name(),
        };
        RPCError::Network(NetworkError::new(&error))
    }
}

impl RaftNetwork<TypeConfig> for QuicNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, ClusterNode, RaftError<NodeId>>>
    {
        let ttl = option.hard_ttl();
        let entries = rpc.entries.len() as u64;
        let response = match self.peer.call(RpcBody::AppendEntries(rpc), ttl).await {
            Ok(response) => response,
            Err(TransportError::FrameTooLarge { .. }) if entries > 1 => {
                // Let openraft split the batch rather than retry the same oversized frame.
                return Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(entries / 2),
                ));
            }
            Err(error) => return Err(self.transport_error(RPCTypes::AppendEntries, ttl, error)),
        };
        match response {
            RpcResponse::AppendEntries(result) => result.map_err(|e| self.remote_error(e)),
            other => Err(self.unexpected("AppendEntries", &other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, ClusterNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let ttl = option.hard_ttl();
        let response = self
            .peer
            .call(RpcBody::InstallSnapshot(rpc), ttl)
            .await
            .map_err(|error| self.transport_error(RPCTypes::InstallSnapshot, ttl, error))?;
        match response {
            RpcResponse::InstallSnapshot(result) => result.map_err(|e| self.remote_error(e)),
            other => Err(self.unexpected("InstallSnapshot", &other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, ClusterNode, RaftError<NodeId>>> {
        let ttl = option.hard_ttl();
        let response = self
            .peer
            .call(RpcBody::Vote(rpc), ttl)
            .await
            .map_err(|error| self.transport_error(RPCTypes::Vote, ttl, error))?;
        match response {
            RpcResponse::Vote(result) => result.map_err(|e| self.remote_error(e)),
            other => Err(self.unexpected("Vote", &other)),
        }
    }
}

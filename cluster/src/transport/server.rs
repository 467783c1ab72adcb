//! The accept loop: one task per connection, one task per stream, one RPC per stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::agent::{AgentRequest, AgentResponse};
use crate::tls::{agent_name_from_cert, node_id_from_cert};
use crate::transport::frame::{decode_body, encode_body, read_frame, write_frame};
use crate::transport::{RpcBody, RpcHandler, RpcRequest, RpcResponse, TransportError};
use crate::types::NodeId;

/// Connections served at once; further attempts are refused until one closes.
pub const CONNECTIONS_MAX: usize = 256;

/// Time a client gets to complete the QUIC/TLS handshake.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// Time the server gives the client to deliver a request frame, and itself to write the
/// answer.
pub const FRAME_IO_TIMEOUT_MS: u64 = 10_000;

/// Time the handler gets to answer one RPC (a forwarded write waits for commit).
pub const HANDLER_TIMEOUT_MS: u64 = 30_000;

/// Time in-flight connections get to finish after shutdown is requested.
pub const SHUTDOWN_GRACE_MS: u64 = 2_000;

/// QUIC application close code: shutting down.
const CLOSE_SHUTDOWN_CODE: u32 = 0;
/// QUIC application close code: the peer's certificate names no node.
const CLOSE_REFUSED_CODE: u32 = 1;
/// QUIC stream reset code: the request or the answer could not be transferred.
const RESET_STREAM_CODE: u32 = 2;

/// Serves raft RPCs arriving on `endpoint` until `cancel` fires or the endpoint closes.
///
/// Each connection's peer is identified by the node name in its client certificate
/// (agents' certificates are refused); each bidirectional stream carries one request,
/// which is refused when its declared sender is not that node. Connections and streams
/// are bounded ([`CONNECTIONS_MAX`], [`crate::transport::STREAMS_PER_CONNECTION_MAX`]).
/// On return every connection this loop accepted has been closed; the endpoint itself is
/// left open, as it is shared with the outgoing side.
///
/// # Cancel safety
/// Meant to run as a task: cancel through `cancel`, which drains connections for up to
/// [`SHUTDOWN_GRACE_MS`]; dropping the future aborts the connection tasks at once.
pub async fn serve<H: RpcHandler>(
    endpoint: quinn::Endpoint,
    handler: Arc<H>,
    cancel: CancellationToken,
) {
    let children = cancel.child_token();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                log_join("raft connection", joined);
            }
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else {
                    debug!("raft endpoint closed, accept loop ends");
                    break;
                };
                if connections.len() >= CONNECTIONS_MAX {
                    warn!(
                        remote = %incoming.remote_address(),
                        connections_max = CONNECTIONS_MAX,
                        "refusing raft connection: too many connections"
                    );
                    incoming.refuse();
                    continue;
                }
                connections.spawn(serve_connection(incoming, handler.clone(), children.clone()));
            }
        }
    }
    children.cancel();
    let drained = tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), async {
        while let Some(joined) = connections.join_next().await {
            log_join("raft connection", joined);
        }
    })
    .await;
    if drained.is_err() {
        warn!(
            grace_ms = SHUTDOWN_GRACE_MS,
            "raft connections did not close in time; aborting them"
        );
        connections.shutdown().await;
    }
}

async fn serve_connection<H: RpcHandler>(
    incoming: quinn::Incoming,
    handler: Arc<H>,
    cancel: CancellationToken,
) {
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(error) => {
            debug!(%remote, %error, "raft connection not accepted");
            return;
        }
    };
    let handshake = tokio::time::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), connecting);
    let connection = tokio::select! {
        biased;
        () = cancel.cancelled() => return,
        result = handshake => match result {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => {
                if crate::transport::peer::is_alpn_refusal(&error) {
                    warn!(
                        %remote,
                        ours = crate::tls::ALPN_NAME,
                        "refused a raft connection: the peer speaks none of our protocol versions \
                         (an incompatible consentry release; finish or roll back the upgrade)"
                    );
                } else {
                    warn!(%remote, %error, "raft connection handshake failed");
                }
                return;
            }
            Err(_) => {
                warn!(%remote, timeout_ms = HANDSHAKE_TIMEOUT_MS, "raft connection handshake timed out");
                return;
            }
        },
    };
    let agent_protocol = connection
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == crate::agent::ALPN);
    if agent_protocol {
        serve_agent_connection(connection, remote, handler, cancel).await;
        return;
    }
    let peer = match peer_node_id(&connection) {
        Ok(peer) => peer,
        Err(error) => {
            warn!(%remote, %error, "refusing raft connection: its certificate names no node");
            connection.close(
                CLOSE_REFUSED_CODE.into(),
                b"a node certificate (node-<id>.consentry) is required",
            );
            return;
        }
    };
    debug!(peer, %remote, "raft connection accepted");

    serve_streams(&connection, "raft stream", &cancel, |send, recv| {
        serve_stream(send, recv, peer, remote, handler.clone())
    })
    .await;
    debug!(peer, %remote, "raft connection closed");
}

/// Runs `serve` on every bidirectional stream the peer opens until the connection ends or
/// `cancel` fires (quinn's stream limit bounds how many run at once). On return every
/// stream task has ended: answers can no longer be delivered.
async fn serve_streams<F, Fut>(
    connection: &quinn::Connection,
    what: &'static str,
    cancel: &CancellationToken,
    mut serve: F,
) where
    F: FnMut(quinn::SendStream, quinn::RecvStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                connection.close(CLOSE_SHUTDOWN_CODE.into(), b"shutting down");
                break;
            }
            Some(joined) = streams.join_next(), if !streams.is_empty() => {
                log_join(what, joined);
            }
            accepted = connection.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    streams.spawn(serve(send, recv));
                }
                Err(error) => {
                    debug!(what, %error, "connection ended");
                    break;
                }
            },
        }
    }
    streams.shutdown().await;
}

async fn serve_stream<H: RpcHandler>(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    peer: NodeId,
    remote: SocketAddr,
    handler: Arc<H>,
) {
    let io_timeout = Duration::from_millis(FRAME_IO_TIMEOUT_MS);
    let response = match tokio::time::timeout(io_timeout, read_frame(&mut recv)).await {
        Ok(Ok(bytes)) => answer(&*handler, peer, remote, &bytes).await,
        Ok(Err(TransportError::FrameTooLarge { bytes })) => {
            warn!(peer, %remote, bytes, "refusing raft request: frame too large");
            RpcResponse::Refused(format!(
                "request frame of {bytes} bytes exceeds the limit of {} bytes",
                crate::transport::FRAME_BYTES_MAX
            ))
        }
        Ok(Err(error)) => {
            debug!(peer, %remote, %error, "reading raft request failed");
            return;
        }
        Err(_) => {
            debug!(peer, %remote, timeout_ms = FRAME_IO_TIMEOUT_MS, "reading raft request timed out");
            let _ = send.reset(RESET_STREAM_CODE.into());
            return;
        }
    };
    let body = match encode_body(&response, "response") {
        Ok(body) => body,
        Err(error) => {
            warn!(peer, %remote, response = response.name(), %error, "encoding raft response failed");
            let _ = send.reset(RESET_STREAM_CODE.into());
            return;
        }
    };
    match tokio::time::timeout(io_timeout, write_frame(&mut send, &body)).await {
        Ok(Ok(())) => {
            // An error here means the peer already stopped the stream: nothing to deliver.
            let _ = send.finish();
        }
        Ok(Err(error)) => debug!(peer, %remote, %error, "writing raft response failed"),
        Err(_) => {
            debug!(peer, %remote, timeout_ms = FRAME_IO_TIMEOUT_MS, "writing raft response timed out");
            let _ = send.reset(RESET_STREAM_CODE.into());
        }
    }
}

/// Decodes, checks and runs one request.
async fn answer<H: RpcHandler>(
    handler: &H,
    peer: NodeId,
    remote: SocketAddr,
    bytes: &[u8],
) -> RpcResponse {
    let request: RpcRequest = match decode_body(bytes, "request") {
        Ok(request) => request,
        Err(error) => {
            warn!(peer, %remote, %error, "refusing raft request: it does not decode");
            return RpcResponse::Refused(error.to_string());
        }
    };
    let rpc = request.body.name();
    if request.from != peer {
        warn!(
            peer,
            from = request.from,
            %remote,
            rpc,
            "refusing raft request: its sender id differs from the node in its certificate"
        );
        return RpcResponse::Refused(format!(
            "request says it is from node {} but the connection's certificate is node {peer}",
            request.from
        ));
    }
    if let Some(voter) = request.body.vote_sender() {
        if voter != peer {
            warn!(
                peer,
                vote_node = voter,
                %remote,
                rpc,
                "refusing raft request: its vote names another node than its certificate"
            );
            return RpcResponse::Refused(format!(
                "{rpc} carries a vote of node {voter} but the connection's certificate is \
                 node {peer}"
            ));
        }
    }
    let timeout = Duration::from_millis(HANDLER_TIMEOUT_MS);
    match tokio::time::timeout(timeout, dispatch(handler, request.body)).await {
        Ok(response) => response,
        Err(_) => {
            warn!(peer, %remote, rpc, timeout_ms = HANDLER_TIMEOUT_MS, "raft handler timed out");
            RpcResponse::Refused(format!(
                "{rpc} was not answered within {HANDLER_TIMEOUT_MS} ms"
            ))
        }
    }
}

async fn dispatch<H: RpcHandler>(handler: &H, body: RpcBody) -> RpcResponse {
    match body {
        RpcBody::AppendEntries(rpc) => {
            RpcResponse::AppendEntries(handler.append_entries(rpc).await)
        }
        RpcBody::Vote(rpc) => RpcResponse::Vote(handler.vote(rpc).await),
        RpcBody::InstallSnapshot(rpc) => {
            RpcResponse::InstallSnapshot(handler.install_snapshot(rpc).await)
        }
        RpcBody::ClientWrite(command) => {
            RpcResponse::ClientWrite(handler.client_write(command).await)
        }
        RpcBody::Admin(request) => RpcResponse::Admin(handler.admin(request).await),
        RpcBody::ReadIndex => RpcResponse::ReadIndex(handler.read_index().await),
    }
}

/// Serves a host agent's connection: one [`AgentRequest`] per stream, answered by the
/// handler for the agent named in the client certificate.
async fn serve_agent_connection<H: RpcHandler>(
    connection: quinn::Connection,
    remote: SocketAddr,
    handler: Arc<H>,
    cancel: CancellationToken,
) {
    let agent = match peer_leaf(&connection)
        .and_then(|leaf| agent_name_from_cert(&leaf).map_err(|e| e.to_string()))
    {
        Ok(agent) => agent,
        Err(error) => {
            warn!(%remote, %error, "refusing agent connection: its certificate names no agent");
            connection.close(
                CLOSE_REFUSED_CODE.into(),
                b"an agent certificate (agent-<name>.consentry) is required",
            );
            return;
        }
    };
    debug!(agent, %remote, "agent connection accepted");
    let agent: Arc<str> = Arc::from(agent);
    serve_streams(&connection, "agent stream", &cancel, |send, recv| {
        serve_agent_stream(send, recv, agent.clone(), remote, handler.clone())
    })
    .await;
    debug!(%agent, %remote, "agent connection closed");
}

async fn serve_agent_stream<H: RpcHandler>(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    agent: Arc<str>,
    remote: SocketAddr,
    handler: Arc<H>,
) {
    let io_timeout = Duration::from_millis(FRAME_IO_TIMEOUT_MS);
    let response = match tokio::time::timeout(io_timeout, read_frame(&mut recv)).await {
        Ok(Ok(bytes)) => match decode_body::<AgentRequest>(&bytes, "agent request") {
            Ok(request) => {
                let timeout = Duration::from_millis(HANDLER_TIMEOUT_MS);
                match tokio::time::timeout(timeout, handler.agent(&agent, request)).await {
                    Ok(response) => response,
                    Err(_) => AgentResponse::Refused(format!(
                        "not answered within {HANDLER_TIMEOUT_MS} ms"
                    )),
                }
            }
            Err(error) => {
                warn!(%agent, %remote, %error, "refusing agent request: it does not decode");
                AgentResponse::Refused(error.to_string())
            }
        },
        Ok(Err(error)) => {
            debug!(%agent, %remote, %error, "reading agent request failed");
            let _ = send.reset(RESET_STREAM_CODE.into());
            return;
        }
        Err(_) => {
            let _ = send.reset(RESET_STREAM_CODE.into());
            return;
        }
    };
    let body = match encode_body(&response, "agent response") {
        Ok(body) => body,
        Err(error) => {
            warn!(%agent, %remote, %error, "encoding agent response failed");
            let _ = send.reset(RESET_STREAM_CODE.into());
            return;
        }
    };
    match tokio::time::timeout(io_timeout, write_frame(&mut send, &body)).await {
        Ok(Ok(())) => {
            let _ = send.finish();
        }
        _ => {
            let _ = send.reset(RESET_STREAM_CODE.into());
        }
    }
}

/// The leaf certificate the peer presented.
fn peer_leaf(connection: &quinn::Connection) -> Result<CertificateDer<'static>, String> {
    let chain = connection
        .peer_identity()
        .ok_or("no client certificate")?
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| "the peer identity is not a certificate chain")?;
    chain
        .first()
        .cloned()
        .ok_or_else(|| "empty certificate chain".to_string())
}

/// The node id in the connection's client certificate.
fn peer_node_id(connection: &quinn::Connection) -> Result<NodeId, TransportError> {
    let remote = connection.remote_address();
    let identity_error = |reason: String| TransportError::PeerIdentity { remote, reason };
    let identity = connection
        .peer_identity()
        .ok_or_else(|| identity_error("no client certificate".to_string()))?;
    let chain = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| identity_error("the peer identity is not a certificate chain".to_string()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| identity_error("empty certificate chain".to_string()))?;
    node_id_from_cert(leaf).map_err(|e| identity_error(e.to_string()))
}

fn log_join(what: &'static str, joined: Result<(), JoinError>) {
    // Cancelled tasks are the normal end of a shutdown; a panic is a bug worth shouting.
    if let Err(error) = joined {
        if error.is_panic() {
            error!(%error, "{what} task panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use openraft::error::{
        ClientWriteError, ForwardToLeader, InstallSnapshotError, RPCError, RaftError,
    };
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
    use openraft::raft::{
        AppendEntriesRequest, AppendEntriesResponse, ClientWriteResponse, InstallSnapshotRequest,
        InstallSnapshotResponse, VoteRequest, VoteResponse,
    };
    use openraft::Vote;

    use super::*;
    use crate::command::Command;
    use crate::tls::tests::material;
    use crate::tls::{generate, TlsMaterial};
    use crate::transport::peer::{forward_client_write, PeerConnection};
    use crate::transport::{endpoint, QuicNetworkFactory, FRAME_BYTES_MAX};
    use crate::types::{ClusterNode, TypeConfig};

    const RPC_TIMEOUT: Duration = Duration::from_secs(5);

    /// Grants every vote; answers writes with "forward to node 1".
    struct FakeRaft;

    impl RpcHandler for FakeRaft {
        async fn append_entries(
            &self,
            _rpc: AppendEntriesRequest<TypeConfig>,
        ) -> Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
            Ok(AppendEntriesResponse::Success)
        }

        async fn vote(
            &self,
            rpc: VoteRequest<NodeId>,
        ) -> Result<VoteResponse<NodeId>, RaftError<NodeId>> {
            Ok(VoteResponse::new(rpc.vote, None, true))
        }

        async fn install_snapshot(
            &self,
            rpc: InstallSnapshotRequest<TypeConfig>,
        ) -> Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>
        {
            Ok(InstallSnapshotResponse { vote: rpc.vote })
        }

        async fn client_write(
            &self,
            _command: Command,
        ) -> Result<
            ClientWriteResponse<TypeConfig>,
            RaftError<NodeId, ClientWriteError<NodeId, ClusterNode>>,
        > {
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(
                ForwardToLeader {
                    leader_id: Some(1),
                    leader_node: None,
                },
            )))
        }

        async fn admin(
            &self,
            request: crate::membership::AdminRequest,
        ) -> crate::membership::AdminResult {
            Ok(format!("{request:?}"))
        }
    }

    /// Node 1 serving on loopback, with its certificates in a tempdir.
    struct Server {
        certs: tempfile::TempDir,
        node: ClusterNode,
        cancel: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    impl Server {
        fn start() -> Self {
            let certs = tempfile::tempdir().unwrap();
            generate(certs.path(), &[1, 2], &["web1".to_string()]).unwrap();
            let endpoint = endpoint(
                "127.0.0.1:0".parse().unwrap(),
                &material(certs.path(), "node-1"),
            )
            .unwrap();
            let node = ClusterNode {
                addr: endpoint.local_addr().unwrap().to_string(),
                ..ClusterNode::default()
            };
            let cancel = CancellationToken::new();
            let task = tokio::spawn(serve(endpoint, Arc::new(FakeRaft), cancel.clone()));
            Self {
                certs,
                node,
                cancel,
                task,
            }
        }

        /// A client endpoint with the given identity, calling node 1 as `from`.
        fn peer(&self, tls: &TlsMaterial, from: NodeId) -> PeerConnection {
            let endpoint = endpoint("127.0.0.1:0".parse().unwrap(), tls).unwrap();
            PeerConnection::new(endpoint, from, 1, self.node.addr.clone())
        }

        async fn stop(self) {
            self.cancel.cancel();
            tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS * 2), self.task)
                .await
                .expect("serve stops within its grace period")
                .unwrap();
        }
    }

    fn vote(node: NodeId) -> RpcBody {
        RpcBody::Vote(VoteRequest::new(Vote::new(3, node), None))
    }

    fn assert_vote_granted(response: RpcResponse, node: NodeId) {
        match response {
            RpcResponse::Vote(Ok(vote)) => {
                assert!(vote.vote_granted);
                assert_eq!(vote.vote, Vote::new(3, node));
            }
            other => panic!("expected a granted vote, got {other:?}"),
        }
    }

    /// Writes raw bytes as a request on a fresh stream and reads the one-frame answer.
    async fn raw_exchange(peer: &mut PeerConnection, bytes: &[u8]) -> RpcResponse {
        let (mut send, mut recv) = peer.open_raw().await.unwrap();
        send.write_all(bytes).await.unwrap();
        send.finish().unwrap();
        let frame = tokio::time::timeout(RPC_TIMEOUT, read_frame(&mut recv))
            .await
            .unwrap()
            .unwrap();
        decode_body(&frame, "response").unwrap()
    }

    fn other_ca_node_2(certs: &Path, other: &Path) -> TlsMaterial {
        generate(other, &[2], &[]).unwrap();
        // Trusts our CA (so the client accepts the server) but presents a certificate
        // from another CA, which the server must refuse.
        TlsMaterial::load(
            &certs.join("ca.pem"),
            &other.join("node-2.pem"),
            &other.join("node-2.key"),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn transport_vote_round_trips_through_raft_network() {
        let server = Server::start();
        let tls = material(server.certs.path(), "node-2");
        let client = endpoint("127.0.0.1:0".parse().unwrap(), &tls).unwrap();
        let mut factory = QuicNetworkFactory::new(client, 2);
        let mut network = factory.new_client(1, &server.node).await;
        for term in [3, 3] {
            let response = network
                .vote(
                    VoteRequest::new(Vote::new(term, 2), None),
                    RPCOption::new(RPC_TIMEOUT),
                )
                .await
                .unwrap();
            assert!(response.vote_granted);
            assert_eq!(response.vote, Vote::new(term, 2));
        }
        let response = network
            .append_entries(
                AppendEntriesRequest {
                    vote: Vote::new_committed(3, 2),
                    prev_log_id: None,
                    entries: Vec::new(),
                    leader_commit: None,
                },
                RPCOption::new(RPC_TIMEOUT),
            )
            .await
            .unwrap();
        assert_eq!(response, AppendEntriesResponse::Success);
        server.stop().await;
    }

    #[tokio::test]
    async fn transport_forwarded_write_returns_the_remote_raft_error() {
        let server = Server::start();
        let tls = material(server.certs.path(), "node-2");
        let client = endpoint("127.0.0.1:0".parse().unwrap(), &tls).unwrap();
        let command = Command::Tick {
            leader_id: 2,
            wall_ms: 0,
            advance: 1,
            leader_run: 0,
            leader_mono_ms: 0,
        };
        let err = forward_client_write(&client, 2, 1, &server.node, command, RPC_TIMEOUT)
            .await
            .unwrap_err();
        let TransportError::ClientWrite { target: 1, source } = err else {
            panic!("expected a ClientWrite error from node 1, got {err}");
        };
        match *source {
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                assert_eq!(forward.leader_id, Some(1));
            }
            other => panic!("expected ForwardToLeader, got {other}"),
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn transport_refuses_a_client_certificate_from_another_ca() {
        let server = Server::start();
        let other = tempfile::tempdir().unwrap();
        let tls = other_ca_node_2(server.certs.path(), other.path());
        let client = endpoint("127.0.0.1:0".parse().unwrap(), &tls).unwrap();
        let mut network = QuicNetworkFactory::new(client, 2)
            .new_client(1, &server.node)
            .await;
        // connect() may succeed; the refusal shows on the first RPC.
        let err = network
            .vote(
                VoteRequest::new(Vote::new(3, 2), None),
                RPCOption::new(RPC_TIMEOUT),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err}");
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
        server.stop().await;
    }

    #[tokio::test]
    async fn transport_client_refuses_a_server_from_another_ca() {
        let server = Server::start();
        let other = tempfile::tempdir().unwrap();
        generate(other.path(), &[2], &[]).unwrap();
        let mut peer = server.peer(&material(other.path(), "node-2"), 2);
        let err = peer.call(vote(2), RPC_TIMEOUT).await.unwrap_err();
        assert!(matches!(err, TransportError::Handshake { .. }), "{err}");
        server.stop().await;
    }

    #[tokio::test]
    async fn transport_refuses_a_peer_speaking_another_protocol_version() {
        let server = Server::start();
        let tls = material(server.certs.path(), "node-2");
        let mut crypto = tls.client_crypto().unwrap();
        crypto.alpn_protocols = vec![b"consentry/1".to_vec()]; // the release before format versions
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
        let mut client = endpoint("127.0.0.1:0".parse().unwrap(), &tls).unwrap();
        client.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let mut peer = PeerConnection::new(client, 2, 1, server.node.addr.clone());
        let err = peer.call(vote(2), RPC_TIMEOUT).await.unwrap_err();
        assert!(
            matches!(err, TransportError::IncompatibleProtocol { target: 1, .. }),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains(crate::tls::ALPN_NAME), "{text}");
        assert!(text.contains("rolling upgrade"), "{text}");
        server.stop().await;
    }

    #[tokio::test]
    async fn transport_client_checks_the_server_is_the_node_it_dials() {
        let server = Server::start();
        let tls = material(server.certs.path(), "node-2");
        let client = endpoint("127.0.0.1:0".parse().unwrap(), &tls).unwrap();
        // Node 1 listens at this address, but we dial it as node 3.
        let mut peer = PeerConnection::new(client, 2, 3, server.node.addr.clone());
        let err = peer.call(vote(2), RPC_TIMEOUT).await.unwrap_err();
        assert!(matches!(err, TransportError::Handshake { .. }), "{err}");
        server.stop().await;
    }

    #[tokio::test]
    async fn transport_refuses_an_agent_certificate() {
        let server = Server::start();
        let mut peer = server.peer(&material(server.certs.path(), "agent-web1"), 2);
        let err = peer.call(vote(2), RPC_TIMEOUT).await.unwrap_err();
        assert!(err.is_unreachable(), "{err}");
        server.stop().await;
    }

    #[tokio::test]
    async fn transport_refuses_a_sender_id_that_differs_from_the_certificate() {
        let server = Server::start();
        let tls = material(server.certs.path(), "node-2");
        // Certificate says node 2, request says node 3.
        let mut liar = server.peer(&tls, 3);
        let err = liar.call(vote(3), RPC_TIMEOUT).await.unwrap_err();
        match &err {
            TransportError::Refused { reason, .. } => {
                assert!(
                    reason.contains("node 3") && reason.contains("node 2"),
                    "{reason}"
                );
            }
            other => panic!("expected Refused, got {other}"),
        }
        // Honest `from`, but the vote claims node 3's candidacy.
        let mut peer = server.peer(&tls, 2);
        let err = peer.call(vote(3), RPC_TIMEOUT).await.unwrap_err();
        assert!(matches!(err, TransportError::Refused { .. }), "{err}");
        // The connection is still good for honest requests.
        assert_vote_granted(peer.call(vote(2), RPC_TIMEOUT).await.unwrap(), 2);
        server.stop().await;
    }

    #[tokio::test]
    async fn transport_refuses_an_oversized_frame_and_keeps_serving() {
        let server = Server::start();
        let mut peer = server.peer(&material(server.certs.path(), "node-2"), 2);
        let header = u32::try_from(FRAME_BYTES_MAX + 1).unwrap().to_be_bytes();
        match raw_exchange(&mut peer, &header).await {
            RpcResponse::Refused(reason) => assert!(reason.contains("exceeds"), "{reason}"),
            other => panic!("expected Refused, got {other:?}"),
        }
        assert_vote_granted(peer.call(vote(2), RPC_TIMEOUT).await.unwrap(), 2);
        server.stop().await;
    }

    #[tokio::test]
    async fn transport_refuses_garbage_and_keeps_serving_other_streams() {
        let server = Server::start();
        let mut peer = server.peer(&material(server.certs.path(), "node-2"), 2);
        // A stream left open mid-request must not hold up the others.
        let (mut stalled, _stalled_recv) = peer.open_raw().await.unwrap();
        stalled.write_all(&100u32.to_be_bytes()).await.unwrap();

        let mut garbage = 16u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(&[0xff; 16]);
        match raw_exchange(&mut peer, &garbage).await {
            RpcResponse::Refused(reason) => assert!(reason.contains("decoding"), "{reason}"),
            other => panic!("expected Refused, got {other:?}"),
        }
        assert_vote_granted(peer.call(vote(2), RPC_TIMEOUT).await.unwrap(), 2);
        server.stop().await;
    }

    #[tokio::test]
    async fn transport_unreachable_peer_is_unreachable_not_a_network_error() {
        let certs = tempfile::tempdir().unwrap();
        generate(certs.path(), &[1, 2], &[]).unwrap();
        let client = endpoint(
            "127.0.0.1:0".parse().unwrap(),
            &material(certs.path(), "node-2"),
        )
        .unwrap();
        // Nothing listens here: bind a socket, note its port, close it.
        let addr = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let node = ClusterNode {
            addr: addr.to_string(),
            ..ClusterNode::default()
        };
        let mut network = QuicNetworkFactory::new(client, 2)
            .new_client(1, &node)
            .await;
        let err = network
            .vote(
                VoteRequest::new(Vote::new(3, 2), None),
                RPCOption::new(Duration::from_millis(300)),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err}");
    }
}

//! A lazily opened, cached connection to one peer, and the one-RPC-per-stream exchange.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use openraft::raft::ClientWriteResponse;

use crate::command::Command;
use crate::tls::node_server_name;
use crate::transport::frame::{decode_body, encode_body, read_frame, write_frame};
use crate::transport::{RpcBody, RpcRequest, RpcResponse, TransportError};
use crate::types::{ClusterNode, NodeId, TypeConfig};

/// Consecutive RPC timeouts after which the cached connection is closed and redialled.
///
/// Timed-out RPCs leave their streams open on a connection whose peer may be gone; once the
/// stream limit is used up no packet leaves at all, so neither a stateless reset from a
/// restarted peer nor anything else would end the connection before its idle timeout.
/// Redialling costs one handshake and fails fast (unreachable) while the peer is down.
pub const RPC_TIMEOUTS_BEFORE_REDIAL: u32 = 3;

/// Calls RPCs on one peer over a connection opened on first use and replaced once it
/// fails. The TLS server name is the peer's node name, so the handshake proves that the
/// node at `addr` is `target`.
pub(crate) struct PeerConnection {
    dialer: crate::transport::Dialer,
    self_id: NodeId,
    target: NodeId,
    addr: String,
    connection: Option<quinn::Connection>,
    timeouts_in_a_row: u32,
}

impl PeerConnection {
    pub(crate) fn new(
        dialer: impl Into<crate::transport::Dialer>,
        self_id: NodeId,
        target: NodeId,
        addr: String,
    ) -> Self {
        Self {
            dialer: dialer.into(),
            self_id,
            target,
            addr,
            connection: None,
            timeouts_in_a_row: 0,
        }
    }

    pub(crate) fn target(&self) -> NodeId {
        self.target
    }

    /// Sends `body` as one request from `self_id` and waits for the answer, all within
    /// `timeout` (connecting included).
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped call abandons its stream; the connection stays usable.
    pub(crate) async fn call(
        &mut self,
        body: RpcBody,
        timeout: Duration,
    ) -> Result<RpcResponse, TransportError> {
        let rpc = body.name();
        let request = RpcRequest {
            from: self.self_id,
            body,
        };
        let frame = encode_body(&request, "request")?;
        let result = tokio::time::timeout(timeout, self.exchange(&frame)).await;
        let error = match result {
            Ok(Ok(RpcResponse::Refused(reason))) => TransportError::Refused {
                rpc,
                target: self.target,
                reason,
            },
            Ok(Ok(response)) => {
                self.timeouts_in_a_row = 0;
                self.dialer.record_answer(self.target);
                return Ok(response);
            }
            Ok(Err(error)) => error,
            // Still no connection: the peer never completed a handshake.
            Err(_) if self.connection.is_none() => TransportError::ConnectTimeout {
                target: self.target,
                timeout_ms: timeout.as_millis(),
            },
            Err(_) => TransportError::RpcTimeout {
                rpc,
                target: self.target,
                timeout_ms: timeout.as_millis(),
            },
        };
        if matches!(error, TransportError::RpcTimeout { .. }) {
            self.timeouts_in_a_row += 1;
        } else {
            self.timeouts_in_a_row = 0;
        }
        if error.breaks_connection() || self.timeouts_in_a_row >= RPC_TIMEOUTS_BEFORE_REDIAL {
            if let Some(connection) = self.connection.take() {
                connection.close(0u32.into(), b"unresponsive; redialling");
            }
            self.timeouts_in_a_row = 0;
        }
        Err(error)
    }

    /// Opens a raw stream on the (cached) connection, for tests that write bytes directly.
    #[cfg(test)]
    pub(crate) async fn open_raw(
        &mut self,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), TransportError> {
        let connection = self.connection().await?;
        connection
            .open_bi()
            .await
            .map_err(|source| TransportError::OpenStream {
                target: self.target,
                source,
            })
    }

    async fn exchange(&mut self, frame: &[u8]) -> Result<RpcResponse, TransportError> {
        let connection = self.connection().await?;
        let (mut send, mut recv) =
            connection
                .open_bi()
                .await
                .map_err(|source| TransportError::OpenStream {
                    target: self.target,
                    source,
                })?;
        let exchanged = async {
            write_frame(&mut send, frame).await?;
            send.finish()
                .map_err(|e| TransportError::WriteFrame(io::Error::other(e)))?;
            read_frame(&mut recv).await
        };
        let bytes = match exchanged.await {
            Ok(bytes) => bytes,
            // Say why the connection went (a TLS alert, the peer's close reason) rather
            // than only that the stream failed.
            Err(error) => {
                return Err(match connection.close_reason() {
                    Some(source) => TransportError::ConnectionLost {
                        target: self.target,
                        source,
                    },
                    None => error,
                })
            }
        };
        decode_body(&bytes, "response")
    }

    async fn connection(&mut self) -> Result<quinn::Connection, TransportError> {
        if let Some(connection) = &self.connection {
            if connection.close_reason().is_none() {
                return Ok(connection.clone());
            }
        }
        self.connection = None;
        let addr = self.resolve().await?;
        let connecting = self
            .dialer
            .connect(addr, &node_server_name(self.target))
            .map_err(|source| TransportError::Connect {
                target: self.target,
                addr,
                source,
            })?;
        let connection = connecting.await.map_err(|source| {
            if is_alpn_refusal(&source) {
                TransportError::IncompatibleProtocol {
                    target: self.target,
                    addr,
                    ours: crate::tls::ALPN_NAME,
                }
            } else {
                TransportError::Handshake {
                    target: self.target,
                    addr,
                    source,
                }
            }
        })?;
        self.connection = Some(connection.clone());
        Ok(connection)
    }

    /// The peer's socket address: `addr` itself when it is one, else the first address a
    /// name lookup gives in the endpoint's address family.
    async fn resolve(&self) -> Result<SocketAddr, TransportError> {
        if let Ok(addr) = self.addr.parse::<SocketAddr>() {
            return Ok(addr);
        }
        let resolve_error = |reason: String| TransportError::Resolve {
            target: self.target,
            addr: self.addr.clone(),
            reason,
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(self.addr.as_str())
            .await
            .map_err(|e| resolve_error(e.to_string()))?
            .collect();
        let local_is_ipv4 = self
            .dialer
            .endpoint()
            .local_addr()
            .map(|a| a.is_ipv4())
            .ok();
        addrs
            .iter()
            .find(|a| Some(a.is_ipv4()) == local_is_ipv4)
            .or(addrs.first())
            .copied()
            .ok_or_else(|| resolve_error("the name has no addresses".to_string()))
    }
}

/// TLS alert 120 (`no_application_protocol`) as a QUIC crypto error, from either side: the
/// two ends share no ALPN protocol, that is no protocol version.
pub(crate) fn is_alpn_refusal(error: &quinn::ConnectionError) -> bool {
    let alert = quinn::TransportErrorCode::crypto(NO_APPLICATION_PROTOCOL_ALERT);
    match error {
        quinn::ConnectionError::ConnectionClosed(close) => close.error_code == alert,
        quinn::ConnectionError::TransportError(error) => error.code == alert,
        _ => false,
    }
}

/// The TLS alert a server sends when the client offers none of its ALPN protocols.
const NO_APPLICATION_PROTOCOL_ALERT: u8 = 120;

/// Forwards writes to the leader over one cached connection, so a follower's result
/// batches do not each pay a QUIC and TLS handshake. A write that finds the connection busy
/// (another write in flight) uses a connection of its own for that call.
pub struct Forwarder {
    dialer: crate::transport::Dialer,
    self_id: NodeId,
    cached: tokio::sync::Mutex<Option<PeerConnection>>,
}

impl Forwarder {
    pub fn new(dialer: impl Into<crate::transport::Dialer>, self_id: NodeId) -> Self {
        Self {
            dialer: dialer.into(),
            self_id,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// [`forward_client_write`] over the cached connection to `target_id` when it is free.
    ///
    /// # Errors
    /// As [`forward_client_write`].
    pub async fn client_write(
        &self,
        target_id: NodeId,
        target: &ClusterNode,
        cmd: Command,
        timeout: Duration,
    ) -> Result<ClientWriteResponse<TypeConfig>, TransportError> {
        let response = self
            .call(target_id, target, RpcBody::ClientWrite(cmd), timeout)
            .await?;
        client_write_answer(target_id, response)
    }

    /// Asks `target` (the leader) for the read index of a consistent read, over the cached
    /// connection when it is free. The leader's own refusal is the `Ok` value's `Err`.
    ///
    /// # Errors
    /// The transport action that failed.
    pub async fn read_index(
        &self,
        target_id: NodeId,
        target: &ClusterNode,
        timeout: Duration,
    ) -> Result<Result<crate::membership::LeaderRead, crate::membership::AdminError>, TransportError>
    {
        match self
            .call(target_id, target, RpcBody::ReadIndex, timeout)
            .await?
        {
            RpcResponse::ReadIndex(result) => Ok(result),
            other => Err(TransportError::UnexpectedResponse {
                target: target_id,
                expected: "ReadIndex",
                got: other.name(),
            }),
        }
    }

    /// One call to `target_id` over the cached connection (replaced when it names another
    /// node or address), or over a connection of its own while another call holds it.
    async fn call(
        &self,
        target_id: NodeId,
        target: &ClusterNode,
        body: RpcBody,
        timeout: Duration,
    ) -> Result<RpcResponse, TransportError> {
        let Ok(mut slot) = self.cached.try_lock() else {
            let mut peer = PeerConnection::new(
                self.dialer.clone(),
                self.self_id,
                target_id,
                target.addr.clone(),
            );
            return peer.call(body, timeout).await;
        };
        let stale = slot
            .as_ref()
            .is_none_or(|p| p.target != target_id || p.addr != target.addr);
        if stale {
            *slot = Some(PeerConnection::new(
                self.dialer.clone(),
                self.self_id,
                target_id,
                target.addr.clone(),
            ));
        }
        slot.as_mut().expect("set above").call(body, timeout).await
    }
}

fn client_write_answer(
    target_id: NodeId,
    response: RpcResponse,
) -> Result<ClientWriteResponse<TypeConfig>, TransportError> {
    match response {
        RpcResponse::ClientWrite(Ok(response)) => Ok(response),
        RpcResponse::ClientWrite(Err(source)) => Err(TransportError::ClientWrite {
            target: target_id,
            source: Box::new(source),
        }),
        other => Err(TransportError::UnexpectedResponse {
            target: target_id,
            expected: "ClientWrite",
            got: other.name(),
        }),
    }
}

/// Hands a write to another node (the leader) and returns its raft's answer.
///
/// Opens a connection for this one call. When the remote is no longer the leader the error
/// is [`TransportError::ClientWrite`] carrying `ForwardToLeader`; the caller re-resolves
/// the leader and tries again.
///
/// # Errors
/// [`TransportError::ClientWrite`] when the remote raft refused the write; otherwise the
/// transport action that failed (connect, stream, frame, decode, timeout, refusal).
///
/// # Cancel safety
/// Cancel safe, but a write that already reached the leader may still commit.
pub async fn forward_client_write(
    dialer: impl Into<crate::transport::Dialer>,
    self_id: NodeId,
    target_id: NodeId,
    target: &ClusterNode,
    cmd: Command,
    timeout: Duration,
) -> Result<ClientWriteResponse<TypeConfig>, TransportError> {
    let mut peer = PeerConnection::new(dialer, self_id, target_id, target.addr.clone());
    client_write_answer(
        target_id,
        peer.call(RpcBody::ClientWrite(cmd), timeout).await?,
    )
}

/// Hands an operator's request to another node (the leader, or the node that is to lead)
/// and returns its answer. Opens a connection for this one call.
///
/// # Errors
/// The transport action that failed (connect, stream, frame, decode, timeout, refusal).
/// The remote's own refusal is the `Ok` value's `Err`.
pub async fn forward_admin(
    dialer: impl Into<crate::transport::Dialer>,
    self_id: NodeId,
    target_id: NodeId,
    target: &ClusterNode,
    request: crate::membership::AdminRequest,
    timeout: Duration,
) -> Result<crate::membership::AdminResult, TransportError> {
    let mut peer = PeerConnection::new(dialer, self_id, target_id, target.addr.clone());
    match peer.call(RpcBody::Admin(request), timeout).await? {
        RpcResponse::Admin(result) => Ok(result),
        other => Err(TransportError::UnexpectedResponse {
            target: target_id,
            expected: "Admin",
            got: other.name(),
        }),
    }
}

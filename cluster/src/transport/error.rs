//! What can go wrong moving an RPC between two nodes.

use std::io;
use std::net::SocketAddr;

use consentry_storage::codec::CodecError;
use openraft::error::{ClientWriteError, RaftError};

use crate::tls::TlsError;
use crate::transport::FRAME_BYTES_MAX;
use crate::types::{ClusterNode, NodeId};

/// Why a transport action failed; each variant names the action.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("binding the QUIC endpoint to {addr} failed: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("building the QUIC endpoint's TLS configuration failed: {0}")]
    Tls(#[from] TlsError),
    #[error("resolving the address {addr:?} of node {target} failed: {reason}")]
    Resolve {
        target: NodeId,
        addr: String,
        reason: String,
    },
    #[error("connecting to node {target} at {addr} failed: {source}")]
    Connect {
        target: NodeId,
        addr: SocketAddr,
        source: quinn::ConnectError,
    },
    #[error("handshake with node {target} at {addr} failed: {source}")]
    Handshake {
        target: NodeId,
        addr: SocketAddr,
        source: quinn::ConnectionError,
    },
    #[error(
        "node {target} at {addr} speaks none of our protocol versions (we speak {ours}): it runs \
         an incompatible consentry release; finish the rolling upgrade or roll it back"
    )]
    IncompatibleProtocol {
        target: NodeId,
        addr: SocketAddr,
        ours: &'static str,
    },
    #[error("connecting to node {target} timed out after {timeout_ms} ms")]
    ConnectTimeout { target: NodeId, timeout_ms: u128 },
    #[error("identifying the peer at {remote} failed: {reason}")]
    PeerIdentity { remote: SocketAddr, reason: String },
    #[error("opening a stream to node {target} failed: {source}")]
    OpenStream {
        target: NodeId,
        source: quinn::ConnectionError,
    },
    #[error("the connection to node {target} was lost: {source}")]
    ConnectionLost {
        target: NodeId,
        source: quinn::ConnectionError,
    },
    #[error("writing a frame failed: {0}")]
    WriteFrame(io::Error),
    #[error("reading a frame failed: {0}")]
    ReadFrame(io::Error),
    #[error("a frame of {bytes} bytes exceeds the limit of {FRAME_BYTES_MAX} bytes")]
    FrameTooLarge { bytes: u64 },
    #[error("encoding a {what} failed: {source}")]
    Encode {
        what: &'static str,
        source: CodecError,
    },
    #[error("decoding a {what} failed: {source}")]
    Decode {
        what: &'static str,
        source: CodecError,
    },
    #[error("{rpc} RPC to node {target} timed out after {timeout_ms} ms")]
    RpcTimeout {
        rpc: &'static str,
        target: NodeId,
        timeout_ms: u128,
    },
    #[error("node {target} refused the {rpc} request: {reason}")]
    Refused {
        rpc: &'static str,
        target: NodeId,
        reason: String,
    },
    #[error("node {target} answered a {expected} request with {got}")]
    UnexpectedResponse {
        target: NodeId,
        expected: &'static str,
        got: &'static str,
    },
    #[error("node {target} did not accept the forwarded write: {source}")]
    ClientWrite {
        target: NodeId,
        /// Boxed: the raft error is large and this variant is rare.
        source: Box<RaftError<NodeId, ClientWriteError<NodeId, ClusterNode>>>,
    },
}

impl TransportError {
    /// True when the peer is (for now) out of reach and the caller should back off rather
    /// than retry at once: no route, no handshake, a lost connection, or a refusal that
    /// will not change on an immediate retry.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Resolve { .. }
                | Self::Connect { .. }
                | Self::Handshake { .. }
                | Self::IncompatibleProtocol { .. }
                | Self::ConnectTimeout { .. }
                | Self::PeerIdentity { .. }
                | Self::OpenStream { .. }
                | Self::ConnectionLost { .. }
                | Self::WriteFrame(_)
                | Self::ReadFrame(_)
                | Self::Refused { .. }
                | Self::Bind { .. }
                | Self::Tls(_)
        )
    }

    /// True when the connection this error came from should not be reused.
    pub(crate) fn breaks_connection(&self) -> bool {
        matches!(
            self,
            Self::Handshake { .. }
                | Self::OpenStream { .. }
                | Self::ConnectionLost { .. }
                | Self::WriteFrame(_)
                | Self::ReadFrame(_)
        )
    }
}

//! Raft over QUIC: one bidirectional stream per RPC, mutual TLS, node identity taken from the
//! peer's certificate.
//!
//! A caller (openraft through [`QuicNetworkFactory`], or a follower's API through
//! [`forward_client_write`]) opens a stream on a cached connection to the target, writes one
//! [`RpcRequest`] frame, finishes its side and reads one [`RpcResponse`] frame. A frame is a
//! 4-byte big-endian length and the codec's bytes ([`crate::codec`]), at most
//! [`FRAME_BYTES_MAX`]. The server ([`serve`]) maps each connection to the node id in the
//! client certificate, refuses requests whose declared sender disagrees with it, and hands
//! the rest to an [`RpcHandler`] (the local [`crate::types::Raft`] in production).

mod dialer;
mod endpoint;
mod error;
mod factory;
pub(crate) mod frame;
mod handler;
mod network;
mod peer;
mod request;
mod response;
mod server;

pub use dialer::Dialer;
pub use endpoint::{
    endpoint, endpoint_config, endpoint_configs, transport_config, IDLE_TIMEOUT_MS,
    KEEP_ALIVE_INTERVAL_MS, STREAMS_PER_CONNECTION_MAX,
};
pub use error::TransportError;
pub use factory::QuicNetworkFactory;
pub use frame::{FRAME_BYTES_MAX, FRAME_HEADER_BYTES};
pub use handler::RpcHandler;
pub use network::QuicNetwork;
pub use peer::{forward_admin, forward_client_write, Forwarder, RPC_TIMEOUTS_BEFORE_REDIAL};
pub use request::{RpcBody, RpcRequest};
pub use response::RpcResponse;
pub use server::{
    serve, CONNECTIONS_MAX, FRAME_IO_TIMEOUT_MS, HANDLER_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS,
    SHUTDOWN_GRACE_MS,
};

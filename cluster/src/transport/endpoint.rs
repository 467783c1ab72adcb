//! Building the one QUIC endpoint a node uses both to serve and to call raft RPCs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, TransportConfig, VarInt};

use crate::tls::TlsMaterial;
use crate::transport::TransportError;

/// Streams (RPCs) a peer may have open at once on one connection; further `open_bi` calls
/// wait for a slot, so this also bounds the server's per-connection tasks.
pub const STREAMS_PER_CONNECTION_MAX: u32 = 64;

/// A connection with no traffic (keep-alives included) for this long is dead.
pub const IDLE_TIMEOUT_MS: u32 = 15_000;

/// Keep-alive period: detects a vanished peer well within [`IDLE_TIMEOUT_MS`].
pub const KEEP_ALIVE_INTERVAL_MS: u64 = 2_000;

/// The QUIC transport settings both sides of a raft connection use.
pub fn transport_config() -> TransportConfig {
    let mut config = TransportConfig::default();
    config
        .max_concurrent_bidi_streams(VarInt::from_u32(STREAMS_PER_CONNECTION_MAX))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(IDLE_TIMEOUT_MS))))
        .keep_alive_interval(Some(Duration::from_millis(KEEP_ALIVE_INTERVAL_MS)));
    config
}

/// The server and client configs of [`endpoint`], for callers that build the endpoint
/// themselves (the simulation, over `Endpoint::new_with_abstract_socket`).
///
/// # Errors
/// [`TransportError::Tls`] when the TLS material does not yield a configuration.
pub fn endpoint_configs(
    tls: &TlsMaterial,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), TransportError> {
    let transport = Arc::new(transport_config());
    let mut server = tls.server_config()?;
    server.transport_config(transport.clone());
    let mut client = tls.client_config()?;
    client.transport_config(transport);
    Ok((server, client))
}

/// The endpoint-wide settings: a stateless-reset key that survives restarts (see
/// [`TlsMaterial::stable_secret`]).
pub fn endpoint_config(tls: &TlsMaterial) -> quinn::EndpointConfig {
    let secret = tls.stable_secret("quic-stateless-reset");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
    quinn::EndpointConfig::new(Arc::new(key))
}

/// One UDP endpoint bound to `bind` that accepts raft connections (client certificate
/// required) and dials peers (our certificate presented, only the cluster CA trusted).
///
/// Must be called inside a tokio runtime.
///
/// # Errors
/// [`TransportError::Tls`] on unusable TLS material; [`TransportError::Bind`] when the
/// socket cannot be bound (address in use, no runtime).
pub fn endpoint(bind: SocketAddr, tls: &TlsMaterial) -> Result<quinn::Endpoint, TransportError> {
    let (server, client) = endpoint_configs(tls)?;
    let socket = std::net::UdpSocket::bind(bind)
        .map_err(|source| TransportError::Bind { addr: bind, source })?;
    let mut endpoint = quinn::Endpoint::new(
        endpoint_config(tls),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| TransportError::Bind { addr: bind, source })?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

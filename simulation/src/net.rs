//! QUIC over turmoil's simulated UDP: the node's real quinn endpoint, with a socket adapter
//! in place of the kernel's.
//!
//! One datagram per transmit (no GSO/GRO), no ECN, and `may_fragment = true` so quinn does
//! not probe the path MTU. A send that the simulated network refuses (no such host, a
//! partitioned link) is dropped silently, as the kernel drops a UDP datagram it cannot
//! route: QUIC's own loss recovery and the transport's timeouts take it from there.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use consentry_cluster::tls::TlsMaterial;
use consentry_cluster::transport;
use futures::future::BoxFuture;
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

/// A turmoil UDP socket that quinn can drive.
pub struct TurmoilUdp {
    socket: Arc<turmoil::net::UdpSocket>,
    /// The pending "wait until readable" of the last `poll_recv` that found nothing.
    readable: Mutex<Option<BoxFuture<'static, io::Result<()>>>>,
}

impl TurmoilUdp {
    /// Binds `addr` on the current simulated host.
    ///
    /// # Errors
    /// When turmoil refuses the bind (port in use, not inside a host).
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = turmoil::net::UdpSocket::bind(addr).await?;
        Ok(Self {
            socket: Arc::new(socket),
            readable: Mutex::new(None),
        })
    }
}

impl fmt::Debug for TurmoilUdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurmoilUdp")
            .field("local_addr", &self.socket.local_addr().ok())
            .finish_non_exhaustive()
    }
}

/// turmoil's sockets never push back: a send either enters the simulated network or fails.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncUdpSocket for TurmoilUdp {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        match self
            .socket
            .try_send_to(transmit.contents, transmit.destination)
        {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
            // Unroutable or refused: lost on the wire.
            Ok(_) | Err(_) => Ok(()),
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        let mut readable = match self.readable.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        loop {
            match self.socket.try_recv_from(buf) {
                Ok((len, addr)) => {
                    *slot = RecvMeta {
                        addr,
                        len,
                        stride: len,
                        ..RecvMeta::default()
                    };
                    return Poll::Ready(Ok(1));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            let wait = readable.get_or_insert_with(|| {
                let socket = self.socket.clone();
                Box::pin(async move { socket.readable().await })
            });
            match wait.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => {
                    *readable = None;
                    result?;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

/// The node's QUIC endpoint (same TLS and transport settings as production, see
/// `consentry_cluster::transport::endpoint`) over a simulated socket bound to `bind`.
///
/// `rng_seed` makes quinn's own randomness (connection ids, packet-number skips)
/// reproducible.
///
/// # Errors
/// When the TLS material yields no configuration or the socket cannot be bound.
pub async fn endpoint(
    bind: SocketAddr,
    tls: &TlsMaterial,
    rng_seed: [u8; 32],
) -> anyhow::Result<quinn::Endpoint> {
    let (server, client) = transport::endpoint_configs(tls)?;
    let socket = Arc::new(TurmoilUdp::bind(bind).await?);
    let mut config = transport::endpoint_config(tls);
    config.rng_seed(Some(rng_seed));
    let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
        config,
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

//! A monitored target the test owns: an HTTP or TCP server on 127.0.0.1 that can be
//! stopped (its listener closed, so probes get "connection refused") and started again on
//! the same port, and that can refuse one source address while serving the others.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::http1;

/// A TCP probe's connection is held open at most this long.
const TCP_HOLD_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    Tcp,
}

/// Handle to one target server; cheap to clone.
#[derive(Clone)]
pub struct Target {
    inner: Arc<Inner>,
}

struct Inner {
    kind: Kind,
    addr: SocketAddr,
    /// Requests from this peer address get 403 (HTTP) or an immediate close (TCP).
    refuse_peer: Option<IpAddr>,
    rt: Handle,
    /// The network namespace the listener lives in (`None`: the test's own).
    netns: Option<String>,
    accept_task: Mutex<Option<JoinHandle<()>>>,
    /// Shared with the accept task, which must not hold `Inner` (dropping `Inner` stops it).
    requests_by_peer: Arc<Mutex<HashMap<IpAddr, u64>>>,
}

/// What each connection handler needs to know.
#[derive(Clone)]
struct Serving {
    kind: Kind,
    refuse_peer: Option<IpAddr>,
    requests_by_peer: Arc<Mutex<HashMap<IpAddr, u64>>>,
}

impl Target {
    /// An HTTP server answering 200 to every request (403 to `refuse_peer`).
    pub fn http(rt: &Handle, refuse_peer: Option<IpAddr>) -> Self {
        Self::start(rt, Kind::Http, refuse_peer)
    }

    /// A TCP server that accepts connections and holds them until the peer closes.
    pub fn tcp(rt: &Handle) -> Self {
        Self::start(rt, Kind::Tcp, None)
    }

    /// An HTTP server on `ip` (port chosen by the kernel) inside network namespace `netns`.
    pub fn http_in(rt: &Handle, netns: &str, ip: &str) -> Self {
        Self::start_in(rt, Kind::Http, None, Some(netns.to_owned()), ip)
    }

    /// A TCP server on `ip` inside network namespace `netns`.
    pub fn tcp_in(rt: &Handle, netns: &str, ip: &str) -> Self {
        Self::start_in(rt, Kind::Tcp, None, Some(netns.to_owned()), ip)
    }

    fn start(rt: &Handle, kind: Kind, refuse_peer: Option<IpAddr>) -> Self {
        Self::start_in(rt, kind, refuse_peer, None, "127.0.0.1")
    }

    fn start_in(
        rt: &Handle,
        kind: Kind,
        refuse_peer: Option<IpAddr>,
        netns: Option<String>,
        ip: &str,
    ) -> Self {
        let wanted: SocketAddr = format!("{ip}:0").parse().expect("a target IP");
        let listener = bind(rt, netns.as_deref(), wanted);
        let addr = listener.local_addr().expect("target local_addr");
        let target = Self {
            inner: Arc::new(Inner {
                kind,
                addr,
                refuse_peer,
                rt: rt.clone(),
                netns,
                accept_task: Mutex::new(None),
                requests_by_peer: Arc::default(),
            }),
        };
        target.serve(listener);
        target
    }

    pub fn port(&self) -> u16 {
        self.inner.addr.port()
    }

    /// The URL an HTTP check should probe.
    pub fn url(&self) -> String {
        format!("http://{}/health", self.inner.addr)
    }

    /// Closes the listener: new connections are refused until `resume`.
    pub fn stop(&self) {
        let task = lock(&self.inner.accept_task).take();
        if let Some(task) = task {
            task.abort();
            // Wait for the aborted task to drop its listener, so the very next probe is refused.
            let _ = self.inner.rt.block_on(task);
        }
    }

    /// Listens again on the same port.
    pub fn resume(&self) {
        let listener = bind(&self.inner.rt, self.inner.netns.as_deref(), self.inner.addr);
        self.serve(listener);
    }

    /// How many connections (TCP) or requests (HTTP) came from `peer`.
    pub fn requests_from(&self, peer: IpAddr) -> u64 {
        lock(&self.inner.requests_by_peer)
            .get(&peer)
            .copied()
            .unwrap_or(0)
    }

    /// Peer address -> count, for messages.
    pub fn request_counts(&self) -> String {
        format!("{:?}", lock(&self.inner.requests_by_peer))
    }

    fn serve(&self, listener: TcpListener) {
        let serving = Serving {
            kind: self.inner.kind,
            refuse_peer: self.inner.refuse_peer,
            requests_by_peer: Arc::clone(&self.inner.requests_by_peer),
        };
        let task = self.inner.rt.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        tokio::spawn(handle(serving.clone(), stream, peer));
                    }
                    // Out of descriptors or similar: back off instead of spinning.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        *lock(&self.inner.accept_task) = Some(task);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

async fn handle(serving: Serving, mut stream: TcpStream, peer: SocketAddr) {
    *lock(&serving.requests_by_peer)
        .entry(peer.ip())
        .or_default() += 1;
    let refused = serving.refuse_peer == Some(peer.ip());
    match serving.kind {
        Kind::Http => {
            if http1::read_request(&mut stream).await.is_none() {
                return;
            }
            if refused {
                http1::respond(
                    &mut stream,
                    403,
                    "Forbidden",
                    "text/plain",
                    "forbidden for this source address\n",
                )
                .await;
            } else {
                http1::respond(&mut stream, 200, "OK", "text/plain", "ok\n").await;
            }
        }
        Kind::Tcp => {
            if refused {
                return;
            }
            let mut sink = [0_u8; 1024];
            let _ = timeout(TCP_HOLD_MAX, async {
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.accept_task).take() {
            task.abort();
        }
    }
}

/// A listener on `addr`, inside `netns` when given (the socket is made on a thread that
/// entered the namespace, and stays there).
fn bind(rt: &Handle, netns: Option<&str>, addr: SocketAddr) -> TcpListener {
    let std_listener = match netns {
        None => std::net::TcpListener::bind(addr),
        Some(ns) => super::netns::in_netns(ns, move || std::net::TcpListener::bind(addr)),
    }
    .unwrap_or_else(|e| panic!("bind a target on {addr} (netns {netns:?}): {e}"));
    std_listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    let _guard = rt.enter();
    TcpListener::from_std(std_listener).expect("register the listener with tokio")
}

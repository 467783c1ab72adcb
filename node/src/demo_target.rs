//! The demo's built-in target: a tiny HTTP server on loopback that can be broken and healed.
//!
//! Broken means down for real: the listening socket is closed, so probes see "connection
//! refused", exactly as for a crashed web server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Bytes of a request head the target reads before answering.
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// How long a client may take to send its request.
const REQUEST_READ_TIMEOUT_MS: u64 = 2_000;
/// Rebind attempts after healing (the port may linger briefly).
const REBIND_ATTEMPTS_MAX: u32 = 50;

/// A handle to the running demo target.
#[derive(Clone)]
pub struct DemoTarget {
    inner: Arc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    broken: AtomicBool,
    changed: Notify,
}

impl DemoTarget {
    /// Binds `addr` (port 0 picks one) and serves until `cancel`.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start(
        addr: SocketAddr,
        cancel: CancellationToken,
    ) -> std::io::Result<(Self, tokio::task::JoinHandle<()>)> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let target = DemoTarget {
            inner: Arc::new(Inner {
                addr,
                broken: AtomicBool::new(false),
                changed: Notify::new(),
            }),
        };
        let task = tokio::spawn(target.clone().serve(listener, cancel));
        Ok((target, task))
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.inner.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    pub fn is_broken(&self) -> bool {
        self.inner.broken.load(Ordering::SeqCst)
    }

    pub fn set_broken(&self, broken: bool) {
        let was = self.inner.broken.swap(broken, Ordering::SeqCst);
        if was != broken {
            info!(target = %self.inner.addr, broken, "demo target {}", if broken { "broken: connections now refused" } else { "healed" });
            self.inner.changed.notify_waiters();
        }
    }

    async fn serve(self, first: TcpListener, cancel: CancellationToken) {
        let mut listener = Some(first);
        loop {
            if let Some(l) = listener.take() {
                // Serve until broken or cancelled; dropping `l` closes the port.
                loop {
                    let changed = self.inner.changed.notified();
                    if self.is_broken() {
                        break;
                    }
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => return,
                        _ = changed => {}
                        accepted = l.accept() => {
                            if let Ok((stream, _)) = accepted {
                                tokio::spawn(answer(stream));
                            }
                        }
                    }
                }
            }
            // Broken: wait to be healed, then bind again.
            loop {
                let changed = self.inner.changed.notified();
                if !self.is_broken() {
                    break;
                }
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    _ = changed => {}
                }
            }
            for attempt in 1..=REBIND_ATTEMPTS_MAX {
                match TcpListener::bind(self.inner.addr).await {
                    Ok(l) => {
                        listener = Some(l);
                        break;
                    }
                    Err(e) if attempt == REBIND_ATTEMPTS_MAX => {
                        warn!(error = %e, "demo target could not listen again");
                        return;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    }
}

async fn answer(mut stream: tokio::net::TcpStream) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_millis(REQUEST_READ_TIMEOUT_MS), async {
        while head.len() < REQUEST_HEAD_BYTES_MAX && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    if read.is_err() {
        return;
    }
    let body = "consentry demo target: all good\n";
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.shutdown().await;
}

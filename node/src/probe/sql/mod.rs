//! SQL probe: MySQL/MariaDB and PostgreSQL, like Nagios `check_mysql` / `check_pgsql`.
//!
//! Without credentials the probe judges the server's protocol greeting, spoken by hand
//! (see [`mysql`] and [`postgres`]); with credentials it logs in and runs the check's query
//! (default `SELECT 1`). Every connection is opened here, from the node's source address,
//! and every byte the server sends passes through [`Capped`], so no server can make the
//! probe read (or buffer) more than `SQL_RESPONSE_BYTES_MAX`.

mod mysql;
mod postgres;

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use consentry_cluster::model::{Reason, SqlEngine, SqlSpec};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{tcp, Outcome, ProbeContext};

/// Largest single protocol message (a MySQL packet, a PostgreSQL message) the probe keeps
/// in memory; a length header announcing more is refused before anything is allocated.
pub(super) const SQL_PACKET_BYTES_MAX: usize = 64 * 1024;

/// Most bytes the probe reads from one server over one connection, greeting to result.
pub(super) const SQL_RESPONSE_BYTES_MAX: u64 = 1024 * 1024;

/// The query run after logging in when the check names none.
const SQL_QUERY_DEFAULT: &str = "SELECT 1";

/// The user named when the probe only wants to see the server answer (no credentials).
const SQL_PROBE_USER: &str = "consentry";

/// Probes one MySQL/MariaDB or PostgreSQL server.
pub(super) async fn probe(spec: &SqlSpec, ctx: &ProbeContext) -> Outcome {
    let query = spec.query.as_deref().unwrap_or(SQL_QUERY_DEFAULT);
    if query.len() >= SQL_PACKET_BYTES_MAX {
        return Outcome::unknown(format!(
            "the query is {} bytes long; at most {} are sent",
            query.len(),
            SQL_PACKET_BYTES_MAX - 1
        ));
    }
    let stream = match tcp::connect_any(&spec.host, spec.port, ctx.source_ip()).await {
        Ok(stream) => stream,
        Err(outcome) => return outcome,
    };
    let stream = Capped::new(stream, SQL_RESPONSE_BYTES_MAX);
    match spec.engine {
        SqlEngine::Mysql => mysql::probe(stream, spec, query).await,
        SqlEngine::Postgres => postgres::probe(stream, spec, query).await,
    }
}

/// Maps an I/O error met while talking to the server, telling an over-long answer apart.
fn outcome_of_io(e: &io::Error) -> Outcome {
    if let Some(too_large) = e
        .get_ref()
        .and_then(|e| e.downcast_ref::<ResponseTooLarge>())
    {
        return Outcome::critical(Reason::Protocol, too_large.to_string());
    }
    tcp::outcome_of_io(e)
}

/// The error a [`Capped`] stream reads once its budget is spent.
#[derive(Debug, thiserror::Error)]
#[error("the server sent more than {0} bytes")]
struct ResponseTooLarge(u64);

/// A stream that fails reads once more than `read_bytes_max` bytes have come in: the
/// bound on everything a server may send, including through a client crate.
#[derive(Debug)]
pub(super) struct Capped<S> {
    inner: S,
    read_bytes: u64,
    read_bytes_max: u64,
}

impl<S> Capped<S> {
    pub(super) fn new(inner: S, read_bytes_max: u64) -> Self {
        Self {
            inner,
            read_bytes: 0,
            read_bytes_max,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Capped<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read_bytes > this.read_bytes_max {
            return Poll::Ready(Err(io::Error::other(ResponseTooLarge(this.read_bytes_max))));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = buf.filled().len().saturating_sub(before);
        this.read_bytes = this
            .read_bytes
            .saturating_add(u64::try_from(read).unwrap_or(u64::MAX));
        // At most one caller's buffer past the budget has been read; none of it is handed on.
        if this.read_bytes > this.read_bytes_max {
            buf.set_filled(before);
            return Poll::Ready(Err(io::Error::other(ResponseTooLarge(this.read_bytes_max))));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Capped<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn capped_stream_fails_past_its_budget() {
        let data = [7u8; 100];
        let mut capped = Capped::new(&data[..], 40);
        let mut buf = [0u8; 30];
        capped.read_exact(&mut buf).await.expect("within budget");
        let mut rest = Vec::new();
        let e = capped
            .read_to_end(&mut rest)
            .await
            .expect_err("over budget");
        assert!(
            e.get_ref().is_some_and(|e| e.is::<ResponseTooLarge>()),
            "{e}"
        );
        let outcome = outcome_of_io(&e);
        assert_eq!(outcome.reason, Reason::Protocol);
        assert_eq!(outcome.message, "the server sent more than 40 bytes");
    }
}

//! Banner probe (`smtp`, `ssh`, `pop3`, `imap`, `ftp`): connect, optionally speak TLS from
//! the first byte or after the protocol's STARTTLS, judge the server's greeting the way
//! Nagios' check_smtp, check_ssh, check_pop, check_imap and check_ftp do, then say goodbye.
//!
//! Everything the server sends is read through [`Session`], whose line reader holds at most
//! `BANNER_LINE_BYTES_MAX` bytes, so a hostile server costs a fixed amount of memory. The
//! session and its STARTTLS upgrade are shared with the `tls` certificate probe (cert.rs).

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use consentry_cluster::model::{truncate, BannerProtocol, BannerSpec, Perf, Reason, TlsMode};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, TlsStream};

use super::{tcp, Outcome, ProbeContext};

/// Longest line a server may send (greeting or reply, CRLF included); a longer one is a
/// protocol error, so this is also all the buffer a session ever holds.
pub(super) const BANNER_LINE_BYTES_MAX: usize = 1024;
/// Most lines in one reply: SMTP and FTP `220-` continuations, untagged IMAP lines before
/// the tagged answer, lines an SSH server may send before its version.
pub(super) const BANNER_LINES_MAX: usize = 32;
/// Longest piece of server text quoted in a result message.
const BANNER_MESSAGE_BYTES_MAX: usize = 160;
/// How long the goodbye (QUIT, LOGOUT) waits for the server's answer and the close.
const GOODBYE_WAIT_MS: u64 = 100;
/// The EHLO name when SMTP STARTTLS needs one and the check names none.
const SMTP_EHLO_NAME_DEFAULT: &str = "localhost";
/// Sent to SSH servers before closing, so they log a clean disconnect rather than a
/// client that never identified itself.
const SSH_CLIENT_IDENT: &str = "SSH-2.0-consentry";

/// A connection in plain text or TLS (either side: tests use the server side).
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while STARTTLS hands the plain stream to the TLS handshake, and after that
    /// handshake failed: every read and write fails.
    Detached,
}

/// One conversation with a line-based server: a bounded line reader over a [`Stream`].
pub(super) struct Session {
    stream: Stream,
    /// Bytes received and not yet returned as lines (`filled` of them, all before any
    /// newline once a line has been taken).
    buf: Vec<u8>,
    filled: usize,
}

/// Why no line could be read.
#[derive(Debug)]
enum LineError {
    Io(io::Error),
    /// The server closed the connection.
    Closed,
    /// `BANNER_LINE_BYTES_MAX` bytes without a newline.
    TooLong,
}

/// Probes `spec` once; see the module documentation.
pub(super) async fn probe(spec: &BannerSpec, ctx: &ProbeContext) -> Outcome {
    let started = stopwatch();
    let mut tls_handshake = None;
    let (outcome, session) = run(spec, ctx, &mut tls_handshake).await;
    // The goodbye is not part of the server's answer time.
    let mut perf = vec![Perf::new("time", seconds(started.elapsed()), "s")];
    if let Some(took) = tls_handshake {
        perf.push(Perf::new("tls_handshake", seconds(took), "s"));
    }
    if let Some(session) = session {
        session.goodbye(Some(spec.protocol)).await;
    }
    outcome.perf(perf)
}

/// Connects, reaches TLS (directly when `starttls` is `None`, else after the protocol's
/// greeting and STARTTLS) with `config`, and returns the session and the handshake's time.
/// Used by the certificate probe, which only wants the server's certificate.
///
/// # Errors
///
/// The outcome to report: connect failure, a greeting or STARTTLS answer that does not
/// allow TLS (CRITICAL `protocol` / `tls`), a failed handshake (CRITICAL `tls`).
pub(super) async fn connect_tls(
    host: &str,
    port: u16,
    source_ip: Option<IpAddr>,
    starttls: Option<BannerProtocol>,
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> Result<(Session, Duration), Outcome> {
    let tcp = tcp::connect_any(host, port, source_ip).await?;
    let Some(protocol) = starttls else {
        let (tls, took) = handshake(tcp, config, server_name).await?;
        return Ok((Session::new(Stream::Tls(Box::new(tls))), took));
    };
    let mut session = Session::new(Stream::Plain(tcp));
    let greeting = session.greeting(protocol).await?;
    let verdict = judge_greeting(protocol, &greeting);
    if !verdict.status.is_ok() {
        return Err(Outcome::critical(
            Reason::Protocol,
            format!("no STARTTLS after the greeting: {}", verdict.message),
        ));
    }
    let took = session
        .starttls(protocol, SMTP_EHLO_NAME_DEFAULT, config, server_name)
        .await?;
    Ok((session, took))
}

/// The conversation, returning what was found and the session to close (none when the
/// connection never opened or its TLS handshake failed).
async fn run(
    spec: &BannerSpec,
    ctx: &ProbeContext,
    tls_handshake: &mut Option<Duration>,
) -> (Outcome, Option<Session>) {
    if let Some(outcome) = unsupported(spec) {
        return (outcome, None);
    }
    let tcp = match tcp::connect_any(&spec.host, spec.port, ctx.source_ip()).await {
        Ok(tcp) => tcp,
        Err(outcome) => return (outcome, None),
    };
    let stream = if spec.tls == TlsMode::Implicit {
        match handshake(tcp, ctx.tls(spec.tls_verify), &spec.host).await {
            Ok((tls, took)) => {
                *tls_handshake = Some(took);
                Stream::Tls(Box::new(tls))
            }
            Err(outcome) => return (outcome, None),
        }
    } else {
        Stream::Plain(tcp)
    };
    let mut session = Session::new(stream);
    match converse(&mut session, spec, ctx, tls_handshake).await {
        Ok(outcome) | Err(outcome) => (outcome, Some(session)),
    }
}

/// Combinations the probe cannot honour; configuration should have refused them.
fn unsupported(spec: &BannerSpec) -> Option<Outcome> {
    match (spec.protocol, spec.tls) {
        (BannerProtocol::Ssh, TlsMode::StartTls | TlsMode::Implicit) => Some(Outcome::unknown(
            "ssh checks cannot use TLS (set tls = \"none\")",
        )),
        (BannerProtocol::Ftp, TlsMode::StartTls) => Some(Outcome::unknown(
            "ftp STARTTLS (AUTH TLS) is not supported (use tls = \"none\" or \"implicit\")",
        )),
        _ => None,
    }
}

/// Greeting, then STARTTLS and EHLO as the check asks. `Ok` and `Err` are both the
/// outcome; `Err` only lets `?` end the conversation early.
async fn converse(
    session: &mut Session,
    spec: &BannerSpec,
    ctx: &ProbeContext,
    tls_handshake: &mut Option<Duration>,
) -> Result<Outcome, Outcome> {
    let greeting = session.greeting(spec.protocol).await?;
    let verdict = judge_greeting(spec.protocol, &greeting);
    if !verdict.status.is_ok() {
        return Ok(verdict);
    }
    let mut message = verdict.message;
    let ehlo_name = spec.ehlo.as_deref().unwrap_or(SMTP_EHLO_NAME_DEFAULT);
    if spec.tls == TlsMode::StartTls {
        let took = session
            .starttls(
                spec.protocol,
                ehlo_name,
                ctx.tls(spec.tls_verify),
                &spec.host,
            )
            .await?;
        *tls_handshake = Some(took);
    }
    if let Some(version) = session.tls().and_then(|tls| tls.protocol_version()) {
        message = format!("{message} ({version:?})");
    }
    // RFC 3207: after STARTTLS the client starts over with EHLO.
    let ehlo = spec.ehlo.is_some() || spec.tls == TlsMode::StartTls;
    if spec.protocol == BannerProtocol::Smtp && ehlo {
        let reply = session.ehlo(ehlo_name).await?;
        if reply_code(&reply).map(|(code, _)| code) != Some(250) {
            return Ok(Outcome::warning(
                Reason::Protocol,
                format!("{message}; EHLO answered {}", printable(&reply)),
            ));
        }
    }
    Ok(Outcome::ok(message))
}

/// Judges a greeting line as the Nagios plugins do (SMTP and FTP: the first line of the
/// reply).
fn judge_greeting(protocol: BannerProtocol, line: &str) -> Outcome {
    let text = printable(line);
    match protocol {
        BannerProtocol::Smtp => match reply_code(line) {
            Some((220, _)) => Outcome::ok(text),
            // Seed 000: the server answers, but refuses or defers mail.
            Some(_) => Outcome::warning(Reason::Protocol, text),
            None => Outcome::critical(Reason::Protocol, format!("not an SMTP greeting: {text}")),
        },
        BannerProtocol::Ftp => match reply_code(line) {
            Some((220, _)) => Outcome::ok(text),
            // "Service ready in nnn minutes".
            Some((120, _)) => Outcome::warning(Reason::Protocol, text),
            Some(_) => Outcome::critical(Reason::Protocol, text),
            None => Outcome::critical(Reason::Protocol, format!("not an FTP greeting: {text}")),
        },
        BannerProtocol::Ssh if line.starts_with("SSH-") => Outcome::ok(text),
        BannerProtocol::Ssh => {
            Outcome::critical(Reason::Protocol, format!("not an SSH server: {text}"))
        }
        BannerProtocol::Pop3 if starts_with_ignore_case(line, "+OK") => Outcome::ok(text),
        BannerProtocol::Pop3 if starts_with_ignore_case(line, "-ERR") => {
            Outcome::critical(Reason::Protocol, text)
        }
        BannerProtocol::Pop3 => {
            Outcome::critical(Reason::Protocol, format!("not a POP3 greeting: {text}"))
        }
        BannerProtocol::Imap
            if starts_with_ignore_case(line, "* OK")
                || starts_with_ignore_case(line, "* PREAUTH") =>
        {
            Outcome::ok(text)
        }
        BannerProtocol::Imap if starts_with_ignore_case(line, "* BYE") => {
            Outcome::critical(Reason::Protocol, text)
        }
        BannerProtocol::Imap => {
            Outcome::critical(Reason::Protocol, format!("not an IMAP greeting: {text}"))
        }
    }
}

/// A numbered reply line's code and whether more lines follow (`220-`), or `None` when
/// the line does not start with three digits and a separator.
fn reply_code(line: &str) -> Option<(u16, bool)> {
    let digits = line.get(..3)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code = digits.parse().ok()?;
    match line.as_bytes().get(3) {
        None | Some(b' ') => Some((code, false)),
        Some(b'-') => Some((code, true)),
        Some(_) => None,
    }
}

fn starts_with_ignore_case(line: &str, prefix: &str) -> bool {
    line.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// Server text fit for a message: control characters dropped, cut to
/// `BANNER_MESSAGE_BYTES_MAX`, a multi-line reply's first `220-` shown as `220 `.
fn printable(line: &str) -> String {
    let text: String = line.chars().filter(|c| !c.is_control()).collect();
    let text = match reply_code(&text) {
        Some((code, true)) => format!("{code} {}", text.get(4..).unwrap_or_default()),
        _ => text,
    };
    truncate(text.trim(), BANNER_MESSAGE_BYTES_MAX)
}

/// A name safe to put on a command line: printable ASCII without spaces.
fn command_word(name: &str) -> String {
    let word: String = name.chars().filter(char::is_ascii_graphic).collect();
    if word.is_empty() {
        return SMTP_EHLO_NAME_DEFAULT.to_string();
    }
    word
}

/// TLS from the first byte over `tcp`, returning the stream and the handshake's time.
///
/// # Errors
///
/// UNKNOWN when `server_name` is not a DNS name or IP address; CRITICAL `tls` when the
/// handshake fails (the rustls error is in the message).
pub(super) async fn handshake(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> Result<(TlsStream<TcpStream>, Duration), Outcome> {
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| {
        Outcome::unknown(format!(
            "cannot use {server_name:?} as a TLS server name: {e}"
        ))
    })?;
    let started = stopwatch();
    match TlsConnector::from(config).connect(name, tcp).await {
        Ok(tls) => Ok((TlsStream::Client(tls), started.elapsed())),
        Err(e) => Err(Outcome::critical(
            Reason::Tls,
            super::tls_config::describe_tls_io_error(&e),
        )),
    }
}

/// Starts a stopwatch for phase timings. Elapsed time is measured locally and never
/// compared across machines, as the prober measures its latency.
#[allow(clippy::disallowed_methods)]
pub(super) fn stopwatch() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

pub(super) fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn outcome_of_line(e: LineError, what: &str) -> Outcome {
    match e {
        LineError::Io(e) => {
            let mut outcome = tcp::outcome_of_io(&e);
            outcome.message = format!("reading the {what}: {}", outcome.message);
            outcome
        }
        LineError::Closed => Outcome::critical(
            Reason::Protocol,
            format!("connection closed before the {what}"),
        ),
        LineError::TooLong => Outcome::critical(
            Reason::Protocol,
            format!("{what} has a line longer than {BANNER_LINE_BYTES_MAX} bytes"),
        ),
    }
}

impl Session {
    pub(super) fn new(stream: Stream) -> Self {
        Self {
            stream,
            buf: vec![0; BANNER_LINE_BYTES_MAX],
            filled: 0,
        }
    }

    /// The TLS state once the session speaks TLS (version, the server's certificates).
    pub(super) fn tls(&self) -> Option<&rustls::CommonState> {
        match &self.stream {
            Stream::Tls(tls) => Some(tls.get_ref().1),
            Stream::Plain(_) | Stream::Detached => None,
        }
    }

    /// Reads one line without its CR LF, holding at most `BANNER_LINE_BYTES_MAX` bytes.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: received bytes stay buffered for the next call.
    async fn line(&mut self) -> Result<String, LineError> {
        loop {
            if let Some(line) = self.buffered_line() {
                return Ok(line);
            }
            let Some(room) = self
                .buf
                .get_mut(self.filled..)
                .filter(|room| !room.is_empty())
            else {
                return Err(LineError::TooLong);
            };
            match self.stream.read(room).await {
                Ok(0) => return Err(LineError::Closed),
                Ok(n) => self.filled += n,
                Err(e) => return Err(LineError::Io(e)),
            }
        }
    }

    /// Takes a whole line from the bytes already received, without reading.
    fn buffered_line(&mut self) -> Option<String> {
        let received = self.buf.get(..self.filled)?;
        let end = received.iter().position(|b| *b == b'\n')?;
        let line = received.get(..end)?;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = String::from_utf8_lossy(line).into_owned();
        self.buf.copy_within(end + 1..self.filled, 0);
        self.filled -= end + 1;
        Some(line)
    }

    async fn line_of(&mut self, what: &str) -> Result<String, Outcome> {
        self.line().await.map_err(|e| outcome_of_line(e, what))
    }

    /// Sends `line` and CR LF.
    async fn send(&mut self, line: &str) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.stream.write_all(&bytes).await?;
        self.stream.flush().await
    }

    async fn command(&mut self, line: &str, what: &str) -> Result<(), Outcome> {
        self.send(line).await.map_err(|e| {
            let mut outcome = tcp::outcome_of_io(&e);
            outcome.message = format!("sending {what}: {}", outcome.message);
            outcome
        })
    }

    /// Reads an SMTP or FTP reply, following `220-` continuations, and returns its first
    /// line. A first line without a code is returned as it is, for the judge to refuse.
    async fn numbered_reply(&mut self, what: &str) -> Result<String, Outcome> {
        let first = self.line_of(what).await?;
        let Some((code, mut more)) = reply_code(&first) else {
            return Ok(first);
        };
        let mut lines = 1;
        while more {
            if lines >= BANNER_LINES_MAX {
                return Err(Outcome::critical(
                    Reason::Protocol,
                    format!("{what} is longer than {BANNER_LINES_MAX} lines"),
                ));
            }
            let line = self.line_of(what).await?;
            lines += 1;
            // FTP allows free text between the first and the last line; the last one
            // repeats the code followed by a space.
            more = reply_code(&line) != Some((code, false));
        }
        Ok(first)
    }

    /// The line that decides the greeting of `protocol`.
    async fn greeting(&mut self, protocol: BannerProtocol) -> Result<String, Outcome> {
        match protocol {
            BannerProtocol::Smtp | BannerProtocol::Ftp => self.numbered_reply("greeting").await,
            BannerProtocol::Pop3 | BannerProtocol::Imap => self.line_of("greeting").await,
            BannerProtocol::Ssh => self.ssh_version().await,
        }
    }

    /// The `SSH-` version line. RFC 4253 lets a server send other lines first; like
    /// check_ssh, which looks for `SSH-` in the first packet, the probe looks through the
    /// lines that arrived with the first one but waits for no more: a server of another
    /// protocol would wait for a command and the probe would only time out. The first line
    /// stands for the greeting when no version line is among them.
    async fn ssh_version(&mut self) -> Result<String, Outcome> {
        let first = self.line_of("greeting").await?;
        if first.starts_with("SSH-") {
            return Ok(first);
        }
        while let Some(line) = self.buffered_line() {
            if line.starts_with("SSH-") {
                return Ok(line);
            }
        }
        Ok(first)
    }

    async fn ehlo(&mut self, name: &str) -> Result<String, Outcome> {
        self.command(&format!("EHLO {}", command_word(name)), "EHLO")
            .await?;
        self.numbered_reply("EHLO reply").await
    }

    /// Upgrades a plain session with the protocol's STARTTLS after its greeting (SMTP:
    /// EHLO `ehlo_name` first), then handshakes with `config`; returns the handshake's time.
    ///
    /// # Errors
    ///
    /// CRITICAL `tls` when the server refuses STARTTLS or the handshake fails; CRITICAL
    /// `protocol` when the server answers out of turn (more bytes after its go-ahead,
    /// which could inject plain text into the TLS session); UNKNOWN for protocols without
    /// STARTTLS here.
    pub(super) async fn starttls(
        &mut self,
        protocol: BannerProtocol,
        ehlo_name: &str,
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> Result<Duration, Outcome> {
        match protocol {
            BannerProtocol::Smtp => {
                let reply = self.ehlo(ehlo_name).await?;
                if reply_code(&reply).map(|(code, _)| code) != Some(250) {
                    return Err(Outcome::critical(
                        Reason::Protocol,
                        format!("EHLO before STARTTLS answered {}", printable(&reply)),
                    ));
                }
                self.command("STARTTLS", "STARTTLS").await?;
                let reply = self.numbered_reply("STARTTLS reply").await?;
                if reply_code(&reply).map(|(code, _)| code) != Some(220) {
                    return Err(refused("STARTTLS", &reply));
                }
            }
            BannerProtocol::Pop3 => {
                self.command("STLS", "STLS").await?;
                let reply = self.line_of("STLS reply").await?;
                if !starts_with_ignore_case(&reply, "+OK") {
                    return Err(refused("STLS", &reply));
                }
            }
            BannerProtocol::Imap => {
                self.command("a1 STARTTLS", "STARTTLS").await?;
                let reply = self.tagged_reply("a1 ", "STARTTLS reply").await?;
                if !starts_with_ignore_case(&reply, "a1 OK") {
                    return Err(refused("STARTTLS", &reply));
                }
            }
            BannerProtocol::Ssh | BannerProtocol::Ftp => {
                return Err(Outcome::unknown(format!(
                    "{} has no STARTTLS in this probe",
                    protocol.as_str()
                )));
            }
        }
        if self.filled != 0 {
            return Err(Outcome::critical(
                Reason::Protocol,
                "server sent more data after agreeing to STARTTLS",
            ));
        }
        let tcp = match std::mem::replace(&mut self.stream, Stream::Detached) {
            Stream::Plain(tcp) => tcp,
            other => {
                self.stream = other;
                return Err(Outcome::unknown("STARTTLS on a session that is not plain"));
            }
        };
        let (tls, took) = handshake(tcp, config, server_name).await?;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(took)
    }

    /// IMAP: skips untagged lines (at most `BANNER_LINES_MAX`) up to the one starting
    /// with `tag`.
    async fn tagged_reply(&mut self, tag: &str, what: &str) -> Result<String, Outcome> {
        for _ in 0..BANNER_LINES_MAX {
            let line = self.line_of(what).await?;
            if starts_with_ignore_case(&line, tag) {
                return Ok(line);
            }
        }
        Err(Outcome::critical(
            Reason::Protocol,
            format!("{what} is longer than {BANNER_LINES_MAX} lines"),
        ))
    }

    /// Ends the session politely (QUIT, LOGOUT, an SSH identification), waiting at most
    /// `GOODBYE_WAIT_MS` for the answer and the close; every failure is ignored, the
    /// verdict is already made.
    pub(super) async fn goodbye(mut self, protocol: Option<BannerProtocol>) {
        let polite = async {
            let farewell = match protocol {
                Some(BannerProtocol::Smtp | BannerProtocol::Pop3 | BannerProtocol::Ftp) => {
                    Some("QUIT")
                }
                Some(BannerProtocol::Imap) => Some("a2 LOGOUT"),
                Some(BannerProtocol::Ssh) => Some(SSH_CLIENT_IDENT),
                None => None,
            };
            if let Some(farewell) = farewell {
                if self.send(farewell).await.is_ok() && protocol != Some(BannerProtocol::Ssh) {
                    let _answer = self.line().await;
                }
            }
            let _closed = self.stream.shutdown().await;
        };
        let _in_time = tokio::time::timeout(Duration::from_millis(GOODBYE_WAIT_MS), polite).await;
    }
}

fn refused(command: &str, reply: &str) -> Outcome {
    Outcome::critical(
        Reason::Tls,
        format!("{command} refused: {}", printable(reply)),
    )
}

fn detached() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection lost to a failed TLS upgrade",
    )
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    }
}

/// Fake line-protocol servers for the banner and certificate probe tests: one connection
/// each, on 127.0.0.1, following a script.
#[cfg(test)]
pub(super) mod fake {
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;
    use tokio_rustls::{TlsAcceptor, TlsStream};

    use super::{Session, Stream, BANNER_LINES_MAX};

    /// Bound on any one test step, so a regression fails instead of hanging.
    pub(in crate::probe) const TEST_STEP_MS: u64 = 5_000;
    /// Bytes per write of a flooding fake.
    const FLOOD_CHUNK_BYTES: usize = 4096;
    /// Most bytes a flooding fake sends if the client never leaves.
    const FLOOD_BYTES_MAX: usize = 64 * 1024 * 1024;
    const SECONDS_PER_DAY: u64 = 86_400;

    /// One step of the fake's side of the conversation.
    #[derive(Debug, Clone)]
    pub(in crate::probe) enum Step {
        /// Sends these bytes as they are.
        Send(&'static str),
        /// Reads one line from the client into the transcript.
        Recv,
        /// Accepts TLS as the server (implicit TLS first, or after a STARTTLS go-ahead).
        Tls,
        /// Sends the bytes one at a time, this many ms apart.
        Trickle(&'static str, u64),
        /// Sends `x` without a newline, one byte every this many ms, until the client
        /// leaves.
        TrickleForever(u64),
        /// Sends bytes without a newline as fast as possible until the client leaves.
        Flood,
        /// Sends nothing until the client leaves.
        Silent,
        /// Closes the connection.
        Close,
    }

    /// A fake server accepting one connection.
    pub(in crate::probe) struct Fake {
        pub(in crate::probe) port: u16,
        task: JoinHandle<Vec<String>>,
    }

    impl Fake {
        /// Listens on 127.0.0.1 and plays `steps` to the first client; `tls` is the server
        /// configuration the `Tls` step uses.
        pub(in crate::probe) async fn start(
            steps: Vec<Step>,
            tls: Option<Arc<rustls::ServerConfig>>,
        ) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let task = tokio::spawn(async move {
                let Ok((tcp, _)) = listener.accept().await else {
                    return Vec::new();
                };
                play(Session::new(Stream::Plain(tcp)), steps, tls).await
            });
            Self { port, task }
        }

        /// The lines the client sent, its goodbye included.
        pub(in crate::probe) async fn transcript(self) -> Vec<String> {
            tokio::time::timeout(Duration::from_millis(TEST_STEP_MS), self.task)
                .await
                .expect("fake server finished in time")
                .expect("fake server task")
        }
    }

    async fn play(
        mut session: Session,
        steps: Vec<Step>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Vec<String> {
        let mut transcript = Vec::new();
        for step in steps {
            let ok = match step {
                Step::Send(text) => session.stream.write_all(text.as_bytes()).await.is_ok(),
                Step::Recv => match session.line().await {
                    Ok(line) => {
                        transcript.push(line);
                        true
                    }
                    Err(_) => false,
                },
                Step::Tls => {
                    let config = tls
                        .clone()
                        .expect("a Tls step needs a server configuration");
                    let Stream::Plain(tcp) =
                        std::mem::replace(&mut session.stream, Stream::Detached)
                    else {
                        panic!("Tls step on a session that is not plain");
                    };
                    match TlsAcceptor::from(config).accept(tcp).await {
                        Ok(tls) => {
                            session.stream = Stream::Tls(Box::new(TlsStream::Server(tls)));
                            true
                        }
                        Err(_) => false,
                    }
                }
                Step::Trickle(text, gap_ms) => trickle(&mut session, text.bytes(), gap_ms).await,
                Step::TrickleForever(gap_ms) => {
                    trickle(&mut session, std::iter::repeat(b'x'), gap_ms).await
                }
                Step::Flood => {
                    let chunk = [b'A'; FLOOD_CHUNK_BYTES];
                    let mut sent_bytes = 0;
                    while sent_bytes < FLOOD_BYTES_MAX
                        && session.stream.write_all(&chunk).await.is_ok()
                    {
                        sent_bytes += FLOOD_CHUNK_BYTES;
                    }
                    false
                }
                Step::Silent => false,
                Step::Close => return transcript,
            };
            if !ok {
                break;
            }
        }
        // What the client says after the script (its goodbye), until it closes.
        for _ in 0..BANNER_LINES_MAX {
            match session.line().await {
                Ok(line) => transcript.push(line),
                Err(_) => break,
            }
        }
        transcript
    }

    async fn trickle(session: &mut Session, bytes: impl Iterator<Item = u8>, gap_ms: u64) -> bool {
        for byte in bytes {
            if session.stream.write_all(&[byte]).await.is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(gap_ms)).await;
        }
        true
    }

    /// A TLS server configuration with a fresh self-signed certificate for `localhost`
    /// and 127.0.0.1, valid between the two Unix times (seconds) when given, else for
    /// rcgen's default (very long) period.
    pub(in crate::probe) fn tls_server(
        validity_unix_s: Option<(u64, u64)>,
    ) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "consentry test");
        if let Some((not_before, not_after)) = validity_unix_s {
            let epoch = rcgen::date_time_ymd(1970, 1, 1);
            params.not_before = epoch + Duration::from_secs(not_before);
            params.not_after = epoch + Duration::from_secs(not_after);
        }
        let cert = params.self_signed(&key).expect("certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .expect("server config");
        Arc::new(config)
    }

    /// Unix seconds `days` days from `now_unix_s` (negative: in the past).
    pub(in crate::probe) fn days_from(now_unix_s: u64, days: i64) -> u64 {
        let shift = days.unsigned_abs() * SECONDS_PER_DAY;
        if days >= 0 {
            now_unix_s + shift
        } else {
            now_unix_s - shift
        }
    }
}

#[cfg(test)]
mod tests {
    use consentry_cluster::model::{CheckSpec, ProbeResult, ProbeSpec, Status};

    use super::fake::{tls_server, Fake, Step};
    use super::*;
    use crate::probe::test_support::assert_verdict;
    use crate::probe::Prober;

    const CHECK_TIMEOUT_MS: u64 = 3_000;

    fn spec(protocol: BannerProtocol, port: u16, tls: TlsMode) -> BannerSpec {
        BannerSpec {
            protocol,
            host: "127.0.0.1".into(),
            port,
            tls,
            tls_verify: false,
            ehlo: None,
        }
    }

    async fn probe_with_timeout(spec: BannerSpec, timeout_ms: u64) -> ProbeResult {
        let mut check = CheckSpec::for_test("banner-test");
        check.probe = ProbeSpec::Banner(spec);
        check.timeout_ms = timeout_ms;
        let prober = Prober::for_test(None);
        tokio::time::timeout(
            Duration::from_millis(timeout_ms + fake::TEST_STEP_MS),
            prober.probe(&check),
        )
        .await
        .expect("the prober's timeout bounds the probe")
    }

    /// Plays `steps`, probes with `spec` (its port replaced), returns the result and what
    /// the client sent.
    async fn converse_with(
        steps: Vec<Step>,
        mut spec: BannerSpec,
        timeout_ms: u64,
    ) -> (ProbeResult, Vec<String>) {
        let fake = Fake::start(steps, Some(tls_server(None))).await;
        spec.port = fake.port;
        let result = probe_with_timeout(spec, timeout_ms).await;
        (result, fake.transcript().await)
    }

    fn perf_labels(result: &ProbeResult) -> Vec<&str> {
        result.perfdata.iter().map(|p| p.label.as_str()).collect()
    }

    #[test]
    fn greetings_are_judged_like_the_nagios_plugins() {
        use BannerProtocol::*;
        let cases: &[(BannerProtocol, &str, Status, Reason)] = &[
            (
                Smtp,
                "220 mail.example ESMTP Postfix",
                Status::Ok,
                Reason::None,
            ),
            (Smtp, "220-mail.example ESMTP", Status::Ok, Reason::None),
            (Smtp, "220", Status::Ok, Reason::None),
            (Smtp, "554 no service", Status::Warning, Reason::Protocol),
            (Smtp, "421 try later", Status::Warning, Reason::Protocol),
            (
                Smtp,
                "HTTP/1.1 400 Bad Request",
                Status::Critical,
                Reason::Protocol,
            ),
            (Smtp, "22", Status::Critical, Reason::Protocol),
            (Smtp, "220x", Status::Critical, Reason::Protocol),
            (Smtp, "", Status::Critical, Reason::Protocol),
            (Ssh, "SSH-2.0-OpenSSH_9.2p1", Status::Ok, Reason::None),
            (Ssh, "220 not ssh", Status::Critical, Reason::Protocol),
            (Pop3, "+OK Dovecot ready.", Status::Ok, Reason::None),
            (Pop3, "+ok lower case", Status::Ok, Reason::None),
            (Pop3, "-ERR go away", Status::Critical, Reason::Protocol),
            (Pop3, "* OK imap", Status::Critical, Reason::Protocol),
            (
                Imap,
                "* OK [CAPABILITY IMAP4rev1] ready",
                Status::Ok,
                Reason::None,
            ),
            (Imap, "* PREAUTH logged in", Status::Ok, Reason::None),
            (Imap, "* BYE overloaded", Status::Critical, Reason::Protocol),
            (Imap, "+OK pop", Status::Critical, Reason::Protocol),
            (Ftp, "220 (vsFTPd 3.0.3)", Status::Ok, Reason::None),
            (
                Ftp,
                "120 ready in 5 minutes",
                Status::Warning,
                Reason::Protocol,
            ),
            (
                Ftp,
                "421 too many users",
                Status::Critical,
                Reason::Protocol,
            ),
            (Ftp, "SSH-2.0-x", Status::Critical, Reason::Protocol),
        ];
        for &(protocol, line, status, reason) in cases {
            let outcome = judge_greeting(protocol, line);
            assert_eq!(
                (outcome.status, outcome.reason),
                (status, reason),
                "{protocol:?} {line:?}: {}",
                outcome.message
            );
        }
    }

    #[test]
    fn messages_quote_printable_text_only_and_are_cut() {
        assert_eq!(printable("220-mx ESMTP\u{7}\u{1b}[31m"), "220 mx ESMTP[31m");
        assert_eq!(
            printable(&"x".repeat(4 * BANNER_MESSAGE_BYTES_MAX)).len(),
            BANNER_MESSAGE_BYTES_MAX
        );
        assert_eq!(command_word("evil\r\nRCPT TO:<x>"), "evilRCPTTO:<x>");
        assert_eq!(command_word(" \r\n"), SMTP_EHLO_NAME_DEFAULT);
    }

    #[tokio::test]
    async fn smtp_220_is_ok_and_says_quit() {
        let steps = vec![Step::Send("220 mail.example ESMTP Postfix\r\n")];
        let (result, said) = converse_with(
            steps,
            spec(BannerProtocol::Smtp, 0, TlsMode::None),
            CHECK_TIMEOUT_MS,
        )
        .await;
        assert_verdict(&result, Status::Ok, Reason::None);
        assert!(
            result
                .message
                .starts_with("220 mail.example ESMTP Postfix in "),
            "{}",
            result.message
        );
        assert_eq!(perf_labels(&result), ["time"]);
        assert_eq!(said, ["QUIT"]);
    }

    #[tokio::test]
    async fn smtp_multi_line_greeting_and_ehlo() {
        let steps = vec![
            Step::Send("220-mail.example ESMTP\r\n220-no UCE\r\n220 ready\r\n"),
            Step::Recv,
            Step::Send("250-mail.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
        ];
        let mut spec = spec(BannerProtocol::Smtp, 0, TlsMode::None);
        spec.ehlo = Some("probe.example".into());
        let (result, said) = converse_with(steps, spec, CHECK_TIMEOUT_MS).await;
        assert_verdict(&result, Status::Ok, Reason::None);
        assert!(
            result.message.starts_with("220 mail.example ESMTP in "),
            "{}",
            result.message
        );
        assert_eq!(said, ["EHLO probe.example", "QUIT"]);
    }

    #[tokio::test]
    async fn smtp_ehlo_refused_is_warning() {
        let steps = vec![
            Step::Send("220 mail.example ESMTP\r\n"),
            Step::Recv,
            Step::Send("502 not implemented\r\n"),
        ];
        let mut spec = spec(BannerProtocol::Smtp, 0, TlsMode::None);
        spec.ehlo = Some("probe.example".into());
        let (result, _) = converse_with(steps, spec, CHECK_TIMEOUT_MS).await;
        assert_verdict(&result, Status::Warning, Reason::Protocol);
        assert!(
            result.message.contains("EHLO answered 502"),
            "{}",
            result.message
        );
    }

    #[tokio::test]
    async fn smtp_554_greeting_is_warning() {
        let steps = vec![Step::Send("554 mail.example no SMTP service here\r\n")];
        let (result, said) = converse_with(
            steps,
            spec(BannerProtocol::Smtp, 0, TlsMode::None),
            CHECK_TIMEOUT_MS,
        )
        .await;
        assert_verdict(&result, Status::Warning, Reason::Protocol);
        assert_eq!(result.message, "554 mail.example no SMTP service here");
        assert_eq!(said, ["QUIT"]);
    }

    #[tokio::test]
    async fn garbage_greeting_is_critical_protocol() {
        let steps = vec![Step::Send("HTTP/1.1 400 Bad Request\r\n\r\n")];
        let (result, _) = converse_with(
            steps,
            spec(BannerProtocol::Smtp, 0, TlsMode::None),
            CHECK_TIMEOUT_MS,
        )
        .await;
        assert_verdict(&result, Status::Critical, Reason::Protocol);
        assert!(
            result.message.contains("HTTP/1.1 400"),
            "{}",
            result.message
        );
    }

    #[tokio::test]
    async fn closed_before_greeting_is_critical_protocol() {
        let (result, _) = converse_with(
            vec![Step::Close],
            spec(BannerProtocol::Pop3, 0, TlsMode::None),
            CHECK_TIMEOUT_MS,
        )
        .await;
        assert_verdict(&result, Status::Critical, Reason::Protocol);
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let result = probe_with_timeout(
            spec(BannerProtocol::Smtp, port, TlsMode::None),
            CHECK_TIMEOUT_MS,
        )
        .await;
        assert_verdict(&result, Status::Critical, Reason::Refused);
    }

    #[tokio::test]
    async fn ssh_banner_shows_the_software() {
        let steps = vec![Step::Send(
            "a notice before the version\r\nSSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
        )];
        let (result, said) = converse_with(
            steps,
            spec(BannerProtocol::Ssh, 0, TlsMode::None),
            CHECK_TIMEOUT_MS,
        )
        .await;
        assert_verdict(&result, Status::Ok, Reason::None);
        assert!(
            result
                .message
                .starts_with("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3 in "),
            "{}",
            result.message
        );
        assert_eq!(said, [SSH_CLIENT_IDENT]);
    }

    #[tokio::test]
    async fn ssh_without_version_is_critical() {
        let steps = vec![Step::Send("220 mail.example ESMTP\r\n")];
        let (result, _) = converse_with(
            steps,
            spec(BannerProtocol::Ssh, 0, TlsMode::None),
            CHECK_TIMEOUT_MS,
        )
        .await;
        assert_verdict(&result, Status::Critical, Reason::Protocol);
        assert!(
            result.message.contains("not an SSH server: 220"),
            "{}",
            result.message
        );
    }

    #[tokio::test]
    async fn pop3_imap_ftp_greetings() {
        let cases = [
            (BannerProtocol::Pop3, "+OK Dovecot ready.\r\n", "QUIT"),
            (
                BannerProtocol::Imap,
                "* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n",
                "a2 LOGOUT",
            ),
            (
                BannerProtocol::Ftp,
                "220-Welcome\r\n free text\r\n220 (vsFTPd 3.0.3)\r\n",
                "QUIT",
            ),
        ];
        for (protocol, greeting, goodbye) in cases {
            let (result, said) = converse_with(
                vec![Step::Send(greeting)],
                spec(protocol, 0, TlsMode::None),
                CHECK_TIMEOUT_MS,
            )
            .await;
            assert_verdict(&result, Status::Ok, Reason::None);
            assert_eq!(said, [goodbye], "{protocol:?}");
        }
    }

    #[tokio::test]
    async fn ftp_service_ready_later_is_warning() {
        let (result, _) = converse_with(
            vec![Step::Send("120 ready in 5 minutes\r\n")],
            spec(BannerProtocol::Ftp, 0, TlsMode::None),
            CHECK_TIMEOUT_MS,
        )
        .await;
        assert_verdict(&result, Status::Warning, Reason::Protocol);
    }

    #[tokio::test]
    async fn smtp_starttls_upgrades_and_says_ehlo_again() {
        let steps = vec![
            Step::Send("220 mx.example ESMTP\r\n"),
            Step::Recv,
            Step::Send("250-mx.example\r\n250 STARTTLS\r\n"),
            Step::Recv,
            Step::Send("220 2.0.0 Ready to start TLS\r\n"),
            Step::Tls,
            Step::Recv,
            Step::Send("250-mx.example\r\n250 AUTH PLAIN\r\n"),
        ];
        let (result, said) = converse_with(
            steps,
            spec(BannerProtocol::Smtp, 0, TlsMode::StartTls),
            CHECK_TIMEOUT_MS,
        )
        .await;
        assert_verdict(&result, Status::Ok, Reason::None);
        assert!(
            result
                .message
                .starts_with("220 mx.example ESMTP (TLSv1_3) in "),
            "{}",
            result.message
        );
        assert_eq!(perf_labels(&result), ["time", "tls_handshake"]);
        assert_eq!(
            said,
            ["EHLO localhost", "STARTTLS", "EHLO localhost", "QUIT"]
        );
    }

    #[tokio::test]
    async fn pop3_and_imap_starttls() {
        let pop3 = vec![
            Step::Send("+OK ready\r\n"),
            Step::Recv,
            Step::Send("+OK begin TLS\r\n"),
            Step::Tls,
        ];
        let (result, said) = converse_with(
            pop3,
            spec(BannerProtocol::Pop3, 0, TlsMode::StartTls),
            CHECK_TIMEOUT_MS,
        )
        .await;
        assert_verdict(&result, Status::Ok, Reason::None);
        assert_eq!(said, ["STLS", "QUIT"]);

        let imap = vec![
            Step::Send("* OK IMAP4rev1 ready\r\n"),
            Step::Recv,
            Step::Send("* CAPABILITY IMAP4rev1\r\na1 OK Begin TLS negotiation now\r\n"),
            Step::Tls,
        ];
        let (result, said) = converse_with(
            imap,
            spec(BannerProtocol::Imap, 0, TlsMode::StartTls),
            CHECK_TIMEOUT_MS,
        )
        .await;
        assert_verdict(&result, Status::Ok, Reason::None);
        assert_eq!(said, ["a1 STARTTLS", "a2 LOGOUT"]);
    }

    #[tokio::test]
    async fn starttls_refused_is_critical_tls() {
        let steps = vec![
            Step::Send("220 mx.example ESMTP\r\n"),
            Step::Recv,
            Step::Send("250 mx.example\r\n"),
            Step::Recv,
            Step::Send("454 4.7.0 TLS not available\r\n"),
        ];
        let (result, _) = converse_with(
            steps,
            spec(BannerProtocol::Smtp, 0, TlsMode::StartTls),
            CHECK_TIMEOUT_MS,
        )
        .await;
        assert_verdict(&result, Status::Critical, Reason::Tls);
        assert!(
            result.message.contains("STARTTLS refused: 454"),
            "{}",
            result.message
        );
    }

    #[tokio::test]
    async fn plain_text_after_starttls_go_ahead_is_refused() {
        // CVE-2011-0411 style: bytes queued before the handshake must not be trusted.
        let steps = vec![
            Step::Send("+OK ready\r\n"),
            Step::Recv,
            Step::Send("+OK begin TLS\r\n+OK injected\r\n"),
        ];
        let (result, _) = converse_with(
            steps,
            spec(BannerProtocol::Pop3, 0, TlsMode::StartTls),
            CHECK_TIMEOUT_MS,
        )
        .await;
        assert_verdict(&result, Status::Critical, Reason::Protocol);
    }

    #[tokio::test]
    async fn implicit_tls_imaps() {
        let steps = vec![Step::Tls, Step::Send("* OK IMAP4rev1 ready\r\n")];
        let (result, said) = converse_with(
            steps,
            spec(BannerProtocol::Imap, 0, TlsMode::Implicit),
            CHECK_TIMEOUT_MS,
        )
        .await;
        assert_verdict(&result, Status::Ok, Reason::None);
        assert_eq!(perf_labels(&result), ["time", "tls_handshake"]);
        assert_eq!(said, ["a2 LOGOUT"]);
    }

    #[tokio::test]
    async fn implicit_tls_verified_against_self_signed_is_critical_tls() {
        let steps = vec![Step::Tls, Step::Send("220 mx.example ESMTP\r\n")];
        let mut spec = spec(BannerProtocol::Smtp, 0, TlsMode::Implicit);
        spec.tls_verify = true;
        let (result, _) = converse_with(steps, spec, CHECK_TIMEOUT_MS).await;
        assert_verdict(&result, Status::Critical, Reason::Tls);
        assert!(
            result.message.contains("UnknownIssuer"),
            "{}",
            result.message
        );
    }

    #[tokio::test]
    async fn implicit_tls_against_plain_server_is_critical_tls() {
        let steps = vec![Step::Send("220 mx.example ESMTP\r\n")];
        let (result, _) = converse_with(
            steps,
            spec(BannerProtocol::Smtp, 0, TlsMode::Implicit),
            CHECK_TIMEOUT_MS,
        )
        .await;
        assert_verdict(&result, Status::Critical, Reason::Tls);
    }

    #[tokio::test]
    async fn silent_server_times_out_at_the_check_timeout() {
        let (result, said) = converse_with(
            vec![Step::Silent],
            spec(BannerProtocol::Smtp, 0, TlsMode::None),
            300,
        )
        .await;
        assert_verdict(&result, Status::Critical, Reason::Timeout);
        assert!(said.is_empty(), "{said:?}");
    }

    #[tokio::test]
    async fn endless_line_is_critical_protocol_not_timeout() {
        let (result, _) = converse_with(
            vec![Step::Flood],
            spec(BannerProtocol::Smtp, 0, TlsMode::None),
            CHECK_TIMEOUT_MS,
        )
        .await;
        assert_verdict(&result, Status::Critical, Reason::Protocol);
        assert!(result.message.contains("1024 bytes"), "{}", result.message);
    }

    #[tokio::test]
    async fn endless_continuation_lines_are_critical_protocol() {
        let steps = vec![Step::Send(concat!(
            "220-a\r\n220-a\r\n220-a\r\n220-a\r\n220-a\r\n220-a\r\n220-a\r\n220-a\r\n",
            "220-a\r\n220-a\r\n220-a\r\n220-a\r\n220-a\r\n220-a\r\n220-a\r\n220-a\r\n",
            "220-a\r\n220-a\r\n220-a\r\n220-a\r\n220-a\r\n220-a\r\n220-a\r\n220-a\r\n",
            "220-a\r\n220-a\r\n220-a\r\n220-a\r\n220-a\r\n220-a\r\n220-a\r\n220-a\r\n",
            "220-a\r\n220 a\r\n",
        ))];
        let (result, _) = converse_with(
            steps,
            spec(BannerProtocol::Smtp, 0, TlsMode::None),
            CHECK_TIMEOUT_MS,
        )
        .await;
        assert_verdict(&result, Status::Critical, Reason::Protocol);
        assert!(result.message.contains("32 lines"), "{}", result.message);
    }

    #[tokio::test]
    async fn slow_trickle_greeting_finishes_within_the_timeout() {
        let (result, _) = converse_with(
            vec![Step::Trickle("220 ok\r\n", 100)],
            spec(BannerProtocol::Smtp, 0, TlsMode::None),
            CHECK_TIMEOUT_MS,
        )
        .await;
        assert_verdict(&result, Status::Ok, Reason::None);
    }

    #[tokio::test]
    async fn endless_trickle_ends_at_the_check_timeout() {
        let (result, _) = converse_with(
            vec![Step::TrickleForever(100)],
            spec(BannerProtocol::Smtp, 0, TlsMode::None),
            500,
        )
        .await;
        assert_verdict(&result, Status::Critical, Reason::Timeout);
    }

    #[tokio::test]
    async fn ssh_with_tls_is_unknown() {
        let result = probe_with_timeout(
            spec(BannerProtocol::Ssh, 1, TlsMode::Implicit),
            CHECK_TIMEOUT_MS,
        )
        .await;
        assert_verdict(&result, Status::Unknown, Reason::Internal);
    }
}

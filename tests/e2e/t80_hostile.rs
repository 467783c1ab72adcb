//! Hostile targets: a server that never answers, answers garbage, sends a gigabyte, or
//! trickles one byte a second ends in a CRITICAL within the check's timeout, with the
//! reason its kind documents, and the prober's memory stays bounded.
//!
//! The test owns four kinds of fake, each started once per check on its own loopback
//! port (so the bytes each one sent are counted per check):
//! - SILENT accepts and never writes; it keeps the socket open until the prober closes it
//!   (for dns: a bound UDP socket that reads queries and never answers).
//! - GARBAGE waits for the client's first bytes when the protocol has the client speak
//!   first (HTTP, TLS, PostgreSQL), writes pseudo-random binary and a few lines such as
//!   `HTTP/9.9 ???`, then closes (for dns: a datagram with a spoofed id, which a resolver
//!   must ignore, then one echoing the query's id whose body does not parse).
//! - HUGE writes forever: for http a valid `200 OK` head announcing a gigabyte, then
//!   zeros (https: the same behind a real TLS handshake); for line protocols a greeting
//!   line that never ends; for mysql and postgres a message header announcing more than
//!   the probe keeps, then zeros; for tls an endless run of handshake records announcing a
//!   16 MiB message (for dns: sixteen 64 KiB datagrams answering each query).
//! - TRICKLE sends a plausible greeting (an HTTP status line, an SMTP `220`, an SSH
//!   version, a MySQL handshake, a TLS ServerHello...) one byte a second, forever. dns has
//!   no trickle: a datagram arrives whole or not at all.
//!
//! One `consentry probe --json` run judges every (kind x fake) at once, with
//! `timeout = "2s"`. The process is reaped with `wait4` to read its peak RSS. The bounds
//! asserted (every result within the timeout, the run within the timeout plus slack, a
//! peak RSS that does not follow what the fakes offer) are the contracts, set far
//! from the measured figures; speed targets stay benchmarks (STYLE.md).
//!
//! Two results are OK on purpose, and the table says why: tcp against SILENT (a tcp check
//! judges the connection only) and an http check without `body_contains` against HUGE
//! (docs/probes.md: the body is read, over at most its first 1 MiB, only to search it; the
//! status line already said 200).

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::runtime::Runtime;
use tokio::time::{sleep, timeout};
use tokio_rustls::TlsAcceptor;

use crate::harness::run_cli_measured;
use crate::servers::{ProbeRow, ServerDir};

/// Every check's `timeout`.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// What a result's `latency_ms` may exceed the timeout by: the prober's own cut-off
/// reacts within milliseconds, but 45 probes and the fakes share two busy cores.
const LATENCY_SLACK: Duration = Duration::from_millis(500);
/// The whole `consentry probe` run (process start, every probe at once, JSON out):
/// one timeout plus this.
const RUN_SLACK: Duration = Duration::from_secs(3);
/// Peak resident memory the prober may reach while the HUGE fakes offer a gigabyte each.
/// A `consentry probe` run of two checks against a closed port peaks at about 17 MiB
/// (debug build), this run at about 26 MiB; what one probe may buffer is bounded by its
/// kind (at most 1 MiB: an http body prefix, a mysql or postgres response), so even
/// every probe at its bound stays far below this.
const PEAK_RSS_MAX_KIB: u64 = 64 * 1024;
/// What one HUGE fake offers before it stops on its own.
const HUGE_BYTES_OFFERED: u64 = 1 << 30;
/// What a HUGE fake may get out before the prober hangs up: the probe's own bounds
/// (at most 1 MiB read) plus both sockets' buffers (a few MiB on loopback). Far more
/// would mean a probe kept reading.
const HUGE_BYTES_SENT_MAX: u64 = 64 * 1024 * 1024;
/// The size of one write of a HUGE fake.
const HUGE_CHUNK_BYTES: usize = 64 * 1024;
/// The largest UDP payload over IPv4, what a HUGE dns fake answers with.
const DNS_DATAGRAM_BYTES_MAX: usize = 65_507;
/// Datagrams a HUGE dns fake sends for each query.
const DNS_HUGE_DATAGRAMS: usize = 16;
/// How long a fake waits for the client's first bytes when the client speaks first.
const REQUEST_WAIT: Duration = Duration::from_millis(500);
/// Request bytes a fake reads, at most, before it answers.
const REQUEST_BYTES_MAX: usize = 16 * 1024;
/// After closing its side, a GARBAGE fake reads what the client still sends for at most
/// this long, so its close is a FIN, not a reset that could overtake the garbage.
const GARBAGE_DRAIN_MAX: Duration = Duration::from_secs(3);
/// The pause between two bytes of a TRICKLE fake.
const TRICKLE_PAUSE: Duration = Duration::from_secs(1);
/// Pseudo-random bytes in a GARBAGE answer (xorshift from a fixed seed).
const GARBAGE_RANDOM_BYTES: usize = 508;
const GARBAGE_SEED: u64 = 0x9e37_79b9_7f4a_7c15;
/// Searched for by every http and https check: a body of zeros never contains it.
const NEEDLE: &str = "consentry-e2e-needle";
/// How long the fakes' runtime may take to stop once the test is done.
const FAKES_STOP_MAX: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fake {
    Silent,
    Garbage,
    Huge,
    Trickle,
}

impl fmt::Display for Fake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fake::Silent => "silent",
            Fake::Garbage => "garbage",
            Fake::Huge => "huge",
            Fake::Trickle => "trickle",
        })
    }
}

/// What a fake imitates: decides what it writes and whether it first waits for the
/// client's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Http,
    /// TLS bytes before any handshake succeeds (https without HUGE, the tls kind).
    Tls,
    Smtp,
    Ssh,
    Pop3,
    Imap,
    Ftp,
    Mysql,
    Postgres,
}

impl Wire {
    fn client_speaks_first(self) -> bool {
        matches!(self, Wire::Http | Wire::Tls | Wire::Postgres)
    }

    /// What TRICKLE sends, one byte a second, over and over.
    fn greeting(self) -> Vec<u8> {
        match self {
            Wire::Http => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            // A TLS 1.2 record header and the start of a ServerHello.
            Wire::Tls => vec![
                0x16, 0x03, 0x03, 0x00, 0x4a, 0x02, 0x00, 0x00, 0x46, 0x03, 0x03,
            ],
            Wire::Smtp => b"220 mail.consentry.test ESMTP Postfix (Debian/GNU)\r\n".to_vec(),
            Wire::Ssh => b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n".to_vec(),
            Wire::Pop3 => b"+OK Dovecot (Debian) ready.\r\n".to_vec(),
            Wire::Imap => {
                b"* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot (Debian) ready.\r\n".to_vec()
            }
            Wire::Ftp => b"220 (vsFTPd 3.0.3)\r\n".to_vec(),
            Wire::Mysql => mysql_greeting(),
            // AuthenticationOk.
            Wire::Postgres => vec![b'R', 0, 0, 0, 8, 0, 0, 0, 0],
        }
    }

    /// What HUGE sends: a head, then one chunk over and over.
    fn flood(self) -> (Vec<u8>, Vec<u8>) {
        let line = |start: &[u8]| (start.to_vec(), vec![b'A'; HUGE_CHUNK_BYTES]);
        match self {
            Wire::Http => (
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {HUGE_BYTES_OFFERED}\r\n\r\n"
                )
                .into_bytes(),
                vec![0; HUGE_CHUNK_BYTES],
            ),
            Wire::Tls => tls_flood(),
            Wire::Smtp | Wire::Ftp => line(b"220 "),
            Wire::Ssh => line(b"SSH-2.0-"),
            Wire::Pop3 => line(b"+OK "),
            Wire::Imap => line(b"* OK "),
            // A packet header announcing 16 MiB - 1 (the protocol's largest), sequence 0.
            Wire::Mysql => (vec![0xff, 0xff, 0xff, 0x00], vec![0; HUGE_CHUNK_BYTES]),
            // An authentication message announcing 2 GiB.
            Wire::Postgres => (vec![b'R', 0x7f, 0xff, 0xff, 0xff], vec![0; HUGE_CHUNK_BYTES]),
        }
    }
}

/// One check and the verdict it must get.
#[derive(Debug, Clone, Copy)]
struct Case {
    kind: &'static str,
    fake: Fake,
    /// `body_contains = NEEDLE` on http and https checks.
    needle: bool,
    status: &'static str,
    reason: &'static str,
}

const fn case(kind: &'static str, fake: Fake, status: &'static str, reason: &'static str) -> Case {
    Case {
        kind,
        fake,
        needle: true,
        status,
        reason,
    }
}

const CRIT: &str = "CRITICAL";

/// (kind x fake) -> verdict. Where no reason is surprising, SILENT and TRICKLE are
/// `timeout` (the prober's cut-off: nothing complete ever arrives) and GARBAGE and HUGE
/// are `protocol` (the first bytes already disqualify the answer).
const CASES: &[Case] = &[
    // tcp judges the connection only (docs/probes.md): a listener that accepts is up,
    // whatever it does next, so GARBAGE, HUGE and TRICKLE would say nothing new.
    case("tcp", Fake::Silent, "OK", "none"),
    case("http", Fake::Silent, CRIT, "timeout"),
    case("http", Fake::Garbage, CRIT, "protocol"),
    // The probe searches the first 1 MiB for the needle, finds zeros and hangs up.
    case("http", Fake::Huge, CRIT, "body_mismatch"),
    // Without body_contains nothing is searched: the 200 status line is the verdict, and
    // the probe hangs up after at most 1 MiB of the body (bounded time and memory).
    Case {
        needle: false,
        ..case("http", Fake::Huge, "OK", "none")
    },
    case("http", Fake::Trickle, CRIT, "timeout"),
    // https: the fakes speak raw bytes where a TLS handshake is due, so garbage is a
    // failed handshake (`tls`); HUGE completes a real handshake and sends its gigabyte
    // inside TLS.
    case("https", Fake::Silent, CRIT, "timeout"),
    case("https", Fake::Garbage, CRIT, "tls"),
    case("https", Fake::Huge, CRIT, "body_mismatch"),
    case("https", Fake::Trickle, CRIT, "timeout"),
    // The banner kinds read lines of at most 1 KiB: an endless greeting line is
    // `protocol` after 1 KiB.
    case("smtp", Fake::Silent, CRIT, "timeout"),
    case("smtp", Fake::Garbage, CRIT, "protocol"),
    case("smtp", Fake::Huge, CRIT, "protocol"),
    case("smtp", Fake::Trickle, CRIT, "timeout"),
    case("ssh", Fake::Silent, CRIT, "timeout"),
    case("ssh", Fake::Garbage, CRIT, "protocol"),
    case("ssh", Fake::Huge, CRIT, "protocol"),
    case("ssh", Fake::Trickle, CRIT, "timeout"),
    case("pop3", Fake::Silent, CRIT, "timeout"),
    case("pop3", Fake::Garbage, CRIT, "protocol"),
    case("pop3", Fake::Huge, CRIT, "protocol"),
    case("pop3", Fake::Trickle, CRIT, "timeout"),
    case("imap", Fake::Silent, CRIT, "timeout"),
    case("imap", Fake::Garbage, CRIT, "protocol"),
    case("imap", Fake::Huge, CRIT, "protocol"),
    case("imap", Fake::Trickle, CRIT, "timeout"),
    case("ftp", Fake::Silent, CRIT, "timeout"),
    case("ftp", Fake::Garbage, CRIT, "protocol"),
    case("ftp", Fake::Huge, CRIT, "protocol"),
    case("ftp", Fake::Trickle, CRIT, "timeout"),
    // mysql and postgres refuse a message header announcing more than 64 KiB before
    // allocating anything.
    case("mysql", Fake::Silent, CRIT, "timeout"),
    case("mysql", Fake::Garbage, CRIT, "protocol"),
    case("mysql", Fake::Huge, CRIT, "protocol"),
    case("mysql", Fake::Trickle, CRIT, "timeout"),
    case("postgres", Fake::Silent, CRIT, "timeout"),
    case("postgres", Fake::Garbage, CRIT, "protocol"),
    case("postgres", Fake::Huge, CRIT, "protocol"),
    case("postgres", Fake::Trickle, CRIT, "timeout"),
    // tls: garbage is not a TLS record, and a handshake message announcing 16 MiB is
    // refused by rustls (at most 64 KiB): both a failed handshake.
    case("tls", Fake::Silent, CRIT, "timeout"),
    case("tls", Fake::Garbage, CRIT, "tls"),
    case("tls", Fake::Huge, CRIT, "tls"),
    case("tls", Fake::Trickle, CRIT, "timeout"),
    // dns: an answer that does not parse is `protocol` ("invalid DNS response"); `dns`
    // is for well-formed answers that say no (NXDOMAIN, REFUSED, no records). The
    // spoofed datagram GARBAGE sends first is ignored, as it must be.
    case("dns", Fake::Silent, CRIT, "timeout"),
    case("dns", Fake::Garbage, CRIT, "protocol"),
    case("dns", Fake::Huge, CRIT, "protocol"),
];

/// One started fake: where the check points, and what the fake got out.
struct Started {
    case: Case,
    name: String,
    port: u16,
    sent: Arc<AtomicU64>,
}

#[test]
fn hostile_targets_end_within_the_timeout_with_bounded_memory() {
    let dir = ServerDir::new("hostile");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the fakes' runtime");

    info!(
        "start {} hostile fakes on loopback (silent, garbage, huge, trickle per kind)",
        CASES.len()
    );
    let started: Vec<Started> = CASES.iter().map(|case| start(&rt, *case)).collect();
    let checks = checks_toml(&started);
    let file = dir.write("checks.toml", &checks);

    info!(
        "one `consentry probe --json` run, every check at once with timeout {:?}: each must end within the timeout",
        CHECK_TIMEOUT
    );
    let file_arg = file.to_string_lossy().into_owned();
    let (out, usage) = run_cli_measured(dir.path(), ["probe", "-f", &file_arg, "--json"], &[]);
    let rows: Vec<ProbeRow> = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "`consentry probe` did not print its JSON ({e}): {}\n--- checks.toml ---\n{checks}",
            out.describe()
        )
    });
    let peak_rss_kib = usage
        .max_rss_kib
        .expect("the probe run ended before its memory could be sampled");
    info!(
        "probe ran {:.2}s wall, peak RSS {} KiB ({:.1} MiB), exit {:?}",
        usage.wall.as_secs_f64(),
        peak_rss_kib,
        kib_to_mib(peak_rss_kib),
        out.code
    );

    info!("every result: the table's verdict, latency within timeout + slack");
    let latency_max_ms = millis(CHECK_TIMEOUT + LATENCY_SLACK);
    let mut problems = Vec::new();
    for fake in &started {
        let Some(row) = rows.iter().find(|r| r.check == fake.name) else {
            problems.push(format!("{}: no result", fake.name));
            continue;
        };
        let (want_status, want_reason) = (fake.case.status, fake.case.reason);
        let verdict_ok = row.result.status == want_status && row.result.reason == want_reason;
        let latency_ok = row.result.latency_ms <= latency_max_ms;
        let mark = if verdict_ok && latency_ok {
            "ok "
        } else {
            "BAD"
        };
        info!(
            "  {mark} {:<24} {:>8} {:<13} {:>5} ms  {}",
            fake.name,
            row.result.status,
            row.result.reason,
            row.result.latency_ms,
            row.result.message
        );
        if !verdict_ok {
            problems.push(format!(
                "{}: expected {want_status} {want_reason}, got {}",
                fake.name,
                row.describe()
            ));
        }
        if !latency_ok {
            problems.push(format!(
                "{}: latency {} ms over {latency_max_ms} ms (timeout {} ms + slack): {}",
                fake.name,
                row.result.latency_ms,
                millis(CHECK_TIMEOUT),
                row.describe()
            ));
        }
    }
    assert_eq!(
        rows.len(),
        started.len(),
        "one result per check: {}",
        out.describe()
    );

    info!("what the HUGE fakes got out while offering {HUGE_BYTES_OFFERED} bytes each");
    for fake in started.iter().filter(|f| f.case.fake == Fake::Huge) {
        let sent = fake.sent.load(Ordering::SeqCst);
        info!(
            "  {:<24} sent {sent} bytes ({:.1} MiB)",
            fake.name,
            bytes_to_mib(sent)
        );
        if sent > HUGE_BYTES_SENT_MAX {
            problems.push(format!(
                "{}: the fake got {sent} bytes out (at most {HUGE_BYTES_SENT_MAX} expected): the probe kept reading",
                fake.name
            ));
        }
    }

    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}\n--- stderr ---\n{}\n--- checks.toml ---\n{checks}",
        problems.len(),
        problems.join("\n  "),
        out.stderr.trim_end()
    );
    assert_eq!(
        out.code,
        Some(2),
        "the worst result is CRITICAL, exit 2: {}",
        out.describe()
    );

    info!(
        "bounds: the run within timeout + {RUN_SLACK:?}, the peak RSS under {PEAK_RSS_MAX_KIB} KiB"
    );
    assert!(
        usage.wall <= CHECK_TIMEOUT + RUN_SLACK,
        "the run took {:.2}s, more than timeout {CHECK_TIMEOUT:?} + {RUN_SLACK:?}",
        usage.wall.as_secs_f64()
    );
    assert!(
        peak_rss_kib <= PEAK_RSS_MAX_KIB,
        "peak RSS {} KiB over {PEAK_RSS_MAX_KIB} KiB while the HUGE fakes offered {HUGE_BYTES_OFFERED} bytes each",
        peak_rss_kib
    );

    info!("stop the fakes (trickles and floods are cancelled with their runtime)");
    rt.shutdown_timeout(FAKES_STOP_MAX);
}

/// Starts the fake `case` probes, returning where it listens.
fn start(rt: &Runtime, case: Case) -> Started {
    let mut name = format!("{}-{}", case.kind, case.fake);
    if !case.needle {
        name.push_str("-status-only");
    }
    let sent = Arc::new(AtomicU64::new(0));
    let port = if case.kind == "dns" {
        start_udp(rt, case.fake, sent.clone())
    } else {
        let (wire, tls) = wire_of(case);
        start_tcp(rt, case.fake, wire, tls, sent.clone())
    };
    Started {
        case,
        name,
        port,
        sent,
    }
}

/// The protocol a fake imitates for `case`, and the TLS it completes first (https HUGE
/// only: its flood is meant for the HTTP layer).
fn wire_of(case: Case) -> (Wire, Option<TlsAcceptor>) {
    match case.kind {
        "http" | "tcp" => (Wire::Http, None),
        "https" if case.fake == Fake::Huge => (Wire::Http, Some(tls_acceptor())),
        "https" | "tls" => (Wire::Tls, None),
        "smtp" => (Wire::Smtp, None),
        "ssh" => (Wire::Ssh, None),
        "pop3" => (Wire::Pop3, None),
        "imap" => (Wire::Imap, None),
        "ftp" => (Wire::Ftp, None),
        "mysql" => (Wire::Mysql, None),
        "postgres" => (Wire::Postgres, None),
        other => panic!("no fake for kind {other:?}"),
    }
}

/// The `[[check]]` of each started fake, after `[defaults]`.
fn checks_toml(started: &[Started]) -> String {
    let mut text = format!(
        "[defaults]\ninterval = \"10s\"\ntimeout = \"{}ms\"\n",
        millis(CHECK_TIMEOUT)
    );
    for fake in started {
        let (kind, port) = (fake.case.kind, fake.port);
        text.push_str(&format!(
            "\n[[check]]\nname = \"{}\"\nkind = \"{kind}\"\n",
            fake.name
        ));
        let keys = match kind {
            "http" => format!("url = \"http://127.0.0.1:{port}/\"\n"),
            "https" => format!("url = \"https://127.0.0.1:{port}/\"\ntls_verify = false\n"),
            "dns" => {
                format!("server = \"127.0.0.1\"\nport = {port}\nquery = \"www.consentry.test\"\n")
            }
            _ => format!("host = \"127.0.0.1\"\nport = {port}\n"),
        };
        text.push_str(&keys);
        if fake.case.needle && kind.starts_with("http") {
            text.push_str(&format!("body_contains = \"{NEEDLE}\"\n"));
        }
    }
    text
}

fn start_tcp(
    rt: &Runtime,
    fake: Fake,
    wire: Wire,
    tls: Option<TlsAcceptor>,
    sent: Arc<AtomicU64>,
) -> u16 {
    let listener = rt
        .block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .expect("bind a fake on 127.0.0.1:0");
    let port = listener.local_addr().expect("fake local_addr").port();
    rt.spawn(async move {
        loop {
            let Ok((stream, _peer)) = listener.accept().await else {
                // Out of descriptors or the like: try again shortly rather than spin.
                sleep(Duration::from_millis(10)).await;
                continue;
            };
            let (tls, sent) = (tls.clone(), sent.clone());
            tokio::spawn(async move { serve(stream, fake, wire, tls, &sent).await });
        }
    });
    port
}

async fn serve(
    mut stream: TcpStream,
    fake: Fake,
    wire: Wire,
    tls: Option<TlsAcceptor>,
    sent: &AtomicU64,
) {
    match fake {
        Fake::Silent => swallow(&mut stream).await,
        Fake::Garbage => {
            if wire.client_speaks_first() {
                read_request(&mut stream).await;
            }
            let garbage = garbage();
            if stream.write_all(&garbage).await.is_ok() {
                count(sent, garbage.len());
            }
            let _ = stream.shutdown().await;
            let _ = timeout(GARBAGE_DRAIN_MAX, swallow(&mut stream)).await;
        }
        Fake::Huge => match tls {
            Some(acceptor) => {
                if let Ok(tls) = acceptor.accept(stream).await {
                    flood(tls, wire, sent).await;
                }
            }
            None => flood(stream, wire, sent).await,
        },
        Fake::Trickle => {
            if wire.client_speaks_first() {
                read_request(&mut stream).await;
            }
            for byte in wire.greeting().iter().cycle() {
                if stream.write_all(&[*byte]).await.is_err() {
                    return;
                }
                count(sent, 1);
                sleep(TRICKLE_PAUSE).await;
            }
        }
    }
}

/// HUGE: the head, then endless chunks until the client hangs up (or, should it read
/// everything, `HUGE_BYTES_OFFERED`).
async fn flood<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, wire: Wire, sent: &AtomicU64) {
    if wire.client_speaks_first() {
        read_request(&mut stream).await;
    }
    let (head, chunk) = wire.flood();
    if stream.write_all(&head).await.is_err() {
        return;
    }
    count(sent, head.len());
    let mut written = 0;
    while written < HUGE_BYTES_OFFERED {
        if stream.write_all(&chunk).await.is_err() {
            return;
        }
        count(sent, chunk.len());
        written += u64::try_from(chunk.len()).unwrap_or(u64::MAX);
    }
}

/// Binds the dns fake's UDP socket and answers each query as `fake` says.
fn start_udp(rt: &Runtime, fake: Fake, sent: Arc<AtomicU64>) -> u16 {
    let socket = rt
        .block_on(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)))
        .expect("bind a dns fake on 127.0.0.1:0/udp");
    let port = socket.local_addr().expect("dns fake local_addr").port();
    rt.spawn(async move {
        let mut query = [0u8; 512];
        loop {
            // An error here is a past answer's ICMP "port unreachable" (the prober has
            // closed its socket); the next query is unaffected.
            let Ok((len, peer)) = socket.recv_from(&mut query).await else {
                continue;
            };
            let Some(&[id_hi, id_lo]) = query.get(..len).and_then(|q| q.first_chunk::<2>()) else {
                continue;
            };
            let answers = match fake {
                Fake::Silent | Fake::Trickle => Vec::new(),
                Fake::Garbage => vec![dns_garbage([!id_hi, !id_lo]), dns_garbage([id_hi, id_lo])],
                Fake::Huge => vec![dns_huge([id_hi, id_lo]); DNS_HUGE_DATAGRAMS],
            };
            for answer in answers {
                if socket.send_to(&answer, peer).await.is_ok() {
                    count(&sent, answer.len());
                }
            }
        }
    });
    port
}

/// A reply header with every count at 65535, then garbage: the first byte after the
/// header is a compression pointer beyond the message.
fn dns_garbage(id: [u8; 2]) -> Vec<u8> {
    let mut datagram = id.to_vec();
    datagram.extend_from_slice(&[0x81, 0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    datagram.extend_from_slice(&garbage()[1..]);
    datagram
}

/// The largest datagram: a reply header announcing one question and 65535 answers, then
/// zeros (far fewer records than announced fit, whatever a resolver reads of it).
fn dns_huge(id: [u8; 2]) -> Vec<u8> {
    let mut datagram = id.to_vec();
    datagram.extend_from_slice(&[0x81, 0x80, 0x00, 0x01, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00]);
    datagram.resize(DNS_DATAGRAM_BYTES_MAX, 0);
    datagram
}

/// Handshake records of 16 KiB each, the first starting a ServerHello that announces
/// 16 MiB - 1 bytes; the rest continue it with zeros.
fn tls_flood() -> (Vec<u8>, Vec<u8>) {
    const RECORD_BYTES: usize = 16 * 1024;
    let record_header = [0x16, 0x03, 0x03, 0x40, 0x00];
    let mut head = record_header.to_vec();
    head.extend_from_slice(&[0x02, 0xff, 0xff, 0xff]);
    head.resize(record_header.len() + RECORD_BYTES, 0);
    let mut chunk = Vec::new();
    for _ in 0..4 {
        chunk.extend_from_slice(&record_header);
        chunk.resize(chunk.len() + RECORD_BYTES, 0);
    }
    (head, chunk)
}

/// A MariaDB protocol-10 handshake packet (sequence 0) offering mysql_native_password.
fn mysql_greeting() -> Vec<u8> {
    let mut payload = vec![10];
    payload.extend_from_slice(b"5.5.5-10.11.6-MariaDB-0+deb12u1\0");
    payload.extend_from_slice(&7u32.to_le_bytes());
    payload.extend_from_slice(b"abcdefgh\0");
    payload.extend_from_slice(&0xf7feu16.to_le_bytes());
    payload.push(33);
    payload.extend_from_slice(&2u16.to_le_bytes());
    payload.extend_from_slice(&0x81bfu16.to_le_bytes());
    payload.push(21);
    payload.extend_from_slice(&[0; 10]);
    payload.extend_from_slice(b"ijklmnopqrst\0mysql_native_password\0");
    let len = u32::try_from(payload.len())
        .expect("short payload")
        .to_le_bytes();
    let mut packet = vec![len[0], len[1], len[2], 0];
    packet.extend_from_slice(&payload);
    packet
}

/// Binary that starts with bytes no protocol here accepts first (a NUL where a greeting,
/// status line or TLS record type belongs; as a MySQL header, 16 MiB), then pseudo-random
/// bytes and a few text lines that are no protocol's answer either.
fn garbage() -> Vec<u8> {
    let mut bytes = vec![0x00, 0xff, 0xfe, 0x7f];
    let mut x = GARBAGE_SEED;
    for _ in 0..GARBAGE_RANDOM_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.push(x.to_le_bytes()[3]);
    }
    bytes.extend_from_slice(b"\r\nHTTP/9.9 ???\r\n\x1b[31m?? 999 \xff\xfe\r\n");
    bytes
}

/// Reads the client's first bytes (a request, a ClientHello, a StartupMessage), waiting
/// at most `REQUEST_WAIT`.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut request = vec![0; REQUEST_BYTES_MAX];
    let _ = timeout(REQUEST_WAIT, stream.read(&mut request)).await;
}

/// Reads and drops everything until the client closes.
async fn swallow<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 4096];
    while let Ok(1..) = stream.read(&mut buf).await {}
}

fn count(sent: &AtomicU64, bytes: usize) {
    sent.fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::SeqCst);
}

/// A self-signed certificate for the https HUGE fake (the check does not verify it).
fn tls_acceptor() -> TlsAcceptor {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("make a cert");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("TLS server config");
    TlsAcceptor::from(Arc::new(config))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn bytes_to_mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

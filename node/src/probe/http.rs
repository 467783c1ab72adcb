//! HTTP(S) probe: one request on a fresh connection, status and a bounded body checked.

use std::error::Error;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use consentry_cluster::model::{Reason, StatusRange};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{redirect, Client, Method, Response};

use super::tcp::{self, DnsError};
use super::Outcome;

/// Most redirects a probe follows before reporting the target broken.
pub const HTTP_REDIRECTS_MAX: usize = 5;

/// Most body bytes a probe reads; a target that sends more is cut off there, and
/// `body_contains` is looked for in this prefix only.
pub const HTTP_BODY_BYTES_MAX: usize = 1024 * 1024;

/// Expected statuses when a check lists none (config normally fills this in).
const HTTP_EXPECT_STATUS_DEFAULT: &[StatusRange] = &[StatusRange { lo: 200, hi: 399 }];

const USER_AGENT: &str = concat!("consentry/", env!("CARGO_PKG_VERSION"));

/// Resolves names with the same rules as the TCP probe, so that DNS failures carry a
/// `DnsError` the probe can recognise in reqwest's error chain, and addresses of the
/// wrong family for the source address are never tried.
struct ProbeResolver {
    source_ip: Option<IpAddr>,
}

impl Resolve for ProbeResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let source_ip = self.source_ip;
        Box::pin(async move {
            // Port 0: reqwest puts the URL's (or the scheme's) port in.
            let addrs = tcp::resolve(&host, 0, source_ip).await?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Sends one `method` request to `url` on a new connection and checks the answer.
pub(super) async fn probe(
    url: &str,
    method: &str,
    expect_status: &[StatusRange],
    body_contains: Option<&str>,
    tls_verify: bool,
    source_ip: Option<IpAddr>,
) -> Outcome {
    let method = if method.eq_ignore_ascii_case("GET") {
        Method::GET
    } else if method.eq_ignore_ascii_case("HEAD") {
        Method::HEAD
    } else {
        return Outcome::unknown(format!(
            "unsupported HTTP method {method:?} (use GET or HEAD)"
        ));
    };
    let client = match client(tls_verify, source_ip) {
        Ok(client) => client,
        Err(e) => return Outcome::unknown(format!("cannot set up the HTTP client: {e}")),
    };
    let mut response = match client.request(method.clone(), url).send().await {
        Ok(response) => response,
        Err(e) => return outcome_of_error(&e),
    };

    let code = response.status().as_u16();
    let expect = if expect_status.is_empty() {
        HTTP_EXPECT_STATUS_DEFAULT
    } else {
        expect_status
    };
    if !expect
        .iter()
        .any(|range| (range.lo..=range.hi).contains(&code))
    {
        let expected = describe_ranges(expect);
        return Outcome::critical(
            Reason::BadStatus,
            format!("HTTP {code} (expected {expected})"),
        );
    }
    if method == Method::HEAD {
        return Outcome::ok(format!("HTTP {code}"));
    }

    let needle = body_contains.map(str::as_bytes);
    let prefix = match read_body_prefix(&mut response, needle.is_some()).await {
        Ok(prefix) => prefix,
        Err(e) => return outcome_of_error(&e),
    };
    if let (Some(text), Some(needle)) = (body_contains, needle) {
        if !contains(&prefix, needle) {
            return Outcome::critical(
                Reason::BodyMismatch,
                format!(
                    "HTTP {code}, body does not contain {text:?} (searched {} bytes)",
                    prefix.len()
                ),
            );
        }
    }
    Outcome::ok(format!("HTTP {code}"))
}

/// A client for one probe: no pool, so every probe measures a new connection (DNS, TCP,
/// TLS), and nothing from the environment (proxies) changes what is measured.
fn client(tls_verify: bool, source_ip: Option<IpAddr>) -> reqwest::Result<Client> {
    Client::builder()
        .user_agent(USER_AGENT)
        .redirect(redirect::Policy::limited(HTTP_REDIRECTS_MAX))
        .no_proxy()
        .pool_max_idle_per_host(0)
        .danger_accept_invalid_certs(!tls_verify)
        .local_address(source_ip)
        .dns_resolver(Arc::new(ProbeResolver { source_ip }))
        .build()
}

/// Reads the body chunk by chunk up to `HTTP_BODY_BYTES_MAX` bytes and stops there, so
/// an endless body costs at most that much memory. Keeps the bytes only when `keep`.
///
/// # Errors
///
/// The transfer's error when the body breaks off before the end or the limit.
async fn read_body_prefix(response: &mut Response, keep: bool) -> reqwest::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let mut read_bytes = 0;
    while read_bytes < HTTP_BODY_BYTES_MAX {
        let Some(chunk) = response.chunk().await? else {
            break;
        };
        let take_bytes = chunk.len().min(HTTP_BODY_BYTES_MAX - read_bytes);
        if keep {
            kept.extend_from_slice(&chunk[..take_bytes]);
        }
        read_bytes += take_bytes;
    }
    Ok(kept)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// `200-399`, `200`, or a list of those.
fn describe_ranges(ranges: &[StatusRange]) -> String {
    let parts: Vec<String> = ranges
        .iter()
        .map(|range| {
            if range.lo == range.hi {
                range.lo.to_string()
            } else {
                format!("{}-{}", range.lo, range.hi)
            }
        })
        .collect();
    parts.join(", ")
}

fn outcome_of_error(e: &reqwest::Error) -> Outcome {
    if e.is_redirect() {
        return Outcome::critical(
            Reason::Protocol,
            format!("more than {HTTP_REDIRECTS_MAX} redirects"),
        );
    }
    if e.is_builder() {
        return Outcome::unknown(format!("cannot build the request: {}", root_cause(e)));
    }
    if let Some(outcome) = classify(e) {
        return outcome;
    }
    if e.is_timeout() {
        return Outcome::critical(Reason::Timeout, format!("timed out: {}", root_cause(e)));
    }
    if e.is_connect() {
        return Outcome::critical(
            Reason::Unreachable,
            format!("cannot connect: {}", root_cause(e)),
        );
    }
    Outcome::critical(
        Reason::Protocol,
        format!("invalid response: {}", root_cause(e)),
    )
}

/// Finds what went wrong in an error chain: DNS or TLS wherever they appear, else the
/// innermost socket error.
fn classify(e: &(dyn Error + 'static)) -> Option<Outcome> {
    let mut innermost_io = None;
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(dns) = e.downcast_ref::<DnsError>() {
            return Some(tcp::outcome_of_dns(dns));
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(Outcome::critical(Reason::Tls, format!("TLS: {tls}")));
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            innermost_io = Some(io);
            // io::Error::source skips the error an io::Error wraps (tokio-rustls wraps
            // its rustls::Error, reqwest wraps that again), so step into it instead.
            if let Some(inner) = io.get_ref() {
                next = Some(inner);
                continue;
            }
        }
        next = e.source();
    }
    innermost_io.map(tcp::outcome_of_io)
}

/// The innermost error's text: reqwest's outer message repeats the URL and says little.
fn root_cause(e: &(dyn Error + 'static)) -> String {
    let mut root = e;
    while let Some(source) = root.source() {
        root = source;
    }
    root.to_string()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    use consentry_cluster::model::{CheckSpec, Latency, ProbeResult, ProbeSpec, Status};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    use super::*;
    use crate::probe::Prober;

    /// Bound on any one test step, so a regression fails instead of hanging.
    const TEST_STEP_MS: u64 = 5_000;
    /// Slack allowed past a probe's own timeout before a test calls it hung.
    const TEST_TIMEOUT_SLACK_MS: u64 = 1_000;
    /// Most request bytes the test server reads before answering.
    const TEST_REQUEST_BYTES_MAX: usize = 16 * 1024;
    /// Most bytes the endless server sends; far more than any probe may read.
    const TEST_ENDLESS_BYTES_MAX: u64 = 1024 * 1024 * 1024;
    const TEST_ENDLESS_CHUNK_BYTES: usize = 64 * 1024;
    /// Peers and byte counts the test server reports, at most.
    const TEST_REPORTS_MAX: usize = 64;

    const OK_HELLO: &str =
        "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world";
    const UNAVAILABLE: &str =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndown";
    const REDIRECT_LOOP: &str =
        "HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

    /// What the test server does on each connection.
    #[derive(Debug, Clone, Copy)]
    enum Reply {
        /// Reads the request, then answers with these bytes and closes.
        Fixed(&'static str),
        /// Reads the request, waits this many ms, then answers.
        Delayed(u64, &'static str),
        /// Answers at once without reading the request (plain HTTP meeting a TLS client).
        Immediate(&'static str),
        /// Reads the request, then sends zeros until the client goes away.
        Endless,
    }

    struct Server {
        addr: SocketAddr,
        /// Each connection's peer address, as the server saw it.
        peers: mpsc::Receiver<SocketAddr>,
        /// Body bytes each `Endless` connection wrote before the client went away.
        written: mpsc::Receiver<u64>,
    }

    impl Server {
        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }
    }

    async fn serve(reply: Reply) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (peers_tx, peers) = mpsc::channel(TEST_REPORTS_MAX);
        let (written_tx, written) = mpsc::channel(TEST_REPORTS_MAX);
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let _ = peers_tx.try_send(peer);
                let written_tx = written_tx.clone();
                tokio::spawn(async move {
                    if let Some(bytes) = answer(stream, reply).await {
                        let _ = written_tx.try_send(bytes);
                    }
                });
            }
        });
        Server {
            addr,
            peers,
            written,
        }
    }

    async fn answer(mut stream: TcpStream, reply: Reply) -> Option<u64> {
        if let Reply::Immediate(text) = reply {
            let _ = stream.write_all(text.as_bytes()).await;
            return None;
        }
        read_request(&mut stream).await;
        match reply {
            Reply::Fixed(text) | Reply::Immediate(text) => {
                let _ = stream.write_all(text.as_bytes()).await;
                None
            }
            Reply::Delayed(delay_ms, text) => {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                let _ = stream.write_all(text.as_bytes()).await;
                None
            }
            Reply::Endless => {
                let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return Some(0);
                }
                let zeros = vec![0u8; TEST_ENDLESS_CHUNK_BYTES];
                let mut written = 0u64;
                while written < TEST_ENDLESS_BYTES_MAX {
                    if stream.write_all(&zeros).await.is_err() {
                        break;
                    }
                    written += zeros.len() as u64;
                }
                Some(written)
            }
        }
    }

    async fn read_request(stream: &mut TcpStream) {
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while request.len() < TEST_REQUEST_BYTES_MAX {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
            if request.windows(4).any(|w| w == b"\r\n\r\n") {
                return;
            }
        }
    }

    fn http_check(url: &str) -> CheckSpec {
        let mut check = CheckSpec::for_test("http-test");
        check.probe = ProbeSpec::Http {
            url: url.to_string(),
            method: "GET".into(),
            expect_status: vec![StatusRange { lo: 200, hi: 399 }],
            body_contains: None,
            tls_verify: true,
        };
        check.timeout_ms = 3_000;
        check
    }

    fn with_body_contains(mut check: CheckSpec, text: &str) -> CheckSpec {
        if let ProbeSpec::Http { body_contains, .. } = &mut check.probe {
            *body_contains = Some(text.to_string());
        }
        check
    }

    /// Runs the probe, failing the test if it outlives its own timeout plus slack.
    async fn probe_bounded(prober: Prober, check: &CheckSpec) -> ProbeResult {
        let bound = Duration::from_millis(check.timeout_ms + TEST_TIMEOUT_SLACK_MS);
        tokio::time::timeout(bound, prober.probe(check))
            .await
            .expect("the probe ended within its timeout")
    }

    #[tokio::test]
    async fn ok_200() {
        let server = serve(Reply::Fixed(OK_HELLO)).await;
        let check = with_body_contains(http_check(&server.url("/")), "hello");
        let result = probe_bounded(Prober::default(), &check).await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        assert_eq!(result.reason, Reason::None);
        assert!(
            result.message.starts_with("HTTP 200 in "),
            "{}",
            result.message
        );
    }

    #[tokio::test]
    async fn head_reads_no_body() {
        let server = serve(Reply::Fixed(OK_HELLO)).await;
        let mut check = http_check(&server.url("/"));
        if let ProbeSpec::Http { method, .. } = &mut check.probe {
            *method = "HEAD".into();
        }
        let result = probe_bounded(Prober::default(), &check).await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
    }

    #[tokio::test]
    async fn status_503_is_bad_status() {
        let server = serve(Reply::Fixed(UNAVAILABLE)).await;
        let result = probe_bounded(Prober::default(), &http_check(&server.url("/"))).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::BadStatus);
        assert_eq!(result.message, "HTTP 503 (expected 200-399)");
    }

    #[tokio::test]
    async fn body_without_the_text_is_body_mismatch() {
        let server = serve(Reply::Fixed(OK_HELLO)).await;
        let check = with_body_contains(http_check(&server.url("/")), "welcome");
        let result = probe_bounded(Prober::default(), &check).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::BodyMismatch);
        assert!(result.message.contains("\"welcome\""), "{}", result.message);
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let check = http_check(&format!("http://{addr}/"));
        let result = probe_bounded(Prober::default(), &check).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::Refused);
        assert_eq!(result.message, "connection refused");
    }

    #[tokio::test]
    async fn silent_server_times_out_within_the_timeout() {
        // The kernel completes the handshake into the backlog; nobody ever answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut check = http_check(&format!("http://{addr}/"));
        check.timeout_ms = 300;
        let result = probe_bounded(Prober::default(), &check).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::Timeout);
        assert_eq!(result.message, "timed out after 300 ms");
        drop(listener);
    }

    #[tokio::test]
    async fn endless_body_is_cut_off_at_the_limit() {
        for body_contains in [Some("needle"), None] {
            let mut server = serve(Reply::Endless).await;
            let mut check = http_check(&server.url("/"));
            check.timeout_ms = 10_000;
            if let Some(text) = body_contains {
                check = with_body_contains(check, text);
            }
            let result = probe_bounded(Prober::default(), &check).await;
            let want = match body_contains {
                Some(_) => (Status::Critical, Reason::BodyMismatch),
                None => (Status::Ok, Reason::None),
            };
            assert_eq!((result.status, result.reason), want, "{result:?}");
            if body_contains.is_some() {
                let searched = format!("searched {HTTP_BODY_BYTES_MAX} bytes");
                assert!(result.message.contains(&searched), "{}", result.message);
            }
            // The probe hung up after the limit: the server's writes fail long before it
            // could send its gigabyte (what it wrote beyond the limit sits in socket buffers).
            let written =
                tokio::time::timeout(Duration::from_millis(TEST_STEP_MS), server.written.recv())
                    .await
                    .expect("the server noticed the client leave")
                    .expect("a count");
            assert!(written < 64 * 1024 * 1024, "server wrote {written} bytes");
        }
    }

    #[tokio::test]
    async fn slow_answer_is_slow() {
        let server = serve(Reply::Delayed(300, OK_HELLO)).await;
        let mut check = http_check(&server.url("/"));
        check.latency = Latency {
            warn_ms: Some(100),
            crit_ms: None,
        };
        let result = probe_bounded(Prober::default(), &check).await;
        assert_eq!(result.status, Status::Warning, "{result:?}");
        assert_eq!(result.reason, Reason::Slow);
        assert!(result.latency_ms >= 300, "{result:?}");

        check.latency.crit_ms = Some(200);
        let result = probe_bounded(Prober::default(), &check).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::Slow);
    }

    #[tokio::test]
    async fn redirect_loop_stops_at_the_limit() {
        let mut server = serve(Reply::Fixed(REDIRECT_LOOP)).await;
        let result = probe_bounded(Prober::default(), &http_check(&server.url("/"))).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::Protocol);
        // The first request plus the redirects followed, each on its own connection.
        let mut connections = 0;
        while server.peers.try_recv().is_ok() {
            connections += 1;
        }
        assert_eq!(connections, HTTP_REDIRECTS_MAX + 1);
    }

    #[tokio::test]
    async fn plain_http_behind_https_url_is_tls() {
        let server = serve(Reply::Immediate(OK_HELLO)).await;
        let check = http_check(&format!("https://{}/", server.addr));
        let result = probe_bounded(Prober::default(), &check).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::Tls, "{result:?}");
    }

    #[tokio::test]
    async fn source_ip_is_the_peer_the_server_sees() {
        let mut sources = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
        if std::net::TcpListener::bind("127.0.0.2:0").is_ok() {
            sources.push(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        } else {
            println!("skipping the 127.0.0.2 case: this OS cannot bind 127.0.0.2");
        }
        for source in sources {
            let mut server = serve(Reply::Fixed(OK_HELLO)).await;
            let check = http_check(&server.url("/"));
            let result = probe_bounded(Prober::new(Some(source)), &check).await;
            assert_eq!(result.status, Status::Ok, "{result:?}");
            let peer = server.peers.try_recv().expect("a connection");
            assert_eq!(peer.ip(), source);
        }
    }

    #[tokio::test]
    async fn user_agent_names_consentry() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let check = http_check(&format!("http://{addr}/"));
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = vec![0u8; TEST_REQUEST_BYTES_MAX];
            let n = stream.read(&mut request).await.expect("read");
            let _ = stream.write_all(OK_HELLO.as_bytes()).await;
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        let result = probe_bounded(Prober::default(), &check).await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        let request = server.await.expect("server");
        let want = format!("user-agent: consentry/{}", env!("CARGO_PKG_VERSION"));
        assert!(request.to_ascii_lowercase().contains(&want), "{request}");
    }

    /// An error with a source, to build chains like reqwest's.
    #[derive(Debug)]
    struct Layer(Box<dyn Error + Send + Sync>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("error sending request")
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn error_chains_map_to_reasons() {
        let dns = Layer(Box::new(DnsError::Lookup {
            host: "nope.invalid".into(),
            source: io::Error::other("Name or service not known"),
        }));
        let refused = Layer(Box::new(io::Error::from(io::ErrorKind::ConnectionRefused)));
        let tls = Layer(Box::new(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
        )));
        let nested_tls = Layer(Box::new(io::Error::other(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        ))));
        let unreachable = Layer(Box::new(io::Error::other("No route to host")));
        let cases: [(&Layer, Reason); 5] = [
            (&dns, Reason::Dns),
            (&refused, Reason::Refused),
            (&tls, Reason::Tls),
            (&nested_tls, Reason::Tls),
            (&unreachable, Reason::Unreachable),
        ];
        for (chain, want) in cases {
            let outcome = classify(chain).expect("classified");
            assert_eq!(outcome.status, Status::Critical, "{chain:?}");
            assert_eq!(outcome.reason, want, "{chain:?}");
        }
        assert!(classify(&Layer(Box::new(Layer(Box::new(io::Error::other("x")))))).is_some());
    }

    #[test]
    fn ranges_read_like_the_config() {
        let ranges = [
            StatusRange { lo: 200, hi: 299 },
            StatusRange { lo: 304, hi: 304 },
        ];
        assert_eq!(describe_ranges(&ranges), "200-299, 304");
    }
}

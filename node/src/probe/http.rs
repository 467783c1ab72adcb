//! HTTP(S) probe: one request per hop on a fresh connection of its own (hyper's HTTP/1
//! client over our socket, TLS from the prober's shared settings), status and a bounded
//! body checked, each phase timed.
//!
//! Perfdata, in seconds, for the hop that was judged (the last one): `dns` (resolution),
//! `connect` (TCP handshake), `tls` (https only), `first_byte` (request sent to response
//! head), and `total`, the whole probe including any redirects followed. Like check_http's
//! `time_*` figures these are durations of each phase, not offsets from the start.

use std::error::Error;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use consentry_cluster::model::{Credentials, HttpSpec, Perf, Reason, StatusRange};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::tcp::{self, DnsError};
use super::{Outcome, ProbeContext};

/// Most redirects any check may follow (its `redirects_max` is capped here; the config
/// allows as many).
pub const HTTP_REDIRECTS_MAX: usize = 10;

/// Most body bytes a probe reads; a target that sends more is cut off there (the
/// connection is dropped), and `body_contains` / `body_regex` are judged on this prefix.
pub const HTTP_BODY_BYTES_MAX: usize = 1024 * 1024;

/// Most bytes of a response head (status line and headers) a probe accepts.
const HTTP_HEAD_BYTES_MAX: usize = 64 * 1024;

/// Most memory a `body_regex` may compile to (program and lazy DFA each).
const HTTP_REGEX_BYTES_MAX: usize = 1024 * 1024;

/// Expected statuses when a check lists none (config normally fills this in).
const HTTP_EXPECT_STATUS_DEFAULT: &[StatusRange] = &[StatusRange { lo: 200, hi: 399 }];

const USER_AGENT: &str = concat!("consentry/", env!("CARGO_PKG_VERSION"));

/// Where one request goes, from the check's URL or a redirect's `Location`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: bool,
    /// Name or IP literal, without IPv6 brackets.
    host: String,
    port: u16,
    /// Whether the URL named a port that differs from the scheme's default.
    port_shown: bool,
    /// Path and query, never empty (at least `/`).
    path: String,
}

/// What the probe wants from one hop.
struct Plan<'a> {
    spec: &'a HttpSpec,
    method: Method,
    /// Return a 3xx with `Location` as a redirect instead of judging it.
    follow: bool,
    /// Keep the body prefix (a body check is configured).
    keep_body: bool,
}

/// What one hop found.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    /// Set when the answer is a redirect the plan follows.
    location: Option<String>,
    /// Set when the body was read.
    body: Option<BodyPrefix>,
}

/// The first `HTTP_BODY_BYTES_MAX` bytes of a body (kept only when a check needs them).
#[derive(Debug, Default)]
struct BodyPrefix {
    kept: Vec<u8>,
    read_bytes: usize,
}

/// How long each phase of the judged hop took.
#[derive(Debug, Default, Clone, Copy)]
struct Phases {
    dns: Option<Duration>,
    connect: Option<Duration>,
    tls: Option<Duration>,
    first_byte: Option<Duration>,
}

/// Probes `spec` once: follows redirects up to its `redirects_max`, each on a new
/// connection, and judges the last answer.
pub(super) async fn probe(spec: &HttpSpec, ctx: &ProbeContext) -> Outcome {
    let started = now();
    let mut phases = Phases::default();
    let outcome = run(spec, ctx, &mut phases).await;
    outcome.perf(phases.perf(started.elapsed()))
}

/// Probes time their own phases. The clock is read only to measure elapsed time within
/// one probe (never compared across machines or probes), so it is read here rather than
/// passed in from the composition root.
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

async fn run(spec: &HttpSpec, ctx: &ProbeContext, phases: &mut Phases) -> Outcome {
    let method = if spec.method.eq_ignore_ascii_case("GET") {
        Method::GET
    } else if spec.method.eq_ignore_ascii_case("HEAD") {
        Method::HEAD
    } else {
        return Outcome::unknown(format!(
            "unsupported HTTP method {:?} (use GET or HEAD)",
            spec.method
        ));
    };
    let regex = match spec.body_regex.as_deref().map(compile_regex).transpose() {
        Ok(regex) => regex,
        Err(message) => return Outcome::unknown(message),
    };
    let first = match Target::parse(&spec.url) {
        Ok(target) => target,
        Err(message) => return Outcome::unknown(format!("invalid url {:?}: {message}", spec.url)),
    };
    let redirects_max = usize::try_from(spec.redirects_max)
        .unwrap_or(usize::MAX)
        .min(HTTP_REDIRECTS_MAX);
    let plan = Plan {
        spec,
        method,
        follow: redirects_max > 0,
        keep_body: spec.body_contains.is_some() || regex.is_some(),
    };
    let authorization = match spec
        .basic_auth
        .as_ref()
        .map(basic_authorization)
        .transpose()
    {
        Ok(value) => value,
        Err(message) => return Outcome::unknown(message),
    };

    let mut target = first.clone();
    let mut redirects = 0;
    loop {
        *phases = Phases::default();
        // Credentials go to the URL's own origin only, never to where a redirect points
        // (curl's rule without --location-trusted).
        let auth = authorization
            .as_ref()
            .filter(|_| target.same_origin(&first));
        let answer = match hop(&target, &plan, auth, ctx, phases).await {
            Ok(answer) => answer,
            Err(outcome) => return outcome,
        };
        let Some(location) = answer.location else {
            return judge(spec, &plan.method, &answer, regex.as_ref(), redirects);
        };
        if redirects >= redirects_max {
            return Outcome::critical(
                Reason::Protocol,
                format!(
                    "more than {redirects_max} redirects (last: HTTP {} to {location:?})",
                    answer.status.as_u16()
                ),
            );
        }
        target = match target.follow(&location) {
            Ok(next) => next,
            Err(message) => {
                return Outcome::critical(
                    Reason::Protocol,
                    format!(
                        "HTTP {} with an invalid Location {location:?}: {message}",
                        answer.status.as_u16()
                    ),
                )
            }
        };
        redirects += 1;
    }
}

/// One request on one new connection: resolve, connect, TLS, exchange.
async fn hop(
    target: &Target,
    plan: &Plan<'_>,
    authorization: Option<&HeaderValue>,
    ctx: &ProbeContext,
    phases: &mut Phases,
) -> Result<Answer, Outcome> {
    let source_ip = ctx.source_ip();
    let resolving = now();
    let addrs = tcp::resolve(&target.host, target.port, source_ip)
        .await
        .map_err(|e| tcp::outcome_of_dns(&e))?;
    phases.dns = Some(resolving.elapsed());

    let connecting = now();
    let stream = tcp::connect_first(&addrs, source_ip).await?;
    phases.connect = Some(connecting.elapsed());
    // The request leaves in one write; without Nagle it leaves at once. A failure here
    // only costs latency, so it is not worth failing the probe for.
    let _ = stream.set_nodelay(true);

    let request = request(target, &plan.method, authorization)?;
    if !target.https {
        return exchange(stream, request, plan, phases).await;
    }
    let server_name = ServerName::try_from(target.host.as_str())
        .map(|name| name.to_owned())
        .map_err(|e| {
            Outcome::unknown(format!(
                "{:?} cannot be a TLS server name: {e}",
                target.host
            ))
        })?;
    let handshaking = now();
    let connector = TlsConnector::from(ctx.tls(plan.spec.tls_verify));
    let stream = connector
        .connect(server_name, stream)
        .await
        .map_err(|e| outcome_of_tls(&e))?;
    phases.tls = Some(handshaking.elapsed());
    exchange(stream, request, plan, phases).await
}

/// Runs one HTTP/1.1 exchange over `io`, driving hyper's connection in this task (no
/// detached spawn), and returns when the answer is known. Dropping `io` on return closes
/// the connection, which is how a body beyond the limit is cut off.
async fn exchange<S>(
    io: S,
    request: Request<Empty<Bytes>>,
    plan: &Plan<'_>,
    phases: &mut Phases,
) -> Result<Answer, Outcome>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = http1::Builder::new()
        .max_header_size(HTTP_HEAD_BYTES_MAX)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| outcome_of_hyper(&e))?;
    let mut connection = std::pin::pin!(connection);
    let talk = talk(&mut sender, request, plan, phases);
    let mut talk = std::pin::pin!(talk);
    let mut connection_result = None;
    loop {
        tokio::select! {
            biased;
            answer = &mut talk => {
                return answer.map_err(|e| match &connection_result {
                    // The connection's own error is the cause; the exchange's only says
                    // that it was cut short.
                    Some(Err(cause)) => outcome_of_hyper(cause),
                    _ => outcome_of_hyper(&e),
                });
            }
            done = &mut connection, if connection_result.is_none() => {
                // Ended (the server closed after answering, or failed): what was read
                // is still buffered for `talk`, which finishes on its own.
                connection_result = Some(done);
            }
        }
    }
}

/// Sends `request` and reads what the plan needs of the answer.
async fn talk(
    sender: &mut http1::SendRequest<Empty<Bytes>>,
    request: Request<Empty<Bytes>>,
    plan: &Plan<'_>,
    phases: &mut Phases,
) -> Result<Answer, hyper::Error> {
    let sending = now();
    let mut response = sender.send_request(request).await?;
    phases.first_byte = Some(sending.elapsed());
    let status = response.status();
    if plan.follow && is_followed_redirect(status) {
        if let Some(location) = location(&response) {
            return Ok(Answer {
                status,
                location: Some(location),
                body: None,
            });
        }
    }
    let wants_body = plan.method != Method::HEAD && verdict_of_status(plan.spec, status).is_none();
    if !wants_body {
        return Ok(Answer {
            status,
            location: None,
            body: None,
        });
    }
    let body = read_body_prefix(response.body_mut(), plan.keep_body).await?;
    Ok(Answer {
        status,
        location: None,
        body: Some(body),
    })
}

/// Reads the body frame by frame up to `HTTP_BODY_BYTES_MAX` bytes and stops there, so
/// an endless body costs at most that much memory. Keeps the bytes only when `keep`.
///
/// # Errors
///
/// The transfer's error when the body breaks off before its end or the limit.
async fn read_body_prefix(body: &mut Incoming, keep: bool) -> Result<BodyPrefix, hyper::Error> {
    let mut prefix = BodyPrefix::default();
    while prefix.read_bytes < HTTP_BODY_BYTES_MAX {
        let Some(frame) = body.frame().await else {
            break;
        };
        // Trailers carry no body bytes.
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let take_bytes = data.len().min(HTTP_BODY_BYTES_MAX - prefix.read_bytes);
        if keep {
            prefix.kept.extend_from_slice(&data[..take_bytes]);
        }
        prefix.read_bytes += take_bytes;
    }
    Ok(prefix)
}

/// Judges the final answer: status first, then the body checks.
fn judge(
    spec: &HttpSpec,
    method: &Method,
    answer: &Answer,
    regex: Option<&regex::bytes::Regex>,
    redirects: usize,
) -> Outcome {
    if let Some(verdict) = verdict_of_status(spec, answer.status) {
        return verdict;
    }
    let code = answer.status.as_u16();
    let what = match redirects {
        0 => format!("HTTP {code}"),
        1 => format!("HTTP {code} after 1 redirect"),
        n => format!("HTTP {code} after {n} redirects"),
    };
    if *method == Method::HEAD {
        return Outcome::ok(what);
    }
    let Some(body) = &answer.body else {
        // `talk` reads the body of every GET whose status passed.
        return Outcome::ok(what);
    };
    if let Some(text) = &spec.body_contains {
        if !contains(&body.kept, text.as_bytes()) {
            return Outcome::critical(
                Reason::BodyMismatch,
                format!(
                    "{what}, body does not contain {text:?} (searched {} bytes)",
                    body.kept.len()
                ),
            );
        }
    }
    if let Some(regex) = regex {
        if !regex.is_match(&body.kept) {
            return Outcome::critical(
                Reason::BodyMismatch,
                format!(
                    "{what}, body does not match /{}/ (searched {} bytes)",
                    regex.as_str(),
                    body.kept.len()
                ),
            );
        }
    }
    Outcome::ok(what)
}

/// The verdict a status alone decides, or `None` when the status passes and the body
/// is judged next.
fn verdict_of_status(spec: &HttpSpec, status: StatusCode) -> Option<Outcome> {
    let code = status.as_u16();
    // The seed service's fallback for basic-auth sites it has no login for: an answer
    // at all shows the server is up.
    if status == StatusCode::UNAUTHORIZED && spec.layer4_on_401 {
        return Some(Outcome::ok(
            "HTTP 401 (judged at layer 4: the server answered)",
        ));
    }
    let expect = if spec.expect_status.is_empty() {
        HTTP_EXPECT_STATUS_DEFAULT
    } else {
        &spec.expect_status
    };
    let expected = expect
        .iter()
        .any(|range| (range.lo..=range.hi).contains(&code));
    // A server error is never OK, whatever the check expects (the seed's rule).
    if status.is_server_error() || !expected {
        let expected = describe_ranges(expect);
        return Some(Outcome::critical(
            Reason::BadStatus,
            format!("HTTP {code} (expected {expected})"),
        ));
    }
    None
}

/// 301, 302, 303, 307 and 308 point elsewhere; 300 and 304 are answers in themselves.
fn is_followed_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

fn location(response: &Response<Incoming>) -> Option<String> {
    let value = response.headers().get(header::LOCATION)?;
    // A non-ASCII Location is not followed; the 3xx is judged as it is.
    value.to_str().ok().map(str::to_string)
}

fn request(
    target: &Target,
    method: &Method,
    authorization: Option<&HeaderValue>,
) -> Result<Request<Empty<Bytes>>, Outcome> {
    let mut builder = Request::builder()
        .method(method.clone())
        .uri(target.path.as_str())
        .header(header::HOST, target.host_header())
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::ACCEPT, "*/*")
        .header(header::CONNECTION, "close");
    if let Some(value) = authorization {
        builder = builder.header(header::AUTHORIZATION, value.clone());
    }
    builder
        .body(Empty::new())
        .map_err(|e| Outcome::unknown(format!("cannot build the request: {e}")))
}

/// `Basic <base64(user:password)>`, marked sensitive so it is never logged.
fn basic_authorization(credentials: &Credentials) -> Result<HeaderValue, String> {
    let pair = format!("{}:{}", credentials.user, credentials.password);
    let mut value = HeaderValue::from_str(&format!("Basic {}", base64(pair.as_bytes())))
        .map_err(|e| format!("cannot use the basic_auth credentials: {e}"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Standard base64 with padding (RFC 4648 section 4); too small a need for a crate.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                let sextet = (n >> (18 - 6 * i)) & 0x3f;
                out.push(char::from(ALPHABET[sextet as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn compile_regex(pattern: &str) -> Result<regex::bytes::Regex, String> {
    regex::bytes::RegexBuilder::new(pattern)
        .size_limit(HTTP_REGEX_BYTES_MAX)
        .dfa_size_limit(HTTP_REGEX_BYTES_MAX)
        .build()
        .map_err(|e| format!("body_regex is not a valid regular expression: {e}"))
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

/// A TLS handshake failure: rustls' own reason when it has one.
fn outcome_of_tls(e: &io::Error) -> Outcome {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return Outcome::critical(Reason::Tls, super::tls_config::describe_tls_error(tls));
    }
    match e.kind() {
        io::ErrorKind::TimedOut => Outcome::critical(Reason::Timeout, format!("timed out: {e}")),
        _ => Outcome::critical(Reason::Tls, format!("TLS handshake failed: {e}")),
    }
}

fn outcome_of_hyper(e: &hyper::Error) -> Outcome {
    if e.is_parse() || e.is_parse_too_large() || e.is_parse_status() {
        return Outcome::critical(Reason::Protocol, format!("invalid HTTP response: {e}"));
    }
    if e.is_incomplete_message() {
        return Outcome::critical(
            Reason::Protocol,
            "connection closed before the response was complete",
        );
    }
    if let Some(outcome) = classify(e) {
        return outcome;
    }
    Outcome::critical(Reason::Protocol, format!("HTTP exchange failed: {e}"))
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
            return Some(Outcome::critical(
                Reason::Tls,
                super::tls_config::describe_tls_error(tls),
            ));
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            innermost_io = Some(io);
            // io::Error::source skips the error an io::Error wraps (tokio-rustls wraps
            // its rustls::Error, hyper wraps that again), so step into it instead.
            if let Some(inner) = io.get_ref() {
                next = Some(inner);
                continue;
            }
        }
        next = e.source();
    }
    innermost_io.map(tcp::outcome_of_io)
}

impl Target {
    /// Parses an absolute `http://` or `https://` URL.
    ///
    /// # Errors
    ///
    /// What is wrong with it, for the user.
    fn parse(url: &str) -> Result<Self, String> {
        // The fragment is the client's business and never sent.
        let url = url.split('#').next().unwrap_or_default();
        let uri: Uri = url.parse().map_err(|e| format!("{e}"))?;
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) => return Err(format!("scheme {s:?} is not http or https")),
            None => return Err("not an absolute http:// or https:// URL".to_string()),
        };
        let host = uri.host().filter(|h| !h.is_empty()).ok_or("no host")?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let default_port = if https { 443 } else { 80 };
        let port = uri.port_u16().unwrap_or(default_port);
        let path = match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("") => "/".to_string(),
            Some(p) if p.starts_with('/') => p.to_string(),
            Some(p) => format!("/{p}"),
        };
        Ok(Self {
            https,
            host: host.to_ascii_lowercase(),
            port,
            port_shown: port != default_port,
            path,
        })
    }

    /// Where a redirect's `Location` (absolute, scheme-relative, absolute-path or
    /// relative) points from here.
    ///
    /// # Errors
    ///
    /// What is wrong with the location.
    fn follow(&self, location: &str) -> Result<Self, String> {
        let location = location.trim();
        let location = location.split('#').next().unwrap_or_default();
        if has_scheme(location) {
            return Self::parse(location);
        }
        let scheme = if self.https { "https" } else { "http" };
        if location.starts_with("//") {
            return Self::parse(&format!("{scheme}:{location}"));
        }
        let path = if location.starts_with('/') {
            location.to_string()
        } else {
            let base = self.path.split('?').next().unwrap_or("/");
            if location.starts_with('?') || location.is_empty() {
                format!("{base}{location}")
            } else {
                let dir = base.rfind('/').map_or("/", |slash| &base[..=slash]);
                format!("{dir}{location}")
            }
        };
        // Checks the characters; the server resolves any `..` itself.
        hyper::http::uri::PathAndQuery::try_from(path.as_str()).map_err(|e| format!("{e}"))?;
        Ok(Self {
            path,
            ..self.clone()
        })
    }

    fn same_origin(&self, other: &Self) -> bool {
        self.https == other.https && self.host == other.host && self.port == other.port
    }

    /// The `Host` header: the name (IPv6 in brackets), with the port when not the
    /// scheme's default.
    fn host_header(&self) -> String {
        let host = if self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()) {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port_shown {
            format!("{host}:{}", self.port)
        } else {
            host
        }
    }
}

/// Whether `location` starts with `scheme:` (RFC 3986: a letter, then letters, digits,
/// `+`, `-` or `.`).
fn has_scheme(location: &str) -> bool {
    let Some((scheme, _)) = location.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

impl Phases {
    /// The measured phases and `total`, in seconds.
    fn perf(&self, total: Duration) -> Vec<Perf> {
        let phases = [
            ("dns", self.dns),
            ("connect", self.connect),
            ("tls", self.tls),
            ("first_byte", self.first_byte),
            ("total", Some(total)),
        ];
        phases
            .into_iter()
            .filter_map(|(label, d)| d.map(|d| Perf::new(label, d.as_secs_f64(), "s")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::Arc;

    use consentry_cluster::model::{CheckSpec, Latency, ProbeResult, ProbeSpec, Status};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
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
    /// Pause between the bytes a trickling server sends.
    const TEST_TRICKLE_BYTE_MS: u64 = 100;
    /// Peers, requests and byte counts the test server reports, at most.
    const TEST_REPORTS_MAX: usize = 64;

    const OK_HELLO: &str =
        "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world";
    const UNAVAILABLE: &str =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndown";
    const INTERNAL_ERROR: &str =
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    const UNAUTHORIZED: &str = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic \
                                realm=\"x\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    const REDIRECT_LOOP: &str =
        "HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    const REDIRECT_TO_FINAL: &str =
        "HTTP/1.1 301 Moved\r\nLocation: final?x=1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    const NOT_HTTP: &str = "SSH-2.0-OpenSSH_9.6\r\n\r\n";

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
        /// Reads the request, then sends the answer one byte every `TEST_TRICKLE_BYTE_MS`.
        Trickle(&'static str),
        /// Reads the request; the first answer when the path is `/`, else the second.
        ByPath(&'static str, &'static str),
    }

    struct Server {
        addr: SocketAddr,
        /// Each connection's peer address, as the server saw it.
        peers: mpsc::Receiver<SocketAddr>,
        /// Each request's head, as text.
        requests: mpsc::Receiver<String>,
        /// Body bytes each `Endless` connection wrote before the client went away.
        written: mpsc::Receiver<u64>,
        /// The SNI each TLS connection carried (`None`: no SNI).
        sni: mpsc::Receiver<Option<String>>,
    }

    impl Server {
        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }
    }

    struct Reports {
        peers: mpsc::Sender<SocketAddr>,
        requests: mpsc::Sender<String>,
        written: mpsc::Sender<u64>,
        sni: mpsc::Sender<Option<String>>,
    }

    async fn serve(reply: Reply) -> Server {
        serve_with(reply, None).await
    }

    /// A server answering over TLS with a fresh self-signed certificate for `localhost`.
    async fn serve_tls(reply: Reply) -> Server {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .expect("server config");
        serve_with(
            reply,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
        .await
    }

    async fn serve_with(reply: Reply, tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (peers_tx, peers) = mpsc::channel(TEST_REPORTS_MAX);
        let (requests_tx, requests) = mpsc::channel(TEST_REPORTS_MAX);
        let (written_tx, written) = mpsc::channel(TEST_REPORTS_MAX);
        let (sni_tx, sni) = mpsc::channel(TEST_REPORTS_MAX);
        let reports = Arc::new(Reports {
            peers: peers_tx,
            requests: requests_tx,
            written: written_tx,
            sni: sni_tx,
        });
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let _ = reports.peers.try_send(peer);
                let reports = reports.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let Some(acceptor) = tls else {
                        return answer(stream, reply, &reports).await;
                    };
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let sni = stream.get_ref().1.server_name().map(str::to_string);
                    let _ = reports.sni.try_send(sni);
                    answer(stream, reply, &reports).await;
                });
            }
        });
        Server {
            addr,
            peers,
            requests,
            written,
            sni,
        }
    }

    async fn answer<S>(mut stream: S, reply: Reply, reports: &Reports)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if let Reply::Immediate(text) = reply {
            let _ = stream.write_all(text.as_bytes()).await;
            return;
        }
        let request = read_request(&mut stream).await;
        let path = request.split(' ').nth(1).unwrap_or_default().to_string();
        let _ = reports.requests.try_send(request);
        match reply {
            Reply::Fixed(text) | Reply::Immediate(text) => {
                let _ = stream.write_all(text.as_bytes()).await;
            }
            Reply::ByPath(root, other) => {
                let text = if path == "/" { root } else { other };
                let _ = stream.write_all(text.as_bytes()).await;
            }
            Reply::Delayed(delay_ms, text) => {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                let _ = stream.write_all(text.as_bytes()).await;
            }
            Reply::Trickle(text) => {
                for byte in text.as_bytes() {
                    if stream.write_all(&[*byte]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(TEST_TRICKLE_BYTE_MS)).await;
                }
            }
            Reply::Endless => {
                let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    let _ = reports.written.try_send(0);
                    return;
                }
                let zeros = vec![0u8; TEST_ENDLESS_CHUNK_BYTES];
                let mut written = 0u64;
                while written < TEST_ENDLESS_BYTES_MAX {
                    if stream.write_all(&zeros).await.is_err() {
                        break;
                    }
                    written += zeros.len() as u64;
                }
                let _ = reports.written.try_send(written);
            }
        }
        let _ = stream.shutdown().await;
    }

    /// Reads up to the end of the request head (or `TEST_REQUEST_BYTES_MAX`).
    async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> String {
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while request.len() < TEST_REQUEST_BYTES_MAX {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
            if request.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        String::from_utf8_lossy(&request).into_owned()
    }

    fn http_check(url: &str) -> CheckSpec {
        let mut check = CheckSpec::for_test("http-test");
        check.probe = ProbeSpec::Http(HttpSpec {
            url: url.to_string(),
            method: "GET".into(),
            expect_status: vec![StatusRange { lo: 200, hi: 399 }],
            body_contains: None,
            body_regex: None,
            tls_verify: true,
            redirects_max: 5,
            basic_auth: None,
            layer4_on_401: false,
        });
        check.timeout_ms = 3_000;
        check
    }

    /// `check` with its HTTP spec changed by `edit`.
    fn with(mut check: CheckSpec, edit: impl FnOnce(&mut HttpSpec)) -> CheckSpec {
        if let ProbeSpec::Http(spec) = &mut check.probe {
            edit(spec);
        }
        check
    }

    fn with_body_contains(check: CheckSpec, text: &str) -> CheckSpec {
        with(check, |h| h.body_contains = Some(text.to_string()))
    }

    /// Runs the probe, failing the test if it outlives its own timeout plus slack.
    async fn probe_bounded(prober: Prober, check: &CheckSpec) -> ProbeResult {
        let bound = Duration::from_millis(check.timeout_ms + TEST_TIMEOUT_SLACK_MS);
        tokio::time::timeout(bound, prober.probe(check))
            .await
            .expect("the probe ended within its timeout")
    }

    async fn next_report<T>(rx: &mut mpsc::Receiver<T>) -> T {
        tokio::time::timeout(Duration::from_millis(TEST_STEP_MS), rx.recv())
            .await
            .expect("reported in time")
            .expect("a report")
    }

    fn perf_labels(result: &ProbeResult) -> Vec<&str> {
        result.perfdata.iter().map(|p| p.label.as_str()).collect()
    }

    #[tokio::test]
    async fn ok_200() {
        let server = serve(Reply::Fixed(OK_HELLO)).await;
        let check = with_body_contains(http_check(&server.url("/")), "hello");
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        assert_eq!(result.reason, Reason::None);
        assert!(
            result.message.starts_with("HTTP 200 in "),
            "{}",
            result.message
        );
    }

    #[tokio::test]
    async fn phases_are_perfdata_in_seconds() {
        let server = serve(Reply::Fixed(OK_HELLO)).await;
        let result = probe_bounded(Prober::for_test(None), &http_check(&server.url("/"))).await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        assert_eq!(
            perf_labels(&result),
            ["dns", "connect", "first_byte", "total"]
        );
        for perf in &result.perfdata {
            assert_eq!(perf.unit, "s", "{perf:?}");
            assert!(perf.value >= 0.0 && perf.value < 3.0, "{perf:?}");
        }
        let total = result.perfdata.last().expect("total").value;
        let parts: f64 = result.perfdata.iter().rev().skip(1).map(|p| p.value).sum();
        assert!(
            parts <= total,
            "phases {parts} s exceed the total {total} s"
        );
    }

    #[tokio::test]
    async fn failures_keep_the_phases_they_reached() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let result = probe_bounded(
            Prober::for_test(None),
            &http_check(&format!("http://{addr}/")),
        )
        .await;
        assert_eq!(result.reason, Reason::Refused, "{result:?}");
        assert_eq!(perf_labels(&result), ["dns", "total"]);
    }

    #[tokio::test]
    async fn request_names_host_agent_and_closes() {
        let mut server = serve(Reply::Fixed(OK_HELLO)).await;
        let result =
            probe_bounded(Prober::for_test(None), &http_check(&server.url("/a?b=c"))).await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        let request = next_report(&mut server.requests).await.to_ascii_lowercase();
        assert!(request.starts_with("get /a?b=c http/1.1\r\n"), "{request}");
        let agent = format!("user-agent: consentry/{}", env!("CARGO_PKG_VERSION"));
        assert!(request.contains(&agent), "{request}");
        assert!(
            request.contains(&format!("host: {}\r\n", server.addr)),
            "{request}"
        );
        assert!(request.contains("connection: close\r\n"), "{request}");
        assert!(!request.contains("authorization"), "{request}");
    }

    #[tokio::test]
    async fn basic_auth_is_sent() {
        let mut server = serve(Reply::Fixed(OK_HELLO)).await;
        let check = with(http_check(&server.url("/")), |h| {
            h.basic_auth = Some(Credentials {
                user: "Aladdin".into(),
                password: "open sesame".into(),
            });
        });
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        let request = next_report(&mut server.requests).await;
        // RFC 7617's example.
        assert!(
            request.contains("authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn head_reads_no_body() {
        let server = serve(Reply::Fixed(OK_HELLO)).await;
        let check = with(http_check(&server.url("/")), |h| h.method = "HEAD".into());
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
    }

    #[tokio::test]
    async fn status_503_is_bad_status() {
        let server = serve(Reply::Fixed(UNAVAILABLE)).await;
        let result = probe_bounded(Prober::for_test(None), &http_check(&server.url("/"))).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::BadStatus);
        assert_eq!(result.message, "HTTP 503 (expected 200-399)");
    }

    #[tokio::test]
    async fn server_error_is_critical_even_when_expected() {
        let server = serve(Reply::Fixed(INTERNAL_ERROR)).await;
        let check = with(http_check(&server.url("/")), |h| {
            h.expect_status = vec![StatusRange { lo: 200, hi: 599 }];
        });
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::BadStatus);
    }

    #[tokio::test]
    async fn status_401_is_judged_at_layer_4_only_when_asked() {
        let server = serve(Reply::Fixed(UNAUTHORIZED)).await;
        let check = http_check(&server.url("/"));
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::BadStatus);
        assert_eq!(result.message, "HTTP 401 (expected 200-399)");

        let check = with(check, |h| h.layer4_on_401 = true);
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        assert!(
            result
                .message
                .starts_with("HTTP 401 (judged at layer 4: the server answered) in "),
            "{}",
            result.message
        );
    }

    #[tokio::test]
    async fn body_without_the_text_is_body_mismatch() {
        let server = serve(Reply::Fixed(OK_HELLO)).await;
        let check = with_body_contains(http_check(&server.url("/")), "welcome");
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::BodyMismatch);
        assert!(result.message.contains("\"welcome\""), "{}", result.message);
    }

    #[tokio::test]
    async fn body_regex_matches_or_is_body_mismatch() {
        let server = serve(Reply::Fixed(OK_HELLO)).await;
        // (pattern, status, reason)
        let cases = [
            (r"^hel+o\s+w", Status::Ok, Reason::None),
            (r"(?i)WORLD$", Status::Ok, Reason::None),
            (r"^world", Status::Critical, Reason::BodyMismatch),
            (r"hello(", Status::Unknown, Reason::Internal),
        ];
        for (pattern, status, reason) in cases {
            let check = with(http_check(&server.url("/")), |h| {
                h.body_regex = Some(pattern.to_string());
            });
            let result = probe_bounded(Prober::for_test(None), &check).await;
            assert_eq!(
                (result.status, result.reason),
                (status, reason),
                "{pattern}: {result:?}"
            );
        }
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let check = http_check(&format!("http://{addr}/"));
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::Refused);
        assert_eq!(result.message, "connection refused");
    }

    #[tokio::test]
    async fn unknown_name_is_dns() {
        // RFC 6761: .invalid never resolves.
        let check = http_check("http://consentry-test.invalid/");
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::Dns);
    }

    #[tokio::test]
    async fn urls_that_are_not_http_are_unknown() {
        for url in [
            "ftp://example.com/",
            "/relative",
            "http:///nohost",
            "not a url",
        ] {
            let result = probe_bounded(Prober::for_test(None), &http_check(url)).await;
            assert_eq!(result.status, Status::Unknown, "{url}: {result:?}");
        }
    }

    #[tokio::test]
    async fn not_http_is_protocol() {
        let server = serve(Reply::Fixed(NOT_HTTP)).await;
        let result = probe_bounded(Prober::for_test(None), &http_check(&server.url("/"))).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::Protocol);
    }

    #[tokio::test]
    async fn silent_server_times_out_within_the_timeout() {
        // The kernel completes the handshake into the backlog; nobody ever answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut check = http_check(&format!("http://{addr}/"));
        check.timeout_ms = 300;
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::Timeout);
        assert_eq!(result.message, "timed out after 300 ms");
        drop(listener);
    }

    #[tokio::test]
    async fn trickling_server_times_out_within_the_timeout() {
        let server = serve(Reply::Trickle(OK_HELLO)).await;
        let mut check = http_check(&server.url("/"));
        check.timeout_ms = 500;
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::Timeout);
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
            let result = probe_bounded(Prober::for_test(None), &check).await;
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
            let written = next_report(&mut server.written).await;
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
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Warning, "{result:?}");
        assert_eq!(result.reason, Reason::Slow);
        assert!(result.latency_ms >= 300, "{result:?}");

        check.latency.crit_ms = Some(200);
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::Slow);
    }

    #[tokio::test]
    async fn relative_redirect_is_followed_on_a_new_connection() {
        let mut server = serve(Reply::ByPath(REDIRECT_TO_FINAL, OK_HELLO)).await;
        let check = with_body_contains(http_check(&server.url("/")), "hello");
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        assert!(
            result.message.starts_with("HTTP 200 after 1 redirect in "),
            "{}",
            result.message
        );
        let first = next_report(&mut server.requests).await;
        let second = next_report(&mut server.requests).await;
        assert!(first.starts_with("GET / "), "{first}");
        assert!(second.starts_with("GET /final?x=1 "), "{second}");
        let mut connections = 0;
        while server.peers.try_recv().is_ok() {
            connections += 1;
        }
        assert_eq!(connections, 2);
    }

    #[tokio::test]
    async fn absolute_redirect_to_another_origin_drops_the_credentials() {
        let mut elsewhere = serve(Reply::Fixed(OK_HELLO)).await;
        let to_elsewhere: &'static str = Box::leak(
            format!(
                "HTTP/1.1 302 Found\r\nLocation: http://{}/there\r\nContent-Length: 0\r\n\r\n",
                elsewhere.addr
            )
            .into_boxed_str(),
        );
        let mut origin = serve(Reply::Fixed(to_elsewhere)).await;
        let check = with(http_check(&origin.url("/")), |h| {
            h.basic_auth = Some(Credentials {
                user: "u".into(),
                password: "p".into(),
            });
        });
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        let first = next_report(&mut origin.requests).await;
        assert!(first.contains("authorization: Basic "), "{first}");
        let second = next_report(&mut elsewhere.requests).await;
        assert!(second.starts_with("GET /there "), "{second}");
        assert!(!second.contains("authorization"), "{second}");
    }

    #[tokio::test]
    async fn redirect_loop_stops_at_the_limit() {
        let mut server = serve(Reply::Fixed(REDIRECT_LOOP)).await;
        let redirects_max = 3;
        let check = with(http_check(&server.url("/")), |h| {
            h.redirects_max = redirects_max
        });
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::Protocol);
        assert!(
            result.message.starts_with("more than 3 redirects"),
            "{}",
            result.message
        );
        // The first request plus the redirects followed, each on its own connection.
        let mut connections = 0;
        while server.peers.try_recv().is_ok() {
            connections += 1;
        }
        assert_eq!(connections, redirects_max + 1);
    }

    #[tokio::test]
    async fn no_redirects_judges_the_3xx_itself() {
        let mut server = serve(Reply::Fixed(REDIRECT_LOOP)).await;
        let check = with(http_check(&server.url("/")), |h| h.redirects_max = 0);
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        assert!(
            result.message.starts_with("HTTP 302 in "),
            "{}",
            result.message
        );
        assert!(server.peers.try_recv().is_ok());
        assert!(server.peers.try_recv().is_err(), "one connection only");

        let check = with(check, |h| {
            h.expect_status = vec![StatusRange { lo: 200, hi: 299 }]
        });
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::BadStatus);
    }

    #[tokio::test]
    async fn https_with_and_without_verification() {
        let mut server = serve_tls(Reply::Fixed(OK_HELLO)).await;
        let port = server.addr.port();
        let check = with(http_check(&format!("https://localhost:{port}/")), |h| {
            h.tls_verify = false;
            h.body_contains = Some("hello".into());
        });
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        assert_eq!(
            perf_labels(&result),
            ["dns", "connect", "tls", "first_byte", "total"]
        );
        assert_eq!(
            next_report(&mut server.sni).await.as_deref(),
            Some("localhost")
        );

        // An IP literal is no server name: no SNI.
        let check = with(http_check(&format!("https://127.0.0.1:{port}/")), |h| {
            h.tls_verify = false;
        });
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        assert_eq!(next_report(&mut server.sni).await, None);

        let check = with(check, |h| h.tls_verify = true);
        let result = probe_bounded(Prober::for_test(None), &check).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::Tls);
        assert_eq!(
            result.message,
            "TLS: certificate is not signed by a trusted CA (UnknownIssuer)"
        );
    }

    #[tokio::test]
    async fn plain_http_behind_https_url_is_tls() {
        let server = serve(Reply::Immediate(OK_HELLO)).await;
        let check = http_check(&format!("https://{}/", server.addr));
        let result = probe_bounded(Prober::for_test(None), &check).await;
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
            let result = probe_bounded(Prober::for_test(Some(source)), &check).await;
            assert_eq!(result.status, Status::Ok, "{result:?}");
            let peer = server.peers.try_recv().expect("a connection");
            assert_eq!(peer.ip(), source);
        }
    }

    /// An error with a source, to build chains like hyper's.
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
        let reset = Layer(Box::new(io::Error::from(io::ErrorKind::ConnectionReset)));
        let cases: [(&Layer, Reason); 6] = [
            (&dns, Reason::Dns),
            (&refused, Reason::Refused),
            (&tls, Reason::Tls),
            (&nested_tls, Reason::Tls),
            (&unreachable, Reason::Unreachable),
            (&reset, Reason::Protocol),
        ];
        for (chain, want) in cases {
            let outcome = classify(chain).expect("classified");
            assert_eq!(outcome.status, Status::Critical, "{chain:?}");
            assert_eq!(outcome.reason, want, "{chain:?}");
        }
        assert!(classify(&Layer(Box::new(Layer(Box::new(io::Error::other("x")))))).is_some());
    }

    #[test]
    fn tls_errors_carry_rustls_reason() {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let outcome = outcome_of_tls(&e);
        assert_eq!(outcome.reason, Reason::Tls);
        assert_eq!(
            outcome.message,
            "TLS: certificate is not signed by a trusted CA (UnknownIssuer)"
        );
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(outcome_of_tls(&eof).reason, Reason::Tls);
    }

    #[test]
    fn ranges_read_like_the_config() {
        let ranges = [
            StatusRange { lo: 200, hi: 299 },
            StatusRange { lo: 304, hi: 304 },
        ];
        assert_eq!(describe_ranges(&ranges), "200-299, 304");
    }

    #[test]
    fn base64_matches_rfc_4648() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn urls_parse_into_targets() {
        // (url, https, host, port, Host header, path)
        let cases = [
            (
                "http://Example.com",
                false,
                "example.com",
                80,
                "example.com",
                "/",
            ),
            (
                "https://example.com:443/a?b",
                true,
                "example.com",
                443,
                "example.com",
                "/a?b",
            ),
            (
                "https://example.com:8443/",
                true,
                "example.com",
                8443,
                "example.com:8443",
                "/",
            ),
            (
                "http://[::1]:8080/x#frag",
                false,
                "::1",
                8080,
                "[::1]:8080",
                "/x",
            ),
            (
                "http://u:p@10.0.0.1/",
                false,
                "10.0.0.1",
                80,
                "10.0.0.1",
                "/",
            ),
            ("http://h?q=1", false, "h", 80, "h", "/?q=1"),
        ];
        for (url, https, host, port, host_header, path) in cases {
            let target = Target::parse(url).expect(url);
            assert_eq!(
                (
                    target.https,
                    target.host.as_str(),
                    target.port,
                    target.path.as_str()
                ),
                (https, host, port, path),
                "{url}"
            );
            assert_eq!(target.host_header(), host_header, "{url}");
        }
        for url in ["ftp://h/", "h/path", "mailto:x@y", "http://"] {
            assert!(Target::parse(url).is_err(), "{url}");
        }
    }

    #[test]
    fn locations_resolve_against_the_current_target() {
        let here = Target::parse("https://example.com:8443/dir/page?q=1").expect("url");
        // (Location, the URL it leads to as scheme://Host + path)
        let cases = [
            ("/root", "https://example.com:8443/root"),
            ("other", "https://example.com:8443/dir/other"),
            ("?p=2", "https://example.com:8443/dir/page?p=2"),
            ("//cdn.example.net/x", "https://cdn.example.net/x"),
            ("http://example.org/y#top", "http://example.org/y"),
            ("HTTPS://example.org", "https://example.org/"),
        ];
        for (location, want) in cases {
            let next = here.follow(location).expect(location);
            let scheme = if next.https { "https" } else { "http" };
            let got = format!("{scheme}://{}{}", next.host_header(), next.path);
            assert_eq!(got, want, "{location}");
        }
        assert!(here.follow("ftp://example.com/").is_err());
        assert!(here.follow("/bad path").is_err());
        assert!(!here.same_origin(&here.follow("//cdn.example.net/").expect("url")));
        assert!(here.same_origin(&here.follow("/x").expect("url")));
    }
}

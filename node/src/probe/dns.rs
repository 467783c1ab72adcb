//! DNS probe: one query of one record type, asked of the check's server only (never the
//! node's own resolvers), judged like monitoring-plugins' check_dig.
//!
//! Each probe builds its own resolver with caching off, so no answer, negative answer or
//! server state carries over from one probe to the next.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use consentry_cluster::model::{DnsSpec, Perf, Reason};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::Resolver;
use tokio::time::Instant;

use super::tcp;
use super::{Outcome, ProbeContext};

/// Time kept back from the check's timeout so the resolver's own timeout fires first and
/// says which server stayed silent, rather than the prober's generic cut-off.
const DNS_TIMEOUT_MARGIN_MS: u64 = 100;

/// Answers named in a result message, at most.
const DNS_ANSWERS_SHOWN_MAX: usize = 8;

/// Longest single answer shown in a result message (long TXT records are cut).
const DNS_ANSWER_SHOWN_BYTES_MAX: usize = 120;

/// Record types a check may ask for (the model's list).
const DNS_RECORD_TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::NS,
    RecordType::PTR,
    RecordType::SOA,
    RecordType::SRV,
    RecordType::TXT,
];

/// One answer record: what `expect` is compared with, and how it is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    /// Normalized: lowercase, no trailing dot; for MX the exchange, SRV the target, SOA
    /// the primary server, TXT the character-strings joined.
    key: String,
    shown: String,
}

/// Queries `spec.server` for `spec.query`'s `spec.record` records once, within
/// `timeout`. Perfdata `time`: the query's round trip in seconds.
pub(super) async fn probe(spec: &DnsSpec, ctx: &ProbeContext, timeout: Duration) -> Outcome {
    let started = now();
    let Some(record_type) = record_type(&spec.record) else {
        return Outcome::unknown(format!(
            "unsupported record type {:?} (use one of A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT)",
            spec.record
        ));
    };
    let name = match query_name(&spec.query, record_type) {
        Ok(name) => name,
        Err(message) => return Outcome::unknown(message),
    };
    let source_ip = ctx.source_ip();
    let server_ip = match server_ip(&spec.server, spec.port, source_ip).await {
        Ok(ip) => ip,
        Err(outcome) => return outcome,
    };
    let server = SocketAddr::new(server_ip, spec.port);

    let budget = timeout.saturating_sub(started.elapsed());
    let query_timeout = budget
        .saturating_sub(Duration::from_millis(DNS_TIMEOUT_MARGIN_MS))
        .max(budget / 2);
    let resolver = match resolver(server, source_ip, query_timeout) {
        Ok(resolver) => resolver,
        Err(e) => return Outcome::unknown(format!("cannot set up the DNS resolver: {e}")),
    };
    let asking = now();
    let lookup = resolver.lookup(name.clone(), record_type).await;
    let time = Perf::new("time", asking.elapsed().as_secs_f64(), "s");
    let what = format!("{} {record_type} @{server}", spec.query);
    let outcome = match lookup {
        Ok(lookup) => {
            let answers: Vec<Answer> = lookup.answers().iter().map(|r| answer(&r.data)).collect();
            judge(&what, &answers, &spec.expect)
        }
        Err(e) => outcome_of_error(&what, &e, query_timeout),
    };
    outcome.perf([time])
}

/// Probes measure elapsed time locally; the clock never leaves the probe, so it is read
/// here rather than passed in from the composition root.
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

fn record_type(record: &str) -> Option<RecordType> {
    let record_type = RecordType::from_str(&record.to_ascii_uppercase()).ok()?;
    DNS_RECORD_TYPES
        .contains(&record_type)
        .then_some(record_type)
}

/// The name asked for, always fully qualified (no search domains). A PTR query may be
/// given as an address, which becomes its reverse name.
fn query_name(query: &str, record_type: RecordType) -> Result<Name, String> {
    if record_type == RecordType::PTR {
        if let Ok(ip) = query.parse::<IpAddr>() {
            return Ok(Name::from(ip));
        }
    }
    let mut name =
        Name::from_utf8(query).map_err(|e| format!("invalid query name {query:?}: {e}"))?;
    name.set_fqdn(true);
    Ok(name)
}

/// The server's address: the literal, or the first address its name resolves to through
/// the same rules as the TCP probe (family of the source address).
async fn server_ip(server: &str, port: u16, source_ip: Option<IpAddr>) -> Result<IpAddr, Outcome> {
    let Ok(ip) = server.parse::<IpAddr>() else {
        let addrs = tcp::resolve(server, port, source_ip)
            .await
            .map_err(|e| tcp::outcome_of_dns(&e))?;
        return addrs.first().map(SocketAddr::ip).ok_or_else(|| {
            Outcome::critical(Reason::Dns, format!("{server} resolves to no address"))
        });
    };
    match source_ip {
        Some(source) if source.is_ipv4() != ip.is_ipv4() => Err(Outcome::critical(
            Reason::Unreachable,
            format!(
                "DNS server {ip} cannot be reached from source {source} (other address family)"
            ),
        )),
        _ => Ok(ip),
    }
}

/// A resolver that asks `server` only (UDP, then TCP when the answer is truncated), from
/// `source_ip`, once, with caching and the hosts file off.
fn resolver(
    server: SocketAddr,
    source_ip: Option<IpAddr>,
    timeout: Duration,
) -> Result<Resolver<TokioRuntimeProvider>, NetError> {
    let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()].map(|mut c| {
        c.port = server.port();
        c.bind_addr = source_ip.map(|ip| SocketAddr::new(ip, 0));
        c
    });
    // Trusting negative answers: an NXDOMAIN is the verdict, not a reason to retry.
    let name_server = NameServerConfig::new(server.ip(), true, connections.to_vec());
    let config = ResolverConfig::from_parts(None, vec![], vec![name_server]);
    let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
    let opts = builder.options_mut();
    opts.timeout = timeout;
    // hickory counts retries after the first try: 0 is one attempt. Within that attempt
    // its UDP client still resends the datagram (at most 3 sends, at least 333 ms apart,
    // not configurable through the resolver), which a lost packet needs anyway.
    opts.attempts = 0;
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.num_concurrent_reqs = 1;
    opts.try_tcp_on_error = false;
    opts.preserve_intermediates = true;
    builder.build()
}

/// Judges the answers as check_dig does, except where noted.
///
/// check_dig (monitoring-plugins `plugins/check_dig.c`) is CRITICAL "No ANSWER SECTION
/// found" when the reply has no answer section: an empty answer is CRITICAL here too.
/// When answers exist but none holds the expected address it is WARNING ("Server not
/// found in ANSWER SECTION"); a consentry `expect` is a stated requirement, so a missing
/// value is CRITICAL `dns` instead, and the message lists what came back.
fn judge(what: &str, answers: &[Answer], expect: &[String]) -> Outcome {
    if answers.is_empty() {
        return Outcome::critical(Reason::Dns, format!("{what}: no answer records"));
    }
    let missing: Vec<&String> = expect
        .iter()
        .filter(|want| {
            let want = normalize(want);
            !answers.iter().any(|a| a.key == want)
        })
        .collect();
    let listed = list(answers);
    if !missing.is_empty() {
        return Outcome::critical(
            Reason::Dns,
            format!("{what}: expected {missing:?} not among the answers: {listed}"),
        );
    }
    Outcome::ok(format!("{what}: {listed}"))
}

/// `n answer(s): a, b, c` with at most `DNS_ANSWERS_SHOWN_MAX` shown.
fn list(answers: &[Answer]) -> String {
    let shown: Vec<String> = answers
        .iter()
        .take(DNS_ANSWERS_SHOWN_MAX)
        .map(|a| truncate(&a.shown, DNS_ANSWER_SHOWN_BYTES_MAX))
        .collect();
    let more = answers.len().saturating_sub(DNS_ANSWERS_SHOWN_MAX);
    let noun = if answers.len() == 1 {
        "answer"
    } else {
        "answers"
    };
    let mut text = format!("{} {noun}: {}", answers.len(), shown.join(", "));
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

fn answer(data: &RData) -> Answer {
    let name = |n: &Name| normalize(&n.to_string());
    let (key, shown) = match data {
        RData::A(a) => (a.0.to_string(), a.0.to_string()),
        RData::AAAA(a) => (a.0.to_string(), a.0.to_string()),
        RData::CNAME(n) => (name(&n.0), name(&n.0)),
        RData::NS(n) => (name(&n.0), name(&n.0)),
        RData::PTR(n) => (name(&n.0), name(&n.0)),
        RData::MX(mx) => {
            let exchange = name(&mx.exchange);
            let shown = format!("{} {exchange}", mx.preference);
            (exchange, shown)
        }
        RData::SRV(srv) => {
            let target = name(&srv.target);
            let shown = format!("{} {} {} {target}", srv.priority, srv.weight, srv.port);
            (target, shown)
        }
        RData::SOA(soa) => (name(&soa.mname), normalize(&soa.to_string())),
        RData::TXT(txt) => {
            let joined: Vec<u8> = txt
                .txt_data
                .iter()
                .flat_map(|s| s.iter().copied())
                .collect();
            let text = String::from_utf8_lossy(&joined).into_owned();
            (normalize(&text), format!("{text:?}"))
        }
        other => {
            let text = other.to_string();
            (normalize(&text), text)
        }
    };
    Answer { key, shown }
}

/// Lowercase, without the root's trailing dot: how `expect` and answers are compared.
fn normalize(value: &str) -> String {
    let value = value.trim();
    value.strip_suffix('.').unwrap_or(value).to_lowercase()
}

fn truncate(text: &str, bytes_max: usize) -> String {
    if text.len() <= bytes_max {
        return text.to_string();
    }
    let mut end = bytes_max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The response code as dig prints it.
fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::NoError => "NOERROR".into(),
        other => format!("{other} ({})", u16::from(other)),
    }
}

fn outcome_of_error(what: &str, e: &NetError, timeout: Duration) -> Outcome {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(no))
            if no.response_code == ResponseCode::NXDomain =>
        {
            Outcome::critical(Reason::Dns, format!("{what}: NXDOMAIN"))
        }
        // check_dig: no answer section is CRITICAL (see `judge`).
        NetError::Dns(DnsError::NoRecordsFound(no)) => Outcome::critical(
            Reason::Dns,
            format!(
                "{what}: no answer records ({})",
                rcode_name(no.response_code)
            ),
        ),
        NetError::Dns(DnsError::ResponseCode(code)) => {
            Outcome::critical(Reason::Dns, format!("{what}: {}", rcode_name(*code)))
        }
        NetError::Timeout => Outcome::critical(
            Reason::Timeout,
            format!("{what}: no answer within {} ms", timeout.as_millis()),
        ),
        NetError::Proto(e) => Outcome::critical(
            Reason::Protocol,
            format!("{what}: invalid DNS response: {e}"),
        ),
        NetError::Io(e) => {
            let outcome = tcp::outcome_of_io(e);
            let message = format!("{what}: {}", outcome.message);
            Outcome::with_status(outcome.status, outcome.reason, message)
        }
        other => Outcome::critical(Reason::Dns, format!("{what}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use consentry_cluster::model::{CheckSpec, ProbeResult, ProbeSpec, Status};
    use hickory_resolver::proto::op::{Message, OpCode};
    use hickory_resolver::proto::rr::rdata::{A, MX, TXT};
    use hickory_resolver::proto::rr::Record;
    use tokio::net::UdpSocket;
    use tokio::sync::mpsc;

    use super::*;
    use crate::probe::Prober;

    /// Slack allowed past a probe's own timeout before a test calls it hung.
    const TEST_TIMEOUT_SLACK_MS: u64 = 1_000;
    /// Largest query the fake server reads.
    const TEST_QUERY_BYTES_MAX: usize = 4096;
    /// Queries the fake server reports, at most.
    const TEST_REPORTS_MAX: usize = 64;

    /// What the fake server answers.
    #[derive(Debug, Clone)]
    enum Reply {
        /// NOERROR with these records (built for the question asked).
        Records(Vec<RData>),
        /// This response code, no records.
        Code(ResponseCode),
        /// Never answers.
        Silent,
        /// The query's id, then bytes that are no DNS message.
        Garbage,
    }

    struct FakeDns {
        addr: SocketAddr,
        /// Each query as the server decoded it.
        queries: mpsc::Receiver<Message>,
    }

    async fn fake_dns(reply: Reply) -> FakeDns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = socket.local_addr().expect("addr");
        let (tx, queries) = mpsc::channel(TEST_REPORTS_MAX);
        tokio::spawn(async move {
            let mut buf = vec![0u8; TEST_QUERY_BYTES_MAX];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let _ = tx.try_send(query.clone());
                let bytes = match &reply {
                    Reply::Silent => continue,
                    Reply::Garbage => {
                        let mut bytes = query.metadata.id.to_be_bytes().to_vec();
                        bytes.extend_from_slice(&[0xff; 9]);
                        bytes
                    }
                    Reply::Records(records) => response(&query, ResponseCode::NoError, records),
                    Reply::Code(code) => response(&query, *code, &[]),
                };
                let _ = socket.send_to(&bytes, peer).await;
            }
        });
        FakeDns { addr, queries }
    }

    fn response(query: &Message, code: ResponseCode, records: &[RData]) -> Vec<u8> {
        let mut message = Message::response(query.metadata.id, OpCode::Query);
        message.metadata.response_code = code;
        message.metadata.recursion_desired = query.metadata.recursion_desired;
        message.metadata.recursion_available = true;
        message.add_queries(query.queries.clone());
        if let Some(question) = query.queries.first() {
            for data in records {
                let record = Record::from_rdata(question.name().clone(), 300, data.clone());
                message.add_answer(record);
            }
        }
        message.to_vec().expect("encode")
    }

    fn dns_check(server: SocketAddr, query: &str, record: &str, expect: &[&str]) -> CheckSpec {
        let mut check = CheckSpec::for_test("dns-test");
        check.probe = ProbeSpec::Dns(DnsSpec {
            server: server.ip().to_string(),
            port: server.port(),
            query: query.to_string(),
            record: record.to_string(),
            expect: expect.iter().map(|e| e.to_string()).collect(),
        });
        check.timeout_ms = 2_000;
        check
    }

    /// Runs the probe, failing the test if it outlives its own timeout plus slack.
    async fn probe_bounded(check: &CheckSpec) -> ProbeResult {
        let bound = Duration::from_millis(check.timeout_ms + TEST_TIMEOUT_SLACK_MS);
        tokio::time::timeout(bound, Prober::for_test(None).probe(check))
            .await
            .expect("the probe ended within its timeout")
    }

    fn a(ip: [u8; 4]) -> RData {
        RData::A(A(Ipv4Addr::from(ip)))
    }

    #[tokio::test]
    async fn a_answer_is_ok_and_lists_the_answers() {
        let mut server = fake_dns(Reply::Records(vec![a([192, 0, 2, 1]), a([192, 0, 2, 2])])).await;
        let check = dns_check(server.addr, "www.example.com", "A", &[]);
        let result = probe_bounded(&check).await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        assert!(
            result.message.contains("2 answers: 192.0.2.1, 192.0.2.2"),
            "{}",
            result.message
        );
        assert_eq!(result.perfdata.len(), 1, "{result:?}");
        assert_eq!(result.perfdata[0].label, "time");
        assert_eq!(result.perfdata[0].unit, "s");
        // One query, for the name as given (fully qualified, no search domain), once.
        let query = server.queries.recv().await.expect("a query");
        let question = query.queries.first().expect("a question");
        assert_eq!(question.name().to_string(), "www.example.com.");
        assert_eq!(question.query_type(), RecordType::A);
        assert!(server.queries.try_recv().is_err(), "asked once");
    }

    #[tokio::test]
    async fn every_expected_value_must_be_answered() {
        let server = fake_dns(Reply::Records(vec![a([192, 0, 2, 1]), a([192, 0, 2, 2])])).await;
        // (expect, status)
        let cases: [(&[&str], Status); 4] = [
            (&["192.0.2.1"], Status::Ok),
            (&["192.0.2.2", "192.0.2.1"], Status::Ok),
            (&["192.0.2.9"], Status::Critical),
            (&["192.0.2.1", "192.0.2.9"], Status::Critical),
        ];
        for (expect, status) in cases {
            let check = dns_check(server.addr, "www.example.com", "a", expect);
            let result = probe_bounded(&check).await;
            assert_eq!(result.status, status, "{expect:?}: {result:?}");
            if status == Status::Critical {
                assert_eq!(result.reason, Reason::Dns);
                assert!(result.message.contains("192.0.2.9"), "{}", result.message);
                assert!(result.message.contains("2 answers: 192.0.2.1, 192.0.2.2"));
            }
        }
    }

    #[tokio::test]
    async fn mx_and_txt_compare_normalized() {
        let exchange = Name::from_ascii("Mail.Example.com.").expect("name");
        let server = fake_dns(Reply::Records(vec![RData::MX(MX::new(10, exchange))])).await;
        let check = dns_check(server.addr, "example.com", "MX", &["mail.example.com"]);
        let result = probe_bounded(&check).await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        assert!(
            result.message.contains("10 mail.example.com"),
            "{}",
            result.message
        );

        let txt = TXT::new(vec!["v=spf1 ".into(), "-all".into()]);
        let server = fake_dns(Reply::Records(vec![RData::TXT(txt)])).await;
        let check = dns_check(server.addr, "example.com", "TXT", &["v=spf1 -all"]);
        let result = probe_bounded(&check).await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
    }

    #[tokio::test]
    async fn nxdomain_is_critical_dns() {
        let server = fake_dns(Reply::Code(ResponseCode::NXDomain)).await;
        let result = probe_bounded(&dns_check(server.addr, "nope.example.com", "A", &[])).await;
        assert_eq!(
            (result.status, result.reason),
            (Status::Critical, Reason::Dns),
            "{result:?}"
        );
        assert!(result.message.ends_with("NXDOMAIN"), "{}", result.message);
    }

    #[tokio::test]
    async fn servfail_and_refused_are_critical_dns() {
        for (code, text) in [
            (ResponseCode::ServFail, "SERVFAIL"),
            (ResponseCode::Refused, "REFUSED"),
        ] {
            let server = fake_dns(Reply::Code(code)).await;
            let result = probe_bounded(&dns_check(server.addr, "www.example.com", "A", &[])).await;
            assert_eq!(
                (result.status, result.reason),
                (Status::Critical, Reason::Dns),
                "{result:?}"
            );
            assert!(result.message.contains(text), "{}", result.message);
        }
    }

    #[tokio::test]
    async fn empty_answer_is_critical_like_check_dig() {
        let server = fake_dns(Reply::Records(vec![])).await;
        let result = probe_bounded(&dns_check(server.addr, "www.example.com", "AAAA", &[])).await;
        assert_eq!(
            (result.status, result.reason),
            (Status::Critical, Reason::Dns),
            "{result:?}"
        );
        assert!(
            result.message.contains("no answer records"),
            "{}",
            result.message
        );
    }

    #[tokio::test]
    async fn silent_server_times_out_within_the_timeout() {
        let mut server = fake_dns(Reply::Silent).await;
        let mut check = dns_check(server.addr, "www.example.com", "A", &[]);
        check.timeout_ms = 500;
        let result = probe_bounded(&check).await;
        assert_eq!(
            (result.status, result.reason),
            (Status::Critical, Reason::Timeout),
            "{result:?}"
        );
        assert!(result.latency_ms <= 500, "{result:?}");
        // One attempt. Within it hickory's UDP client resends the datagram (at most 3
        // sends, at least 333 ms apart); no second attempt follows.
        let mut sent = 0;
        while server.queries.try_recv().is_ok() {
            sent += 1;
        }
        assert!((1..=2).contains(&sent), "{sent} datagrams in 400 ms");
    }

    #[tokio::test]
    async fn garbage_reply_is_critical_protocol() {
        let server = fake_dns(Reply::Garbage).await;
        let mut check = dns_check(server.addr, "www.example.com", "A", &[]);
        check.timeout_ms = 1_000;
        let result = probe_bounded(&check).await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::Protocol, "{result:?}");
    }

    #[tokio::test]
    async fn bad_spec_is_unknown() {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 53));
        for (query, record) in [
            ("example.com", "AXFR"),
            ("example.com", "BOGUS"),
            ("a..b", "A"),
        ] {
            let result = probe_bounded(&dns_check(addr, query, record, &[])).await;
            assert_eq!(
                result.status,
                Status::Unknown,
                "{query} {record}: {result:?}"
            );
        }
    }

    #[tokio::test]
    async fn server_of_the_other_family_is_unreachable() {
        let addr = SocketAddr::from((Ipv6Addr::LOCALHOST, 53));
        let check = dns_check(addr, "example.com", "A", &[]);
        let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let result = Prober::for_test(Some(source)).probe(&check).await;
        assert_eq!(result.reason, Reason::Unreachable, "{result:?}");
    }

    #[test]
    fn ptr_queries_take_addresses() {
        let name = query_name("192.0.2.1", RecordType::PTR).expect("name");
        assert_eq!(name.to_string(), "1.2.0.192.in-addr.arpa.");
        let name = query_name("example.com", RecordType::A).expect("name");
        assert!(name.is_fqdn());
    }

    #[test]
    fn answers_list_is_bounded() {
        let answers: Vec<Answer> = (0..20u8).map(|i| answer(&a([192, 0, 2, i]))).collect();
        let text = list(&answers);
        assert!(text.starts_with("20 answers: 192.0.2.0, "), "{text}");
        assert!(text.ends_with(" and 12 more"), "{text}");
        let long = "x".repeat(1000);
        let txt = answer(&RData::TXT(TXT::new(vec![long])));
        assert!(list(&[txt]).len() < DNS_ANSWER_SHOWN_BYTES_MAX + 40);
    }
}

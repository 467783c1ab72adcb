//! ICMP echo probe, judged like Nagios `check_ping`: packet loss and average round trip.
//!
//! One probe resolves the host (first address, in the source address's family), opens its
//! own ICMP socket, sends `packets` echo requests spaced `ECHO_INTERVAL_MS` apart (closer
//! when the timeout is short, so that every request and its reply wait fit), and judges
//! what came back with [`judge`], a pure function.
//!
//! The socket is a raw one (root or `CAP_NET_RAW`); when that is refused, surge-ping opens
//! the unprivileged datagram kind instead (allowed when `net.ipv4.ping_group_range`
//! includes the process's group). Each probe opens its own client rather than sharing one
//! per prober: a client is one socket plus one receive task, which costs far less than the
//! probe's own waiting, while a shared datagram socket would make concurrent probes of the
//! same host collide (the kernel owns the identifier, so replies are told apart by
//! sequence number alone), and a shared socket outliving its probes would need an owner
//! to shut it down.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use consentry_cluster::model::{IcmpSpec, Perf, Reason};
use surge_ping::{Client, Config, IcmpPacket, PingIdentifier, PingSequence, SurgeError, ICMP};

use super::{Outcome, ProbeContext};

/// Pause between two echo requests when the timeout leaves room for it (ping's default
/// is a second; 200 ms keeps a 3-packet probe well under a second).
const ECHO_INTERVAL_MS: u64 = 200;

/// Longest wait for one reply, unless `rtt_crit_ms` asks for more (then twice that): a
/// reply later than this counts as lost, so a dead host is reported in seconds, not at
/// the end of a long timeout.
const ECHO_REPLY_WAIT_MS: u64 = 2_000;

/// Echo request payload, as sent by `ping` (64-byte ICMP packets).
const ECHO_PAYLOAD_BYTES: usize = 56;

/// Share of the probe timeout the echoes may use; the rest is left so the loss is
/// reported before the prober cuts the attempt off as a bare timeout.
const TIMEOUT_USABLE_PCT: u32 = 90;

/// Least time worth sending echo requests in after resolving the host.
const ECHO_BUDGET_MS_MIN: u64 = 10;

/// Most echo requests per probe, whatever the spec says (the checks file allows 20).
pub const ECHO_REQUESTS_MAX: u32 = 20;

/// Sequence numbers of this process's echo identifiers; combined with the process id so
/// that concurrent probes (and other pingers on the host) rarely share an identifier on
/// a raw socket, where every socket sees every reply.
static ECHO_IDENT_NEXT: AtomicU16 = AtomicU16::new(0);

const ICMP_SOCKET_HELP: &str =
    "ICMP needs root or CAP_NET_RAW, or net.ipv4.ping_group_range to include this user's group";

/// What came back for one echo request.
#[derive(Debug, Clone, PartialEq)]
enum Echo {
    Reply(Duration),
    /// No answer within the reply wait.
    Lost,
    /// Sending failed or the target answered with an ICMP error; counted as lost.
    Failed(String),
}

/// What a run of echo requests found, the input to [`judge`].
#[derive(Debug, Clone, Default, PartialEq)]
struct Tally {
    sent: u32,
    /// Round trips of the replies received, in milliseconds.
    rtts_ms: Vec<f64>,
    /// The first failure met, to say why packets were lost.
    failure: Option<String>,
}

/// When each echo request leaves and how long its reply is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Schedule {
    interval: Duration,
    reply_wait_max: Duration,
    budget: Duration,
}

/// Pings `spec.host` and judges loss and round trip.
///
/// # Cancel safety
///
/// Cancel safe: dropping the future drops the surge-ping client, which aborts its receive
/// task and closes the socket.
pub(super) async fn probe(spec: &IcmpSpec, ctx: &ProbeContext, timeout: Duration) -> Outcome {
    // The echo schedule must fit what is left of the timeout after resolution; the
    // elapsed time is measured locally and never compared across machines.
    #[allow(clippy::disallowed_methods)]
    let started = tokio::time::Instant::now();
    let source_ip = ctx.source_ip();
    let addr = match super::tcp::resolve(&spec.host, 0, source_ip).await {
        Ok(addrs) => match addrs.first() {
            Some(addr) => *addr,
            None => {
                return Outcome::critical(
                    Reason::Dns,
                    format!("{} resolves to no address", spec.host),
                )
            }
        },
        Err(e) => return super::tcp::outcome_of_dns(&e),
    };
    let target = if spec.host == addr.ip().to_string() {
        spec.host.clone()
    } else {
        format!("{} ({})", spec.host, addr.ip())
    };
    let usable = timeout * TIMEOUT_USABLE_PCT / 100;
    let left = usable.saturating_sub(started.elapsed());
    if left < Duration::from_millis(ECHO_BUDGET_MS_MIN) {
        return Outcome::critical(
            Reason::Timeout,
            format!("resolving {} used the whole timeout", spec.host),
        );
    }
    let client = match open_client(addr.ip(), source_ip) {
        Ok(client) => client,
        Err(e) => return outcome_of_socket_error(&e, source_ip),
    };
    let packets = spec.packets.clamp(1, ECHO_REQUESTS_MAX);
    let schedule = Schedule::new(packets, left, spec.rtt_crit_ms);
    let tally = ping_all(&client, addr, packets, schedule).await;
    judge(spec, &target, &tally)
}

/// Opens an ICMP client for `dest`'s family, leaving from `source_ip` when set: a raw
/// socket, or the unprivileged datagram kind when the raw one is refused (surge-ping
/// tries the other kind by itself when the hinted one fails to open).
///
/// # Errors
///
/// The error of the last kind tried (permission denied when neither is allowed), or of
/// binding the source address.
fn open_client(dest: IpAddr, source_ip: Option<IpAddr>) -> io::Result<Client> {
    let kind = if dest.is_ipv4() { ICMP::V4 } else { ICMP::V6 };
    let mut builder = Config::builder()
        .kind(kind)
        .sock_type_hint(socket2::Type::RAW);
    if let Some(ip) = source_ip {
        builder = builder.bind(SocketAddr::new(ip, 0));
    }
    Client::new(&builder.build())
}

fn outcome_of_socket_error(e: &io::Error, source_ip: Option<IpAddr>) -> Outcome {
    match (e.kind(), source_ip) {
        (io::ErrorKind::PermissionDenied, _) => Outcome::unknown(format!(
            "cannot open an ICMP socket ({e}): {ICMP_SOCKET_HELP}"
        )),
        (io::ErrorKind::AddrNotAvailable, Some(ip)) => {
            Outcome::unknown(format!("cannot use the source address {ip}: {e}"))
        }
        _ => Outcome::unknown(format!("cannot open an ICMP socket: {e}")),
    }
}

/// Sends `packets` echo requests on `schedule` and gathers their replies.
async fn ping_all(client: &Client, addr: SocketAddr, packets: u32, schedule: Schedule) -> Tally {
    // Truncating the process id is fine: it only spreads identifiers across processes.
    let pid_bits = std::process::id() as u16;
    let ident =
        PingIdentifier(pid_bits.wrapping_add(ECHO_IDENT_NEXT.fetch_add(1, Ordering::Relaxed)));
    let echoes = (0..packets).map(|i| {
        let (send_after, wait) = schedule.slot(i);
        echo(client, addr, ident, i, send_after, wait)
    });
    let echoes = futures::future::join_all(echoes).await;
    let mut tally = Tally {
        sent: packets,
        ..Tally::default()
    };
    for echo in echoes {
        match echo {
            Echo::Reply(rtt) => tally.rtts_ms.push(rtt.as_secs_f64() * 1000.0),
            Echo::Lost => {}
            Echo::Failed(why) => {
                tally.failure.get_or_insert(why);
            }
        }
    }
    tally
}

/// One echo request with sequence number `seq`, sent after `send_after`.
async fn echo(
    client: &Client,
    addr: SocketAddr,
    ident: PingIdentifier,
    seq: u32,
    send_after: Duration,
    wait: Duration,
) -> Echo {
    const PAYLOAD: [u8; ECHO_PAYLOAD_BYTES] = [0; ECHO_PAYLOAD_BYTES];
    tokio::time::sleep(send_after).await;
    let mut pinger = client.pinger(addr.ip(), ident).await;
    pinger.timeout(wait);
    if let SocketAddr::V6(v6) = addr {
        pinger.scope_id(v6.scope_id());
    }
    // `seq` is below `ECHO_REQUESTS_MAX`, far from wrapping.
    let seq = PingSequence(u16::try_from(seq).unwrap_or(u16::MAX));
    match pinger.ping(seq, &PAYLOAD).await {
        Ok((packet, rtt)) => match packet {
            // Echo reply: type 0 (ICMPv4) or 129 (ICMPv6).
            IcmpPacket::V4(p) if p.get_icmp_type().0 == 0 => Echo::Reply(rtt),
            IcmpPacket::V6(p) if p.get_icmpv6_type().0 == 129 => Echo::Reply(rtt),
            // surge-ping hands over ICMP errors about our request as if they were replies.
            IcmpPacket::V4(p) => Echo::Failed(format!(
                "ICMP type {} code {} from {}",
                p.get_icmp_type().0,
                p.get_icmp_code().0,
                p.get_source()
            )),
            IcmpPacket::V6(p) => Echo::Failed(format!(
                "ICMPv6 type {} code {} from {}",
                p.get_icmpv6_type().0,
                p.get_icmpv6_code().0,
                p.get_source()
            )),
        },
        Err(SurgeError::Timeout { .. }) => Echo::Lost,
        Err(e) => Echo::Failed(e.to_string()),
    }
}

impl Schedule {
    /// Spaces `packets` requests over `budget`: at most `ECHO_INTERVAL_MS` apart and
    /// sent within the first half of it, so that the last request still has at least
    /// half the budget to be answered in.
    fn new(packets: u32, budget: Duration, rtt_crit_ms: Option<u64>) -> Self {
        let packets = packets.max(1);
        let interval = Duration::from_millis(ECHO_INTERVAL_MS).min(budget / (2 * packets));
        let reply_wait_ms = rtt_crit_ms
            .map_or(ECHO_REPLY_WAIT_MS, |crit_ms| crit_ms.saturating_mul(2))
            .max(ECHO_REPLY_WAIT_MS);
        Self {
            interval,
            reply_wait_max: Duration::from_millis(reply_wait_ms),
            budget,
        }
    }

    /// When request `i` leaves and how long its reply is awaited: until the budget ends,
    /// at most `reply_wait_max`.
    fn slot(&self, i: u32) -> (Duration, Duration) {
        let send_after = self.interval * i;
        let wait = self
            .budget
            .saturating_sub(send_after)
            .min(self.reply_wait_max);
        (send_after, wait)
    }
}

/// Judges a run like `check_ping`: all lost or loss at `loss_crit_pct` is CRITICAL
/// `unreachable`, an average round trip at `rtt_crit_ms` CRITICAL `slow`, then the
/// warning levels the same way (loss before round trip). Loss is a whole percentage,
/// rounded down. Partial loss under the critical level is reported as `unreachable`
/// too: the target is intermittently out of reach.
fn judge(spec: &IcmpSpec, target: &str, tally: &Tally) -> Outcome {
    let sent = tally.sent.max(1);
    let received = u32::try_from(tally.rtts_ms.len())
        .unwrap_or(u32::MAX)
        .min(sent);
    let loss_pct = (sent - received) * 100 / sent;
    let mut pl = Perf::new("pl", f64::from(loss_pct), "%");
    pl.warn = spec.loss_warn_pct.map(f64::from);
    pl.crit = spec.loss_crit_pct.map(f64::from);
    pl.min = Some(0.0);
    pl.max = Some(100.0);
    let why = tally
        .failure
        .as_ref()
        .map(|failure| format!(" (last error: {failure})"))
        .unwrap_or_default();
    if received == 0 {
        return Outcome::critical(
            Reason::Unreachable,
            format!("no reply from {target} to {sent} echo requests{why}"),
        )
        .perf([pl]);
    }
    let rta_ms = tally.rtts_ms.iter().take(sent as usize).sum::<f64>() / f64::from(received);
    let mut rta = Perf::new("rta", rta_ms, "ms");
    // Thresholds are whole milliseconds; f64 holds them exactly up to 2^53.
    rta.warn = spec.rtt_warn_ms.map(|ms| ms as f64);
    rta.crit = spec.rtt_crit_ms.map(|ms| ms as f64);
    rta.min = Some(0.0);
    let perf = [rta, pl];
    let summary =
        format!("{received}/{sent} replies from {target}, loss {loss_pct}%, rta {rta_ms:.3} ms");
    let loss_at = |level: Option<u8>| level.filter(|pct| loss_pct >= u32::from(*pct));
    let rtt_at = |level: Option<u64>| level.filter(|ms| rta_ms >= *ms as f64);
    if let Some(pct) = loss_at(spec.loss_crit_pct) {
        let message = format!("{summary} (critical at {pct}% loss){why}");
        return Outcome::critical(Reason::Unreachable, message).perf(perf);
    }
    if let Some(ms) = rtt_at(spec.rtt_crit_ms) {
        let message = format!("{summary} (critical at {ms} ms)");
        return Outcome::critical(Reason::Slow, message).perf(perf);
    }
    if let Some(pct) = loss_at(spec.loss_warn_pct) {
        let message = format!("{summary} (warning at {pct}% loss){why}");
        return Outcome::warning(Reason::Unreachable, message).perf(perf);
    }
    if let Some(ms) = rtt_at(spec.rtt_warn_ms) {
        let message = format!("{summary} (warning at {ms} ms)");
        return Outcome::warning(Reason::Slow, message).perf(perf);
    }
    Outcome::ok(summary).perf(perf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ProbeConfig;
    use consentry_cluster::model::Status;

    fn spec(host: &str, packets: u32) -> IcmpSpec {
        IcmpSpec {
            host: host.to_string(),
            packets,
            rtt_warn_ms: Some(200),
            rtt_crit_ms: Some(500),
            loss_warn_pct: Some(20),
            loss_crit_pct: Some(60),
        }
    }

    fn ctx(source_ip: Option<IpAddr>) -> ProbeContext {
        ProbeContext {
            config: ProbeConfig {
                source_ip,
                plugin_dirs: Vec::new(),
            },
            tls_verified: crate::probe::tls_config::verified(),
            tls_unverified: crate::probe::tls_config::unverified(),
        }
    }

    fn e2e_required() -> bool {
        std::env::var("CONSENTRY_E2E_REQUIRED").is_ok_and(|v| v == "1")
    }

    /// Skips (or, under `CONSENTRY_E2E_REQUIRED=1`, fails) when this environment cannot
    /// open an ICMP socket. Call from within a runtime.
    fn icmp_available() -> bool {
        let Err(e) = open_client(IpAddr::from([127, 0, 0, 1]), None) else {
            return true;
        };
        let reason = format!("cannot open an ICMP socket here ({e}); {ICMP_SOCKET_HELP}");
        assert!(!e2e_required(), "{reason}");
        eprintln!("skipped: {reason}");
        false
    }

    #[test]
    fn judging_follows_check_ping() {
        // Thresholds: rtt warn 200 / crit 500 ms, loss warn 20 / crit 60 %.
        // (sent, rtts ms, status, reason, loss %)
        type Case = (u32, &'static [f64], Status, Reason, u32);
        let cases: &[Case] = &[
            (3, &[1.0, 2.0, 3.0], Status::Ok, Reason::None, 0),
            (1, &[0.05], Status::Ok, Reason::None, 0),
            (3, &[], Status::Critical, Reason::Unreachable, 100),
            (1, &[], Status::Critical, Reason::Unreachable, 100),
            // 1 of 3 lost: 33 % >= 20 % warn.
            (3, &[1.0, 1.0], Status::Warning, Reason::Unreachable, 33),
            // 2 of 3 lost: 66 % >= 60 % crit.
            (3, &[1.0], Status::Critical, Reason::Unreachable, 66),
            // 1 of 10 lost: 10 % is under every loss level.
            (10, &[1.0; 9], Status::Ok, Reason::None, 10),
            // 2 of 10 lost: exactly the warning level.
            (10, &[1.0; 8], Status::Warning, Reason::Unreachable, 20),
            // 6 of 10 lost: exactly the critical level.
            (10, &[1.0; 4], Status::Critical, Reason::Unreachable, 60),
            // Average round trip exactly at, and over, the levels.
            (2, &[100.0, 300.0], Status::Warning, Reason::Slow, 0),
            (2, &[499.0, 500.0], Status::Warning, Reason::Slow, 0),
            (2, &[500.0, 500.0], Status::Critical, Reason::Slow, 0),
            (1, &[1500.0], Status::Critical, Reason::Slow, 0),
            // Loss critical wins over a slow round trip; a slow round trip (critical)
            // wins over a loss warning.
            (3, &[900.0], Status::Critical, Reason::Unreachable, 66),
            (3, &[900.0, 900.0], Status::Critical, Reason::Slow, 33),
            // Loss warning before round trip warning.
            (3, &[250.0, 250.0], Status::Warning, Reason::Unreachable, 33),
        ];
        for &(sent, rtts_ms, status, reason, loss_pct) in cases {
            let tally = Tally {
                sent,
                rtts_ms: rtts_ms.to_vec(),
                failure: None,
            };
            let outcome = judge(&spec("h", sent), "h", &tally);
            let case = format!("{sent} sent, rtts {rtts_ms:?}: {}", outcome.message);
            assert_eq!(outcome.status, status, "{case}");
            assert_eq!(outcome.reason, reason, "{case}");
            let pl = outcome.perfdata.iter().find(|p| p.label == "pl");
            assert_eq!(pl.map(|p| p.value), Some(f64::from(loss_pct)), "{case}");
            let rta = outcome.perfdata.iter().find(|p| p.label == "rta");
            if rtts_ms.is_empty() {
                assert!(rta.is_none(), "{case}");
            } else {
                let rta = rta.expect("rta when replies came back");
                let mean = rtts_ms.iter().sum::<f64>() / rtts_ms.len() as f64;
                assert_eq!(rta.value, mean, "{case}");
                assert_eq!(rta.unit, "ms", "{case}");
                assert_eq!((rta.warn, rta.crit), (Some(200.0), Some(500.0)), "{case}");
            }
        }
    }

    #[test]
    fn judging_without_thresholds_only_fails_on_total_loss() {
        let none = IcmpSpec {
            rtt_warn_ms: None,
            rtt_crit_ms: None,
            loss_warn_pct: None,
            loss_crit_pct: None,
            ..spec("h", 4)
        };
        let tally = |rtts_ms: &[f64]| Tally {
            sent: 4,
            rtts_ms: rtts_ms.to_vec(),
            failure: Some("ICMP type 3 code 13 from 10.0.0.1".into()),
        };
        let slow_lossy = judge(&none, "h", &tally(&[5000.0]));
        assert_eq!(slow_lossy.status, Status::Ok, "{}", slow_lossy.message);
        let dead = judge(&none, "h", &tally(&[]));
        assert_eq!(dead.status, Status::Critical);
        assert_eq!(dead.reason, Reason::Unreachable);
        assert!(dead.message.contains("type 3 code 13"), "{}", dead.message);
        let pl = &dead.perfdata[0];
        assert_eq!((pl.warn, pl.crit), (None, None));
    }

    #[test]
    fn schedule_fits_the_budget() {
        // (packets, budget ms, rtt crit ms) -> (interval ms, reply wait max ms)
        type Case = (u32, u64, Option<u64>, u64, u64);
        let cases: &[Case] = &[
            (3, 9_000, Some(500), 200, 2_000),
            (3, 600, Some(500), 100, 2_000),
            (20, 1_000, None, 25, 2_000),
            (1, 100, None, 50, 2_000),
            (5, 20_000, Some(3_000), 200, 6_000),
        ];
        for &(packets, budget_ms, crit, interval_ms, wait_ms) in cases {
            let budget = Duration::from_millis(budget_ms);
            let s = Schedule::new(packets, budget, crit);
            let case = format!("{packets} packets in {budget_ms} ms: {s:?}");
            assert_eq!(s.interval, Duration::from_millis(interval_ms), "{case}");
            assert_eq!(s.reply_wait_max, Duration::from_millis(wait_ms), "{case}");
            for i in 0..packets {
                let (send_after, wait) = s.slot(i);
                assert!(send_after + wait <= budget, "{case}: slot {i}");
                assert!(
                    wait >= budget / 2 || wait == s.reply_wait_max,
                    "{case}: slot {i}"
                );
            }
        }
    }

    #[test]
    fn socket_errors_say_what_to_change() {
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let outcome = outcome_of_socket_error(&denied, None);
        assert_eq!(outcome.status, Status::Unknown);
        assert!(
            outcome.message.contains("CAP_NET_RAW"),
            "{}",
            outcome.message
        );
        assert!(
            outcome.message.contains("ping_group_range"),
            "{}",
            outcome.message
        );
        let not_local = io::Error::from(io::ErrorKind::AddrNotAvailable);
        let outcome = outcome_of_socket_error(&not_local, "192.0.2.1".parse().ok());
        assert_eq!(outcome.status, Status::Unknown);
        assert!(outcome.message.contains("192.0.2.1"), "{}", outcome.message);
    }

    #[tokio::test]
    async fn loopback_answers() {
        let outcome = probe(&spec("127.0.0.1", 3), &ctx(None), Duration::from_secs(5)).await;
        if !icmp_available() {
            // Without the rights the probe says what to change instead of failing.
            assert_eq!(outcome.status, Status::Unknown, "{}", outcome.message);
            assert!(
                outcome.message.contains(ICMP_SOCKET_HELP),
                "{}",
                outcome.message
            );
            return;
        }
        assert_eq!(outcome.status, Status::Ok, "{}", outcome.message);
        assert!(
            outcome.message.starts_with("3/3 replies from 127.0.0.1"),
            "{}",
            outcome.message
        );
        let labels: Vec<&str> = outcome.perfdata.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["rta", "pl"]);
        assert_eq!(outcome.perfdata[1].value, 0.0);
    }

    #[tokio::test]
    async fn loopback_from_a_source_address_and_by_name() {
        if !icmp_available() {
            return;
        }
        let source = "127.0.0.1".parse().ok();
        let outcome = probe(&spec("localhost", 2), &ctx(source), Duration::from_secs(5)).await;
        assert_eq!(outcome.status, Status::Ok, "{}", outcome.message);
        assert!(
            outcome
                .message
                .starts_with("2/2 replies from localhost (127.0.0.1)"),
            "{}",
            outcome.message
        );
    }

    #[tokio::test]
    async fn a_short_timeout_packs_the_echoes_closer() {
        if !icmp_available() {
            return;
        }
        // 10 echoes at 200 ms would take 2 s; within 400 ms they are sent 18 ms apart.
        let timeout = Duration::from_millis(400);
        let (spec, ctx) = (spec("127.0.0.1", 10), ctx(None));
        let attempt = probe(&spec, &ctx, timeout);
        let outcome = tokio::time::timeout(timeout, attempt).await;
        let outcome = outcome.expect("the probe finishes within its timeout");
        assert_eq!(outcome.status, Status::Ok, "{}", outcome.message);
        assert!(
            outcome.message.starts_with("10/10 replies"),
            "{}",
            outcome.message
        );
    }

    #[tokio::test]
    async fn a_source_address_that_is_not_local_is_the_probers_fault() {
        if !icmp_available() {
            return;
        }
        // 192.0.2.1 (TEST-NET-1) is bound, never sent to: binding fails locally.
        let source = "192.0.2.1".parse().ok();
        let outcome = probe(&spec("127.0.0.1", 1), &ctx(source), Duration::from_secs(2)).await;
        assert_eq!(outcome.status, Status::Unknown, "{}", outcome.message);
        assert!(
            outcome.message.contains("source address 192.0.2.1"),
            "{}",
            outcome.message
        );
    }
}

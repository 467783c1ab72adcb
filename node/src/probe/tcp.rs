//! TCP connect probe, and the name resolution and connect-error rules the HTTP probe shares.

use std::io;
use std::net::{IpAddr, SocketAddr};

use consentry_cluster::model::Reason;
use tokio::net::{TcpSocket, TcpStream};

use super::Outcome;

/// Most addresses of one name a probe tries, in resolver order.
pub const RESOLVED_ADDRESSES_MAX: usize = 8;

/// Why a name gave no address to connect to.
#[derive(Debug, thiserror::Error)]
pub(super) enum DnsError {
    #[error("cannot resolve {host}: {source}")]
    Lookup {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    #[error("{host} has no {family} address to reach from source {source_ip}")]
    NoAddressInFamily {
        host: String,
        family: &'static str,
        source_ip: IpAddr,
    },
}

/// Why one connection attempt failed.
#[derive(Debug)]
enum ConnectError {
    /// The prober's side: no socket, or the source address cannot be bound.
    Local(String),
    Connect(io::Error),
}

/// Connects to `host:port`, trying its addresses in resolver order, and reports the
/// first success or the last failure.
pub(super) async fn probe(host: &str, port: u16, source_ip: Option<IpAddr>) -> Outcome {
    match connect_any(host, port, source_ip).await {
        Ok(_stream) => Outcome::ok("connected"),
        Err(outcome) => outcome,
    }
}

/// Connects to `host:port` from `source_ip` as [`probe`] does, for kinds that go on to
/// speak a protocol over the connection.
///
/// # Errors
///
/// The outcome the TCP probe would report: the resolution failure, or the last
/// address's connect failure.
pub(super) async fn connect_any(
    host: &str,
    port: u16,
    source_ip: Option<IpAddr>,
) -> Result<TcpStream, Outcome> {
    let addrs = match resolve(host, port, source_ip).await {
        Ok(addrs) => addrs,
        Err(e) => return Err(outcome_of_dns(&e)),
    };
    connect_first(&addrs, source_ip).await
}

/// Resolves `host` (a name or an IP literal) to at most `RESOLVED_ADDRESSES_MAX`
/// addresses, keeping only those of the source address's family when one is set: a
/// connection to the other family could not leave from the allow-listed address.
///
/// # Errors
///
/// `DnsError` when the lookup fails or leaves no usable address.
pub(super) async fn resolve(
    host: &str,
    port: u16,
    source_ip: Option<IpAddr>,
) -> Result<Vec<SocketAddr>, DnsError> {
    let found = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| DnsError::Lookup {
            host: host.to_string(),
            source,
        })?;
    let mut any = false;
    let addrs: Vec<SocketAddr> = found
        .inspect(|_| any = true)
        .filter(|addr| source_ip.is_none_or(|ip| ip.is_ipv4() == addr.is_ipv4()))
        .take(RESOLVED_ADDRESSES_MAX)
        .collect();
    if !addrs.is_empty() {
        return Ok(addrs);
    }
    match source_ip {
        Some(source_ip) if any => Err(DnsError::NoAddressInFamily {
            host: host.to_string(),
            family: if source_ip.is_ipv4() { "IPv4" } else { "IPv6" },
            source_ip,
        }),
        _ => Err(DnsError::NoAddress {
            host: host.to_string(),
        }),
    }
}

pub(super) fn outcome_of_dns(e: &DnsError) -> Outcome {
    match e {
        DnsError::Lookup { .. } | DnsError::NoAddress { .. } => {
            Outcome::critical(Reason::Dns, e.to_string())
        }
        DnsError::NoAddressInFamily { .. } => Outcome::critical(Reason::Unreachable, e.to_string()),
    }
}

/// Maps an I/O error met while connecting or exchanging data to a result.
pub(super) fn outcome_of_io(e: &io::Error) -> Outcome {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            Outcome::critical(Reason::Refused, "connection refused")
        }
        io::ErrorKind::TimedOut => Outcome::critical(Reason::Timeout, format!("timed out: {e}")),
        // The source address is not (or no longer) local: the prober's fault, not the target's.
        io::ErrorKind::AddrNotAvailable => {
            Outcome::unknown(format!("cannot use the source address: {e}"))
        }
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => {
            Outcome::critical(Reason::Protocol, format!("connection closed: {e}"))
        }
        _ => Outcome::critical(Reason::Unreachable, format!("cannot connect: {e}")),
    }
}

/// Connects to the first of `addrs` (already resolved) that accepts, in order, from
/// `source_ip`: the connect half of [`connect_any`], for kinds that time resolution and
/// connection separately.
///
/// # Errors
///
/// The outcome the TCP probe would report for the last address's failure.
pub(super) async fn connect_first(
    addrs: &[SocketAddr],
    source_ip: Option<IpAddr>,
) -> Result<TcpStream, Outcome> {
    let mut last = None;
    for &addr in addrs {
        match connect(addr, source_ip).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(ConnectError::Local(message)) => Outcome::unknown(message),
        Some(ConnectError::Connect(e)) => outcome_of_io(&e),
        None => Outcome::critical(Reason::Unreachable, "no address to connect to"),
    })
}

/// One connection attempt, bound to `source_ip` first when set.
async fn connect(addr: SocketAddr, source_ip: Option<IpAddr>) -> Result<TcpStream, ConnectError> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| ConnectError::Local(format!("cannot open a socket: {e}")))?;
    if let Some(ip) = source_ip {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| ConnectError::Local(format!("cannot bind source address {ip}: {e}")))?;
    }
    socket.connect(addr).await.map_err(ConnectError::Connect)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use consentry_cluster::model::{CheckSpec, ProbeSpec, Status};
    use tokio::net::TcpListener;

    use super::*;
    use crate::probe::Prober;

    /// Bound on any one test step, so a regression fails instead of hanging.
    const TEST_STEP_MS: u64 = 5_000;

    fn tcp_check(host: &str, port: u16) -> CheckSpec {
        let mut check = CheckSpec::for_test("tcp-test");
        check.probe = ProbeSpec::Tcp(consentry_cluster::model::TcpSpec {
            host: host.to_string(),
            port,
        });
        check.timeout_ms = 2_000;
        check
    }

    /// Whether this OS lets a socket bind 127.0.0.2 (Linux: all of 127/8 is local).
    fn loopback_2_bindable() -> bool {
        std::net::TcpListener::bind("127.0.0.2:0").is_ok()
    }

    /// Probes a listener on 127.0.0.1 from `source_ip` and returns the peer it accepted.
    async fn peer_seen_from(source_ip: IpAddr) -> IpAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accept = tokio::spawn(async move { listener.accept().await.map(|(_, peer)| peer) });
        let result = Prober::for_test(Some(source_ip))
            .probe(&tcp_check("127.0.0.1", port))
            .await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        let peer = tokio::time::timeout(Duration::from_millis(TEST_STEP_MS), accept)
            .await
            .expect("accepted in time")
            .expect("task")
            .expect("accept");
        peer.ip()
    }

    #[tokio::test]
    async fn open_port_is_ok() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let result = Prober::for_test(None)
            .probe(&tcp_check("127.0.0.1", port))
            .await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        assert_eq!(result.reason, Reason::None);
        assert!(
            result.message.starts_with("connected in "),
            "{}",
            result.message
        );
        assert_eq!(result.check, "tcp-test");
        drop(listener);
    }

    #[tokio::test]
    async fn localhost_name_resolves_and_connects() {
        // `localhost` may resolve to ::1 first; the probe must go on to 127.0.0.1.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let result = Prober::for_test(None)
            .probe(&tcp_check("localhost", port))
            .await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let result = Prober::for_test(None)
            .probe(&tcp_check("127.0.0.1", port))
            .await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::Refused);
        assert_eq!(result.message, "connection refused");
    }

    #[tokio::test]
    async fn source_ip_is_the_peer_the_server_sees() {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(peer_seen_from(loopback).await, loopback);
        if !loopback_2_bindable() {
            println!("skipping the 127.0.0.2 case: this OS cannot bind 127.0.0.2");
            return;
        }
        let second = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(peer_seen_from(second).await, second);
    }

    #[tokio::test]
    async fn source_of_the_other_family_is_unreachable_not_dns() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let source = "::1".parse().expect("ip");
        let result = Prober::for_test(Some(source))
            .probe(&tcp_check("127.0.0.1", port))
            .await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert_eq!(result.reason, Reason::Unreachable);
    }

    #[tokio::test]
    async fn unbindable_source_is_unknown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // TEST-NET-1: reserved for documentation, never configured on a host.
        let source = "192.0.2.1".parse().expect("ip");
        let result = Prober::for_test(Some(source))
            .probe(&tcp_check("127.0.0.1", port))
            .await;
        assert_eq!(result.status, Status::Unknown, "{result:?}");
        assert_eq!(result.reason, Reason::Internal);
        assert!(result.message.contains("192.0.2.1"), "{}", result.message);
    }

    #[test]
    fn dns_errors_map_to_reasons() {
        let lookup = DnsError::Lookup {
            host: "nope.invalid".into(),
            source: io::Error::other("Name or service not known"),
        };
        let outcome = outcome_of_dns(&lookup);
        assert_eq!(
            (outcome.status, outcome.reason),
            (Status::Critical, Reason::Dns)
        );
        assert_eq!(
            outcome.message,
            "cannot resolve nope.invalid: Name or service not known"
        );
        let family = DnsError::NoAddressInFamily {
            host: "v6only".into(),
            family: "IPv4",
            source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        let outcome = outcome_of_dns(&family);
        assert_eq!(outcome.reason, Reason::Unreachable);
    }
}

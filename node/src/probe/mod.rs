//! Probes: one attempt against one target, bounded by the check's timeout, turned into a
//! `ProbeResult`.
//!
//! Each kind returns an [`Outcome`] that says what it found (status, reason, message,
//! measurements); the [`Prober`] times the whole attempt, cuts it off at `timeout_ms`, and
//! applies the latency thresholds. Results leave with `observed_at_ms = 0`; the poller
//! stamps them. Kinds share what is expensive to build through [`ProbeContext`] (TLS
//! configurations), never connections: every probe opens its own.

mod banner;
mod cert;
mod dns;
mod http;
mod icmp;
mod nagios;
mod perfdata;
mod sql;
mod tcp;
#[cfg(test)]
mod test_support;
mod tls_config;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use consentry_cluster::model::{CheckSpec, Latency, Perf, ProbeResult, ProbeSpec, Reason, Status};

pub use http::{HTTP_BODY_BYTES_MAX, HTTP_REDIRECTS_MAX};
pub use icmp::ECHO_REQUESTS_MAX as ICMP_ECHO_REQUESTS_MAX;
pub use tcp::RESOLVED_ADDRESSES_MAX;

/// Where probes leave from and what they may run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    /// The local address probes leave from (what customers allow-list); any when `None`.
    pub source_ip: Option<IpAddr>,
    /// Directories `nagios` plugins may be run from (node.toml `plugin_dirs`).
    pub plugin_dirs: Vec<PathBuf>,
}

/// What probes of every kind share: configuration and prebuilt TLS client settings.
#[derive(Debug)]
pub struct ProbeContext {
    pub config: ProbeConfig,
    /// Verifies server certificates against the bundled web PKI roots.
    pub tls_verified: Arc<rustls::ClientConfig>,
    /// Accepts any server certificate (`tls_verify = false`), still negotiating real TLS.
    pub tls_unverified: Arc<rustls::ClientConfig>,
}

impl ProbeContext {
    pub fn tls(&self, verify: bool) -> Arc<rustls::ClientConfig> {
        if verify {
            self.tls_verified.clone()
        } else {
            self.tls_unverified.clone()
        }
    }

    pub fn source_ip(&self) -> Option<IpAddr> {
        self.config.source_ip
    }
}

/// What the poller calls to probe one check: the real [`Prober`] in production, simulated
/// targets in the simulation.
pub trait Probe: Send + Sync + 'static {
    /// One bounded attempt; never fails (a problem is a result with a reason).
    fn probe<'a>(&'a self, check: &'a CheckSpec) -> futures::future::BoxFuture<'a, ProbeResult>;
}

impl Probe for Prober {
    fn probe<'a>(&'a self, check: &'a CheckSpec) -> futures::future::BoxFuture<'a, ProbeResult> {
        Box::pin(Prober::probe(self, check))
    }
}

/// Runs probes from this node.
#[derive(Debug, Clone)]
pub struct Prober {
    ctx: Arc<ProbeContext>,
}

/// What one kind of probe found, before timing: the prober adds the latency and applies
/// the thresholds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    status: Status,
    reason: Reason,
    /// For OK outcomes, what succeeded ("connected", "HTTP 200"); the prober appends the
    /// latency. Otherwise the whole human message.
    message: String,
    /// Measurements the kind took (phase timings, RTT, days left, a plugin's perfdata).
    perfdata: Vec<Perf>,
}

impl Prober {
    /// A prober leaving from `source_ip` with no plugin directories, for tests.
    pub fn for_test(source_ip: Option<IpAddr>) -> Self {
        Self::new(ProbeConfig {
            source_ip,
            plugin_dirs: Vec::new(),
        })
    }

    /// A prober with `config`; builds the shared TLS settings once.
    pub fn new(config: ProbeConfig) -> Self {
        let ctx = ProbeContext {
            config,
            tls_verified: tls_config::verified(),
            tls_unverified: tls_config::unverified(),
        };
        Self { ctx: Arc::new(ctx) }
    }

    /// The address probes leave from, if fixed.
    pub fn source_ip(&self) -> Option<IpAddr> {
        self.ctx.config.source_ip
    }

    /// Probes `check` once. Never fails: every problem, including the prober's own
    /// (a source address that cannot be bound), is a result with a reason.
    ///
    /// The whole attempt (resolution, connection, TLS, request, body) is bounded by
    /// `check.timeout_ms`; running out of time yields CRITICAL `timeout`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future closes whatever sockets it opened, and probes share
    /// no connections.
    pub async fn probe(&self, check: &CheckSpec) -> ProbeResult {
        // Probes measure elapsed time locally; it is never compared across machines.
        #[allow(clippy::disallowed_methods)]
        let started = tokio::time::Instant::now();
        let timeout = Duration::from_millis(check.timeout_ms);
        let attempt = self.attempt(&check.probe, timeout);
        let timed = tokio::time::timeout(timeout, attempt).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match timed {
            Ok(outcome) => result_of(&check.name, outcome, latency_ms, check.latency),
            Err(_elapsed) => ProbeResult::new(
                &check.name,
                Status::Critical,
                Reason::Timeout,
                latency_ms,
                &format!("timed out after {} ms", check.timeout_ms),
            ),
        }
    }

    async fn attempt(&self, probe: &ProbeSpec, timeout: Duration) -> Outcome {
        let ctx = &self.ctx;
        match probe {
            ProbeSpec::Tcp(spec) => tcp::probe(&spec.host, spec.port, ctx.source_ip()).await,
            ProbeSpec::Icmp(spec) => icmp::probe(spec, ctx, timeout).await,
            ProbeSpec::Http(spec) => http::probe(spec, ctx).await,
            ProbeSpec::Dns(spec) => dns::probe(spec, ctx, timeout).await,
            ProbeSpec::Banner(spec) => banner::probe(spec, ctx).await,
            ProbeSpec::Sql(spec) => sql::probe(spec, ctx).await,
            ProbeSpec::Tls(spec) => cert::probe(spec, ctx).await,
            ProbeSpec::Nagios(spec) => nagios::probe(spec, ctx, timeout).await,
            // Judged from the agent's reports by the state machine; pollers skip them.
            ProbeSpec::Agent(_) => Outcome::unknown("agent checks are not probed by nodes"),
        }
    }
}

impl Outcome {
    pub(crate) fn ok(what: impl Into<String>) -> Self {
        Self {
            status: Status::Ok,
            reason: Reason::None,
            message: what.into(),
            perfdata: Vec::new(),
        }
    }

    pub(crate) fn warning(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            status: Status::Warning,
            reason,
            message: message.into(),
            perfdata: Vec::new(),
        }
    }

    pub(crate) fn critical(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            status: Status::Critical,
            reason,
            message: message.into(),
            perfdata: Vec::new(),
        }
    }

    /// The prober could not judge the target (its own configuration or environment is
    /// at fault), Nagios UNKNOWN.
    pub(crate) fn unknown(message: impl Into<String>) -> Self {
        Self {
            status: Status::Unknown,
            reason: Reason::Internal,
            message: message.into(),
            perfdata: Vec::new(),
        }
    }

    /// Any status, for kinds that map a foreign verdict (a plugin's exit code).
    pub(crate) fn with_status(status: Status, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            perfdata: Vec::new(),
        }
    }

    /// Adds measurements.
    pub(crate) fn perf(mut self, perf: impl IntoIterator<Item = Perf>) -> Self {
        self.perfdata.extend(perf);
        self
    }
}

/// Turns a finished attempt into a result, applying the latency thresholds to OK outcomes
/// only: a failure stays the failure it is, however long it took.
fn result_of(check: &str, outcome: Outcome, latency_ms: u64, latency: Latency) -> ProbeResult {
    let perf = outcome.perfdata.clone();
    result_of_inner(check, outcome, latency_ms, latency).with_perfdata(perf)
}

fn result_of_inner(
    check: &str,
    outcome: Outcome,
    latency_ms: u64,
    latency: Latency,
) -> ProbeResult {
    if !outcome.status.is_ok() {
        return ProbeResult::new(
            check,
            outcome.status,
            outcome.reason,
            latency_ms,
            &outcome.message,
        );
    }
    let message = format!("{} in {latency_ms} ms", outcome.message);
    if let Some(crit_ms) = latency.crit_ms.filter(|crit_ms| latency_ms >= *crit_ms) {
        let message = format!("{message} (critical at {crit_ms} ms)");
        return ProbeResult::new(check, Status::Critical, Reason::Slow, latency_ms, &message);
    }
    if let Some(warn_ms) = latency.warn_ms.filter(|warn_ms| latency_ms >= *warn_ms) {
        let message = format!("{message} (warning at {warn_ms} ms)");
        return ProbeResult::new(check, Status::Warning, Reason::Slow, latency_ms, &message);
    }
    ProbeResult::new(check, Status::Ok, Reason::None, latency_ms, &message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_thresholds_apply_to_ok_outcomes_only() {
        // (outcome status, latency_ms, warn_ms, crit_ms) -> (status, reason)
        type Case = (Status, u64, Option<u64>, Option<u64>, Status, Reason);
        let cases: &[Case] = &[
            (Status::Ok, 5, None, None, Status::Ok, Reason::None),
            (Status::Ok, 5, Some(10), Some(20), Status::Ok, Reason::None),
            (
                Status::Ok,
                10,
                Some(10),
                Some(20),
                Status::Warning,
                Reason::Slow,
            ),
            (
                Status::Ok,
                19,
                Some(10),
                Some(20),
                Status::Warning,
                Reason::Slow,
            ),
            (
                Status::Ok,
                20,
                Some(10),
                Some(20),
                Status::Critical,
                Reason::Slow,
            ),
            (
                Status::Ok,
                500,
                Some(10),
                Some(20),
                Status::Critical,
                Reason::Slow,
            ),
            (
                Status::Ok,
                500,
                None,
                Some(20),
                Status::Critical,
                Reason::Slow,
            ),
            (
                Status::Ok,
                500,
                Some(10),
                None,
                Status::Warning,
                Reason::Slow,
            ),
            (
                Status::Critical,
                500,
                Some(10),
                Some(20),
                Status::Critical,
                Reason::Refused,
            ),
        ];
        for &(status, latency_ms, warn_ms, crit_ms, want_status, want_reason) in cases {
            let outcome = if status.is_ok() {
                Outcome::ok("connected")
            } else {
                Outcome::critical(Reason::Refused, "connection refused")
            };
            let latency = Latency { warn_ms, crit_ms };
            let result = result_of("c", outcome, latency_ms, latency);
            let case = format!("{status} {latency_ms} ms warn {warn_ms:?} crit {crit_ms:?}");
            assert_eq!(result.status, want_status, "{case}");
            assert_eq!(result.reason, want_reason, "{case}");
            assert_eq!(result.latency_ms, latency_ms, "{case}");
            assert_eq!(result.observed_at_ms, 0, "{case}");
        }
    }

    #[test]
    fn messages_say_what_happened_and_how_long_it_took() {
        let latency = Latency {
            warn_ms: Some(100),
            crit_ms: Some(200),
        };
        let ok = result_of("c", Outcome::ok("connected"), 3, latency);
        assert_eq!(ok.message, "connected in 3 ms");
        let slow = result_of("c", Outcome::ok("HTTP 200"), 150, latency);
        assert_eq!(slow.message, "HTTP 200 in 150 ms (warning at 100 ms)");
        let refused = result_of(
            "c",
            Outcome::critical(Reason::Refused, "connection refused"),
            1,
            latency,
        );
        assert_eq!(refused.message, "connection refused");
    }
}

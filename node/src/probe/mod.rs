//! Probes: one attempt against one target, bounded by the check's timeout, turned into a
//! `ProbeResult`.
//!
//! Each kind (`tcp`, `http`) returns an [`Outcome`] that says what it found; the
//! [`Prober`] times the whole attempt, cuts it off at `timeout_ms`, and applies the
//! latency thresholds. Results leave with `observed_at_ms = 0`; the poller stamps them.

mod http;
mod tcp;

use std::net::IpAddr;
use std::time::Duration;

use consentry_cluster::model::{CheckSpec, Latency, ProbeResult, ProbeSpec, Reason, Status};

pub use http::{HTTP_BODY_BYTES_MAX, HTTP_REDIRECTS_MAX};
pub use tcp::RESOLVED_ADDRESSES_MAX;

/// Runs probes from this node, optionally leaving from a fixed source address so that
/// customers can allow-list it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prober {
    source_ip: Option<IpAddr>,
}

/// What one kind of probe found, before timing: the prober adds the latency and applies
/// the thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    status: Status,
    reason: Reason,
    /// For OK outcomes, what succeeded ("connected", "HTTP 200"); the prober appends the
    /// latency. Otherwise the whole human message.
    message: String,
}

impl Prober {
    /// A prober whose connections leave from `source_ip` (any local address when `None`).
    pub fn new(source_ip: Option<IpAddr>) -> Self {
        Self { source_ip }
    }

    /// The address probes leave from, if fixed.
    pub fn source_ip(&self) -> Option<IpAddr> {
        self.source_ip
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
    /// no state.
    pub async fn probe(&self, check: &CheckSpec) -> ProbeResult {
        // Probes measure elapsed time locally; it is never compared across machines.
        #[allow(clippy::disallowed_methods)]
        let started = tokio::time::Instant::now();
        let attempt = self.attempt(&check.probe);
        let timed = tokio::time::timeout(Duration::from_millis(check.timeout_ms), attempt).await;
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

    async fn attempt(&self, probe: &ProbeSpec) -> Outcome {
        match probe {
            ProbeSpec::Tcp { host, port } => tcp::probe(host, *port, self.source_ip).await,
            ProbeSpec::Http {
                url,
                method,
                expect_status,
                body_contains,
                tls_verify,
            } => {
                http::probe(
                    url,
                    method,
                    expect_status,
                    body_contains.as_deref(),
                    *tls_verify,
                    self.source_ip,
                )
                .await
            }
        }
    }
}

impl Outcome {
    fn ok(what: impl Into<String>) -> Self {
        Self {
            status: Status::Ok,
            reason: Reason::None,
            message: what.into(),
        }
    }

    fn critical(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            status: Status::Critical,
            reason,
            message: message.into(),
        }
    }

    /// The prober could not judge the target (its own configuration or environment is
    /// at fault), Nagios UNKNOWN.
    fn unknown(message: impl Into<String>) -> Self {
        Self {
            status: Status::Unknown,
            reason: Reason::Internal,
            message: message.into(),
        }
    }
}

/// Turns a finished attempt into a result, applying the latency thresholds to OK outcomes
/// only: a failure stays the failure it is, however long it took.
fn result_of(check: &str, outcome: Outcome, latency_ms: u64, latency: Latency) -> ProbeResult {
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

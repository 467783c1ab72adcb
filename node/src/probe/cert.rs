//! Certificate probe (`kind = "tls"`): reach TLS (directly, or after SMTP, POP3 or IMAP
//! STARTTLS through the banner probe's session), accept whatever certificate the server
//! shows so its dates can always be judged, then judge the leaf's validity period and,
//! when asked, its chain and name against the web PKI roots.
//!
//! The judging is a plain function of the chain, the spec and `now`, tested without a
//! network.

use std::sync::Arc;
use std::time::Duration;

use consentry_cluster::model::{truncate, Perf, Reason, Status, TlsSpec};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::banner::{self, seconds};
use super::{Outcome, ProbeContext};

const SECONDS_PER_DAY: i64 = 86_400;
/// Longest certificate subject quoted in a result message.
const CERT_SUBJECT_BYTES_MAX: usize = 96;

/// Why the chain could not be judged or was refused.
#[derive(Debug, thiserror::Error)]
enum VerifyError {
    /// The prober's side: the verifier or the name could not be built.
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Untrusted(rustls::Error),
}

/// Probes `spec` once; see the module documentation.
pub(super) async fn probe(spec: &TlsSpec, ctx: &ProbeContext) -> Outcome {
    let server_name = spec.server_name.as_deref().unwrap_or(&spec.host);
    let connected = banner::connect_tls(
        &spec.host,
        spec.port,
        ctx.source_ip(),
        spec.starttls,
        // Unverified on purpose: an untrusted or expired certificate must still be seen to
        // report its dates; the chain is judged afterwards when the check asks.
        ctx.tls(false),
        server_name,
    )
    .await;
    let (session, took) = match connected {
        Ok(connected) => connected,
        Err(outcome) => return outcome,
    };
    let chain: Vec<CertificateDer<'static>> = session
        .tls()
        .and_then(|tls| tls.peer_certificates())
        .map(<[CertificateDer<'static>]>::to_vec)
        .unwrap_or_default();
    session.goodbye(spec.starttls).await;
    let outcome = judge(spec, server_name, &chain, wall_clock_unix_s());
    outcome.perf([Perf::new("tls_handshake", seconds(took), "s")])
}

/// Judges the server's `chain` (leaf first) at `now_unix_s`: the leaf's validity period
/// against the thresholds, then, if `spec.verify_chain`, the chain and `server_name`
/// against the web PKI roots.
fn judge(
    spec: &TlsSpec,
    server_name: &str,
    chain: &[CertificateDer<'static>],
    now_unix_s: i64,
) -> Outcome {
    let Some(leaf) = chain.first() else {
        return Outcome::critical(Reason::Tls, "the server sent no certificate");
    };
    let cert = match X509Certificate::from_der(leaf) {
        Ok((_, cert)) => cert,
        Err(e) => {
            return Outcome::critical(Reason::Tls, format!("cannot parse the certificate: {e}"))
        }
    };
    let subject = subject_of(&cert);
    let validity = cert.validity();
    let not_before = validity.not_before;
    let not_after = validity.not_after;
    if not_before.timestamp() > now_unix_s {
        return Outcome::critical(
            Reason::Tls,
            format!("certificate {subject} is not valid before {not_before}"),
        );
    }
    let seconds_left = not_after.timestamp().saturating_sub(now_unix_s);
    // Whole days, rounded down: 23 hours left is 0 days, as check_http -C counts.
    let days_left = seconds_left.div_euclid(SECONDS_PER_DAY);
    let mut perf = Perf::new("days_left", days_left as f64, "");
    perf.warn = Some(f64::from(spec.days_warn));
    perf.crit = Some(f64::from(spec.days_crit));
    let outcome = judge_dates(
        spec,
        &subject,
        &not_after.to_string(),
        seconds_left,
        days_left,
    );
    // An expired or nearly expired certificate is the more urgent news; the chain is
    // judged when the dates leave the result at WARNING or better.
    if outcome.status == Status::Critical || !spec.verify_chain {
        return outcome.perf([perf]);
    }
    let verdict = match verify(chain, server_name, now_unix_s) {
        Ok(()) => outcome,
        Err(VerifyError::Setup(message)) => {
            Outcome::unknown(format!("cannot verify the certificate chain: {message}"))
        }
        Err(VerifyError::Untrusted(e)) => Outcome::critical(
            Reason::Tls,
            format!(
                "certificate {subject} is not trusted for {server_name}: {} ({days_left} days left)",
                super::tls_config::describe_tls_error(&e).trim_start_matches("TLS: ")
            ),
        ),
    };
    verdict.perf([perf])
}

/// The date thresholds alone (`seconds_left` may be negative: expired).
fn judge_dates(
    spec: &TlsSpec,
    subject: &str,
    not_after: &str,
    seconds_left: i64,
    days_left: i64,
) -> Outcome {
    if seconds_left <= 0 {
        let days_ago = seconds_left.saturating_neg().div_euclid(SECONDS_PER_DAY);
        return Outcome::critical(
            Reason::CertExpiring,
            format!("certificate {subject} expired {not_after} ({days_ago} days ago)"),
        );
    }
    let message = format!("certificate {subject} expires {not_after} ({days_left} days left)");
    if days_left <= i64::from(spec.days_crit) {
        return Outcome::critical(Reason::CertExpiring, message);
    }
    if days_left <= i64::from(spec.days_warn) {
        return Outcome::warning(Reason::CertExpiring, message);
    }
    Outcome::ok(message)
}

/// Verifies `chain` and `server_name` against the bundled web PKI roots at `now_unix_s`,
/// the same roots the `tls_verify = true` client configuration uses.
///
/// # Errors
///
/// `Untrusted` with rustls' reason (unknown issuer, wrong name, ...); `Setup` when the
/// verifier or the name cannot be built.
fn verify(
    chain: &[CertificateDer<'static>],
    server_name: &str,
    now_unix_s: i64,
) -> Result<(), VerifyError> {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(VerifyError::Untrusted(
            rustls::Error::NoCertificatesPresented,
        ));
    };
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| VerifyError::Setup(e.to_string()))?;
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| {
        VerifyError::Setup(format!("{server_name:?} is not a TLS server name: {e}"))
    })?;
    let now =
        UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now_unix_s).unwrap_or(0)));
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], now)
        .map(|_| ())
        .map_err(VerifyError::Untrusted)
}

/// The subject's first common name, else the whole subject, printable and cut.
fn subject_of(cert: &X509Certificate<'_>) -> String {
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(|cn| format!("CN={cn}"))
        .unwrap_or_else(|| subject.to_string());
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    format!("'{}'", truncate(&name, CERT_SUBJECT_BYTES_MAX))
}

/// Wall-clock seconds since the Unix epoch. Certificate dates are absolute, so unlike
/// every other probe this one needs the wall clock, not elapsed time; it is read here,
/// in one place, until `ProbeContext` carries the node's `Clock`.
#[allow(clippy::disallowed_methods)]
fn wall_clock_unix_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use consentry_cluster::model::{BannerProtocol, CheckSpec, ProbeResult, ProbeSpec};

    use super::*;
    use crate::probe::banner::fake::{days_from, tls_server, Fake, Step, TEST_STEP_MS};
    use crate::probe::test_support::assert_verdict;
    use crate::probe::Prober;

    const CHECK_TIMEOUT_MS: u64 = 3_000;

    fn spec(port: u16, verify_chain: bool) -> TlsSpec {
        TlsSpec {
            host: "127.0.0.1".into(),
            port,
            server_name: None,
            starttls: None,
            days_warn: 30,
            days_crit: 14,
            verify_chain,
        }
    }

    fn now_unix_s() -> u64 {
        u64::try_from(wall_clock_unix_s()).expect("the clock is after 1970")
    }

    /// Serves a certificate valid from a day ago for `days_valid` days from now (negative:
    /// expired that long ago) over implicit TLS, and probes it.
    async fn probe_cert(days_valid: i64, verify_chain: bool) -> ProbeResult {
        let now = now_unix_s();
        let not_before = days_from(now, days_valid.min(0) - 1);
        let server = tls_server(Some((not_before, days_from(now, days_valid))));
        let fake = Fake::start(vec![Step::Tls], Some(server)).await;
        probe_spec(spec(fake.port, verify_chain)).await
    }

    async fn probe_spec(spec: TlsSpec) -> ProbeResult {
        let mut check = CheckSpec::for_test("tls-test");
        check.probe = ProbeSpec::Tls(spec);
        check.timeout_ms = CHECK_TIMEOUT_MS;
        tokio::time::timeout(
            Duration::from_millis(CHECK_TIMEOUT_MS + TEST_STEP_MS),
            Prober::for_test(None).probe(&check),
        )
        .await
        .expect("the prober's timeout bounds the probe")
    }

    /// Days are rounded down, so a certificate made `days` days from now shows `days`
    /// when probed within the same second, else one less.
    fn assert_days_left(result: &ProbeResult, days: u32) {
        let left = result
            .perfdata
            .iter()
            .find(|p| p.label == "days_left")
            .map(|p| p.value)
            .expect("days_left perfdata");
        let days = f64::from(days);
        assert!(
            left == days || left == days - 1.0,
            "{left}: {}",
            result.message
        );
    }

    #[test]
    fn dates_against_thresholds() {
        // (seconds left, warn, crit) -> (status, reason)
        let day = SECONDS_PER_DAY;
        let cases: &[(i64, u32, u32, Status, Reason)] = &[
            (400 * day, 30, 14, Status::Ok, Reason::None),
            (31 * day, 30, 14, Status::Ok, Reason::None),
            (30 * day + 1, 30, 14, Status::Warning, Reason::CertExpiring),
            (20 * day, 30, 14, Status::Warning, Reason::CertExpiring),
            (15 * day - 1, 30, 14, Status::Critical, Reason::CertExpiring),
            (5 * day, 30, 14, Status::Critical, Reason::CertExpiring),
            (1, 30, 14, Status::Critical, Reason::CertExpiring),
            (0, 30, 14, Status::Critical, Reason::CertExpiring),
            (-3 * day, 30, 14, Status::Critical, Reason::CertExpiring),
            (1, 0, 0, Status::Critical, Reason::CertExpiring),
            (day, 0, 0, Status::Ok, Reason::None),
        ];
        for &(seconds_left, days_warn, days_crit, status, reason) in cases {
            let mut spec = spec(443, false);
            spec.days_warn = days_warn;
            spec.days_crit = days_crit;
            let days_left = seconds_left.div_euclid(SECONDS_PER_DAY);
            let outcome = judge_dates(&spec, "'CN=x'", "then", seconds_left, days_left);
            assert_eq!(
                (outcome.status, outcome.reason),
                (status, reason),
                "{seconds_left} s left, warn {days_warn} crit {days_crit}: {}",
                outcome.message
            );
        }
    }

    #[test]
    fn no_or_unparsable_certificate_is_critical_tls() {
        let none = judge(&spec(443, false), "localhost", &[], 0);
        assert_eq!((none.status, none.reason), (Status::Critical, Reason::Tls));
        let junk = [CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01])];
        let junk = judge(&spec(443, false), "localhost", &junk, 0);
        assert_eq!((junk.status, junk.reason), (Status::Critical, Reason::Tls));
    }

    #[tokio::test]
    async fn five_days_left_is_critical() {
        let result = probe_cert(5, false).await;
        assert_verdict(&result, Status::Critical, Reason::CertExpiring);
        assert_days_left(&result, 5);
        assert!(
            result.message.contains("CN=consentry test"),
            "{}",
            result.message
        );
    }

    #[tokio::test]
    async fn twenty_days_left_is_warning() {
        let result = probe_cert(20, false).await;
        assert_verdict(&result, Status::Warning, Reason::CertExpiring);
    }

    #[tokio::test]
    async fn four_hundred_days_left_is_ok() {
        let result = probe_cert(400, false).await;
        assert_verdict(&result, Status::Ok, Reason::None);
        assert_days_left(&result, 400);
        let labels: Vec<&str> = result.perfdata.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["days_left", "tls_handshake"]);
    }

    #[tokio::test]
    async fn expired_is_critical() {
        let result = probe_cert(-3, false).await;
        assert_verdict(&result, Status::Critical, Reason::CertExpiring);
        assert!(result.message.contains("expired"), "{}", result.message);
    }

    #[tokio::test]
    async fn not_yet_valid_is_critical_tls() {
        let now = now_unix_s();
        let server = tls_server(Some((days_from(now, 2), days_from(now, 400))));
        let fake = Fake::start(vec![Step::Tls], Some(server)).await;
        let result = probe_spec(spec(fake.port, false)).await;
        assert_verdict(&result, Status::Critical, Reason::Tls);
        assert!(
            result.message.contains("not valid before"),
            "{}",
            result.message
        );
    }

    #[tokio::test]
    async fn self_signed_fails_chain_verification_only_when_asked() {
        let untrusted = probe_cert(400, true).await;
        assert_verdict(&untrusted, Status::Critical, Reason::Tls);
        assert!(
            untrusted.message.contains("UnknownIssuer"),
            "{}",
            untrusted.message
        );
        assert_days_left(&untrusted, 400);
        let dates_only = probe_cert(400, false).await;
        assert_verdict(&dates_only, Status::Ok, Reason::None);
    }

    #[tokio::test]
    async fn certificate_behind_smtp_starttls() {
        let now = now_unix_s();
        let server = tls_server(Some((days_from(now, -1), days_from(now, 20))));
        let steps = vec![
            Step::Send("220 mx.example ESMTP\r\n"),
            Step::Recv,
            Step::Send("250-mx.example\r\n250 STARTTLS\r\n"),
            Step::Recv,
            Step::Send("220 go ahead\r\n"),
            Step::Tls,
        ];
        let fake = Fake::start(steps, Some(server)).await;
        let mut spec = spec(fake.port, false);
        spec.starttls = Some(BannerProtocol::Smtp);
        spec.server_name = Some("localhost".into());
        let result = probe_spec(spec).await;
        assert_verdict(&result, Status::Warning, Reason::CertExpiring);
        assert_eq!(
            fake.transcript().await,
            ["EHLO localhost", "STARTTLS", "QUIT"]
        );
    }

    #[tokio::test]
    async fn refused_greeting_means_no_certificate() {
        let fake = Fake::start(vec![Step::Send("554 go away\r\n")], None).await;
        let mut spec = spec(fake.port, false);
        spec.starttls = Some(BannerProtocol::Smtp);
        let result = probe_spec(spec).await;
        assert_verdict(&result, Status::Critical, Reason::Protocol);
    }
}

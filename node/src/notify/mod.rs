//! Notifiers: deliver one notification intent to one channel, once per call.
//!
//! The leader's effects executor ([`crate::leader`]) owns retries, backoff and committing
//! the outcome; [`deliver`] makes one bounded attempt: every kind has a per-attempt time
//! limit ([`attempt_timeout_ms`]), enforced here on top of the kind's own timeouts, and
//! reads at most a bounded prefix of any answer. Kinds: [`webhook`] (the documented JSON
//! document), [`slack`] (incoming webhook), [`email`] (SMTP), [`alertmanager`] (API v2) and
//! [`exec`] (a program without a shell). What each sends is in docs/notifications.md.

pub mod alertmanager;
pub mod email;
pub mod exec;
pub mod slack;
pub mod summary;
pub mod webhook;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use consentry_cluster::model::{
    CheckSpec, Incident, IntentKind, NotifierKind, NotifierSpec, NotifyIntent, Status,
};

pub use summary::Summary;

/// Per-attempt limit of the HTTP kinds (webhook, slack, alertmanager).
pub const HTTP_ATTEMPT_TIMEOUT_MS: u64 = 5_000;
/// Per-attempt limit of an SMTP conversation.
pub const EMAIL_ATTEMPT_TIMEOUT_MS: u64 = 15_000;
/// Bytes of a receiver's error answer kept in the outcome.
pub const ERROR_BODY_BYTES_MAX: usize = 512;

/// Where the leader's deliveries go: the real channels ([`Channels`]) in production, a
/// recorder in the simulation. One call is one bounded attempt.
pub trait Notify: Send + Sync + 'static {
    fn deliver<'a>(
        &'a self,
        spec: &'a NotifierSpec,
        intent: &'a NotifyIntent,
        incident: &'a Incident,
        check: Option<&'a CheckSpec>,
        node_id: u64,
        wall_ms: u64,
    ) -> futures::future::BoxFuture<'a, Result<(), String>>;
}

/// The real channels: HTTP kinds through one client, exec from the allowed directories.
pub struct Channels {
    pub http: reqwest::Client,
    /// Directories `exec` notifiers may run programs from (node.toml `notify_exec_dirs`).
    pub exec_dirs: Arc<[PathBuf]>,
}

impl Notify for Channels {
    fn deliver<'a>(
        &'a self,
        spec: &'a NotifierSpec,
        intent: &'a NotifyIntent,
        incident: &'a Incident,
        check: Option<&'a CheckSpec>,
        node_id: u64,
        wall_ms: u64,
    ) -> futures::future::BoxFuture<'a, Result<(), String>> {
        let ctx = NotifyContext {
            http: self.http.clone(),
            node_id,
            wall_ms,
            exec_dirs: self.exec_dirs.clone(),
        };
        Box::pin(async move { deliver(spec, intent, incident, check, &ctx).await })
    }
}

/// What the leader passes to every attempt.
#[derive(Clone)]
pub struct NotifyContext {
    pub http: reqwest::Client,
    /// The leader that sends (in payloads).
    pub node_id: u64,
    /// Wall time of this attempt, from the leader's `Clock` (Alertmanager's `endsAt`).
    pub wall_ms: u64,
    /// Directories `exec` notifiers may run programs from (node.toml `notify_exec_dirs`).
    pub exec_dirs: Arc<[PathBuf]>,
}

impl NotifyContext {
    /// A context for tests: no exec directories, a client without proxies.
    pub fn for_test(wall_ms: u64) -> Self {
        Self {
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_default(),
            node_id: 1,
            wall_ms,
            exec_dirs: Arc::from(Vec::new()),
        }
    }
}

/// The most one attempt of `kind` may take.
pub fn attempt_timeout_ms(kind: &NotifierKind) -> u64 {
    match kind {
        NotifierKind::Webhook { .. }
        | NotifierKind::Slack { .. }
        | NotifierKind::Alertmanager { .. } => HTTP_ATTEMPT_TIMEOUT_MS,
        NotifierKind::Email(_) => EMAIL_ATTEMPT_TIMEOUT_MS,
        NotifierKind::Exec(e) => e.timeout_ms,
    }
}

/// What an intent is about, shaped as an incident so that every notifier kind can render
/// it: the incident itself, or, for flapping and operator alerts (which have none), an
/// incident-like description whose `close_note` says what happened. `None` when the
/// incident is gone from the state.
pub fn alert_view(intent: &NotifyIntent, incident: Option<&Incident>) -> Option<Incident> {
    let (check, severity, description) = match &intent.kind {
        IntentKind::Incident => return incident.cloned(),
        IntentKind::Flapping { percent_tenths, .. } => (
            intent.check.clone(),
            Status::Warning,
            match intent.transition {
                consentry_cluster::model::Transition::Firing => format!(
                    "{} is flapping: {}.{}% state change over recent results",
                    intent.check,
                    percent_tenths / 10,
                    percent_tenths % 10
                ),
                consentry_cluster::model::Transition::Resolved => {
                    format!("{} stopped flapping", intent.check)
                }
            },
        ),
        IntentKind::SiteDegraded { site, suspect, checks, .. } => (
            format!("site {site}"),
            Status::Warning,
            format!(
                "site {site} degraded: path-suspect on {suspect} of its {checks} checks (its network path, not the targets, is likely broken)"
            ),
        ),
        IntentKind::SiteSilent { site, .. } => (
            format!("site {site}"),
            Status::Critical,
            format!("site {site} silent: no fresh probe results from it"),
        ),
        IntentKind::RecoveryFailed { runbook, steps } => {
            // About the incident itself: keep its evidence, say what recovery did.
            let mut view = incident?.clone();
            view.close_note = Some(format!(
                "recovery failed: runbook {runbook} ran {steps} step(s) and {} is still down; \
                 people must take over",
                intent.check
            ));
            return Some(view);
        }
    };
    Some(Incident {
        id: alert_id(&intent.kind),
        check,
        severity,
        close_note: Some(description),
        ..Incident::default()
    })
}

/// The episode number of a flapping or operator alert (0 for incidents).
pub fn alert_id(kind: &IntentKind) -> u64 {
    match kind {
        IntentKind::Incident | IntentKind::RecoveryFailed { .. } => 0,
        IntentKind::Flapping { alert_id, .. }
        | IntentKind::SiteDegraded { alert_id, .. }
        | IntentKind::SiteSilent { alert_id, .. } => *alert_id,
    }
}

/// `incident`, `flapping`, `site_degraded`, `site_silent` or `recovery_failed`.
pub fn alert_kind(kind: &IntentKind) -> &'static str {
    match kind {
        IntentKind::Incident => "incident",
        IntentKind::Flapping { .. } => "flapping",
        IntentKind::SiteDegraded { .. } => "site_degraded",
        IntentKind::SiteSilent { .. } => "site_silent",
        IntentKind::RecoveryFailed { .. } => "recovery_failed",
    }
}

/// Makes one attempt to deliver `intent` (of `incident`, for `check` when it still exists)
/// through `spec`.
///
/// # Errors
/// A short description of why this attempt failed (kept in the committed outcome).
///
/// # Cancel safety
/// Cancel safe: dropping the future abandons the attempt (an exec notifier's process group
/// is killed).
pub async fn deliver(
    spec: &NotifierSpec,
    intent: &NotifyIntent,
    incident: &Incident,
    check: Option<&CheckSpec>,
    ctx: &NotifyContext,
) -> Result<(), String> {
    let limit_ms = attempt_timeout_ms(&spec.kind);
    let attempt = async {
        match &spec.kind {
            NotifierKind::Webhook { url } => {
                let body = webhook::WebhookBody::new(
                    intent,
                    incident,
                    check.map(|c| &c.probe),
                    ctx.node_id,
                );
                let body = serde_json::to_vec(&body).map_err(|e| format!("encoding: {e}"))?;
                webhook::post_raw(&ctx.http, url, &intent.dedup_key, body).await
            }
            NotifierKind::Slack { url } => {
                let summary = Summary::new(intent, incident, check);
                slack::post(&ctx.http, url, &summary).await
            }
            NotifierKind::Email(email) => {
                let summary = Summary::new(intent, incident, check);
                email::send(email, &summary, limit_ms).await
            }
            NotifierKind::Alertmanager { url } => {
                let summary = Summary::new(intent, incident, check);
                alertmanager::post(&ctx.http, url, &summary, ctx).await
            }
            NotifierKind::Exec(exec) => {
                let summary = Summary::new(intent, incident, check);
                exec::run(exec, &summary, ctx).await
            }
        }
    };
    match tokio::time::timeout(Duration::from_millis(limit_ms), attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "{} notifier {:?} gave no answer within {limit_ms} ms",
            spec.kind.as_str(),
            spec.name
        )),
    }
}

/// Reads at most `max` bytes of a response body (a receiver that answers an error with a
/// gigabyte costs us `max`), lossily as text.
pub(crate) async fn read_prefix(mut resp: reqwest::Response, max: usize) -> String {
    let mut body = Vec::new();
    while body.len() < max {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(max - body.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// Sends one JSON POST with the dedup key header and judges the answer: any 2xx is
/// delivered; otherwise the status and a bounded prefix of the body.
///
/// # Errors
/// When the receiver is unreachable, times out or answers non-2xx.
pub(crate) async fn post_json(
    client: &reqwest::Client,
    url: &str,
    dedup_key: &str,
    body: Vec<u8>,
) -> Result<(), String> {
    post_json_within(
        client,
        url,
        dedup_key,
        body,
        Duration::from_millis(HTTP_ATTEMPT_TIMEOUT_MS),
    )
    .await
}

/// [`post_json`] within `timeout` (a recovery step's own).
pub(crate) async fn post_json_within(
    client: &reqwest::Client,
    url: &str,
    dedup_key: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(), String> {
    let resp = client
        .post(url)
        .timeout(timeout)
        .header("X-Consentry-Dedup-Key", dedup_key)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = read_prefix(resp, ERROR_BODY_BYTES_MAX).await;
    Err(format!(
        "POST {url}: HTTP {status}: {}",
        consentry_cluster::model::truncate(&text, ERROR_BODY_BYTES_MAX)
    ))
}

#[cfg(test)]
pub(crate) mod test_http {
    //! An in-process HTTP receiver for the notifier tests: records each request and
    //! answers with a fixed status.

    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// One received request.
    #[derive(Debug, Clone)]
    pub struct Seen {
        pub head: String,
        pub body: Vec<u8>,
    }

    impl Seen {
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).expect("a JSON body")
        }

        pub fn header(&self, name: &str) -> Option<String> {
            self.head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        }
    }

    /// Starts a receiver answering `status`; returns its base URL and what it saw.
    pub async fn receiver(status: u16) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (head, body) = loop {
                        let Ok(n) = s.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        while buf.len() < end + 4 + len {
                            let Ok(n) = s.read(&mut chunk).await else {
                                return;
                            };
                            if n == 0 {
                                return;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        break (head, buf[end + 4..end + 4 + len].to_vec());
                    };
                    log.lock().unwrap().push(Seen { head, body });
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    );
                    let _ = s.write_all(answer.as_bytes()).await;
                });
            }
        });
        (format!("http://{addr}"), seen)
    }
}

#[cfg(test)]
mod alert_tests {
    use consentry_cluster::model::{IntentKind, Transition};

    use super::summary::tests::fixture;
    use super::*;

    #[test]
    fn flapping_and_site_alerts_render_through_every_kind() {
        let (mut intent, incident, check) = fixture(Transition::Firing);
        assert_eq!(alert_view(&intent, Some(&incident)), Some(incident.clone()));
        assert_eq!(
            alert_view(&intent, None),
            None,
            "a vanished incident has nothing to send"
        );

        intent.kind = IntentKind::Flapping {
            alert_id: 4,
            percent_tenths: 475,
        };
        let view = alert_view(&intent, None).expect("flapping has a view");
        let summary = Summary::new(&intent, &view, Some(&check));
        assert_eq!(
            summary.headline(),
            "FLAPPING STARTED: web1 is flapping: 47.5% state change over recent results"
        );
        let body = webhook::WebhookBody::new(&intent, &view, Some(&check.probe), 1);
        let json = serde_json::to_value(&body).expect("json");
        assert_eq!(json["alert"], "flapping");
        assert_eq!(json["incident_id"], 4);

        intent.kind = IntentKind::SiteSilent {
            alert_id: 9,
            site: "site-b".into(),
        };
        intent.transition = Transition::Resolved;
        let view = alert_view(&intent, None).expect("site alert has a view");
        let summary = Summary::new(&intent, &view, None);
        assert_eq!(
            summary.headline(),
            "SITE SILENT STOPPED: site site-b silent: no fresh probe results from it"
        );
    }
}

//! The `webhook` notifier: one JSON POST per notification intent.

use std::time::Duration;

use consentry_cluster::model::{Incident, NotifyIntent, ProbeSpec};
use serde::Serialize;

/// Per-attempt timeout for a webhook POST.
pub const WEBHOOK_TIMEOUT_MS: u64 = 5_000;
/// Bytes of a receiver's error response kept in the outcome.
pub const WEBHOOK_ERROR_BODY_BYTES_MAX: usize = 512;

/// The documented webhook body (docs/notifications.md). Version 1.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookBody<'a> {
    pub version: u32,
    pub dedup_key: &'a str,
    pub incident_id: u64,
    pub check: &'a str,
    pub target: String,
    /// `firing` or `resolved`.
    pub transition: &'static str,
    /// The incident's severity while firing, `OK` when resolved.
    pub status: &'static str,
    /// The sites that agreed on this transition.
    pub sites: Vec<&'a str>,
    pub evidence: &'a [consentry_cluster::model::Evidence],
    /// `"n of m sites"` when decided on a degraded quorum.
    pub unconfirmed: Option<String>,
    pub opened_at_ms: u64,
    pub closed_at_ms: Option<u64>,
    /// The node (raft leader) that sent it.
    pub node_id: u64,
}

impl<'a> WebhookBody<'a> {
    pub fn new(
        intent: &'a NotifyIntent,
        incident: &'a Incident,
        probe: Option<&ProbeSpec>,
        node_id: u64,
    ) -> Self {
        let firing = intent.transition == consentry_cluster::model::Transition::Firing;
        let evidence = if firing {
            &incident.opened_by
        } else {
            &incident.closed_by
        };
        WebhookBody {
            version: 1,
            dedup_key: &intent.dedup_key,
            incident_id: incident.id,
            check: &incident.check,
            target: probe.map(ProbeSpec::target).unwrap_or_default(),
            transition: intent.transition.as_str(),
            status: if firing {
                incident.severity.as_str()
            } else {
                "OK"
            },
            sites: evidence.iter().map(|e| e.site.as_str()).collect(),
            evidence,
            unconfirmed: incident
                .unconfirmed
                .map(|(n, m)| format!("{n} of {m} sites")),
            opened_at_ms: incident.opened_at_ms,
            closed_at_ms: incident.closed_at_ms,
            node_id,
        }
    }
}

/// Posts an encoded [`WebhookBody`] to `url` once.
///
/// # Errors
/// A short description when the receiver is unreachable, times out or answers non-2xx.
pub async fn post_raw(
    client: &reqwest::Client,
    url: &str,
    dedup_key: &str,
    body: Vec<u8>,
) -> Result<(), String> {
    let resp = client
        .post(url)
        .timeout(Duration::from_millis(WEBHOOK_TIMEOUT_MS))
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
    let text = resp.text().await.unwrap_or_default();
    Err(format!(
        "POST {url}: HTTP {status}: {}",
        consentry_cluster::model::truncate(&text, WEBHOOK_ERROR_BODY_BYTES_MAX)
    ))
}

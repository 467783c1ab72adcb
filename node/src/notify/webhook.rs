//! The `webhook` notifier: one JSON POST per notification intent.

use consentry_cluster::model::{Incident, NotifyIntent, ProbeSpec};
use serde::Serialize;

/// The documented webhook body (docs/notifications.md). Version 1.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookBody<'a> {
    pub version: u32,
    /// `incident`, or for alerts that are not incidents `flapping`, `site_degraded`,
    /// `site_silent` (then `incident_id` is the alert's episode number).
    pub alert: &'static str,
    /// For flapping and operator alerts: what happened, in a sentence.
    pub description: Option<&'a str>,
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
            alert: super::alert_kind(&intent.kind),
            description: match intent.kind {
                consentry_cluster::model::IntentKind::Incident => None,
                _ => incident.close_note.as_deref(),
            },
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
    super::post_json(client, url, dedup_key, body).await
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A receiver that answers every request with `status` and then streams `body_bytes`.
    async fn receiver(status: u16, body_bytes: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let head =
                        format!("HTTP/1.1 {status} X\r\nContent-Length: {body_bytes}\r\n\r\n");
                    let _ = s.write_all(head.as_bytes()).await;
                    let chunk = vec![b'x'; 64 * 1024];
                    let mut left = body_bytes;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if s.write_all(&chunk[..n]).await.is_err() {
                            return;
                        }
                        left -= n;
                    }
                });
            }
        });
        format!("http://{addr}/hook")
    }

    #[tokio::test]
    async fn delivery_outcomes() {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let ok = receiver(204, 0).await;
        assert_eq!(post_raw(&client, &ok, "k", b"{}".to_vec()).await, Ok(()));

        // A receiver that answers an error with a huge body: bounded error text.
        let huge = receiver(500, 512 * 1024 * 1024).await;
        let err = post_raw(&client, &huge, "k", b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(err.contains("HTTP 500"), "{err}");
        assert!(
            err.len() < super::super::ERROR_BODY_BYTES_MAX + 200,
            "{} bytes",
            err.len()
        );

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = format!("http://{}/hook", listener.local_addr().unwrap());
        drop(listener);
        let err = post_raw(&client, &closed, "k", b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(err.starts_with(&format!("POST {closed}")), "{err}");
    }
}

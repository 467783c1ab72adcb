//! The `alertmanager` notifier: Alertmanager's API v2, `POST <url>/api/v2/alerts`.
//!
//! Each incident is one alert, identified by its label set (alertname = the check,
//! severity, consentry_alert = what it is about (`incident`, `flapping`, ...),
//! consentry_incident = its number), which is identical for the firing and
//! the resolved post so Alertmanager merges them. consentry sends each transition once
//! instead of re-sending every evaluation like Prometheus, so a firing alert carries an
//! `endsAt` far ahead ([`FIRING_HOLD_MS`]); the resolved post sets `endsAt` to the
//! leader's wall time, which resolves it. The dedup key is an annotation.

use std::collections::BTreeMap;

use crate::wall_time::format_rfc3339_millis;

use serde::Serialize;

use super::{NotifyContext, Summary};

/// How long a firing alert stays active in Alertmanager without a resolved post: the
/// longest outage consentry can represent there (a longer one resolves in Alertmanager
/// while the incident stays open in consentry).
pub const FIRING_HOLD_MS: u64 = 30 * 24 * 3600 * 1000;

/// One alert of the `postableAlerts` array.
#[derive(Debug, Clone, Serialize)]
pub struct PostableAlert {
    pub labels: BTreeMap<&'static str, String>,
    pub annotations: BTreeMap<&'static str, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt")]
    pub ends_at: String,
}

impl PostableAlert {
    /// The alert for `s`, sent at wall time `now_ms`.
    pub fn new(s: &Summary<'_>, now_ms: u64) -> Self {
        let labels = BTreeMap::from([
            ("alertname", s.check.to_string()),
            ("severity", s.severity.to_ascii_lowercase()),
            // Incidents and other alerts (flapping, site health) are numbered apart: the kind
            // keeps "incident 4" and "flapping 4" of one check from being one alert.
            ("consentry_alert", s.alert.to_string()),
            ("consentry_incident", s.incident_id.to_string()),
        ]);
        let mut annotations = BTreeMap::from([
            ("summary", s.headline()),
            ("description", s.text()),
            ("sites", s.sites.join(", ")),
            ("target", s.target.clone()),
            ("dedup_key", s.dedup_key.to_string()),
            ("transition", s.transition.as_str().to_string()),
        ]);
        if let Some(u) = &s.unconfirmed {
            annotations.insert("unconfirmed", u.clone());
        }
        // The sites' clocks opened it; never start in the leader's future.
        let starts_ms = if s.opened_at_ms == 0 {
            now_ms
        } else {
            s.opened_at_ms.min(now_ms)
        };
        let ends_ms = match s.transition {
            consentry_cluster::model::Transition::Firing => now_ms.saturating_add(FIRING_HOLD_MS),
            consentry_cluster::model::Transition::Resolved => now_ms.max(starts_ms + 1),
        };
        Self {
            labels,
            annotations,
            starts_at: format_rfc3339_millis(starts_ms),
            ends_at: format_rfc3339_millis(ends_ms),
        }
    }
}

/// Posts the alert for `summary` to the Alertmanager at `base_url` once.
///
/// # Errors
/// When Alertmanager is unreachable, times out or answers non-2xx.
pub async fn post(
    client: &reqwest::Client,
    base_url: &str,
    summary: &Summary<'_>,
    ctx: &NotifyContext,
) -> Result<(), String> {
    let url = format!("{}/api/v2/alerts", base_url.trim_end_matches('/'));
    let alerts = [PostableAlert::new(summary, ctx.wall_ms)];
    let body = serde_json::to_vec(&alerts).map_err(|e| format!("encoding: {e}"))?;
    super::post_json(client, &url, summary.dedup_key, body).await
}

#[cfg(test)]
mod tests {
    use consentry_cluster::model::{NotifierKind, NotifierSpec, Transition};

    use super::*;
    use crate::notify::deliver;
    use crate::notify::summary::tests::fixture;
    use crate::notify::test_http::receiver;

    #[test]
    fn an_incident_and_a_flapping_alert_with_one_number_are_two_alerts() {
        let (intent, incident, check) = fixture(Transition::Firing);
        let s = Summary::new(&intent, &incident, Some(&check));
        let mut flapping = Summary::new(&intent, &incident, Some(&check));
        flapping.alert = "flapping";
        assert_eq!(s.incident_id, flapping.incident_id);
        assert_ne!(
            PostableAlert::new(&s, 0).labels,
            PostableAlert::new(&flapping, 0).labels
        );
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(format_rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_millis(951_782_400_123),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            format_rfc3339_millis(1_763_740_000_000),
            "2025-11-21T15:46:40.000Z"
        );
        assert_eq!(
            format_rfc3339_millis(4_102_444_799_999),
            "2099-12-31T23:59:59.999Z"
        );
    }

    #[tokio::test]
    async fn firing_then_resolved_share_labels() {
        let (url, seen) = receiver(200).await;
        let spec = NotifierSpec {
            name: "am".into(),
            kind: NotifierKind::Alertmanager {
                url: format!("{url}/"),
            },
        };
        let now = 1_763_740_100_000;
        let ctx = crate::notify::NotifyContext::for_test(now);
        let (intent, incident, check) = fixture(Transition::Firing);
        deliver(&spec, &intent, &incident, Some(&check), &ctx)
            .await
            .unwrap();
        let (intent, mut incident, check) = fixture(Transition::Resolved);
        incident.closed_at_ms = Some(now);
        incident.closed_by = incident.opened_by.clone();
        deliver(&spec, &intent, &incident, Some(&check), &ctx)
            .await
            .unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        assert!(
            seen[0].head.starts_with("POST /api/v2/alerts "),
            "{}",
            seen[0].head
        );
        let (firing, resolved) = (seen[0].json(), seen[1].json());
        assert_eq!(firing[0]["labels"], resolved[0]["labels"]);
        assert_eq!(firing[0]["labels"]["alertname"], "web1");
        assert_eq!(firing[0]["labels"]["severity"], "critical");
        assert_eq!(firing[0]["labels"]["consentry_incident"], "2");
        assert_eq!(firing[0]["labels"]["consentry_alert"], "incident");
        assert_eq!(firing[0]["annotations"]["sites"], "site-a, site-b");
        assert_eq!(
            firing[0]["annotations"]["dedup_key"],
            "incident-2/firing/ops"
        );
        assert_eq!(firing[0]["startsAt"], "2025-11-21T15:46:40.000Z");
        assert_eq!(resolved[0]["endsAt"], "2025-11-21T15:48:20.000Z");
        assert!(firing[0]["endsAt"].as_str().unwrap() > "2025-12-");
    }
}

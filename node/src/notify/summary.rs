//! The language-neutral text of a notification, shared by the kinds that send text
//! (slack, email, exec's environment): the check, status, agreeing sites, incident id and
//! dedup key, plus the check's labels (which may be in any language).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use consentry_cluster::model::{CheckSpec, Evidence, Incident, NotifyIntent, Transition};

/// Placeholders a subject template may use (docs/notifications.md).
pub const PLACEHOLDERS: &[&str] = &[
    "check",
    "status",
    "transition",
    "incident_id",
    "dedup_key",
    "sites",
    "target",
];

/// Longest rendered subject or headline, in bytes (cut at a char boundary).
pub const SUBJECT_BYTES_MAX: usize = 512;

/// One notification, described for people.
#[derive(Debug, Clone)]
pub struct Summary<'a> {
    pub notifier: &'a str,
    pub check: &'a str,
    pub transition: Transition,
    /// The incident's severity while firing, `OK` when resolved.
    pub status: &'static str,
    /// The incident's severity (stays the same when resolved).
    pub severity: &'static str,
    pub incident_id: u64,
    pub dedup_key: &'a str,
    pub sites: Vec<&'a str>,
    pub evidence: &'a [Evidence],
    pub target: String,
    /// `"n of m sites"` when decided on a degraded quorum.
    pub unconfirmed: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub opened_at_ms: u64,
    pub closed_at_ms: Option<u64>,
    /// `incident`, `flapping`, `site_degraded` or `site_silent` (see [`super::alert_kind`]).
    pub alert: &'static str,
    /// For flapping and operator alerts: what happened, in a sentence.
    pub description: Option<&'a str>,
}

impl<'a> Summary<'a> {
    pub fn new(
        intent: &'a NotifyIntent,
        incident: &'a Incident,
        check: Option<&'a CheckSpec>,
    ) -> Self {
        let firing = intent.transition == Transition::Firing;
        let evidence = if firing {
            &incident.opened_by
        } else {
            &incident.closed_by
        };
        Self {
            notifier: &intent.notifier,
            check: &incident.check,
            transition: intent.transition,
            status: if firing {
                incident.severity.as_str()
            } else {
                "OK"
            },
            severity: incident.severity.as_str(),
            incident_id: incident.id,
            dedup_key: &intent.dedup_key,
            sites: evidence.iter().map(|e| e.site.as_str()).collect(),
            evidence,
            target: check.map(|c| c.probe.target()).unwrap_or_default(),
            unconfirmed: incident
                .unconfirmed
                .map(|(n, m)| format!("{n} of {m} sites")),
            labels: check.map(|c| c.labels.clone()).unwrap_or_default(),
            opened_at_ms: incident.opened_at_ms,
            closed_at_ms: incident.closed_at_ms,
            alert: super::alert_kind(&intent.kind),
            description: match intent.kind {
                consentry_cluster::model::IntentKind::Incident => None,
                _ => incident.close_note.as_deref(),
            },
        }
    }

    /// `FIRING CRITICAL web1-http (incident 2, sites site-a, site-b)`.
    pub fn headline(&self) -> String {
        if let Some(description) = self.description {
            let state = match self.transition {
                Transition::Firing => "STARTED",
                Transition::Resolved => "STOPPED",
            };
            let text = format!(
                "{} {state}: {description}",
                self.alert.replace('_', " ").to_uppercase()
            );
            return consentry_cluster::model::truncate(&text, SUBJECT_BYTES_MAX);
        }
        let text = match self.transition {
            Transition::Firing => format!(
                "FIRING {} {} (incident {}, sites {})",
                self.status,
                self.check,
                self.incident_id,
                self.sites.join(", ")
            ),
            Transition::Resolved => format!(
                "RESOLVED {} {} (incident {}, sites {})",
                self.status,
                self.check,
                self.incident_id,
                self.sites.join(", ")
            ),
        };
        consentry_cluster::model::truncate(&text, SUBJECT_BYTES_MAX)
    }

    /// The default email subject: `[consentry] ` and the headline.
    pub fn subject(&self) -> String {
        format!("[consentry] {}", self.headline())
    }

    /// Renders a subject template: each `{placeholder}` of [`PLACEHOLDERS`] is replaced;
    /// anything else is kept as written. Line breaks become spaces.
    pub fn render(&self, template: &str) -> String {
        let mut out = template.to_string();
        for name in PLACEHOLDERS {
            let value = match *name {
                "check" => self.check.to_string(),
                "status" => self.status.to_string(),
                "transition" => self.transition.as_str().to_string(),
                "incident_id" => self.incident_id.to_string(),
                "dedup_key" => self.dedup_key.to_string(),
                "sites" => self.sites.join(", "),
                "target" => self.target.clone(),
                _ => continue,
            };
            out = out.replace(&format!("{{{name}}}"), &value);
        }
        let out = out.replace(['\r', '\n'], " ");
        consentry_cluster::model::truncate(&out, SUBJECT_BYTES_MAX)
    }

    /// The plain-text body: one `key: value` line per fact, then the evidence.
    pub fn text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "{}", self.headline());
        let _ = writeln!(t);
        let _ = writeln!(t, "check: {}", self.check);
        let _ = writeln!(t, "transition: {}", self.transition.as_str());
        let _ = writeln!(t, "status: {}", self.status);
        let _ = writeln!(t, "severity: {}", self.severity);
        let _ = writeln!(t, "target: {}", self.target);
        let _ = writeln!(t, "sites: {}", self.sites.join(", "));
        if let Some(u) = &self.unconfirmed {
            let _ = writeln!(t, "unconfirmed: {u}");
        }
        let _ = writeln!(t, "incident: {}", self.incident_id);
        let _ = writeln!(t, "dedup key: {}", self.dedup_key);
        for (k, v) in &self.labels {
            let _ = writeln!(t, "label {k}: {v}");
        }
        if !self.evidence.is_empty() {
            let _ = writeln!(t);
            let _ = writeln!(t, "evidence:");
            for e in self.evidence {
                let _ = writeln!(
                    t,
                    "  {}: {} {} after {} in a row: {}",
                    e.site,
                    e.last.status.as_str(),
                    e.last.reason.as_str(),
                    e.consecutive,
                    e.last.message
                );
            }
        }
        t
    }
}

/// Placeholders in `template` that [`Summary::render`] does not know (`{name}` only).
pub fn unknown_placeholders(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            break;
        };
        let name = &after[..close];
        let word = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if word && !PLACEHOLDERS.contains(&name) {
            out.push(name.to_string());
        }
        rest = &after[close + 1..];
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use consentry_cluster::model::{ProbeResult, Reason, Status};

    use super::*;

    /// A firing intent for incident 2 of check `web1` seen down by site-a and site-b,
    /// with a Japanese label.
    pub(crate) fn fixture(transition: Transition) -> (NotifyIntent, Incident, CheckSpec) {
        let evidence = |site: &str| {
            serde_json::to_value(Evidence {
                site: site.into(),
                consecutive: 2,
                last: ProbeResult::new(
                    "web1",
                    Status::Critical,
                    Reason::Refused,
                    0,
                    "接続が拒否されました",
                ),
            })
            .expect("evidence as JSON")
        };
        // Built from JSON so that fields this module does not read (silences, acks, the
        // timeline, which evolve elsewhere) take their empty values.
        let incident: Incident = serde_json::from_value(serde_json::json!({
            "id": 2, "check": "web1", "severity": "CRITICAL",
            "opened_index": 10, "opened_tick": 5, "opened_at_ms": 1_763_740_000_000_u64,
            "opened_by": [evidence("site-a"), evidence("site-b")],
            "closed_by": [], "notified": true, "silenced": false,
            "timeline": [], "timeline_dropped": 0,
        }))
        .expect("an incident fixture");
        let intent: NotifyIntent = serde_json::from_value(serde_json::json!({
            "id": 2560, "incident_id": 2, "check": "web1", "notifier": "ops",
            "transition": transition.as_str(),
            "dedup_key": format!("incident-2/{}/ops", transition.as_str()),
            "created_index": 10, "attempts": 0,
        }))
        .expect("an intent fixture");
        let mut check = CheckSpec::for_test("web1");
        check
            .labels
            .insert("説明".into(), "ウェブサーバー1号機".into());
        (intent, incident, check)
    }

    #[test]
    fn templates_and_text() {
        let (intent, incident, check) = fixture(Transition::Firing);
        let s = Summary::new(&intent, &incident, Some(&check));
        assert_eq!(
            s.render("【障害】{check} が停止しました"),
            "【障害】web1 が停止しました"
        );
        assert_eq!(
            s.render("{transition} {status} #{incident_id} {sites} {nope}"),
            "firing CRITICAL #2 site-a, site-b {nope}"
        );
        assert_eq!(
            unknown_placeholders("{check} {nope} {} {a b}"),
            vec!["nope"]
        );
        let text = s.text();
        for want in [
            "check: web1",
            "status: CRITICAL",
            "sites: site-a, site-b",
            "incident: 2",
            "dedup key: incident-2/firing/ops",
            "label 説明: ウェブサーバー1号機",
            "接続が拒否されました",
        ] {
            assert!(text.contains(want), "{want:?} in {text}");
        }
        assert_eq!(
            s.subject(),
            "[consentry] FIRING CRITICAL web1 (incident 2, sites site-a, site-b)"
        );
    }
}

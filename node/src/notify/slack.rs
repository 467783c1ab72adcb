//! The `slack` notifier: a Slack incoming webhook (`POST` of `{"text", "blocks"}`).
//!
//! Only documented incoming-webhook fields are sent: `text` (the fallback shown in
//! notifications) and `blocks` with one `section` (mrkdwn) and one `context` block.
//! Slack's own text escaping applies: `&`, `<` and `>` are sent as entities.

use serde::Serialize;
use serde_json::json;

use super::Summary;

/// Most characters Slack accepts in a section's text.
const SECTION_TEXT_CHARS_MAX: usize = 3_000;

/// An incoming-webhook message.
#[derive(Debug, Clone, Serialize)]
pub struct SlackMessage {
    pub text: String,
    pub blocks: Vec<serde_json::Value>,
}

impl SlackMessage {
    pub fn new(s: &Summary<'_>) -> Self {
        let icon = match s.transition {
            consentry_cluster::model::Transition::Firing => ":red_circle:",
            consentry_cluster::model::Transition::Resolved => ":large_green_circle:",
        };
        let text = escape(&s.headline());
        let mut section = format!(
            "{icon} *{}* `{}` {}\n*target:* {}\n*sites:* {}",
            escape(&s.transition.as_str().to_uppercase()),
            escape(s.check),
            escape(s.status),
            escape(&s.target),
            escape(&s.sites.join(", ")),
        );
        if let Some(u) = &s.unconfirmed {
            section.push_str(&format!("\n*unconfirmed:* {}", escape(u)));
        }
        for (k, v) in &s.labels {
            section.push_str(&format!("\n*{}:* {}", escape(k), escape(v)));
        }
        let section: String = section.chars().take(SECTION_TEXT_CHARS_MAX).collect();
        let context = format!(
            "incident {} | dedup key {}",
            s.incident_id,
            escape(s.dedup_key)
        );
        Self {
            text,
            blocks: vec![
                json!({ "type": "section", "text": { "type": "mrkdwn", "text": section } }),
                json!({ "type": "context", "elements": [ { "type": "mrkdwn", "text": context } ] }),
            ],
        }
    }
}

/// Slack's control characters in text.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Posts the message for `summary` to the incoming webhook `url` once.
///
/// # Errors
/// When Slack is unreachable, times out or answers non-2xx.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    summary: &Summary<'_>,
) -> Result<(), String> {
    let body =
        serde_json::to_vec(&SlackMessage::new(summary)).map_err(|e| format!("encoding: {e}"))?;
    // The URL is a secret: errors name the host only.
    let shown = url.split('/').take(3).collect::<Vec<_>>().join("/");
    super::post_json(client, url, summary.dedup_key, body)
        .await
        .map_err(|e| e.replace(url, &format!("{shown}/...")))
}

#[cfg(test)]
mod tests {
    use consentry_cluster::model::{NotifierKind, NotifierSpec, Transition};

    use crate::notify::summary::tests::fixture;
    use crate::notify::test_http::receiver;
    use crate::notify::{deliver, NotifyContext};

    #[tokio::test]
    async fn posts_an_incoming_webhook_message() {
        let (url, seen) = receiver(200).await;
        let spec = NotifierSpec {
            name: "ops".into(),
            kind: NotifierKind::Slack {
                url: format!("{url}/services/T0/B0/secret"),
            },
        };
        let (intent, incident, mut check) = fixture(Transition::Firing);
        check.labels.insert("note".into(), "a <b> & c".into());
        let ctx = NotifyContext::for_test(1_763_740_100_000);
        deliver(&spec, &intent, &incident, Some(&check), &ctx)
            .await
            .unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].head.starts_with("POST /services/T0/B0/secret "));
        assert_eq!(
            seen[0].header("content-type").as_deref(),
            Some("application/json")
        );
        let v = seen[0].json();
        // Only the documented top-level fields.
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["blocks", "text"]);
        let text = v["text"].as_str().unwrap();
        assert!(text.contains("FIRING CRITICAL web1"), "{text}");
        assert_eq!(v["blocks"][0]["type"], "section");
        assert_eq!(v["blocks"][0]["text"]["type"], "mrkdwn");
        let section = v["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(section.contains("site-a, site-b"), "{section}");
        assert!(section.contains("ウェブサーバー1号機"), "{section}");
        assert!(section.contains("a &lt;b&gt; &amp; c"), "{section}");
        assert_eq!(v["blocks"][1]["type"], "context");
        let context = v["blocks"][1]["elements"][0]["text"].as_str().unwrap();
        assert!(context.contains("incident-2/firing/ops"), "{context}");

        // A failing Slack: the error names the host, never the secret path.
        let (bad, _) = receiver(500).await;
        let spec = NotifierSpec {
            name: "ops".into(),
            kind: NotifierKind::Slack {
                url: format!("{bad}/services/T0/B0/secret"),
            },
        };
        let err = deliver(&spec, &intent, &incident, Some(&check), &ctx)
            .await
            .unwrap_err();
        assert!(err.contains("HTTP 500"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }
}

//! Notifiers end to end: a real Alertmanager shows the cluster's alert firing, then
//! resolved; a notifier that hangs and one that answers 500 delay no other notifier, are
//! retried within their bound, and their failure shows in `consentry incidents --json`
//! and in `/metrics`.
//!
//! The kinds' payloads (webhook and Slack schemas, email with a Japanese subject through
//! an SMTP server, exec's environment) are unit tests in node/src/notify/.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::{
    alert_deadline, Deadline, Receiver, Target, World, WorldOptions, CHECKS_OK_TIMEOUT,
    FORM_TIMEOUT, ROUNDS, SETTLE,
};
use crate::servers::alertmanager::Alertmanager;
use crate::servers::{available, ServerDir};

/// Attempts per notification (the leader's `NOTIFY_ATTEMPTS_MAX`).
const ATTEMPTS_MAX: u64 = 3;
/// Three attempts of at most 5 s each, 1 s + 2 s of backoff, a commit, and a busy machine.
const FAILURE_VISIBLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Alertmanager flushes its groups every second; allow a debug cluster some slack.
const ALERTMANAGER_TIMEOUT: Duration = Duration::from_secs(30);

/// A checks file with one HTTP check `web` notifying `notify`, then `notifiers` (TOML).
fn checks(web_url: &str, notify: &[&str], notifiers: &str) -> String {
    let notify: Vec<String> = notify.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "[defaults]\ninterval = \"1s\"\ntimeout = \"500ms\"\nconfirm = {{ sites = 2, rounds = {ROUNDS} }}\nrecover = {{ rounds = {ROUNDS} }}\n\n[[check]]\nname = \"web\"\nkind = \"http\"\nurl = \"{web_url}\"\nexpect_status = \"200-399\"\nnotify = [{}]\n{notifiers}",
        notify.join(", ")
    )
}

fn notifier(name: &str, kind: &str, url: &str) -> String {
    format!("\n[[notifier]]\nname = \"{name}\"\nkind = \"{kind}\"\nurl = \"{url}\"\n")
}

/// The alerts Alertmanager lists for `alertname` (active ones; resolved ones drop out).
fn am_alerts(world: &World, am: &Alertmanager, alertname: &str) -> Result<Vec<Value>, String> {
    let url = format!("{}/api/v2/alerts", am.url());
    let (code, body) = world.http_get(&url)?;
    if code != 200 {
        return Err(format!("GET {url}: {code} {body}"));
    }
    let all: Vec<Value> = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    Ok(all
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == alertname)
        .collect())
}

#[test]
fn alertmanager_shows_the_alert_firing_then_resolved() {
    let dir = ServerDir::new("alertmanager");
    let world = World::three_nodes(&WorldOptions::default());
    // One receiver for consentry's webhook (`/hook`) and Alertmanager's own (`/alertmanager`).
    let receiver = Receiver::start(&world.handle());
    let am_hook = receiver.url().replace("/hook", "/alertmanager");
    let Some(am) = available(Alertmanager::start(&dir, &am_hook)) else {
        return;
    };
    let web = Target::http(&world.handle(), None);

    info!("form the cluster and apply a check that notifies a webhook and Alertmanager");
    world.wait_formed(FORM_TIMEOUT);
    let text = checks(
        &web.url(),
        &["ops", "am"],
        &(notifier("ops", "webhook", receiver.url()) + &notifier("am", "alertmanager", &am.url())),
    );
    world.apply(&text).expect_success();
    world.wait_checks_ok(&["web"], CHECKS_OK_TIMEOUT);

    info!("stop the target: Alertmanager's API lists our alert as active");
    let deadline = Deadline::after(alert_deadline());
    web.stop();
    let incident = world.wait_one_open_incident("web", deadline.remaining());
    world.wait_hook(&receiver, "web", "firing", deadline.remaining());
    let alert = world.wait(
        "Alertmanager to list the alert as active",
        ALERTMANAGER_TIMEOUT,
        || {
            let alerts = am_alerts(&world, &am, "web")?;
            match alerts.as_slice() {
                [a] if a["status"]["state"] == "active" => Ok(a.clone()),
                _ => Err(format!("{alerts:?}")),
            }
        },
    );
    info!("alert in Alertmanager: {}", alert["labels"]);
    assert_eq!(
        alert["labels"]["consentry_incident"],
        incident.id().as_str()
    );
    assert_eq!(
        alert["labels"]["severity"].as_str().map(str::to_uppercase),
        incident.severity.clone(),
        "severity label: {alert}"
    );
    assert_eq!(alert["annotations"]["sites"], "site-a, site-b", "{alert}");
    assert!(
        alert["annotations"]["dedup_key"]
            .as_str()
            .is_some_and(|k| k.ends_with("/firing/am")),
        "{alert}"
    );
    let firing = world.wait(
        "Alertmanager to notify firing",
        ALERTMANAGER_TIMEOUT,
        || {
            receiver
                .hooks()
                .into_iter()
                .find(|h| h.path == "/alertmanager" && h.body["status"] == "firing")
                .ok_or_else(|| receiver.describe())
        },
    );
    assert_eq!(firing.body["alerts"][0]["labels"]["alertname"], "web");

    info!("start the target again: the incident closes and Alertmanager resolves the alert");
    let deadline = Deadline::after(alert_deadline());
    web.resume();
    world.wait_incident_closed(&incident.id(), deadline.remaining());
    world.wait(
        "Alertmanager to drop the alert from its active list",
        ALERTMANAGER_TIMEOUT,
        || {
            let alerts = am_alerts(&world, &am, "web")?;
            if alerts.is_empty() {
                Ok(())
            } else {
                Err(format!("{alerts:?}"))
            }
        },
    );
    let resolved = world.wait(
        "Alertmanager to notify resolved",
        ALERTMANAGER_TIMEOUT,
        || {
            receiver
                .hooks()
                .into_iter()
                .find(|h| h.path == "/alertmanager" && h.body["status"] == "resolved")
                .ok_or_else(|| receiver.describe())
        },
    );
    let a = &resolved.body["alerts"][0];
    info!(
        "resolved by Alertmanager: {} ends {}",
        a["labels"], a["endsAt"]
    );
    assert_eq!(a["status"], "resolved");
    assert_eq!(a["labels"]["consentry_incident"], incident.id().as_str());
}

/// A receiver that accepts connections and never answers; counts them.
async fn hanging_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        let held = Arc::new(Mutex::new(Vec::new()));
        while let Ok((stream, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            held.lock().unwrap_or_else(|e| e.into_inner()).push(stream);
        }
    });
    (url, count)
}

/// A receiver that reads each request and answers 500; counts requests.
async fn failing_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/services/T0/B0/secret",
        listener.local_addr().expect("addr")
    );
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head and the body it announces, then answer.
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
                seen.fetch_add(1, Ordering::SeqCst);
                let _ = stream
                    .write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops")
                    .await;
            });
        }
    });
    (url, count)
}

/// The firing notification for `notifier` in `consentry incidents --json`.
fn notification(world: &World, notifier: &str) -> Result<Value, String> {
    let out = world.cli(&["incidents", "--json", "--api", &world.api(world.reader())]);
    if !out.success() {
        return Err(out.describe());
    }
    let v: Value = serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {}", out.stdout))?;
    v["incidents"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["notifications"].as_array().cloned().unwrap_or_default())
        .find(|n| n["notifier"] == notifier && n["transition"] == "firing")
        .ok_or_else(|| format!("no firing notification for {notifier}: {}", out.stdout))
}

#[test]
fn a_hanging_or_failing_notifier_delays_nothing_else() {
    let world = World::three_nodes(&WorldOptions::default());
    let receiver = Receiver::start(&world.handle());
    let (hang_url, hang_count) = world.handle().block_on(hanging_server());
    let (fail_url, fail_count) = world.handle().block_on(failing_server());
    let web = Target::http(&world.handle(), None);

    info!("form the cluster; `web` notifies a good webhook, a hanging webhook and a Slack answering 500");
    world.wait_formed(FORM_TIMEOUT);
    let text = checks(
        &web.url(),
        &["hang", "broken", "ops"],
        &(notifier("hang", "webhook", &hang_url)
            + &notifier("broken", "slack", &fail_url)
            + &notifier("ops", "webhook", receiver.url())),
    );
    world.apply(&text).expect_success();
    world.wait_checks_ok(&["web"], CHECKS_OK_TIMEOUT);

    info!("stop the target: the good webhook fires within the usual deadline, not after the hang");
    let deadline = Deadline::after(alert_deadline());
    web.stop();
    world.wait_one_open_incident("web", deadline.remaining());
    let firing = world.wait_hook(&receiver, "web", "firing", deadline.remaining());
    info!(
        "delivered while the others are still failing: {}",
        firing.summary()
    );

    info!(
        "both failing notifiers end Failed after exactly {ATTEMPTS_MAX} attempts, in the incident"
    );
    for name in ["hang", "broken"] {
        let n = world.wait(
            &format!("notification {name} to be committed as failed"),
            FAILURE_VISIBLE_TIMEOUT,
            || {
                let n = notification(&world, name)?;
                if n["outcome"]["Failed"].is_object() {
                    Ok(n)
                } else {
                    Err(format!("{n}"))
                }
            },
        );
        info!(
            "  {name}: attempts {} error {}",
            n["attempts"], n["outcome"]["Failed"]["error"]
        );
        assert_eq!(n["attempts"].as_u64(), Some(ATTEMPTS_MAX), "{n}");
        let error = n["outcome"]["Failed"]["error"].as_str().unwrap_or_default();
        assert!(
            !error.contains("secret"),
            "the Slack URL's secret is not in the outcome: {error}"
        );
        if name == "broken" {
            assert!(error.contains("HTTP 500"), "{error}");
        }
    }
    let ok = notification(&world, "ops").expect("ops notification");
    assert!(ok["outcome"]["Delivered"].is_object(), "{ok}");

    info!("retried within the bound: no attempt after the committed failure");
    std::thread::sleep(SETTLE);
    assert_eq!(fail_count.load(Ordering::SeqCst) as u64, ATTEMPTS_MAX);
    assert_eq!(hang_count.load(Ordering::SeqCst) as u64, ATTEMPTS_MAX);

    info!("the leader's /metrics counts the failures");
    let leader = world.leader();
    let (code, metrics) = world
        .http_get(&format!("{}/metrics", world.api(leader)))
        .expect("GET /metrics");
    assert_eq!(code, 200);
    let failed: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("consentry_notifications_total{") && l.contains("outcome=\"failed\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        failed >= 2.0,
        "two failed notifications counted:\n{metrics}"
    );
}

//! The test's webhook receiver: records every POST the cluster's leader sends and
//! answers 200, so each notification counts as delivered.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::http1;
use super::views::id_string;

/// The receiver keeps at most this many hooks; more means a notification storm.
const HOOKS_MAX: usize = 10_000;

/// One received notification.
#[derive(Debug, Clone)]
pub struct Hook {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    /// The `X-Consentry-Dedup-Key` header, which receivers that dedupe read.
    pub dedup_header: Option<String>,
    /// The parsed body, or `Value::Null` when it was not JSON (see `raw`).
    pub body: Value,
    pub raw: String,
    /// The address the notification came from (which node sent it, whatever its body says).
    pub peer: Option<std::net::IpAddr>,
}

impl Hook {
    fn str_field(&self, key: &str) -> Option<&str> {
        self.body.get(key).and_then(Value::as_str)
    }

    pub fn transition(&self) -> Option<&str> {
        self.str_field("transition")
    }

    pub fn check(&self) -> Option<&str> {
        self.str_field("check")
    }

    pub fn incident_id(&self) -> Option<String> {
        self.body.get("incident_id").map(id_string)
    }

    pub fn dedup_key(&self) -> Option<String> {
        self.body.get("dedup_key").map(id_string)
    }

    pub fn node_id(&self) -> Option<u64> {
        self.body.get("node_id").and_then(Value::as_u64)
    }

    /// The `sites` array as site names (entries may be strings or objects with `site`).
    pub fn sites(&self) -> Vec<String> {
        self.body
            .get("sites")
            .and_then(Value::as_array)
            .map(|sites| sites.iter().filter_map(site_name).collect())
            .unwrap_or_default()
    }

    /// Checks the pinned shape of a notification: method, content type, version and fields.
    pub fn shape_errors(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.method != "POST" {
            errors.push(format!("method {} (want POST)", self.method));
        }
        if !self
            .content_type
            .as_deref()
            .is_some_and(|ct| ct.starts_with("application/json"))
        {
            errors.push(format!(
                "content-type {:?} (want application/json)",
                self.content_type
            ));
        }
        if self.body.is_null() {
            errors.push(format!("body is not JSON: {:?}", self.raw));
            return errors;
        }
        if self.body.get("version").and_then(Value::as_u64) != Some(1) {
            errors.push("version is not 1".to_owned());
        }
        for key in [
            "dedup_key",
            "incident_id",
            "check",
            "target",
            "transition",
            "status",
            "sites",
            "evidence",
            "node_id",
        ] {
            if self.body.get(key).is_none() {
                errors.push(format!("field `{key}` missing"));
            }
        }
        if !matches!(self.transition(), Some("firing" | "resolved")) {
            errors.push(format!("transition {:?}", self.transition()));
        }
        errors
    }

    pub fn summary(&self) -> String {
        format!(
            "{} {} check={:?} incident={:?} dedup={:?} node={:?} sites={:?}",
            self.method,
            self.path,
            self.check(),
            self.incident_id(),
            self.dedup_key(),
            self.node_id(),
            self.sites()
        )
    }
}

/// Site name of one entry of a `sites` array: a string, or an object with `site`.
pub fn site_name(entry: &Value) -> Option<String> {
    match entry {
        Value::String(site) => Some(site.clone()),
        Value::Object(map) => map.get("site").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// Handle to the receiver; the server stops when the last handle is dropped.
pub struct Receiver {
    url: String,
    hooks: Arc<Mutex<Vec<Hook>>>,
    task: JoinHandle<()>,
}

impl Receiver {
    pub fn start(rt: &Handle) -> Self {
        Self::start_at(rt, "127.0.0.1")
    }

    /// A receiver on `ip` (a port the kernel picks).
    pub fn start_at(rt: &Handle, ip: &str) -> Self {
        let listener = rt
            .block_on(TcpListener::bind(format!("{ip}:0")))
            .unwrap_or_else(|e| panic!("bind the webhook receiver on {ip}:0: {e}"));
        let url = format!(
            "http://{}/hook",
            listener.local_addr().expect("receiver local_addr")
        );
        let hooks: Arc<Mutex<Vec<Hook>>> = Arc::default();
        let task_hooks = Arc::clone(&hooks);
        let task = rt.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(receive(stream, Arc::clone(&task_hooks)));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        Self { url, hooks, task }
    }

    /// Where the `webhook` notifier should POST.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn hooks(&self) -> Vec<Hook> {
        self.hooks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Hooks for `check` with `transition` ("firing" or "resolved").
    pub fn matching(&self, check: &str, transition: &str) -> Vec<Hook> {
        self.hooks()
            .into_iter()
            .filter(|h| h.check() == Some(check) && h.transition() == Some(transition))
            .collect()
    }

    /// Every hook received so far, one per line, for messages.
    pub fn describe(&self) -> String {
        let hooks = self.hooks();
        if hooks.is_empty() {
            return "no webhooks received".to_owned();
        }
        hooks
            .iter()
            .map(Hook::summary)
            .collect::<Vec<_>>()
            .join("\n    ")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(mut stream: TcpStream, hooks: Arc<Mutex<Vec<Hook>>>) {
    let Some(request) = http1::read_request(&mut stream).await else {
        return;
    };
    let raw = String::from_utf8_lossy(&request.body).into_owned();
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let hook = Hook {
        peer,
        method: request.method.clone(),
        path: request.path.clone(),
        content_type: request.header("content-type").map(str::to_owned),
        dedup_header: request.header("x-consentry-dedup-key").map(str::to_owned),
        body: serde_json::from_str(&raw).unwrap_or(Value::Null),
        raw,
    };
    {
        let mut hooks = hooks.lock().unwrap_or_else(|e| e.into_inner());
        if hooks.len() < HOOKS_MAX {
            hooks.push(hook);
        }
    }
    http1::respond(&mut stream, 200, "OK", "application/json", "{\"ok\":true}").await;
}

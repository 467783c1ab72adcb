//! The pinned JSON shapes of `status --json`, `incidents --json` and `cluster status --json`,
//! as far as the tests read them. Unknown fields are ignored; missing pinned fields fail.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::receiver::site_name;

/// Parses CLI or API output, with the text in the error so a failure shows what came back.
pub fn parse<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, String> {
    serde_json::from_str(text)
        .map_err(|e| format!("{what}: unexpected JSON ({e}): {}", text.trim()))
}

/// An id as a string, whether the JSON carries it as a number or a string.
pub fn id_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn null_as_zero<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(deserializer)?.unwrap_or(0))
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClusterView {
    pub node_id: u64,
    pub site: String,
    pub leader: Option<u64>,
    pub term: u64,
    /// A node that has nothing in its log or state machine may say `null` (openraft's
    /// "no log id yet"); the tests read that as index 0.
    #[serde(deserialize_with = "null_as_zero")]
    pub last_log_index: u64,
    #[serde(deserialize_with = "null_as_zero")]
    pub applied_index: u64,
    #[serde(default)]
    pub snapshot_index: u64,
    #[serde(default)]
    pub purged_index: u64,
    /// This node's raft role (Leader, Follower, Learner, ...).
    #[serde(default)]
    pub role: String,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MemberView {
    pub id: u64,
    pub site: String,
    pub addr: String,
    #[serde(default)]
    pub api: Option<String>,
    pub role: String,
    pub probe: bool,
    /// Entries behind the leader (the leader's view).
    #[serde(default)]
    pub lag: Option<u64>,
    #[serde(default)]
    pub reachable: Option<bool>,
}

impl ClusterView {
    pub fn member(&self, id: u64) -> Option<&MemberView> {
        self.members.iter().find(|m| m.id == id)
    }

    pub fn member_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.members.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        ids
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct StatusView {
    #[serde(deserialize_with = "null_as_zero")]
    pub applied_index: u64,
    pub tick: u64,
    pub checks: Vec<CheckView>,
}

impl StatusView {
    pub fn check(&self, name: &str) -> Result<&CheckView, String> {
        self.checks
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| format!("no check {name:?} in status (checks: {:?})", self.names()))
    }

    pub fn names(&self) -> Vec<&str> {
        self.checks.iter().map(|c| c.name.as_str()).collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckView {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub target: Value,
    pub verdict: String,
    #[serde(default)]
    pub incident: Option<Value>,
    pub sites: Vec<SiteView>,
}

impl CheckView {
    pub fn site(&self, site: &str) -> Option<&SiteView> {
        self.sites.iter().find(|s| s.site == site)
    }

    /// One line per site, for messages.
    pub fn describe(&self) -> String {
        let sites: Vec<String> = self.sites.iter().map(SiteView::describe).collect();
        format!(
            "{} ({} {}) verdict={} incident={:?} sites=[{}]",
            self.name,
            self.kind,
            self.target,
            self.verdict,
            self.incident,
            sites.join("; ")
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct SiteView {
    pub site: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub latency_ms: Option<f64>,
    #[serde(default)]
    pub message: Option<String>,
    pub consecutive_fail: u64,
    pub consecutive_ok: u64,
    pub fresh: bool,
    pub down: bool,
    pub path_suspect: bool,
}

impl SiteView {
    pub fn is_ok(&self) -> bool {
        self.status.as_deref() == Some("OK")
    }

    pub fn describe(&self) -> String {
        format!(
            "{} status={:?} reason={:?} latency_ms={:?} fail={} ok={} fresh={} down={} path_suspect={} msg={:?}",
            self.site,
            self.status,
            self.reason,
            self.latency_ms,
            self.consecutive_fail,
            self.consecutive_ok,
            self.fresh,
            self.down,
            self.path_suspect,
            self.message
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct IncidentsView {
    pub incidents: Vec<IncidentView>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IncidentView {
    pub id: Value,
    pub check: String,
    pub state: String,
    #[serde(default)]
    pub severity: Option<String>,
    pub opened_by: Vec<Value>,
    #[serde(default)]
    pub closed_index: Option<u64>,
    #[serde(default)]
    pub unconfirmed: Option<Value>,
}

impl IncidentView {
    pub fn id(&self) -> String {
        id_string(&self.id)
    }

    pub fn is_open(&self) -> bool {
        self.state == "open"
    }

    pub fn opened_by_sites(&self) -> Vec<String> {
        let mut sites: Vec<String> = self.opened_by.iter().filter_map(site_name).collect();
        sites.sort();
        sites
    }

    pub fn describe(&self) -> String {
        format!(
            "#{} check={} state={} severity={:?} opened_by={:?} closed_index={:?} unconfirmed={:?}",
            self.id(),
            self.check,
            self.state,
            self.severity,
            self.opened_by_sites(),
            self.closed_index,
            self.unconfirmed
        )
    }
}

/// All incidents, one per line, for messages.
pub fn describe_incidents(incidents: &[IncidentView]) -> String {
    if incidents.is_empty() {
        return "no incidents".to_owned();
    }
    incidents
        .iter()
        .map(IncidentView::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

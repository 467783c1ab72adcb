//! The read side's JSON documents, built from the applied state (docs/api.md).

use consentry_cluster::model::Incident;
use consentry_cluster::state::ClusterState;
use consentry_cluster::types::Raft;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct StatusView {
    pub applied_index: u64,
    pub tick: u64,
    pub probing_sites: Vec<String>,
    pub checks: Vec<CheckView>,
}

#[derive(Debug, Serialize)]
pub struct CheckView {
    pub name: String,
    pub kind: &'static str,
    pub target: String,
    /// OK, WARNING, CRITICAL, UNKNOWN, or PENDING before any fresh result.
    pub verdict: &'static str,
    pub incident: Option<u64>,
    pub interval_ms: u64,
    pub labels: std::collections::BTreeMap<String, String>,
    pub sites: Vec<SiteView>,
}

#[derive(Debug, Serialize)]
pub struct SiteView {
    pub site: String,
    pub status: &'static str,
    pub reason: &'static str,
    pub latency_ms: u64,
    pub message: String,
    pub observed_at_ms: u64,
    pub consecutive_fail: u32,
    pub consecutive_ok: u32,
    pub fresh: bool,
    pub down: bool,
    pub path_suspect: bool,
}

pub fn status(st: &ClusterState) -> StatusView {
    let checks = st
        .catalog
        .checks
        .iter()
        .map(|spec| {
            let cs = st.checks.get(&spec.name);
            let sites = cs
                .map(|cs| {
                    cs.sites
                        .iter()
                        .map(|(site, s)| SiteView {
                            site: site.clone(),
                            status: s.last.status.as_str(),
                            reason: s.last.reason.as_str(),
                            latency_ms: s.last.latency_ms,
                            message: s.last.message.clone(),
                            observed_at_ms: s.last.observed_at_ms,
                            consecutive_fail: s.consecutive_fail,
                            consecutive_ok: s.consecutive_ok,
                            fresh: cs.eval.fresh.contains(site),
                            down: cs.eval.down.contains(site),
                            path_suspect: cs.eval.path_suspect.contains(site),
                        })
                        .collect()
                })
                .unwrap_or_default();
            CheckView {
                name: spec.name.clone(),
                kind: spec.probe.kind(),
                target: spec.probe.target(),
                verdict: st.verdict(&spec.name).map_or("PENDING", |s| s.as_str()),
                incident: cs.and_then(|c| c.open_incident),
                interval_ms: spec.interval_ms,
                labels: spec.labels.clone(),
                sites,
            }
        })
        .collect();
    StatusView {
        applied_index: st.last_index,
        tick: st.tick,
        probing_sites: st.probing_sites().into_iter().collect(),
        checks,
    }
}

#[derive(Debug, Serialize)]
pub struct IncidentView<'a> {
    pub state: &'static str,
    #[serde(flatten)]
    pub incident: &'a Incident,
    pub notifications: Vec<NotificationView<'a>>,
}

#[derive(Debug, Serialize)]
pub struct NotificationView<'a> {
    pub notifier: &'a str,
    pub transition: &'static str,
    pub dedup_key: &'a str,
    pub attempts: u32,
    pub outcome: &'a Option<consentry_cluster::model::Delivery>,
}

#[derive(Debug, Serialize)]
pub struct IncidentsView<'a> {
    pub incidents: Vec<IncidentView<'a>>,
}

/// Incidents, newest first, at most `limit`.
pub fn incidents(st: &ClusterState, open_only: bool, limit: usize) -> IncidentsView<'_> {
    let incidents = st
        .incidents
        .values()
        .rev()
        .filter(|i| !open_only || i.is_open())
        .take(limit)
        .map(|i| IncidentView {
            state: if i.is_open() { "open" } else { "closed" },
            incident: i,
            notifications: st
                .intents
                .values()
                .filter(|n| n.incident_id == i.id)
                .map(|n| NotificationView {
                    notifier: &n.notifier,
                    transition: n.transition.as_str(),
                    dedup_key: &n.dedup_key,
                    attempts: n.attempts,
                    outcome: &n.outcome,
                })
                .collect(),
        })
        .collect();
    IncidentsView { incidents }
}

#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub node_id: u64,
    pub site: String,
    /// This node's raft role: Leader, Follower, Candidate, Learner, Shutdown.
    pub role: String,
    pub leader: Option<u64>,
    pub term: u64,
    /// 0 before anything was written or applied.
    pub last_log_index: u64,
    pub applied_index: u64,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Serialize)]
pub struct MemberView {
    pub id: u64,
    pub site: String,
    pub addr: String,
    pub api: String,
    pub role: &'static str,
    pub probe: bool,
    pub leader: bool,
    /// Replication lag in log entries, known only on the leader.
    pub lag: Option<u64>,
}

pub fn cluster(raft: &Raft, node_id: u64, site: &str) -> ClusterView {
    let m = raft.metrics().borrow().clone();
    let last = m.last_log_index;
    let membership = m.membership_config.membership();
    let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, n)| MemberView {
            id: *id,
            site: n.site.clone(),
            addr: n.addr.clone(),
            api: n.api.clone(),
            role: if voters.contains(id) {
                "voter"
            } else {
                "learner"
            },
            probe: n.probe,
            leader: m.current_leader == Some(*id),
            lag: m.replication.as_ref().and_then(|r| {
                r.get(id).map(|matched| {
                    last.unwrap_or(0)
                        .saturating_sub(matched.map_or(0, |l| l.index))
                })
            }),
        })
        .collect();
    ClusterView {
        node_id,
        site: site.to_string(),
        role: format!("{:?}", m.state),
        leader: m.current_leader,
        term: m.current_term,
        last_log_index: last.unwrap_or(0),
        applied_index: m.last_applied.map_or(0, |l| l.index),
        members,
    }
}

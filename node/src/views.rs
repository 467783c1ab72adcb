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
    /// Operator alerts per probing site: `degraded` / `silent` hold the alert id while
    /// raised.
    pub site_health: std::collections::BTreeMap<String, consentry_cluster::state::SiteHealth>,
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
    /// The active silence holding this check's notifications, if any.
    pub silenced_by: Option<u64>,
    /// Fresh sites whose last result is not OK while no incident is open and that are not
    /// path suspects: an outage the quorum may be about to confirm (Nagios' soft state).
    pub confirming: Vec<String>,
    pub interval_ms: u64,
    pub labels: std::collections::BTreeMap<String, String>,
    /// Parent checks: while one has an open incident, this check's new incidents are held.
    pub depends_on: Vec<String>,
    /// The flapping episode while the sites agree the check flaps (firing notifications of
    /// its incidents are held; one "flapping" notification replaces them).
    pub flapping: Option<u64>,
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
    /// Weighted percent state change over the site's last 21 results, in tenths.
    pub flap_percent_tenths: u32,
    pub flapping: bool,
}

pub fn status(st: &ClusterState) -> StatusView {
    let checks = st
        .catalog
        .checks
        .iter()
        .map(|spec| check_view(st, spec))
        .collect();
    StatusView {
        applied_index: st.last_index,
        tick: st.tick,
        probing_sites: st.probing_sites().into_iter().collect(),
        site_health: st.site_health.clone(),
        checks,
    }
}

/// One check's status (`GET /api/v1/status/{name}`); `None` when it is not in the catalog.
pub fn check_status(st: &ClusterState, name: &str) -> Option<CheckView> {
    st.check(name).map(|spec| check_view(st, spec))
}

fn check_view(st: &ClusterState, spec: &consentry_cluster::model::CheckSpec) -> CheckView {
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
                    flap_percent_tenths: s.history.percent_change_tenths(),
                    flapping: s.flapping,
                })
                .collect()
        })
        .unwrap_or_default();
    let confirming = cs
        .filter(|cs| cs.open_incident.is_none())
        .map(|cs| {
            cs.eval
                .fresh
                .iter()
                .filter(|site| !cs.eval.path_suspect.contains(*site))
                .filter(|site| cs.sites.get(*site).is_some_and(|s| !s.last.status.is_ok()))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    CheckView {
        name: spec.name.clone(),
        kind: spec.probe.kind(),
        target: spec.probe.target(),
        verdict: st.verdict(&spec.name).map_or("PENDING", |s| s.as_str()),
        incident: cs.and_then(|c| c.open_incident),
        silenced_by: cs.and_then(|c| c.silenced_by),
        confirming,
        interval_ms: spec.interval_ms,
        labels: spec.labels.clone(),
        depends_on: spec.depends_on.clone(),
        flapping: cs.and_then(|c| c.flapping),
        sites,
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
        .map(|i| incident_view(st, i))
        .collect();
    IncidentsView { incidents }
}

/// One incident with its notifications and timeline.
pub fn incident(st: &ClusterState, id: u64) -> Option<IncidentView<'_>> {
    st.incidents.get(&id).map(|i| incident_view(st, i))
}

fn incident_view<'a>(st: &'a ClusterState, i: &'a Incident) -> IncidentView<'a> {
    IncidentView {
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
    }
}

#[derive(Debug, Serialize)]
pub struct SilencesView {
    /// The cluster's current time: the leader's wall clock at its last tick.
    pub wall_ms: u64,
    pub silences: Vec<SilenceView>,
}

#[derive(Debug, Serialize)]
pub struct SilenceView {
    pub id: u64,
    /// As given: a check name, a glob, or `label=value`.
    #[serde(rename = "match")]
    pub matcher: String,
    /// `active`, `scheduled` (starts later) or `ended` (pruned at the next tick).
    pub state: &'static str,
    pub start_ms: u64,
    pub end_ms: u64,
    pub start: String,
    pub end: String,
    pub reason: String,
    /// Checks of the applied catalog it matches.
    pub checks: usize,
    pub created_index: u64,
}

/// Silences, by id.
pub fn silences(st: &ClusterState) -> SilencesView {
    let now = st.wall_ms;
    let silences = st
        .silences
        .values()
        .map(|s| SilenceView {
            id: s.id,
            matcher: s.matcher.to_string(),
            state: if s.is_active(now) {
                "active"
            } else if s.is_over(now) {
                "ended"
            } else {
                "scheduled"
            },
            start_ms: s.start_ms,
            end_ms: s.end_ms,
            start: crate::wall_time::format_rfc3339(s.start_ms),
            end: crate::wall_time::format_rfc3339(s.end_ms),
            reason: s.reason.clone(),
            checks: st
                .catalog
                .checks
                .iter()
                .filter(|c| s.matcher.matches(c))
                .count(),
            created_index: s.created_index,
        })
        .collect();
    SilencesView {
        wall_ms: now,
        silences,
    }
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
    /// The last log index in this node's newest snapshot (0: none yet).
    pub snapshot_index: u64,
    /// Log entries up to this index are purged after a snapshot (0: none yet).
    pub purged_index: u64,
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
    /// Whether the member answered this node's last RPCs within [`REACHABLE_WITHIN_MS`]
    /// (`None`: this node has not sent it any; a follower mostly talks to the leader only).
    pub reachable: Option<bool>,
    /// Milliseconds since the member last answered this node.
    pub last_answer_ms: Option<u64>,
}

/// A member that answered within this window counts as reachable (12 heartbeats).
pub const REACHABLE_WITHIN_MS: u64 = 3_000;

pub fn cluster(
    raft: &Raft,
    dialer: &consentry_cluster::transport::Dialer,
    node_id: u64,
    site: &str,
) -> ClusterView {
    let m = raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, n)| {
            let answered_ms = (*id != node_id)
                .then(|| dialer.since_answer(*id))
                .flatten()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            MemberView {
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
                lag: consentry_cluster::membership::lag_of(&m, *id),
                reachable: if *id == node_id {
                    Some(true)
                } else {
                    answered_ms.map(|ms| ms <= REACHABLE_WITHIN_MS)
                },
                last_answer_ms: answered_ms,
            }
        })
        .collect();
    ClusterView {
        node_id,
        site: site.to_string(),
        role: format!("{:?}", m.state),
        leader: m.current_leader,
        term: m.current_term,
        last_log_index: m.last_log_index.unwrap_or(0),
        applied_index: m.last_applied.map_or(0, |l| l.index),
        snapshot_index: m.snapshot.map_or(0, |l| l.index),
        purged_index: m.purged.map_or(0, |l| l.index),
        members,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use consentry_cluster::command::Command;
    use consentry_cluster::model::{Catalog, CheckSpec, ProbeResult, Reason, ResultBatch, Status};
    use consentry_cluster::types::ClusterNode;

    use super::*;

    fn state() -> (ClusterState, u64) {
        let member = |site: &str| ClusterNode {
            addr: "127.0.0.1:1".into(),
            site: site.into(),
            probe: true,
            api: String::new(),
        };
        let mut st = ClusterState {
            members: BTreeMap::from([(1, member("site-a")), (2, member("site-b"))]),
            ..ClusterState::default()
        };
        let mut check = CheckSpec::for_test("web");
        check.notify.clear();
        st.apply_command(
            1,
            &Command::ApplyCatalog(Catalog {
                checks: vec![check],
                ..Catalog::default()
            }),
        );
        (st, 1)
    }

    fn round(st: &mut ClusterState, index: &mut u64, a: Status, b: Status) {
        for (node, site, status) in [(1, "site-a", a), (2, "site-b", b)] {
            *index += 1;
            let results = vec![ProbeResult::new("web", status, Reason::None, 1, "")];
            st.apply_command(
                *index,
                &Command::Results(ResultBatch {
                    node_id: node,
                    site: site.into(),
                    results,
                }),
            );
        }
    }

    #[test]
    fn confirming_shows_unconfirmed_failures_only() {
        let (mut st, mut i) = state();
        round(&mut st, &mut i, Status::Ok, Status::Ok);
        round(&mut st, &mut i, Status::Critical, Status::Critical);
        let v = status(&st);
        assert_eq!(v.checks[0].verdict, "OK", "one round confirms nothing");
        assert_eq!(v.checks[0].confirming, vec!["site-a", "site-b"]);

        round(&mut st, &mut i, Status::Critical, Status::Critical);
        let v = status(&st);
        assert_eq!(v.checks[0].verdict, "CRITICAL");
        assert!(v.checks[0].incident.is_some());
        assert!(
            v.checks[0].confirming.is_empty(),
            "confirmed: nothing left to confirm"
        );

        let (mut st, mut i) = state();
        for _ in 0..3 {
            round(&mut st, &mut i, Status::Critical, Status::Ok);
        }
        let v = status(&st);
        assert!(v.checks[0].sites[0].path_suspect);
        assert!(
            v.checks[0].confirming.is_empty(),
            "a path suspect is not an outage being confirmed"
        );
    }

    #[test]
    fn incidents_show_committed_delivery_attempts() {
        use consentry_cluster::model::{NotifierKind, NotifierSpec};

        let (mut st, mut i) = state();
        i += 1;
        st.apply_command(
            i,
            &Command::ApplyCatalog(Catalog {
                checks: vec![CheckSpec::for_test("web")],
                notifiers: vec![NotifierSpec {
                    name: "ops".into(),
                    kind: NotifierKind::Webhook {
                        url: "http://127.0.0.1:9/".into(),
                    },
                }],
                operator_notify: Vec::new(),
                runbooks: Vec::new(),
            }),
        );
        for _ in 0..2 {
            round(&mut st, &mut i, Status::Critical, Status::Critical);
        }
        let id = st.pending_intents().next().map(|n| n.id).unwrap();
        i += 1;
        st.apply_command(
            i,
            &Command::NotifyAttempt {
                intent_id: id,
                attempt: 1,
                leader_id: 1,
                term: 1,
                at_ms: 5,
                error: Some("refused".into()),
            },
        );
        let v = serde_json::to_value(incidents(&st, false, 10)).unwrap();
        let inc = &v["incidents"][0];
        assert_eq!(inc["notifications"][0]["attempts"], 1);
        let attempt = inc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|e| e["event"].get("notify_attempt"))
            .expect("the attempt is on the timeline");
        assert_eq!(attempt["attempt"], 1);
        assert_eq!(attempt["error"], "refused");
        assert_eq!(attempt["notifier"], "ops");
    }
}

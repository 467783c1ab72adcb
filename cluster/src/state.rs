//! The replicated state machine: pure `apply(state, entry) -> state + intents`.
//!
//! Every replica applies the same log to a `ClusterState` and so computes the same counters,
//! incidents and notification intents. No clock, no randomness, no I/O: time is the leader's
//! `Tick` count, ids are counters in the state, and maps are ordered.

use std::collections::{BTreeMap, BTreeSet};

use consentry_storage::Machine;
use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandResponse};
use crate::model::{
    Catalog, CheckSpec, Delivery, Evidence, Incident, NotifyIntent, NotifyOutcome, ProbeResult,
    ResultBatch, Status, Transition,
};
use crate::rule::{self, Evaluation, SiteCounters};
use crate::types::{ClusterNode, LogId, Membership, NodeId, TypeConfig};

/// Closed incidents kept in the replicated state (older ones are dropped, oldest first).
pub const CLOSED_INCIDENTS_MAX: usize = 10_000;

/// Completed notification intents kept (pending ones are always kept).
pub const DONE_INTENTS_MAX: usize = 10_000;

/// Results accepted in one batch; a larger batch is rejected whole.
pub const BATCH_RESULTS_MAX: usize = 50_000;

/// One probing site's view of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteState {
    pub consecutive_fail: u32,
    pub consecutive_ok: u32,
    pub last: ProbeResult,
    /// Leader tick at which the last result was applied.
    pub last_tick: u64,
    /// Log index of the last result.
    pub last_index: u64,
    /// Log index of the first failing result of the current failure streak.
    pub fail_since_index: Option<u64>,
}

/// Per-check replicated state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CheckState {
    pub sites: BTreeMap<String, SiteState>,
    pub open_incident: Option<u64>,
    /// The last evaluation, kept for readers (path-suspect, fresh sites).
    pub eval: Evaluation,
}

/// Everything the cluster agrees on.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ClusterState {
    pub catalog: Catalog,
    /// Log index of the last applied catalog (0: none yet).
    pub catalog_index: u64,
    pub members: BTreeMap<NodeId, ClusterNode>,
    pub voters: BTreeSet<NodeId>,
    /// Leader ticks applied so far.
    pub tick: u64,
    pub last_index: u64,
    pub checks: BTreeMap<String, CheckState>,
    pub incidents: BTreeMap<u64, Incident>,
    pub intents: BTreeMap<u64, NotifyIntent>,
    pub next_incident_id: u64,
    pub next_intent_id: u64,
}

impl ClusterState {
    /// Sites that probe: members with `probe = true`, deduplicated.
    pub fn probing_sites(&self) -> BTreeSet<String> {
        self.members
            .values()
            .filter(|n| n.probe)
            .map(|n| n.site.clone())
            .collect()
    }

    pub fn check(&self, name: &str) -> Option<&CheckSpec> {
        self.catalog.checks.iter().find(|c| c.name == name)
    }

    /// Intents that have no committed outcome, oldest first.
    pub fn pending_intents(&self) -> impl Iterator<Item = &NotifyIntent> {
        self.intents.values().filter(|i| i.outcome.is_none())
    }

    pub fn open_incidents(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.values().filter(|i| i.is_open())
    }

    /// Applies one command at `index`. Deterministic.
    pub fn apply_command(&mut self, index: u64, cmd: &Command) -> CommandResponse {
        self.advance(index);
        match cmd {
            Command::ApplyCatalog(catalog) => self.apply_catalog(index, catalog),
            Command::Results(batch) => self.apply_results(index, batch),
            Command::Tick { .. } => {
                self.tick += 1;
                let names: Vec<String> =
                    self.catalog.checks.iter().map(|c| c.name.clone()).collect();
                for name in names {
                    self.evaluate(index, &name);
                }
                CommandResponse::Ok
            }
            Command::NotifyOutcome(outcome) => self.apply_outcome(outcome),
        }
    }

    /// Records new membership metadata.
    pub fn apply_members(&mut self, index: u64, membership: &Membership) {
        self.advance(index);
        let m = membership.membership();
        self.members = m.nodes().map(|(id, n)| (*id, n.clone())).collect();
        self.voters = m.voter_ids().collect();
        // Sites that no longer probe must not keep counting towards quorums.
        let probing = self.probing_sites();
        for cs in self.checks.values_mut() {
            cs.sites.retain(|site, _| probing.contains(site));
        }
    }

    fn advance(&mut self, index: u64) {
        assert!(
            index > self.last_index || (index == 0 && self.last_index == 0),
            "state machine applied index {} after {}",
            index,
            self.last_index
        );
        self.last_index = index;
    }

    fn apply_catalog(&mut self, index: u64, catalog: &Catalog) -> CommandResponse {
        let mut names = BTreeSet::new();
        for c in &catalog.checks {
            if !names.insert(c.name.as_str()) {
                return CommandResponse::Rejected(format!("duplicate check name {:?}", c.name));
            }
        }
        self.catalog = catalog.clone();
        self.catalog_index = index;
        // Removed checks: drop counters, close their incidents without notifying.
        let removed: Vec<String> = self
            .checks
            .keys()
            .filter(|k| !names.contains(k.as_str()))
            .cloned()
            .collect();
        for name in removed {
            if let Some(cs) = self.checks.remove(&name) {
                if let Some(id) = cs.open_incident {
                    if let Some(inc) = self.incidents.get_mut(&id) {
                        inc.closed_index = Some(index);
                        inc.closed_tick = Some(self.tick);
                        inc.close_note = Some("check removed from the catalog".into());
                    }
                }
            }
        }
        for c in &catalog.checks {
            self.checks.entry(c.name.clone()).or_default();
        }
        CommandResponse::Ok
    }

    fn apply_results(&mut self, index: u64, batch: &ResultBatch) -> CommandResponse {
        if batch.results.len() > BATCH_RESULTS_MAX {
            return CommandResponse::Rejected(format!(
                "batch of {} results exceeds {}",
                batch.results.len(),
                BATCH_RESULTS_MAX
            ));
        }
        match self.members.get(&batch.node_id) {
            Some(n) if n.site == batch.site && n.probe => {}
            _ => {
                return CommandResponse::Rejected(format!(
                    "node {} is not a probing member of site {:?}",
                    batch.node_id, batch.site
                ))
            }
        }
        let mut touched = BTreeSet::new();
        for r in &batch.results {
            let Some(cs) = self.checks.get_mut(&r.check) else {
                continue; // A result for a check removed since it was probed.
            };
            let tick = self.tick;
            let st = cs
                .sites
                .entry(batch.site.clone())
                .or_insert_with(|| SiteState {
                    consecutive_fail: 0,
                    consecutive_ok: 0,
                    last: r.clone(),
                    last_tick: tick,
                    last_index: index,
                    fail_since_index: None,
                });
            if r.status.is_ok() {
                st.consecutive_ok = st.consecutive_ok.saturating_add(1);
                st.consecutive_fail = 0;
                st.fail_since_index = None;
            } else {
                st.consecutive_fail = st.consecutive_fail.saturating_add(1);
                st.consecutive_ok = 0;
                st.fail_since_index.get_or_insert(index);
            }
            st.last = r.clone();
            st.last_tick = tick;
            st.last_index = index;
            touched.insert(r.check.clone());
        }
        for name in touched {
            self.evaluate(index, &name);
        }
        CommandResponse::Ok
    }

    fn evaluate(&mut self, index: u64, name: &str) {
        let Some(spec) = self.check(name).cloned() else {
            return;
        };
        let probing = self.probing_sites();
        let tick = self.tick;
        let Some(cs) = self.checks.get_mut(name) else {
            return;
        };
        let counters: Vec<SiteCounters> = cs
            .sites
            .iter()
            .filter(|(site, _)| probing.contains(*site))
            .map(|(site, s)| SiteCounters {
                site: site.clone(),
                consecutive_fail: s.consecutive_fail,
                consecutive_ok: s.consecutive_ok,
                last_status: s.last.status,
                last_tick: s.last_tick,
            })
            .collect();
        let eval = rule::evaluate(
            &spec,
            probing.len(),
            &counters,
            tick,
            cs.open_incident.is_some(),
        );
        let evidence = |sites: &BTreeSet<String>, cs: &CheckState| -> Vec<Evidence> {
            sites
                .iter()
                .filter_map(|site| {
                    cs.sites.get(site).map(|s| Evidence {
                        site: site.clone(),
                        consecutive: s.consecutive_fail.max(s.consecutive_ok),
                        last: s.last.clone(),
                    })
                })
                .collect()
        };
        let mut transition = None;
        if let Some(open) = &eval.open {
            let id = self.next_incident_id + 1;
            self.next_incident_id = id;
            let opened_by = evidence(&open.sites, cs);
            let opened_at_ms = opened_by
                .iter()
                .map(|e| e.last.observed_at_ms)
                .max()
                .unwrap_or(0);
            self.incidents.insert(
                id,
                Incident {
                    id,
                    check: name.to_string(),
                    severity: open.severity,
                    opened_index: index,
                    opened_tick: tick,
                    opened_at_ms,
                    opened_by,
                    closed_index: None,
                    closed_tick: None,
                    closed_at_ms: None,
                    closed_by: Vec::new(),
                    unconfirmed: open.unconfirmed,
                    close_note: None,
                },
            );
            cs.open_incident = Some(id);
            transition = Some((id, Transition::Firing));
        } else if let (Some(close), Some(id)) = (&eval.close, cs.open_incident) {
            let closed_by = evidence(&close.sites, cs);
            if let Some(inc) = self.incidents.get_mut(&id) {
                inc.closed_index = Some(index);
                inc.closed_tick = Some(tick);
                inc.closed_at_ms = closed_by.iter().map(|e| e.last.observed_at_ms).max();
                inc.closed_by = closed_by;
            }
            cs.open_incident = None;
            transition = Some((id, Transition::Resolved));
        }
        cs.eval = eval;
        if let Some((incident_id, t)) = transition {
            self.emit_intents(index, &spec, incident_id, t);
            self.trim();
        }
    }

    fn emit_intents(&mut self, index: u64, spec: &CheckSpec, incident_id: u64, t: Transition) {
        for channel in &spec.notify {
            if !self.catalog.notifiers.iter().any(|n| &n.name == channel) {
                continue;
            }
            let id = self.next_intent_id + 1;
            self.next_intent_id = id;
            self.intents.insert(
                id,
                NotifyIntent {
                    id,
                    incident_id,
                    check: spec.name.clone(),
                    notifier: channel.clone(),
                    transition: t,
                    dedup_key: format!("incident-{incident_id}/{}/{channel}", t.as_str()),
                    created_index: index,
                    attempts: 0,
                    outcome: None,
                },
            );
        }
    }

    fn apply_outcome(&mut self, outcome: &NotifyOutcome) -> CommandResponse {
        let Some(intent) = self.intents.get_mut(&outcome.intent_id) else {
            return CommandResponse::Rejected(format!("unknown intent {}", outcome.intent_id));
        };
        if intent.outcome.is_some() {
            // A second leader's report for a settled intent changes nothing.
            return CommandResponse::Ok;
        }
        intent.attempts = intent.attempts.saturating_add(outcome.attempts);
        intent.outcome = Some(outcome.delivery.clone());
        self.trim();
        CommandResponse::Ok
    }

    fn trim(&mut self) {
        let closed: Vec<u64> = self
            .incidents
            .values()
            .filter(|i| !i.is_open())
            .map(|i| i.id)
            .collect();
        if closed.len() > CLOSED_INCIDENTS_MAX {
            for id in &closed[..closed.len() - CLOSED_INCIDENTS_MAX] {
                self.incidents.remove(id);
            }
        }
        let done: Vec<u64> = self
            .intents
            .values()
            .filter(|i| i.outcome.is_some())
            .map(|i| i.id)
            .collect();
        if done.len() > DONE_INTENTS_MAX {
            for id in &done[..done.len() - DONE_INTENTS_MAX] {
                self.intents.remove(id);
            }
        }
    }

    /// The agreed verdict for a check: the open incident's severity; OK when no incident is
    /// open and at least one site has fresh results; `None` while nothing fresh is known.
    pub fn verdict(&self, name: &str) -> Option<Status> {
        let cs = self.checks.get(name)?;
        if let Some(id) = cs.open_incident {
            return self.incidents.get(&id).map(|i| i.severity);
        }
        (!cs.eval.fresh.is_empty()).then_some(Status::Ok)
    }
}

impl Machine<TypeConfig> for ClusterState {
    fn apply(&mut self, log_id: &LogId, data: &Command) -> CommandResponse {
        self.apply_command(log_id.index, data)
    }

    fn apply_membership(
        &mut self,
        log_id: &LogId,
        membership: Option<&Membership>,
    ) -> CommandResponse {
        match membership {
            Some(m) => self.apply_members(log_id.index, m),
            None => self.advance(log_id.index),
        }
        CommandResponse::Ok
    }
}

/// Convenience for readers: whether an intent settled as delivered.
pub fn delivered(intent: &NotifyIntent) -> bool {
    matches!(intent.outcome, Some(Delivery::Delivered { .. }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{NotifierKind, NotifierSpec, Reason};

    fn member(site: &str, probe: bool) -> ClusterNode {
        ClusterNode {
            addr: "127.0.0.1:1".into(),
            site: site.into(),
            probe,
            api: String::new(),
        }
    }

    struct World {
        st: ClusterState,
        index: u64,
    }

    impl World {
        fn new() -> Self {
            let st = ClusterState {
                members: BTreeMap::from([
                    (1, member("site-a", true)),
                    (2, member("site-b", true)),
                    (3, member("site-c", false)),
                ]),
                ..ClusterState::default()
            };
            let mut w = World { st, index: 0 };
            let mut check = CheckSpec::for_test("web");
            check.interval_ms = 1_000;
            w.cmd(Command::ApplyCatalog(Catalog {
                checks: vec![check],
                notifiers: vec![NotifierSpec {
                    name: "ops".into(),
                    kind: NotifierKind::Webhook {
                        url: "http://127.0.0.1:9/hook".into(),
                    },
                }],
            }));
            w
        }

        fn cmd(&mut self, c: Command) -> CommandResponse {
            self.index += 1;
            self.st.apply_command(self.index, &c)
        }

        fn result(&mut self, node: u64, site: &str, status: Status) {
            let r = ProbeResult::new("web", status, Reason::None, 1, "");
            let resp = self.cmd(Command::Results(ResultBatch {
                node_id: node,
                site: site.into(),
                results: vec![r],
            }));
            assert_eq!(resp, CommandResponse::Ok);
        }

        fn round(&mut self, a: Status, b: Status) {
            self.result(1, "site-a", a);
            self.result(2, "site-b", b);
            self.cmd(Command::Tick { leader_id: 1 });
        }
    }

    #[test]
    fn outage_opens_once_and_closes_once() {
        let mut w = World::new();
        w.round(Status::Ok, Status::Ok);
        w.round(Status::Critical, Status::Critical);
        assert_eq!(w.st.open_incidents().count(), 0, "one round is not enough");
        w.round(Status::Critical, Status::Critical);
        assert_eq!(w.st.open_incidents().count(), 1);
        w.round(Status::Critical, Status::Critical);
        assert_eq!(w.st.incidents.len(), 1, "still one incident");
        let firing: Vec<_> = w.st.intents.values().collect();
        assert_eq!(firing.len(), 1);
        assert_eq!(firing[0].transition, Transition::Firing);
        assert_eq!(firing[0].dedup_key, "incident-1/firing/ops");
        w.round(Status::Ok, Status::Ok);
        w.round(Status::Ok, Status::Ok);
        assert_eq!(w.st.open_incidents().count(), 0);
        let inc = &w.st.incidents[&1];
        assert!(inc.closed_index.is_some());
        assert_eq!(inc.opened_by.len(), 2);
        assert_eq!(w.st.intents.len(), 2);
        assert_eq!(w.st.pending_intents().count(), 2);
    }

    #[test]
    fn path_failure_is_suspect_not_incident() {
        let mut w = World::new();
        for _ in 0..5 {
            w.round(Status::Critical, Status::Ok);
        }
        assert_eq!(w.st.incidents.len(), 0);
        let cs = &w.st.checks["web"];
        assert!(cs.eval.path_suspect.contains("site-a"));
        assert_eq!(w.st.verdict("web"), Some(Status::Ok));
    }

    #[test]
    fn witness_and_strangers_cannot_report() {
        let mut w = World::new();
        let r = ProbeResult::new("web", Status::Critical, Reason::None, 1, "");
        for (node, site) in [(3, "site-c"), (9, "site-a"), (1, "site-b")] {
            let resp = w.cmd(Command::Results(ResultBatch {
                node_id: node,
                site: site.into(),
                results: vec![r.clone()],
            }));
            assert!(
                matches!(resp, CommandResponse::Rejected(_)),
                "{node} {site}"
            );
        }
    }

    #[test]
    fn outcome_is_recorded_once() {
        let mut w = World::new();
        for _ in 0..3 {
            w.round(Status::Critical, Status::Critical);
        }
        let id = w.st.pending_intents().next().map(|i| i.id).unwrap();
        let out = |leader| {
            Command::NotifyOutcome(NotifyOutcome {
                intent_id: id,
                attempts: 1,
                delivery: Delivery::Delivered {
                    leader_id: leader,
                    term: 1,
                },
            })
        };
        w.cmd(out(1));
        w.cmd(out(2));
        assert_eq!(
            w.st.intents[&id].outcome,
            Some(Delivery::Delivered {
                leader_id: 1,
                term: 1
            })
        );
        assert_eq!(w.st.pending_intents().count(), 0);
    }

    #[test]
    fn replay_is_identical() {
        let mut a = World::new();
        let mut b = World::new();
        for w in [&mut a, &mut b] {
            for i in 0..20 {
                let s = if (i / 4) % 2 == 0 {
                    Status::Ok
                } else {
                    Status::Critical
                };
                w.round(s, s);
            }
        }
        let ea = crate::codec::encode(&a.st).unwrap();
        let eb = crate::codec::encode(&b.st).unwrap();
        assert_eq!(ea, eb);
        assert!(a.st.incidents.len() >= 2);
    }

    #[test]
    fn removed_check_closes_its_incident_quietly() {
        let mut w = World::new();
        for _ in 0..3 {
            w.round(Status::Critical, Status::Critical);
        }
        let intents_before = w.st.intents.len();
        w.cmd(Command::ApplyCatalog(Catalog::default()));
        assert_eq!(w.st.open_incidents().count(), 0);
        assert_eq!(w.st.intents.len(), intents_before);
    }
}

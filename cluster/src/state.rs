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
    displayable, truncate, Ack, Catalog, CheckSpec, Delivery, Event, Evidence, Incident,
    IntentKind, NotifyIntent, NotifyOutcome, ProbeResult, ProbeSpec, RecoveryIntent, ResultBatch,
    Silence, SilenceSpec, Status, Transition, ACK_BY_BYTES_MAX, ACK_COMMENT_BYTES_MAX,
    ATTEMPT_ERROR_BYTES_MAX,
};
use crate::rule::{self, Evaluation, Holds, Moment, SiteCounters, StatusHistory};
use crate::types::{ClusterNode, LogId, Membership, NodeId, TypeConfig};

/// Closed incidents kept in the replicated state (older ones are dropped, oldest first).
pub const CLOSED_INCIDENTS_MAX: usize = 10_000;

/// Completed notification intents kept (pending ones are always kept).
pub const DONE_INTENTS_MAX: usize = 10_000;

/// Results accepted in one batch; a larger batch is rejected whole.
pub const BATCH_RESULTS_MAX: usize = 50_000;

/// Silences kept (active and scheduled); ended ones are pruned at every tick.
pub const SILENCES_MAX: usize = 1_000;

/// One probing site's view of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteState {
    pub consecutive_fail: u32,
    pub consecutive_ok: u32,
    pub last: ProbeResult,
    /// Leader tick at which the last result was observed (the probing node's applied tick
    /// then; never later than the tick it was applied at).
    pub last_tick: u64,
    /// Log index of the last result.
    pub last_index: u64,
    /// Log index of the first failing result of the current failure streak.
    pub fail_since_index: Option<u64>,
    /// That result's observed time (the site's clock; display only).
    pub fail_since_ms: Option<u64>,
    /// The last results' statuses, for flap detection.
    pub history: StatusHistory,
    /// Whether this site sees the check flapping (with hysteresis).
    pub flapping: bool,
}

/// Per-check replicated state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CheckState {
    pub sites: BTreeMap<String, SiteState>,
    pub open_incident: Option<u64>,
    /// The last evaluation, kept for readers (path-suspect, fresh sites).
    pub eval: Evaluation,
    /// The active silence that matches the check, as of the last tick or silence change.
    pub silenced_by: Option<u64>,
    /// Longest `depends_on` chain above this check (0: no parents). Checks are evaluated
    /// parents first, so a parent that fails with its children opens first and holds them.
    pub depth: u32,
    /// Tick at which this check's last incident closed: its dependents stay held for a
    /// grace window after it, since they recover on their own probe schedule.
    #[serde(default)]
    pub recovered_tick: Option<u64>,
    /// The flapping episode while enough fresh sites see the check flapping.
    pub flapping: Option<u64>,
    /// Where the check's spec is in `catalog.checks`: a lookup by name on every result
    /// must not scan a catalog of thousands.
    #[serde(default)]
    pub position: usize,
    /// Log index of the last recovery step that asked for the check to be probed again at
    /// once (to verify it); pollers probe it when this changes.
    #[serde(default)]
    pub reprobe_index: u64,
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
    /// The leader's wall clock at the last tick (milliseconds since the Unix epoch). Judges
    /// silence windows only: an operator's schedule, measured by one clock (the leader's),
    /// never by comparing two machines' clocks.
    pub wall_ms: u64,
    pub silences: BTreeMap<u64, Silence>,
    pub next_silence_id: u64,
    /// Check names, parents before children (by `depends_on` depth, then catalog order).
    pub eval_order: Vec<String>,
    /// Numbers alerts that are not incidents (flapping episodes, operator alerts).
    pub next_alert_id: u64,
    /// Operator alerts per probing site.
    pub site_health: BTreeMap<String, SiteHealth>,
    /// Tick at which the current catalog was applied.
    pub catalog_tick: u64,
    /// The process that proposed the last applied tick, and its monotonic clock then (see
    /// `Command::Tick`).
    #[serde(default)]
    pub tick_leader_run: u64,
    #[serde(default)]
    pub tick_leader_mono_ms: u64,
    /// The last jump of cluster time (a tick that stood for more than one period), for the
    /// rule's awaited sites (see `rule::evaluate_after`).
    #[serde(default)]
    pub last_jump: Option<rule::Jump>,
    /// Recovery steps (runbooks), by id: the active ones and the last settled ones.
    #[serde(default)]
    pub recoveries: BTreeMap<u64, RecoveryIntent>,
    #[serde(default)]
    pub next_recovery_id: u64,
    /// Runbook progress per open incident whose check has `recovery`.
    #[serde(default)]
    pub runs: BTreeMap<u64, RunbookRun>,
    /// Host agents that have reported, by name.
    #[serde(default)]
    pub agents: BTreeMap<String, AgentState>,
}

/// Where one incident's runbook is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunbookRun {
    pub runbook: String,
    /// The next step to start.
    pub next_step: u32,
    /// The step intent running now.
    pub active: Option<u64>,
    /// Every step ran and the incident is still open: escalated.
    pub finished: bool,
}

/// What the cluster knows of one host agent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AgentState {
    /// The agent process's run id and the last sequence number applied from it.
    pub run: u64,
    pub seq: u64,
    /// Reports applied, and reports missing between applied ones (sequence gaps).
    pub reports: u64,
    pub gaps: u64,
    /// Tick and agent wall clock of the last report.
    pub last_tick: u64,
    pub last_at_ms: u64,
    /// The node the last report came through.
    pub via_node: u64,
}

/// Most periods one tick may stand for (a day): bounds what a confused clock can do.
pub const TICK_ADVANCE_MAX: u32 = 86_400;

/// A `Command::NotifyAttempt`'s fields, borrowed.
struct AttemptRecord<'a> {
    attempt: u32,
    leader_id: u64,
    term: u64,
    at_ms: u64,
    error: Option<&'a str>,
}

/// What the cluster knows about one probing site itself (operator alerts).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SiteHealth {
    /// Tick at which its last result batch was applied (0: none yet).
    pub last_batch_tick: u64,
    /// The "site degraded" alert while raised.
    pub degraded: Option<u64>,
    /// The "site silent" alert while raised.
    pub silent: Option<u64>,
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
        self.spec_position(name).map(|p| &self.catalog.checks[p])
    }

    /// Intents that have no committed outcome, oldest first.
    pub fn pending_intents(&self) -> impl Iterator<Item = &NotifyIntent> {
        self.intents.values().filter(|i| i.outcome.is_none())
    }

    pub fn open_incidents(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.values().filter(|i| i.is_open())
    }

    /// Applies one command at `index` (in term 0: tests and tools). Deterministic.
    pub fn apply_command(&mut self, index: u64, cmd: &Command) -> CommandResponse {
        self.apply_command_at(0, index, cmd)
    }

    /// Applies one command at `index`, proposed in `term` (dispatches take their fencing
    /// token from both). Deterministic.
    pub fn apply_command_at(&mut self, term: u64, index: u64, cmd: &Command) -> CommandResponse {
        self.advance(index);
        match cmd {
            Command::ApplyCatalog(catalog) => self.apply_catalog(index, catalog),
            Command::Results(batch) => self.apply_results(index, batch),
            Command::Tick {
                wall_ms,
                advance,
                leader_run,
                leader_mono_ms,
                ..
            } => {
                self.tick_leader_run = *leader_run;
                self.tick_leader_mono_ms = *leader_mono_ms;
                self.apply_tick(index, *wall_ms, *advance);
                CommandResponse::Ok
            }
            Command::NotifyOutcome(outcome) => self.apply_outcome(index, outcome),
            Command::AddSilence(spec) => self.add_silence(index, spec),
            Command::RemoveSilence { id } => {
                if self.silences.remove(id).is_none() {
                    return CommandResponse::Rejected(format!("no silence {id}"));
                }
                self.refresh_silenced();
                CommandResponse::Ok
            }
            Command::Ack {
                incident_id,
                by,
                comment,
            } => self.apply_ack(index, *incident_id, by, comment),
            Command::NotifyAttempt {
                intent_id,
                attempt,
                leader_id,
                term,
                at_ms,
                error,
            } => {
                let record = AttemptRecord {
                    attempt: *attempt,
                    leader_id: *leader_id,
                    term: *term,
                    at_ms: *at_ms,
                    error: error.as_deref(),
                };
                self.apply_attempt(index, *intent_id, &record)
            }
            Command::Restore(backup) => self.restore(index, backup),
            Command::AgentReport {
                agent,
                node_id,
                report,
            } => self.apply_agent_report(index, agent, *node_id, report),
            Command::Dispatch {
                intent_id,
                attempt,
                leader_id,
            } => self.apply_dispatch(term, index, *intent_id, *attempt, *leader_id),
            Command::StepOutcome(outcome) => self.apply_step_outcome(index, outcome),
        }
    }

    /// Records one delivery attempt of a pending intent: raises its attempt count and adds
    /// the attempt to its incident's timeline. Attempts for settled intents change nothing
    /// (a late report from an old leader); unknown intents are rejected, as outcomes are.
    fn apply_attempt(&mut self, index: u64, id: u64, a: &AttemptRecord<'_>) -> CommandResponse {
        let Some(intent) = self.intents.get_mut(&id) else {
            return CommandResponse::Rejected(format!("unknown intent {id}"));
        };
        if intent.outcome.is_some() {
            return CommandResponse::Ok;
        }
        intent.attempts = intent.attempts.max(a.attempt);
        // Operator alerts (incident 0) have no timeline; their count is on the intent.
        let Some(inc) = self.incidents.get_mut(&intent.incident_id) else {
            return CommandResponse::Ok;
        };
        let event = Event::NotifyAttempt {
            intent_id: id,
            notifier: intent.notifier.clone(),
            transition: intent.transition,
            attempt: a.attempt,
            leader_id: a.leader_id,
            term: a.term,
            error: a
                .error
                .map(|e| truncate(&displayable(e), ATTEMPT_ERROR_BYTES_MAX)),
        };
        inc.record(index, a.at_ms, event);
        CommandResponse::Ok
    }

    fn apply_ack(&mut self, index: u64, id: u64, by: &str, comment: &str) -> CommandResponse {
        let at_ms = self.wall_ms;
        let Some(inc) = self.incidents.get_mut(&id) else {
            return CommandResponse::Rejected(format!("no incident {id}"));
        };
        if !inc.is_open() {
            return CommandResponse::Rejected(format!("incident {id} is closed already"));
        }
        let by = truncate(displayable(by).trim(), ACK_BY_BYTES_MAX);
        if by.is_empty() {
            return CommandResponse::Rejected("an acknowledgement needs a name (by)".into());
        }
        let comment = truncate(displayable(comment).trim(), ACK_COMMENT_BYTES_MAX);
        inc.record(
            index,
            at_ms,
            Event::Acknowledged {
                by: by.clone(),
                comment: comment.clone(),
            },
        );
        inc.ack = Some(Ack {
            by,
            comment,
            index,
            at_ms,
        });
        CommandResponse::Ok
    }

    fn apply_tick(&mut self, index: u64, wall_ms: u64, advance: u32) {
        let advance = advance.clamp(1, TICK_ADVANCE_MAX);
        let from = self.tick;
        self.tick += u64::from(advance);
        if advance > 1 {
            self.last_jump = Some(rule::Jump {
                from,
                to: self.tick,
            });
        }
        self.wall_ms = wall_ms;
        self.silences.retain(|_, s| !s.is_over(wall_ms));
        self.refresh_silenced();
        let names = std::mem::take(&mut self.eval_order);
        let probing = self.probing_sites();
        for name in &names {
            self.evaluate(index, name, &probing);
        }
        for name in &names {
            self.review(index, name);
        }
        self.eval_order = names;
        self.operator_alerts(index);
        self.schedule_recovery(index);
    }

    /// At a tick: raises and clears "site degraded" and "site silent" for each probing site,
    /// notifying `[operator] notify` only.
    fn operator_alerts(&mut self, index: u64) {
        let probing = self.probing_sites();
        let checks = self.catalog.checks.len();
        let window = self
            .catalog
            .checks
            .iter()
            .map(|c| rule::fresh_ticks(c.interval_ms))
            .max()
            .unwrap_or(0);
        let mut changes: Vec<(IntentKind, Transition)> = Vec::new();
        // Sites that stopped probing: their alerts end with them.
        let gone: Vec<String> = self
            .site_health
            .keys()
            .filter(|s| !probing.contains(*s))
            .cloned()
            .collect();
        for site in gone {
            let Some(h) = self.site_health.remove(&site) else {
                continue;
            };
            if let Some(alert_id) = h.degraded {
                let kind = IntentKind::SiteDegraded {
                    alert_id,
                    site: site.clone(),
                    suspect: 0,
                    checks: 0,
                };
                changes.push((kind, Transition::Resolved));
            }
            if let Some(alert_id) = h.silent {
                changes.push((
                    IntentKind::SiteSilent { alert_id, site },
                    Transition::Resolved,
                ));
            }
        }
        for site in &probing {
            let (mut fresh, mut suspect) = (0u32, 0u32);
            for cs in self.checks.values() {
                if cs.eval.fresh.contains(site) {
                    fresh += 1;
                    suspect += u32::from(cs.eval.path_suspect.contains(site));
                }
            }
            let h = self.site_health.entry(site.clone()).or_default();
            let degraded = rule::site_degraded(h.degraded.is_some(), suspect, fresh);
            match (h.degraded, degraded) {
                (None, true) => {
                    let alert_id = self.next_alert_id + 1;
                    self.next_alert_id = alert_id;
                    h.degraded = Some(alert_id);
                    let kind = IntentKind::SiteDegraded {
                        alert_id,
                        site: site.clone(),
                        suspect,
                        checks: fresh,
                    };
                    changes.push((kind, Transition::Firing));
                }
                (Some(alert_id), false) => {
                    h.degraded = None;
                    let kind = IntentKind::SiteDegraded {
                        alert_id,
                        site: site.clone(),
                        suspect,
                        checks: fresh,
                    };
                    changes.push((kind, Transition::Resolved));
                }
                _ => {}
            }
            // Silence counts from the last batch, a new catalog, or a jump of cluster time:
            // after a loss of quorum every site's last batch is old, and none is silent yet.
            let since = h
                .last_batch_tick
                .max(self.catalog_tick)
                .max(self.last_jump.map_or(0, |j| j.to));
            let silent = rule::site_silent(fresh, checks, self.tick.saturating_sub(since), window);
            match (h.silent, silent) {
                (None, true) => {
                    let alert_id = self.next_alert_id + 1;
                    self.next_alert_id = alert_id;
                    h.silent = Some(alert_id);
                    let kind = IntentKind::SiteSilent {
                        alert_id,
                        site: site.clone(),
                    };
                    changes.push((kind, Transition::Firing));
                }
                (Some(alert_id), false) => {
                    h.silent = None;
                    let kind = IntentKind::SiteSilent {
                        alert_id,
                        site: site.clone(),
                    };
                    changes.push((kind, Transition::Resolved));
                }
                _ => {}
            }
        }
        if changes.is_empty() {
            return;
        }
        let notify = self.catalog.operator_notify.clone();
        for (kind, t) in changes {
            self.emit(index, &notify, "", 0, kind, t);
        }
        self.trim();
    }

    fn add_silence(&mut self, index: u64, spec: &SilenceSpec) -> CommandResponse {
        let spec = spec.normalized();
        if let Err(why) = spec.validate() {
            return CommandResponse::Rejected(why);
        }
        let now = self.wall_ms;
        if spec.end_ms <= now {
            return CommandResponse::Rejected(format!(
                "the silence ends ({} ms) before the cluster's current time ({now} ms)",
                spec.end_ms
            ));
        }
        self.silences.retain(|_, s| !s.is_over(now));
        if self.silences.len() >= SILENCES_MAX {
            return CommandResponse::Rejected(format!(
                "{SILENCES_MAX} silences exist; remove some first"
            ));
        }
        let id = self.next_silence_id + 1;
        self.next_silence_id = id;
        self.silences.insert(
            id,
            Silence {
                id,
                matcher: spec.matcher,
                start_ms: spec.start_ms,
                end_ms: spec.end_ms,
                reason: spec.reason,
                created_index: index,
            },
        );
        self.refresh_silenced();
        CommandResponse::Created(id)
    }

    /// Recomputes which active silence holds each check (at ticks, silence and catalog
    /// changes). Cheap when no silence is active, which is the usual case.
    pub(crate) fn refresh_silenced(&mut self) {
        let now = self.wall_ms;
        let active: Vec<&Silence> = self
            .silences
            .values()
            .filter(|s| s.is_active(now))
            .collect();
        for spec in &self.catalog.checks {
            let by = active
                .iter()
                .find(|s| s.matcher.matches(spec))
                .map(|s| s.id);
            if let Some(cs) = self.checks.get_mut(&spec.name) {
                cs.silenced_by = by;
            }
        }
    }

    /// What holds the notifications of `spec`'s incidents now: an active silence, or the
    /// first parent (in `depends_on` order) with an open incident.
    fn holds(&self, spec: &CheckSpec) -> Holds {
        Holds {
            silence: self.checks.get(&spec.name).and_then(|c| c.silenced_by),
            // A parent holds while it is down, and for the child's own recovery window after
            // it recovered: a child probed later in the interval than its parent is still
            // failing for a moment then, and must not page for the parent's outage.
            parent: spec
                .depends_on
                .iter()
                .find(|p| {
                    self.checks.get(*p).is_some_and(|c| {
                        c.open_incident.is_some()
                            || c.recovered_tick
                                .is_some_and(|t| self.tick <= t + rule::dependent_grace_ticks(spec))
                    })
                })
                .cloned(),
            flapping: self
                .checks
                .get(&spec.name)
                .is_some_and(|c| c.flapping.is_some()),
        }
    }

    /// At a tick: updates an open incident's holds and sends its firing notification when
    /// nothing holds it any more.
    fn review(&mut self, index: u64, name: &str) {
        let Some(id) = self.checks.get(name).and_then(|c| c.open_incident) else {
            return;
        };
        let Some(spec) = self.check(name).cloned() else {
            return;
        };
        let holds = self.holds(&spec);
        let at_ms = self.wall_ms;
        let Some(inc) = self.incidents.get_mut(&id) else {
            return;
        };
        if inc.silenced_by != holds.silence {
            if let Some(silence_id) = inc.silenced_by {
                inc.record(index, at_ms, Event::Unsilenced { silence_id });
            }
            if let Some(silence_id) = holds.silence {
                inc.record(index, at_ms, Event::Silenced { silence_id });
            }
            inc.silenced_by = holds.silence;
        }
        inc.silenced |= holds.silence.is_some();
        // A parent matters only while the firing notification is held.
        let parent = holds.parent.clone().filter(|_| !inc.notified);
        if inc.parent_hold != parent {
            if let Some(parent) = inc.parent_hold.take() {
                inc.record(index, at_ms, Event::Unsuppressed { parent });
            }
            if let Some(parent) = &parent {
                inc.record(
                    index,
                    at_ms,
                    Event::Suppressed {
                        parent: parent.clone(),
                    },
                );
            }
            inc.parent_hold = parent;
        }
        if let Some(t) = rule::notification(Moment::Review, &holds, inc.notified) {
            inc.notified = true;
            self.notify(index, &spec, id, t);
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
            cs.sites
                .retain(|site, _| probing.contains(site) || crate::agent::is_agent_site(site));
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

    pub(crate) fn apply_catalog(&mut self, index: u64, catalog: &Catalog) -> CommandResponse {
        let mut names = BTreeSet::new();
        for c in &catalog.checks {
            if !names.insert(c.name.as_str()) {
                return CommandResponse::Rejected(format!("duplicate check name {:?}", c.name));
            }
        }
        let depths = match dependency_depths(&catalog.checks) {
            Ok(d) => d,
            Err(why) => return CommandResponse::Rejected(why),
        };
        self.catalog = catalog.clone();
        self.catalog_index = index;
        self.catalog_tick = self.tick;
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
                        inc.silenced_by = None;
                        inc.parent_hold = None;
                        inc.record(
                            index,
                            self.wall_ms,
                            Event::Closed {
                                sites: Vec::new(),
                                note: inc.close_note.clone(),
                            },
                        );
                    }
                }
            }
        }
        for (position, (c, depth)) in catalog.checks.iter().zip(&depths).enumerate() {
            let cs = self.checks.entry(c.name.clone()).or_default();
            cs.depth = *depth;
            cs.position = position;
        }
        let mut order: Vec<(u32, usize, &str)> = catalog
            .checks
            .iter()
            .zip(&depths)
            .enumerate()
            .map(|(i, (c, d))| (*d, i, c.name.as_str()))
            .collect();
        order.sort_unstable();
        self.eval_order = order.into_iter().map(|(_, _, n)| n.to_string()).collect();
        self.refresh_silenced();
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
        self.site_health
            .entry(batch.site.clone())
            .or_default()
            .last_batch_tick = self.tick;
        let mut touched = BTreeSet::new();
        for r in &batch.results {
            if self.record_result(index, &batch.site, r) {
                touched.insert(r.check.clone());
            }
        }
        self.evaluate_touched(index, touched);
        CommandResponse::Ok
    }

    /// Evaluates the checks that got results, parents first: a parent confirmed in this
    /// batch holds its children.
    pub(crate) fn evaluate_touched(&mut self, index: u64, touched: BTreeSet<String>) {
        let mut touched: Vec<(u32, String)> = touched
            .into_iter()
            .map(|n| (self.checks.get(&n).map_or(0, |c| c.depth), n))
            .collect();
        touched.sort_unstable();
        let probing = self.probing_sites();
        for (_, name) in touched {
            self.evaluate(index, &name, &probing);
        }
    }

    /// Adds one result to `site`'s view of its check; false when it changed nothing (an
    /// unknown check, or older than what the site already reported).
    pub(crate) fn record_result(&mut self, index: u64, site: &str, r: &ProbeResult) -> bool {
        {
            let Some(cs) = self.checks.get_mut(&r.check) else {
                return false; // A result for a check removed since it was probed.
            };
            // When it was observed, in leader ticks as the probing node had applied them.
            let tick = match r.observed_tick {
                0 => self.tick,
                t => t.min(self.tick),
            };
            if cs
                .sites
                .get(site)
                .is_some_and(|known| tick < known.last_tick)
            {
                // Older than what this site already reported: a batch that arrived late.
                return false;
            }
            let st = cs
                .sites
                .entry(site.to_string())
                .or_insert_with(|| SiteState {
                    consecutive_fail: 0,
                    consecutive_ok: 0,
                    last: r.clone(),
                    last_tick: tick,
                    last_index: index,
                    fail_since_index: None,
                    fail_since_ms: None,
                    history: StatusHistory::default(),
                    flapping: false,
                });
            st.history.push(r.status);
            if r.status.is_ok() {
                st.consecutive_ok = st.consecutive_ok.saturating_add(1);
                st.consecutive_fail = 0;
                st.fail_since_index = None;
                st.fail_since_ms = None;
            } else {
                st.consecutive_fail = st.consecutive_fail.saturating_add(1);
                st.consecutive_ok = 0;
                st.fail_since_index.get_or_insert(index);
                st.fail_since_ms.get_or_insert(r.observed_at_ms);
            }
            st.last = r.clone();
            st.last_tick = tick;
            st.last_index = index;
        }
        true
    }

    /// Where `name`'s spec is in `catalog.checks`. The position is set with every catalog;
    /// the scan is for a state that has none.
    fn spec_position(&self, name: &str) -> Option<usize> {
        self.checks
            .get(name)
            .map(|c| c.position)
            .filter(|p| self.catalog.checks.get(*p).is_some_and(|s| s.name == name))
            .or_else(|| self.catalog.checks.iter().position(|c| c.name == name))
    }

    /// Runs the rule for one check. Called for every check at every tick, so it borrows the
    /// spec from the catalog and clones it only when a transition needs it afterwards.
    fn evaluate(&mut self, index: u64, name: &str, probing: &BTreeSet<String>) {
        let Some(position) = self.spec_position(name) else {
            return;
        };
        let mut holds = self.holds(&self.catalog.checks[position]);
        let tick = self.tick;
        let spec = &self.catalog.checks[position];
        // An agent check has one observer, the host itself: its quorum is that one site.
        let agent_site;
        let probing = match &spec.probe {
            ProbeSpec::Agent(a) => {
                agent_site = BTreeSet::from([crate::agent::site_of(&a.agent)]);
                &agent_site
            }
            _ => probing,
        };
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
        let eval = rule::evaluate_after(
            spec,
            probing.len(),
            &counters,
            tick,
            cs.open_incident.is_some(),
            self.last_jump,
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
        // Flapping: each site's view (with hysteresis), then the check's when at least the
        // required number of fresh sites agree, so one site's flapping path pages no one.
        for s in cs.sites.values_mut() {
            s.flapping = rule::site_flapping(
                s.flapping,
                &s.history,
                spec.flap.high_pct,
                spec.flap.low_pct,
            );
        }
        let flapping_sites: Vec<u32> = eval
            .fresh
            .iter()
            .filter_map(|site| cs.sites.get(site))
            .filter(|s| s.flapping)
            .map(|s| s.history.percent_change_tenths())
            .collect();
        let flapping_now =
            u32::try_from(flapping_sites.len()).unwrap_or(u32::MAX) >= eval.required.max(1);
        let mut flap_change = None;
        match (cs.flapping, flapping_now) {
            (None, true) => {
                let alert_id = self.next_alert_id + 1;
                self.next_alert_id = alert_id;
                cs.flapping = Some(alert_id);
                let percent_tenths = flapping_sites.iter().copied().max().unwrap_or(0);
                flap_change = Some((alert_id, percent_tenths, Transition::Firing));
            }
            (Some(alert_id), false) => {
                cs.flapping = None;
                flap_change = Some((alert_id, 0, Transition::Resolved));
            }
            _ => {}
        }
        holds.flapping = flapping_now;
        let silenced_by = holds.silence;
        let wall_ms = self.wall_ms;
        let mut transition = None;
        let eval_changed_incidents = eval.open.is_some() || eval.close.is_some();
        if let Some(open) = &eval.open {
            let id = self.next_incident_id + 1;
            self.next_incident_id = id;
            let opened_by = evidence(&open.sites, cs);
            let opened_at_ms = opened_by
                .iter()
                .map(|e| e.last.observed_at_ms)
                .max()
                .unwrap_or(0);
            let first_failure_ms = open
                .sites
                .iter()
                .filter_map(|site| cs.sites.get(site).and_then(|s| s.fail_since_ms))
                .min();
            let time_to_detect_ms = first_failure_ms
                .filter(|_| opened_at_ms > 0)
                .map(|first| opened_at_ms.saturating_sub(first));
            let sites: Vec<String> = open.sites.iter().cloned().collect();
            let mut incident = Incident {
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
                notified: false,
                silenced_by,
                silenced: silenced_by.is_some(),
                suppressed_by: holds.parent.clone(),
                ack: None,
                parent_hold: holds.parent.clone(),
                time_to_detect_ms,
                duration_ms: None,
                timeline: Vec::new(),
                timeline_dropped: 0,
            };
            incident.record(
                index,
                wall_ms,
                Event::Opened {
                    severity: open.severity,
                    sites,
                },
            );
            if let Some(silence_id) = silenced_by {
                incident.record(index, wall_ms, Event::Silenced { silence_id });
            }
            if let Some(parent) = &holds.parent {
                incident.record(
                    index,
                    wall_ms,
                    Event::Suppressed {
                        parent: parent.clone(),
                    },
                );
            }
            self.incidents.insert(id, incident);
            cs.open_incident = Some(id);
            if let Some(runbook) = &spec.recovery {
                self.runs.insert(
                    id,
                    RunbookRun {
                        runbook: runbook.clone(),
                        next_step: 0,
                        active: None,
                        finished: false,
                    },
                );
            }
            let t = rule::notification(Moment::Opened, &holds, false);
            if let (Some(t), Some(inc)) = (t, self.incidents.get_mut(&id)) {
                inc.notified = true;
                transition = Some((id, t));
            }
        } else if let (Some(close), Some(id)) = (&eval.close, cs.open_incident) {
            cs.recovered_tick = Some(tick);
            let closed_by = evidence(&close.sites, cs);
            if let Some(inc) = self.incidents.get_mut(&id) {
                inc.closed_index = Some(index);
                inc.closed_tick = Some(tick);
                inc.closed_at_ms = closed_by.iter().map(|e| e.last.observed_at_ms).max();
                inc.duration_ms = inc
                    .closed_at_ms
                    .filter(|_| inc.opened_at_ms > 0)
                    .map(|closed| closed.saturating_sub(inc.opened_at_ms));
                inc.closed_by = closed_by;
                inc.silenced_by = None;
                inc.parent_hold = None;
                inc.record(
                    index,
                    wall_ms,
                    Event::Closed {
                        sites: close.sites.iter().cloned().collect(),
                        note: None,
                    },
                );
                transition =
                    rule::notification(Moment::Closed, &holds, inc.notified).map(|t| (id, t));
            }
            cs.open_incident = None;
        }
        let open_incident = cs.open_incident;
        cs.eval = eval;
        if transition.is_none() && flap_change.is_none() {
            if eval_changed_incidents {
                self.trim();
            }
            return;
        }
        let spec = spec.clone();
        if let Some((incident_id, t)) = transition {
            self.notify(index, &spec, incident_id, t);
        }
        if let Some((alert_id, percent_tenths, t)) = flap_change {
            let kind = IntentKind::Flapping {
                alert_id,
                percent_tenths,
            };
            self.emit(index, &spec.notify, &spec.name, 0, kind, t);
            let event = match t {
                Transition::Firing => Event::FlappingStarted { alert_id },
                Transition::Resolved => Event::FlappingStopped { alert_id },
            };
            if let Some(inc) = open_incident.and_then(|id| self.incidents.get_mut(&id)) {
                inc.record(index, wall_ms, event);
            }
        }
        if eval_changed_incidents {
            self.trim();
        }
    }

    /// Creates the intents of transition `t` and records them on the incident's timeline.
    fn notify(&mut self, index: u64, spec: &CheckSpec, incident_id: u64, t: Transition) {
        let notifiers = self.emit_intents(index, spec, incident_id, t);
        let at_ms = self.wall_ms;
        if let Some(inc) = self.incidents.get_mut(&incident_id) {
            inc.record(
                index,
                at_ms,
                Event::Notifying {
                    transition: t,
                    notifiers,
                },
            );
        }
    }

    /// Creates one incident intent per notifier of `spec` that exists; returns their names.
    fn emit_intents(
        &mut self,
        index: u64,
        spec: &CheckSpec,
        incident_id: u64,
        t: Transition,
    ) -> Vec<String> {
        self.emit(
            index,
            &spec.notify,
            &spec.name,
            incident_id,
            IntentKind::Incident,
            t,
        )
    }

    /// Creates one intent of `kind` per named notifier that exists; returns their names.
    pub(crate) fn emit(
        &mut self,
        index: u64,
        notify: &[String],
        check: &str,
        incident_id: u64,
        kind: IntentKind,
        t: Transition,
    ) -> Vec<String> {
        let subject = match &kind {
            IntentKind::Incident => format!("incident-{incident_id}"),
            IntentKind::Flapping { alert_id, .. } => format!("flapping-{alert_id}"),
            IntentKind::SiteDegraded { alert_id, .. } => format!("site-degraded-{alert_id}"),
            IntentKind::SiteSilent { alert_id, .. } => format!("site-silent-{alert_id}"),
            IntentKind::RecoveryFailed { .. } => format!("recovery-failed-{incident_id}"),
        };
        let mut sent = Vec::new();
        for channel in notify {
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
                    check: check.to_string(),
                    notifier: channel.clone(),
                    transition: t,
                    dedup_key: format!("{subject}/{}/{channel}", t.as_str()),
                    created_index: index,
                    attempts: 0,
                    outcome: None,
                    kind: kind.clone(),
                },
            );
            sent.push(channel.clone());
        }
        sent
    }

    fn apply_outcome(&mut self, index: u64, outcome: &NotifyOutcome) -> CommandResponse {
        let Some(intent) = self.intents.get_mut(&outcome.intent_id) else {
            return CommandResponse::Rejected(format!("unknown intent {}", outcome.intent_id));
        };
        if intent.outcome.is_some() {
            // A second leader's report for a settled intent changes nothing.
            return CommandResponse::Ok;
        }
        // The outcome counts every attempt, so attempts recorded before it are not added
        // twice. (Before `NotifyAttempt` existed the stored count was 0 here: old logs
        // replay to the same state.)
        intent.attempts = intent.attempts.max(outcome.attempts);
        intent.outcome = Some(outcome.delivery.clone());
        let event = Event::Notified {
            intent_id: intent.id,
            notifier: intent.notifier.clone(),
            transition: intent.transition,
            attempts: intent.attempts,
            delivery: outcome.delivery.clone(),
        };
        let (incident_id, at_ms) = (intent.incident_id, self.wall_ms);
        if let Some(inc) = self.incidents.get_mut(&incident_id) {
            inc.record(index, at_ms, event);
        }
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
        self.apply_command_at(log_id.leader_id.term, log_id.index, data)
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

/// Each check's `depends_on` depth (0: no parents), in catalog order.
///
/// # Errors
/// When a check names an unknown parent or the dependencies form a cycle (the checks file
/// validation reports these with positions; this guards the replicated command).
fn dependency_depths(checks: &[CheckSpec]) -> Result<Vec<u32>, String> {
    let position: BTreeMap<&str, usize> = checks
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); checks.len()];
    let mut waiting: Vec<usize> = vec![0; checks.len()];
    for (i, c) in checks.iter().enumerate() {
        for p in &c.depends_on {
            let Some(&pi) = position.get(p.as_str()) else {
                return Err(format!("check {:?} depends on unknown check {p:?}", c.name));
            };
            children[pi].push(i);
            waiting[i] += 1;
        }
    }
    // Kahn's algorithm: a check's depth is known once all its parents' are.
    let mut depth = vec![0u32; checks.len()];
    let mut ready: std::collections::VecDeque<usize> =
        (0..checks.len()).filter(|i| waiting[*i] == 0).collect();
    let mut done = 0;
    while let Some(i) = ready.pop_front() {
        done += 1;
        for &child in &children[i] {
            depth[child] = depth[child].max(depth[i] + 1);
            waiting[child] -= 1;
            if waiting[child] == 0 {
                ready.push_back(child);
            }
        }
    }
    if done < checks.len() {
        return Err("the checks' depends_on form a cycle".into());
    }
    Ok(depth)
}

/// Convenience for readers: whether an intent settled as delivered.
pub fn delivered(intent: &NotifyIntent) -> bool {
    matches!(intent.outcome, Some(Delivery::Delivered { .. }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{NotifierKind, NotifierSpec, Reason, TIMELINE_EVENTS_MAX};

    const WALL_START_MS: u64 = 1_763_740_000_000;

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
        /// The leader's wall clock: one second per tick.
        wall_ms: u64,
    }

    impl World {
        fn new() -> Self {
            let mut check = CheckSpec::for_test("web");
            check.interval_ms = 1_000;
            check.labels.insert("team".into(), "infra".into());
            Self::with_checks(vec![check])
        }

        fn with_checks(checks: Vec<CheckSpec>) -> Self {
            let st = ClusterState {
                members: BTreeMap::from([
                    (1, member("site-a", true)),
                    (2, member("site-b", true)),
                    (3, member("site-c", false)),
                ]),
                ..ClusterState::default()
            };
            let mut w = World {
                st,
                index: 0,
                wall_ms: WALL_START_MS,
            };
            let notifier = |name: &str| NotifierSpec {
                name: name.into(),
                kind: NotifierKind::Webhook {
                    url: "http://127.0.0.1:9/hook".into(),
                },
            };
            let resp = w.cmd(Command::ApplyCatalog(Catalog {
                checks,
                notifiers: vec![notifier("ops"), notifier("pager")],
                operator_notify: vec!["pager".into()],
                runbooks: Vec::new(),
            }));
            assert_eq!(resp, CommandResponse::Ok);
            w
        }

        /// One round: both sites report these statuses in one batch each, then a tick.
        fn round_all(&mut self, statuses: &[(String, Status)]) {
            for (node, site) in [(1, "site-a"), (2, "site-b")] {
                let results = statuses
                    .iter()
                    .map(|(check, status)| ProbeResult::new(check, *status, Reason::None, 1, ""))
                    .collect();
                let resp = self.cmd(Command::Results(ResultBatch {
                    node_id: node,
                    site: site.into(),
                    results,
                }));
                assert_eq!(resp, CommandResponse::Ok);
            }
            self.tick();
        }

        /// (check, transition) of every intent, in order.
        fn sent(&self) -> Vec<(String, Transition)> {
            self.st
                .intents
                .values()
                .map(|i| (i.check.clone(), i.transition))
                .collect()
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
            self.tick();
        }

        fn tick(&mut self) {
            self.wall_ms += 1_000;
            let wall_ms = self.wall_ms;
            self.cmd(Command::Tick {
                leader_id: 1,
                wall_ms,
                advance: 1,
                leader_run: 1,
                leader_mono_ms: 0,
            });
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

    fn attempt(intent_id: u64, attempt: u32, error: Option<&str>) -> Command {
        Command::NotifyAttempt {
            intent_id,
            attempt,
            leader_id: 1,
            term: 3,
            at_ms: WALL_START_MS + u64::from(attempt),
            error: error.map(str::to_string),
        }
    }

    /// The attempts recorded on an incident's timeline: (attempt, error).
    fn attempts(inc: &Incident) -> Vec<(u32, Option<String>)> {
        inc.timeline
            .iter()
            .filter_map(|e| match &e.event {
                Event::NotifyAttempt { attempt, error, .. } => Some((*attempt, error.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn attempts_are_recorded_in_order_until_settled() {
        let mut w = World::new();
        w.rounds(&[(C, C, 3)]);
        let id = w.st.pending_intents().next().map(|i| i.id).unwrap();
        assert_eq!(
            w.cmd(attempt(id, 1, Some("refused\n"))),
            CommandResponse::Ok
        );
        assert_eq!(w.cmd(attempt(id, 2, Some("timeout"))), CommandResponse::Ok);
        assert_eq!(w.st.intents[&id].attempts, 2);
        assert!(
            w.st.intents[&id].outcome.is_none(),
            "an attempt never settles"
        );
        // A late report of an earlier attempt (an old leader) does not lower the count.
        w.cmd(attempt(id, 1, Some("late")));
        assert_eq!(w.st.intents[&id].attempts, 2);
        let inc = &w.st.incidents[&1];
        assert_eq!(
            attempts(inc),
            [
                (1, Some("refused ".to_string())),
                (2, Some("timeout".to_string())),
                (1, Some("late".to_string()))
            ],
            "in commit order, made displayable"
        );
        let last = inc.timeline.last().unwrap();
        assert_eq!(last.at_ms, WALL_START_MS + 1, "the attempt's own time");
        assert!(matches!(
            &last.event,
            Event::NotifyAttempt { intent_id, notifier, transition: Transition::Firing, leader_id: 1, term: 3, .. }
                if *intent_id == id && notifier == "ops"
        ));

        // The outcome counts all attempts: it settles and is not added on top.
        w.cmd(Command::NotifyOutcome(NotifyOutcome {
            intent_id: id,
            attempts: 3,
            delivery: Delivery::Delivered {
                leader_id: 1,
                term: 3,
            },
        }));
        assert_eq!(w.st.intents[&id].attempts, 3);
        let before = w.st.clone();
        assert_eq!(w.cmd(attempt(id, 4, Some("after"))), CommandResponse::Ok);
        assert_eq!(w.st.intents, before.intents, "ignored once settled");
        assert_eq!(w.st.incidents, before.incidents, "ignored once settled");
        assert!(matches!(
            w.cmd(attempt(999_999, 1, None)),
            CommandResponse::Rejected(_)
        ));

        // Bounded: long errors are cut, and the timeline keeps its limit.
        let long = "x".repeat(10 * ATTEMPT_ERROR_BYTES_MAX);
        let mut w = World::new();
        w.rounds(&[(C, C, 3)]);
        let id = w.st.pending_intents().next().map(|i| i.id).unwrap();
        for n in 1..=(TIMELINE_EVENTS_MAX as u32 + 10) {
            w.cmd(attempt(id, n, Some(&long)));
        }
        let inc = &w.st.incidents[&1];
        assert_eq!(inc.timeline.len(), TIMELINE_EVENTS_MAX);
        assert_eq!(kinds(inc)[0], "opened");
        assert!(inc.timeline_dropped > 0);
        let kept = attempts(inc);
        assert_eq!(kept.last().unwrap().0, TIMELINE_EVENTS_MAX as u32 + 10);
        assert!(
            kept.windows(2).all(|p| p[0].0 < p[1].0),
            "oldest dropped first"
        );
        assert!(kept
            .iter()
            .all(|(_, e)| e.as_ref().unwrap().len() <= ATTEMPT_ERROR_BYTES_MAX));
        assert_eq!(w.st.intents[&id].attempts, TIMELINE_EVENTS_MAX as u32 + 10);
    }

    #[test]
    fn operator_alert_attempts_count_on_the_intent_only() {
        let checks: Vec<CheckSpec> = (0..4)
            .map(|i| {
                let mut c = CheckSpec::for_test(&format!("c{i}"));
                c.interval_ms = 1_000;
                c
            })
            .collect();
        let names: Vec<String> = (0..4).map(|i| format!("c{i}")).collect();
        let mut w = World::with_checks(checks);
        for _ in 0..4 {
            for (node, site, status) in [(1, "site-a", C), (2, "site-b", O)] {
                let results = names
                    .iter()
                    .map(|n| ProbeResult::new(n, status, Reason::Timeout, 1, ""))
                    .collect();
                w.cmd(Command::Results(ResultBatch {
                    node_id: node,
                    site: site.into(),
                    results,
                }));
            }
            w.tick();
        }
        let alert = w.st.pending_intents().next().cloned().unwrap();
        assert_eq!(alert.incident_id, 0, "{alert:?}");
        let incidents = w.st.incidents.clone();
        assert_eq!(
            w.cmd(attempt(alert.id, 1, Some("refused"))),
            CommandResponse::Ok
        );
        assert_eq!(w.st.intents[&alert.id].attempts, 1);
        assert_eq!(w.st.incidents, incidents);
    }

    /// Only site-a probes for a while (site-b is silent): a degraded quorum.
    /// (policy, unconfirmed incident opened while degraded)
    #[test]
    fn degraded_quorum_policy() {
        let cases = [
            (crate::model::DegradedPolicy::Alert, Some((1, 2))),
            (crate::model::DegradedPolicy::Hold, None),
        ];
        for (policy, unconfirmed) in cases {
            let mut check = CheckSpec::for_test("web");
            check.interval_ms = 1_000;
            check.degraded = policy;
            let mut w = World::with_checks(vec![check]);
            for _ in 0..10 {
                w.result(1, "site-a", C);
                w.tick();
            }
            let opened = w.st.incidents.values().next().map(|i| i.unconfirmed);
            assert_eq!(opened, unconfirmed.map(Some), "{policy:?}");
            assert_eq!(
                w.st.checks["web"].sites["site-a"].last.status, C,
                "{policy:?}: the site's results are kept and shown"
            );
            // Both sites agree: a full quorum opens (or keeps open) either way.
            w.rounds(&[(C, C, 2)]);
            assert_eq!(w.st.open_incidents().count(), 1, "{policy:?}");
            // site-b goes quiet again; site-a recovers: a degraded close works either way.
            for _ in 0..20 {
                w.result(1, "site-a", O);
                w.tick();
            }
            assert_eq!(w.st.open_incidents().count(), 0, "{policy:?}");
        }
    }

    #[test]
    fn replay_is_identical() {
        let mut a = World::new();
        let mut b = World::new();
        for w in [&mut a, &mut b] {
            w.silence("web", 3, 9);
            w.silence("team=infra", 30, 40);
            w.cmd(Command::RemoveSilence { id: 2 });
            for i in 0..20 {
                let s = if (i / 4) % 2 == 0 {
                    Status::Ok
                } else {
                    Status::Critical
                };
                w.round(s, s);
                if i == 7 {
                    w.cmd(Command::Ack {
                        incident_id: 1,
                        by: "hanako".into(),
                        comment: String::new(),
                    });
                }
                if i == 15 {
                    let id = w.st.pending_intents().next().map(|i| i.id).unwrap();
                    w.cmd(attempt(id, 1, Some("refused")));
                    w.cmd(attempt(id, 2, None));
                }
            }
        }
        let ea = crate::codec::encode(&a.st).unwrap();
        let eb = crate::codec::encode(&b.st).unwrap();
        assert_eq!(ea, eb);
        assert!(a.st.incidents.len() >= 2);
        assert!(a.st.intents.values().any(|i| i.attempts == 2));
    }

    const C: Status = Status::Critical;
    const O: Status = Status::Ok;

    #[test]
    fn results_held_back_by_a_partition_count_from_when_they_were_observed() {
        let mut w = World::new(); // interval 1 s: fresh for 3 + 2 = 5 ticks
        w.round(O, O);
        w.round(O, O);
        // Site-b's node is cut off: it observes web failing at this tick, but its batch
        // cannot commit. Site-a goes on reporting OK, then sees web fail twice.
        let cut_at = w.st.tick;
        for _ in 0..20 {
            w.result(1, "site-a", O);
            w.tick();
        }
        w.result(1, "site-a", C);
        w.tick();
        w.result(1, "site-a", C);
        w.tick();
        // The partition heals and site-b's old batch commits, minutes late.
        let late = |tick, status| {
            let mut r = ProbeResult::new("web", status, Reason::None, 1, "");
            r.observed_tick = tick;
            r
        };
        let resp = w.cmd(Command::Results(ResultBatch {
            node_id: 2,
            site: "site-b".into(),
            results: vec![late(cut_at, C), late(cut_at + 1, C)],
        }));
        assert_eq!(resp, CommandResponse::Ok);
        assert_eq!(
            w.st.open_incidents().count(),
            0,
            "site-b's old failures are not a fresh second vote"
        );
        assert!(!w.st.checks["web"].eval.fresh.contains("site-b"));
        // Its current view arrives next and is fresh; an even older batch after it changes
        // nothing.
        let now = w.st.tick;
        w.cmd(Command::Results(ResultBatch {
            node_id: 2,
            site: "site-b".into(),
            results: vec![late(now, O)],
        }));
        w.cmd(Command::Results(ResultBatch {
            node_id: 2,
            site: "site-b".into(),
            results: vec![late(cut_at + 2, C)],
        }));
        let b = &w.st.checks["web"].sites["site-b"];
        assert_eq!((b.last.status, b.last_tick), (O, now));
        assert_eq!(w.st.open_incidents().count(), 0);
    }

    #[test]
    fn a_tick_after_a_loss_of_quorum_ages_every_result() {
        let mut w = World::new(); // fresh for 5 ticks
        w.round(C, C);
        w.round(O, O);
        assert_eq!(w.st.checks["web"].eval.fresh.len(), 2);
        let before = w.st.tick;
        w.cmd(Command::Tick {
            leader_id: 1,
            wall_ms: w.wall_ms + 90_000,
            advance: 90,
            leader_run: 1,
            leader_mono_ms: 90_000,
        });
        assert_eq!(w.st.tick, before + 90);
        assert!(
            w.st.checks["web"].eval.fresh.is_empty(),
            "results from before are stale"
        );
        assert_eq!(
            (w.st.tick_leader_run, w.st.tick_leader_mono_ms),
            (1, 90_000)
        );
        assert!(
            w.st.site_health.values().all(|h| h.silent.is_none()),
            "no site is silent the moment cluster time jumps: {:?}",
            w.st.site_health
        );
        // Right after the jump only site-a reports, failing: a degraded quorum, but the
        // other sites get one freshness window to report before it may decide.
        for _ in 0..4 {
            w.result(1, "site-a", C);
            w.tick();
        }
        assert_eq!(
            w.st.open_incidents().count(),
            0,
            "degraded decision right after a jump"
        );
        for _ in 0..4 {
            w.result(1, "site-a", C);
            w.tick();
        }
        assert!(
            w.st.open_incidents().any(|i| i.unconfirmed.is_some()),
            "after the window the degraded quorum decides as before"
        );
        // A confused clock cannot move cluster time by more than a day; 0 still counts 1.
        let before = w.st.tick - 90;
        w.cmd(Command::Tick {
            leader_id: 1,
            wall_ms: w.wall_ms,
            advance: u32::MAX,
            leader_run: 1,
            leader_mono_ms: 0,
        });
        assert_eq!(w.st.tick, before + 90 + u64::from(TICK_ADVANCE_MAX));
        let t = w.st.tick;
        w.tick();
        w.cmd(Command::Tick {
            leader_id: 1,
            wall_ms: w.wall_ms,
            advance: 0,
            leader_run: 1,
            leader_mono_ms: 0,
        });
        assert_eq!(w.st.tick, t + 2);
    }

    #[test]
    fn a_backup_restores_into_a_fresh_cluster_only() {
        let mut old = World::new();
        old.round(O, O);
        // One closed incident, then one still open when the backup is taken.
        for _ in 0..2 {
            old.round(C, C);
        }
        old.round(O, O);
        old.round(O, O);
        for _ in 0..2 {
            old.round(C, C);
        }
        assert_eq!(old.silence("web*", 0, 3_600), CommandResponse::Created(1));
        assert_eq!(
            (old.st.incidents.len(), old.st.open_incidents().count()),
            (2, 1)
        );
        let backup = old.st.backup();

        // Through the codec, as it travels in the raft log.
        let cmd = Command::Restore(Box::new(backup.clone()));
        let bytes = crate::codec::encode(&cmd).unwrap();
        assert_eq!(crate::codec::decode::<Command>(&bytes).unwrap(), cmd);

        let mut fresh = World {
            st: ClusterState {
                members: old.st.members.clone(),
                ..ClusterState::default()
            },
            index: 0,
            wall_ms: WALL_START_MS,
        };
        fresh.tick();
        assert_eq!(fresh.cmd(cmd.clone()), CommandResponse::Ok);
        assert_eq!(fresh.st.catalog, old.st.catalog);
        assert_eq!(fresh.st.silences, old.st.silences);
        assert_eq!(fresh.st.incidents.len(), 2);
        assert_eq!(
            fresh.st.open_incidents().count(),
            0,
            "restored open incidents are closed"
        );
        let reopened = &fresh.st.incidents[&2];
        assert_eq!(
            reopened.close_note.as_deref(),
            Some(crate::backup::RESTORE_CLOSE_NOTE)
        );
        assert!(fresh.st.intents.is_empty(), "nothing is re-sent");
        assert!(fresh.st.checks.contains_key("web"));

        // The restored cluster judges afresh: a new outage gets a new id.
        for _ in 0..3 {
            fresh.round(C, C);
        }
        let open: Vec<u64> = fresh.st.open_incidents().map(|i| i.id).collect();
        assert_eq!(open, vec![3]);

        // A second restore, or one into a cluster with a catalog, is refused.
        assert!(matches!(
            fresh.cmd(cmd.clone()),
            CommandResponse::Rejected(_)
        ));
        let mut configured = World::new();
        assert!(matches!(configured.cmd(cmd), CommandResponse::Rejected(_)));
    }

    impl World {
        fn silence(&mut self, matcher: &str, start_s: u64, end_s: u64) -> CommandResponse {
            self.cmd(Command::AddSilence(SilenceSpec {
                matcher: crate::model::Matcher::parse(matcher).unwrap(),
                start_ms: WALL_START_MS + start_s * 1_000,
                end_ms: WALL_START_MS + end_s * 1_000,
                reason: "maintenance".into(),
            }))
        }

        fn rounds(&mut self, rounds: &[(Status, Status, usize)]) {
            for &(a, b, n) in rounds {
                for _ in 0..n {
                    self.round(a, b);
                }
            }
        }

        fn transitions(&self) -> Vec<Transition> {
            self.st.intents.values().map(|i| i.transition).collect()
        }
    }

    /// A silence scenario: a silence over `web` (labelled team=infra), then rounds of
    /// (site-a, site-b, repeat) results, one tick (one second) per round.
    struct SilenceCase {
        name: &'static str,
        matcher: &'static str,
        /// Window in seconds after the start of the scenario.
        window_s: (u64, u64),
        rounds: &'static [(Status, Status, usize)],
        incidents: usize,
        silenced: bool,
        intents: &'static [Transition],
    }

    #[test]
    fn silence_table() {
        use Transition::{Firing, Resolved};
        let outage: &[(Status, Status, usize)] = &[(O, O, 1), (C, C, 3), (O, O, 3)];
        let long_outage: &[(Status, Status, usize)] = &[(O, O, 1), (C, C, 8), (O, O, 3)];
        let cases = [
            SilenceCase {
                name: "silence over an outage: one incident recorded, zero intents",
                matcher: "web",
                window_s: (0, 60),
                rounds: outage,
                incidents: 1,
                silenced: true,
                intents: &[],
            },
            SilenceCase {
                name: "silence ends with the incident open: one firing then, resolved later",
                matcher: "web",
                window_s: (0, 5),
                rounds: long_outage,
                incidents: 1,
                silenced: true,
                intents: &[Firing, Resolved],
            },
            SilenceCase {
                name: "a glob matches",
                matcher: "w?b*",
                window_s: (0, 60),
                rounds: outage,
                incidents: 1,
                silenced: true,
                intents: &[],
            },
            SilenceCase {
                name: "a matching label",
                matcher: "team=infra",
                window_s: (0, 60),
                rounds: outage,
                incidents: 1,
                silenced: true,
                intents: &[],
            },
            SilenceCase {
                name: "another label does not hold",
                matcher: "team=db",
                window_s: (0, 60),
                rounds: outage,
                incidents: 1,
                silenced: false,
                intents: &[Firing, Resolved],
            },
            SilenceCase {
                name: "a scheduled silence does not hold before it starts",
                matcher: "web",
                window_s: (100, 200),
                rounds: outage,
                incidents: 1,
                silenced: false,
                intents: &[Firing, Resolved],
            },
            SilenceCase {
                name: "a silence that begins after the page: the resolve still goes out",
                matcher: "web",
                window_s: (4, 60),
                rounds: long_outage,
                incidents: 1,
                silenced: true,
                intents: &[Firing, Resolved],
            },
        ];
        for case in &cases {
            let mut w = World::new();
            let resp = w.silence(case.matcher, case.window_s.0, case.window_s.1);
            assert_eq!(resp, CommandResponse::Created(1), "{}", case.name);
            w.rounds(case.rounds);
            assert_eq!(w.st.incidents.len(), case.incidents, "{}", case.name);
            assert_eq!(w.st.open_incidents().count(), 0, "{}", case.name);
            assert_eq!(w.st.incidents[&1].silenced, case.silenced, "{}", case.name);
            assert_eq!(w.transitions(), case.intents, "{}", case.name);
        }
    }

    #[test]
    fn removing_a_silence_releases_the_firing_at_the_next_tick() {
        let mut w = World::new();
        w.silence("web", 0, 3_600);
        w.rounds(&[(C, C, 3)]);
        assert_eq!(w.st.open_incidents().count(), 1);
        assert_eq!(w.st.incidents[&1].silenced_by, Some(1));
        assert!(w.st.intents.is_empty());
        assert_eq!(w.cmd(Command::RemoveSilence { id: 1 }), CommandResponse::Ok);
        assert!(w.st.checks["web"].silenced_by.is_none());
        w.tick();
        assert_eq!(w.transitions(), vec![Transition::Firing]);
        assert_eq!(w.st.incidents[&1].silenced_by, None);
        assert!(
            w.st.incidents[&1].silenced,
            "the flag stays: it was silenced"
        );
        w.tick();
        assert_eq!(w.st.intents.len(), 1, "fired once");
        assert!(matches!(
            w.cmd(Command::RemoveSilence { id: 1 }),
            CommandResponse::Rejected(_)
        ));
    }

    #[test]
    fn silences_are_validated_pruned_and_bounded() {
        let mut w = World::new();
        w.tick();
        // Ends before the cluster's current time (the leader's last tick).
        assert!(matches!(
            w.silence("web", 0, 1),
            CommandResponse::Rejected(_)
        ));
        assert!(matches!(
            w.silence("web", 9, 5),
            CommandResponse::Rejected(_)
        ));
        assert_eq!(w.silence("web", 0, 3), CommandResponse::Created(1));
        w.tick();
        w.tick();
        assert_eq!(
            w.st.silences.len(),
            0,
            "ended silences are pruned at a tick"
        );
        for i in 0..SILENCES_MAX {
            let resp = w.silence("web", 0, 100);
            assert_eq!(resp, CommandResponse::Created(2 + i as u64));
        }
        assert!(matches!(
            w.silence("web", 0, 100),
            CommandResponse::Rejected(_)
        ));
        assert_eq!(w.st.silences.len(), SILENCES_MAX);
    }

    /// `host` and ten children `web0`..`web9` that depend on it. Rounds give (host status,
    /// children's status, repeat), the same at both sites.
    struct DependencyCase {
        name: &'static str,
        rounds: &'static [(Status, Status, usize)],
        sent: &'static [(&'static str, Transition)],
        suppressed: usize,
    }

    #[test]
    fn dependency_table() {
        use Transition::{Firing, Resolved};
        let cases = [
            DependencyCase {
                name: "dead parent with 10 children: one page, one resolve",
                rounds: &[(O, O, 1), (C, C, 4), (O, O, 3)],
                sent: &[("host", Firing), ("host", Resolved)],
                suppressed: 10,
            },
            DependencyCase {
                name: "children down while the parent is fine: each pages",
                rounds: &[(O, O, 1), (O, C, 3), (O, O, 3)],
                sent: &[
                    ("web0", Firing),
                    ("web1", Firing),
                    ("web2", Firing),
                    ("web3", Firing),
                    ("web4", Firing),
                    ("web5", Firing),
                    ("web6", Firing),
                    ("web7", Firing),
                    ("web8", Firing),
                    ("web9", Firing),
                    ("web0", Resolved),
                    ("web1", Resolved),
                    ("web2", Resolved),
                    ("web3", Resolved),
                    ("web4", Resolved),
                    ("web5", Resolved),
                    ("web6", Resolved),
                    ("web7", Resolved),
                    ("web8", Resolved),
                    ("web9", Resolved),
                ],
                suppressed: 0,
            },
            DependencyCase {
                // Children are probed on their own schedule: they recover a moment after
                // the parent, within the grace window, and page nobody.
                name: "children recovering just after the parent: one page, one resolve",
                rounds: &[(O, O, 1), (C, C, 4), (O, C, 3), (O, O, 3)],
                sent: &[("host", Firing), ("host", Resolved)],
                suppressed: 10,
            },
            DependencyCase {
                name: "children still down past the grace window after the parent: they page then",
                rounds: &[(O, O, 1), (C, C, 4), (O, C, 10), (O, O, 3)],
                sent: &[
                    ("host", Firing),
                    ("host", Resolved),
                    ("web0", Firing),
                    ("web1", Firing),
                    ("web2", Firing),
                    ("web3", Firing),
                    ("web4", Firing),
                    ("web5", Firing),
                    ("web6", Firing),
                    ("web7", Firing),
                    ("web8", Firing),
                    ("web9", Firing),
                    ("web0", Resolved),
                    ("web1", Resolved),
                    ("web2", Resolved),
                    ("web3", Resolved),
                    ("web4", Resolved),
                    ("web5", Resolved),
                    ("web6", Resolved),
                    ("web7", Resolved),
                    ("web8", Resolved),
                    ("web9", Resolved),
                ],
                suppressed: 10,
            },
        ];
        let children: Vec<String> = (0..10).map(|i| format!("web{i}")).collect();
        for case in &cases {
            // Children first in the catalog: evaluation order must still be parents first.
            let mut checks: Vec<CheckSpec> = children
                .iter()
                .map(|name| {
                    let mut c = CheckSpec::for_test(name);
                    c.interval_ms = 1_000;
                    c.depends_on = vec!["host".into()];
                    c
                })
                .collect();
            let mut host = CheckSpec::for_test("host");
            host.interval_ms = 1_000;
            checks.push(host);
            let mut w = World::with_checks(checks);
            for &(h, c, n) in case.rounds {
                let mut statuses = vec![("host".to_string(), h)];
                statuses.extend(children.iter().map(|name| (name.clone(), c)));
                for _ in 0..n {
                    w.round_all(&statuses);
                }
            }
            let want: Vec<(String, Transition)> =
                case.sent.iter().map(|(c, t)| (c.to_string(), *t)).collect();
            assert_eq!(w.sent(), want, "{}", case.name);
            assert_eq!(w.st.open_incidents().count(), 0, "{}", case.name);
            let suppressed =
                w.st.incidents
                    .values()
                    .filter(|i| i.suppressed_by.as_deref() == Some("host"))
                    .count();
            assert_eq!(suppressed, case.suppressed, "{}", case.name);
        }
    }

    #[test]
    fn catalogs_with_bad_dependencies_are_rejected() {
        let mut w = World::new();
        let dep = |name: &str, parent: &str| {
            let mut c = CheckSpec::for_test(name);
            c.depends_on = vec![parent.into()];
            c
        };
        for checks in [
            vec![dep("a", "nope")],
            vec![dep("a", "b"), dep("b", "a")],
            vec![dep("a", "a")],
        ] {
            let resp = w.cmd(Command::ApplyCatalog(Catalog {
                checks,
                ..Catalog::default()
            }));
            assert!(matches!(resp, CommandResponse::Rejected(_)), "{resp:?}");
        }
        assert_eq!(w.st.eval_order, vec!["web".to_string()], "unchanged");
    }

    #[test]
    fn acknowledgements() {
        let mut w = World::new();
        let ack = |incident_id, by: &str| Command::Ack {
            incident_id,
            by: by.into(),
            comment: "on it\u{202E}".into(),
        };
        assert!(matches!(
            w.cmd(ack(1, "hanako")),
            CommandResponse::Rejected(_)
        ));
        w.rounds(&[(C, C, 3)]);
        let intents = w.st.intents.len();
        // (who, accepted, kept as)
        let table = [
            ("", false, None),
            ("  ", false, None),
            ("hanako", true, Some("hanako")),
        ];
        for (by, ok, kept) in table {
            let resp = w.cmd(ack(1, by));
            assert_eq!(resp == CommandResponse::Ok, ok, "{by:?}: {resp:?}");
            assert_eq!(w.st.incidents[&1].ack.as_ref().map(|a| a.by.as_str()), kept);
        }
        let a = w.st.incidents[&1].ack.clone().unwrap();
        assert_eq!(a.comment, "on it", "made displayable");
        assert_eq!(a.at_ms, w.wall_ms);
        assert_eq!(w.st.intents.len(), intents, "an ack sends nothing");
        w.rounds(&[(O, O, 2)]);
        assert!(matches!(
            w.cmd(ack(1, "taro")),
            CommandResponse::Rejected(_)
        ));
    }

    /// The timeline's events, by kind name, for comparison.
    fn kinds(inc: &Incident) -> Vec<&'static str> {
        inc.timeline
            .iter()
            .map(|e| match &e.event {
                Event::Opened { .. } => "opened",
                Event::Silenced { .. } => "silenced",
                Event::Unsilenced { .. } => "unsilenced",
                Event::Suppressed { .. } => "suppressed",
                Event::Unsuppressed { .. } => "unsuppressed",
                Event::Notifying { .. } => "notifying",
                Event::Notified { .. } => "notified",
                Event::Acknowledged { .. } => "acknowledged",
                Event::Closed { .. } => "closed",
                Event::FlappingStarted { .. } => "flapping_started",
                Event::FlappingStopped { .. } => "flapping_stopped",
                Event::NotifyAttempt { .. } => "attempt",
                Event::RecoveryStep { .. } => "recovery_step",
                Event::RecoveryDispatched { .. } => "recovery_dispatched",
                Event::RecoveryOutcome { .. } => "recovery_outcome",
                Event::RecoveryFinished { .. } => "recovery_finished",
            })
            .collect()
    }

    #[test]
    fn timelines() {
        // A plain outage, acknowledged, with the firing delivered.
        let mut w = World::new();
        w.round(O, O);
        for n in 0..3 {
            for (node, site) in [(1, "site-a"), (2, "site-b")] {
                let mut r = ProbeResult::new("web", C, Reason::Refused, 1, "refused");
                r.observed_at_ms = 10_000 + n * 1_000;
                w.cmd(Command::Results(ResultBatch {
                    node_id: node,
                    site: site.into(),
                    results: vec![r],
                }));
            }
            w.tick();
        }
        w.cmd(Command::Ack {
            incident_id: 1,
            by: "hanako".into(),
            comment: String::new(),
        });
        w.cmd(Command::NotifyOutcome(NotifyOutcome {
            intent_id: 1,
            attempts: 2,
            delivery: Delivery::Delivered {
                leader_id: 1,
                term: 1,
            },
        }));
        for _ in 0..2 {
            for (node, site) in [(1, "site-a"), (2, "site-b")] {
                let mut r = ProbeResult::new("web", O, Reason::None, 1, "");
                r.observed_at_ms = 20_000;
                w.cmd(Command::Results(ResultBatch {
                    node_id: node,
                    site: site.into(),
                    results: vec![r],
                }));
            }
            w.tick();
        }
        let inc = &w.st.incidents[&1];
        assert_eq!(
            kinds(inc),
            [
                "opened",
                "notifying",
                "acknowledged",
                "notified",
                "closed",
                "notifying"
            ]
        );
        assert_eq!(
            inc.time_to_detect_ms,
            Some(1_000),
            "first failure 10 s, confirmed 11 s"
        );
        assert_eq!(inc.duration_ms, Some(9_000));
        assert!(matches!(
            &inc.timeline[3].event,
            Event::Notified {
                attempts: 2,
                delivery: Delivery::Delivered { .. },
                ..
            }
        ));

        // Silenced, released when the silence ends; suppressed, released by the parent.
        let mut w = World::new();
        w.silence("web", 0, 4);
        w.rounds(&[(C, C, 5), (O, O, 2)]);
        assert_eq!(
            kinds(&w.st.incidents[&1]),
            [
                "opened",
                "silenced",
                "unsilenced",
                "notifying",
                "closed",
                "notifying"
            ]
        );
        let mut child = CheckSpec::for_test("web");
        child.interval_ms = 1_000;
        child.depends_on = vec!["host".into()];
        let mut host = CheckSpec::for_test("host");
        host.interval_ms = 1_000;
        let mut w = World::with_checks(vec![host, child]);
        let all = |h, c| vec![("host".to_string(), h), ("web".to_string(), c)];
        // The child stays down past the grace window after its parent recovered.
        for (h, c, n) in [(C, C, 3), (O, C, 10), (O, O, 2)] {
            for _ in 0..n {
                w.round_all(&all(h, c));
            }
        }
        let web = w.st.incidents.values().find(|i| i.check == "web").unwrap();
        assert_eq!(
            kinds(web),
            [
                "opened",
                "suppressed",
                "unsuppressed",
                "notifying",
                "closed",
                "notifying"
            ]
        );

        // Bounded: the opening stays, the rest rolls.
        let mut w = World::new();
        w.rounds(&[(C, C, 2)]);
        for i in 0..(TIMELINE_EVENTS_MAX + 10) {
            w.cmd(Command::Ack {
                incident_id: 1,
                by: format!("op{i}"),
                comment: String::new(),
            });
        }
        let inc = &w.st.incidents[&1];
        assert_eq!(inc.timeline.len(), TIMELINE_EVENTS_MAX);
        assert_eq!(kinds(inc)[0], "opened");
        assert_eq!(inc.timeline_dropped, 12);
    }

    /// A target that fails for two rounds and recovers for two, over and over, then
    /// steadies. (flap thresholds, cycles, expected flapping started/stopped intents, whether
    /// every incident paged).
    #[test]
    fn flapping_table() {
        let cases = [
            (
                "flapping target: one started, one stopped",
                50,
                25,
                12,
                1,
                1,
                false,
            ),
            ("detection off: every flap pages", 0, 0, 12, 0, 0, true),
            ("too few flaps to cross the bar", 50, 25, 3, 0, 0, true),
        ];
        for (name, high, low, cycles, started, stopped, all_paged) in cases {
            let mut check = CheckSpec::for_test("web");
            check.interval_ms = 1_000;
            check.flap = crate::model::Flap {
                high_pct: high,
                low_pct: low,
            };
            let mut w = World::with_checks(vec![check]);
            for _ in 0..cycles {
                w.rounds(&[(C, C, 2), (O, O, 2)]);
            }
            w.rounds(&[(O, O, 25)]);
            let flapping = |t| {
                w.st.intents
                    .values()
                    .filter(|i| matches!(i.kind, IntentKind::Flapping { .. }) && i.transition == t)
                    .count()
            };
            assert_eq!(flapping(Transition::Firing), started, "{name}: started");
            assert_eq!(flapping(Transition::Resolved), stopped, "{name}: stopped");
            let paged = w.st.incidents.values().filter(|i| i.notified).count();
            assert_eq!(
                paged == w.st.incidents.len(),
                all_paged,
                "{name}: {paged} paged"
            );
            assert!(
                w.st.incidents.len() >= cycles as usize,
                "{name}: every flap recorded"
            );
            assert!(
                w.st.checks["web"].flapping.is_none(),
                "{name}: steady at the end"
            );
            // No incident pages between flapping started and stopped.
            let ids: Vec<(u64, bool)> =
                w.st.intents
                    .values()
                    .map(|i| (i.id, matches!(i.kind, IntentKind::Flapping { .. })))
                    .collect();
            if let (Some(start), Some(stop)) = (
                ids.iter().position(|(_, f)| *f),
                ids.iter().rposition(|(_, f)| *f),
            ) {
                let firing_between =
                    w.st.intents
                        .values()
                        .skip(start + 1)
                        .take(stop - start)
                        .filter(|i| {
                            i.kind == IntentKind::Incident && i.transition == Transition::Firing
                        });
                assert_eq!(firing_between.count(), 0, "{name}");
                let key = &w.st.intents.values().nth(start).unwrap().dedup_key;
                assert_eq!(key, "flapping-1/firing/ops", "{name}");
            }
        }
    }

    /// Four checks; site-a's path breaks, then site-b goes quiet. Operator alerts go to
    /// `pager` (the `[operator]` notifier) only, once per episode.
    #[test]
    fn operator_alerts() {
        let checks: Vec<CheckSpec> = (0..4)
            .map(|i| {
                let mut c = CheckSpec::for_test(&format!("c{i}"));
                c.interval_ms = 1_000;
                c
            })
            .collect();
        let mut w = World::with_checks(checks);
        let names: Vec<String> = (0..4).map(|i| format!("c{i}")).collect();
        let batch = |w: &mut World, node: u64, site: &str, status: Status| {
            let results = names
                .iter()
                .map(|n| ProbeResult::new(n, status, Reason::Timeout, 1, ""))
                .collect();
            let resp = w.cmd(Command::Results(ResultBatch {
                node_id: node,
                site: site.into(),
                results,
            }));
            assert_eq!(resp, CommandResponse::Ok);
        };
        let alerts = |w: &World| -> Vec<(String, String, Transition)> {
            w.st.intents
                .values()
                .filter(|i| i.kind != IntentKind::Incident)
                .map(|i| (i.notifier.clone(), i.dedup_key.clone(), i.transition))
                .collect()
        };
        // site-a fails everything while site-b sees it fine: path suspect on 4 of 4.
        for _ in 0..4 {
            batch(&mut w, 1, "site-a", C);
            batch(&mut w, 2, "site-b", O);
            w.tick();
        }
        assert_eq!(w.st.incidents.len(), 0, "a broken path is not an outage");
        assert_eq!(
            alerts(&w),
            vec![(
                "pager".into(),
                "site-degraded-1/firing/pager".into(),
                Transition::Firing
            )]
        );
        for _ in 0..3 {
            batch(&mut w, 1, "site-a", O);
            batch(&mut w, 2, "site-b", O);
            w.tick();
        }
        assert_eq!(alerts(&w).len(), 2);
        assert_eq!(alerts(&w)[1].1, "site-degraded-1/resolved/pager");
        assert!(w.st.site_health["site-a"].degraded.is_none());

        // site-b stops reporting: silent once the freshness window (5 ticks) has passed
        // since its last batch (one tick passed already, in the last round).
        for _ in 0..4 {
            batch(&mut w, 1, "site-a", O);
            w.tick();
        }
        assert_eq!(alerts(&w).len(), 2, "within the window");
        for _ in 0..10 {
            batch(&mut w, 1, "site-a", O);
            w.tick();
        }
        assert_eq!(alerts(&w).len(), 3);
        assert_eq!(alerts(&w)[2].1, "site-silent-2/firing/pager");
        assert!(matches!(
            &w.st.intents.values().last().unwrap().kind,
            IntentKind::SiteSilent { site, .. } if site == "site-b"
        ));
        batch(&mut w, 2, "site-b", O);
        w.tick();
        assert_eq!(alerts(&w)[3].1, "site-silent-2/resolved/pager");
        assert!(
            w.st.intents.values().all(|i| i.notifier == "pager"),
            "check notifiers never get operator alerts, and no incident opened"
        );
        assert!(w
            .st
            .intents
            .values()
            .all(|i| i.check.is_empty() && i.incident_id == 0));
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

    mod recovery {
        use super::*;
        use crate::model::{
            ActionOutcome, AgentMetric, AgentSpec, FencingToken, HostReport, MountUsage,
            RunbookSpec, StepAction, StepOutcome, StepSpec, StepState,
        };

        fn step(action: &str, after_s: u64, attempts: u32, verify_s: u64) -> StepSpec {
            StepSpec {
                name: action.into(),
                after_ms: after_s * 1000,
                action: StepAction::Agent {
                    agent: "web1".into(),
                    action: action.into(),
                },
                timeout_ms: 10_000,
                attempts,
                verify_ms: verify_s * 1000,
            }
        }

        /// `web` runs runbook `rb`: restart after 2 s (2 attempts, 3 s to verify), then
        /// reboot.
        fn world() -> World {
            let mut w = World::new();
            let mut catalog = w.st.catalog.clone();
            catalog.checks[0].recovery = Some("rb".into());
            catalog.runbooks = vec![RunbookSpec {
                name: "rb".into(),
                steps: vec![step("restart", 2, 2, 3), step("reboot", 0, 1, 0)],
            }];
            assert_eq!(w.cmd(Command::ApplyCatalog(catalog)), CommandResponse::Ok);
            w
        }

        /// Rounds until an incident opens.
        fn outage(w: &mut World) -> u64 {
            for _ in 0..5 {
                w.round(C, C);
                if let Some(inc) = w.st.open_incidents().next() {
                    return inc.id;
                }
            }
            panic!("no incident opened")
        }

        fn dispatch(w: &mut World, term: u64, id: u64, attempt: u32) -> CommandResponse {
            w.index += 1;
            let cmd = Command::Dispatch {
                intent_id: id,
                attempt,
                leader_id: 1,
            };
            w.st.apply_command_at(term, w.index, &cmd)
        }

        fn outcome(id: u64, attempt: u32, token: FencingToken, o: ActionOutcome) -> Command {
            Command::StepOutcome(StepOutcome {
                intent_id: id,
                attempt,
                token,
                by: "agent web1".into(),
                outcome: o,
            })
        }

        fn ok() -> ActionOutcome {
            ActionOutcome::Succeeded {
                output: String::new(),
                duration_ms: 5,
            }
        }

        fn failed() -> ActionOutcome {
            ActionOutcome::Failed {
                error: "exit status 1".into(),
                output: String::new(),
                duration_ms: 5,
            }
        }

        fn due(w: &World, term: u64) -> Vec<u64> {
            w.st.recoveries_to_dispatch(term)
                .iter()
                .map(|r| r.id)
                .collect()
        }

        #[test]
        fn a_step_runs_after_its_delay_and_verification_ends_the_runbook() {
            let mut w = world();
            let incident = outage(&mut w);
            assert!(w.st.recoveries.is_empty(), "not before `after`");
            w.round(C, C);
            w.round(C, C);
            let id = *w.st.recoveries.keys().next().expect("step 1 is due");
            assert_eq!(due(&w, 1), vec![id]);
            assert!(
                w.st.agent_dispatches("web1").is_empty(),
                "nothing runs undispatched"
            );
            assert_eq!(dispatch(&mut w, 1, id, 1), CommandResponse::Created(id));
            let d = w.st.agent_dispatches("web1");
            assert_eq!(d.len(), 1);
            assert_eq!(d[0].action, "restart");
            let token = d[0].token;
            assert_eq!(
                token,
                FencingToken {
                    term: 1,
                    index: w.index
                }
            );
            assert!(due(&w, 1).is_empty(), "dispatched in this term");
            assert_eq!(due(&w, 2), vec![id], "a new leader resumes it");
            w.cmd(outcome(id, 1, token, ok()));
            assert!(matches!(
                w.st.recoveries[&id].state,
                StepState::Verifying { .. }
            ));
            assert_eq!(
                w.st.checks["web"].reprobe_index, w.index,
                "verify re-probes"
            );
            assert!(w.st.agent_dispatches("web1").is_empty());
            // A repeated outcome changes nothing.
            let before = w.st.recoveries.clone();
            w.cmd(outcome(id, 1, token, failed()));
            assert_eq!(w.st.recoveries, before);
            for _ in 0..3 {
                w.round(O, O);
            }
            assert_eq!(w.st.open_incidents().count(), 0);
            assert!(w.st.runs.is_empty());
            assert!(matches!(
                &w.st.recoveries[&id].state,
                StepState::Done { ok: true, .. }
            ));
            assert_eq!(w.st.recoveries.len(), 1, "the reboot never became due");
            let kinds = kinds(&w.st.incidents[&incident]);
            for k in [
                "recovery_step",
                "recovery_dispatched",
                "recovery_outcome",
                "recovery_finished",
            ] {
                assert!(kinds.contains(&k), "{k} in {kinds:?}");
            }
            assert!(w
                .st
                .intents
                .values()
                .all(|i| !matches!(i.kind, IntentKind::RecoveryFailed { .. })));
        }

        #[test]
        fn failed_steps_retry_then_move_on_and_escalate() {
            let mut w = world();
            let incident = outage(&mut w);
            w.round(C, C);
            w.round(C, C);
            let id = *w.st.recoveries.keys().next().unwrap();
            dispatch(&mut w, 1, id, 1);
            let t1 = w.st.agent_dispatches("web1")[0].token;
            w.cmd(outcome(id, 1, t1, failed()));
            assert_eq!(w.st.recoveries[&id].state, StepState::Pending, "attempt 2");
            assert!(due(&w, 1).is_empty(), "retries wait");
            assert_eq!(
                dispatch(&mut w, 1, id, 1),
                CommandResponse::Rejected(format!("recovery step {id} expects attempt 2, not 1"))
            );
            for _ in 0..5 {
                w.round(C, C);
            }
            assert_eq!(due(&w, 1), vec![id]);
            dispatch(&mut w, 1, id, 2);
            let t2 = w.st.agent_dispatches("web1")[0].token;
            assert!(t2 > t1);
            // The retry's outcome carrying the older token of attempt 1 is not its answer.
            w.cmd(outcome(id, 1, t1, ok()));
            assert_eq!(w.st.recoveries[&id].state, StepState::Dispatched);
            w.cmd(outcome(id, 2, t2, failed()));
            assert!(matches!(
                w.st.recoveries[&id].state,
                StepState::Done { ok: false, .. }
            ));
            w.round(C, C);
            let reboot = *w.st.recoveries.keys().last().unwrap();
            assert_ne!(reboot, id);
            assert_eq!(w.st.recoveries[&reboot].spec.name, "reboot");
            dispatch(&mut w, 1, reboot, 1);
            let t = w.st.agent_dispatches("web1")[0].token;
            let refused = ActionOutcome::Refused {
                reason: "no action \"reboot\" in agent.toml".into(),
            };
            w.cmd(outcome(reboot, 1, t, refused));
            w.round(C, C);
            let escalations: Vec<_> =
                w.st.intents
                    .values()
                    .filter(|i| matches!(i.kind, IntentKind::RecoveryFailed { .. }))
                    .collect();
            assert_eq!(escalations.len(), 1, "ops is notified once");
            assert_eq!(
                escalations[0].dedup_key,
                format!("recovery-failed-{incident}/firing/ops")
            );
            w.round(C, C);
            assert_eq!(w.st.recoveries.len(), 2, "nothing more runs");
            let last = w.st.incidents[&incident].timeline.last().unwrap();
            assert!(
                matches!(&last.event, Event::RecoveryFinished { ok: false, note, .. } if note.contains("ops")),
                "{last:?}"
            );
        }

        #[test]
        fn no_step_runs_during_a_silence() {
            let mut w = world();
            w.wall_ms += 0;
            let start = w.wall_ms;
            let resp = w.cmd(Command::AddSilence(crate::model::SilenceSpec {
                matcher: crate::model::Matcher::Name("web".into()),
                start_ms: start,
                end_ms: start + 3_600_000,
                reason: "maintenance".into(),
            }));
            let CommandResponse::Created(silence) = resp else {
                panic!("{resp:?}")
            };
            outage(&mut w);
            for _ in 0..5 {
                w.round(C, C);
            }
            assert!(w.st.recoveries.is_empty(), "held by the silence");
            w.cmd(Command::RemoveSilence { id: silence });
            w.round(C, C);
            assert_eq!(w.st.recoveries.len(), 1, "due once the silence is gone");
        }

        #[test]
        fn an_unanswered_agent_step_fails_after_its_timeout() {
            let mut w = world();
            outage(&mut w);
            w.round(C, C);
            w.round(C, C);
            let id = *w.st.recoveries.keys().next().unwrap();
            dispatch(&mut w, 1, id, 1);
            for _ in 0..(10 + crate::recovery::AGENT_ANSWER_GRACE_MS / 1000) {
                w.tick();
            }
            let r = &w.st.recoveries[&id];
            assert_eq!(r.state, StepState::Pending, "retried");
            assert!(
                matches!(&r.outcomes[0], ActionOutcome::Failed { error, .. } if error.contains("did not answer"))
            );
        }

        /// `web` runs a one-step runbook whose step is `action` (1 s after the incident opens,
        /// 3 attempts, verify `verify_s`), then a second agent step.
        fn world_with(action: StepAction, verify_s: u64) -> World {
            let mut w = World::new();
            let mut catalog = w.st.catalog.clone();
            catalog.checks[0].recovery = Some("rb".into());
            let mut first = step("first", 1, 3, verify_s);
            first.action = action;
            catalog.runbooks = vec![RunbookSpec {
                name: "rb".into(),
                steps: vec![first, step("second", 0, 1, 0)],
            }];
            assert_eq!(w.cmd(Command::ApplyCatalog(catalog)), CommandResponse::Ok);
            w
        }

        /// The first due step, dispatched in term 1.
        fn dispatched_first(w: &mut World) -> u64 {
            outage(w);
            for _ in 0..3 {
                if !w.st.recoveries.is_empty() {
                    break;
                }
                w.round(C, C);
            }
            let id = *w.st.recoveries.keys().next().expect("step 1 is due");
            assert_eq!(dispatch(w, 1, id, 1), CommandResponse::Created(id));
            id
        }

        #[test]
        fn unanswered_exec_and_webhook_steps_are_interrupted_never_rerun() {
            let actions = [
                StepAction::Exec {
                    argv: vec!["/usr/local/bin/ipmi-reset".into(), "web1".into()],
                },
                StepAction::Webhook {
                    url: "https://ops.example/hook".into(),
                },
            ];
            for (action, verify_s) in actions.into_iter().flat_map(|a| [(a.clone(), 0), (a, 3)]) {
                let kind = action.kind();
                let mut w = world_with(action, verify_s);
                let id = dispatched_first(&mut w);
                for _ in 0..(10 + crate::recovery::AGENT_ANSWER_GRACE_MS / 1000) {
                    w.round(C, C);
                }
                let r = &w.st.recoveries[&id];
                assert_ne!(r.state, StepState::Dispatched, "{kind}: settled");
                assert_ne!(r.state, StepState::Pending, "{kind}: never run again");
                assert_eq!(r.outcomes.len(), 1, "{kind}");
                assert!(
                    matches!(&r.outcomes[0], ActionOutcome::Interrupted { reason } if reason.contains("not run again")),
                    "{kind}: {:?}",
                    r.outcomes[0]
                );
                assert!(!due(&w, 1).contains(&id), "{kind}");
                assert!(!due(&w, 2).contains(&id), "{kind}: nor by a new leader");
                assert_eq!(
                    dispatch(&mut w, 2, id, 2),
                    CommandResponse::Rejected(format!("recovery step {id} is settled")),
                    "{kind}"
                );
                // Verification (if any) ends with the check still down: the runbook moves on.
                for _ in 0..5 {
                    w.round(C, C);
                }
                assert!(
                    matches!(w.st.recoveries[&id].state, StepState::Done { .. }),
                    "{kind}"
                );
                assert!(
                    w.st.recoveries.values().any(|r| r.spec.name == "second"),
                    "{kind}: the next step became due"
                );
            }
        }

        #[test]
        fn escalation_waits_for_a_silence_to_end() {
            let mut w = world();
            let incident = outage(&mut w);
            w.round(C, C);
            w.round(C, C);
            let restart = *w.st.recoveries.keys().next().unwrap();
            dispatch(&mut w, 1, restart, 1);
            let t = w.st.agent_dispatches("web1")[0].token;
            let refused = ActionOutcome::Refused {
                reason: "no such action".into(),
            };
            w.cmd(outcome(restart, 1, t, refused.clone()));
            w.round(C, C);
            let reboot = *w.st.recoveries.keys().last().unwrap();
            assert_ne!(reboot, restart);
            dispatch(&mut w, 1, reboot, 1);
            let t = w.st.agent_dispatches("web1")[0].token;
            // A silence starts while the last step runs; then the step fails.
            let start = w.wall_ms;
            let resp = w.cmd(Command::AddSilence(crate::model::SilenceSpec {
                matcher: crate::model::Matcher::Name("web".into()),
                start_ms: start,
                end_ms: start + 3_600_000,
                reason: "maintenance".into(),
            }));
            let CommandResponse::Created(silence) = resp else {
                panic!("{resp:?}")
            };
            w.round(C, C);
            assert!(w.st.incidents[&incident].is_held(), "silenced");
            w.cmd(outcome(reboot, 1, t, refused));
            for _ in 0..3 {
                w.round(C, C);
            }
            let escalations = |w: &World| {
                w.st.intents
                    .values()
                    .filter(|i| matches!(i.kind, IntentKind::RecoveryFailed { .. }))
                    .count()
            };
            assert_eq!(escalations(&w), 0, "no page during the silence");
            assert!(!w.st.runs[&incident].finished, "not finished while held");
            w.cmd(Command::RemoveSilence { id: silence });
            w.round(C, C);
            w.round(C, C);
            assert!(!w.st.incidents[&incident].is_held());
            assert_eq!(escalations(&w), 1, "paged once the silence ended");
            assert!(w.st.runs[&incident].finished);
            let finished: Vec<_> = w.st.incidents[&incident]
                .timeline
                .iter()
                .filter(|e| matches!(&e.event, Event::RecoveryFinished { ok: false, note, .. } if note.contains("ops")))
                .collect();
            assert_eq!(finished.len(), 1, "finished once, escalating to ops");
        }

        #[test]
        fn a_huge_agent_sequence_number_saturates_the_gap_count() {
            let mut check = CheckSpec::for_test("web1-disk");
            check.probe = ProbeSpec::Agent(AgentSpec {
                agent: "web1".into(),
                metric: AgentMetric::Disk { mount: "/".into() },
                warn_milli: Some(81_000),
                crit_milli: Some(91_000),
            });
            let mut w = World::with_checks(vec![check]);
            let report = |run: u64, seq: u64| Command::AgentReport {
                agent: "web1".into(),
                node_id: 3,
                report: HostReport {
                    run,
                    seq,
                    ..HostReport::default()
                },
            };
            assert_eq!(w.cmd(report(7, 1)), CommandResponse::Ok);
            assert_eq!(w.cmd(report(7, u64::MAX)), CommandResponse::Ok);
            assert_eq!(w.st.agents["web1"].gaps, u64::MAX - 2);
            assert_eq!(w.cmd(report(8, u64::MAX)), CommandResponse::Ok);
            assert_eq!(w.st.agents["web1"].gaps, u64::MAX);
            assert_eq!(w.st.agents["web1"].reports, 3);
        }

        #[test]
        fn a_closed_incident_hands_out_no_step_but_takes_its_outcome() {
            let mut w = world();
            let incident = outage(&mut w);
            w.round(C, C);
            w.round(C, C);
            let id = *w.st.recoveries.keys().next().unwrap();
            dispatch(&mut w, 1, id, 1);
            let t = w.st.agent_dispatches("web1")[0].token;
            for _ in 0..3 {
                w.round(O, O);
            }
            assert!(!w.st.incidents[&incident].is_open());
            assert_eq!(w.st.recoveries[&id].state, StepState::Dispatched);
            assert!(
                w.st.agent_dispatches("web1").is_empty(),
                "the incident closed: nothing to run"
            );
            // An agent that was already running it still reports, and that is accepted.
            w.cmd(outcome(id, 1, t, ok()));
            assert!(
                matches!(
                    &w.st.recoveries[&id].state,
                    StepState::Done { ok: true, .. }
                ),
                "{:?}",
                w.st.recoveries[&id].state
            );
            assert_eq!(w.st.recoveries[&id].outcomes, vec![ok()]);
        }

        #[test]
        fn settled_steps_kept_are_bounded() {
            let max = crate::recovery::DONE_RECOVERIES_MAX;
            assert!(
                max <= 1_000,
                "each keeps up to 10 outcomes: bound the state"
            );
            let mut w = world();
            outage(&mut w);
            w.round(C, C);
            w.round(C, C);
            let id = *w.st.recoveries.keys().next().unwrap();
            let template = w.st.recoveries[&id].clone();
            for n in 0..=max as u64 {
                let mut r = template.clone();
                r.id = 1_000_000 + n;
                r.state = StepState::Done {
                    ok: false,
                    note: "old".into(),
                };
                w.st.recoveries.insert(r.id, r);
            }
            dispatch(&mut w, 1, id, 1);
            let t = w.st.agent_dispatches("web1")[0].token;
            w.cmd(outcome(id, 1, t, ok()));
            let done = w.st.recoveries.values().filter(|r| r.is_done()).count();
            assert_eq!(done, max);
            assert!(w.st.recoveries.contains_key(&id), "the active one is kept");
            assert!(
                !w.st.recoveries.contains_key(&1_000_000),
                "the oldest settled goes first"
            );
        }

        #[test]
        fn agent_reports_are_judged_deduplicated_and_counted() {
            let mut check = CheckSpec::for_test("web1-disk");
            check.probe = ProbeSpec::Agent(AgentSpec {
                agent: "web1".into(),
                metric: AgentMetric::Disk { mount: "/".into() },
                warn_milli: Some(81_000),
                crit_milli: Some(91_000),
            });
            check.confirm.sites = Some(1);
            let mut w = World::with_checks(vec![check]);
            let report = |seq: u64, pct: f64| Command::AgentReport {
                agent: "web1".into(),
                node_id: 3,
                report: HostReport {
                    run: 7,
                    seq,
                    mounts: vec![MountUsage {
                        path: "/".into(),
                        disk_pct: pct,
                        inode_pct: 1.0,
                    }],
                    ..HostReport::default()
                },
            };
            for seq in 1..=3 {
                assert_eq!(w.cmd(report(seq, 95.0)), CommandResponse::Ok);
                w.tick();
            }
            let inc =
                w.st.open_incidents()
                    .next()
                    .expect("one observer is a quorum");
            assert_eq!(inc.severity, C);
            assert_eq!(inc.opened_by[0].site, "agent:web1");
            w.cmd(report(3, 10.0));
            assert_eq!(
                w.st.agents["web1"].reports, 3,
                "a repeated report is applied once"
            );
            w.cmd(report(5, 10.0));
            assert_eq!(w.st.agents["web1"].gaps, 1, "report 4 never came");
            // Membership changes keep the agent's site.
            let probing = w.st.probing_sites();
            assert!(!probing.contains("agent:web1"));
            assert!(w.st.checks["web1-disk"].sites.contains_key("agent:web1"));
            let stranger = Command::AgentReport {
                agent: "web1".into(),
                node_id: 9,
                report: HostReport::default(),
            };
            assert!(matches!(w.cmd(stranger), CommandResponse::Rejected(_)));
        }
    }
}

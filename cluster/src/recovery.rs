//! Runbooks in the state machine: when a step becomes due, dispatches and their fencing
//! tokens, outcomes, verification and escalation. Pure, like the rest of the state: the
//! leader ([`ClusterState::recoveries_to_dispatch`]) and agents act on what is committed here.

use crate::agent::AgentDispatch;
use crate::command::CommandResponse;
use crate::model::{
    ActionOutcome, Event, FencingToken, HostReport, IntentKind, ProbeSpec, RecoveryIntent,
    StepAction, StepDispatch, StepOutcome, StepState, Transition,
};
use crate::rule::TICK_MS;
use crate::state::{AgentState, ClusterState};

/// Settled recovery steps kept (active ones are always kept). Each keeps its attempts'
/// bounded outcomes, which the incident's timeline has too: this bounds the replicated state.
pub const DONE_RECOVERIES_MAX: usize = 1_000;
/// How long after its timeout a dispatched step may stay unanswered before the cluster settles
/// it: time for the agent (or the leader that runs an exec or webhook step) to poll, fail over
/// to another node and report.
pub const AGENT_ANSWER_GRACE_MS: u64 = 30_000;
/// Wait before a failed attempt is retried.
pub const STEP_RETRY_MS: u64 = 5_000;

fn ticks(ms: u64) -> u64 {
    ms.div_ceil(TICK_MS)
}

impl ClusterState {
    /// Applies a host agent's report: each of the agent's checks is judged against it and
    /// recorded under the agent's pseudo-site.
    pub(crate) fn apply_agent_report(
        &mut self,
        index: u64,
        agent: &str,
        node_id: u64,
        report: &HostReport,
    ) -> CommandResponse {
        if crate::tls::validate_agent_name(agent).is_err() {
            return CommandResponse::Rejected(format!("invalid agent name {agent:?}"));
        }
        if !self.members.contains_key(&node_id) {
            return CommandResponse::Rejected(format!("node {node_id} is not a member"));
        }
        let st = self.agents.entry(agent.to_string()).or_default();
        if st.run == report.run && report.seq <= st.seq {
            return CommandResponse::Ok; // Sent again after a lost answer: applied already.
        }
        let previous = if st.run == report.run { st.seq } else { 0 };
        // The agent chooses `seq`: saturate rather than overflow.
        st.gaps = st
            .gaps
            .saturating_add(report.seq.saturating_sub(previous + 1));
        *st = AgentState {
            run: report.run,
            seq: report.seq,
            reports: st.reports + 1,
            gaps: st.gaps,
            last_tick: self.tick,
            last_at_ms: report.at_ms,
            via_node: node_id,
        };
        let report = report.bounded();
        let site = crate::agent::site_of(agent);
        let tick = self.tick;
        let results: Vec<_> = self
            .catalog
            .checks
            .iter()
            .filter_map(|c| match &c.probe {
                ProbeSpec::Agent(a) if a.agent == agent => {
                    let mut r = crate::agent::judge(&c.name, a, &report);
                    r.observed_tick = tick;
                    Some(r)
                }
                _ => None,
            })
            .collect();
        let mut touched = std::collections::BTreeSet::new();
        for r in &results {
            if self.record_result(index, &site, r) {
                touched.insert(r.check.clone());
            }
        }
        self.evaluate_touched(index, touched);
        CommandResponse::Ok
    }

    /// Commits a dispatch: the step's attempt may run under token (`term`, `index`).
    pub(crate) fn apply_dispatch(
        &mut self,
        term: u64,
        index: u64,
        id: u64,
        attempt: u32,
        leader_id: u64,
    ) -> CommandResponse {
        let (tick, at_ms) = (self.tick, self.wall_ms);
        let Some(intent) = self.recoveries.get(&id) else {
            return CommandResponse::Rejected(format!("unknown recovery step {id}"));
        };
        let Some(inc) = self.incidents.get(&intent.incident_id) else {
            return CommandResponse::Rejected(format!("incident {} is gone", intent.incident_id));
        };
        if !inc.is_open() {
            return CommandResponse::Rejected(format!("incident {} is closed", inc.id));
        }
        if let Some(hold) = inc.hold() {
            return CommandResponse::Rejected(format!("held by {hold}"));
        }
        let expected = match (&intent.state, &intent.dispatch) {
            (StepState::Pending, _) => intent.outcomes.len() as u32 + 1,
            (StepState::Dispatched, Some(d)) => d.attempt,
            _ => return CommandResponse::Rejected(format!("recovery step {id} is settled")),
        };
        if attempt != expected {
            return CommandResponse::Rejected(format!(
                "recovery step {id} expects attempt {expected}, not {attempt}"
            ));
        }
        let token = FencingToken { term, index };
        let step = intent.step;
        let incident_id = intent.incident_id;
        if let Some(intent) = self.recoveries.get_mut(&id) {
            intent.dispatch = Some(StepDispatch {
                attempt,
                token,
                leader_id,
                at_ms,
                tick,
            });
            intent.state = StepState::Dispatched;
        }
        if let Some(inc) = self.incidents.get_mut(&incident_id) {
            inc.record(
                index,
                at_ms,
                Event::RecoveryDispatched {
                    intent_id: id,
                    step,
                    attempt,
                    token,
                    leader_id,
                },
            );
        }
        CommandResponse::Created(id)
    }

    /// Records how a dispatched attempt ended. A report for an attempt that is no longer the
    /// current one (late, repeated, from a deposed leader) changes nothing.
    pub(crate) fn apply_step_outcome(&mut self, index: u64, o: &StepOutcome) -> CommandResponse {
        let Some(intent) = self.recoveries.get(&o.intent_id) else {
            return CommandResponse::Rejected(format!("unknown recovery step {}", o.intent_id));
        };
        let current = match (&intent.state, &intent.dispatch) {
            (StepState::Dispatched, Some(d)) => d.attempt == o.attempt && o.token <= d.token,
            _ => false,
        };
        if !current {
            return CommandResponse::Ok;
        }
        self.settle(index, o.intent_id, &o.by, &o.outcome);
        CommandResponse::Ok
    }

    /// Settles the current attempt of `id` with `outcome`.
    fn settle(&mut self, index: u64, id: u64, by: &str, outcome: &ActionOutcome) {
        let (tick, at_ms) = (self.tick, self.wall_ms);
        let outcome = outcome.bounded();
        let Some(intent) = self.recoveries.get_mut(&id) else {
            return;
        };
        let open = self
            .incidents
            .get(&intent.incident_id)
            .is_some_and(|i| i.is_open());
        intent.outcomes.push(outcome.clone());
        let attempt = intent.outcomes.len() as u32;
        intent.state = match &outcome {
            ActionOutcome::Succeeded { .. } | ActionOutcome::Interrupted { .. } => {
                if !open {
                    StepState::Done {
                        ok: true,
                        note: "the check recovered".into(),
                    }
                } else if intent.spec.verify_ms > 0 {
                    StepState::Verifying {
                        until_tick: tick + ticks(intent.spec.verify_ms),
                    }
                } else {
                    StepState::Done {
                        ok: true,
                        note: outcome.summary(),
                    }
                }
            }
            ActionOutcome::Failed { .. } if open && attempt < intent.spec.attempts => {
                intent.not_before_tick = tick + ticks(STEP_RETRY_MS);
                StepState::Pending
            }
            ActionOutcome::Failed { .. } | ActionOutcome::Refused { .. } => StepState::Done {
                ok: false,
                note: outcome.summary(),
            },
        };
        let verifying = matches!(intent.state, StepState::Verifying { .. });
        let (incident_id, step, check) = (intent.incident_id, intent.step, intent.check.clone());
        if verifying {
            if let Some(cs) = self.checks.get_mut(&check) {
                cs.reprobe_index = index;
            }
        }
        if let Some(inc) = self.incidents.get_mut(&incident_id) {
            inc.record(
                index,
                at_ms,
                Event::RecoveryOutcome {
                    intent_id: id,
                    step,
                    attempt,
                    by: by.to_string(),
                    outcome,
                },
            );
        }
        self.trim_recoveries();
    }

    /// At every tick: moves each open incident's runbook along (see the module docs), and
    /// settles dispatched steps that were never answered.
    pub(crate) fn schedule_recovery(&mut self, index: u64) {
        if self.runs.is_empty() && self.recoveries.values().all(|r| !r.is_active()) {
            return;
        }
        let (tick, at_ms) = (self.tick, self.wall_ms);
        // Dispatched steps nobody answered, of every kind.
        let unanswered: Vec<(u64, ActionOutcome)> = self
            .recoveries
            .values()
            .filter_map(|r| match (&r.state, &r.dispatch) {
                (StepState::Dispatched, Some(d))
                    if tick >= d.tick + ticks(r.spec.timeout_ms + AGENT_ANSWER_GRACE_MS) =>
                {
                    let secs = ticks(r.spec.timeout_ms + AGENT_ANSWER_GRACE_MS) * TICK_MS / 1000;
                    Some((r.id, unanswered_outcome(&r.spec.action, d.leader_id, secs)))
                }
                _ => None,
            })
            .collect();
        for (id, outcome) in unanswered {
            self.settle(index, id, "cluster", &outcome);
        }
        let ids: Vec<u64> = self.runs.keys().copied().collect();
        for incident_id in ids {
            self.advance_run(index, tick, at_ms, incident_id);
        }
    }

    fn advance_run(&mut self, index: u64, tick: u64, at_ms: u64, incident_id: u64) {
        let Some(mut run) = self.runs.get(&incident_id).cloned() else {
            return;
        };
        let open = self
            .incidents
            .get(&incident_id)
            .is_some_and(|i| i.is_open());
        if !open {
            // The incident closed: a step not yet dispatched never runs, one verifying
            // worked. A dispatched one keeps its dispatch until its outcome comes in.
            if let Some(intent) = run.active.and_then(|id| self.recoveries.get_mut(&id)) {
                match intent.state {
                    StepState::Pending => {
                        intent.state = StepState::Done {
                            ok: false,
                            note: "the check recovered before it ran".into(),
                        }
                    }
                    StepState::Verifying { .. } => {
                        intent.state = StepState::Done {
                            ok: true,
                            note: "the check recovered".into(),
                        }
                    }
                    _ => {}
                }
            }
            if run.next_step > 0 && !run.finished {
                let note = format!("the check recovered after step {}", run.next_step);
                self.record_finished(index, at_ms, incident_id, &run.runbook, true, note);
            }
            self.runs.remove(&incident_id);
            return;
        }
        if run.finished {
            return;
        }
        if let Some(id) = run.active {
            let Some(intent) = self.recoveries.get_mut(&id) else {
                run.active = None;
                self.runs.insert(incident_id, run);
                return;
            };
            match intent.state {
                StepState::Pending | StepState::Dispatched => return,
                StepState::Verifying { until_tick } if tick < until_tick => return,
                StepState::Verifying { .. } => {
                    intent.state = StepState::Done {
                        ok: false,
                        note: "the check was still down after the step".into(),
                    };
                }
                StepState::Done { .. } => {}
            }
            run.active = None;
        }
        let Some(inc) = self.incidents.get(&incident_id) else {
            return;
        };
        // While held nothing runs and nothing escalates: the run stays unfinished, so it
        // finishes (and pages) once the hold ends.
        if inc.is_held() {
            self.runs.insert(incident_id, run);
            return;
        }
        let steps = self
            .catalog
            .runbooks
            .iter()
            .find(|r| r.name == run.runbook)
            .map(|r| r.steps.clone());
        let Some(steps) = steps else {
            self.finish(index, incident_id, &mut run, "the runbook no longer exists");
            return;
        };
        let Some(step) = steps.get(run.next_step as usize) else {
            self.finish(
                index,
                incident_id,
                &mut run,
                "every step ran and the check is still down",
            );
            return;
        };
        if tick < inc.opened_tick + ticks(step.after_ms) {
            self.runs.insert(incident_id, run);
            return;
        }
        let id = self.next_recovery_id + 1;
        self.next_recovery_id = id;
        let check = inc.check.clone();
        let intent = RecoveryIntent {
            id,
            incident_id,
            check,
            runbook: run.runbook.clone(),
            step: run.next_step,
            spec: step.clone(),
            created_index: index,
            dispatch: None,
            outcomes: Vec::new(),
            state: StepState::Pending,
            not_before_tick: tick,
        };
        if let Some(inc) = self.incidents.get_mut(&incident_id) {
            inc.record(
                index,
                at_ms,
                Event::RecoveryStep {
                    intent_id: id,
                    step: run.next_step,
                    name: step.name.clone(),
                    action: step.action.describe(),
                },
            );
        }
        self.recoveries.insert(id, intent);
        run.active = Some(id);
        run.next_step += 1;
        self.runs.insert(incident_id, run);
    }

    /// Ends a runbook that did not bring the check back: escalates to the check's notifiers.
    /// Never called while the incident is held (see `advance_run`).
    fn finish(
        &mut self,
        index: u64,
        incident_id: u64,
        run: &mut crate::state::RunbookRun,
        why: &str,
    ) {
        run.finished = true;
        self.runs.insert(incident_id, run.clone());
        let Some(inc) = self.incidents.get(&incident_id) else {
            return;
        };
        let check = inc.check.clone();
        let notify = self
            .check(&check)
            .map(|c| c.notify.clone())
            .unwrap_or_default();
        let kind = IntentKind::RecoveryFailed {
            runbook: run.runbook.clone(),
            steps: run.next_step,
        };
        let notifiers = self.emit(
            index,
            &notify,
            &check,
            incident_id,
            kind,
            Transition::Firing,
        );
        let note = format!("{why}; escalating to {}", list_or_none(&notifiers));
        self.record_finished(index, self.wall_ms, incident_id, &run.runbook, false, note);
    }

    /// Records on the incident's timeline that its runbook ended.
    fn record_finished(
        &mut self,
        index: u64,
        at_ms: u64,
        incident_id: u64,
        runbook: &str,
        ok: bool,
        note: String,
    ) {
        if let Some(inc) = self.incidents.get_mut(&incident_id) {
            inc.record(
                index,
                at_ms,
                Event::RecoveryFinished {
                    runbook: runbook.to_string(),
                    ok,
                    note,
                },
            );
        }
    }

    fn trim_recoveries(&mut self) {
        let done: Vec<u64> = self
            .recoveries
            .values()
            .filter(|r| r.is_done())
            .map(|r| r.id)
            .collect();
        if done.len() > DONE_RECOVERIES_MAX {
            for id in &done[..done.len() - DONE_RECOVERIES_MAX] {
                self.recoveries.remove(id);
            }
        }
    }

    /// The steps the leader of `term` must act on now: pending ones due and not held, and
    /// ones an earlier leader dispatched and nobody settled.
    pub fn recoveries_to_dispatch(&self, term: u64) -> Vec<&RecoveryIntent> {
        self.recoveries
            .values()
            .filter(|r| match (&r.state, &r.dispatch) {
                (StepState::Pending, _) => self.tick >= r.not_before_tick,
                (StepState::Dispatched, Some(d)) => d.token.term < term,
                _ => false,
            })
            .filter(|r| {
                self.incidents
                    .get(&r.incident_id)
                    .is_some_and(|i| i.is_open() && !i.is_held())
            })
            .collect()
    }

    /// What agent `agent` is asked to run: its dispatched steps without an outcome whose
    /// incident is still open, oldest token first (an agent refuses a token older than one it
    /// has seen). Once the incident closes a step is no longer handed out; an agent already
    /// running it still reports its outcome, and that is still accepted.
    pub fn agent_dispatches(&self, agent: &str) -> Vec<AgentDispatch> {
        let mut out: Vec<AgentDispatch> = self
            .recoveries
            .values()
            .filter(|r| {
                self.incidents
                    .get(&r.incident_id)
                    .is_some_and(|i| i.is_open())
            })
            .filter_map(|r| match (&r.state, &r.dispatch, &r.spec.action) {
                (StepState::Dispatched, Some(d), StepAction::Agent { agent: a, action })
                    if a == agent =>
                {
                    Some(AgentDispatch {
                        intent_id: r.id,
                        attempt: d.attempt,
                        token: d.token,
                        action: action.clone(),
                        timeout_ms: r.spec.timeout_ms,
                        check: r.check.clone(),
                        incident_id: r.incident_id,
                    })
                }
                _ => None,
            })
            .collect();
        out.sort_by_key(|d| d.token);
        out
    }
}

/// How the cluster settles a dispatched step nobody answered within its timeout plus
/// [`AGENT_ANSWER_GRACE_MS`] (`secs` in all). An agent step fails, and is retried while it
/// has attempts left (docs/recovery.md: the agent may be down). An exec or webhook step may
/// have run on the leader that dispatched it, so it is interrupted: never run again, and
/// verification decides what comes next.
fn unanswered_outcome(action: &StepAction, leader_id: u64, secs: u64) -> ActionOutcome {
    match action {
        StepAction::Agent { agent, .. } => ActionOutcome::Failed {
            error: format!("agent {agent} did not answer within {secs} s (is it connected?)"),
            output: String::new(),
            duration_ms: 0,
        },
        StepAction::Exec { .. } | StepAction::Webhook { .. } => ActionOutcome::Interrupted {
            reason: format!(
                "leader {leader_id} dispatched it and reported no outcome within {secs} s; \
                 not run again"
            ),
        },
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "no notifier".into()
    } else {
        names.join(", ")
    }
}

//! What only the raft leader does: commit ticks and deliver notification intents.
//!
//! Intents and their outcomes live in the replicated state. The leader delivers every intent
//! that has no committed outcome and commits the outcome; a new leader resumes the ones the
//! old leader did not settle. A delivery that happened just before the old leader died may be
//! repeated, with the same dedup key, so receivers that dedupe see it once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use consentry_cluster::command::{Command, CommandResponse};
use consentry_cluster::model::{
    ActionOutcome, CheckSpec, Delivery, FencingToken, Incident, NotifierSpec, NotifyIntent,
    NotifyOutcome, RecoveryIntent, StepAction, StepOutcome, StepState,
};
use consentry_cluster::rule::TICK_MS;
use consentry_cluster::state::ClusterState;
use consentry_cluster::types::Raft;
use consentry_storage::StateReader;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics;
use crate::notify;
use crate::writer::Writer;

/// Deliveries in flight at once.
pub const NOTIFY_IN_FLIGHT_MAX: usize = 32;
/// Attempts per intent before the failure is committed.
pub const NOTIFY_ATTEMPTS_MAX: u32 = 3;
/// First retry delay; doubles per attempt.
pub const NOTIFY_BACKOFF_MS: u64 = 1_000;
/// Longest committed failure text (all attempts' errors).
pub const NOTIFY_ERROR_BYTES_MAX: usize = 2_048;
/// Recovery steps handled at once (dispatches, and exec or webhook steps running).
pub const RECOVERY_IN_FLIGHT_MAX: usize = 16;
/// How often the executor rescans even without applied changes.
pub const EFFECTS_SCAN_MS: u64 = 500;

pub struct Leader {
    pub raft: Raft,
    pub writer: Writer,
    pub state: StateReader<ClusterState>,
    /// The channels deliveries go through.
    pub notify: Arc<dyn notify::Notify>,
    pub self_id: u64,
    /// Stamps each tick with the leader's wall time (judges silence windows only), and
    /// measures how long each tick stands for on its monotonic clock.
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Names this process among the leaders ticks came from (random per start).
    pub run_id: u64,
    /// Where `exec` recovery steps may run programs from (node.toml `notify_exec_dirs`).
    pub exec_dirs: Arc<[std::path::PathBuf]>,
    /// For `webhook` recovery steps (`None`: they fail, as in the simulation).
    pub http: Option<reqwest::Client>,
}

/// Tasks each working on one intent (by id): an intent is in flight until its task ends,
/// even by a panic. Both executors (notifications, recovery steps) keep theirs in one.
#[derive(Default)]
struct InFlight {
    set: JoinSet<()>,
    ids: BTreeMap<tokio::task::Id, u64>,
}

impl InFlight {
    fn contains(&self, id: u64) -> bool {
        self.ids.values().any(|i| *i == id)
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn spawn(&mut self, id: u64, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = self.set.spawn(task);
        self.ids.insert(handle.id(), id);
    }

    /// Waits for a task to end and frees its intent; `None` when none runs.
    /// Cancel safe (`JoinSet::join_next_with_id` is).
    async fn join_next(&mut self, what: &str) -> Option<()> {
        let task = match self.set.join_next_with_id().await? {
            Ok((task, ())) => task,
            Err(e) => {
                warn!(error = %e, "a {what} task failed");
                e.id()
            }
        };
        self.ids.remove(&task);
        Some(())
    }

    async fn shutdown(&mut self) {
        self.set.shutdown().await;
        self.ids.clear();
    }
}

/// One intent to deliver, with what it needs from the applied state at scan time.
struct Pending {
    intent: NotifyIntent,
    notifier: Option<NotifierSpec>,
    incident: Option<Incident>,
    check: Option<CheckSpec>,
}

impl Leader {
    /// Runs the ticker and the effects executor until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut tasks = JoinSet::new();
        tasks.spawn(self.clone().ticker(cancel.clone()));
        tasks.spawn(self.clone().effects(cancel.clone()));
        tasks.spawn(self.clone().recovery(cancel.clone()));
        while tasks.join_next().await.is_some() {}
    }

    /// The term in which this node leads, if it does.
    fn leading_term(&self) -> Option<u64> {
        let m = self.raft.metrics();
        let m = m.borrow();
        (m.current_leader == Some(self.self_id)).then_some(m.current_term)
    }

    /// Becomes ready to act in `term`: the state machine has applied everything committed by
    /// earlier leaders, so outcomes they recorded are visible.
    async fn ready_in(&self, term: u64, ready: &mut Option<u64>) -> bool {
        if *ready == Some(term) {
            return true;
        }
        match self.raft.ensure_linearizable().await {
            Ok(_) => {
                info!(term, "leading: state caught up, resuming ticks and effects");
                *ready = Some(term);
                true
            }
            Err(e) => {
                warn!(error = %e, "leader could not confirm its state is current");
                false
            }
        }
    }

    async fn ticker(self: Arc<Self>, cancel: CancellationToken) {
        let mut every = tokio::time::interval(Duration::from_millis(TICK_MS));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ready = None;
        // The last tick value this node saw applied, and its monotonic clock then.
        let mut seen: (u64, u64) = (u64::MAX, self.clock.monotonic_ms());
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = every.tick() => {}
            }
            let now = self.clock.monotonic_ms();
            let (tick, last_run, last_mono) = self
                .state
                .read(|s| (s.tick, s.tick_leader_run, s.tick_leader_mono_ms));
            if tick != seen.0 {
                seen = (tick, now);
            }
            let Some(term) = self.leading_term() else {
                continue;
            };
            if !self.ready_in(term, &mut ready).await {
                continue;
            }
            // Since the last tick this process proposed (exact, one clock), or else since
            // this node saw the last tick applied (a lower bound).
            let since = if last_run == self.run_id && now >= last_mono {
                last_mono
            } else {
                seen.1
            };
            let advance = u32::try_from((now - since) / TICK_MS)
                .unwrap_or(u32::MAX)
                .clamp(1, consentry_cluster::state::TICK_ADVANCE_MAX);
            if let Err(e) = self
                .writer
                .write(Command::Tick {
                    leader_id: self.self_id,
                    wall_ms: self.clock.wall_ms(),
                    advance,
                    leader_run: self.run_id,
                    leader_mono_ms: now,
                })
                .await
            {
                warn!(error = %e, "committing tick failed");
            }
        }
    }

    async fn effects(self: Arc<Self>, cancel: CancellationToken) {
        let mut applied = self.state.subscribe();
        let mut in_flight = InFlight::default();
        let mut ready = None;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    in_flight.shutdown().await;
                    return;
                }
                Some(()) = in_flight.join_next("notification") => continue,
                _ = applied.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(EFFECTS_SCAN_MS)) => {}
            }
            let Some(term) = self.leading_term() else {
                continue;
            };
            if !self.ready_in(term, &mut ready).await {
                continue;
            }
            let todo: Vec<Pending> = self.state.read(|st| {
                let pending: Vec<&NotifyIntent> = st.pending_intents().collect();
                pending
                    .iter()
                    .filter(|i| !in_flight.contains(i.id))
                    // Deliver in order per incident and channel: firing before resolved.
                    .filter(|i| {
                        !pending.iter().any(|o| {
                            o.id < i.id
                                && o.incident_id == i.incident_id
                                && o.notifier == i.notifier
                        })
                    })
                    .take(NOTIFY_IN_FLIGHT_MAX.saturating_sub(in_flight.len()))
                    .map(|i| Pending {
                        intent: (*i).clone(),
                        notifier: st
                            .catalog
                            .notifiers
                            .iter()
                            .find(|n| n.name == i.notifier)
                            .cloned(),
                        incident: notify::alert_view(i, st.incidents.get(&i.incident_id)),
                        check: st.check(&i.check).cloned(),
                    })
                    .collect()
            });
            for pending in todo {
                let id = pending.intent.id;
                let me = self.clone();
                in_flight.spawn(id, async move { me.deliver(term, pending).await });
            }
        }
    }

    /// Delivers one intent with at most [`NOTIFY_ATTEMPTS_MAX`] attempts (each bounded by
    /// its kind's timeout, see [`notify::attempt_timeout_ms`]) and exponential backoff.
    /// Each delivery is its own task, so a notifier that hangs delays no other.
    async fn deliver(&self, term: u64, pending: Pending) {
        let Pending {
            intent,
            notifier,
            incident,
            check,
        } = pending;
        // Attempts earlier leaders committed: this leader's are numbered after them, so the
        // committed count and timeline read as one sequence across leader changes.
        let base = intent.attempts;
        let mut attempts = 0;
        let kind = notifier.as_ref().map_or("unknown", |n| n.kind.as_str());
        let result = match (notifier, incident) {
            (None, _) => Err(format!("notifier {:?} no longer exists", intent.notifier)),
            (Some(_), None) => Err(format!(
                "incident {} is gone; nothing to send",
                intent.incident_id
            )),
            (Some(notifier), Some(incident)) => {
                // Every attempt's error, so the committed outcome shows the whole story.
                let mut errors: Vec<String> = Vec::new();
                let mut last = Err(String::new());
                while attempts < NOTIFY_ATTEMPTS_MAX {
                    if attempts > 0 {
                        tokio::time::sleep(Duration::from_millis(
                            NOTIFY_BACKOFF_MS << (attempts - 1),
                        ))
                        .await;
                    }
                    attempts += 1;
                    last = self
                        .notify
                        .deliver(
                            &notifier,
                            &intent,
                            &incident,
                            check.as_ref(),
                            self.self_id,
                            self.clock.wall_ms(),
                        )
                        .await;
                    match &last {
                        Ok(()) => break,
                        Err(e) => {
                            warn!(intent = intent.id, check = %intent.check, notifier = %intent.notifier, kind, attempt = attempts, error = %e, "notification attempt failed");
                            errors.push(format!("attempt {attempts}: {e}"));
                            if attempts < NOTIFY_ATTEMPTS_MAX {
                                self.commit_attempt(term, &intent, base + attempts, e).await;
                            }
                        }
                    }
                }
                last.map_err(|_| {
                    consentry_cluster::model::truncate(&errors.join("; "), NOTIFY_ERROR_BYTES_MAX)
                })
            }
        };
        let delivery = match &result {
            Ok(()) => {
                info!(intent = intent.id, check = %intent.check, transition = intent.transition.as_str(), notifier = %intent.notifier, "notification delivered");
                ::metrics::counter!(metrics::NOTIFICATIONS_TOTAL, "outcome" => "delivered", "kind" => kind)
                    .increment(1);
                Delivery::Delivered {
                    leader_id: self.self_id,
                    term,
                }
            }
            Err(e) => {
                warn!(intent = intent.id, check = %intent.check, notifier = %intent.notifier, kind, attempts, "notification failed after its last attempt");
                ::metrics::counter!(metrics::NOTIFICATIONS_TOTAL, "outcome" => "failed", "kind" => kind)
                    .increment(1);
                Delivery::Failed {
                    leader_id: self.self_id,
                    term,
                    error: e.clone(),
                }
            }
        };
        let outcome = Command::NotifyOutcome(NotifyOutcome {
            intent_id: intent.id,
            attempts: base.saturating_add(attempts),
            delivery,
        });
        if let Err(e) = self.writer.write(outcome).await {
            warn!(intent = intent.id, error = %e, "committing notification outcome failed; the next leader will retry");
        }
    }

    /// Commits a failed attempt that will be retried, so the incident's timeline shows it
    /// while delivery goes on. Best effort: the outcome settles the intent either way, so a
    /// failed write is logged and delivery continues.
    async fn commit_attempt(&self, term: u64, intent: &NotifyIntent, attempt: u32, error: &str) {
        let cmd = Command::NotifyAttempt {
            intent_id: intent.id,
            attempt,
            leader_id: self.self_id,
            term,
            at_ms: self.clock.wall_ms(),
            error: Some(consentry_cluster::model::truncate(
                error,
                consentry_cluster::model::ATTEMPT_ERROR_BYTES_MAX,
            )),
        };
        if let Err(e) = self.writer.write(cmd).await {
            warn!(intent = intent.id, attempt, error = %e, "committing notification attempt failed; delivery continues");
        }
    }
}

impl Leader {
    /// Dispatches due recovery steps (see `consentry_cluster::recovery`): commits each
    /// dispatch before anything acts on it; runs `exec` and `webhook` steps itself (agent
    /// steps are run by the agent, which polls any node for its dispatches); and resumes the
    /// steps an earlier leader dispatched and nobody settled.
    async fn recovery(self: Arc<Self>, cancel: CancellationToken) {
        let mut applied = self.state.subscribe();
        let mut running = InFlight::default();
        let mut ready = None;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    running.shutdown().await;
                    return;
                }
                Some(()) = running.join_next("recovery step") => continue,
                _ = applied.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(EFFECTS_SCAN_MS)) => {}
            }
            let Some(term) = self.leading_term() else {
                continue;
            };
            if !self.ready_in(term, &mut ready).await {
                continue;
            }
            let todo: Vec<RecoveryIntent> = self.state.read(|s| {
                s.recoveries_to_dispatch(term)
                    .into_iter()
                    .filter(|r| !running.contains(r.id))
                    .take(RECOVERY_IN_FLIGHT_MAX.saturating_sub(running.len()))
                    .cloned()
                    .collect()
            });
            for step in todo {
                let id = step.id;
                match (&step.state, &step.dispatch) {
                    (StepState::Dispatched, Some(d)) => {
                        if let StepAction::Agent { .. } = step.spec.action {
                            // A newer token for the same attempt: the agent runs it if it
                            // never did, or answers with the outcome it stored.
                            info!(
                                step = id,
                                attempt = d.attempt,
                                "re-dispatching an agent step an earlier leader dispatched"
                            );
                            self.dispatch(id, d.attempt).await;
                        } else {
                            // It may have run on the old leader: never run it twice.
                            let outcome = ActionOutcome::Interrupted {
                                reason: format!(
                                    "leader {} dispatched it and stopped before reporting how it ended; not run again",
                                    d.leader_id
                                ),
                            };
                            self.commit_step(id, d.attempt, d.token, outcome).await;
                        }
                    }
                    (StepState::Pending, _) => {
                        let attempt = u32::try_from(step.outcomes.len()).unwrap_or(u32::MAX) + 1;
                        let Some(token) = self.dispatch(id, attempt).await else {
                            continue;
                        };
                        if matches!(step.spec.action, StepAction::Agent { .. }) {
                            continue;
                        }
                        let me = self.clone();
                        running.spawn(id, async move {
                            let outcome = me.run_step(&step, attempt, token).await;
                            me.commit_step(id, attempt, token, outcome).await;
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    /// Commits a dispatch on this node's raft and returns its fencing token (the entry's
    /// log id); `None` when it was not committed here (refused, no quorum, or this node no
    /// longer leads). Never forwarded: a dispatch names this node as the one that runs the
    /// step, so it must be this node's entry.
    async fn dispatch(&self, id: u64, attempt: u32) -> Option<FencingToken> {
        let cmd = Command::Dispatch {
            intent_id: id,
            attempt,
            leader_id: self.self_id,
        };
        let failed = match self.writer.propose(cmd).await {
            Ok(resp) => match resp.data {
                CommandResponse::Rejected(why) => why,
                _ => {
                    info!(step = id, attempt, "recovery step dispatched");
                    return Some(FencingToken {
                        term: resp.log_id.leader_id.term,
                        index: resp.log_id.index,
                    });
                }
            },
            Err(e) => e.to_string(),
        };
        warn!(step = id, attempt, error = %failed, "committing a recovery dispatch failed");
        None
    }

    /// Runs an `exec` or `webhook` step on this node.
    async fn run_step(
        &self,
        step: &RecoveryIntent,
        attempt: u32,
        token: FencingToken,
    ) -> ActionOutcome {
        let env = [
            ("CONSENTRY_CHECK", step.check.clone()),
            ("CONSENTRY_INCIDENT", step.incident_id.to_string()),
            ("CONSENTRY_STEP", step.spec.name.clone()),
            ("CONSENTRY_ATTEMPT", attempt.to_string()),
            ("CONSENTRY_TOKEN", token.to_string()),
        ];
        match &step.spec.action {
            StepAction::Exec { argv } => {
                let Some(program) = argv.first() else {
                    return ActionOutcome::Refused {
                        reason: "the step names no program to run".into(),
                    };
                };
                // Run the path that was checked, not the name again (a symlink swapped in
                // between would escape notify_exec_dirs).
                let path = match crate::child_process::allowed_program(
                    std::path::Path::new(program),
                    &self.exec_dirs,
                    "recovery program",
                    "notify_exec_dirs",
                )
                .await
                {
                    Ok(path) => path,
                    Err(why) => return ActionOutcome::Refused { reason: why },
                };
                let mut resolved = argv.clone();
                resolved[0] = path.to_string_lossy().into_owned();
                crate::agent::action::run(&resolved, &env, step.spec.timeout_ms, &*self.clock).await
            }
            StepAction::Webhook { url } => {
                let started = self.clock.monotonic_ms();
                let dedup_key = format!("recovery-{}-{attempt}", step.id);
                let body = serde_json::json!({
                    "check": step.check,
                    "incident_id": step.incident_id,
                    "runbook": step.runbook,
                    "step": step.spec.name,
                    "attempt": attempt,
                    "fencing_token": token.to_string(),
                    "dedup_key": dedup_key,
                });
                let Some(http) = &self.http else {
                    return ActionOutcome::Refused {
                        reason: "this node has no HTTP client".into(),
                    };
                };
                let sent = notify::post_json_within(
                    http,
                    url,
                    &dedup_key,
                    body.to_string().into_bytes(),
                    Duration::from_millis(step.spec.timeout_ms),
                )
                .await;
                let duration_ms = self.clock.monotonic_ms().saturating_sub(started);
                match sent {
                    Ok(()) => ActionOutcome::Succeeded {
                        output: format!("POST {url}: delivered"),
                        duration_ms,
                    },
                    Err(error) => ActionOutcome::Failed {
                        error,
                        output: String::new(),
                        duration_ms,
                    },
                }
            }
            StepAction::Agent { .. } => ActionOutcome::Refused {
                reason: "agent steps are run by the agent".into(),
            },
        }
    }

    async fn commit_step(
        &self,
        id: u64,
        attempt: u32,
        token: FencingToken,
        outcome: ActionOutcome,
    ) {
        info!(
            step = id,
            attempt,
            outcome = outcome.as_str(),
            "recovery step ended"
        );
        let cmd = Command::StepOutcome(StepOutcome {
            intent_id: id,
            attempt,
            token,
            by: format!("leader {}", self.self_id),
            outcome,
        });
        if let Err(e) = self.writer.write(cmd).await {
            warn!(step = id, error = %e, "committing a recovery outcome failed; the next leader will settle it");
        }
    }
}

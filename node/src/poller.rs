//! The poller: probes the checks that are due and writes their results through raft, one
//! batch per flush (one raft entry per node per flush, not one per result).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use consentry_cluster::command::Command;
use consentry_cluster::model::{CheckSpec, ProbeResult, ProbeSpec, ResultBatch};
use consentry_cluster::state::ClusterState;
use consentry_storage::StateReader;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::clock::Clock;
use crate::metrics;
use crate::probe::Probe;
use crate::schedule::Schedule;
use crate::writer::Writer;

/// Probes running at once on this node.
pub const PROBES_IN_FLIGHT_MAX: usize = 512;
/// Results waiting to be flushed (the channel between probes and the batcher).
pub const RESULTS_QUEUED_MAX: usize = 8_192;
/// Results per raft entry.
pub const BATCH_RESULTS_MAX: usize = 2_000;
/// How often results are flushed into one raft entry.
pub const FLUSH_MS: u64 = 1_000;
/// Longest sleep between schedule checks (also how quickly a new catalog is noticed).
pub const SCHEDULE_WAKE_MS_MAX: u64 = 1_000;

pub struct Poller {
    pub prober: Arc<dyn Probe>,
    pub state: StateReader<ClusterState>,
    pub writer: Writer,
    pub clock: Arc<dyn Clock>,
    pub node_id: u64,
    pub site: String,
}

impl Poller {
    /// Runs until `cancel`; then flushes what it has once and returns.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let (tx, rx) = mpsc::channel(RESULTS_QUEUED_MAX);
        let batcher = tokio::spawn(self.clone().batcher(rx, cancel.clone()));
        self.scheduler(tx, cancel).await;
        if let Err(e) = batcher.await {
            warn!(error = %e, "result batcher ended abnormally");
        }
    }

    async fn scheduler(&self, tx: mpsc::Sender<ProbeResult>, cancel: CancellationToken) {
        let mut schedule = Schedule::default();
        let mut specs: BTreeMap<String, Arc<CheckSpec>> = BTreeMap::new();
        let mut catalog_seen = u64::MAX;
        let mut applied = self.state.subscribe();
        let mut probes: JoinSet<()> = JoinSet::new();
        // Task id -> check name, so a probe that panics still frees its check.
        let mut in_flight: BTreeMap<tokio::task::Id, String> = BTreeMap::new();
        let mut busy: BTreeSet<String> = BTreeSet::new();
        // The newest "probe again now" a recovery step asked for (see `reprobe_index`).
        let mut reprobe_seen = self.state.read(|s| {
            s.checks
                .values()
                .map(|c| c.reprobe_index)
                .max()
                .unwrap_or(0)
        });
        loop {
            let catalog_index = self.state.read(|s| s.catalog_index);
            if catalog_index != catalog_seen {
                catalog_seen = catalog_index;
                // Agent checks are judged from the agents' reports, not probed.
                let checks: Vec<CheckSpec> = self.state.read(|s| {
                    s.catalog
                        .checks
                        .iter()
                        .filter(|c| !matches!(c.probe, ProbeSpec::Agent(_)))
                        .cloned()
                        .collect()
                });
                schedule.set_checks(&checks, self.clock.monotonic_ms());
                specs = checks
                    .into_iter()
                    .map(|c| (c.name.clone(), Arc::new(c)))
                    .collect();
                debug!(checks = specs.len(), "poller loaded catalog");
            }
            let now = self.clock.monotonic_ms();
            let reprobe: Vec<String> = self.state.read(|s| {
                s.checks
                    .iter()
                    .filter(|(_, c)| c.reprobe_index > reprobe_seen)
                    .map(|(n, _)| n.clone())
                    .collect()
            });
            if !reprobe.is_empty() {
                reprobe_seen = self.state.read(|s| {
                    s.checks
                        .values()
                        .map(|c| c.reprobe_index)
                        .max()
                        .unwrap_or(reprobe_seen)
                });
                debug!(checks = ?reprobe, "probing again at once to verify a recovery step");
            }
            for name in schedule.due(now).into_iter().chain(reprobe) {
                // A probe still running from the last round is not started twice.
                if busy.contains(&name) || busy.len() >= PROBES_IN_FLIGHT_MAX {
                    continue;
                }
                let Some(spec) = specs.get(&name).cloned() else {
                    continue;
                };
                let prober = self.prober.clone();
                let tx = tx.clone();
                let clock = self.clock.clone();
                let state = self.state.clone();
                let handle = probes.spawn(async move {
                    let mut r = prober.probe(&spec).await;
                    r.observed_at_ms = clock.wall_ms();
                    r.observed_tick = state.read(|s| s.tick);
                    ::metrics::counter!(metrics::PROBE_RESULTS_TOTAL, "kind" => spec.probe.kind(), "status" => r.status.as_str()).increment(1);
                    #[allow(clippy::cast_precision_loss)]
                    ::metrics::histogram!(metrics::PROBE_LATENCY_SECONDS, "kind" => spec.probe.kind()).record(r.latency_ms as f64 / 1000.0);
                    if tx.send(r).await.is_err() {
                        debug!(check = %spec.name, "batcher gone; result discarded at shutdown");
                    }
                });
                busy.insert(name.clone());
                in_flight.insert(handle.id(), name);
            }
            let wake = schedule
                .next_due_ms()
                .map_or(SCHEDULE_WAKE_MS_MAX, |at| at.saturating_sub(now))
                .min(SCHEDULE_WAKE_MS_MAX);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    probes.abort_all();
                    while probes.join_next().await.is_some() {}
                    return;
                }
                Some(done) = probes.join_next_with_id() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => {
                            warn!(error = %e, "a probe task failed");
                            e.id()
                        }
                    };
                    if let Some(name) = in_flight.remove(&id) {
                        busy.remove(&name);
                    }
                }
                _ = applied.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(wake)) => {}
            }
        }
    }

    async fn batcher(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<ProbeResult>,
        cancel: CancellationToken,
    ) {
        let mut batch: Vec<ProbeResult> = Vec::new();
        let mut every = tokio::time::interval(Duration::from_millis(FLUSH_MS));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    while let Ok(r) = rx.try_recv() {
                        batch.push(r);
                    }
                    self.flush(&mut batch).await;
                    return;
                }
                r = rx.recv() => match r {
                    Some(r) => {
                        batch.push(r);
                        if batch.len() >= BATCH_RESULTS_MAX {
                            self.flush(&mut batch).await;
                        }
                    }
                    None => {
                        self.flush(&mut batch).await;
                        return;
                    }
                },
                _ = every.tick() => self.flush(&mut batch).await,
            }
        }
    }

    async fn flush(&self, batch: &mut Vec<ProbeResult>) {
        if batch.is_empty() {
            return;
        }
        let results = std::mem::take(batch);
        let n = results.len();
        let cmd = Command::Results(ResultBatch {
            node_id: self.node_id,
            site: self.site.clone(),
            results,
        });
        let started_ms = self.clock.monotonic_ms();
        match self.writer.write(cmd).await {
            Ok(_) => {
                let took_ms = self.clock.monotonic_ms().saturating_sub(started_ms);
                ::metrics::histogram!(metrics::RESULT_BATCH_COMMIT_SECONDS)
                    .record(took_ms as f64 / 1_000.0);
                ::metrics::counter!(metrics::RESULT_BATCHES_TOTAL, "outcome" => "committed")
                    .increment(1);
                ::metrics::counter!(metrics::RESULTS_COMMITTED_TOTAL).increment(n as u64);
            }
            Err(e) => {
                // Without a quorum the results cannot be agreed on; they are stale by the
                // time one returns, so they are counted and dropped rather than queued.
                ::metrics::counter!(metrics::RESULT_BATCHES_TOTAL, "outcome" => "failed")
                    .increment(1);
                ::metrics::counter!(metrics::RESULTS_DROPPED_TOTAL).increment(n as u64);
                warn!(results = n, error = %e, "writing result batch failed; results dropped");
            }
        }
    }
}

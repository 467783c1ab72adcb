//! The task that records the applied log into the history: it reads committed entries from
//! the node's own raft log (never ahead of what the state machine applied), copies incidents
//! and silences from the applied state, and applies retention.

use std::sync::Arc;
use std::time::Duration;

use consentry_cluster::state::ClusterState;
use consentry_cluster::types::TypeConfig;
use consentry_storage::StateReader;
use openraft::{EntryPayload, RaftLogReader};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::store::{History, StateCopy};
use crate::clock::Clock;
use crate::metrics;

/// Log entries read per step.
pub const CHUNK_ENTRIES: u64 = 256;
/// How often retention runs.
pub const PRUNE_EVERY_MS: u64 = 10 * 60_000;
/// Back-off after a failed step.
const RETRY_MS: u64 = 5_000;

/// Records the log into `history` until `cancel`.
pub async fn run<R>(
    history: Arc<History>,
    mut log: R,
    state: StateReader<ClusterState>,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) where
    R: RaftLogReader<TypeConfig>,
{
    let mut applied_rx = state.subscribe();
    let mut last_prune_ms = 0u64;
    let mut synced_index = u64::MAX;
    loop {
        let applied = *applied_rx.borrow_and_update();
        let cursor = match history.meta() {
            Ok(m) => m.cursor,
            Err(e) => {
                warn!(error = %e, "history: reading the cursor failed");
                if sleep_or_cancel(&cancel, RETRY_MS).await {
                    return;
                }
                continue;
            }
        };
        #[allow(clippy::cast_precision_loss)]
        ::metrics::gauge!(metrics::HISTORY_LAG_ENTRIES).set(applied.saturating_sub(cursor) as f64);
        if cursor < applied {
            let start = cursor + 1;
            let end = applied.min(cursor + CHUNK_ENTRIES) + 1;
            match step(&history, &mut log, start, end).await {
                Ok(()) => continue,
                Err(e) => {
                    warn!(error = %e, "history: recording failed; retrying");
                    if sleep_or_cancel(&cancel, RETRY_MS).await {
                        return;
                    }
                    continue;
                }
            }
        }
        if synced_index != applied {
            let since = history.meta().map_or(0, |m| m.incidents_synced_index);
            let copy = state.read(|s| StateCopy::take(s, since));
            let h = history.clone();
            let synced = tokio::task::spawn_blocking(move || h.sync_state(copy)).await;
            match synced {
                Ok(Ok(())) => synced_index = applied,
                Ok(Err(e)) => warn!(error = %e, "history: copying incidents failed"),
                Err(e) => warn!(error = %e, "history: the sync task failed"),
            }
        }
        let now = clock.wall_ms();
        if now.saturating_sub(last_prune_ms) >= PRUNE_EVERY_MS {
            last_prune_ms = now;
            let h = history.clone();
            match tokio::task::spawn_blocking(move || h.prune(now)).await {
                Ok(Ok(n)) if n > 0 => info!(rows = n, "history: retention deleted rows"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!(error = %e, "history: retention failed"),
                Err(e) => warn!(error = %e, "history: the retention task failed"),
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = applied_rx.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

async fn step<R>(history: &Arc<History>, log: &mut R, start: u64, end: u64) -> anyhow::Result<()>
where
    R: RaftLogReader<TypeConfig>,
{
    let entries = log.limited_get_log_entries(start, end).await?;
    let first = entries.first().map_or(end, |e| e.log_id.index);
    if first > start {
        warn!(
            from = start,
            to = first - 1,
            "history: log entries were purged before the history read them; \
             their results are missing from this node's reports"
        );
        ::metrics::counter!(metrics::HISTORY_GAP_ENTRIES_TOTAL).increment(first - start);
        let h = history.clone();
        tokio::task::spawn_blocking(move || h.record_gap(start, first - 1)).await??;
        if entries.is_empty() {
            return Ok(());
        }
    }
    let through = entries.last().map_or(start, |e| e.log_id.index);
    let h = history.clone();
    tokio::task::spawn_blocking(move || {
        let commands = entries.iter().filter_map(|e| match &e.payload {
            EntryPayload::Normal(cmd) => Some((e.log_id.index, cmd)),
            _ => None,
        });
        h.record(commands, through)
    })
    .await??;
    Ok(())
}

async fn sleep_or_cancel(cancel: &CancellationToken, ms: u64) -> bool {
    tokio::select! {
        () = cancel.cancelled() => true,
        () = tokio::time::sleep(Duration::from_millis(ms)) => false,
    }
}

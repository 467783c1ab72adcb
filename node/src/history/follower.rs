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
            match step(&history, &mut log, start, end, applied + 1).await {
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
            // Retention follows the cluster's time (the leader's ticks it recorded), not
            // this node's clock alone: a clock jumped ahead deletes nothing early.
            let cluster_ms = history.meta().map_or(0, |m| m.last_wall_ms);
            let until = if cluster_ms > 0 {
                now.min(cluster_ms)
            } else {
                now
            };
            let h = history.clone();
            match tokio::task::spawn_blocking(move || h.prune(until)).await {
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

/// Records entries `[start, end)`; `applied_end` bounds the search for the first entry
/// still in the log when that chunk was purged.
async fn step<R>(
    history: &Arc<History>,
    log: &mut R,
    start: u64,
    end: u64,
    applied_end: u64,
) -> anyhow::Result<()>
where
    R: RaftLogReader<TypeConfig>,
{
    let mut entries = log.limited_get_log_entries(start, end).await?;
    // The first index this step does not cover when it finds no entries.
    let mut next = end;
    if entries.is_empty() && end < applied_end {
        // The whole chunk was purged (a node that joined from a snapshot, or history
        // added to a node with a compacted log): one bounded read finds where the log
        // begins, so the gap is recorded once, not chunk by chunk.
        entries = log.limited_get_log_entries(start, applied_end).await?;
        entries.truncate(CHUNK_ENTRIES as usize);
        next = applied_end;
    }
    let first = entries.first().map_or(next, |e| e.log_id.index);
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

#[cfg(test)]
mod tests {
    use std::fmt::Debug;
    use std::ops::RangeBounds;

    use openraft::{CommittedLeaderId, Entry, LogId, StorageError};

    use super::*;
    use crate::history::store::Retention;

    /// A log whose entries below `first` were purged.
    struct Purged {
        first: u64,
        last: u64,
        reads: usize,
    }

    impl RaftLogReader<TypeConfig> for Purged {
        async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
            &mut self,
            range: RB,
        ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
            self.reads += 1;
            Ok((self.first..=self.last)
                .filter(|i| range.contains(i))
                .map(|index| Entry {
                    log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
                    payload: EntryPayload::Blank,
                })
                .collect())
        }
    }

    #[tokio::test]
    async fn a_purged_log_is_one_gap_not_one_per_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let history = Arc::new(History::open(&dir.path().join("h"), Retention::default()).unwrap());
        let mut log = Purged {
            first: 100_001,
            last: 100_300,
            reads: 0,
        };
        let applied = 100_300;
        let mut steps = 0;
        while history.meta().unwrap().cursor < applied {
            let start = history.meta().unwrap().cursor + 1;
            let end = applied.min(start - 1 + CHUNK_ENTRIES) + 1;
            step(&history, &mut log, start, end, applied + 1)
                .await
                .unwrap();
            steps += 1;
            assert!(steps < 10, "walking the purged range chunk by chunk");
        }
        let meta = history.meta().unwrap();
        assert_eq!(meta.gaps, vec![(1, 100_000)]);
        assert_eq!(meta.gap_entries, 100_000);
        // The gap with the first 256 entries, then the other 44.
        assert_eq!(steps, 2);
        assert!(log.reads <= 4, "{} reads", log.reads);
    }

    #[test]
    fn contiguous_gaps_merge() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("h"), Retention::default()).unwrap();
        h.record_gap(1, 256).unwrap();
        h.record_gap(257, 512).unwrap();
        h.record(std::iter::empty(), 600).unwrap();
        h.record_gap(601, 700).unwrap();
        assert_eq!(h.meta().unwrap().gaps, vec![(1, 512), (601, 700)]);
        assert_eq!(h.meta().unwrap().gap_entries, 612);
    }
}

//! The in-memory stores, for simulation (sled cannot run on a simulated file system) and
//! tests. They run the same code as the sled stores over a [`MemTree`].

use std::io::Cursor;

use openraft::{Entry, RaftTypeConfig};

use crate::log_store::LogStore;
use crate::machine::Machine;
use crate::mem_tree::MemTree;
use crate::state_machine::StateMachineStore;
use crate::StoreError;

/// The raft log store kept in memory.
pub type MemLogStore<C> = LogStore<C, MemTree>;

/// The raft state machine store whose snapshots are kept in memory.
pub type MemStateMachine<C, M> = StateMachineStore<C, M, MemTree>;

/// A fresh, empty in-memory log store and state machine store.
pub fn open_mem<C, M>() -> (MemLogStore<C>, MemStateMachine<C, M>)
where
    C: RaftTypeConfig<Entry = Entry<C>, SnapshotData = Cursor<Vec<u8>>>,
    M: Machine<C>,
{
    let log = LogStore::new(MemTree::default(), MemTree::default());
    (log, StateMachineStore::new(MemTree::default()))
}

/// An in-memory stand-in for one node's data directory: it outlives the stores opened on
/// it, so a simulated node that crashes and restarts finds its vote, log and last snapshot
/// again, as a real node finds its sled files. Clones share the same "disk".
#[derive(Debug, Clone, Default)]
pub struct MemDisk {
    log: MemTree,
    meta: MemTree,
    snapshot: MemTree,
}

/// Opens the stores kept on `disk`, the state machine restored from its last snapshot (the
/// in-memory twin of [`crate::open_sled`]).
///
/// # Errors
/// [`StoreError::CorruptSnapshot`] when the stored snapshot does not decode.
pub fn open_mem_disk<C, M>(
    disk: &MemDisk,
) -> Result<(MemLogStore<C>, MemStateMachine<C, M>), StoreError>
where
    C: RaftTypeConfig<Entry = Entry<C>, SnapshotData = Cursor<Vec<u8>>>,
    M: Machine<C>,
{
    let state_machine = StateMachineStore::open(disk.snapshot.clone())?;
    Ok((
        LogStore::new(disk.log.clone(), disk.meta.clone()),
        state_machine,
    ))
}

#[cfg(test)]
mod tests {
    use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{RaftLogReader, RaftSnapshotBuilder, StorageError};

    use super::*;
    use crate::test_support::{blank, log_id, membership, put, Kv, Previous, TestConfig};
    use crate::LOG_READ_ENTRIES_MAX;

    type Log = MemLogStore<TestConfig>;
    type Sm = MemStateMachine<TestConfig, Kv>;

    struct MemBuilder;

    impl StoreBuilder<TestConfig, Log, Sm> for MemBuilder {
        async fn build(&self) -> Result<((), Log, Sm), StorageError<u64>> {
            let (log, sm) = open_mem();
            Ok(((), log, sm))
        }
    }

    #[test]
    fn mem_stores_pass_openraft_suite() -> anyhow::Result<()> {
        Suite::test_all(MemBuilder)?;
        Ok(())
    }

    #[tokio::test]
    async fn a_mem_disk_keeps_vote_log_and_snapshot_across_a_restart() -> anyhow::Result<()> {
        let disk = MemDisk::default();
        let vote = openraft::Vote::new(2, 1);
        let entries = vec![membership(1, 1, &[1, 2]), blank(1, 2), put(2, 3, "a", "1")];
        {
            let (mut log, mut sm): (Log, Sm) = open_mem_disk(&disk)?;
            log.blocking_append(entries.clone()).await?;
            log.save_vote(&vote).await?;
            sm.apply(entries.clone()).await?;
            sm.get_snapshot_builder().await.build_snapshot().await?;
        }
        let (mut log, mut sm): (Log, Sm) = open_mem_disk(&disk)?;
        assert_eq!(log.read_vote().await?, Some(vote));
        assert_eq!(log.try_get_log_entries(..).await?, entries);
        assert_eq!(sm.applied_state().await?.0, Some(log_id(2, 3)));
        sm.reader()
            .read(|kv| assert_eq!(kv.map.get("a").map(String::as_str), Some("1")));
        // A fresh disk shares nothing with it.
        let (mut other, _): (Log, Sm) = open_mem_disk(&MemDisk::default())?;
        assert_eq!(other.read_vote().await?, None);
        Ok(())
    }

    #[tokio::test]
    async fn apply_drives_machine_in_order_and_publishes_index() -> anyhow::Result<()> {
        let (_log, mut sm): (Log, Sm) = open_mem();
        let reader = sm.reader();
        let applied = reader.subscribe();
        assert_eq!(*applied.borrow(), 0);

        let responses = sm
            .apply([
                membership(1, 1, &[1, 2]),
                blank(1, 2),
                put(1, 3, "a", "1"),
                put(1, 4, "a", "2"),
            ])
            .await?;
        assert_eq!(
            responses,
            vec![
                Previous(None),
                Previous(None),
                Previous(None),
                Previous(Some("1".into()))
            ]
        );
        reader.read(|kv| {
            assert_eq!(kv.map.get("a").map(String::as_str), Some("2"));
            assert_eq!((kv.memberships, kv.blanks), (1, 1));
        });
        assert_eq!(*applied.borrow(), 4);
        let (last, members) = sm.applied_state().await?;
        assert_eq!(last, Some(log_id(1, 4)));
        assert_eq!(members.log_id(), &Some(log_id(1, 1)));
        Ok(())
    }

    #[tokio::test]
    #[should_panic(expected = "applied log index must increase")]
    async fn applying_an_old_index_stops_the_replica() {
        let (_log, mut sm): (Log, Sm) = open_mem();
        let _ = sm.apply([blank(1, 5)]).await;
        let _ = sm.apply([blank(1, 5)]).await;
    }

    #[tokio::test]
    async fn snapshot_moves_state_between_machines() -> anyhow::Result<()> {
        let (_log_l, mut leader): (Log, Sm) = open_mem();
        let (_log_f, mut follower): (Log, Sm) = open_mem();
        leader
            .apply([membership(1, 1, &[1]), put(1, 2, "k", "v"), blank(2, 3)])
            .await?;

        let first = leader.get_snapshot_builder().await.build_snapshot().await?;
        assert_eq!(first.meta.snapshot_id, "2-3-1");
        let second = leader.get_snapshot_builder().await.build_snapshot().await?;
        assert_eq!(second.meta.snapshot_id, "2-3-2");
        let current = leader
            .get_current_snapshot()
            .await?
            .expect("snapshot stored");
        assert_eq!(current.meta, second.meta);

        let mut incoming = follower.begin_receiving_snapshot().await?;
        *incoming = *current.snapshot;
        follower.install_snapshot(&current.meta, incoming).await?;

        assert_eq!(
            follower.applied_state().await?,
            leader.applied_state().await?
        );
        assert_eq!(*follower.reader().subscribe().borrow(), 3);
        let leader_state = leader.reader().read(Kv::clone);
        assert_eq!(follower.reader().read(Kv::clone), leader_state);
        let installed = follower.get_current_snapshot().await?.expect("installed");
        assert_eq!(installed.meta, current.meta);
        Ok(())
    }

    #[tokio::test]
    async fn bad_snapshot_bytes_are_an_error_and_change_nothing() -> anyhow::Result<()> {
        let (_log_l, mut leader): (Log, Sm) = open_mem();
        let (_log_f, mut follower): (Log, Sm) = open_mem();
        leader.apply([put(1, 1, "k", "v")]).await?;
        let snapshot = leader.get_snapshot_builder().await.build_snapshot().await?;

        let garbage = Box::new(Cursor::new(vec![0xff; 64]));
        assert!(follower
            .install_snapshot(&snapshot.meta, garbage)
            .await
            .is_err());

        // Valid data under metadata that names another log id.
        let mut wrong_meta = snapshot.meta.clone();
        wrong_meta.last_log_id = Some(log_id(1, 9));
        assert!(follower
            .install_snapshot(&wrong_meta, snapshot.snapshot)
            .await
            .is_err());

        assert_eq!(follower.applied_state().await?.0, None);
        assert!(follower.get_current_snapshot().await?.is_none());
        assert_eq!(follower.reader().read(Kv::clone), Kv::default());
        Ok(())
    }

    #[tokio::test]
    async fn limited_reads_are_capped() -> anyhow::Result<()> {
        let (mut log, _sm): (Log, Sm) = open_mem();
        let total = LOG_READ_ENTRIES_MAX as u64 + 10;
        log.blocking_append((1..=total).map(|i| blank(1, i)))
            .await?;
        let mut reader = log.get_log_reader().await;
        let limited = reader.limited_get_log_entries(1, total + 1).await?;
        assert_eq!(limited.len(), LOG_READ_ENTRIES_MAX);
        assert_eq!(limited[0].log_id, log_id(1, 1));
        let all = reader.try_get_log_entries(..).await?;
        assert_eq!(all.len() as u64, total);
        let (from, to) = (5, 2);
        assert!(reader.try_get_log_entries(from..to).await?.is_empty());
        assert_eq!(reader.try_get_log_entries(total..=u64::MAX).await?.len(), 1);
        Ok(())
    }
}

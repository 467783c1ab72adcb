//! The on-disk stores: one sled database, one tree each for the log, its metadata and the
//! current snapshot.

use std::io::Cursor;
use std::path::Path;

use openraft::{Entry, RaftTypeConfig};

use crate::error::StoreError;
use crate::log_store::LogStore;
use crate::machine::Machine;
use crate::state_machine::StateMachineStore;

/// sled tree holding the log entries, keyed by big-endian `u64` index.
pub const SLED_LOG_TREE: &str = "raft_log";
/// sled tree holding the vote, the committed log id and the last purged log id.
pub const SLED_META_TREE: &str = "raft_meta";
/// sled tree holding the current snapshot's metadata and data.
pub const SLED_SNAPSHOT_TREE: &str = "raft_snapshot";

/// The raft log store kept in sled.
pub type SledLogStore<C> = LogStore<C, sled::Tree>;

/// The raft state machine store whose snapshots are kept in sled.
pub type SledStateMachine<C, M> = StateMachineStore<C, M, sled::Tree>;

/// sled's page cache (its default is 1 GiB): what a node keeps of its log and snapshot in
/// memory beyond the applied state. Reads of old entries (a lagging follower's catch-up)
/// go to disk beyond it.
pub const SLED_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// Opens (or creates) the sled database at `dir` and returns its log store and state
/// machine store, the state machine restored from the stored snapshot if there is one.
///
/// # Errors
/// [`StoreError::Open`] when sled cannot open the directory (another process holds it, no
/// permission, not a sled database); [`StoreError::ReadSnapshot`] or
/// [`StoreError::CorruptSnapshot`] when the stored snapshot cannot be read or decoded.
pub fn open_sled<C, M>(dir: &Path) -> Result<(SledLogStore<C>, SledStateMachine<C, M>), StoreError>
where
    C: RaftTypeConfig<Entry = Entry<C>, SnapshotData = Cursor<Vec<u8>>>,
    M: Machine<C>,
{
    let open_error = |source| StoreError::Open {
        path: dir.to_path_buf(),
        source,
    };
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(SLED_CACHE_BYTES)
        .open()
        .map_err(open_error)?;
    let log = db.open_tree(SLED_LOG_TREE).map_err(open_error)?;
    let meta = db.open_tree(SLED_META_TREE).map_err(open_error)?;
    let snapshot = db.open_tree(SLED_SNAPSHOT_TREE).map_err(open_error)?;
    let state_machine = StateMachineStore::open(snapshot)?;
    Ok((LogStore::new(log, meta), state_machine))
}

#[cfg(test)]
mod tests {
    use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{
        AnyError, RaftLogReader, RaftSnapshotBuilder, StorageError, StorageIOError, Vote,
    };
    use tempfile::TempDir;

    use super::*;
    use crate::codec;
    use crate::error::SnapshotError;
    use crate::test_support::{blank, log_id, membership, put, Kv, TestConfig};

    type Log = SledLogStore<TestConfig>;
    type Sm = SledStateMachine<TestConfig, Kv>;

    struct SledBuilder;

    impl StoreBuilder<TestConfig, Log, Sm, TempDir> for SledBuilder {
        async fn build(&self) -> Result<(TempDir, Log, Sm), StorageError<u64>> {
            let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
            let (log, sm) =
                open_sled(dir.path()).map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn sled_stores_pass_openraft_suite() -> anyhow::Result<()> {
        Suite::test_all(SledBuilder)?;
        Ok(())
    }

    /// Writes `value` under `key` in tree `tree` of the (closed) database at `dir`.
    fn poke(dir: &Path, tree: &str, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        let db = sled::open(dir)?;
        db.open_tree(tree)?.insert(key, value)?;
        db.flush()?;
        Ok(())
    }

    #[tokio::test]
    async fn everything_survives_a_reopen() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let vote = Vote::new(3, 1);
        let entries = vec![
            membership(1, 1, &[1, 2, 3]),
            blank(2, 2),
            put(2, 3, "a", "1"),
            put(2, 4, "b", "2"),
            put(3, 5, "a", "3"),
        ];
        let built = {
            let (mut log, mut sm): (Log, Sm) = open_sled(dir.path())?;
            log.blocking_append(entries.clone()).await?;
            log.save_vote(&vote).await?;
            log.save_committed(Some(log_id(3, 5))).await?;
            sm.apply(entries[..4].to_vec()).await?;
            let built = sm.get_snapshot_builder().await.build_snapshot().await?;
            // Applied after the snapshot: not in it, so not restored; openraft re-applies it.
            sm.apply(entries[4..].to_vec()).await?;
            built
        };

        let (mut log, mut sm): (Log, Sm) = open_sled(dir.path())?;
        assert_eq!(log.read_vote().await?, Some(vote));
        assert_eq!(log.read_committed().await?, Some(log_id(3, 5)));
        let state = log.get_log_state().await?;
        assert_eq!(state.last_log_id, Some(log_id(3, 5)));
        assert_eq!(state.last_purged_log_id, None);
        assert_eq!(log.try_get_log_entries(..).await?, entries);

        assert_eq!(
            sm.applied_state().await?,
            (Some(log_id(2, 4)), built.meta.last_membership.clone())
        );
        let current = sm.get_current_snapshot().await?.expect("snapshot restored");
        assert_eq!(current.meta, built.meta);
        assert_eq!(current.snapshot.get_ref(), built.snapshot.get_ref());
        let reader = sm.reader();
        assert_eq!(*reader.subscribe().borrow(), 4);
        reader.read(|kv| {
            assert_eq!(kv.map.get("a").map(String::as_str), Some("1"));
            assert_eq!(kv.map.get("b").map(String::as_str), Some("2"));
            assert_eq!((kv.memberships, kv.blanks), (1, 1));
        });

        // The build counter carries on, so a rebuilt snapshot gets a new id.
        let rebuilt = sm.get_snapshot_builder().await.build_snapshot().await?;
        assert_eq!(rebuilt.meta.snapshot_id, "2-4-2");

        // Purge survives too.
        log.purge(log_id(2, 2)).await?;
        drop((log, sm));
        let (mut log, _sm): (Log, Sm) = open_sled(dir.path())?;
        let state = log.get_log_state().await?;
        assert_eq!(state.last_purged_log_id, Some(log_id(2, 2)));
        assert_eq!(log.try_get_log_entries(..).await?, entries[2..].to_vec());
        Ok(())
    }

    #[tokio::test]
    async fn garbage_on_disk_is_a_storage_error() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let reopen = || open_sled::<TestConfig, Kv>(dir.path());
        {
            let (mut log, _sm) = reopen()?;
            log.blocking_append((1..=5).map(|i| blank(1, i))).await?;
            log.save_vote(&Vote::new(1, 1)).await?;
        }

        // Undecodable bytes in the middle of the log.
        poke(dir.path(), SLED_LOG_TREE, &3u64.to_be_bytes(), &[0xff; 16])?;
        {
            let (mut log, _sm) = reopen()?;
            assert_eq!(log.try_get_log_entries(1..3).await?.len(), 2);
            assert!(log.try_get_log_entries(1..6).await.is_err());
            assert!(log.limited_get_log_entries(3, 4).await.is_err());
        }

        // Undecodable last entry: the log state cannot be read.
        poke(dir.path(), SLED_LOG_TREE, &5u64.to_be_bytes(), &[0xff])?;
        {
            let (mut log, _sm) = reopen()?;
            assert!(log.get_log_state().await.is_err());
        }

        // A valid entry under another index, and a key that is no index.
        let entry_1 = codec::encode(&blank(1, 1))?;
        poke(dir.path(), SLED_LOG_TREE, &5u64.to_be_bytes(), &entry_1)?;
        poke(dir.path(), SLED_LOG_TREE, b"not-an-index", &entry_1)?;
        {
            let (mut log, _sm) = reopen()?;
            assert!(log.try_get_log_entries(5..6).await.is_err());
            assert!(log.try_get_log_entries(6..).await.is_err());
        }

        poke(dir.path(), SLED_META_TREE, b"vote", &[0xff; 3])?;
        let (mut log, _sm) = reopen()?;
        assert!(log.read_vote().await.is_err());
        Ok(())
    }

    #[tokio::test]
    async fn corrupt_snapshot_fails_the_open() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        {
            let (_log, mut sm): (Log, Sm) = open_sled(dir.path())?;
            sm.apply([put(1, 1, "k", "v")]).await?;
            sm.get_snapshot_builder().await.build_snapshot().await?;
        }
        poke(dir.path(), SLED_SNAPSHOT_TREE, b"data", &[0xff; 8])?;
        let result: Result<(Log, Sm), _> = open_sled(dir.path());
        let Err(error) = result else {
            panic!("opening over a corrupt snapshot succeeded");
        };
        assert!(matches!(
            error,
            StoreError::CorruptSnapshot {
                source: SnapshotError::Decode { part: "data", .. }
            }
        ));
        assert!(error
            .to_string()
            .starts_with("stored snapshot is corrupt: "));
        Ok(())
    }

    #[test]
    fn unopenable_directory_names_the_path() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x")?;
        let result: Result<(Log, Sm), _> = open_sled(&file);
        let Err(error) = result else {
            panic!("opening a regular file as a database succeeded");
        };
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "opening sled database at {} failed: ",
                file.display()
            )),
            "{message}"
        );
        Ok(())
    }
}

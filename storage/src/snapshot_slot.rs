//! The current snapshot: its byte format and where it is kept.

// openraft's storage traits return `StorageError` by value, and it is large; the helpers
// here return the same type so `?` carries it through unchanged.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::marker::PhantomData;
use std::sync::Arc;

use openraft::{
    AnyError, LogId, RaftTypeConfig, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::error::{SnapshotError, StoreError};
use crate::tree::Tree;

/// Key of the encoded `(SnapshotMeta, build counter)`.
const KEY_META: &[u8] = b"meta";
/// Key of the snapshot data: the codec's encoding of `(last_applied, last_membership, M)`.
const KEY_DATA: &[u8] = b"data";

/// The application state and raft bookkeeping a snapshot restores.
pub(crate) struct Restored<C: RaftTypeConfig, M> {
    pub(crate) last_applied: Option<LogId<C::NodeId>>,
    pub(crate) last_membership: StoredMembership<C::NodeId, C::Node>,
    pub(crate) state: M,
}

impl<C: RaftTypeConfig, M: Default> Restored<C, M> {
    /// The state before anything was applied.
    pub(crate) fn empty() -> Self {
        Self {
            last_applied: None,
            last_membership: StoredMembership::default(),
            state: M::default(),
        }
    }
}

/// The one current snapshot, kept in a [`Tree`] under two keys written in one atomic
/// batch and flushed before any method that changes it returns. A snapshot built before
/// anything was applied gets the id `0-0-{counter}`.
///
/// Clones share the tree and one writer lock, so the snapshot-building task and
/// `install_snapshot` never interleave their writes, and a build that finishes after a newer
/// snapshot was installed does not replace it.
pub(crate) struct SnapshotSlot<C, T> {
    tree: T,
    /// Held while writing; counts the snapshots built so far, for unique snapshot ids.
    writer: Arc<tokio::sync::Mutex<u64>>,
    _config: PhantomData<fn() -> C>,
}

impl<C, T: Clone> Clone for SnapshotSlot<C, T> {
    fn clone(&self) -> Self {
        Self {
            tree: self.tree.clone(),
            writer: self.writer.clone(),
            _config: PhantomData,
        }
    }
}

impl<C, T> SnapshotSlot<C, T>
where
    C: RaftTypeConfig<SnapshotData = Cursor<Vec<u8>>>,
    T: Tree,
{
    /// A slot in `tree` that starts counting builds at zero without reading `tree`.
    pub(crate) fn new(tree: T) -> Self {
        Self {
            tree,
            writer: Arc::new(tokio::sync::Mutex::new(0)),
            _config: PhantomData,
        }
    }

    /// Opens the slot kept in `tree` and returns the snapshot stored there, if any.
    pub(crate) fn open(tree: T) -> Result<(Self, Option<Snapshot<C>>), StoreError> {
        let stored = read_stored::<C, T>(&tree)?;
        let counter = stored.as_ref().map_or(0, |(_, counter, _)| *counter);
        let slot = Self {
            tree,
            writer: Arc::new(tokio::sync::Mutex::new(counter)),
            _config: PhantomData,
        };
        let snapshot = stored.map(|(meta, _, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        });
        Ok((slot, snapshot))
    }

    /// The stored snapshot, read afresh.
    pub(crate) async fn current(&self) -> Result<Option<Snapshot<C>>, StorageError<C::NodeId>> {
        // Metadata and data are two reads: hold the writer lock so both are of one snapshot.
        let _writer = self.writer.lock().await;
        let stored = read_stored::<C, T>(&self.tree)
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?;
        Ok(stored.map(|(meta, _, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }

    /// Encodes a snapshot of `state` at `last_applied`, stores it unless a newer one is
    /// already stored, and returns it.
    pub(crate) async fn build<M: Serialize>(
        &self,
        last_applied: Option<LogId<C::NodeId>>,
        last_membership: StoredMembership<C::NodeId, C::Node>,
        state: &M,
    ) -> Result<Snapshot<C>, StorageError<C::NodeId>> {
        let data = codec::encode(&(&last_applied, &last_membership, state))
            .map_err(|e| StorageIOError::write_snapshot(None, AnyError::new(&e)))?;
        let mut counter = self.writer.lock().await;
        *counter += 1;
        let (term, index) = last_applied
            .as_ref()
            .map_or((0, 0), |l| (l.leader_id.term, l.index));
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership,
            snapshot_id: format!("{term}-{index}-{}", *counter),
        };
        let stored_last = read_meta::<C, T>(&self.tree)
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?
            .and_then(|(stored, _)| stored.last_log_id);
        if stored_last <= meta.last_log_id {
            self.write(&meta, *counter, data.clone()).await?;
        } else {
            tracing::info!(
                built = %meta.snapshot_id,
                "not storing the built snapshot: a newer one was installed meanwhile"
            );
        }
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }

    /// Stores a snapshot received from the leader, replacing the current one.
    pub(crate) async fn install(
        &self,
        meta: &SnapshotMeta<C::NodeId, C::Node>,
        data: Vec<u8>,
    ) -> Result<(), StorageError<C::NodeId>> {
        let counter = self.writer.lock().await;
        self.write(meta, *counter, data).await
    }

    /// Writes and flushes; callers hold the writer lock.
    async fn write(
        &self,
        meta: &SnapshotMeta<C::NodeId, C::Node>,
        counter: u64,
        data: Vec<u8>,
    ) -> Result<(), StorageError<C::NodeId>> {
        let signature = || Some(meta.signature());
        let meta_bytes = codec::encode(&(meta, counter))
            .map_err(|e| StorageIOError::write_snapshot(signature(), AnyError::new(&e)))?;
        self.tree
            .write(vec![
                (KEY_META.to_vec(), Some(meta_bytes)),
                (KEY_DATA.to_vec(), Some(data)),
            ])
            .map_err(|e| StorageIOError::write_snapshot(signature(), AnyError::new(&e)))?;
        self.tree
            .flush()
            .await
            .map_err(|e| StorageIOError::write_snapshot(signature(), AnyError::new(&e)))?;
        Ok(())
    }
}

type Stored<C> = (
    SnapshotMeta<<C as RaftTypeConfig>::NodeId, <C as RaftTypeConfig>::Node>,
    u64,
    Vec<u8>,
);

type StoredMeta<C> = (
    SnapshotMeta<<C as RaftTypeConfig>::NodeId, <C as RaftTypeConfig>::Node>,
    u64,
);

/// The stored `(meta, build counter)`, if a snapshot is stored.
fn read_meta<C: RaftTypeConfig, T: Tree>(tree: &T) -> Result<Option<StoredMeta<C>>, StoreError> {
    let Some(bytes) = tree
        .get(KEY_META)
        .map_err(|source| StoreError::ReadSnapshot { source })?
    else {
        return Ok(None);
    };
    let meta = codec::decode(&bytes).map_err(|source| StoreError::CorruptSnapshot {
        source: SnapshotError::Decode {
            part: "metadata",
            source,
        },
    })?;
    Ok(Some(meta))
}

/// The stored `(meta, build counter, data)`, if a snapshot is stored.
fn read_stored<C: RaftTypeConfig, T: Tree>(tree: &T) -> Result<Option<Stored<C>>, StoreError> {
    let meta = read_meta::<C, T>(tree)?;
    let data = tree
        .get(KEY_DATA)
        .map_err(|source| StoreError::ReadSnapshot { source })?;
    let missing = |part| StoreError::CorruptSnapshot {
        source: SnapshotError::Missing { part },
    };
    match (meta, data) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(missing("data")),
        (None, Some(_)) => Err(missing("metadata")),
        (Some((meta, counter)), Some(data)) => Ok(Some((meta, counter, data))),
    }
}

/// Decodes snapshot data and checks it against the snapshot's metadata.
///
/// # Errors
/// When `data` does not decode, or names another log id or membership than `meta`.
pub(crate) fn decode_data<C, M>(
    meta: &SnapshotMeta<C::NodeId, C::Node>,
    data: &[u8],
) -> Result<Restored<C, M>, SnapshotError>
where
    C: RaftTypeConfig,
    M: DeserializeOwned,
{
    type Data<C, M> = (
        Option<LogId<<C as RaftTypeConfig>::NodeId>>,
        StoredMembership<<C as RaftTypeConfig>::NodeId, <C as RaftTypeConfig>::Node>,
        M,
    );
    let (last_applied, last_membership, state): Data<C, M> =
        codec::decode(data).map_err(|source| SnapshotError::Decode {
            part: "data",
            source,
        })?;
    if last_applied != meta.last_log_id {
        return Err(SnapshotError::Mismatch {
            field: "last log id",
        });
    }
    if last_membership != meta.last_membership {
        return Err(SnapshotError::Mismatch {
            field: "last membership",
        });
    }
    Ok(Restored {
        last_applied,
        last_membership,
        state,
    })
}

//! The raft state machine store, generic over the application [`Machine`] and over the
//! [`Tree`] its snapshots go to.

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftTypeConfig, Snapshot, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use tokio::sync::watch;

use crate::error::StoreError;
use crate::machine::{Machine, StateReader};
use crate::snapshot_builder::SnapshotBuilder;
use crate::snapshot_slot::{decode_data, Restored, SnapshotSlot};
use crate::tree::Tree;

/// Applies committed entries to an in-memory `M` and keeps its snapshots in a `T`.
///
/// The application state is not written on apply; it is persisted only as snapshots, and on
/// open it is restored from the stored snapshot. openraft re-applies the log entries after
/// it (up to the committed log id the log store saved).
pub struct StateMachineStore<C: RaftTypeConfig, M, T> {
    state: Arc<RwLock<M>>,
    last_applied: Option<LogId<C::NodeId>>,
    last_membership: StoredMembership<C::NodeId, C::Node>,
    applied_tx: watch::Sender<u64>,
    snapshots: SnapshotSlot<C, T>,
}

impl<C, M, T> StateMachineStore<C, M, T>
where
    C: RaftTypeConfig<Entry = Entry<C>, SnapshotData = Cursor<Vec<u8>>>,
    M: Machine<C>,
    T: Tree,
{
    /// An empty store that keeps its snapshots in `tree`, ignoring anything already there.
    pub(crate) fn new(tree: T) -> Self {
        Self::from_parts(SnapshotSlot::new(tree), Restored::empty())
    }

    /// Opens the store whose snapshots live in `tree`, restoring the stored snapshot.
    pub(crate) fn open(tree: T) -> Result<Self, StoreError> {
        let (snapshots, stored) = SnapshotSlot::<C, T>::open(tree)?;
        let restored = match stored {
            None => Restored::empty(),
            Some(snapshot) => {
                let data = snapshot.snapshot.into_inner();
                decode_data::<C, M>(&snapshot.meta, &data)
                    .map_err(|source| StoreError::CorruptSnapshot { source })?
            }
        };
        Ok(Self::from_parts(snapshots, restored))
    }

    fn from_parts(snapshots: SnapshotSlot<C, T>, restored: Restored<C, M>) -> Self {
        let (applied_tx, _) = watch::channel(restored.last_applied.as_ref().map_or(0, |l| l.index));
        Self {
            state: Arc::new(RwLock::new(restored.state)),
            last_applied: restored.last_applied,
            last_membership: restored.last_membership,
            applied_tx,
            snapshots,
        }
    }

    /// A read handle onto the applied state and the last applied index.
    pub fn reader(&self) -> StateReader<M> {
        StateReader::new(self.state.clone(), self.applied_tx.subscribe())
    }
}

impl<C, M, T> RaftStateMachine<C> for StateMachineStore<C, M, T>
where
    C: RaftTypeConfig<Entry = Entry<C>, SnapshotData = Cursor<Vec<u8>>>,
    M: Machine<C>,
    T: Tree,
{
    type SnapshotBuilder = SnapshotBuilder<C, M, T>;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<C::NodeId>>,
            StoredMembership<C::NodeId, C::Node>,
        ),
        StorageError<C::NodeId>,
    > {
        Ok((self.last_applied.clone(), self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<C::R>, StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        {
            // Readers see whole batches: the write lock is held across the batch.
            let mut state = self.state.write().expect("state machine lock poisoned");
            for entry in entries {
                let log_id = entry.log_id;
                if let Some(previous) = &self.last_applied {
                    assert!(
                        log_id.index > previous.index,
                        "applied log index must increase: {log_id} after {previous}"
                    );
                }
                let response = match entry.payload {
                    EntryPayload::Blank => state.apply_membership(&log_id, None),
                    EntryPayload::Normal(data) => state.apply(&log_id, &data),
                    EntryPayload::Membership(membership) => {
                        let stored = StoredMembership::new(Some(log_id.clone()), membership);
                        let response = state.apply_membership(&log_id, Some(&stored));
                        self.last_membership = stored;
                        response
                    }
                };
                self.last_applied = Some(log_id);
                responses.push(response);
            }
        }
        if let (false, Some(last)) = (responses.is_empty(), &self.last_applied) {
            self.applied_tx.send_replace(last.index);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // A copy taken now, so entries applied while the snapshot is built stay out of it.
        let state = self
            .state
            .read()
            .expect("state machine lock poisoned")
            .clone();
        SnapshotBuilder::new(
            state,
            self.last_applied.clone(),
            self.last_membership.clone(),
            self.snapshots.clone(),
        )
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<C::NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<C::NodeId, C::Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        let data = snapshot.into_inner();
        let restored = decode_data::<C, M>(meta, &data).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e))
        })?;
        self.snapshots.install(meta, data).await?;
        *self.state.write().expect("state machine lock poisoned") = restored.state;
        self.last_applied = restored.last_applied;
        self.last_membership = restored.last_membership;
        self.applied_tx
            .send_replace(self.last_applied.as_ref().map_or(0, |l| l.index));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<C>>, StorageError<C::NodeId>> {
        self.snapshots.current().await
    }
}

//! Builds a snapshot from a copy of the state machine, off the apply path.

use std::io::Cursor;

use openraft::{
    Entry, LogId, RaftSnapshotBuilder, RaftTypeConfig, Snapshot, StorageError, StoredMembership,
};

use crate::machine::Machine;
use crate::snapshot_slot::SnapshotSlot;
use crate::tree::Tree;

/// A copy of the application state at one applied log id, ready to encode and store.
///
/// openraft runs it in its own task while the state machine goes on applying.
pub struct SnapshotBuilder<C: RaftTypeConfig, M, T> {
    state: M,
    last_applied: Option<LogId<C::NodeId>>,
    last_membership: StoredMembership<C::NodeId, C::Node>,
    slot: SnapshotSlot<C, T>,
}

impl<C: RaftTypeConfig, M, T> SnapshotBuilder<C, M, T> {
    pub(crate) fn new(
        state: M,
        last_applied: Option<LogId<C::NodeId>>,
        last_membership: StoredMembership<C::NodeId, C::Node>,
        slot: SnapshotSlot<C, T>,
    ) -> Self {
        Self {
            state,
            last_applied,
            last_membership,
            slot,
        }
    }
}

impl<C, M, T> RaftSnapshotBuilder<C> for SnapshotBuilder<C, M, T>
where
    C: RaftTypeConfig<Entry = Entry<C>, SnapshotData = Cursor<Vec<u8>>>,
    M: Machine<C>,
    T: Tree,
{
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError<C::NodeId>> {
        self.slot
            .build(
                self.last_applied.clone(),
                self.last_membership.clone(),
                &self.state,
            )
            .await
    }
}

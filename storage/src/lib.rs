//! Raft storage for consentry, knowing nothing of monitoring.
//!
//! openraft 0.9 `storage-v2` implementations: a sled-backed log store and state-machine
//! store ([`open_sled`]), and an in-memory twin of each for simulation and tests
//! ([`open_mem`]). Both run the same code over an ordered byte map (a sled tree or a
//! `BTreeMap`); only where the bytes end up differs. The log store keeps entries keyed by
//! big-endian index plus the vote, committed and purged log ids, and flushes before it
//! reports entries durable. The state-machine stores are generic over a pure application
//! [`Machine`]: they hold it in memory behind a [`StateReader`], apply committed entries to
//! it, publish the last applied index, and persist it only as snapshots, from which it is
//! restored on open (openraft re-applies the later log entries). All bytes go through
//! [`codec`].

pub mod codec;
mod error;
mod log_store;
mod machine;
mod mem_store;
mod mem_tree;
mod sled_store;
mod snapshot_builder;
mod snapshot_slot;
mod state_machine;
mod tree;

pub use error::{SnapshotError, StoreError};
pub use log_store::{LOG_READ_BYTES_MAX, LOG_READ_ENTRIES_MAX};
pub use machine::{Machine, StateReader};
pub use mem_store::{open_mem, open_mem_disk, MemDisk, MemLogStore, MemStateMachine};
pub use sled_store::{
    open_sled, SledLogStore, SledStateMachine, SLED_LOG_TREE, SLED_META_TREE, SLED_SNAPSHOT_TREE,
};

#[cfg(test)]
mod test_support;

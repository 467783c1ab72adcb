//! Raft storage for consentry, knowing nothing of monitoring.
//!
//! openraft 0.9 `storage-v2` implementations: a sled-backed log store and state-machine
//! store, and an in-memory twin of each for simulation and tests. The state-machine stores
//! are generic over a pure application [`Machine`]; they hold it in memory behind a
//! [`StateReader`], apply committed entries to it, and persist it as snapshots. All bytes go
//! through [`codec`].

pub mod codec;
mod machine;

pub use machine::{Machine, StateReader};

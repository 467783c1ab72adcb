//! The seam between the generic raft state-machine stores and the application.

use std::sync::{Arc, RwLock};

use openraft::{LogId, RaftTypeConfig, StoredMembership};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

/// An application state machine that the stores drive.
///
/// Implementations are pure: the same sequence of calls yields the same state on every
/// replica. No clock, no randomness, no I/O.
pub trait Machine<C: RaftTypeConfig>:
    Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// Applies one normal log entry's payload and returns the client's response.
    fn apply(&mut self, log_id: &LogId<C::NodeId>, data: &C::D) -> C::R;

    /// Called for every membership entry (and blank entries pass `None`), so the
    /// application can learn the members' metadata (site, role) deterministically.
    fn apply_membership(
        &mut self,
        log_id: &LogId<C::NodeId>,
        membership: Option<&StoredMembership<C::NodeId, C::Node>>,
    ) -> C::R;
}

/// A cloneable read handle onto the applied application state.
///
/// Readers take short read locks; the store takes the write lock only while applying.
/// `subscribe` yields the last applied log index after every apply batch.
pub struct StateReader<M> {
    state: Arc<RwLock<M>>,
    applied_rx: watch::Receiver<u64>,
}

impl<M> Clone for StateReader<M> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            applied_rx: self.applied_rx.clone(),
        }
    }
}

impl<M> StateReader<M> {
    pub(crate) fn new(state: Arc<RwLock<M>>, applied_rx: watch::Receiver<u64>) -> Self {
        Self { state, applied_rx }
    }

    /// Runs `f` with the current applied state.
    ///
    /// # Panics
    /// If the store panicked while applying (poisoned lock): a replica that failed an
    /// invariant must stop rather than serve a half-applied state.
    pub fn read<T>(&self, f: impl FnOnce(&M) -> T) -> T {
        let guard = self.state.read().expect("state machine lock poisoned");
        f(&guard)
    }

    /// A receiver that changes whenever entries are applied; its value is the last applied
    /// log index (0 before anything was applied).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied_rx.clone()
    }
}

//! Who dials peers: the endpoint and the client TLS configuration new connections use.
//!
//! quinn keeps a client configuration per `Endpoint` handle, not per endpoint, so a
//! certificate reloaded on SIGHUP would reach only the handle it was set on. Every part of
//! a node that dials (openraft's network, forwarded writes) holds a clone of one `Dialer`,
//! and [`Dialer::set_client_config`] changes what all of them present from the next
//! connection on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::types::NodeId;

#[derive(Clone, Debug)]
pub struct Dialer {
    endpoint: quinn::Endpoint,
    /// `None`: the endpoint's own default client configuration.
    client: Arc<RwLock<Option<quinn::ClientConfig>>>,
    /// When each peer last answered an RPC this node sent.
    answers: Arc<Mutex<BTreeMap<NodeId, Instant>>>,
}

impl Dialer {
    pub fn new(endpoint: quinn::Endpoint) -> Self {
        Self {
            endpoint,
            client: Arc::default(),
            answers: Arc::default(),
        }
    }

    /// Notes that `peer` answered an RPC just now.
    #[allow(clippy::disallowed_methods)] // Transport timing; tokio's clock (simulated under turmoil).
    pub(crate) fn record_answer(&self, peer: NodeId) {
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        answers.insert(peer, Instant::now());
    }

    /// How long ago `peer` last answered an RPC from this node (`None`: never, or not
    /// since this process started). The leader talks to every member each heartbeat; a
    /// follower mostly to the leader.
    #[allow(clippy::disallowed_methods)] // Transport timing; tokio's clock (simulated under turmoil).
    pub fn since_answer(&self, peer: NodeId) -> Option<Duration> {
        let answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        answers
            .get(&peer)
            .map(|at| Instant::now().saturating_duration_since(*at))
    }

    /// The client configuration every clone of this dialer uses for new connections.
    pub fn set_client_config(&self, config: quinn::ClientConfig) {
        match self.client.write() {
            Ok(mut slot) => *slot = Some(config),
            Err(poisoned) => *poisoned.into_inner() = Some(config),
        }
    }

    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    pub(crate) fn connect(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<quinn::Connecting, quinn::ConnectError> {
        let config = match self.client.read() {
            Ok(slot) => slot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        match config {
            Some(config) => self.endpoint.connect_with(config, addr, server_name),
            None => self.endpoint.connect(addr, server_name),
        }
    }
}

impl From<quinn::Endpoint> for Dialer {
    fn from(endpoint: quinn::Endpoint) -> Self {
        Self::new(endpoint)
    }
}

impl From<&quinn::Endpoint> for Dialer {
    fn from(endpoint: &quinn::Endpoint) -> Self {
        Self::new(endpoint.clone())
    }
}

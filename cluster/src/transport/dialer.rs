//! Who dials peers: the endpoint and the client TLS configuration new connections use.
//!
//! quinn keeps a client configuration per `Endpoint` handle, not per endpoint, so a
//! certificate reloaded on SIGHUP would reach only the handle it was set on. Every part of
//! a node that dials (openraft's network, forwarded writes) holds a clone of one `Dialer`,
//! and [`Dialer::set_client_config`] changes what all of them present from the next
//! connection on.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

#[derive(Clone, Debug)]
pub struct Dialer {
    endpoint: quinn::Endpoint,
    /// `None`: the endpoint's own default client configuration.
    client: Arc<RwLock<Option<quinn::ClientConfig>>>,
}

impl Dialer {
    pub fn new(endpoint: quinn::Endpoint) -> Self {
        Self {
            endpoint,
            client: Arc::default(),
        }
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

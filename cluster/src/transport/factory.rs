//! Where openraft gets a [`QuicNetwork`] for each peer.

use openraft::network::RaftNetworkFactory;

use crate::transport::peer::PeerConnection;
use crate::transport::QuicNetwork;
use crate::types::{ClusterNode, NodeId, TypeConfig};

/// Makes one [`QuicNetwork`] per target over a shared endpoint (see
/// [`crate::transport::endpoint`]). Connections are opened on first use, not here.
#[derive(Clone)]
pub struct QuicNetworkFactory {
    dialer: crate::transport::Dialer,
    self_id: NodeId,
}

impl QuicNetworkFactory {
    pub fn new(dialer: impl Into<crate::transport::Dialer>, self_id: NodeId) -> Self {
        Self {
            dialer: dialer.into(),
            self_id,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for QuicNetworkFactory {
    type Network = QuicNetwork;

    async fn new_client(&mut self, target: NodeId, node: &ClusterNode) -> QuicNetwork {
        let peer =
            PeerConnection::new(self.dialer.clone(), self.self_id, target, node.addr.clone());
        QuicNetwork::new(peer, self.self_id, node.clone())
    }
}

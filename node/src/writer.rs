//! Client writes from any node reach the leader.

use std::time::Duration;

use consentry_cluster::command::{Command, CommandResponse};
use consentry_cluster::membership::{self, AdminError, AdminRequest};
use consentry_cluster::types::Raft;
use openraft::error::{ClientWriteError, RaftError};

use crate::error::WriteError;

/// Attempts before a write gives up (each waits `WRITE_BACKOFF_MS * attempt`).
pub const WRITE_ATTEMPTS_MAX: u32 = 8;
pub const WRITE_BACKOFF_MS: u64 = 150;
/// Timeout for one forwarded write.
pub const FORWARD_TIMEOUT_MS: u64 = 5_000;
/// Timeout for a forwarded membership request: a new learner may take a while to catch up.
pub const ADMIN_FORWARD_TIMEOUT_MS: u64 =
    consentry_cluster::membership::LEARNER_CATCH_UP_MS + 5_000;
/// Nodes a membership request may be handed to before it gives up.
const ADMIN_HOPS_MAX: usize = 3;

/// A cloneable handle that writes commands through raft from any node.
#[derive(Clone)]
pub struct Writer {
    raft: Raft,
    dialer: consentry_cluster::transport::Dialer,
    forwarder: std::sync::Arc<consentry_cluster::transport::Forwarder>,
    self_id: u64,
}

impl Writer {
    pub fn new(raft: Raft, dialer: consentry_cluster::transport::Dialer, self_id: u64) -> Self {
        Self {
            forwarder: std::sync::Arc::new(consentry_cluster::transport::Forwarder::new(
                dialer.clone(),
                self_id,
            )),
            raft,
            dialer,
            self_id,
        }
    }

    /// The dialer this node's transport shares (it knows when each peer last answered).
    pub fn dialer(&self) -> &consentry_cluster::transport::Dialer {
        &self.dialer
    }

    /// Commits `cmd` and returns the state machine's answer. On a follower the command is
    /// forwarded to the leader over the cluster's QUIC transport.
    ///
    /// # Errors
    /// When no leader can be reached within `WRITE_ATTEMPTS_MAX` attempts, or the state
    /// machine rejects the command.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the command committed or not; callers that must know
    /// use ids that make a repeat harmless.
    pub async fn write(&self, cmd: Command) -> Result<CommandResponse, WriteError> {
        let mut last = WriteError::NoLeader;
        for attempt in 1..=WRITE_ATTEMPTS_MAX {
            match self.raft.client_write(cmd.clone()).await {
                Ok(resp) => return settle(resp.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(fwd))) => {
                    if let (Some(leader), Some(node)) = (fwd.leader_id, fwd.leader_node) {
                        if leader != self.self_id {
                            match self
                                .forwarder
                                .client_write(
                                    leader,
                                    &node,
                                    cmd.clone(),
                                    Duration::from_millis(FORWARD_TIMEOUT_MS),
                                )
                                .await
                            {
                                Ok(resp) => return settle(resp.data),
                                Err(e) => {
                                    last = WriteError::Forward {
                                        leader,
                                        message: e.to_string(),
                                    }
                                }
                            }
                        }
                    } else {
                        last = WriteError::NoLeader;
                    }
                }
                Err(e) => last = WriteError::Raft(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(WRITE_BACKOFF_MS * u64::from(attempt))).await;
        }
        Err(WriteError::GaveUp {
            attempts: WRITE_ATTEMPTS_MAX,
            last: last.to_string(),
        })
    }
}

impl Writer {
    /// Runs an operator's membership request on the leader, or a leadership hand-over on
    /// node `to` (`None`: this node). Follows one change of leader.
    ///
    /// # Errors
    /// The leader's or the target's refusal, or why neither could be reached.
    pub async fn admin(
        &self,
        request: AdminRequest,
        to: Option<u64>,
    ) -> Result<String, AdminError> {
        let mut target = to.filter(|t| *t != self.self_id);
        for _ in 0..ADMIN_HOPS_MAX {
            let result = match target {
                None => membership::execute(&self.raft, request.clone()).await,
                Some(id) => {
                    let node = self
                        .raft
                        .metrics()
                        .borrow()
                        .membership_config
                        .membership()
                        .get_node(&id)
                        .cloned()
                        .ok_or_else(|| AdminError::Refused(format!("node {id} is not a member")))?;
                    consentry_cluster::transport::forward_admin(
                        self.dialer.clone(),
                        self.self_id,
                        id,
                        &node,
                        request.clone(),
                        Duration::from_millis(ADMIN_FORWARD_TIMEOUT_MS),
                    )
                    .await
                    .map_err(|e| AdminError::Raft(format!("node {id} could not be reached: {e}")))?
                }
            };
            match result {
                Err(AdminError::NotLeader {
                    leader: Some((leader, _)),
                    ..
                }) if request.needs_leader() && Some(leader) != target => {
                    target = (leader != self.self_id).then_some(leader);
                }
                Err(AdminError::NotLeader { leader: None, .. }) => {
                    return Err(AdminError::Raft(WriteError::NoLeader.to_string()))
                }
                other => return other,
            }
        }
        Err(AdminError::Raft(
            "the leader changed while the request was forwarded; try again".into(),
        ))
    }
}

fn settle(resp: CommandResponse) -> Result<CommandResponse, WriteError> {
    match resp {
        CommandResponse::Rejected(why) => Err(WriteError::Rejected(why)),
        ok => Ok(ok),
    }
}

//! Client writes from any node reach the leader.

use std::sync::Arc;
use std::time::Duration;

use consentry_cluster::command::{Command, CommandResponse};
use consentry_cluster::membership::{self, AdminError, AdminRequest};
use consentry_cluster::types::ClusterNode;
use consentry_cluster::types::Raft;
use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::error::WriteError;

/// Attempts before a write gives up (each waits `WRITE_BACKOFF_MS * attempt`).
pub const WRITE_ATTEMPTS_MAX: u32 = 8;
pub const WRITE_BACKOFF_MS: u64 = 150;
/// Timeout for one forwarded write.
pub const FORWARD_TIMEOUT_MS: u64 = 5_000;
/// Timeout for a forwarded membership request: a new learner may take a while to catch up.
pub const ADMIN_FORWARD_TIMEOUT_MS: u64 =
    consentry_cluster::membership::LEARNER_CATCH_UP_MS + 5_000;

/// How long a leader holds new writes while it hands over: long enough for the
/// successor to win its election, well inside a forwarded write's timeout.
pub const TRANSFER_PAUSE_MAX_MS: u64 = 2_000;
/// What a successor asked to stand may take beyond its own election wait to answer.
const TAKE_LEADERSHIP_SLACK_MS: u64 = 2_000;
/// How far behind (in entries) the successor may be when the leader starts holding writes;
/// the rest it receives while they are held.
pub const TRANSFER_PAUSE_LAG_MAX: u64 = 64;

/// A cloneable handle that writes commands through raft from any node.
#[derive(Clone)]
pub struct Writer {
    raft: Raft,
    dialer: consentry_cluster::transport::Dialer,
    forwarder: Arc<consentry_cluster::transport::Forwarder>,
    self_id: u64,
    clock: Arc<dyn Clock>,
    /// Every write this node proposes holds it shared; a leadership transfer holds it
    /// exclusively, so the leader's log stops growing while the successor catches up.
    proposals: Arc<tokio::sync::RwLock<()>>,
    /// `(term, monotonic ms)` when this node was first seen leading in `term`.
    leading_since: Arc<std::sync::Mutex<Option<(u64, u64)>>>,
}

impl Writer {
    pub fn new(
        raft: Raft,
        dialer: consentry_cluster::transport::Dialer,
        self_id: u64,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            forwarder: Arc::new(consentry_cluster::transport::Forwarder::new(
                dialer.clone(),
                self_id,
            )),
            raft,
            dialer,
            self_id,
            clock,
            proposals: Arc::new(tokio::sync::RwLock::new(())),
            leading_since: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// Records when this node starts leading each term, until `cancel`. A leader refuses
    /// votes for one election timeout after it took over (openraft's leader lease), so a
    /// transfer waits that long.
    pub async fn track_leadership(self, cancel: CancellationToken) {
        let mut metrics = self.raft.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                let leading = (m.state == ServerState::Leader).then_some(m.current_term);
                let mut since = self
                    .leading_since
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match leading {
                    Some(term) if since.is_none_or(|(t, _)| t != term) => {
                        *since = Some((term, self.clock.monotonic_ms()));
                    }
                    Some(_) => {}
                    None => *since = None,
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = metrics.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Proposes `cmd` to this node's raft, unless a leadership transfer holds proposals
    /// (then it waits for the transfer, at most [`TRANSFER_PAUSE_MAX_MS`]). A forwarded
    /// write from a follower lands here too.
    pub async fn propose(
        &self,
        cmd: Command,
    ) -> Result<
        openraft::raft::ClientWriteResponse<consentry_cluster::types::TypeConfig>,
        RaftError<u64, ClientWriteError<u64, ClusterNode>>,
    > {
        let _open = self.proposals.read().await;
        self.raft.client_write(cmd).await
    }

    /// Asks leader `leader` for the read index of a consistent read, over the connection
    /// this node forwards writes on.
    ///
    /// # Errors
    /// The transport action that failed; the leader's refusal is the `Ok` value's `Err`.
    pub async fn read_index(
        &self,
        leader: u64,
        node: &ClusterNode,
        timeout: Duration,
    ) -> Result<
        Result<membership::LeaderRead, AdminError>,
        consentry_cluster::transport::TransportError,
    > {
        self.forwarder.read_index(leader, node, timeout).await
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
            match self.propose(cmd.clone()).await {
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
    /// Runs an operator's request on the leader: here when this node leads, otherwise on the
    /// leader that the refusal names, over the cluster transport. While no leader is known
    /// it waits and asks again, as [`Writer::write`] does.
    ///
    /// # Errors
    /// The leader's refusal; `NotLeader` when no leader was found in `WRITE_ATTEMPTS_MAX`
    /// tries; `Unreachable` when the leader did not answer (the change may have been made).
    pub async fn admin(&self, request: AdminRequest) -> Result<String, AdminError> {
        let mut leader: Option<(u64, ClusterNode)> = None;
        let mut last = AdminError::NotLeader {
            node: self.self_id,
            leader: None,
        };
        for attempt in 1..=WRITE_ATTEMPTS_MAX {
            let result = match &leader {
                None => self.admin_here(request.clone()).await,
                Some((id, node)) => self.forward_admin(*id, node, request.clone()).await,
            };
            match result {
                Err(AdminError::NotLeader { leader: named, .. }) => {
                    leader = named.filter(|(id, _)| *id != self.self_id);
                    last = AdminError::NotLeader {
                        node: self.self_id,
                        leader: leader.clone(),
                    };
                }
                other => return other,
            }
            tokio::time::sleep(Duration::from_millis(WRITE_BACKOFF_MS * u64::from(attempt))).await;
        }
        Err(last)
    }

    /// Sends `request` to node `id` and returns its answer; a transport failure is
    /// `Unreachable`, since the request may or may not have been carried out.
    async fn forward_admin(
        &self,
        id: u64,
        node: &ClusterNode,
        request: AdminRequest,
    ) -> Result<String, AdminError> {
        self.forward_admin_within(
            id,
            node,
            request,
            Duration::from_millis(ADMIN_FORWARD_TIMEOUT_MS),
        )
        .await
    }

    /// [`Self::forward_admin`] with its own timeout.
    async fn forward_admin_within(
        &self,
        id: u64,
        node: &ClusterNode,
        request: AdminRequest,
        timeout: Duration,
    ) -> Result<String, AdminError> {
        consentry_cluster::transport::forward_admin(
            self.dialer.clone(),
            self.self_id,
            id,
            node,
            request,
            timeout,
        )
        .await
        .unwrap_or_else(|e| {
            Err(AdminError::Unreachable {
                node: id,
                message: e.to_string(),
            })
        })
    }
}

impl Writer {
    /// Runs `request` on this node only (a forwarded request lands here).
    pub async fn admin_here(&self, request: AdminRequest) -> Result<String, AdminError> {
        match request {
            AdminRequest::TransferLeader { to } => self.transfer_leader(to).await,
            other => membership::execute(&self.raft, other).await,
        }
    }

    /// On the leader: hands leadership to voter `to`. openraft 0.9 has no transfer, so the
    /// leader makes the election one that `to` wins: it waits until its own leader lease
    /// is over (it refuses votes before that), holds new proposals so its log stops
    /// growing, waits until `to` has every entry, and asks `to` to stand. A leader grants
    /// its vote to a candidate whose log is as long as its own; with three voters that and
    /// the candidate's own vote are a majority.
    async fn transfer_leader(&self, to: u64) -> Result<String, AdminError> {
        membership::leader_only(&self.raft)?;
        if to == self.self_id {
            return Ok(format!("node {to} is already the leader"));
        }
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        if !membership.voter_ids().any(|v| v == to) {
            return Err(AdminError::Refused(format!(
                "node {to} is not a voter; promote it first"
            )));
        }
        let node = membership
            .get_node(&to)
            .cloned()
            .ok_or_else(|| AdminError::Refused(format!("node {to} is not a member")))?;
        self.catch_up(to, TRANSFER_PAUSE_LAG_MAX, membership::TRANSFER_CATCH_UP_MS)
            .await?;
        self.wait_out_lease(metrics.current_term).await?;

        // One cap for the whole hold: new writes queue behind the pending exclusive lock
        // too, so it starts before the lock is asked for.
        let until = tokio::time::sleep(Duration::from_millis(TRANSFER_PAUSE_MAX_MS)).deadline();
        let held = tokio::time::timeout_at(until, self.proposals.write())
            .await
            .map_err(|_| {
                AdminError::Refused(format!(
                    "writes in flight did not commit within {} s; nothing was changed",
                    TRANSFER_PAUSE_MAX_MS / 1_000
                ))
            })?;
        // The successor gets the last entries while nothing new is proposed.
        let caught_up =
            tokio::time::timeout_at(until, self.catch_up(to, 0, TRANSFER_PAUSE_MAX_MS)).await;
        if let Err(e) = caught_up.unwrap_or_else(|_| {
            Err(AdminError::Refused(format!(
                "node {to} did not get the last entries within {} s; nothing was changed",
                TRANSFER_PAUSE_MAX_MS / 1_000
            )))
        }) {
            drop(held);
            return Err(e);
        }
        // Proposals stay held until this node stops leading, the successor answers, or the
        // cap; writes waiting behind them then go on to whichever node leads.
        let mut ask = Box::pin(self.forward_admin_within(
            to,
            &node,
            AdminRequest::TakeLeadership,
            Duration::from_millis(membership::TAKE_LEADERSHIP_MS + TAKE_LEADERSHIP_SLACK_MS),
        ));
        let stepped_down = async {
            let wait = self.raft.wait(None);
            wait.metrics(|m| m.state != ServerState::Leader, "this node stepped down")
                .await
        };
        let early = tokio::time::timeout_at(until, async {
            tokio::select! {
                answer = &mut ask => Some(answer),
                _ = stepped_down => None,
            }
        })
        .await;
        drop(held);
        match early {
            Ok(Some(answer)) => answer,
            _ => ask.await,
        }
    }

    /// Waits until voter `to` is at most `lag_max` entries behind this leader.
    async fn catch_up(&self, to: u64, lag_max: u64, wait_ms: u64) -> Result<(), AdminError> {
        let caught_up = self
            .raft
            .wait(Some(Duration::from_millis(wait_ms)))
            .metrics(
                |m| membership::lag_of(m, to).is_some_and(|lag| lag <= lag_max),
                "the new leader has the entries",
            )
            .await;
        caught_up.map(|_| ()).map_err(|_| {
            AdminError::Refused(format!(
                "node {to} did not catch up with the leader within {:.1} s ({} entries \
                 behind); nothing was changed",
                wait_ms as f64 / 1_000.0,
                membership::lag(&self.raft, to).map_or("?".into(), |l| l.to_string())
            ))
        })
    }

    /// Sleeps until this node has led `term` for longer than the leader lease (one
    /// maximum election timeout), with a margin for when the lease was taken.
    async fn wait_out_lease(&self, term: u64) -> Result<(), AdminError> {
        let since = *self
            .leading_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let lease = crate::server::ELECTION_TIMEOUT_MS_MAX + crate::server::HEARTBEAT_MS;
        let led_ms = match since {
            Some((t, at)) if t == term => self.clock.monotonic_ms().saturating_sub(at),
            // Not tracked yet (the tracker runs on the metrics this call just read).
            _ => 0,
        };
        if led_ms < lease {
            tokio::time::sleep(Duration::from_millis(lease - led_ms)).await;
        }
        membership::leader_only(&self.raft)
    }
}

/// What the transport server calls: the local raft, and this node's writer for operators'
/// requests that need more than raft (a leadership transfer).
pub struct NodeRpc {
    pub raft: Raft,
    pub writer: Writer,
    /// For agents: their dispatches are read from the applied state.
    pub state: consentry_storage::StateReader<consentry_cluster::state::ClusterState>,
    pub self_id: u64,
}

impl consentry_cluster::transport::RpcHandler for NodeRpc {
    async fn append_entries(
        &self,
        rpc: openraft::raft::AppendEntriesRequest<consentry_cluster::types::TypeConfig>,
    ) -> Result<openraft::raft::AppendEntriesResponse<u64>, RaftError<u64>> {
        self.raft.append_entries(rpc).await
    }

    async fn vote(
        &self,
        rpc: openraft::raft::VoteRequest<u64>,
    ) -> Result<openraft::raft::VoteResponse<u64>, RaftError<u64>> {
        self.raft.vote(rpc).await
    }

    async fn install_snapshot(
        &self,
        rpc: openraft::raft::InstallSnapshotRequest<consentry_cluster::types::TypeConfig>,
    ) -> Result<
        openraft::raft::InstallSnapshotResponse<u64>,
        RaftError<u64, openraft::error::InstallSnapshotError>,
    > {
        self.raft.install_snapshot(rpc).await
    }

    async fn client_write(
        &self,
        command: Command,
    ) -> Result<
        openraft::raft::ClientWriteResponse<consentry_cluster::types::TypeConfig>,
        RaftError<u64, ClientWriteError<u64, ClusterNode>>,
    > {
        self.writer.propose(command).await
    }

    async fn admin(&self, request: AdminRequest) -> membership::AdminResult {
        self.writer.admin_here(request).await
    }

    async fn read_index(&self) -> Result<membership::LeaderRead, membership::AdminError> {
        membership::read_index(&self.raft).await
    }

    async fn agent(
        &self,
        agent: &str,
        request: consentry_cluster::agent::AgentRequest,
    ) -> consentry_cluster::agent::AgentResponse {
        crate::agent::hub::answer(&self.writer, &self.state, self.self_id, agent, request).await
    }
}

fn settle(resp: CommandResponse) -> Result<CommandResponse, WriteError> {
    match resp {
        CommandResponse::Rejected(why) => Err(WriteError::Rejected(why)),
        ok => Ok(ok),
    }
}

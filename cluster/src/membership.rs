//! Membership operations an operator asks for: add a learner, promote it, remove a node,
//! and hand leadership to a node.
//!
//! The leader runs the first three (openraft's `add_learner` and `change_membership`); any
//! node forwards them to it over the cluster transport ([`crate::transport::RpcBody::Admin`]).
//! openraft 0.9 has no leadership transfer. The leader holds new writes, waits until the new
//! leader has every entry it has, then asks it to stand for election
//! ([`openraft::Raft::trigger`]; the node side is `consentry_node::writer`). A leader grants
//! a vote to a candidate whose log is as long as its own, and with three voters that is a
//! majority (see docs/operations.md for larger clusters).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use serde::{Deserialize, Serialize};

use crate::types::{ClusterNode, NodeId, Raft};

/// How long an added learner may take to catch up before the answer says it still is.
pub const LEARNER_CATCH_UP_MS: u64 = 20_000;
/// How long a node standing for election waits to be seen as leader.
pub const TAKE_LEADERSHIP_MS: u64 = 3_000;
/// How long the leader waits for the new leader to come within a few entries of its log.
pub const TRANSFER_CATCH_UP_MS: u64 = 5_000;
/// A learner further behind than this many log entries is not promoted.
pub const PROMOTE_LAG_MAX: u64 = 200;
/// How long a voter change may take to commit (a leader that lost its quorum never commits).
pub const CHANGE_MEMBERSHIP_MS: u64 = 20_000;

/// What an operator asks of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Add `id` as a learner: it replicates the log (and probes, when `node.probe`) but
    /// does not vote.
    AddLearner { id: NodeId, node: ClusterNode },
    /// Make learner `id` a voter.
    Promote { id: NodeId },
    /// Remove `id`, voter or learner, from the cluster.
    Remove { id: NodeId },
    /// Asks the receiving node to become the leader (sent by the leader during a transfer).
    TakeLeadership,
    /// Hand leadership to voter `to`: the leader waits until `to` has every entry it has,
    /// then asks it to stand (the node runs this; see `consentry_node::writer`).
    TransferLeader { to: NodeId },
}

impl AdminRequest {
    /// Whether [`execute`] runs it on raft alone (a transfer needs the node's transport).
    pub fn raft_only(&self) -> bool {
        !matches!(self, Self::TransferLeader { .. })
    }
}

/// Why an operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AdminError {
    /// This node is not the leader; the leader, when known.
    #[error("node {node} is not the leader")]
    NotLeader {
        node: NodeId,
        leader: Option<(NodeId, ClusterNode)>,
    },
    /// The request makes no sense for the current membership (with why).
    #[error("{0}")]
    Refused(String),
    /// raft could not do it (no quorum, a change already in progress, shutting down).
    #[error("raft: {0}")]
    Raft(String),
    /// The node it was sent to did not answer: it may or may not have carried it out.
    /// Kept last: bincode numbers variants by position.
    #[error(
        "node {node} did not answer ({message}); the change may have been made: check \
         `consentry cluster status`"
    )]
    Unreachable { node: NodeId, message: String },
}

/// What a successful operation did, in words for the operator.
pub type AdminResult = Result<String, AdminError>;

/// Runs `request` on this node's raft.
pub async fn execute(raft: &Raft, request: AdminRequest) -> AdminResult {
    match request {
        AdminRequest::AddLearner { id, node } => add_learner(raft, id, node).await,
        AdminRequest::Promote { id } => promote(raft, id).await,
        AdminRequest::Remove { id } => remove(raft, id).await,
        AdminRequest::TakeLeadership => take_leadership(raft).await,
        AdminRequest::TransferLeader { .. } => Err(AdminError::Refused(
            "a leadership transfer needs the node's transport, not raft alone".into(),
        )),
    }
}

/// The current membership: voter ids and every node (voters and learners).
fn membership(raft: &Raft) -> (BTreeSet<NodeId>, BTreeMap<NodeId, ClusterNode>) {
    let metrics = raft.metrics().borrow().clone();
    let m = metrics.membership_config.membership();
    (
        m.voter_ids().collect(),
        m.nodes().map(|(id, n)| (*id, n.clone())).collect(),
    )
}

/// `NotLeader` unless this node leads.
pub fn leader_only(raft: &Raft) -> Result<(), AdminError> {
    let metrics = raft.metrics().borrow().clone();
    if metrics.state == ServerState::Leader {
        return Ok(());
    }
    let leader = metrics.current_leader.and_then(|id| {
        metrics
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| (id, n.clone()))
    });
    Err(AdminError::NotLeader {
        node: metrics.id,
        leader,
    })
}

fn raft_error(
    raft: &Raft,
    e: RaftError<NodeId, ClientWriteError<NodeId, ClusterNode>>,
) -> AdminError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(fwd)) => AdminError::NotLeader {
            node: raft.metrics().borrow().id,
            leader: fwd.leader_id.zip(fwd.leader_node),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            AdminError::Refused(e.to_string())
        }
        other => AdminError::Raft(other.to_string()),
    }
}

/// Entries `id` is behind the leader's last log entry, from the leader's metrics (`None`:
/// this node is not replicating to it: not the leader, or `id` is not a member).
pub fn lag_of(m: &openraft::RaftMetrics<NodeId, ClusterNode>, id: NodeId) -> Option<u64> {
    let last = m.last_log_index.unwrap_or(0);
    let matched = m.replication.as_ref()?.get(&id).copied()?;
    Some(last.saturating_sub(matched.map_or(0, |l| l.index)))
}

/// The leader's answer to a consistent read: the log index a reader must have applied to
/// see everything committed when it asked, and each member's replication lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRead {
    pub index: u64,
    /// `(member, entries behind the leader)` as the leader sees it.
    pub lags: Vec<(NodeId, u64)>,
}

/// Confirms this node still leads (a heartbeat round to a quorum) and returns the read
/// index: openraft's `ensure_linearizable`.
///
/// # Errors
/// `NotLeader` (with the leader, when known) or `Refused` with raft's reason.
pub async fn read_index(raft: &Raft) -> Result<LeaderRead, AdminError> {
    match raft.ensure_linearizable().await {
        Ok(read) => {
            let m = raft.metrics().borrow().clone();
            let lags = m
                .membership_config
                .membership()
                .nodes()
                .filter_map(|(id, _)| lag_of(&m, *id).map(|l| (*id, l)))
                .collect();
            Ok(LeaderRead {
                index: read.map_or(0, |l| l.index),
                lags,
            })
        }
        Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(fwd))) => {
            Err(AdminError::NotLeader {
                node: raft.metrics().borrow().id,
                leader: fwd.leader_id.zip(fwd.leader_node),
            })
        }
        Err(e) => Err(AdminError::Refused(format!(
            "the leader could not confirm its leadership: {e}"
        ))),
    }
}

/// [`lag_of`] on this node's current metrics.
pub fn lag(raft: &Raft, id: NodeId) -> Option<u64> {
    lag_of(&raft.metrics().borrow(), id)
}

async fn add_learner(raft: &Raft, id: NodeId, node: ClusterNode) -> AdminResult {
    leader_only(raft)?;
    if node.addr.trim().is_empty() || node.site.trim().is_empty() {
        return Err(AdminError::Refused(
            "a new node needs its raft address and its site".into(),
        ));
    }
    let (voters, nodes) = membership(raft);
    if voters.contains(&id) {
        return Err(AdminError::Refused(format!("node {id} is already a voter")));
    }
    if let Some(existing) = nodes.get(&id) {
        if *existing != node {
            return Err(AdminError::Refused(format!(
                "node {id} is already a learner as {existing} (probe = {}); remove it first to \
                 change its address, site or role",
                existing.probe
            )));
        }
    }
    if let Some((other, _)) = nodes
        .iter()
        .find(|(other, n)| **other != id && n.addr == node.addr)
    {
        return Err(AdminError::Refused(format!(
            "node {other} already uses the raft address {}",
            node.addr
        )));
    }
    let role = if node.probe {
        "probing learner"
    } else {
        "learner"
    };
    let described = format!("node {id} ({node})");
    {
        let raft = raft.clone();
        commit_change(&raft.clone(), async move {
            raft.add_learner(id, node, false).await
        })
        .await?;
    }
    let wait = Duration::from_millis(LEARNER_CATCH_UP_MS);
    let caught_up = raft
        .wait(Some(wait))
        .metrics(|m| lag_of(m, id) == Some(0), "the learner has every entry")
        .await;
    match caught_up {
        Ok(_) => Ok(format!("{described} added as a {role} and caught up")),
        Err(_) => Ok(format!(
            "{described} added as a {role}; it has not caught up within {} s (is it running, \
             and does its certificate come from this cluster's CA?)",
            LEARNER_CATCH_UP_MS / 1_000
        )),
    }
}

async fn promote(raft: &Raft, id: NodeId) -> AdminResult {
    leader_only(raft)?;
    let (voters, nodes) = membership(raft);
    if voters.contains(&id) {
        return Ok(format!("node {id} is already a voter"));
    }
    if !nodes.contains_key(&id) {
        return Err(AdminError::Refused(format!(
            "node {id} is not a learner; add it first (consentry cluster add)"
        )));
    }
    match lag(raft, id) {
        Some(behind) if behind <= PROMOTE_LAG_MAX => {}
        Some(behind) => {
            return Err(AdminError::Refused(format!(
                "node {id} is {behind} log entries behind (at most {PROMOTE_LAG_MAX} to be \
                 promoted); wait for it to catch up"
            )))
        }
        None => {
            return Err(AdminError::Refused(format!(
                "the leader is not replicating to node {id} yet"
            )))
        }
    }
    change_membership(raft, ChangeMembers::AddVoterIds(BTreeSet::from([id]))).await?;
    Ok(format!("node {id} is a voter"))
}

async fn remove(raft: &Raft, id: NodeId) -> AdminResult {
    leader_only(raft)?;
    let (voters, nodes) = membership(raft);
    if !nodes.contains_key(&id) {
        return Err(AdminError::Refused(format!("node {id} is not a member")));
    }
    let change = if voters.contains(&id) {
        if voters.len() == 1 {
            return Err(AdminError::Refused(format!(
                "node {id} is the only voter; add and promote another node first"
            )));
        }
        // `retain = false`: the removed voter leaves the cluster, not the voter set only.
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    };
    change_membership(raft, change).await?;
    Ok(format!("node {id} removed"))
}

/// `change_membership` with `retain = false` (a removed voter leaves the cluster).
async fn change_membership(
    raft: &Raft,
    change: ChangeMembers<NodeId, ClusterNode>,
) -> Result<(), AdminError> {
    let task_raft = raft.clone();
    commit_change(raft, async move {
        task_raft.change_membership(change, false).await
    })
    .await
}

/// Runs a membership change to its end in a task of its own, and waits for it at most
/// [`CHANGE_MEMBERSHIP_MS`]. A voter change commits in two phases, so a caller that gives
/// up (an HTTP client that hangs up, the RPC handler's timeout) must not stop it between
/// them; and a leader that lost its quorum never commits.
async fn commit_change<F>(raft: &Raft, change: F) -> Result<(), AdminError>
where
    F: std::future::Future<
            Output = Result<
                openraft::raft::ClientWriteResponse<crate::types::TypeConfig>,
                RaftError<NodeId, ClientWriteError<NodeId, ClusterNode>>,
            >,
        > + Send
        + 'static,
{
    let wait = Duration::from_millis(CHANGE_MEMBERSHIP_MS);
    match tokio::time::timeout(wait, tokio::spawn(change)).await {
        Ok(Ok(Ok(_))) => Ok(()),
        Ok(Ok(Err(e))) => Err(raft_error(raft, e)),
        Ok(Err(join)) => Err(AdminError::Raft(format!("the change stopped: {join}"))),
        Err(_) => Err(AdminError::Raft(format!(
            "the change did not commit within {} s (has the leader lost its quorum?); it may \
             still commit: check `consentry cluster status`",
            CHANGE_MEMBERSHIP_MS / 1_000
        ))),
    }
}

async fn take_leadership(raft: &Raft) -> AdminResult {
    let metrics = raft.metrics().borrow().clone();
    let me = metrics.id;
    if metrics.state == ServerState::Leader {
        return Ok(format!("node {me} is already the leader"));
    }
    if !metrics
        .membership_config
        .membership()
        .voter_ids()
        .any(|v| v == me)
    {
        return Err(AdminError::Refused(format!(
            "node {me} is not a voter; promote it first"
        )));
    }
    raft.trigger()
        .elect()
        .await
        .map_err(|e| AdminError::Raft(e.to_string()))?;
    let won = raft
        .wait(Some(Duration::from_millis(TAKE_LEADERSHIP_MS)))
        .metrics(|m| m.state == ServerState::Leader, "this node leads")
        .await;
    match won {
        Ok(m) => Ok(format!("node {me} is the leader (term {})", m.current_term)),
        Err(_) => {
            let now = raft.metrics().borrow().clone();
            Err(AdminError::Refused(format!(
                "node {me} stood for election but did not win within {} s (leader now: {}); \
                 the other voters still heard from the old leader, or this node's log is \
                 behind theirs. Nothing is lost: it is safe to run again",
                TAKE_LEADERSHIP_MS / 1_000,
                now.current_leader
                    .map_or_else(|| "none".to_string(), |l| l.to_string())
            )))
        }
    }
}

//! A node's side of its agents' connections: commits their reports and outcomes, and hands
//! them the dispatches committed for them (see `consentry_cluster::agent`).

use std::time::Duration;

use consentry_cluster::agent::{
    AgentRequest, AgentResponse, POLL_DISPATCHES_MAX, POLL_WAIT_MS_MAX,
};
use consentry_cluster::command::Command;
use consentry_cluster::model::{StepAction, StepOutcome};
use consentry_cluster::state::ClusterState;
use consentry_storage::StateReader;
use tracing::{debug, warn};

use crate::writer::Writer;

/// Answers one request of agent `agent` (the name in its certificate, never a message's).
pub async fn answer(
    writer: &Writer,
    state: &StateReader<ClusterState>,
    self_id: u64,
    agent: &str,
    request: AgentRequest,
) -> AgentResponse {
    match request {
        AgentRequest::Report(report) => {
            let seq = report.seq;
            // Bounded here, before it reaches the log: a frame may carry up to 32 MiB.
            let cmd = Command::AgentReport {
                agent: agent.to_string(),
                node_id: self_id,
                report: report.bounded(),
            };
            match writer.write(cmd).await {
                Ok(_) => AgentResponse::Committed,
                Err(e) => {
                    debug!(agent, seq, error = %e, "committing an agent report failed");
                    AgentResponse::Refused(format!("report not committed: {e}"))
                }
            }
        }
        AgentRequest::Outcome(outcome) => {
            let mine = state.read(|s| {
                s.recoveries.get(&outcome.intent_id).map(
                    |r| matches!(&r.spec.action, StepAction::Agent { agent: a, .. } if a == agent),
                )
            });
            if mine == Some(false) {
                warn!(
                    agent,
                    intent = outcome.intent_id,
                    "refusing an outcome for another agent's step"
                );
                return AgentResponse::Refused(format!(
                    "recovery step {} is not agent {agent}'s",
                    outcome.intent_id
                ));
            }
            let cmd = Command::StepOutcome(StepOutcome {
                by: format!("agent {agent}"),
                outcome: outcome.outcome.bounded(),
                ..outcome
            });
            match writer.write(cmd).await {
                Ok(_) => AgentResponse::Committed,
                Err(e) => AgentResponse::Refused(format!("outcome not committed: {e}")),
            }
        }
        AgentRequest::Poll { wait_ms } => {
            let wait = Duration::from_millis(u64::from(wait_ms.min(POLL_WAIT_MS_MAX)));
            let mut applied = state.subscribe();
            let waiting = async {
                loop {
                    let mut ready = state.read(|s| s.agent_dispatches(agent));
                    if !ready.is_empty() {
                        ready.truncate(POLL_DISPATCHES_MAX);
                        return ready;
                    }
                    if applied.changed().await.is_err() {
                        return Vec::new();
                    }
                }
            };
            AgentResponse::Dispatches(
                tokio::time::timeout(wait, waiting)
                    .await
                    .unwrap_or_default(),
            )
        }
    }
}

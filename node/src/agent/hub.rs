//! A node's side of its agents' connections: commits their reports and outcomes, and hands
//! them the dispatches committed for them (see `consentry_cluster::agent`).

use std::time::Duration;

use consentry_cluster::agent::{
    AgentRequest, AgentResponse, POLL_DISPATCHES_MAX, POLL_WAIT_MS_MAX,
};
use consentry_cluster::command::{Command, CommandResponse};
use consentry_cluster::model::{StepAction, StepOutcome};
use consentry_cluster::state::ClusterState;
use consentry_storage::StateReader;
use tracing::{debug, warn};

use crate::error::WriteError;
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
            let here = state.read(|s| match s.recoveries.get(&outcome.intent_id) {
                Some(r) => match &r.spec.action {
                    StepAction::Agent { agent: a, .. } if a == agent => StepHere::Mine,
                    _ => StepHere::Others,
                },
                None if outcome.intent_id <= s.next_recovery_id => StepHere::Trimmed,
                None => StepHere::NotYet,
            });
            if let Some(answer) = before_writing(here, agent, outcome.intent_id) {
                return answer;
            }
            let intent = outcome.intent_id;
            let cmd = Command::StepOutcome(StepOutcome {
                by: format!("agent {agent}"),
                outcome: outcome.outcome.bounded(),
                ..outcome
            });
            outcome_answer(agent, intent, writer.write(cmd).await)
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

/// What this node knows of the recovery step an outcome is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepHere {
    /// Applied here, and it names the agent.
    Mine,
    /// Applied here, and it is not the agent's.
    Others,
    /// Its id was given out and it is gone: settled and trimmed since.
    Trimmed,
    /// Not applied here yet (a lagging follower).
    NotYet,
}

/// The answer to an outcome without writing it, or `None` to write it. Only a step this
/// node has applied and that names the agent is settled by it: another agent's step is
/// refused, and so is one this node has not applied yet (the agent tries again on another
/// node or later). A step trimmed since it settled is answered as committed: it is final,
/// and retrying would only block the agent's later outcomes.
fn before_writing(here: StepHere, agent: &str, intent: u64) -> Option<AgentResponse> {
    let refused = match here {
        StepHere::Mine => return None,
        StepHere::Trimmed => {
            warn!(
                agent,
                intent, "an outcome for a step settled and trimmed already; dropped"
            );
            return Some(AgentResponse::Committed);
        }
        StepHere::Others => format!("recovery step {intent} is not agent {agent}'s"),
        StepHere::NotYet => format!("recovery step {intent} is not known to this node yet"),
    };
    warn!(agent, intent, "refusing an outcome: {refused}");
    Some(AgentResponse::Refused(refused))
}

/// The answer to an outcome once writing it ended. A state-machine rejection is final
/// (retrying cannot change it, e.g. a step trimmed since), so it is answered as committed:
/// the agent stops resending it and goes on with its other outcomes.
fn outcome_answer(
    agent: &str,
    intent: u64,
    written: Result<CommandResponse, WriteError>,
) -> AgentResponse {
    match written {
        Ok(_) => AgentResponse::Committed,
        Err(WriteError::Rejected(why)) => {
            warn!(agent, intent, reason = %why, "the cluster rejected an agent's outcome for good; dropped");
            AgentResponse::Committed
        }
        Err(e) => AgentResponse::Refused(format!("outcome not committed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_step_known_here_and_naming_the_agent_is_settled_by_it() {
        assert_eq!(before_writing(StepHere::Mine, "db1", 7), None);
        assert!(matches!(
            before_writing(StepHere::Others, "db1", 7),
            Some(AgentResponse::Refused(why)) if why.contains("not agent db1's")
        ));
        // Not applied here yet (a lagging follower): refused, never let through.
        assert!(matches!(
            before_writing(StepHere::NotYet, "db1", 7),
            Some(AgentResponse::Refused(why)) if why.contains("not known")
        ));
        // Settled and trimmed: final, so the agent stops resending it.
        assert_eq!(
            before_writing(StepHere::Trimmed, "db1", 7),
            Some(AgentResponse::Committed)
        );
    }

    #[test]
    fn a_final_rejection_is_answered_as_committed_and_other_failures_are_refused() {
        assert_eq!(
            outcome_answer("db1", 7, Ok(CommandResponse::Ok)),
            AgentResponse::Committed
        );
        assert_eq!(
            outcome_answer(
                "db1",
                7,
                Err(WriteError::Rejected("no recovery step 7".into()))
            ),
            AgentResponse::Committed
        );
        assert!(matches!(
            outcome_answer("db1", 7, Err(WriteError::NoLeader)),
            AgentResponse::Refused(why) if why.contains("not committed")
        ));
    }
}

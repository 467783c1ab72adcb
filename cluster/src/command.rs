//! What a raft log entry carries, and what applying it answers.

use serde::{Deserialize, Serialize};

use crate::model::{Catalog, NotifyOutcome, ResultBatch};

/// A replicated command. Every variant is applied by `ClusterState::apply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Replace checks and notifiers (`consentry apply`).
    ApplyCatalog(Catalog),
    /// A batch of probe results from one node.
    Results(ResultBatch),
    /// The leader's clock tick: freshness is measured in these, never by wall clocks.
    Tick { leader_id: u64 },
    /// The leader's record of a notification attempt's outcome.
    NotifyOutcome(NotifyOutcome),
}

/// The state machine's answer to a command.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CommandResponse {
    #[default]
    Ok,
    /// The command was valid raft data but the state machine refused it (with why).
    Rejected(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        CheckSpec, Delivery, NotifierKind, NotifierSpec, ProbeResult, ProbeSpec, Reason, Status,
        StatusRange,
    };

    /// Every command must survive the codec: serde features that need `deserialize_any`
    /// (internally tagged enums, flatten, untagged) do not work with bincode.
    #[test]
    fn every_command_roundtrips_through_the_codec() {
        let mut http = CheckSpec::for_test("web");
        http.probe = ProbeSpec::Http {
            url: "http://127.0.0.1/".into(),
            method: "GET".into(),
            expect_status: vec![StatusRange { lo: 200, hi: 399 }],
            body_contains: Some("ok".into()),
            tls_verify: true,
        };
        let commands = vec![
            Command::ApplyCatalog(Catalog {
                checks: vec![CheckSpec::for_test("tcp"), http],
                notifiers: vec![NotifierSpec {
                    name: "ops".into(),
                    kind: NotifierKind::Webhook {
                        url: "http://127.0.0.1:9/".into(),
                    },
                }],
            }),
            Command::Results(ResultBatch {
                node_id: 1,
                site: "site-a".into(),
                results: vec![ProbeResult::new(
                    "web",
                    Status::Critical,
                    Reason::Refused,
                    3,
                    "refused",
                )],
            }),
            Command::Tick { leader_id: 1 },
            Command::NotifyOutcome(NotifyOutcome {
                intent_id: 1,
                attempts: 2,
                delivery: Delivery::Failed {
                    leader_id: 1,
                    term: 2,
                    error: "x".into(),
                },
            }),
        ];
        for c in commands {
            let bytes = crate::codec::encode(&c).unwrap();
            let back: Command = crate::codec::decode(&bytes).unwrap();
            assert_eq!(back, c);
        }
    }
}

//! What a raft log entry carries, and what applying it answers.

use serde::{Deserialize, Serialize};

use crate::model::{Catalog, HostReport, NotifyOutcome, ResultBatch, SilenceSpec, StepOutcome};

/// A replicated command. Every variant is applied by `ClusterState::apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Replace checks and notifiers (`consentry apply`).
    ApplyCatalog(Catalog),
    /// A batch of probe results from one node.
    Results(ResultBatch),
    /// The leader's clock tick: freshness is measured in these, never by wall clocks.
    /// `wall_ms` is the leader's wall clock when it proposed the tick; it judges silence
    /// windows (an operator's wall-clock schedule) and nothing else.
    ///
    /// `advance` is how many `TICK_MS` periods the tick stands for (at least 1): the leader
    /// measures it on its own monotonic clock since the last tick it proposed itself
    /// (`leader_run` names the process, `leader_mono_ms` is that clock then), or since it saw
    /// the last tick applied. So cluster time keeps pace with real time across a loss of
    /// quorum, and results observed before it are stale after it.
    Tick {
        leader_id: u64,
        wall_ms: u64,
        #[serde(default)]
        advance: u32,
        #[serde(default)]
        leader_run: u64,
        #[serde(default)]
        leader_mono_ms: u64,
    },
    /// The leader's record of a notification attempt's outcome.
    NotifyOutcome(NotifyOutcome),
    /// Add a silence; the answer is `Created(id)`.
    AddSilence(SilenceSpec),
    /// Remove a silence by id.
    RemoveSilence { id: u64 },
    /// Someone takes an open incident (`consentry incidents ack`).
    Ack {
        incident_id: u64,
        by: String,
        comment: String,
    },
    /// One delivery attempt of a pending intent (`error` `None`: delivered). A record only:
    /// `NotifyOutcome` still settles the intent. `attempt` counts from 1 across leaders;
    /// `at_ms` is the leader's wall clock at the attempt (display only). Ignored once the
    /// intent is settled. Kept last: bincode numbers variants by position.
    NotifyAttempt {
        intent_id: u64,
        attempt: u32,
        leader_id: u64,
        term: u64,
        at_ms: u64,
        error: Option<String>,
    },
    /// Restore a backup into a fresh cluster (`consentry snapshot restore`); refused by a
    /// cluster that already has a catalog, silences or incidents. Kept last, as above.
    Restore(Box<crate::backup::Backup>),
    /// A host agent's report, through the node it is connected to (`node_id`; the agent's
    /// name is from its certificate). Duplicates (same run and sequence number) are ignored.
    AgentReport {
        agent: String,
        node_id: u64,
        report: HostReport,
    },
    /// The leader is about to act on attempt `attempt` of a recovery step: the step's fencing
    /// token becomes this entry's term and index. Re-proposed by a new leader for a step
    /// dispatched but not settled, which gives it a newer token.
    Dispatch {
        intent_id: u64,
        attempt: u32,
        leader_id: u64,
    },
    /// How a dispatched attempt ended (from the leader, or from an agent through any node).
    StepOutcome(StepOutcome),
}

/// The state machine's answer to a command.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CommandResponse {
    #[default]
    Ok,
    /// The command created something with this id (a silence).
    Created(u64),
    /// The command was valid raft data but the state machine refused it (with why).
    Rejected(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        BannerProtocol, BannerSpec, CheckSpec, Credentials, Delivery, DnsSpec, HttpSpec, IcmpSpec,
        Matcher, NagiosSpec, NotifierKind, NotifierSpec, Perf, ProbeResult, ProbeSpec, Reason,
        SqlEngine, SqlSpec, Status, StatusRange, TlsMode, TlsSpec,
    };

    fn every_kind() -> Vec<ProbeSpec> {
        let cred = Some(Credentials {
            user: "u".into(),
            password: "p".into(),
        });
        vec![
            ProbeSpec::Icmp(IcmpSpec {
                host: "127.0.0.1".into(),
                packets: 3,
                rtt_warn_ms: Some(200),
                rtt_crit_ms: None,
                loss_warn_pct: Some(20),
                loss_crit_pct: Some(60),
            }),
            ProbeSpec::Http(HttpSpec {
                url: "http://127.0.0.1/".into(),
                method: "GET".into(),
                expect_status: vec![StatusRange { lo: 200, hi: 399 }],
                body_contains: Some("ok".into()),
                body_regex: Some("o+k".into()),
                tls_verify: true,
                redirects_max: 5,
                basic_auth: cred.clone(),
                layer4_on_401: true,
            }),
            ProbeSpec::Dns(DnsSpec {
                server: "127.0.0.1".into(),
                port: 53,
                query: "example.test".into(),
                record: "A".into(),
                expect: vec!["192.0.2.1".into()],
            }),
            ProbeSpec::Banner(BannerSpec {
                protocol: BannerProtocol::Smtp,
                host: "127.0.0.1".into(),
                port: 25,
                tls: TlsMode::StartTls,
                tls_verify: false,
                ehlo: Some("monitor.test".into()),
            }),
            ProbeSpec::Sql(SqlSpec {
                engine: SqlEngine::Postgres,
                host: "127.0.0.1".into(),
                port: 5432,
                credentials: cred,
                database: Some("postgres".into()),
                query: None,
            }),
            ProbeSpec::Tls(TlsSpec {
                host: "127.0.0.1".into(),
                port: 443,
                server_name: None,
                starttls: Some(BannerProtocol::Imap),
                days_warn: 30,
                days_crit: 14,
                verify_chain: true,
            }),
            ProbeSpec::Nagios(NagiosSpec {
                argv: vec!["/usr/lib/nagios/plugins/check_dummy".into(), "0".into()],
            }),
        ]
    }

    /// Every command must survive the codec: serde features that need `deserialize_any`
    /// (internally tagged enums, flatten, untagged) do not work with bincode.
    #[test]
    fn every_command_roundtrips_through_the_codec() {
        let mut checks = vec![CheckSpec::for_test("tcp")];
        for (i, probe) in every_kind().into_iter().enumerate() {
            let mut c = CheckSpec::for_test(&format!("c{i}"));
            c.probe = probe;
            checks.push(c);
        }
        let mut perf = Perf::new("rta", 0.25, "ms");
        perf.warn = Some(200.0);
        let commands = vec![
            Command::ApplyCatalog(Catalog {
                checks,
                notifiers: vec![NotifierSpec {
                    name: "ops".into(),
                    kind: NotifierKind::Webhook {
                        url: "http://127.0.0.1:9/".into(),
                    },
                }],
                operator_notify: vec!["ops".into()],
                runbooks: Vec::new(),
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
                )
                .with_perfdata([perf])],
            }),
            Command::Tick {
                leader_id: 1,
                wall_ms: 1_763_740_000_000,
                advance: 90,
                leader_run: 7,
                leader_mono_ms: 123_456,
            },
            Command::AddSilence(SilenceSpec {
                matcher: Matcher::Name("web-*".into()),
                start_ms: 1,
                end_ms: 2,
                reason: "upgrade".into(),
            }),
            Command::AddSilence(SilenceSpec {
                matcher: Matcher::Label {
                    key: "team".into(),
                    value: "infra".into(),
                },
                start_ms: 1,
                end_ms: 2,
                reason: "upgrade".into(),
            }),
            Command::RemoveSilence { id: 3 },
            Command::Ack {
                incident_id: 4,
                by: "hanako".into(),
                comment: "looking".into(),
            },
            Command::NotifyOutcome(NotifyOutcome {
                intent_id: 1,
                attempts: 2,
                delivery: Delivery::Failed {
                    leader_id: 1,
                    term: 2,
                    error: "x".into(),
                },
            }),
            Command::NotifyAttempt {
                intent_id: 1,
                attempt: 1,
                leader_id: 1,
                term: 2,
                at_ms: 1_763_740_000_000,
                error: Some("connection refused".into()),
            },
            Command::NotifyAttempt {
                intent_id: 1,
                attempt: 2,
                leader_id: 1,
                term: 2,
                at_ms: 1_763_740_001_000,
                error: None,
            },
        ];
        for c in commands {
            let bytes = crate::codec::encode(&c).unwrap();
            let back: Command = crate::codec::decode(&bytes).unwrap();
            assert_eq!(back, c);
        }
    }
}

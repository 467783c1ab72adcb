//! The host agent's side of the cluster: its wire protocol and how its reports are judged.
//!
//! An agent (`consentry agent`) connects to any cluster node over QUIC with its own
//! certificate (`agent-<name>.consentry`) and the ALPN [`ALPN_NAME`]; the node learns the
//! agent's name from the certificate, never from a message. Every request is one
//! bidirectional stream carrying one [`AgentRequest`] frame and one [`AgentResponse`]
//! frame, the framing of the raft transport.
//!
//! Reports are committed as `Command::AgentReport` and judged by the state machine
//! ([`judge`]) under the pseudo-site [`site_of`]`(agent)`: an agent check has one observer,
//! the host itself, so its quorum is that one site.

use serde::{Deserialize, Serialize};

use crate::model::{
    AgentMetric, AgentSpec, FencingToken, HostReport, Perf, ProbeResult, Reason, Status,
    StepOutcome,
};

/// The ALPN protocol of agent connections (raise the number when the messages change).
pub const ALPN_NAME: &str = "consentry-agent/1";
/// [`ALPN_NAME`] as bytes.
pub const ALPN: &[u8] = ALPN_NAME.as_bytes();
/// Longest a `Poll` may wait for a dispatch before answering an empty list.
pub const POLL_WAIT_MS_MAX: u32 = 20_000;
/// Dispatches one poll answers with.
pub const POLL_DISPATCHES_MAX: usize = 16;

/// What an agent asks of the node it is connected to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentRequest {
    /// Commit this report; answered `Committed` once it is in the log.
    Report(HostReport),
    /// The dispatches for this agent that have no outcome yet; waits up to `wait_ms`
    /// (at most [`POLL_WAIT_MS_MAX`]) for one to appear.
    Poll { wait_ms: u32 },
    /// Commit the outcome of a dispatch; answered `Committed` once it is in the log.
    Outcome(StepOutcome),
}

/// The node's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentResponse {
    Committed,
    Dispatches(Vec<AgentDispatch>),
    /// Not done, and why (no quorum, not an agent, a bad request). The agent retries,
    /// possibly through another node.
    Refused(String),
}

/// One attempt of a recovery step the agent is asked to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentDispatch {
    pub intent_id: u64,
    pub attempt: u32,
    pub token: FencingToken,
    /// The action's name in the agent's `agent.toml`.
    pub action: String,
    pub timeout_ms: u64,
    /// For the agent's log.
    pub check: String,
    pub incident_id: u64,
}

/// The site name an agent's results are kept under.
pub fn site_of(agent: &str) -> String {
    format!("agent:{agent}")
}

/// Sends one request on `connection` (to node `target`) and reads the answer, all within
/// `timeout_ms`.
///
/// # Errors
/// A stream that cannot be opened, a frame that cannot be written or read or decoded, or
/// the time limit.
pub async fn call(
    connection: &quinn::Connection,
    target: crate::types::NodeId,
    request: &AgentRequest,
    timeout_ms: u64,
) -> Result<AgentResponse, crate::transport::TransportError> {
    use crate::transport::frame::{decode_body, encode_body, read_frame, write_frame};
    use crate::transport::TransportError;
    let exchange = async {
        let body = encode_body(request, "agent request")?;
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|source| TransportError::OpenStream { target, source })?;
        write_frame(&mut send, &body).await?;
        let _ = send.finish();
        let bytes = read_frame(&mut recv).await?;
        decode_body::<AgentResponse>(&bytes, "agent response")
    };
    tokio::time::timeout(std::time::Duration::from_millis(timeout_ms), exchange)
        .await
        .map_err(|_| TransportError::ConnectTimeout {
            target,
            timeout_ms: u128::from(timeout_ms),
        })?
}

/// Whether a site name is an agent's pseudo-site.
pub fn is_agent_site(site: &str) -> bool {
    site.starts_with("agent:")
}

/// The default thresholds of a metric as (warn, crit) in thousandths: seed 000's resource
/// monitoring (5-minute load 4/7, disk 81/91 %, memory 71/81 %), Nagios' usual ones for the
/// rest, and any matching log line CRITICAL (seed 002).
pub fn default_thresholds(metric: &AgentMetric) -> (Option<u64>, Option<u64>) {
    let milli = |w: u64, c: u64| (Some(w * 1000), Some(c * 1000));
    match metric {
        AgentMetric::Load1 | AgentMetric::Load5 | AgentMetric::Load15 => milli(4, 7),
        AgentMetric::Disk { .. } | AgentMetric::Inodes { .. } => milli(81, 91),
        AgentMetric::Memory => milli(71, 81),
        AgentMetric::Swap => milli(51, 81),
        AgentMetric::Cpu => milli(90, 98),
        AgentMetric::Procs => milli(250, 400),
        AgentMetric::Zombies => milli(5, 10),
        AgentMetric::Users => milli(5, 10),
        AgentMetric::Log { .. } => (None, Some(1000)),
    }
}

/// Judges one agent check against one report: the measured value against the thresholds
/// (at or above `crit` CRITICAL, at or above `warn` WARNING). A mount or log the report does
/// not carry is UNKNOWN, naming it.
pub fn judge(check: &str, spec: &AgentSpec, report: &HostReport) -> ProbeResult {
    let (value, unit, label, extra) = match &spec.metric {
        AgentMetric::Load1 => (report.load[0], "", "load1".to_string(), String::new()),
        AgentMetric::Load5 => (report.load[1], "", "load5".to_string(), String::new()),
        AgentMetric::Load15 => (report.load[2], "", "load15".to_string(), String::new()),
        AgentMetric::Cpu => (report.cpu_pct, "%", "cpu".to_string(), String::new()),
        AgentMetric::Memory => (report.memory_pct, "%", "memory".to_string(), String::new()),
        AgentMetric::Swap => (report.swap_pct, "%", "swap".to_string(), String::new()),
        AgentMetric::Procs => (f64::from(report.procs), "", "procs".into(), String::new()),
        AgentMetric::Zombies => (
            f64::from(report.zombies),
            "",
            "zombies".into(),
            String::new(),
        ),
        AgentMetric::Users => (f64::from(report.users), "", "users".into(), String::new()),
        AgentMetric::Disk { mount } | AgentMetric::Inodes { mount } => {
            let Some(m) = report.mounts.iter().find(|m| &m.path == mount) else {
                return unknown(check, &format!("the agent reports no mount {mount}"));
            };
            let disk = matches!(spec.metric, AgentMetric::Disk { .. });
            let value = if disk { m.disk_pct } else { m.inode_pct };
            let what = if disk { "disk" } else { "inodes" };
            (value, "%", what.to_string(), format!(" on {mount}"))
        }
        AgentMetric::Log { path } => {
            let mut seen = false;
            let mut matches = 0u64;
            let mut lines = Vec::new();
            for l in report.logs.iter().filter(|l| &l.path == path) {
                seen = true;
                if let Some(e) = &l.error {
                    return unknown(check, &format!("log {path}: {e}"));
                }
                matches += u64::from(l.matches);
                lines.extend(l.lines.iter().cloned());
            }
            if !seen {
                return unknown(check, &format!("the agent watches no log {path}"));
            }
            let extra = match lines.first() {
                Some(first) => format!(" in {path}, first: {first}"),
                None => format!(" in {path}"),
            };
            (matches as f64, "c", "matches".to_string(), extra)
        }
    };
    let milli = (value * 1000.0).round().clamp(0.0, u64::MAX as f64) as u64;
    let status = match (spec.crit_milli, spec.warn_milli) {
        (Some(c), _) if milli >= c => Status::Critical,
        (_, Some(w)) if milli >= w => Status::Warning,
        _ => Status::Ok,
    };
    let shown = if unit == "%" {
        format!("{value:.1}%")
    } else if matches!(spec.metric, AgentMetric::Log { .. }) {
        format!("{value:.0} matching lines")
    } else if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    };
    let message = format!("{} {shown}{extra}", spec.metric.as_str());
    let reason = if status == Status::Ok {
        Reason::None
    } else {
        Reason::Threshold
    };
    let mut perf = Perf::new(&label, value, unit);
    perf.warn = spec.warn_milli.map(|w| w as f64 / 1000.0);
    perf.crit = spec.crit_milli.map(|c| c as f64 / 1000.0);
    let mut r = ProbeResult::new(check, status, reason, 0, &message).with_perfdata([perf]);
    r.observed_at_ms = report.at_ms;
    r
}

fn unknown(check: &str, why: &str) -> ProbeResult {
    ProbeResult::new(check, Status::Unknown, Reason::Internal, 0, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LogMatches, MountUsage};

    fn spec(metric: AgentMetric) -> AgentSpec {
        let (warn_milli, crit_milli) = default_thresholds(&metric);
        AgentSpec {
            agent: "web1".into(),
            metric,
            warn_milli,
            crit_milli,
        }
    }

    #[test]
    fn agent_reports_are_judged_by_seed_thresholds() {
        let mut r = HostReport {
            load: [1.0, 4.0, 9.0],
            memory_pct: 80.9,
            mounts: vec![MountUsage {
                path: "/".into(),
                disk_pct: 91.0,
                inode_pct: 3.0,
            }],
            logs: vec![LogMatches {
                path: "/var/log/messages".into(),
                pattern: "Error".into(),
                matches: 0,
                lines: vec![],
                error: None,
            }],
            ..HostReport::default()
        };
        let status = |m: AgentMetric, r: &HostReport| judge("c", &spec(m), r).status;
        assert_eq!(status(AgentMetric::Load1, &r), Status::Ok);
        assert_eq!(
            status(AgentMetric::Load5, &r),
            Status::Warning,
            "4 is WARNING"
        );
        assert_eq!(status(AgentMetric::Load15, &r), Status::Critical);
        assert_eq!(status(AgentMetric::Memory, &r), Status::Warning);
        let disk = AgentMetric::Disk { mount: "/".into() };
        assert_eq!(
            status(disk.clone(), &r),
            Status::Critical,
            "91 % is CRITICAL"
        );
        r.mounts[0].disk_pct = 80.4;
        assert_eq!(status(disk, &r), Status::Ok);
        let gone = judge("c", &spec(AgentMetric::Disk { mount: "/x".into() }), &r);
        assert_eq!(gone.status, Status::Unknown);
        assert!(gone.message.contains("/x"), "{}", gone.message);
        let log = AgentMetric::Log {
            path: "/var/log/messages".into(),
        };
        assert_eq!(status(log.clone(), &r), Status::Ok);
        r.logs[0].matches = 2;
        r.logs[0].lines = vec!["kernel: Error: disk on fire".into()];
        let hit = judge("c", &spec(log), &r);
        assert_eq!(hit.status, Status::Critical);
        assert!(hit.message.contains("disk on fire"), "{}", hit.message);
        assert_eq!(hit.reason, Reason::Threshold);
    }
}

//! Check and notifier definitions as replicated in the log (validated already).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Per-site confirmation: how many sites must agree and after how many rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirm {
    /// Sites that must agree. `None`: 2, or 1 when only one site probes.
    pub sites: Option<u32>,
    /// Consecutive non-OK results before a site reports down.
    pub rounds: u32,
}

/// Consecutive OK results before a site reports recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recover {
    pub rounds: u32,
}

/// Latency thresholds; `None` disables that level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Latency {
    pub warn_ms: Option<u64>,
    pub crit_ms: Option<u64>,
}

/// An inclusive range of HTTP status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRange {
    pub lo: u16,
    pub hi: u16,
}

/// How a connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain text.
    None,
    /// Plain text, upgraded with the protocol's STARTTLS (SMTP, POP3 `STLS`, IMAP).
    StartTls,
    /// TLS from the first byte (SMTPS 465, POP3S 995, IMAPS 993).
    Implicit,
}

/// Protocols judged by their greeting (and optional STARTTLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BannerProtocol {
    Smtp,
    Ssh,
    Pop3,
    Imap,
    Ftp,
}

impl BannerProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            BannerProtocol::Smtp => "smtp",
            BannerProtocol::Ssh => "ssh",
            BannerProtocol::Pop3 => "pop3",
            BannerProtocol::Imap => "imap",
            BannerProtocol::Ftp => "ftp",
        }
    }
}

/// SQL servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlEngine {
    Mysql,
    Postgres,
}

/// A user name and password. Replicated (every probing site needs it) but never shown by
/// a read view: see [`CheckSpec::redacted`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// The text that replaces secrets in every read view.
pub const REDACTED: &str = "<redacted>";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpSpec {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcmpSpec {
    pub host: String,
    /// Echo requests per probe.
    pub packets: u32,
    /// Average round trip at or over which the result is WARNING / CRITICAL.
    pub rtt_warn_ms: Option<u64>,
    pub rtt_crit_ms: Option<u64>,
    /// Packet loss percentage at or over which the result is WARNING / CRITICAL.
    pub loss_warn_pct: Option<u8>,
    pub loss_crit_pct: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSpec {
    pub url: String,
    /// `GET` or `HEAD`.
    pub method: String,
    pub expect_status: Vec<StatusRange>,
    pub body_contains: Option<String>,
    /// A regular expression the (bounded) body must match.
    pub body_regex: Option<String>,
    /// Verify the server certificate for https.
    pub tls_verify: bool,
    /// Redirects followed (0: a 3xx is judged as it is).
    pub redirects_max: u32,
    pub basic_auth: Option<Credentials>,
    /// A 401 answer counts as OK at layer 4 (the server answered; the page needs a login
    /// the monitor does not have): the seed services' fallback for basic-auth sites.
    pub layer4_on_401: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSpec {
    /// The DNS server asked (an address or name) and its port.
    pub server: String,
    pub port: u16,
    /// The name looked up.
    pub query: String,
    /// Record type: A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT.
    pub record: String,
    /// Every one of these must be among the answers (empty: any answer will do).
    pub expect: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BannerSpec {
    pub protocol: BannerProtocol,
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub tls_verify: bool,
    /// SMTP only: send `EHLO <name>` and expect 250.
    pub ehlo: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlSpec {
    pub engine: SqlEngine,
    pub host: String,
    pub port: u16,
    /// Without credentials only the server's protocol greeting is judged.
    pub credentials: Option<Credentials>,
    pub database: Option<String>,
    /// Run after logging in (default `SELECT 1`).
    pub query: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsSpec {
    pub host: String,
    pub port: u16,
    /// The name the certificate must carry (default: `host`).
    pub server_name: Option<String>,
    /// Upgrade a plain connection first (SMTP, POP3, IMAP).
    pub starttls: Option<BannerProtocol>,
    /// Days before expiry at or under which the result is WARNING / CRITICAL.
    pub days_warn: u32,
    pub days_crit: u32,
    /// Judge the chain against the system roots (false: only the dates).
    pub verify_chain: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NagiosSpec {
    /// The plugin and its arguments, run without a shell. `argv[0]` must lie in one of
    /// the probing node's `plugin_dirs`.
    pub argv: Vec<String>,
}

/// What a check probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeSpec {
    Icmp(IcmpSpec),
    Tcp(TcpSpec),
    Http(HttpSpec),
    Dns(DnsSpec),
    Banner(BannerSpec),
    Sql(SqlSpec),
    Tls(TlsSpec),
    Nagios(NagiosSpec),
    /// A host agent's report, judged against thresholds. Kept last: bincode numbers
    /// variants by position.
    Agent(AgentSpec),
}

/// What an `agent` check judges in its agent's reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSpec {
    /// The agent's name (its certificate is `agent-<name>.consentry`).
    pub agent: String,
    pub metric: AgentMetric,
    /// WARNING at or above this value, in thousandths of the metric's unit (`None`: never).
    pub warn_milli: Option<u64>,
    /// CRITICAL at or above this value, in thousandths (`None`: never).
    pub crit_milli: Option<u64>,
}

/// One measurement of a host report. Externally tagged (bincode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentMetric {
    Load1,
    Load5,
    Load15,
    Cpu,
    Memory,
    Swap,
    Disk {
        mount: String,
    },
    Inodes {
        mount: String,
    },
    Procs,
    Zombies,
    Users,
    /// Lines of a watched log (agent.toml `[[log]]`) matching its pattern since the last
    /// report.
    Log {
        path: String,
    },
}

impl AgentMetric {
    /// The name as written in `checks.toml` (`metric = "disk"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            AgentMetric::Load1 => "load1",
            AgentMetric::Load5 => "load5",
            AgentMetric::Load15 => "load15",
            AgentMetric::Cpu => "cpu",
            AgentMetric::Memory => "memory",
            AgentMetric::Swap => "swap",
            AgentMetric::Disk { .. } => "disk",
            AgentMetric::Inodes { .. } => "inodes",
            AgentMetric::Procs => "procs",
            AgentMetric::Zombies => "zombies",
            AgentMetric::Users => "users",
            AgentMetric::Log { .. } => "log",
        }
    }
}

impl ProbeSpec {
    /// The check kind as written in `checks.toml` (a bounded metric label).
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeSpec::Icmp(_) => "icmp",
            ProbeSpec::Tcp(_) => "tcp",
            ProbeSpec::Http(h) if h.url.starts_with("https://") => "https",
            ProbeSpec::Http(_) => "http",
            ProbeSpec::Dns(_) => "dns",
            ProbeSpec::Banner(b) => b.protocol.as_str(),
            ProbeSpec::Sql(SqlSpec {
                engine: SqlEngine::Mysql,
                ..
            }) => "mysql",
            ProbeSpec::Sql(SqlSpec {
                engine: SqlEngine::Postgres,
                ..
            }) => "postgres",
            ProbeSpec::Tls(_) => "tls",
            ProbeSpec::Nagios(_) => "nagios",
            ProbeSpec::Agent(_) => "agent",
        }
    }

    /// A short description of the target for people (`host:port`, the URL, the plugin).
    pub fn target(&self) -> String {
        match self {
            ProbeSpec::Icmp(i) => i.host.clone(),
            ProbeSpec::Tcp(t) => format!("{}:{}", t.host, t.port),
            ProbeSpec::Http(h) => h.url.clone(),
            ProbeSpec::Dns(d) => format!("{} {} @{}:{}", d.query, d.record, d.server, d.port),
            ProbeSpec::Banner(b) => format!("{}:{}", b.host, b.port),
            ProbeSpec::Sql(s) => format!("{}:{}", s.host, s.port),
            ProbeSpec::Tls(t) => format!("{}:{}", t.host, t.port),
            ProbeSpec::Nagios(n) => n.argv.first().cloned().unwrap_or_default(),
            ProbeSpec::Agent(a) => match &a.metric {
                AgentMetric::Disk { mount } | AgentMetric::Inodes { mount } => {
                    format!("agent {} {} {mount}", a.agent, a.metric.as_str())
                }
                AgentMetric::Log { path } => format!("agent {} log {path}", a.agent),
                m => format!("agent {} {}", a.agent, m.as_str()),
            },
        }
    }
}

/// One check, fully resolved (defaults applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSpec {
    pub name: String,
    pub probe: ProbeSpec,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub latency: Latency,
    pub confirm: Confirm,
    pub recover: Recover,
    pub notify: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Parent checks (by name): while one of them has an open incident, this check's new
    /// incidents are recorded as suppressed and notify only if still open after it closes.
    pub depends_on: Vec<String>,
    pub flap: Flap,
    /// What a degraded quorum (fewer fresh sites than `confirm.sites`) may do. Absent from
    /// JSON means `Alert` (catalogs written before the key existed).
    #[serde(default)]
    pub degraded: DegradedPolicy,
    /// The `[[runbook]]` run while one of its incidents is open (`recovery = "<name>"`).
    #[serde(default)]
    pub recovery: Option<String>,
}

/// Whether a degraded quorum may open an incident (`degraded` in `checks.toml`).
/// Externally tagged (bincode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DegradedPolicy {
    /// Open (and close) an "unconfirmed" incident after `DEGRADED_ROUNDS_FACTOR` times the
    /// normal rounds.
    #[default]
    Alert,
    /// Never open on a degraded quorum: the check keeps showing its sites' results. An open
    /// incident still closes on a degraded quorum, as with `Alert`.
    Hold,
}

impl DegradedPolicy {
    /// The value as written in `checks.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            DegradedPolicy::Alert => "alert",
            DegradedPolicy::Hold => "hold",
        }
    }
}

/// Flap detection: Nagios' weighted percent state change over each site's last 21 results.
/// A site starts flapping at `high_pct` and stops under `low_pct`; `high_pct = 0` turns
/// detection off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flap {
    pub high_pct: u8,
    pub low_pct: u8,
}

impl Default for Flap {
    fn default() -> Self {
        Self {
            high_pct: 50,
            low_pct: 25,
        }
    }
}

/// Where a notification goes. Externally tagged (no flatten, untagged or internal tags):
/// the catalog is replicated through bincode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifierKind {
    /// One documented JSON document per notification (docs/notifications.md).
    Webhook {
        url: String,
    },
    /// A Slack incoming webhook (`{"text", "blocks"}`). The URL is a secret.
    Slack {
        url: String,
    },
    Email(EmailNotifier),
    /// Alertmanager's API v2 (`POST <url>/api/v2/alerts`); `url` is the base URL.
    Alertmanager {
        url: String,
    },
    Exec(ExecNotifier),
}

/// Mail through an SMTP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailNotifier {
    pub server: String,
    pub port: u16,
    pub tls: TlsMode,
    /// Verify the server certificate (starttls and implicit).
    pub tls_verify: bool,
    pub from: String,
    pub to: Vec<String>,
    /// SMTP AUTH; hidden by [`NotifierSpec::redacted`].
    pub credentials: Option<Credentials>,
    /// Subject templates (placeholders in docs/notifications.md); `None`: the default.
    pub subject_firing: Option<String>,
    pub subject_resolved: Option<String>,
}

/// A program run without a shell; exit status 0 means delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecNotifier {
    /// `argv[0]` must lie in one of the leader's `notify_exec_dirs`.
    pub argv: Vec<String>,
    /// Longest run; the process group is killed after it.
    pub timeout_ms: u64,
}

impl NotifierKind {
    /// The kind as written in `checks.toml` (a bounded metric label).
    pub fn as_str(&self) -> &'static str {
        match self {
            NotifierKind::Webhook { .. } => "webhook",
            NotifierKind::Slack { .. } => "slack",
            NotifierKind::Email(_) => "email",
            NotifierKind::Alertmanager { .. } => "alertmanager",
            NotifierKind::Exec(_) => "exec",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifierSpec {
    pub name: String,
    pub kind: NotifierKind,
}

/// Everything `consentry apply` replaces at once.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Catalog {
    pub checks: Vec<CheckSpec>,
    pub notifiers: Vec<NotifierSpec>,
    /// `[operator] notify`: where alerts about the cluster itself go ("site X degraded",
    /// "site X silent"). Never a check's notifiers.
    pub operator_notify: Vec<String>,
    /// `[[runbook]]`: recovery steps checks name with `recovery`.
    #[serde(default)]
    pub runbooks: Vec<super::RunbookSpec>,
}

impl NotifierSpec {
    /// A copy safe to show: the SMTP password and the secret part of a Slack webhook URL
    /// replaced by [`REDACTED`].
    pub fn redacted(&self) -> Self {
        let mut n = self.clone();
        match &mut n.kind {
            NotifierKind::Email(e) => {
                if let Some(cred) = &mut e.credentials {
                    cred.password = REDACTED.to_string();
                }
            }
            NotifierKind::Slack { url } => {
                // Keep `scheme://host/` so people can tell which workspace it posts to.
                let host_end = url
                    .find("://")
                    .and_then(|s| url[s + 3..].find('/').map(|p| s + 3 + p + 1))
                    .unwrap_or(url.len());
                *url = format!("{}{REDACTED}", &url[..host_end]);
            }
            _ => {}
        }
        n
    }
}

impl Catalog {
    /// A copy safe to show: every check and notifier redacted.
    pub fn redacted(&self) -> Self {
        Self {
            checks: self.checks.iter().map(CheckSpec::redacted).collect(),
            notifiers: self.notifiers.iter().map(NotifierSpec::redacted).collect(),
            operator_notify: self.operator_notify.clone(),
            runbooks: self.runbooks.clone(),
        }
    }
}

impl CheckSpec {
    /// A copy safe to show: passwords replaced by [`REDACTED`].
    pub fn redacted(&self) -> Self {
        let mut c = self.clone();
        let hide = |cred: &mut Option<Credentials>| {
            if let Some(cred) = cred {
                cred.password = REDACTED.to_string();
            }
        };
        match &mut c.probe {
            ProbeSpec::Http(h) => hide(&mut h.basic_auth),
            ProbeSpec::Sql(s) => hide(&mut s.credentials),
            _ => {}
        }
        c
    }

    /// A check with defaults, for tests.
    pub fn for_test(name: &str) -> Self {
        Self {
            name: name.to_string(),
            probe: ProbeSpec::Tcp(TcpSpec {
                host: "127.0.0.1".into(),
                port: 1,
            }),
            interval_ms: 10_000,
            timeout_ms: 5_000,
            latency: Latency::default(),
            confirm: Confirm {
                sites: None,
                rounds: 2,
            },
            recover: Recover { rounds: 2 },
            notify: vec!["ops".into()],
            labels: BTreeMap::new(),
            depends_on: Vec::new(),
            flap: Flap::default(),
            degraded: DegradedPolicy::Alert,
            recovery: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_notifier() -> Vec<NotifierSpec> {
        let kinds = vec![
            NotifierKind::Webhook {
                url: "http://127.0.0.1:9/hook".into(),
            },
            NotifierKind::Slack {
                url: "https://hooks.slack.com/services/T0/B0/secret".into(),
            },
            NotifierKind::Email(EmailNotifier {
                server: "127.0.0.1".into(),
                port: 25,
                tls: TlsMode::StartTls,
                tls_verify: false,
                from: "consentry@example.org".into(),
                to: vec!["ops@example.org".into(), "運用@example.jp".into()],
                credentials: Some(Credentials {
                    user: "u".into(),
                    password: "p".into(),
                }),
                subject_firing: Some("【障害】{check} が停止しました".into()),
                subject_resolved: None,
            }),
            NotifierKind::Alertmanager {
                url: "http://127.0.0.1:9093".into(),
            },
            NotifierKind::Exec(ExecNotifier {
                argv: vec!["/etc/consentry/notify.d/page".into(), "--now".into()],
                timeout_ms: 10_000,
            }),
        ];
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| NotifierSpec {
                name: format!("n{i}"),
                kind,
            })
            .collect()
    }

    /// Every notifier kind survives the replication codec (bincode: no `deserialize_any`).
    #[test]
    fn every_notifier_roundtrips_through_the_codec() {
        let catalog = Catalog {
            checks: vec![CheckSpec::for_test("c")],
            notifiers: every_notifier(),
            operator_notify: vec!["ops".into()],
            runbooks: Vec::new(),
        };
        let bytes = crate::codec::encode(&catalog).unwrap();
        let back: Catalog = crate::codec::decode(&bytes).unwrap();
        assert_eq!(back, catalog);
    }

    #[test]
    fn redaction_hides_notifier_secrets() {
        let shown = serde_json::to_string(
            &Catalog {
                checks: vec![],
                notifiers: every_notifier(),
                ..Catalog::default()
            }
            .redacted(),
        )
        .unwrap();
        assert!(!shown.contains("secret"), "{shown}");
        assert!(!shown.contains("\"password\":\"p\""), "{shown}");
        assert!(
            shown.contains("https://hooks.slack.com/<redacted>"),
            "{shown}"
        );
        assert!(shown.contains("\"user\":\"u\""), "{shown}");
    }
}

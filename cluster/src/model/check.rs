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
}

/// Where a notification goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifierKind {
    Webhook { url: String },
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
        }
    }
}

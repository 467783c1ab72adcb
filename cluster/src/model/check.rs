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

/// What a check probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeSpec {
    Tcp {
        host: String,
        port: u16,
    },
    Http {
        url: String,
        /// `GET` or `HEAD`.
        method: String,
        expect_status: Vec<StatusRange>,
        body_contains: Option<String>,
        /// Verify the server certificate for https.
        tls_verify: bool,
    },
}

impl ProbeSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeSpec::Tcp { .. } => "tcp",
            ProbeSpec::Http { .. } => "http",
        }
    }

    /// A short description of the target for people (`host:port` or the URL).
    pub fn target(&self) -> String {
        match self {
            ProbeSpec::Tcp { host, port } => format!("{host}:{port}"),
            ProbeSpec::Http { url, .. } => url.clone(),
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
    /// A check with defaults, for tests.
    pub fn for_test(name: &str) -> Self {
        Self {
            name: name.to_string(),
            probe: ProbeSpec::Tcp {
                host: "127.0.0.1".into(),
                port: 1,
            },
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

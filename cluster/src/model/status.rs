//! Nagios-compatible statuses and reason codes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A probe's verdict. Ordered by severity for "worst of" (OK < WARNING < UNKNOWN < CRITICAL
/// for alerting purposes; the Nagios exit codes are kept by `nagios_code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warning,
    Critical,
    /// Also what a value holds before anything was judged.
    #[default]
    Unknown,
}

impl Status {
    /// Severity rank used when choosing the worst agreeing status.
    pub fn severity(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Unknown => 1,
            Status::Warning => 2,
            Status::Critical => 3,
        }
    }

    pub fn nagios_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    pub fn is_ok(self) -> bool {
        self == Status::Ok
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a result is not OK (or, for OK, `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    None,
    Timeout,
    Refused,
    Unreachable,
    Dns,
    Tls,
    CertExpiring,
    BadStatus,
    BodyMismatch,
    /// The server refused the monitor's credentials.
    Auth,
    Protocol,
    Slow,
    Plugin,
    Internal,
    /// A host agent's measurement crossed its threshold. Kept last (bincode).
    Threshold,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::None => "none",
            Reason::Timeout => "timeout",
            Reason::Refused => "refused",
            Reason::Unreachable => "unreachable",
            Reason::Dns => "dns",
            Reason::Tls => "tls",
            Reason::CertExpiring => "cert_expiring",
            Reason::BadStatus => "bad_status",
            Reason::BodyMismatch => "body_mismatch",
            Reason::Auth => "auth",
            Reason::Protocol => "protocol",
            Reason::Slow => "slow",
            Reason::Plugin => "plugin",
            Reason::Internal => "internal",
            Reason::Threshold => "threshold",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

//! Probe results as produced by pollers and replicated in batches.

use serde::{Deserialize, Serialize};

use super::status::{Reason, Status};

/// Longest result message kept; longer messages are cut at a char boundary.
pub const RESULT_MESSAGE_BYTES_MAX: usize = 256;

/// One probe outcome at one site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub check: String,
    pub status: Status,
    pub reason: Reason,
    pub latency_ms: u64,
    pub message: String,
    /// The probing node's wall clock, for display only; decisions never compare clocks.
    pub observed_at_ms: u64,
}

impl ProbeResult {
    /// Builds a result with the message cut to `RESULT_MESSAGE_BYTES_MAX`.
    pub fn new(
        check: &str,
        status: Status,
        reason: Reason,
        latency_ms: u64,
        message: &str,
    ) -> Self {
        Self {
            check: check.to_string(),
            status,
            reason,
            latency_ms,
            message: truncate(message, RESULT_MESSAGE_BYTES_MAX),
            observed_at_ms: 0,
        }
    }
}

/// Cuts `s` to at most `max` bytes on a char boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Results flushed by one node in one raft entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultBatch {
    pub node_id: u64,
    pub site: String,
    pub results: Vec<ProbeResult>,
}

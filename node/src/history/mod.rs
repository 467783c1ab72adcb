//! The report history: what every node records from the applied log so reports, result
//! downloads and latency charts can look back further than the replicated state does.
//!
//! The history is derived data, local to each node, never replicated: every node reads the
//! same committed log, so every node records the same history. It lives in its own sled
//! database under `data_dir/history`, apart from raft's files.
//!
//! - Raw results (one row per check and minute) are kept for `raw_days` (default 10, the
//!   seed 003 service's "10 days in real time").
//! - Minute rollups (per check, minute and site: results, up, latency sum and max) for
//!   `minute_days` (default 35: a month at minute precision).
//! - Hour and day rollups for `hour_days` (default 400: 13 months).
//! - Incidents and silences, copied from the applied state, for `hour_days`.
//!
//! Every row is bounded (results per raw row, message length, sites per row), so the
//! history's size is bounded by the catalog's size times the retention.

pub mod follower;
pub mod report;
pub mod store;

pub use report::{AvailabilityReport, CheckAvailability, ReportQuery};
pub use store::{Bucket, History, HistoryError, IncidentRecord, RawResult, Retention};

#[cfg(test)]
mod tests;

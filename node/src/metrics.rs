//! Every metric name the node emits, in one place. Labels are bounded (site, kind, status,
//! outcome); never a check name, URL or free text.

pub const PROBE_RESULTS_TOTAL: &str = "consentry_probe_results_total";
pub const PROBE_LATENCY_SECONDS: &str = "consentry_probe_latency_seconds";
pub const RESULT_BATCHES_TOTAL: &str = "consentry_result_batches_total";
pub const RESULTS_DROPPED_TOTAL: &str = "consentry_results_dropped_total";
pub const RESULTS_COMMITTED_TOTAL: &str = "consentry_results_committed_total";
pub const RESULT_BATCH_COMMIT_SECONDS: &str = "consentry_result_batch_commit_seconds";
pub const NOTIFICATIONS_TOTAL: &str = "consentry_notifications_total";
pub const RAFT_TERM: &str = "consentry_raft_term";
pub const RAFT_LAST_LOG_INDEX: &str = "consentry_raft_last_log_index";
pub const RAFT_APPLIED_INDEX: &str = "consentry_raft_applied_index";
pub const RAFT_IS_LEADER: &str = "consentry_raft_is_leader";
pub const CHECKS: &str = "consentry_checks";
pub const INCIDENTS_OPEN: &str = "consentry_incidents_open";
pub const DATA_DIR_BYTES: &str = "consentry_data_dir_bytes";

/// Registers descriptions once per process.
pub fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        PROBE_RESULTS_TOTAL,
        "Probe results produced by this node, by kind and status."
    );
    describe_histogram!(
        PROBE_LATENCY_SECONDS,
        Unit::Seconds,
        "Probe latency by kind."
    );
    describe_counter!(
        RESULT_BATCHES_TOTAL,
        "Result batches written through raft, by outcome."
    );
    describe_counter!(
        RESULTS_DROPPED_TOTAL,
        "Results dropped because their batch could not be committed (no quorum)."
    );
    describe_counter!(
        RESULTS_COMMITTED_TOTAL,
        "Probe results of this node committed through raft."
    );
    describe_histogram!(
        RESULT_BATCH_COMMIT_SECONDS,
        Unit::Seconds,
        "Time from handing a result batch to raft (or forwarding it to the leader) to its commit."
    );
    describe_counter!(
        NOTIFICATIONS_TOTAL,
        "Notification deliveries by this node as leader, by outcome."
    );
    describe_gauge!(RAFT_TERM, "Current raft term.");
    describe_gauge!(RAFT_LAST_LOG_INDEX, "Last raft log index on this node.");
    describe_gauge!(
        RAFT_APPLIED_INDEX,
        "Last log index applied to the state machine."
    );
    describe_gauge!(RAFT_IS_LEADER, "1 when this node is the raft leader.");
    describe_gauge!(CHECKS, "Checks in the applied catalog.");
    describe_gauge!(INCIDENTS_OPEN, "Incidents currently open.");
    describe_gauge!(
        DATA_DIR_BYTES,
        Unit::Bytes,
        "Bytes of files under this node's data_dir (raft log, snapshots), read at scrape."
    );
}

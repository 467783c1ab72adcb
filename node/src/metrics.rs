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
pub const CHECK_STATUS: &str = "consentry_check_status";
pub const CHECK_LATENCY_SECONDS: &str = "consentry_check_latency_seconds";
pub const CHECK_VERDICT: &str = "consentry_check_verdict";
pub const CHECK_INCIDENT_OPEN: &str = "consentry_check_incident_open";
pub const METRICS_CHECKS_OMITTED: &str = "consentry_metrics_checks_omitted";
pub const SITE_DEGRADED: &str = "consentry_site_degraded";
pub const SITE_SILENT: &str = "consentry_site_silent";
pub const SITE_PATH_SUSPECT_CHECKS: &str = "consentry_site_path_suspect_checks";
pub const CLUSTER_MEMBERS: &str = "consentry_cluster_members";
pub const RAFT_REPLICATION_LAG_ENTRIES: &str = "consentry_raft_replication_lag_entries";
pub const NOTIFICATIONS_PENDING: &str = "consentry_notifications_pending";
pub const RECOVERIES_ACTIVE: &str = "consentry_recoveries_active";
pub const HISTORY_LAG_ENTRIES: &str = "consentry_history_lag_entries";
pub const HISTORY_GAP_ENTRIES_TOTAL: &str = "consentry_history_gap_entries_total";
pub const HISTORY_BYTES: &str = "consentry_history_bytes";

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
        CHECK_STATUS,
        "Latest result of a check at a site, as a Nagios code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."
    );
    describe_gauge!(
        CHECK_LATENCY_SECONDS,
        Unit::Seconds,
        "Latency of a check's latest result at a site."
    );
    describe_gauge!(
        CHECK_VERDICT,
        "A check's agreed (quorum) verdict as a Nagios code; absent while pending."
    );
    describe_gauge!(
        CHECK_INCIDENT_OPEN,
        "1 while the check has an open incident."
    );
    describe_gauge!(
        METRICS_CHECKS_OMITTED,
        "Checks without per-check series because [metrics] checks_max was reached."
    );
    describe_gauge!(
        SITE_DEGRADED,
        "1 while the site is path-suspect on most of its checks (operator alert raised)."
    );
    describe_gauge!(
        SITE_SILENT,
        "1 while the site has stopped reporting results (operator alert raised)."
    );
    describe_gauge!(
        SITE_PATH_SUSPECT_CHECKS,
        "Checks on which the site is a path suspect: down there while a quorum sees them up."
    );
    describe_gauge!(CLUSTER_MEMBERS, "Cluster members by role (voter, learner).");
    describe_gauge!(
        RAFT_REPLICATION_LAG_ENTRIES,
        "Log entries a peer is behind the leader (exported by the leader only)."
    );
    describe_gauge!(
        NOTIFICATIONS_PENDING,
        "Notification intents not yet delivered or given up."
    );
    describe_gauge!(
        RECOVERIES_ACTIVE,
        "Recovery steps dispatched and not yet settled."
    );
    describe_gauge!(
        HISTORY_LAG_ENTRIES,
        "Applied log entries not yet recorded in this node's report history."
    );
    describe_counter!(
        HISTORY_GAP_ENTRIES_TOTAL,
        "Log entries purged before the report history could record them."
    );
    describe_gauge!(
        HISTORY_BYTES,
        Unit::Bytes,
        "Bytes of this node's report history database on disk, read at scrape."
    );
    describe_gauge!(
        DATA_DIR_BYTES,
        Unit::Bytes,
        "Bytes of files under this node's data_dir (raft log, snapshots), read at scrape."
    );
}

/// Gauges not set for this long disappear from `/metrics` (a removed check's series).
/// Every gauge is set at each scrape, so only series of things that are gone age out.
pub const GAUGE_IDLE_SECS: u64 = 120;

/// (check, agreed verdict code, incident open, [(site, status code, latency s)]).
type CheckFigures = (String, Option<u8>, bool, Vec<(String, u8, f64)>);

/// What the scrape exports of the applied state, copied out under its lock so the gauges
/// are set (thousands of label sets) without holding up the state machine.
pub struct StateFigures {
    checks: usize,
    omitted: usize,
    per_check: Vec<CheckFigures>,
    /// (site, degraded, silent, path-suspect checks).
    sites: Vec<(String, bool, bool, u64)>,
    open_incidents: usize,
    notifications_pending: usize,
    recoveries_active: usize,
}

impl StateFigures {
    /// The first `checks_max` checks by name get per-check figures; the rest are counted.
    #[allow(clippy::cast_precision_loss)]
    pub fn take(st: &consentry_cluster::state::ClusterState, checks_max: usize) -> Self {
        let mut names: Vec<&str> = st.catalog.checks.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        let per_check = names
            .iter()
            .take(checks_max)
            .map(|name| {
                let cs = st.checks.get(*name);
                let sites = cs
                    .map(|cs| {
                        cs.sites
                            .iter()
                            .map(|(site, s)| {
                                (
                                    site.clone(),
                                    s.last.status.nagios_code(),
                                    s.last.latency_ms as f64 / 1000.0,
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    (*name).to_string(),
                    st.verdict(name).map(|v| v.nagios_code()),
                    cs.is_some_and(|c| c.open_incident.is_some()),
                    sites,
                )
            })
            .collect();
        let mut suspects: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for cs in st.checks.values() {
            for site in &cs.eval.path_suspect {
                *suspects.entry(site.as_str()).or_default() += 1;
            }
        }
        let sites = st
            .probing_sites()
            .into_iter()
            .map(|site| {
                let health = st.site_health.get(&site);
                let suspect = suspects.get(site.as_str()).copied().unwrap_or(0);
                (
                    site,
                    health.is_some_and(|h| h.degraded.is_some()),
                    health.is_some_and(|h| h.silent.is_some()),
                    suspect,
                )
            })
            .collect();
        Self {
            checks: names.len(),
            omitted: names.len().saturating_sub(checks_max),
            per_check,
            sites,
            open_incidents: st.open_incidents().count(),
            notifications_pending: st.pending_intents().count(),
            recoveries_active: st.recoveries.values().filter(|r| r.is_active()).count(),
        }
    }

    /// Sets the gauges. Labels are check names from the catalog (at most `checks_max` of
    /// them) and site names from the membership.
    #[allow(clippy::cast_precision_loss)]
    pub fn export(&self) {
        use ::metrics::gauge;
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        gauge!(CHECKS).set(self.checks as f64);
        gauge!(METRICS_CHECKS_OMITTED).set(self.omitted as f64);
        gauge!(INCIDENTS_OPEN).set(self.open_incidents as f64);
        for (check, verdict, open, sites) in &self.per_check {
            if let Some(code) = verdict {
                gauge!(CHECK_VERDICT, "check" => check.clone()).set(f64::from(*code));
            }
            gauge!(CHECK_INCIDENT_OPEN, "check" => check.clone()).set(flag(*open));
            for (site, code, latency_s) in sites {
                let labels = [("check", check.clone()), ("site", site.clone())];
                gauge!(CHECK_STATUS, &labels).set(f64::from(*code));
                gauge!(CHECK_LATENCY_SECONDS, &labels).set(*latency_s);
            }
        }
        for (site, degraded, silent, suspects) in &self.sites {
            gauge!(SITE_DEGRADED, "site" => site.clone()).set(flag(*degraded));
            gauge!(SITE_SILENT, "site" => site.clone()).set(flag(*silent));
            gauge!(SITE_PATH_SUSPECT_CHECKS, "site" => site.clone()).set(*suspects as f64);
        }
        gauge!(NOTIFICATIONS_PENDING).set(self.notifications_pending as f64);
        gauge!(RECOVERIES_ACTIVE).set(self.recoveries_active as f64);
    }
}

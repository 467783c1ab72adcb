//! Availability reports: per check, the agreed availability that customers are billed
//! against, and each site's raw availability beside it (docs/reports.md).
//!
//! - **Downtime** is the union of the check's CRITICAL or UNKNOWN incidents, each from its
//!   outage start (the first failing result at the agreeing sites) to the result that
//!   confirmed recovery, clipped to the period. An open incident runs to the report's end.
//! - **Maintenance** is the union of the silences matching the check (by name or label, as
//!   the check is now), clipped to the period. Downtime inside maintenance is not billed.
//! - **Availability** is `1 - billed downtime / (period - maintenance)`.
//! - **Incidents** counts incidents of any severity that opened in the period; mean time
//!   to detect is from outage start to the quorum's agreement, mean time to recover from
//!   that agreement to the recovery's confirmation (closed incidents only).
//! - **Per-site raw availability** is the share of a site's results that were OK or
//!   WARNING. A site with path trouble shows low here while the agreed figure stays whole:
//!   visible, not billed.

use std::collections::BTreeMap;

use consentry_cluster::model::CheckSpec;
use serde::Serialize;

use super::store::{Bucket, History, HistoryError, IncidentRecord, SilenceRecord, DAY_MS};

/// Incidents listed in one report.
pub const REPORT_INCIDENTS_MAX: usize = 10_000;

/// What a report covers.
#[derive(Debug, Clone, Default)]
pub struct ReportQuery {
    pub from_ms: u64,
    pub to_ms: u64,
    /// Only these checks (empty: every check).
    pub checks: Vec<String>,
    /// Only checks with this label value.
    pub label: Option<(String, String)>,
}

impl ReportQuery {
    fn wants(&self, spec: &CheckSpec) -> bool {
        (self.checks.is_empty() || self.checks.iter().any(|c| c == &spec.name))
            && self
                .label
                .as_ref()
                .is_none_or(|(k, v)| spec.labels.get(k) == Some(v))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AvailabilityReport {
    pub from_ms: u64,
    pub to_ms: u64,
    /// The report's end as computed: `to_ms`, or now when the period has not ended.
    pub until_ms: u64,
    pub checks: Vec<CheckAvailability>,
    /// Incidents overlapping the period, oldest first (the monthly outage list).
    pub incidents: Vec<IncidentRecord>,
    pub incidents_truncated: bool,
    /// Log entries this node's history could not record (purged before it read them):
    /// nonzero means the per-site figures may miss results.
    pub history_gap_entries: u64,
    /// Where this node's history begins: its first recorded tick, or the retention of
    /// incidents (`hour_days`) when that is later. `None` before anything was recorded.
    /// Time before it has no data: a period that ends before it has no availability,
    /// and one that starts before it counts the earlier part as up.
    pub history_from_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckAvailability {
    pub check: String,
    pub labels: BTreeMap<String, String>,
    /// Milliseconds of the period that count (period minus maintenance).
    pub counted_ms: u64,
    pub maintenance_ms: u64,
    /// Outage time outside maintenance.
    pub downtime_ms: u64,
    /// Outage time inside maintenance (shown, not billed).
    pub maintenance_downtime_ms: u64,
    /// `None` when maintenance covered the whole period.
    pub availability_percent: Option<f64>,
    pub incidents: u32,
    pub mean_time_to_detect_ms: Option<u64>,
    pub mean_time_to_recover_ms: Option<u64>,
    pub sites: Vec<SiteAvailability>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SiteAvailability {
    pub site: String,
    pub results: u64,
    pub up: u64,
    /// `None` without results in the period.
    pub availability_percent: Option<f64>,
    pub latency_avg_ms: Option<f64>,
    pub latency_max_ms: Option<u64>,
}

/// Merges overlapping intervals.
fn union(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.retain(|(a, b)| a < b);
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn total(v: &[(u64, u64)]) -> u64 {
    v.iter().map(|(a, b)| b - a).sum()
}

/// Length of the overlap of two unions.
fn overlap(a: &[(u64, u64)], b: &[(u64, u64)]) -> u64 {
    let (mut i, mut j, mut sum) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        let lo = a[i].0.max(b[j].0);
        let hi = a[i].1.min(b[j].1);
        if lo < hi {
            sum += hi - lo;
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    sum
}

#[allow(clippy::cast_precision_loss)]
fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

/// One check's figures over `[from, until)` from its incidents and the silences.
pub fn check_availability(
    spec: &CheckSpec,
    from: u64,
    until: u64,
    incidents: &[&IncidentRecord],
    silences: &[SilenceRecord],
    sites: &BTreeMap<String, Bucket>,
) -> CheckAvailability {
    let clip = |a: u64, b: u64| (a.max(from), b.min(until));
    let maintenance = union(
        silences
            .iter()
            .filter(|s| s.matcher.matches(spec))
            .map(|s| clip(s.start_ms, s.end_ms))
            .collect(),
    );
    let outages = union(
        incidents
            .iter()
            .filter(|i| i.is_outage())
            .map(|i| clip(i.start_ms, i.closed_at_ms.unwrap_or(until)))
            .collect(),
    );
    let maintenance_ms = total(&maintenance);
    let all_down = total(&outages);
    let maintenance_downtime_ms = overlap(&outages, &maintenance);
    let downtime_ms = all_down - maintenance_downtime_ms;
    let counted_ms = (until - from).saturating_sub(maintenance_ms);
    let opened: Vec<&&IncidentRecord> = incidents
        .iter()
        .filter(|i| i.opened_at_ms >= from && i.opened_at_ms < until)
        .collect();
    let mean = |v: Vec<u64>| {
        let n = v.len() as u64;
        (n > 0).then(|| v.iter().sum::<u64>() / n)
    };
    let mttd = mean(opened.iter().filter_map(|i| i.time_to_detect_ms).collect());
    let mttr = mean(
        opened
            .iter()
            .filter_map(|i| i.closed_at_ms.map(|c| c.saturating_sub(i.opened_at_ms)))
            .collect(),
    );
    CheckAvailability {
        check: spec.name.clone(),
        labels: spec.labels.clone(),
        counted_ms,
        maintenance_ms,
        downtime_ms,
        maintenance_downtime_ms,
        availability_percent: percent(counted_ms - downtime_ms.min(counted_ms), counted_ms),
        incidents: u32::try_from(opened.len()).unwrap_or(u32::MAX),
        mean_time_to_detect_ms: mttd,
        mean_time_to_recover_ms: mttr,
        sites: sites
            .iter()
            .map(|(site, b)| SiteAvailability {
                site: site.clone(),
                results: b.n,
                up: b.up,
                availability_percent: percent(b.up, b.n),
                latency_avg_ms: (b.n > 0).then(|| b.avg_ms()),
                latency_max_ms: (b.n > 0).then_some(b.latency_max_ms),
            })
            .collect(),
    }
}

/// The availability report for `q` over the checks of `catalog`, at `now_ms`.
///
/// # Errors
/// When the history cannot be read.
pub fn availability(
    history: &History,
    catalog: &[CheckSpec],
    q: &ReportQuery,
    now_ms: u64,
) -> Result<AvailabilityReport, HistoryError> {
    let from = q.from_ms;
    let until = q.to_ms.min(now_ms.max(from));
    let specs: Vec<&CheckSpec> = catalog.iter().filter(|s| q.wants(s)).collect();
    let names: std::collections::HashSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let every = q.checks.is_empty() && q.label.is_none();
    let totals = history.totals(from, until, (!every).then_some(&names))?;
    let incidents: Vec<IncidentRecord> = history
        .incidents(from, until)?
        .into_iter()
        .filter(|i| names.contains(i.check.as_str()))
        .collect();
    let silences = history.silences()?;
    let mut by_check: std::collections::HashMap<&str, Vec<&IncidentRecord>> =
        std::collections::HashMap::new();
    for i in &incidents {
        by_check.entry(i.check.as_str()).or_default().push(i);
    }
    let empty = BTreeMap::new();
    let checks = specs
        .iter()
        .map(|spec| {
            check_availability(
                spec,
                from,
                until,
                by_check.get(spec.name.as_str()).map_or(&[][..], |v| v),
                &silences,
                totals.get(&spec.name).unwrap_or(&empty),
            )
        })
        .collect();
    let meta = history.meta()?;
    let horizon = now_ms.saturating_sub(history.retention().hour_days.saturating_mul(DAY_MS));
    let history_from_ms = (meta.first_wall_ms > 0).then(|| meta.first_wall_ms.max(horizon));
    let mut checks: Vec<CheckAvailability> = checks;
    if history_from_ms.is_none_or(|h| until <= h) {
        // No data behind the period: no availability figure rather than a 100 %.
        for c in &mut checks {
            c.availability_percent = None;
        }
    }
    let incidents_truncated = incidents.len() > REPORT_INCIDENTS_MAX;
    let mut incidents = incidents;
    incidents.truncate(REPORT_INCIDENTS_MAX);
    Ok(AvailabilityReport {
        from_ms: from,
        to_ms: q.to_ms,
        until_ms: until,
        checks,
        incidents,
        incidents_truncated,
        history_gap_entries: meta.gap_entries,
        history_from_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_arithmetic() {
        let u = union(vec![(5, 10), (0, 3), (2, 6), (20, 20), (12, 15)]);
        assert_eq!(u, vec![(0, 10), (12, 15)]);
        assert_eq!(total(&u), 13);
        assert_eq!(overlap(&u, &[(8, 13)]), 3);
        assert_eq!(overlap(&u, &[(100, 200)]), 0);
    }
}

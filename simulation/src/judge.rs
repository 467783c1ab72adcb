//! How any monitor's alerts are judged against the ground truth: consentry's incidents and
//! the baselines' pages alike, so the table compares like with like.

use crate::schedule::{
    Outage, Schedule, Window, CONFIRM_ROUNDS, CONFIRM_WINDOW_MS, INTERVAL_MS, SITES, TIMEOUT_MS,
};

/// How far back from an alert its cause may lie: the failed probes behind it started at
/// most this long before it opened (rounds, the last probe's timeout, and slack for batching,
/// commit and a leader election).
pub const LOOKBACK_MS: u64 = CONFIRM_ROUNDS * INTERVAL_MS + TIMEOUT_MS + 30_000;
/// How long after an outage ends its alert may still open.
pub const LAG_MS: u64 = TIMEOUT_MS + 30_000;
/// Sites that must agree for a quorum; path failures at this many sites at once excuse an
/// alert (no monitor can tell them from an outage).
pub const QUORUM_SITES: usize = 2;

/// One page a monitor raised for a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    pub target: usize,
    pub opened: u64,
    pub closed: Option<u64>,
}

impl Alert {
    fn span(&self) -> Window {
        Window {
            from: self.opened,
            to: self.closed.unwrap_or(u64::MAX),
        }
    }
}

/// When the cluster could commit: a majority of nodes up and connected.
pub struct Availability<'a> {
    pub schedule: &'a Schedule,
    /// Per node (index = site): executed down windows.
    pub down: &'a [Vec<Window>],
}

impl Availability<'_> {
    fn node_ok(&self, site: usize, ms: u64) -> bool {
        let up = !self.down[site].iter().any(|w| w.contains(ms));
        let isolated = self
            .schedule
            .partitions
            .iter()
            .any(|p| p.site == site && p.window.contains(ms));
        up && !isolated
    }

    pub fn at(&self, ms: u64) -> bool {
        (0..SITES.len()).filter(|&s| self.node_ok(s, ms)).count() * 2 > SITES.len()
    }

    /// Available at every moment of `[from, to)`: checked at `from` and at every fault
    /// boundary inside, where availability can change.
    pub fn throughout(&self, from: u64, to: u64) -> bool {
        let mut points = vec![from];
        let edges = self
            .down
            .iter()
            .flatten()
            .copied()
            .chain(self.schedule.partitions.iter().map(|p| p.window));
        for w in edges {
            for p in [w.from, w.to] {
                if from < p && p < to {
                    points.push(p);
                }
            }
        }
        points.into_iter().all(|p| self.at(p))
    }

    /// Any node down or isolated at some moment of `[from, to)`.
    pub fn disturbed(&self, from: u64, to: u64) -> bool {
        self.down.iter().flatten().any(|w| w.overlaps(from, to))
            || self
                .schedule
                .partitions
                .iter()
                .any(|p| p.window.overlaps(from, to))
    }
}

/// Outages every correct monitor must catch: longer than the confirmation window, with a
/// quorum able to commit throughout.
pub fn required_outages<'a>(schedule: &'a Schedule, avail: &Availability) -> Vec<&'a Outage> {
    schedule
        .outages
        .iter()
        .filter(|o| o.window.len() >= CONFIRM_WINDOW_MS)
        .filter(|o| avail.throughout(o.window.from, o.window.to))
        .collect()
}

/// An alert is false when its target was up throughout the lookback before it opened and
/// fewer than a quorum of sites had a path failure to it then.
pub fn is_false(schedule: &Schedule, alert: &Alert) -> bool {
    let from = alert.opened.saturating_sub(LOOKBACK_MS);
    let to = alert.opened + 1;
    !schedule.down_during(alert.target, from, to)
        && schedule.sites_cut_during(alert.target, from, to) < QUORUM_SITES
}

/// Alerts for the outage's target that were open at some moment of the outage (or of the
/// lag after it).
pub fn covering<'a>(alerts: &'a [Alert], outage: &Outage) -> Vec<&'a Alert> {
    let (from, to) = (outage.window.from, outage.window.to + LAG_MS);
    alerts
        .iter()
        .filter(|a| a.target == outage.target && a.span().overlaps(from, to))
        .collect()
}

/// Alerts for the outage's target that opened during it (or the lag after it).
pub fn opened_during<'a>(alerts: &'a [Alert], outage: &Outage) -> Vec<&'a Alert> {
    let (from, to) = (outage.window.from, outage.window.to + LAG_MS);
    alerts
        .iter()
        .filter(|a| a.target == outage.target && from <= a.opened && a.opened < to)
        .collect()
}

/// The figures of one monitor's row in the table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Score {
    pub outages: u64,
    pub detected: u64,
    pub missed: u64,
    pub false_alerts: u64,
    pub path_faults: u64,
    pub path_absorbed: u64,
    /// Detection latency per detected outage, ms.
    pub latencies: Vec<u64>,
    /// Extra pages a deduplicating receiver would still show for one event.
    pub duplicates: u64,
}

impl Score {
    pub fn add(&mut self, other: &Score) {
        self.outages += other.outages;
        self.detected += other.detected;
        self.missed += other.missed;
        self.false_alerts += other.false_alerts;
        self.path_faults += other.path_faults;
        self.path_absorbed += other.path_absorbed;
        self.latencies.extend(&other.latencies);
        self.duplicates += other.duplicates;
    }
}

/// Scores `alerts` against the truth. `duplicates` is counted by the caller (it depends on
/// how the monitor pages).
pub fn score(schedule: &Schedule, avail: &Availability, alerts: &[Alert]) -> Score {
    let required = required_outages(schedule, avail);
    let mut s = Score {
        outages: required.len() as u64,
        ..Score::default()
    };
    for outage in &required {
        if covering(alerts, outage).is_empty() {
            s.missed += 1;
        } else {
            s.detected += 1;
            if let Some(first) = opened_during(alerts, outage).iter().map(|a| a.opened).min() {
                s.latencies.push(first - outage.window.from);
            }
        }
    }
    let false_alerts: Vec<&Alert> = alerts.iter().filter(|a| is_false(schedule, a)).collect();
    s.false_alerts = false_alerts.len() as u64;
    s.path_faults = schedule.paths.len() as u64;
    s.path_absorbed = schedule
        .paths
        .iter()
        .filter(|p| {
            !false_alerts.iter().any(|a| {
                p.target.is_none_or(|t| t == a.target)
                    && p.window.from <= a.opened
                    && a.opened < p.window.to + LAG_MS
            })
        })
        .count() as u64;
    s
}

/// The `q`-quantile (0..=1) of `values`, nearest rank; `None` when empty.
pub fn quantile(values: &[u64], q: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::PathFault;

    fn schedule_with(outages: Vec<Outage>, paths: Vec<PathFault>) -> Schedule {
        let mut s = Schedule::generate(0, 3_600_000);
        s.outages = outages;
        s.paths = paths;
        s.partitions.clear();
        s.crashes.clear();
        s
    }

    fn w(from: u64, to: u64) -> Window {
        Window { from, to }
    }

    #[test]
    fn an_alert_during_a_one_site_path_failure_is_false_and_one_after_an_outage_is_not() {
        let s = schedule_with(
            vec![Outage {
                target: 0,
                window: w(1_000_000, 1_200_000),
            }],
            vec![PathFault {
                site: 0,
                target: Some(1),
                window: w(500_000, 900_000),
            }],
        );
        let path_page = Alert {
            target: 1,
            opened: 600_000,
            closed: Some(900_000),
        };
        let outage_page = Alert {
            target: 0,
            opened: 1_060_000,
            closed: Some(1_260_000),
        };
        assert!(is_false(&s, &path_page));
        assert!(!is_false(&s, &outage_page));
        let down = vec![Vec::new(); SITES.len()];
        let avail = Availability {
            schedule: &s,
            down: &down,
        };
        let score = score(&s, &avail, &[path_page, outage_page]);
        assert_eq!((score.outages, score.detected, score.missed), (1, 1, 0));
        assert_eq!(score.false_alerts, 1);
        assert_eq!((score.path_faults, score.path_absorbed), (1, 0));
        assert_eq!(score.latencies, vec![60_000]);
        let none = super::score(&s, &avail, &[]);
        assert_eq!(
            (none.missed, none.false_alerts, none.path_absorbed),
            (1, 0, 1)
        );
    }

    #[test]
    fn a_quorum_of_cut_paths_excuses_an_alert() {
        let cut = |site| PathFault {
            site,
            target: None,
            window: w(0, 400_000),
        };
        let s = schedule_with(Vec::new(), vec![cut(0), cut(2)]);
        let alert = Alert {
            target: 3,
            opened: 100_000,
            closed: None,
        };
        assert!(!is_false(&s, &alert));
    }

    #[test]
    fn availability_needs_a_connected_majority() {
        let mut s = schedule_with(Vec::new(), Vec::new());
        s.partitions = vec![crate::schedule::NodeFault {
            site: 1,
            window: w(100, 200),
        }];
        let down = vec![vec![w(150, 300)], Vec::new(), Vec::new()];
        let avail = Availability {
            schedule: &s,
            down: &down,
        };
        assert!(avail.at(120) && !avail.at(160) && avail.at(250));
        assert!(avail.throughout(0, 150) && !avail.throughout(0, 170));
        assert!(avail.disturbed(0, 101) && !avail.disturbed(300, 400));
    }

    #[test]
    fn quantiles_use_nearest_rank() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[5, 1, 3], 0.5), Some(3));
        assert_eq!(quantile(&[1, 2, 3, 4], 0.99), Some(4));
    }
}

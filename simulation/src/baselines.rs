//! The monitors consentry is compared with, fed the very probe results consentry's pollers
//! produced on the same schedule (a crashed site's poller produces none, for them too).
//!
//! - single site: one poller (site-a) pages after `confirm.rounds` failures in a row, as a
//!   classic one-box Nagios does.
//! - any site: pollers at every site, one page when any site sees `confirm.rounds`
//!   failures in a row (a central server that trusts every remote poller).
//! - per-site N-of-M: every site pages on its own when 3 of its last 5 probes failed, with
//!   no consensus (several independent monitors watching the same thing).

use std::collections::BTreeMap;

use crate::judge::{self, Alert, Availability, Score};
use crate::schedule::{CONFIRM_ROUNDS, INTERVAL_MS, RECOVER_ROUNDS, SITES, TARGETS};
use crate::world::{RawResult, RunRecord};

/// Probes per site in the per-site rule's window, and failures among them that page.
pub const N_OF_M: (usize, usize) = (3, 5);
/// A site whose last result is older than this no longer counts (any-site rule).
pub const STALE_MS: u64 = 3 * INTERVAL_MS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Baseline {
    SingleSite,
    AnySite,
    PerSiteNofM,
}

impl Baseline {
    pub const ALL: [Baseline; 3] = [
        Baseline::SingleSite,
        Baseline::AnySite,
        Baseline::PerSiteNofM,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Baseline::SingleSite => "single site (site-a)",
            Baseline::AnySite => "alert if any site fails",
            Baseline::PerSiteNofM => "each site 3-of-5, no consensus",
        }
    }

    /// The baseline's pages; for the per-site rule, one per site that paged.
    pub fn alerts(self, raw: &[RawResult]) -> Vec<(Option<usize>, Alert)> {
        let mut raw = raw.to_vec();
        raw.sort_by_key(|r| (r.ms, r.site, r.target));
        match self {
            Baseline::SingleSite => streaks(raw.iter().filter(|r| r.site == 0))
                .into_iter()
                .map(|a| (None, a))
                .collect(),
            Baseline::AnySite => any_site(&raw).into_iter().map(|a| (None, a)).collect(),
            Baseline::PerSiteNofM => (0..SITES.len())
                .flat_map(|site| {
                    n_of_m(raw.iter().filter(move |r| r.site == site))
                        .into_iter()
                        .map(move |a| (Some(site), a))
                })
                .collect(),
        }
    }

    /// Scores the baseline on one run.
    pub fn score(self, run: &RunRecord) -> Score {
        let avail = Availability {
            schedule: &run.schedule,
            down: &run.down,
        };
        let paged = self.alerts(&run.raw);
        let alerts: Vec<Alert> = paged.iter().map(|(_, a)| *a).collect();
        let mut score = judge::score(&run.schedule, &avail, &alerts);
        // Every page beyond the first for one outage reaches a person again: separate
        // monitors share no dedup key.
        score.duplicates = judge::required_outages(&run.schedule, &avail)
            .iter()
            .map(|o| judge::opened_during(&alerts, o).len().saturating_sub(1) as u64)
            .sum();
        score
    }
}

/// Consecutive-failure paging on one result stream (per target).
fn streaks<'a>(results: impl Iterator<Item = &'a RawResult>) -> Vec<Alert> {
    let mut state: BTreeMap<usize, (u64, u64, Option<u64>)> = BTreeMap::new();
    let mut out = Vec::new();
    for r in results {
        let (fails, oks, open) = state.entry(r.target).or_insert((0, 0, None));
        if r.ok {
            *fails = 0;
            *oks += 1;
            if *oks >= RECOVER_ROUNDS {
                if let Some(opened) = open.take() {
                    out.push(Alert {
                        target: r.target,
                        opened,
                        closed: Some(r.ms),
                    });
                }
            }
        } else {
            *oks = 0;
            *fails += 1;
            if *fails >= CONFIRM_ROUNDS && open.is_none() {
                *open = Some(r.ms);
            }
        }
    }
    for (target, (_, _, open)) in state {
        if let Some(opened) = open {
            out.push(Alert {
                target,
                opened,
                closed: None,
            });
        }
    }
    out.sort_by_key(|a| (a.opened, a.target));
    out
}

/// One page per target while any fresh site has `confirm.rounds` failures in a row.
fn any_site(raw: &[RawResult]) -> Vec<Alert> {
    // (site, target) -> (consecutive fails, last result ms)
    let mut sites: BTreeMap<(usize, usize), (u64, u64)> = BTreeMap::new();
    let mut open: [Option<u64>; TARGETS] = [None; TARGETS];
    let mut out = Vec::new();
    for r in raw {
        let entry = sites.entry((r.site, r.target)).or_insert((0, 0));
        entry.0 = if r.ok { 0 } else { entry.0 + 1 };
        entry.1 = r.ms;
        let any_down = sites.iter().any(|(&(_, t), &(fails, last))| {
            t == r.target && fails >= CONFIRM_ROUNDS && last + STALE_MS >= r.ms
        });
        match (open[r.target], any_down) {
            (None, true) => open[r.target] = Some(r.ms),
            (Some(opened), false) => {
                out.push(Alert {
                    target: r.target,
                    opened,
                    closed: Some(r.ms),
                });
                open[r.target] = None;
            }
            _ => {}
        }
    }
    for (target, opened) in open.iter().enumerate() {
        if let Some(opened) = opened {
            out.push(Alert {
                target,
                opened: *opened,
                closed: None,
            });
        }
    }
    out.sort_by_key(|a| (a.opened, a.target));
    out
}

/// One site's N-of-M paging (per target): pages when N of the last M probes failed,
/// clears when the last `recover.rounds` succeeded.
fn n_of_m<'a>(results: impl Iterator<Item = &'a RawResult>) -> Vec<Alert> {
    let (n, m) = N_OF_M;
    let mut windows: BTreeMap<usize, (Vec<bool>, Option<u64>)> = BTreeMap::new();
    let mut out = Vec::new();
    for r in results {
        let (window, open) = windows.entry(r.target).or_default();
        window.push(r.ok);
        if window.len() > m {
            window.remove(0);
        }
        let fails = window.iter().filter(|ok| !**ok).count();
        let recovered = window.len() >= RECOVER_ROUNDS as usize
            && window
                .iter()
                .rev()
                .take(RECOVER_ROUNDS as usize)
                .all(|ok| *ok);
        if open.is_none() && fails >= n {
            *open = Some(r.ms);
        } else if recovered {
            if let Some(opened) = open.take() {
                out.push(Alert {
                    target: r.target,
                    opened,
                    closed: Some(r.ms),
                });
            }
        }
    }
    for (target, (_, open)) in windows {
        if let Some(opened) = open {
            out.push(Alert {
                target,
                opened,
                closed: None,
            });
        }
    }
    out.sort_by_key(|a| (a.opened, a.target));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(ms: u64, site: usize, target: usize, ok: bool) -> RawResult {
        RawResult {
            ms,
            site,
            target,
            ok,
        }
    }

    #[test]
    fn single_site_pages_on_its_own_streak_and_clears_after_recovery() {
        let raw = [
            r(0, 0, 1, false),
            r(10, 1, 1, false),
            r(30, 0, 1, false),
            r(60, 0, 1, true),
            r(90, 0, 1, true),
        ];
        let alerts = Baseline::SingleSite.alerts(&raw);
        assert_eq!(
            alerts,
            vec![(
                None,
                Alert {
                    target: 1,
                    opened: 30,
                    closed: Some(90)
                }
            )]
        );
    }

    #[test]
    fn any_site_pages_for_one_site_and_ignores_a_stale_one() {
        let raw = [
            r(0, 2, 0, false),
            r(30_000, 2, 0, false),
            r(40_000, 0, 0, true),
            r(200_000, 0, 0, true),
        ];
        let alerts = Baseline::AnySite.alerts(&raw);
        assert_eq!(
            alerts,
            vec![(
                None,
                Alert {
                    target: 0,
                    opened: 30_000,
                    closed: Some(200_000)
                }
            )]
        );
    }

    #[test]
    fn per_site_pages_once_per_site() {
        let mut raw = Vec::new();
        for (i, ms) in (0..5u64).map(|i| (i, i * 30_000)) {
            for site in 0..3 {
                raw.push(r(ms + site as u64, site, 4, !(2..5).contains(&i)));
            }
        }
        let alerts = Baseline::PerSiteNofM.alerts(&raw);
        assert_eq!(alerts.len(), 3);
        assert!(alerts
            .iter()
            .all(|(_, a)| a.target == 4 && a.closed.is_none()));
    }
}

//! The decision rule: from each probing site's counters to one verdict per check.
//!
//! Pure and synchronous: the state machine calls [`evaluate`] with the counters it keeps and
//! the current leader tick. See DESIGN.md, "The decision rule".

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::model::{CheckSpec, Status};

/// How often the leader commits a `Tick`. Freshness is counted in ticks, never by comparing
/// two machines' clocks. Part of the replicated protocol: every replica must agree on it.
pub const TICK_MS: u64 = 1_000;

/// A site's last result is fresh for this many check intervals...
pub const FRESH_INTERVALS: u64 = 3;

/// ...plus this many ticks of slack for batching and replication delay.
pub const FRESH_SLACK_TICKS: u64 = 2;

/// Degraded quorum (fewer fresh sites than required) needs this many times the normal
/// number of rounds before it opens or closes an "unconfirmed" incident.
pub const DEGRADED_ROUNDS_FACTOR: u32 = 2;

/// One probing site's counters for one check, as the rule sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteCounters {
    pub site: String,
    pub consecutive_fail: u32,
    pub consecutive_ok: u32,
    pub last_status: Status,
    /// Tick at which the site's last result was applied.
    pub last_tick: u64,
}

/// What the rule decides for one check at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Evaluation {
    /// Sites that must agree (from `confirm.sites`, clamped to the probing sites).
    pub required: u32,
    /// Probing sites whose last result is recent.
    pub fresh: BTreeSet<String>,
    /// Fresh sites that report down (`confirm.rounds` consecutive non-OK results).
    pub down: BTreeSet<String>,
    /// Fresh sites that report recovered (`recover.rounds` consecutive OK results).
    pub up: BTreeSet<String>,
    /// Sites that report down while a majority of the other fresh sites report OK.
    pub path_suspect: BTreeSet<String>,
    /// Set when an incident should open now.
    pub open: Option<Opening>,
    /// Set when the open incident should close now.
    pub close: Option<Closing>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opening {
    pub severity: Status,
    pub sites: BTreeSet<String>,
    /// `Some((fresh, probing))` when decided on a degraded quorum.
    pub unconfirmed: Option<(u32, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closing {
    pub sites: BTreeSet<String>,
    pub unconfirmed: Option<(u32, u32)>,
}

/// Ticks during which a result stays fresh for a check with this interval.
pub fn fresh_ticks(interval_ms: u64) -> u64 {
    FRESH_INTERVALS * interval_ms.div_ceil(TICK_MS) + FRESH_SLACK_TICKS
}

/// Sites that must agree: `confirm.sites` (default 2), never more than the sites that probe
/// and never fewer than 1.
pub fn required_sites(check: &CheckSpec, probing_sites: usize) -> u32 {
    let probing = u32::try_from(probing_sites).unwrap_or(u32::MAX).max(1);
    check.confirm.sites.unwrap_or(2).clamp(1, probing)
}

/// Applies the decision rule.
///
/// `probing_sites` is the number of sites that probe this check (from the membership);
/// `counters` holds one entry per site that has reported; `incident_open` says whether an
/// incident is currently open for the check.
pub fn evaluate(
    check: &CheckSpec,
    probing_sites: usize,
    counters: &[SiteCounters],
    tick: u64,
    incident_open: bool,
) -> Evaluation {
    let required = required_sites(check, probing_sites);
    let window = fresh_ticks(check.interval_ms);
    let rounds = check.confirm.rounds.max(1);
    let recover_rounds = check.recover.rounds.max(1);

    let fresh: Vec<&SiteCounters> = counters
        .iter()
        .filter(|c| c.last_tick.saturating_add(window) >= tick)
        .collect();
    let down: Vec<&SiteCounters> = fresh
        .iter()
        .copied()
        .filter(|c| c.consecutive_fail >= rounds)
        .collect();
    let up: Vec<&SiteCounters> = fresh
        .iter()
        .copied()
        .filter(|c| c.consecutive_ok >= recover_rounds)
        .collect();

    let mut eval = Evaluation {
        required,
        fresh: fresh.iter().map(|c| c.site.clone()).collect(),
        down: down.iter().map(|c| c.site.clone()).collect(),
        up: up.iter().map(|c| c.site.clone()).collect(),
        ..Evaluation::default()
    };

    // Path suspect: this site says down, and most of the other fresh sites say OK.
    for site in &down {
        let others: Vec<&&SiteCounters> = fresh.iter().filter(|c| c.site != site.site).collect();
        let others_ok = others.iter().filter(|c| c.last_status.is_ok()).count();
        if others_ok >= 1 && others_ok * 2 > others.len() {
            eval.path_suspect.insert(site.site.clone());
        }
    }

    let fresh_n = u32::try_from(fresh.len()).unwrap_or(u32::MAX);
    let probing_n = u32::try_from(probing_sites).unwrap_or(u32::MAX);
    let degraded = fresh_n < required;

    if !incident_open {
        if u32::try_from(down.len()).unwrap_or(u32::MAX) >= required {
            eval.open = Some(Opening {
                severity: worst(&down),
                sites: eval.down.clone(),
                unconfirmed: None,
            });
        } else if degraded
            && fresh_n >= 1
            && fresh
                .iter()
                .all(|c| c.consecutive_fail >= rounds * DEGRADED_ROUNDS_FACTOR)
        {
            eval.open = Some(Opening {
                severity: worst(&fresh),
                sites: eval.fresh.clone(),
                unconfirmed: Some((fresh_n, probing_n)),
            });
        }
    } else if u32::try_from(up.len()).unwrap_or(u32::MAX) >= required {
        eval.close = Some(Closing {
            sites: eval.up.clone(),
            unconfirmed: None,
        });
    } else if degraded
        && fresh_n >= 1
        && fresh
            .iter()
            .all(|c| c.consecutive_ok >= recover_rounds * DEGRADED_ROUNDS_FACTOR)
    {
        eval.close = Some(Closing {
            sites: eval.fresh.clone(),
            unconfirmed: Some((fresh_n, probing_n)),
        });
    }
    eval
}

fn worst(sites: &[&SiteCounters]) -> Status {
    sites
        .iter()
        .map(|c| c.last_status)
        .max_by_key(|s| s.severity())
        .unwrap_or(Status::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Confirm;

    const C: Status = Status::Critical;
    const W: Status = Status::Warning;
    const O: Status = Status::Ok;

    /// (site, consecutive_fail, consecutive_ok, last status, last tick)
    type Row = (&'static str, u32, u32, Status, u64);
    type Sites = &'static [&'static str];
    type Unconfirmed = Option<(u32, u32)>;

    struct Case {
        name: &'static str,
        confirm_sites: Option<u32>,
        probing: usize,
        sites: &'static [Row],
        tick: u64,
        open: bool,
        expect_open: Option<(Status, Sites, Unconfirmed)>,
        expect_close: Option<(Sites, Unconfirmed)>,
        expect_suspect: &'static [&'static str],
    }

    fn run(case: &Case) {
        let mut check = CheckSpec::for_test("c");
        check.interval_ms = 10_000; // fresh window = 3 * 10 + 2 = 32 ticks
        check.confirm = Confirm {
            sites: case.confirm_sites,
            rounds: 2,
        };
        let counters: Vec<SiteCounters> = case
            .sites
            .iter()
            .map(|&(site, f, o, s, t)| SiteCounters {
                site: site.into(),
                consecutive_fail: f,
                consecutive_ok: o,
                last_status: s,
                last_tick: t,
            })
            .collect();
        let e = evaluate(&check, case.probing, &counters, case.tick, case.open);
        let got_open = e.open.as_ref().map(|o| {
            (
                o.severity,
                o.sites.iter().cloned().collect::<Vec<_>>(),
                o.unconfirmed,
            )
        });
        let want_open = case
            .expect_open
            .map(|(s, sites, u)| (s, sites.iter().map(|x| x.to_string()).collect(), u));
        assert_eq!(got_open, want_open, "case {}: open", case.name);
        let got_close = e
            .close
            .as_ref()
            .map(|c| (c.sites.iter().cloned().collect::<Vec<_>>(), c.unconfirmed));
        let want_close = case
            .expect_close
            .map(|(sites, u)| (sites.iter().map(|x| x.to_string()).collect(), u));
        assert_eq!(got_close, want_close, "case {}: close", case.name);
        let suspects: Vec<String> = e.path_suspect.iter().cloned().collect();
        assert_eq!(
            suspects, case.expect_suspect,
            "case {}: path suspect",
            case.name
        );
    }

    #[test]
    fn decision_table() {
        let cases = [
            Case {
                name: "both sites down for 2 rounds opens",
                confirm_sites: None,
                probing: 2,
                sites: &[("a", 2, 0, C, 100), ("b", 2, 0, C, 100)],
                tick: 100,
                open: false,
                expect_open: Some((C, &["a", "b"], None)),
                expect_close: None,
                expect_suspect: &[],
            },
            Case {
                name: "one round is not enough",
                confirm_sites: None,
                probing: 2,
                sites: &[("a", 2, 0, C, 100), ("b", 1, 0, C, 100)],
                tick: 100,
                open: false,
                expect_open: None,
                expect_close: None,
                expect_suspect: &[],
            },
            Case {
                name: "severity is the worst agreeing status",
                confirm_sites: None,
                probing: 2,
                sites: &[("a", 3, 0, W, 100), ("b", 2, 0, C, 100)],
                tick: 100,
                open: false,
                expect_open: Some((C, &["a", "b"], None)),
                expect_close: None,
                expect_suspect: &[],
            },
            Case {
                name: "warning at both sites opens a warning incident",
                confirm_sites: None,
                probing: 2,
                sites: &[("a", 2, 0, W, 100), ("b", 2, 0, W, 100)],
                tick: 100,
                open: false,
                expect_open: Some((W, &["a", "b"], None)),
                expect_close: None,
                expect_suspect: &[],
            },
            Case {
                name: "one site down, other OK: path suspect, no incident",
                confirm_sites: None,
                probing: 2,
                sites: &[("a", 5, 0, C, 100), ("b", 0, 5, O, 100)],
                tick: 100,
                open: false,
                expect_open: None,
                expect_close: None,
                expect_suspect: &["a"],
            },
            Case {
                name: "two of three down opens, third OK is not enough to call it a path",
                confirm_sites: None,
                probing: 3,
                sites: &[
                    ("a", 2, 0, C, 100),
                    ("b", 2, 0, C, 100),
                    ("c", 0, 4, O, 100),
                ],
                tick: 100,
                open: false,
                expect_open: Some((C, &["a", "b"], None)),
                expect_close: None,
                expect_suspect: &[],
            },
            Case {
                name: "stale down site does not count",
                confirm_sites: None,
                probing: 2,
                sites: &[("a", 9, 0, C, 10), ("b", 2, 0, C, 100)],
                tick: 100,
                open: false,
                expect_open: None,
                expect_close: None,
                expect_suspect: &[],
            },
            Case {
                name: "degraded quorum opens unconfirmed after twice the rounds",
                confirm_sites: None,
                probing: 2,
                sites: &[("a", 9, 0, C, 10), ("b", 4, 0, C, 100)],
                tick: 100,
                open: false,
                expect_open: Some((C, &["b"], Some((1, 2)))),
                expect_close: None,
                expect_suspect: &[],
            },
            Case {
                name: "single probing site needs one site",
                confirm_sites: None,
                probing: 1,
                sites: &[("a", 2, 0, C, 100)],
                tick: 100,
                open: false,
                expect_open: Some((C, &["a"], None)),
                expect_close: None,
                expect_suspect: &[],
            },
            Case {
                name: "confirm.sites = 1 opens on one site (a deliberately weak rule)",
                confirm_sites: Some(1),
                probing: 2,
                sites: &[("a", 2, 0, C, 100), ("b", 0, 2, O, 100)],
                tick: 100,
                open: false,
                expect_open: Some((C, &["a"], None)),
                expect_close: None,
                expect_suspect: &["a"],
            },
            Case {
                name: "closes when both sites recovered",
                confirm_sites: None,
                probing: 2,
                sites: &[("a", 0, 2, O, 100), ("b", 0, 3, O, 100)],
                tick: 100,
                open: true,
                expect_open: None,
                expect_close: Some((&["a", "b"], None)),
                expect_suspect: &[],
            },
            Case {
                name: "one recovered site does not close; the other looks like a path",
                confirm_sites: None,
                probing: 2,
                sites: &[("a", 0, 2, O, 100), ("b", 3, 0, C, 100)],
                tick: 100,
                open: true,
                expect_open: None,
                expect_close: None,
                expect_suspect: &["b"],
            },
            Case {
                name: "degraded close after twice the recover rounds",
                confirm_sites: None,
                probing: 2,
                sites: &[("a", 7, 0, C, 10), ("b", 0, 4, O, 100)],
                tick: 100,
                open: true,
                expect_open: None,
                expect_close: Some((&["b"], Some((1, 2)))),
                expect_suspect: &[],
            },
            Case {
                name: "no fresh site decides nothing",
                confirm_sites: None,
                probing: 2,
                sites: &[("a", 9, 0, C, 10), ("b", 9, 0, C, 10)],
                tick: 100,
                open: false,
                expect_open: None,
                expect_close: None,
                expect_suspect: &[],
            },
        ];
        for case in &cases {
            run(case);
        }
    }

    #[test]
    fn freshness_window() {
        assert_eq!(fresh_ticks(10_000), 32);
        assert_eq!(fresh_ticks(1_000), 5);
        assert_eq!(fresh_ticks(1_500), 8);
    }
}

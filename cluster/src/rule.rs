//! The decision rule: from each probing site's counters to one verdict per check.
//!
//! Pure and synchronous: the state machine calls [`evaluate`] with the counters it keeps and
//! the current leader tick. See DESIGN.md, "The decision rule".

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::model::{CheckSpec, DegradedPolicy, Status, Transition};

/// How often the leader commits a `Tick`. Freshness is counted in ticks, never by comparing
/// two machines' clocks. Part of the replicated protocol: every replica must agree on it.
pub const TICK_MS: u64 = 1_000;

/// A site's last result is fresh for this many check intervals...
pub const FRESH_INTERVALS: u64 = 3;

/// ...plus this many ticks of slack for batching and replication delay.
pub const FRESH_SLACK_TICKS: u64 = 2;

/// Degraded quorum (fewer fresh sites than required) needs this many times the normal
/// number of rounds before it opens or closes an "unconfirmed" incident. Whether it may open
/// one at all is the check's `degraded` policy; closing always may.
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

/// Ticks a dependent check stays held after its parent recovered: long enough for it to
/// be probed `recover.rounds + 1` more times on its own schedule, plus batching slack. A
/// child still down after that has an outage of its own and is notified.
pub fn dependent_grace_ticks(check: &CheckSpec) -> u64 {
    (u64::from(check.recover.rounds) + 1) * check.interval_ms.div_ceil(TICK_MS) + FRESH_SLACK_TICKS
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
    evaluate_after(check, probing_sites, counters, tick, incident_open, None)
}

/// A jump of cluster time: the tick before it and the tick after it (a tick that stood
/// for more than one period, after a loss of quorum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jump {
    pub from: u64,
    pub to: u64,
}

/// [`evaluate`], knowing the last jump of cluster time. A site that was fresh just before
/// the jump and has not reported since is *awaited*, not absent: its node simply has not
/// had a committed tick to report in. While any site is awaited (at most one freshness
/// window after the jump), no degraded-quorum decision is taken, so one site's report does
/// not decide for all.
pub fn evaluate_after(
    check: &CheckSpec,
    probing_sites: usize,
    counters: &[SiteCounters],
    tick: u64,
    incident_open: bool,
    jump: Option<Jump>,
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
    let awaited = jump.is_some_and(|j| {
        tick < j.to.saturating_add(window)
            && counters.iter().any(|c| {
                let stale_now = c.last_tick.saturating_add(window) < tick;
                let fresh_before = c.last_tick.saturating_add(window) >= j.from;
                stale_now && fresh_before
            })
    });
    let degraded = fresh_n < required && !awaited;

    if !incident_open {
        if u32::try_from(down.len()).unwrap_or(u32::MAX) >= required {
            eval.open = Some(Opening {
                severity: worst(&down),
                sites: eval.down.clone(),
                unconfirmed: None,
            });
        } else if degraded
            && check.degraded == DegradedPolicy::Alert
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
    } else if u32::try_from(up.len()).unwrap_or(u32::MAX) >= required
        // Never close while the opening condition still holds: with `confirm.sites = 1`
        // one recovered site must not close what another site still reports down (the
        // incident would reopen on the next tick, and again, and again).
        && u32::try_from(down.len()).unwrap_or(u32::MAX) < required
    {
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

/// What holds an open incident's firing notifications. Holding never stops recording: the
/// incident opens, closes and keeps its evidence as usual.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holds {
    /// An active silence that matches the check.
    pub silence: Option<u64>,
    /// A parent check (`depends_on`) with an open incident.
    pub parent: Option<String>,
    /// The check is flapping: one "flapping started" notification replaces the per-transition
    /// ones until it stops.
    pub flapping: bool,
}

impl Holds {
    pub fn any(&self) -> bool {
        self.silence.is_some() || self.parent.is_some() || self.flapping
    }
}

/// A site is degraded when path-suspect on at least this many checks at once...
pub const DEGRADED_SUSPECT_MIN: u32 = 3;

/// ...and on more than half of the checks it has fresh results for. It stops being degraded
/// when path-suspect on a quarter of them or fewer (hysteresis, so a site near the line does
/// not page on every tick).
pub fn site_degraded(was: bool, suspect: u32, fresh: u32) -> bool {
    if was {
        suspect > 0 && suspect.saturating_mul(4) > fresh
    } else {
        suspect >= DEGRADED_SUSPECT_MIN && suspect.saturating_mul(2) > fresh
    }
}

/// A probing site is silent when no check has a fresh result from it and its last result
/// batch (or the catalog, whichever is newer) is older than the longest freshness window.
pub fn site_silent(fresh: u32, checks: usize, ticks_since: u64, window_ticks: u64) -> bool {
    checks > 0 && fresh == 0 && ticks_since > window_ticks
}

/// Results per site that flap detection looks at (Nagios: 21, so 20 changes at most).
pub const FLAP_HISTORY_LEN: u8 = 21;

/// One site's last `FLAP_HISTORY_LEN` statuses, two bits each, newest in the low bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatusHistory {
    bits: u64,
    len: u8,
}

impl StatusHistory {
    pub fn push(&mut self, status: Status) {
        let mask = (1u64 << (2 * u32::from(FLAP_HISTORY_LEN))) - 1;
        self.bits = ((self.bits << 2) | u64::from(status.severity() & 3)) & mask;
        self.len = (self.len + 1).min(FLAP_HISTORY_LEN);
    }

    pub fn len(&self) -> u8 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Nagios' weighted percent state change, in tenths of a percent (0 to 1000). Each
    /// change between two consecutive results weighs from 0.75 (oldest pair) to 1.25 (newest
    /// pair); the sum is divided by the 20 pairs of a full history, so a short history reads
    /// low. Integer arithmetic: identical on every replica.
    pub fn percent_change_tenths(&self) -> u32 {
        let pairs = u32::from(FLAP_HISTORY_LEN) - 1;
        // Weights scaled by 1900 = 19 * 100: 0.75 -> 1425, step 0.5 / 19 -> 50.
        let mut sum = 0u32;
        for i in 0..u32::from(self.len.saturating_sub(1)) {
            let newer = (self.bits >> (2 * i)) & 3;
            let older = (self.bits >> (2 * (i + 1))) & 3;
            if newer != older {
                sum += 1425 + 50 * (pairs - 1 - i);
            }
        }
        // Full weight of 20 changes: 20 * 1900 = 38_000; tenths of a percent: / 38.
        sum / 38
    }
}

/// A site's flapping state after its latest result: starts at `high_pct`, stops under
/// `low_pct` (hysteresis, as Nagios). `high_pct = 0` means detection is off.
pub fn site_flapping(was: bool, history: &StatusHistory, high_pct: u8, low_pct: u8) -> bool {
    if high_pct == 0 {
        return false;
    }
    let tenths = history.percent_change_tenths();
    if was {
        tenths >= u32::from(low_pct) * 10
    } else {
        tenths >= u32::from(high_pct) * 10
    }
}

/// The moments at which the state machine asks [`notification`] what to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// The incident opened now.
    Opened,
    /// A tick, while the incident stays open: what held it may have ended.
    Review,
    /// The incident closed now.
    Closed,
}

/// The notification an incident's moment calls for, given what holds it and whether its
/// firing notification went out already. Firing goes out once, as soon as nothing holds it;
/// resolved goes out exactly when firing did, so receivers never keep an alert open nor
/// get a resolve for an alert they never saw.
pub fn notification(moment: Moment, holds: &Holds, notified: bool) -> Option<Transition> {
    match moment {
        Moment::Opened | Moment::Review => {
            (!notified && !holds.any()).then_some(Transition::Firing)
        }
        Moment::Closed => notified.then_some(Transition::Resolved),
    }
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
        degraded: DegradedPolicy,
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
        check.degraded = case.degraded;
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
    fn a_site_fresh_before_a_jump_is_awaited_not_absent() {
        let mut check = CheckSpec::for_test("c");
        check.interval_ms = 10_000; // fresh window 32 ticks
        let site = |name: &str, fail, last_tick| SiteCounters {
            site: name.into(),
            consecutive_fail: fail,
            consecutive_ok: 0,
            last_status: if fail > 0 { C } else { O },
            last_tick,
        };
        let jump = Jump { from: 100, to: 190 };
        // Site b reported OK at tick 95, just before quorum was lost; a reports down alone.
        let sites = [site("a", 9, 191), site("b", 0, 95)];
        let e = evaluate_after(&check, 2, &sites, 191, false, Some(jump));
        assert_eq!(e.open, None, "b is awaited, not gone");
        // One window after the jump, b's silence is its own: the degraded rule decides.
        let e = evaluate_after(&check, 2, &sites, 190 + 32, false, Some(jump));
        assert!(e.open.is_some_and(|o| o.unconfirmed == Some((1, 2))));
        // A site already stale before the jump (b's node died long before) is absent.
        let dead = [site("a", 9, 191), site("b", 0, 40)];
        let e = evaluate_after(&check, 2, &dead, 191, false, Some(jump));
        assert!(e.open.is_some_and(|o| o.unconfirmed == Some((1, 2))));
        // A failover of a few seconds leaves a fresh site fresh: nothing is awaited.
        let short = Jump { from: 100, to: 103 };
        let sites = [site("a", 9, 103), site("b", 9, 99)];
        let e = evaluate_after(&check, 2, &sites, 103, false, Some(short));
        assert!(e.open.is_some_and(|o| o.unconfirmed.is_none()));
    }

    #[test]
    fn decision_table() {
        let cases = [
            Case {
                name: "confirm.sites = 1: one site still down keeps the incident open",
                confirm_sites: Some(1),
                degraded: DegradedPolicy::Alert,
                probing: 3,
                sites: &[
                    ("a", 3, 0, C, 100),
                    ("b", 0, 3, O, 100),
                    ("c", 0, 3, O, 100),
                ],
                tick: 100,
                open: true,
                expect_open: None,
                expect_close: None,
                expect_suspect: &["a"],
            },
            Case {
                name: "confirm.sites = 1: closes once no site reports down",
                confirm_sites: Some(1),
                degraded: DegradedPolicy::Alert,
                probing: 3,
                sites: &[
                    ("a", 0, 2, O, 100),
                    ("b", 0, 3, O, 100),
                    ("c", 1, 0, C, 100),
                ],
                tick: 100,
                open: true,
                expect_open: None,
                expect_close: Some((&["a", "b"], None)),
                expect_suspect: &[],
            },
            Case {
                name: "both sites down for 2 rounds opens",
                confirm_sites: None,
                degraded: DegradedPolicy::Alert,
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
                degraded: DegradedPolicy::Alert,
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
                degraded: DegradedPolicy::Alert,
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
                degraded: DegradedPolicy::Alert,
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
                degraded: DegradedPolicy::Alert,
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
                degraded: DegradedPolicy::Alert,
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
                degraded: DegradedPolicy::Alert,
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
                degraded: DegradedPolicy::Alert,
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
                degraded: DegradedPolicy::Alert,
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
                degraded: DegradedPolicy::Alert,
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
                degraded: DegradedPolicy::Alert,
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
                degraded: DegradedPolicy::Alert,
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
                degraded: DegradedPolicy::Alert,
                probing: 2,
                sites: &[("a", 7, 0, C, 10), ("b", 0, 4, O, 100)],
                tick: 100,
                open: true,
                expect_open: None,
                expect_close: Some((&["b"], Some((1, 2)))),
                expect_suspect: &[],
            },
            Case {
                name: "hold: degraded quorum never opens, however long it fails",
                confirm_sites: None,
                degraded: DegradedPolicy::Hold,
                probing: 2,
                sites: &[("a", 9, 0, C, 10), ("b", 40, 0, C, 100)],
                tick: 100,
                open: false,
                expect_open: None,
                expect_close: None,
                expect_suspect: &[],
            },
            Case {
                name: "hold: a full quorum still opens",
                confirm_sites: None,
                degraded: DegradedPolicy::Hold,
                probing: 2,
                sites: &[("a", 2, 0, C, 100), ("b", 2, 0, C, 100)],
                tick: 100,
                open: false,
                expect_open: Some((C, &["a", "b"], None)),
                expect_close: None,
                expect_suspect: &[],
            },
            Case {
                name: "hold: single probing site is not degraded and opens",
                confirm_sites: None,
                degraded: DegradedPolicy::Hold,
                probing: 1,
                sites: &[("a", 2, 0, C, 100)],
                tick: 100,
                open: false,
                expect_open: Some((C, &["a"], None)),
                expect_close: None,
                expect_suspect: &[],
            },
            Case {
                name: "hold: degraded close after twice the recover rounds, as alert",
                confirm_sites: None,
                degraded: DegradedPolicy::Hold,
                probing: 2,
                sites: &[("a", 7, 0, C, 10), ("b", 0, 4, O, 100)],
                tick: 100,
                open: true,
                expect_open: None,
                expect_close: Some((&["b"], Some((1, 2)))),
                expect_suspect: &[],
            },
            Case {
                name: "hold: degraded close still needs twice the recover rounds",
                confirm_sites: None,
                degraded: DegradedPolicy::Hold,
                probing: 2,
                sites: &[("a", 7, 0, C, 10), ("b", 0, 3, O, 100)],
                tick: 100,
                open: true,
                expect_open: None,
                expect_close: None,
                expect_suspect: &[],
            },
            Case {
                name: "alert: degraded quorum one round short of twice does not open",
                confirm_sites: None,
                degraded: DegradedPolicy::Alert,
                probing: 2,
                sites: &[("a", 9, 0, C, 10), ("b", 3, 0, C, 100)],
                tick: 100,
                open: false,
                expect_open: None,
                expect_close: None,
                expect_suspect: &[],
            },
            Case {
                name: "no fresh site decides nothing",
                confirm_sites: None,
                degraded: DegradedPolicy::Alert,
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
    fn notification_table() {
        const F: Option<Transition> = Some(Transition::Firing);
        const R: Option<Transition> = Some(Transition::Resolved);
        let silenced = Holds {
            silence: Some(7),
            ..Holds::default()
        };
        let parent_down = Holds {
            parent: Some("host".into()),
            ..Holds::default()
        };
        let both = Holds {
            silence: Some(7),
            parent: Some("host".into()),
            flapping: false,
        };
        let flapping = Holds {
            flapping: true,
            ..Holds::default()
        };
        let free = Holds::default();
        // (case, moment, holds, already notified, expected)
        let cases = [
            ("opens unheld: fire", Moment::Opened, &free, false, F),
            (
                "opens silenced: hold",
                Moment::Opened,
                &silenced,
                false,
                None,
            ),
            (
                "still silenced at a tick",
                Moment::Review,
                &silenced,
                false,
                None,
            ),
            (
                "silence ended, still open: fire now",
                Moment::Review,
                &free,
                false,
                F,
            ),
            (
                "fired already: never twice",
                Moment::Review,
                &free,
                true,
                None,
            ),
            (
                "silence began after the page",
                Moment::Review,
                &silenced,
                true,
                None,
            ),
            (
                "closes after a page: resolve",
                Moment::Closed,
                &free,
                true,
                R,
            ),
            (
                "closes after a page, now silenced: still resolve",
                Moment::Closed,
                &silenced,
                true,
                R,
            ),
            (
                "closes never paged: nothing",
                Moment::Closed,
                &silenced,
                false,
                None,
            ),
            (
                "closes never paged, unheld: nothing",
                Moment::Closed,
                &free,
                false,
                None,
            ),
            (
                "opens while a parent is down: suppressed",
                Moment::Opened,
                &parent_down,
                false,
                None,
            ),
            (
                "parent still down at a tick",
                Moment::Review,
                &parent_down,
                false,
                None,
            ),
            (
                "silence ended, parent still down",
                Moment::Review,
                &both,
                false,
                None,
            ),
            (
                "closes with the parent, never paged",
                Moment::Closed,
                &parent_down,
                false,
                None,
            ),
            (
                "opens while flapping: held",
                Moment::Opened,
                &flapping,
                false,
                None,
            ),
            (
                "closes while flapping after a page: resolve",
                Moment::Closed,
                &flapping,
                true,
                R,
            ),
        ];
        for (name, moment, holds, notified, want) in cases {
            assert_eq!(notification(moment, holds, notified), want, "{name}");
        }
    }

    #[test]
    fn flap_table() {
        // (case, statuses oldest first, expected tenths of a percent)
        let cases: [(&str, &str, u32); 7] = [
            ("steady", "OOOOOOOOOOOOOOOOOOOOO", 0),
            ("one outage, newest pair", "OOOOOOOOOOOOOOOOOOOOC", 62),
            ("one outage, oldest pair", "OCCCCCCCCCCCCCCCCCCCC", 37),
            ("every result changes", "OCOCOCOCOCOCOCOCOCOCO", 1000),
            (
                "two-round flaps, newest pair changed",
                "OCCOOCCOOCCOOCCOOCCOO",
                493,
            ),
            ("two-round flaps, other phase", "CCOOCCOOCCOOCCOOCCOOC", 506),
            ("a short history reads low", "OCOC", 183),
        ];
        for (name, statuses, want) in cases {
            let mut h = StatusHistory::default();
            for c in statuses.chars() {
                h.push(if c == 'O' { O } else { C });
            }
            assert_eq!(h.percent_change_tenths(), want, "{name}");
        }
        // Older results fall out of the window.
        let mut h = StatusHistory::default();
        for _ in 0..10 {
            h.push(O);
            h.push(C);
        }
        for _ in 0..21 {
            h.push(W);
        }
        assert_eq!((h.len(), h.percent_change_tenths()), (21, 0));

        let flapping = {
            let mut h = StatusHistory::default();
            for c in "CCOOCCOOCCOOCCOOCCOOC".chars() {
                h.push(if c == 'O' { O } else { C });
            }
            h
        };
        let calm = StatusHistory::default();
        // (case, was flapping, history, high, low, expected)
        let hysteresis = [
            ("starts at high", false, &flapping, 50, 25, true),
            ("not over a higher bar", false, &flapping, 60, 25, false),
            ("keeps flapping over low", true, &flapping, 60, 25, true),
            ("stops under low", true, &calm, 50, 25, false),
            ("detection off", true, &flapping, 0, 0, false),
        ];
        for (name, was, h, high, low, want) in hysteresis {
            assert_eq!(site_flapping(was, h, high, low), want, "{name}");
        }
    }

    #[test]
    fn operator_alert_table() {
        // (case, was degraded, path-suspect checks, fresh checks, degraded)
        let degraded = [
            ("most checks suspect", false, 3, 4, true),
            ("half is not most", false, 3, 6, false),
            ("two checks are not enough", false, 2, 2, false),
            ("stays while over a quarter", true, 2, 6, true),
            ("clears at a quarter", true, 1, 4, false),
            ("clears when none", true, 0, 0, false),
        ];
        for (name, was, suspect, fresh, want) in degraded {
            assert_eq!(site_degraded(was, suspect, fresh), want, "{name}");
        }
        // (case, fresh checks, catalog checks, ticks since the last batch, window, silent)
        let silent = [
            ("reports", 3, 3, 0, 32, false),
            ("stale everywhere, past the window", 0, 3, 33, 32, true),
            ("stale, within the window", 0, 3, 32, 32, false),
            ("one fresh check is enough", 1, 3, 100, 32, false),
            ("no checks: nothing to report", 0, 0, 100, 32, false),
        ];
        for (name, fresh, checks, since, window, want) in silent {
            assert_eq!(site_silent(fresh, checks, since, window), want, "{name}");
        }
    }

    #[test]
    fn freshness_window() {
        assert_eq!(fresh_ticks(10_000), 32);
        assert_eq!(fresh_ticks(1_000), 5);
        assert_eq!(fresh_ticks(1_500), 8);
    }
}

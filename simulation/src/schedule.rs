//! The bad day: every fault of one run, derived from its seed alone, and the ground truth
//! that follows from it (is a target up; can a site reach it).
//!
//! Faults come in two families. The world's faults (target outages, path failures at one
//! site for one target or for its whole carrier) are what the monitors must judge; the
//! cluster's faults (partitions between sites, node crashes, leader kills, message loss
//! and delay, clock drift) are what consentry must survive while judging. Every fault ends
//! before the run's quiet tail, during which the cluster must converge on the truth.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Probing sites; one voting node stands in each.
pub const SITES: [&str; 3] = ["site-a", "site-b", "site-c"];
/// Monitored targets, one TCP check each.
pub const TARGETS: usize = 8;

/// Check settings of the simulated catalog (a common "fast" configuration).
pub const INTERVAL_MS: u64 = 30_000;
pub const TIMEOUT_MS: u64 = 5_000;
pub const CONFIRM_ROUNDS: u64 = 2;
pub const RECOVER_ROUNDS: u64 = 2;

/// An outage at least this long must open an incident: `confirm.rounds` failed probes
/// per site fit in it whatever the probes' phase, plus the probe timeout.
pub const CONFIRM_WINDOW_MS: u64 = INTERVAL_MS * (CONFIRM_ROUNDS + 1) + TIMEOUT_MS;

/// Fault-free time at the end of every run.
pub const QUIET_MS: u64 = 5 * 60_000;
/// Shortest time between two outages of one target: the first incident has closed
/// (`recover.rounds` OK probes plus slack) before the next outage starts.
pub const OUTAGE_GAP_MIN_MS: u64 = 4 * 60_000;

/// A half-open stretch of simulated time, in milliseconds since the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: u64,
    pub to: u64,
}

impl Window {
    pub fn contains(&self, ms: u64) -> bool {
        self.from <= ms && ms < self.to
    }

    pub fn overlaps(&self, from: u64, to: u64) -> bool {
        self.from < to && from < self.to
    }

    pub fn len(&self) -> u64 {
        self.to.saturating_sub(self.from)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    pub target: usize,
    pub window: Window,
}

/// A site cannot reach one target (`Some`), or anything beyond its carrier (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathFault {
    pub site: usize,
    pub target: Option<usize>,
    pub window: Window,
}

impl PathFault {
    pub fn affects(&self, site: usize, target: usize) -> bool {
        self.site == site && self.target.is_none_or(|t| t == target)
    }
}

/// A fault of one site's node: cut off from the other sites, or crashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFault {
    pub site: usize,
    pub window: Window,
}

/// Kill whichever node leads at `at`; restart it `down_ms` later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderKill {
    pub at: u64,
    pub down_ms: u64,
}

/// Kill the leader in the very step in which it delivers notification number `delivery`
/// (counting from 1 across the run): after the send, before its outcome can commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryKill {
    pub delivery: u64,
    pub down_ms: u64,
}

/// A site's wall clock: `offset_ms` off and running `ppm` parts per million fast or slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drift {
    pub offset_ms: i64,
    pub ppm: i64,
}

/// Loss and delay on every link between nodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Net {
    /// Chance per 10 ms tick that a link goes down (turmoil `fail_rate`).
    pub fail_rate: f64,
    /// Chance per tick that a failed link comes back.
    pub repair_rate: f64,
    pub max_latency_ms: u64,
}

/// Every fault of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub seed: u64,
    /// Faults happen in `[0, faulty_ms)`; the run lasts `faulty_ms + QUIET_MS`.
    pub faulty_ms: u64,
    pub outages: Vec<Outage>,
    pub paths: Vec<PathFault>,
    pub partitions: Vec<NodeFault>,
    pub crashes: Vec<NodeFault>,
    pub leader_kills: Vec<LeaderKill>,
    pub delivery_kills: Vec<DeliveryKill>,
    pub drift: Vec<Drift>,
    pub net: Net,
}

const MINUTE: u64 = 60_000;

impl Schedule {
    /// The schedule of `seed` for `faulty_ms` of faults.
    pub fn generate(seed: u64, faulty_ms: u64) -> Self {
        // A fixed tweak keeps this stream apart from the other uses of the seed.
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed_fa17_0000_0001);
        let outages = (0..TARGETS)
            .flat_map(|target| outages_of(&mut rng, target, faulty_ms))
            .collect();
        let paths = spaced(&mut rng, faulty_ms, (MINUTE, 12 * MINUTE), |rng, from| {
            let site = rng.gen_range(0..SITES.len());
            let target = rng.gen_bool(0.6).then(|| rng.gen_range(0..TARGETS));
            let len = rng.gen_range(20_000..12 * MINUTE);
            PathFault {
                site,
                target,
                window: Window {
                    from,
                    to: from + len,
                },
            }
        });
        let partitions = node_faults(&mut rng, faulty_ms, 10_000..4 * MINUTE);
        let crashes = node_faults(&mut rng, faulty_ms, 5_000..3 * MINUTE);
        let leader_kills = spaced(
            &mut rng,
            faulty_ms,
            (10 * MINUTE, 40 * MINUTE),
            |rng, at| LeaderKill {
                at,
                down_ms: rng.gen_range(2_000..40_000),
            },
        );
        // About two per simulated hour, among the first ~20 deliveries of each hour.
        let hours = faulty_ms.div_ceil(3_600_000).max(1);
        let mut delivery_kills: Vec<DeliveryKill> = (0..2 * hours)
            .map(|_| DeliveryKill {
                delivery: rng.gen_range(1..=20 * hours),
                down_ms: rng.gen_range(2_000..20_000),
            })
            .collect();
        delivery_kills.sort_by_key(|k| k.delivery);
        delivery_kills.dedup_by_key(|k| k.delivery);
        let drift = SITES
            .iter()
            .map(|_| Drift {
                offset_ms: rng.gen_range(-600_000..=600_000),
                ppm: rng.gen_range(-500..=500),
            })
            .collect();
        let net = Net {
            fail_rate: rng.gen_range(0.0..0.002),
            repair_rate: 0.3,
            max_latency_ms: rng.gen_range(2..60),
        };
        let mut schedule = Self {
            seed,
            faulty_ms,
            outages,
            paths,
            partitions,
            crashes,
            leader_kills,
            delivery_kills,
            drift,
            net,
        };
        schedule.clip();
        schedule
    }

    /// The whole run: the faulty part and the quiet tail.
    pub fn end_ms(&self) -> u64 {
        self.faulty_ms + QUIET_MS
    }

    /// Ends every fault by the start of the quiet tail.
    fn clip(&mut self) {
        let end = self.faulty_ms;
        let clip = |w: &mut Window| w.to = w.to.min(end);
        self.outages.iter_mut().for_each(|o| clip(&mut o.window));
        self.paths.iter_mut().for_each(|p| clip(&mut p.window));
        self.partitions.iter_mut().for_each(|p| clip(&mut p.window));
        self.crashes.iter_mut().for_each(|c| clip(&mut c.window));
        self.leader_kills
            .retain(|k| k.at.saturating_add(k.down_ms) < end);
        self.outages.retain(|o| !o.window.is_empty());
        self.paths.retain(|p| !p.window.is_empty());
        self.partitions.retain(|p| !p.window.is_empty());
        self.crashes.retain(|c| !c.window.is_empty());
    }

    /// Ground truth: is `target` up at `ms`?
    pub fn target_up(&self, target: usize, ms: u64) -> bool {
        !self
            .outages
            .iter()
            .any(|o| o.target == target && o.window.contains(ms))
    }

    /// Can `site` reach `target` at `ms`?
    pub fn path_ok(&self, site: usize, target: usize, ms: u64) -> bool {
        !self
            .paths
            .iter()
            .any(|p| p.affects(site, target) && p.window.contains(ms))
    }

    /// Was `target` down at any moment of `[from, to)`?
    pub fn down_during(&self, target: usize, from: u64, to: u64) -> bool {
        self.outages
            .iter()
            .any(|o| o.target == target && o.window.overlaps(from, to))
    }

    /// Sites whose path to `target` failed at some moment of `[from, to)`.
    pub fn sites_cut_during(&self, target: usize, from: u64, to: u64) -> usize {
        (0..SITES.len())
            .filter(|&site| {
                self.paths
                    .iter()
                    .any(|p| p.affects(site, target) && p.window.overlaps(from, to))
            })
            .count()
    }
}

/// One target's outages: separated by at least [`OUTAGE_GAP_MIN_MS`]; a quarter shorter
/// than the confirmation window (may or may not be caught), half of minutes, a quarter
/// long.
fn outages_of(rng: &mut SmallRng, target: usize, faulty_ms: u64) -> Vec<Outage> {
    let mut out = Vec::new();
    let mut at = rng.gen_range(MINUTE..10 * MINUTE);
    while at < faulty_ms {
        let len = match rng.gen_range(0..4) {
            0 => rng.gen_range(5_000..CONFIRM_WINDOW_MS),
            1 | 2 => rng.gen_range(CONFIRM_WINDOW_MS..10 * MINUTE),
            _ => rng.gen_range(10 * MINUTE..40 * MINUTE),
        };
        out.push(Outage {
            target,
            window: Window {
                from: at,
                to: at + len,
            },
        });
        at += len + OUTAGE_GAP_MIN_MS + rng.gen_range(0..30 * MINUTE);
    }
    out
}

/// Faults of one node at a time (partitions, crashes), every 10–40 minutes, lasting a
/// length drawn from `len`.
fn node_faults(rng: &mut SmallRng, faulty_ms: u64, len: std::ops::Range<u64>) -> Vec<NodeFault> {
    spaced(rng, faulty_ms, (10 * MINUTE, 40 * MINUTE), |rng, from| {
        NodeFault {
            site: rng.gen_range(0..SITES.len()),
            window: Window {
                from,
                to: from + rng.gen_range(len.clone()),
            },
        }
    })
}

/// Faults at random gaps drawn from `gap` (milliseconds), each made by `make`.
fn spaced<T>(
    rng: &mut SmallRng,
    faulty_ms: u64,
    gap: (u64, u64),
    mut make: impl FnMut(&mut SmallRng, u64) -> T,
) -> Vec<T> {
    let mut out = Vec::new();
    let mut at = rng.gen_range(gap.0..gap.1);
    while at < faulty_ms {
        out.push(make(rng, at));
        at += rng.gen_range(gap.0..gap.1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_gives_the_same_schedule_and_faults_end_before_the_quiet_tail() {
        let a = Schedule::generate(42, 3_600_000);
        assert_eq!(a, Schedule::generate(42, 3_600_000));
        assert_ne!(a, Schedule::generate(43, 3_600_000));
        assert!(!a.outages.is_empty() && !a.paths.is_empty());
        assert!(a.outages.iter().all(|o| o.window.to <= a.faulty_ms));
        assert!(a.paths.iter().all(|p| p.window.to <= a.faulty_ms));
        assert!(a.crashes.iter().all(|c| c.window.to <= a.faulty_ms));
        assert!(a
            .leader_kills
            .iter()
            .all(|k| k.at + k.down_ms < a.faulty_ms));
    }

    #[test]
    fn outages_of_one_target_leave_room_for_the_incident_to_close() {
        for seed in 0..50 {
            let s = Schedule::generate(seed, 4 * 3_600_000);
            for t in 0..TARGETS {
                let mine: Vec<&Outage> = s.outages.iter().filter(|o| o.target == t).collect();
                for pair in mine.windows(2) {
                    assert!(pair[1].window.from >= pair[0].window.to + OUTAGE_GAP_MIN_MS);
                }
            }
        }
    }

    #[test]
    fn truth_follows_the_windows() {
        let mut s = Schedule::generate(1, 3_600_000);
        s.outages = vec![Outage {
            target: 2,
            window: Window { from: 100, to: 200 },
        }];
        s.paths = vec![PathFault {
            site: 1,
            target: None,
            window: Window { from: 150, to: 300 },
        }];
        assert!(s.target_up(2, 99) && !s.target_up(2, 100) && s.target_up(2, 200));
        assert!(s.target_up(3, 150));
        assert!(s.path_ok(0, 2, 160) && !s.path_ok(1, 7, 160) && s.path_ok(1, 7, 300));
        assert!(s.down_during(2, 0, 101) && !s.down_during(2, 200, 1_000));
        assert_eq!(s.sites_cut_during(5, 0, 151), 1);
        assert_eq!(s.sites_cut_during(5, 0, 150), 0);
    }
}

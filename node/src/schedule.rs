//! When each check is due: a sans-IO schedule that spreads checks over their interval.
//!
//! Each check gets a fixed phase inside its interval derived from its name, so a thousand
//! checks with a 60 s interval are probed evenly over the minute instead of all at once, and
//! every node probes a given check at roughly the same point of the interval.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use consentry_cluster::model::CheckSpec;

/// Due times in milliseconds on the caller's monotonic clock.
#[derive(Debug, Default)]
pub struct Schedule {
    intervals: BTreeMap<String, u64>,
    queue: BinaryHeap<Reverse<(u64, String)>>,
}

impl Schedule {
    /// Replaces the set of checks. Checks whose interval is unchanged keep their slot; new
    /// or changed ones get their phase slot after `now_ms`.
    pub fn set_checks(&mut self, checks: &[CheckSpec], now_ms: u64) {
        let new: BTreeMap<String, u64> = checks
            .iter()
            .map(|c| (c.name.clone(), c.interval_ms.max(1)))
            .collect();
        let kept: BTreeSet<String> = new
            .iter()
            .filter(|(name, iv)| self.intervals.get(*name) == Some(iv))
            .map(|(n, _)| n.clone())
            .collect();
        let mut queue: BinaryHeap<Reverse<(u64, String)>> = self
            .queue
            .drain()
            .filter(|Reverse((_, n))| kept.contains(n))
            .collect();
        for (name, iv) in &new {
            if !kept.contains(name) {
                queue.push(Reverse((first_due(name, *iv, now_ms), name.clone())));
            }
        }
        self.intervals = new;
        self.queue = queue;
    }

    /// Pops every check due at `now_ms` and schedules its next run one interval later
    /// (skipping missed slots rather than bursting to catch up).
    pub fn due(&mut self, now_ms: u64) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(Reverse((at, _))) = self.queue.peek() {
            if *at > now_ms {
                break;
            }
            let Some(Reverse((at, name))) = self.queue.pop() else {
                break;
            };
            let Some(&iv) = self.intervals.get(&name) else {
                continue;
            };
            let mut next = at + iv;
            if next <= now_ms {
                next += (now_ms - next) / iv * iv + iv;
            }
            self.queue.push(Reverse((next, name.clone())));
            out.push(name);
        }
        out
    }

    /// When the next check is due, if any.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.queue.peek().map(|Reverse((at, _))| *at)
    }

    pub fn len(&self) -> usize {
        self.intervals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }
}

/// The first slot at or after `now_ms` whose phase matches the check's name.
fn first_due(name: &str, interval_ms: u64, now_ms: u64) -> u64 {
    let phase = fnv1a(name.as_bytes()) % interval_ms;
    let base = now_ms - now_ms % interval_ms;
    let at = base + phase;
    if at >= now_ms {
        at
    } else {
        at + interval_ms
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, iv: u64) -> CheckSpec {
        let mut c = CheckSpec::for_test(name);
        c.interval_ms = iv;
        c
    }

    #[test]
    fn each_check_runs_once_per_interval() {
        let mut s = Schedule::default();
        s.set_checks(&[check("a", 1_000), check("b", 2_000)], 0);
        let mut counts = BTreeMap::new();
        for now in 0..10_000 {
            for n in s.due(now) {
                *counts.entry(n).or_insert(0) += 1;
            }
        }
        assert_eq!(counts["a"], 10);
        assert_eq!(counts["b"], 5);
    }

    #[test]
    fn spreads_checks_over_the_interval() {
        let mut s = Schedule::default();
        let checks: Vec<CheckSpec> = (0..600).map(|i| check(&format!("c{i}"), 60_000)).collect();
        s.set_checks(&checks, 0);
        // No single second of the minute holds more than a few percent of the checks.
        let mut per_second = BTreeMap::new();
        for now in (1_000..=60_000).step_by(1_000) {
            per_second.insert(now, s.due(now).len());
        }
        let max = per_second.values().max().copied().unwrap_or(0);
        assert!(max <= 30, "max {max} per second: {per_second:?}");
        assert_eq!(per_second.values().sum::<usize>(), 600);
    }

    #[test]
    fn missed_slots_are_skipped_not_burst() {
        let mut s = Schedule::default();
        s.set_checks(&[check("a", 1_000)], 0);
        let first = s.due(1_000).len();
        assert_eq!(first, 1);
        // The caller stalled for ten intervals: one run now, not ten.
        assert_eq!(s.due(11_500).len(), 1);
        assert!(s.next_due_ms().unwrap() > 11_500);
    }

    #[test]
    fn reconfiguring_keeps_unchanged_slots() {
        let mut s = Schedule::default();
        s.set_checks(&[check("a", 1_000)], 0);
        let before = s.next_due_ms();
        s.set_checks(&[check("a", 1_000), check("b", 5_000)], 10);
        assert_eq!(s.len(), 2);
        assert!(s.next_due_ms() <= before);
        s.set_checks(&[check("b", 5_000)], 20);
        assert_eq!(s.len(), 1);
        assert!(s.due(100_000).iter().all(|n| n == "b"));
    }
}

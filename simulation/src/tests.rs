//! The simulation's own proof obligations: determinism, a fixed set of seeds holding every
//! invariant, and an oracle that catches a deliberately broken rule.

use crate::report::{self, run_seed};
use crate::world::RunConfig;

/// Simulated time per seed in these tests (a release run of the CLI does hours).
const FAULTY_MS: u64 = 30 * 60_000;
/// The seeds CI runs. A failure prints the command that replays it.
const CI_SEEDS: [u64; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

fn replay(seed: u64, confirm_sites: Option<u32>) -> String {
    let mut cmd = format!(
        "cargo run -p consentry-sim --release -- --reproduce {seed} --hours {}",
        FAULTY_MS as f64 / 3_600_000.0
    );
    if let Some(n) = confirm_sites {
        cmd.push_str(&format!(" --confirm-sites {n}"));
    }
    cmd
}

#[test]
fn the_same_seed_replays_the_same_trace() {
    let config = RunConfig {
        seed: 11,
        faulty_ms: 15 * 60_000,
        confirm_sites: None,
    };
    let (first, run) = run_seed(&config);
    let (second, _) = run_seed(&config);
    let run = run.expect("the run completes");
    assert!(run.trace.len() > 20, "a run leaves a trace:\n{}", run.trace);
    assert_eq!(
        first.trace_hash,
        second.trace_hash,
        "seed 11 ran twice with different traces; replay: {}",
        replay(11, None)
    );
    let (other, _) = run_seed(&RunConfig { seed: 12, ..config });
    assert_ne!(first.trace_hash, other.trace_hash);
}

#[test]
fn fixed_seeds_hold_every_invariant() {
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    let outcomes = report::run_many(&CI_SEEDS, FAULTY_MS, None, jobs, &|_| {});
    let mut failures = Vec::new();
    for o in &outcomes {
        if let Some(e) = &o.error {
            failures.push(format!("seed {}: the simulation failed: {e}", o.seed));
        }
        for v in &o.violations {
            failures.push(format!("seed {}: {v}", o.seed));
        }
        if !o.passed() {
            failures.push(format!("  replay: {}", replay(o.seed, None)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The seeds must exercise what the invariants are about.
    let outages: u64 = outcomes.iter().map(|o| o.consentry.outages).sum();
    let paths: u64 = outcomes.iter().map(|o| o.consentry.path_faults).sum();
    assert!(
        outages >= 20 && paths >= 10,
        "too few faults: {outages} outages, {paths} path failures"
    );
    // ...and the baselines must show what consensus is for.
    let any_site_false: u64 = outcomes
        .iter()
        .flat_map(|o| &o.baselines)
        .filter(|(b, _)| *b == crate::baselines::Baseline::AnySite)
        .map(|(_, s)| s.false_alerts)
        .sum();
    assert!(
        any_site_false > 0,
        "path failures never fooled the any-site baseline"
    );
}

#[test]
fn the_oracle_catches_a_rule_that_trusts_one_site() {
    let seed = 2;
    let (outcome, _) = run_seed(&RunConfig {
        seed,
        faulty_ms: FAULTY_MS,
        confirm_sites: Some(1),
    });
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let false_incidents = outcome
        .violations
        .iter()
        .filter(|v| v.invariant.starts_with("1 "))
        .count();
    assert!(
        false_incidents > 0,
        "confirm.sites = 1 opened no false incident on seed {seed}; violations: {:?}; replay: {}",
        outcome.violations,
        replay(seed, Some(1))
    );
}

//! Many seeds: run them on worker threads, judge each, and print the comparison table.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::baselines::Baseline;
use crate::judge::{quantile, Score};
use crate::oracle::{self, Violation};
use crate::world::{self, RunConfig, RunRecord};

/// One seed's outcome.
#[derive(Debug, Clone)]
pub struct SeedOutcome {
    pub seed: u64,
    pub violations: Vec<Violation>,
    /// Set when the simulation itself failed (a node's task ended, a panic).
    pub error: Option<String>,
    pub consentry: Score,
    pub resends: u64,
    pub baselines: Vec<(Baseline, Score)>,
    pub simulated: Duration,
    pub wall: Duration,
    pub trace_hash: String,
}

impl SeedOutcome {
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.violations.is_empty()
    }
}

/// Runs and judges one seed.
pub fn run_seed(config: &RunConfig) -> (SeedOutcome, Option<RunRecord>) {
    // The simulation's one wall-clock reading: how fast it ran, never what it decided.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let result = world::run(config);
    let wall = started.elapsed();
    match result {
        Ok(run) => {
            let verdict = oracle::judge(&run);
            let outcome = SeedOutcome {
                seed: config.seed,
                violations: verdict.violations,
                error: None,
                consentry: verdict.score,
                resends: verdict.resends,
                baselines: Baseline::ALL.iter().map(|b| (*b, b.score(&run))).collect(),
                simulated: Duration::from_millis(run.schedule.end_ms()),
                wall,
                trace_hash: run.trace.hash(),
            };
            (outcome, Some(run))
        }
        Err(e) => (
            SeedOutcome {
                seed: config.seed,
                violations: Vec::new(),
                error: Some(format!("{e:#}")),
                consentry: Score::default(),
                resends: 0,
                baselines: Vec::new(),
                simulated: Duration::ZERO,
                wall,
                trace_hash: String::new(),
            },
            None,
        ),
    }
}

/// Runs `seeds` on `jobs` threads (each run is single-threaded and self-contained).
/// `progress` is called after each seed.
pub fn run_many(
    seeds: &[u64],
    faulty_ms: u64,
    confirm_sites: Option<u32>,
    jobs: usize,
    progress: &(dyn Fn(&SeedOutcome) + Sync),
) -> Vec<SeedOutcome> {
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::with_capacity(seeds.len()));
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&seed) = seeds.get(i) else { break };
                let (outcome, _) = run_seed(&RunConfig {
                    seed,
                    faulty_ms,
                    confirm_sites,
                });
                progress(&outcome);
                if let Ok(mut out) = out.lock() {
                    out.push(outcome);
                }
            });
        }
    });
    let mut out = out.into_inner().unwrap_or_default();
    out.sort_by_key(|o| o.seed);
    out
}

fn ms(v: Option<u64>) -> String {
    #[allow(clippy::cast_precision_loss)]
    v.map_or("-".into(), |v| format!("{:.1} s", v as f64 / 1000.0))
}

fn row(out: &mut String, name: &str, s: &Score, note: &str) {
    let _ = writeln!(
        out,
        "| {name} | {} | {} | {} | {} | {} of {} | {} | {} | {} |{note}",
        s.outages,
        s.detected,
        s.missed,
        s.false_alerts,
        s.path_absorbed,
        s.path_faults,
        ms(quantile(&s.latencies, 0.5)),
        ms(quantile(&s.latencies, 0.99)),
        s.duplicates,
    );
}

/// The comparison table (Markdown) over every seed that ran, and the speed line.
pub fn table(outcomes: &[SeedOutcome], jobs: usize, wall: Duration) -> String {
    let mut consentry = Score::default();
    let mut resends = 0;
    let mut baselines: Vec<(Baseline, Score)> = Baseline::ALL
        .iter()
        .map(|b| (*b, Score::default()))
        .collect();
    let mut simulated = Duration::ZERO;
    for o in outcomes.iter().filter(|o| o.error.is_none()) {
        consentry.add(&o.consentry);
        resends += o.resends;
        for (b, s) in &o.baselines {
            if let Some((_, total)) = baselines.iter_mut().find(|(x, _)| x == b) {
                total.add(s);
            }
        }
        simulated += o.simulated;
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| monitor | outages | detected | missed | false incidents | path failures absorbed | p50 detection | p99 detection | duplicate effects |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    row(&mut out, "consentry (quorum 2 of 3)", &consentry, "");
    for (b, s) in &baselines {
        row(&mut out, b.name(), s, "");
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let hours = simulated.as_secs_f64() / 3600.0;
    let secs = wall.as_secs_f64().max(1e-9);
    let _ = writeln!(
        out,
        "\n{} seeds, {failed} failed; {hours:.1} simulated hours in {secs:.1} s wall on {jobs} threads: \
         {:.2} simulated hours per wall second ({:.2} per thread); {resends} notifications re-sent \
         with their dedup key after a leader change.",
        outcomes.len(),
        hours / secs,
        hours / secs / jobs.max(1) as f64,
    );
    out
}

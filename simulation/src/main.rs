//! `consentry-sim`: run many seeds and print the comparison table, or replay one seed.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use consentry_sim::report::{self, SeedOutcome};
use consentry_sim::world::RunConfig;

/// Deterministic simulation of a three-site consentry cluster on bad days.
#[derive(Debug, Parser)]
#[command(name = "consentry-sim", version)]
struct Args {
    /// How many seeds to run (seeds FIRST_SEED, FIRST_SEED+1, ...).
    #[arg(long, default_value_t = 20)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Simulated hours of faults per seed (a 5-minute quiet tail follows).
    #[arg(long, default_value_t = 1.0)]
    hours: f64,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Replay one seed and print its event trace.
    #[arg(long, value_name = "SEED")]
    reproduce: Option<u64>,
    /// Override confirm.sites of every check (1 = the deliberately broken rule).
    #[arg(long, value_name = "N")]
    confirm_sites: Option<u32>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONSENTRY_SIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if !(args.hours > 0.0 && args.hours <= 1_000.0) {
        eprintln!("--hours must be more than 0 and at most 1000");
        return ExitCode::from(2);
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let faulty_ms = (args.hours * 3_600_000.0) as u64;
    let replay = |seed: u64| {
        let mut cmd = format!(
            "cargo run -p consentry-sim --release -- --reproduce {seed} --hours {}",
            args.hours
        );
        if let Some(n) = args.confirm_sites {
            cmd.push_str(&format!(" --confirm-sites {n}"));
        }
        cmd
    };

    if let Some(seed) = args.reproduce {
        let config = RunConfig {
            seed,
            faulty_ms,
            confirm_sites: args.confirm_sites,
        };
        let (outcome, run) = report::run_seed(&config);
        if let Some(run) = &run {
            print!("{}", run.trace);
        }
        print_outcome(&outcome, &replay(seed));
        println!("trace sha256 {}", outcome.trace_hash);
        return if outcome.passed() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }

    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let seeds: Vec<u64> = (args.first_seed..args.first_seed.saturating_add(args.seeds)).collect();
    #[allow(clippy::disallowed_methods)] // Speed report only.
    let started = std::time::Instant::now();
    let progress = |o: &SeedOutcome| {
        if !o.passed() {
            print_outcome(o, &replay(o.seed));
        }
    };
    let outcomes = report::run_many(&seeds, faulty_ms, args.confirm_sites, jobs, &progress);
    let wall: Duration = started.elapsed();
    print!("{}", report::table(&outcomes, jobs, wall));
    if outcomes.iter().all(SeedOutcome::passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_outcome(o: &SeedOutcome, replay: &str) {
    if let Some(e) = &o.error {
        println!("seed {}: the simulation failed: {e}", o.seed);
    }
    for v in &o.violations {
        println!("seed {}: {v}", o.seed);
    }
    if o.passed() {
        println!("seed {}: all invariants hold", o.seed);
    } else {
        println!("seed {} failed; replay: {replay}", o.seed);
    }
}

//! `consentry bench report`: an availability report over many checks and a month of
//! rollups, as `GET /api/v1/reports/availability?month=...` computes it.
//!
//! A benchmark, never a test: it fills a history database in a temporary directory with
//! day rollups for every check and day of a calendar month at +09:00, the hour rollups of
//! the two UTC days the month's edges fall in (what such a report reads), a few incidents
//! per check and a maintenance window; then it times the report (the first run with a
//! fresh cache, then the median of five) and prints the figures next to the 1-second goal.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use consentry_cluster::model::{CheckSpec, Matcher, Status};

use super::{memory, now};
use crate::history::report;
use crate::history::store::{Bucket, History, IncidentRecord, Retention, SilenceRecord, HOUR_MS};
use crate::history::ReportQuery;

/// The goal from issue 8, printed beside the figure.
const GOAL: Duration = Duration::from_secs(1);
/// Most checks `--checks` allows.
const CHECKS_MAX: usize = 100_000;

#[derive(Args)]
pub struct ReportArgs {
    /// Checks in the catalog and the history.
    #[arg(long, default_value_t = 10_000)]
    checks: usize,
    /// Probing sites per check.
    #[arg(long, default_value_t = 3)]
    sites: usize,
    /// The month reported, at +09:00.
    #[arg(long, default_value = "2026-11")]
    month: String,
    /// Incidents per check in the month.
    #[arg(long, default_value_t = 5)]
    incidents: u64,
}

/// # Errors
/// When the temporary database cannot be written.
pub fn report_bench(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    if args.checks == 0 || args.checks > CHECKS_MAX || args.sites == 0 || args.sites > 16 {
        bail!("--checks must be 1 to {CHECKS_MAX} and --sites 1 to 16");
    }
    let (from, to) =
        crate::read_api::month_range(&args.month, "+09:00").map_err(anyhow::Error::msg)?;
    let dir = tempfile::tempdir()?;
    let history = History::open(&dir.path().join("history"), Retention::default())
        .context("opening the history")?;
    let sites: Vec<String> = (0..args.sites).map(|i| format!("site-{i}")).collect();
    let names: Vec<String> = (0..args.checks).map(|i| format!("check-{i:05}")).collect();
    let bucket = |minutes: u64, down: u64| Bucket {
        n: minutes,
        up: minutes - down,
        latency_sum_ms: minutes * 23,
        latency_max_ms: 180,
    };

    let started = now();
    let first_day = from / 86_400_000;
    let last_day = (to - 1) / 86_400_000;
    let mut rows = 0u64;
    for name in &names {
        for day in first_day..=last_day {
            let per_site: Vec<(String, Bucket)> = sites
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), bucket(1440, u64::from(i == 0) * 3)))
                .collect();
            history.put_rollup(false, day * 86_400_000, name, &per_site)?;
            rows += 1;
        }
        for day in [first_day, last_day] {
            for hour in 0..24 {
                let per_site: Vec<(String, Bucket)> =
                    sites.iter().map(|s| (s.clone(), bucket(60, 0))).collect();
                history.put_rollup(true, day * 86_400_000 + hour * HOUR_MS, name, &per_site)?;
                rows += 1;
            }
        }
    }
    let mut id = 0;
    let span = to - from;
    for (i, name) in names.iter().enumerate() {
        for k in 0..args.incidents {
            id += 1;
            let start = from + (span / (args.incidents + 1)) * (k + 1) + (i as u64 % 3_600) * 1_000;
            history.put_incident(&IncidentRecord {
                id,
                check: name.clone(),
                severity: Status::Critical,
                start_ms: start,
                opened_at_ms: start + 20_000,
                closed_at_ms: Some(start + 20_000 + 300_000),
                time_to_detect_ms: Some(20_000),
                sites: sites.clone(),
                unconfirmed: false,
                silenced: false,
                close_note: None,
            })?;
        }
    }
    history.put_silence(&SilenceRecord {
        id: 1,
        matcher: Matcher::Name("check-0*".into()),
        start_ms: from + 10 * 86_400_000,
        end_ms: from + 10 * 86_400_000 + 2 * HOUR_MS,
        reason: "maintenance".into(),
        removed: false,
    })?;
    history.flush()?;
    let fill = started.elapsed();

    let catalog: Vec<CheckSpec> = names.iter().map(|n| CheckSpec::for_test(n)).collect();
    let q = ReportQuery {
        from_ms: from,
        to_ms: to,
        checks: Vec::new(),
        label: None,
    };
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..6 {
        let t = now();
        let r = report::availability(&history, &catalog, &q, to + 86_400_000)?;
        bytes = serde_json::to_vec(&r)?.len();
        times.push(t.elapsed());
        if r.checks.len() != args.checks {
            bail!(
                "the report has {} checks, not {}",
                r.checks.len(),
                args.checks
            );
        }
    }
    let first = times[0];
    let mut warm = times[1..].to_vec();
    warm.sort();
    let median = warm[warm.len() / 2];
    let one = {
        let q = ReportQuery {
            checks: vec![names[names.len() / 2].clone()],
            ..q.clone()
        };
        let t = now();
        report::availability(&history, &catalog, &q, to + 86_400_000)?;
        t.elapsed()
    };
    let t = now();
    let totals = history.totals(from, to, None)?.len();
    let totals_time = t.elapsed();
    let t = now();
    let incidents = history.incidents(from, to)?.len();
    let incidents_time = t.elapsed();
    let mem = memory(None);
    println!(
        "## Availability report: {} checks x {} sites, month {} at +09:00\n",
        args.checks, args.sites, args.month
    );
    println!("| figure | value | goal |\n|---|---:|---:|");
    println!("| rollup rows filled | {rows} | |");
    println!("| incidents | {id} | |");
    println!("| fill time | {:.1} s | |", fill.as_secs_f64());
    println!(
        "| history size on disk | {:.1} MiB | |",
        history.size_on_disk() as f64 / 1_048_576.0
    );
    println!(
        "| report, first run | {:.0} ms | {} ms |",
        ms(first),
        GOAL.as_millis()
    );
    println!(
        "| report, median of 5 | {:.0} ms | {} ms |",
        ms(median),
        GOAL.as_millis()
    );
    println!("| report for one check | {:.1} ms | |", ms(one));
    println!(
        "| of which: rollups of {totals} checks | {:.0} ms | |",
        ms(totals_time)
    );
    println!(
        "| of which: {incidents} incidents | {:.0} ms | |",
        ms(incidents_time)
    );
    println!(
        "| report JSON size | {:.1} MiB | |",
        bytes as f64 / 1_048_576.0
    );
    if let Some(m) = mem {
        println!("| peak RSS | {:.0} MiB | |", m.hwm_kib as f64 / 1024.0);
    }
    println!(
        "\n{}",
        if median <= GOAL {
            "within the goal"
        } else {
            "OVER the goal"
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

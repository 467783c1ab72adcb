//! `consentry bench probes`: how many fresh-connection TCP and HTTP probes per second the
//! real [`Prober`] sustains against local targets, and, from the same run, what
//! prometheus-blackbox-exporter does with the same load on the same targets.
//!
//! A benchmark, never a test: it prints figures, latency percentiles, CPU time per probe,
//! memory and the ratio against blackbox_exporter as markdown, and asserts nothing about
//! speed. Each phase is a closed loop: `concurrency` workers each run one probe after
//! another until the phase's time is up, taking the phase's destinations in turn (one
//! round-robin shared by all workers), as a prober with many targets spreads its probes.
//! Phases run one after the other, never at once, because the prober, the target and
//! blackbox_exporter share the machine's cores. `ops/bench/probes.sh` starts nginx on
//! several loopback addresses and blackbox_exporter, and runs this.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use consentry_cluster::model::{
    CheckSpec, HttpSpec, ProbeResult, ProbeSpec, Status, StatusRange, TcpSpec,
};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::probe::{ProbeConfig, Prober};

mod report;
mod soak;

/// Longest phase `--seconds` allows.
const BENCH_SECONDS_MAX: u64 = 600;
/// Most workers `--concurrency` allows (each holds a socket, and a keep-alive connection to
/// blackbox_exporter in its phases).
const BENCH_CONCURRENCY_MAX: u64 = 4096;
/// Most destinations per probe kind (`--tcp`, `--http-url` repeated).
const BENCH_DESTINATIONS_MAX: usize = 64;
/// Timeout of the benchmark's checks: the checks-file default.
const BENCH_PROBE_TIMEOUT_MS: u64 = 5_000;
/// Failure messages kept per phase to show what went wrong.
const FAILURE_EXAMPLES_MAX: usize = 3;
/// Distinct failure labels counted per phase; further ones are counted as "other".
const FAILURE_LABELS_MAX: usize = 32;
/// Most bytes read of one blackbox_exporter answer (its metrics are a few KiB).
const BLACKBOX_BODY_BYTES_MAX: usize = 64 * 1024;
/// Bound on one request to blackbox_exporter: its module timeout (5 s) plus slack.
const BLACKBOX_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Times one worker may reopen its connection to blackbox_exporter before giving up.
const BLACKBOX_RECONNECTS_MAX: u32 = 16;

/// Goals from the issue, for 2 cores: printed beside the figures, never asserted.
const TCP_GOAL_PER_S: f64 = 15_000.0;
const HTTP_GOAL_PER_S: f64 = 8_000.0;
const RATIO_GOAL: f64 = 5.0;

/// Latency histogram resolution: 2^LATENCY_SUB_BITS buckets per power of two of
/// microseconds, so a percentile is off by at most 1/32 (3 %).
const LATENCY_SUB_BITS: u32 = 5;
const LATENCY_BUCKETS: usize = (64 - LATENCY_SUB_BITS as usize + 1) << LATENCY_SUB_BITS;

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Fresh-connection TCP and HTTP probes per second against local targets, beside
    /// prometheus-blackbox-exporter on the same targets (ops/bench/probes.sh sets both up).
    Probes(ProbesArgs),
    /// Three real nodes on loopback under thousands of checks for minutes: CPU, memory,
    /// disk, commit latency and committed results per second.
    Soak(soak::SoakArgs),
    /// An availability report over 10,000 checks and a month of rollups (the report
    /// history), timed against the 1-second goal.
    Report(report::ReportArgs),
}

#[derive(Args)]
pub struct ProbesArgs {
    /// A page HTTP probes GET (expecting 2xx); must be on loopback. Repeat it to probe
    /// several destinations in turn.
    #[arg(long = "http-url", value_name = "URL", required = true)]
    http_urls: Vec<String>,
    /// Where TCP probes connect, HOST:PORT; must be on loopback. Repeat it to probe several
    /// destinations in turn: with one, a client that closes first runs out of source ports
    /// to that one address and port (docs/benchmarks.md, "The TCP ceiling").
    #[arg(long = "tcp", value_name = "HOST:PORT", required = true)]
    tcp: Vec<String>,
    /// Length of each phase in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=BENCH_SECONDS_MAX))]
    seconds: u64,
    /// Probes in flight at once.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=BENCH_CONCURRENCY_MAX))]
    concurrency: u64,
    /// A blackbox_exporter (e.g. http://127.0.0.1:9115) to drive with the same load through
    /// its `http_2xx` and `tcp_connect` modules.
    #[arg(long)]
    blackbox: Option<String>,
    /// blackbox_exporter's process id, to report its CPU time per probe and its memory.
    #[arg(long, requires = "blackbox")]
    blackbox_pid: Option<u32>,
}

/// Runs a benchmark and prints its report.
///
/// # Errors
///
/// A target that is not on loopback or fails before the run, or a worker that panicked.
pub async fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Probes(args) => probes(args).await,
        BenchCommand::Soak(args) => soak::soak(args).await,
        BenchCommand::Report(args) => {
            tokio::task::spawn_blocking(move || report::report_bench(&args)).await?
        }
    }
}

/// What one phase is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Http,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Http => "http",
        }
    }

    fn goal_per_s(self) -> f64 {
        match self {
            Kind::Tcp => TCP_GOAL_PER_S,
            Kind::Http => HTTP_GOAL_PER_S,
        }
    }

    fn blackbox_module(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp_connect",
            Kind::Http => "http_2xx",
        }
    }
}

/// The destinations of one probe kind, probed in turn.
struct Targets {
    kind: Kind,
    /// The production check for each destination.
    checks: Vec<CheckSpec>,
    /// Each destination as given: blackbox_exporter's `target` and the report's label.
    names: Vec<String>,
}

impl Targets {
    /// Checks `--tcp` destinations: HOST:PORT on loopback.
    async fn tcp(names: &[String]) -> anyhow::Result<Self> {
        destinations_within_bound("--tcp", names)?;
        let mut checks = Vec::with_capacity(names.len());
        for name in names {
            let (host, port) = split_host_port(name)
                .with_context(|| format!("--tcp {name:?}: expected HOST:PORT"))?;
            ensure_loopback("--tcp", &host, port).await?;
            checks.push(tcp_check(&host, port));
        }
        Ok(Self {
            kind: Kind::Tcp,
            checks,
            names: names.to_vec(),
        })
    }

    /// Checks `--http-url` destinations: URLs on loopback.
    async fn http(urls: &[String]) -> anyhow::Result<Self> {
        destinations_within_bound("--http-url", urls)?;
        let mut checks = Vec::with_capacity(urls.len());
        for url in urls {
            let (host, port) = url_host_port(url)?;
            ensure_loopback("--http-url", &host, port).await?;
            checks.push(http_check(url));
        }
        Ok(Self {
            kind: Kind::Http,
            checks,
            names: urls.to_vec(),
        })
    }

    /// The report's label: the destination, or the first and last and how many.
    fn label(&self) -> String {
        match self.names.as_slice() {
            [one] => one.clone(),
            [first, .., last] => format!("{} destinations: {first} … {last}", self.names.len()),
            [] => String::new(),
        }
    }
}

fn destinations_within_bound(flag: &str, names: &[String]) -> anyhow::Result<()> {
    if names.is_empty() {
        bail!("{flag}: at least one destination is needed");
    }
    if names.len() > BENCH_DESTINATIONS_MAX {
        bail!(
            "{flag} given {} times: at most {BENCH_DESTINATIONS_MAX} destinations per probe kind",
            names.len()
        );
    }
    Ok(())
}

/// Hands the destinations of a phase out in turn to all its workers, so each destination
/// gets the same share of the probes whichever worker is free first.
struct RoundRobin {
    next: AtomicUsize,
    len: usize,
}

impl RoundRobin {
    fn new(len: usize) -> Self {
        assert!(len > 0, "a phase has at least one destination");
        Self {
            next: AtomicUsize::new(0),
            len,
        }
    }

    /// The index of the destination to probe next.
    fn next(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.len
    }
}

/// Where a blackbox_exporter listens.
#[derive(Debug, Clone)]
struct Blackbox {
    addr: SocketAddr,
    /// `host:port` for the Host header.
    authority: String,
    pid: Option<u32>,
}

async fn probes(args: ProbesArgs) -> anyhow::Result<ExitCode> {
    let duration = Duration::from_secs(args.seconds);
    let concurrency = usize::try_from(args.concurrency).context("--concurrency")?;
    let targets = [
        Targets::tcp(&args.tcp).await?,
        Targets::http(&args.http_urls).await?,
    ];
    let blackbox = match &args.blackbox {
        Some(url) => Some(blackbox_at(url, args.blackbox_pid).await?),
        None => None,
    };

    let prober = Prober::new(ProbeConfig::default());
    for targets in &targets {
        for (check, name) in targets.checks.iter().zip(&targets.names) {
            let result = prober.probe(check).await;
            if result.status != Status::Ok {
                bail!(
                    "{} target {name} is not OK before the run: {} {}: {}",
                    targets.kind.as_str(),
                    result.status,
                    result.reason,
                    result.message
                );
            }
        }
    }
    if let Some(blackbox) = &blackbox {
        let mut conn = KeepAlive::open(blackbox.addr).await?;
        for targets in &targets {
            for name in &targets.names {
                let path = blackbox_path(targets.kind, name);
                if let Err(failure) = blackbox_attempt(&mut conn, &blackbox.authority, &path).await
                {
                    bail!(
                        "blackbox_exporter {} on {name} fails before the run ({}): {}",
                        targets.kind.blackbox_module(),
                        failure.label,
                        failure.detail
                    );
                }
            }
        }
    }

    let mut rows = Vec::new();
    for targets in &targets {
        let report = consentry_phase(&prober, &targets.checks, duration, concurrency).await?;
        rows.push((targets.kind, targets.label(), "consentry", report));
    }
    let consentry_memory = memory(None);
    if let Some(blackbox) = &blackbox {
        for targets in &targets {
            let report = blackbox_phase(
                blackbox,
                targets.kind,
                &targets.names,
                duration,
                concurrency,
            )
            .await?;
            rows.push((targets.kind, targets.label(), "blackbox_exporter", report));
        }
    }
    let blackbox_memory = blackbox
        .as_ref()
        .and_then(|b| b.pid)
        .map(|pid| memory(Some(pid)));

    print_report(
        &args,
        concurrency,
        &rows,
        consentry_memory,
        blackbox_memory.flatten(),
    );
    let failed = rows.iter().any(|(_, _, _, report)| report.failed() > 0);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The production TCP check against `host:port`.
fn tcp_check(host: &str, port: u16) -> CheckSpec {
    let mut check = CheckSpec::for_test("bench-tcp");
    check.probe = ProbeSpec::Tcp(TcpSpec {
        host: host.to_string(),
        port,
    });
    check.timeout_ms = BENCH_PROBE_TIMEOUT_MS;
    check
}

/// A GET of `url` expecting 2xx, following no redirect (so the load stays on the target),
/// with the checks file's other defaults.
fn http_check(url: &str) -> CheckSpec {
    let mut check = CheckSpec::for_test("bench-http");
    check.probe = ProbeSpec::Http(HttpSpec {
        url: url.to_string(),
        method: "GET".into(),
        expect_status: vec![StatusRange { lo: 200, hi: 299 }],
        body_contains: None,
        body_regex: None,
        tls_verify: true,
        redirects_max: 0,
        basic_auth: None,
        layer4_on_401: false,
    });
    check.timeout_ms = BENCH_PROBE_TIMEOUT_MS;
    check
}

/// Runs `checks` in turn with the real prober from `concurrency` workers for `duration`.
async fn consentry_phase(
    prober: &Prober,
    checks: &[CheckSpec],
    duration: Duration,
    concurrency: usize,
) -> anyhow::Result<PhaseReport> {
    let checks: Arc<[CheckSpec]> = checks.into();
    let turn = Arc::new(RoundRobin::new(checks.len()));
    let tally = Arc::new(Tally::new());
    let cpu_before = cpu_time(None);
    let started = now();
    let deadline = started + duration;
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let (prober, checks, turn) = (prober.clone(), checks.clone(), turn.clone());
        let tally = tally.clone();
        workers.spawn(async move {
            while now() < deadline {
                let check = &checks[turn.next()];
                let attempt_started = now();
                let result = prober.probe(check).await;
                tally.record(attempt_started, failure_of(&result));
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined.context("a benchmark worker failed")?;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_before
        .zip(cpu_time(None))
        .map(|(a, b)| b.saturating_sub(a));
    Ok(tally.report(elapsed, cpu))
}

fn failure_of(result: &ProbeResult) -> Option<Failure> {
    if result.status == Status::Ok {
        return None;
    }
    Some(Failure::new(
        format!("{} {}", result.status, result.reason),
        result.message.clone(),
    ))
}

/// Drives blackbox_exporter's `/probe` for `kind` on `targets`, in turn as our own phase
/// takes them, from `concurrency` workers for `duration`, each over its own keep-alive
/// connection: HTTP/1.1 carries one request at a time, so equal concurrency needs one
/// connection per worker, opened once, and the figure is blackbox_exporter's probing, not
/// our connection setup to it.
async fn blackbox_phase(
    blackbox: &Blackbox,
    kind: Kind,
    targets: &[String],
    duration: Duration,
    concurrency: usize,
) -> anyhow::Result<PhaseReport> {
    let paths: Arc<[String]> = targets.iter().map(|t| blackbox_path(kind, t)).collect();
    let turn = Arc::new(RoundRobin::new(paths.len()));
    let mut conns = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        conns.push(KeepAlive::open(blackbox.addr).await?);
    }
    let tally = Arc::new(Tally::new());
    let cpu_before = cpu_time(blackbox.pid);
    let started = now();
    let deadline = started + duration;
    let mut workers = JoinSet::new();
    for conn in conns {
        let (tally, paths, turn) = (tally.clone(), paths.clone(), turn.clone());
        let (addr, authority) = (blackbox.addr, blackbox.authority.clone());
        workers.spawn(async move {
            let mut conn = Some(conn);
            let mut reconnects = 0;
            while now() < deadline {
                let attempt_started = now();
                let Some(open) = conn.as_mut() else {
                    if reconnects == BLACKBOX_RECONNECTS_MAX {
                        bail!("lost the connection to blackbox_exporter {reconnects} times");
                    }
                    reconnects += 1;
                    match KeepAlive::open(addr).await {
                        Ok(reopened) => conn = Some(reopened),
                        Err(e) => {
                            let failure = Failure::new("reconnect failed", format!("{e:#}"));
                            tally.record(attempt_started, Some(failure));
                        }
                    }
                    continue;
                };
                let outcome = blackbox_attempt(open, &authority, &paths[turn.next()]).await;
                if outcome.as_ref().is_err_and(|f| f.connection_lost) {
                    conn = None;
                }
                tally.record(attempt_started, outcome.err());
            }
            Ok(())
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined.context("a benchmark worker failed")??;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_before
        .zip(cpu_time(blackbox.pid))
        .map(|(a, b)| b.saturating_sub(a));
    Ok(tally.report(elapsed, cpu))
}

/// `/probe?module=...&target=...` for `kind` on `target`.
fn blackbox_path(kind: Kind, target: &str) -> String {
    format!(
        "/probe?module={}&target={}",
        kind.blackbox_module(),
        crate::client::percent_encode(target)
    )
}

/// One `/probe` request: success when blackbox_exporter answers 200 with `probe_success 1`.
async fn blackbox_attempt(
    conn: &mut KeepAlive,
    authority: &str,
    path: &str,
) -> Result<(), Failure> {
    let timeout = Duration::from_millis(BLACKBOX_REQUEST_TIMEOUT_MS);
    let (status, body) = match tokio::time::timeout(timeout, conn.get(authority, path)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            return Err(Failure::new("request failed", format!("{e:#}")).connection_lost());
        }
        Err(_elapsed) => {
            let detail = format!("no answer in {BLACKBOX_REQUEST_TIMEOUT_MS} ms");
            return Err(Failure::new("request timed out", detail).connection_lost());
        }
    };
    if status != 200 {
        let detail: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        return Err(Failure::new(format!("HTTP {status}"), detail));
    }
    let text = String::from_utf8_lossy(&body);
    if text.lines().any(|line| line.trim() == "probe_success 1") {
        return Ok(());
    }
    let detail: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("probe_success") || line.starts_with("probe_http_status"))
        .collect();
    Err(Failure::new("probe_success 0", detail.join("; ")))
}

/// One HTTP/1.1 keep-alive connection: the connection future is polled alongside each
/// exchange instead of in a spawned task, so it ends with its worker.
struct KeepAlive {
    sender: SendRequest<Empty<Bytes>>,
    connection: Pin<Box<Connection<TokioIo<TcpStream>, Empty<Bytes>>>>,
}

impl KeepAlive {
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to blackbox_exporter at {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("starting HTTP/1.1 with blackbox_exporter")?;
        Ok(Self {
            sender,
            connection: Box::pin(connection),
        })
    }

    /// GETs `path` and returns the status and the body's first
    /// `BLACKBOX_BODY_BYTES_MAX` bytes.
    ///
    /// # Errors
    ///
    /// The connection closed or broke, or the body was longer than the bound.
    async fn get(&mut self, authority: &str, path: &str) -> anyhow::Result<(u16, Bytes)> {
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, authority)
            .body(Empty::new())?;
        let sender = &mut self.sender;
        let exchange = async move {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), BLACKBOX_BODY_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, anyhow::Error>((status, body))
        };
        tokio::select! {
            biased;
            ended = self.connection.as_mut() => match ended {
                Ok(()) => bail!("blackbox_exporter closed the connection"),
                Err(e) => bail!("connection to blackbox_exporter broke: {e}"),
            },
            answer = exchange => answer,
        }
    }
}

/// Why one attempt did not succeed.
#[derive(Debug)]
struct Failure {
    /// Short and bounded in kind: counted per label.
    label: String,
    detail: String,
    /// The keep-alive connection is unusable afterwards.
    connection_lost: bool,
}

impl Failure {
    fn new(label: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            detail: detail.into(),
            connection_lost: false,
        }
    }

    fn connection_lost(mut self) -> Self {
        self.connection_lost = true;
        self
    }
}

/// What the workers of one phase found, shared and lock-free on the success path.
struct Tally {
    ok: AtomicU64,
    failures: Mutex<Failures>,
    latency: LatencyHistogram,
}

#[derive(Default)]
struct Failures {
    by_label: BTreeMap<String, u64>,
    examples: Vec<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            ok: AtomicU64::new(0),
            failures: Mutex::new(Failures::default()),
            latency: LatencyHistogram::new(),
        }
    }

    fn record(&self, attempt_started: Instant, failure: Option<Failure>) {
        self.latency.record(attempt_started.elapsed());
        let Some(failure) = failure else {
            self.ok.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let label = if failures.by_label.len() < FAILURE_LABELS_MAX
            || failures.by_label.contains_key(&failure.label)
        {
            failure.label.clone()
        } else {
            "other".to_string()
        };
        *failures.by_label.entry(label).or_default() += 1;
        if failures.examples.len() < FAILURE_EXAMPLES_MAX {
            failures
                .examples
                .push(format!("{}: {}", failure.label, failure.detail));
        }
    }

    fn report(&self, elapsed: Duration, cpu: Option<Duration>) -> PhaseReport {
        let failures = std::mem::take(
            &mut *self
                .failures
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        PhaseReport {
            ok: self.ok.load(Ordering::Relaxed),
            failures,
            elapsed,
            cpu,
            p50_us: self.latency.quantile_us(0.50),
            p99_us: self.latency.quantile_us(0.99),
        }
    }
}

struct PhaseReport {
    ok: u64,
    failures: Failures,
    elapsed: Duration,
    /// CPU time (user + system) the prober's process spent in the phase.
    cpu: Option<Duration>,
    p50_us: u64,
    p99_us: u64,
}

impl PhaseReport {
    fn failed(&self) -> u64 {
        self.failures.by_label.values().sum()
    }

    fn attempts(&self) -> u64 {
        self.ok + self.failed()
    }

    /// Successful probes per second: failures are not what the goal counts.
    fn ok_per_s(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    fn cpu_us_per_probe(&self) -> Option<f64> {
        let attempts = self.attempts();
        self.cpu
            .filter(|_| attempts > 0)
            .map(|cpu| cpu.as_secs_f64() * 1e6 / attempts as f64)
    }
}

/// Latencies in microseconds, in log-linear buckets (HdrHistogram's layout, fixed size):
/// values under 2^LATENCY_SUB_BITS are exact, larger ones keep LATENCY_SUB_BITS
/// significant bits.
struct LatencyHistogram {
    counts: Box<[AtomicU64]>,
}

impl LatencyHistogram {
    fn new() -> Self {
        Self {
            counts: (0..LATENCY_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn record(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// The middle of the bucket holding quantile `q` (0 to 1), 0 when empty.
    fn quantile_us(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (bucket, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let lo = bucket_floor(bucket);
                let hi = bucket_floor(bucket + 1);
                return lo + (hi - lo) / 2;
            }
        }
        bucket_floor(LATENCY_BUCKETS - 1)
    }
}

fn bucket_of(us: u64) -> usize {
    let sub_count = 1u64 << LATENCY_SUB_BITS;
    if us < sub_count {
        return us as usize;
    }
    let shift = 63 - us.leading_zeros() - LATENCY_SUB_BITS;
    let sub = (us >> shift) & (sub_count - 1);
    (((shift + 1) as usize) << LATENCY_SUB_BITS) + sub as usize
}

/// The smallest value in `bucket`.
fn bucket_floor(bucket: usize) -> u64 {
    let sub_count = 1u64 << LATENCY_SUB_BITS;
    let group = (bucket >> LATENCY_SUB_BITS) as u32;
    let sub = bucket as u64 & (sub_count - 1);
    if group == 0 {
        return sub;
    }
    (sub_count + sub).checked_shl(group - 1).unwrap_or(u64::MAX)
}

/// A process's peak and current resident memory in KiB (`VmHWM`, `VmRSS`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Memory {
    pub(crate) hwm_kib: u64,
    pub(crate) rss_kib: u64,
}

/// Reads `/proc/<pid>/status` (this process when `None`); `None` where there is no procfs.
pub(crate) fn memory(pid: Option<u32>) -> Option<Memory> {
    let text = std::fs::read_to_string(proc_path(pid, "status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Memory {
        hwm_kib: field("VmHWM:")?,
        rss_kib: field("VmRSS:")?,
    })
}

/// User plus system CPU time of a process so far, from `/proc/<pid>/stat`.
pub(crate) fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let text = std::fs::read_to_string(proc_path(pid, "stat")).ok()?;
    // The command name (field 2) may hold spaces; count fields after its closing paren.
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks_per_s = u64::try_from(ticks_per_s).ok().filter(|t| *t > 0)?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks_per_s as f64,
    ))
}

fn proc_path(pid: Option<u32>, file: &str) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}/{file}"),
        None => format!("/proc/self/{file}"),
    }
}

/// The benchmark's clock. It measures elapsed time on this machine only, at the CLI's
/// composition root, which is where reading the clock is allowed.
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// `host:port`, `[v6]:port`.
fn split_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

fn url_host_port(url: &str) -> anyhow::Result<(String, u16)> {
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("--http-url {url:?} is not a URL"))?;
    let default_port = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        _ => bail!("--http-url {url:?} must start with http:// or https://"),
    };
    let Some(host) = uri.host() else {
        bail!("--http-url {url:?} has no host");
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), uri.port_u16().unwrap_or(default_port)))
}

async fn blackbox_at(url: &str, pid: Option<u32>) -> anyhow::Result<Blackbox> {
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("--blackbox {url:?} is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!("--blackbox {url:?} must start with http:// (e.g. http://127.0.0.1:9115)");
    }
    let (Some(host), Some(authority)) = (uri.host(), uri.authority()) else {
        bail!("--blackbox {url:?} has no host");
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    ensure_loopback("--blackbox", host, port).await?;
    let addr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .with_context(|| format!("--blackbox {url:?}: {host} resolves to no address"))?;
    Ok(Blackbox {
        addr,
        authority: authority.to_string(),
        pid,
    })
}

/// Refuses targets off this machine: the benchmark opens thousands of connections a
/// second, which only a server of our own may receive.
async fn ensure_loopback(flag: &str, host: &str, port: u16) -> anyhow::Result<()> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("{flag}: cannot resolve {host}"))?
        .collect();
    if addrs.is_empty() || addrs.iter().any(|addr| !addr.ip().is_loopback()) {
        bail!(
            "{flag}: {host} must resolve to loopback only (127.0.0.0/8 or ::1), found {addrs:?}: \
             the benchmark sends thousands of connections a second"
        );
    }
    Ok(())
}

fn print_report(
    args: &ProbesArgs,
    concurrency: usize,
    rows: &[(Kind, String, &str, PhaseReport)],
    consentry_memory: Option<Memory>,
    blackbox_memory: Option<Memory>,
) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "## consentry bench probes\n\n{cores} core(s); {} s per phase, {concurrency} probes in \
         flight, a fresh connection per probe, {} TCP and {} HTTP destination(s) taken in \
         turn; phases run one after another.\n",
        args.seconds,
        args.tcp.len(),
        args.http_urls.len(),
    );
    println!("| probe | destinations | prober | probes | probes/s | p50 ms | p99 ms | prober CPU µs/probe | not OK |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|");
    for (kind, target, prober, report) in rows {
        let cpu = report
            .cpu_us_per_probe()
            .map_or_else(|| "-".to_string(), |us| format!("{us:.0}"));
        println!(
            "| {} | {target} | {prober} | {} | {:.0} | {:.2} | {:.2} | {cpu} | {} |",
            kind.as_str(),
            report.attempts(),
            report.ok_per_s(),
            report.p50_us as f64 / 1000.0,
            report.p99_us as f64 / 1000.0,
            report.failed(),
        );
    }

    println!("\n| probe | consentry probes/s | blackbox_exporter probes/s | consentry / blackbox | goal (2 cores) |");
    println!("|---|---:|---:|---:|---|");
    for kind in [Kind::Tcp, Kind::Http] {
        let per_s = |who: &str| {
            rows.iter()
                .find(|(k, _, prober, _)| *k == kind && *prober == who)
                .map(|(_, _, _, report)| report.ok_per_s())
        };
        let ours = per_s("consentry").unwrap_or(0.0);
        let theirs = per_s("blackbox_exporter");
        let ratio = theirs.filter(|t| *t > 0.0).map(|t| ours / t);
        let goal_met = ours >= kind.goal_per_s() && ratio.is_none_or(|r| r >= RATIO_GOAL);
        println!(
            "| {} | {ours:.0} | {} | {} | ≥ {:.0}/s and ≥ {RATIO_GOAL:.0}×: {} |",
            kind.as_str(),
            theirs.map_or_else(|| "-".to_string(), |t| format!("{t:.0}")),
            ratio.map_or_else(|| "-".to_string(), |r| format!("{r:.1}×")),
            kind.goal_per_s(),
            if goal_met { "met" } else { "missed" },
        );
    }

    println!("\n| process | VmHWM MiB | VmRSS MiB |\n|---|---:|---:|");
    let mib = |kib: u64| kib as f64 / 1024.0;
    if let Some(m) = consentry_memory {
        println!(
            "| consentry (this process, after its phases) | {:.1} | {:.1} |",
            mib(m.hwm_kib),
            mib(m.rss_kib)
        );
    }
    if let Some(m) = blackbox_memory {
        println!(
            "| blackbox_exporter (after its phases) | {:.1} | {:.1} |",
            mib(m.hwm_kib),
            mib(m.rss_kib)
        );
    }

    for (kind, _, prober, report) in rows {
        for (label, count) in &report.failures.by_label {
            println!("\n- {prober} {}: {count} × {label}", kind.as_str());
        }
        for example in &report.failures.examples {
            println!("  - e.g. {example}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_exact_when_small_and_within_3_percent_above() {
        for us in [0, 1, 31, 32, 33, 63, 64, 65, 1_000, 4_999_999, u64::MAX / 2] {
            let bucket = bucket_of(us);
            let lo = bucket_floor(bucket);
            let hi = bucket_floor(bucket + 1);
            assert!(lo <= us && us < hi, "{us} in [{lo}, {hi})");
            assert!((hi - lo) as f64 <= (lo as f64 / 32.0).max(1.0), "{us}");
        }
        assert!(bucket_of(u64::MAX) < LATENCY_BUCKETS);
    }

    #[test]
    fn quantiles_come_from_the_recorded_latencies() {
        let histogram = LatencyHistogram::new();
        for us in 1..=100 {
            histogram.record(Duration::from_micros(us * 10));
        }
        let p50 = histogram.quantile_us(0.50);
        let p99 = histogram.quantile_us(0.99);
        assert!((490..=520).contains(&p50), "{p50}");
        assert!((960..=1_010).contains(&p99), "{p99}");
        assert_eq!(LatencyHistogram::new().quantile_us(0.5), 0);
    }

    #[test]
    fn targets_parse_and_encode() {
        assert_eq!(
            split_host_port("127.0.0.1:8080"),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(split_host_port("[::1]:80"), Some(("::1".into(), 80)));
        assert_eq!(split_host_port(":80"), None);
        assert_eq!(split_host_port("localhost"), None);
        assert_eq!(
            crate::client::percent_encode("http://127.0.0.1:81/a b"),
            "http%3A%2F%2F127.0.0.1%3A81%2Fa%20b"
        );
    }

    #[test]
    fn round_robin_gives_each_destination_the_same_share() {
        let turn = RoundRobin::new(3);
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[turn.next()] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
        assert_eq!(RoundRobin::new(1).next(), 0);
    }

    #[test]
    fn destinations_repeat_and_are_bounded() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            probes: ProbesArgs,
        }
        let cli = Cli::try_parse_from([
            "bench",
            "--tcp",
            "127.0.0.1:80",
            "--tcp",
            "127.0.0.2:80",
            "--http-url",
            "http://127.0.0.1/",
        ])
        .unwrap();
        assert_eq!(cli.probes.tcp, ["127.0.0.1:80", "127.0.0.2:80"]);
        assert_eq!(cli.probes.http_urls, ["http://127.0.0.1/"]);
        assert!(Cli::try_parse_from(["bench", "--tcp", "127.0.0.1:80"]).is_err());

        let many: Vec<String> = (0..=BENCH_DESTINATIONS_MAX)
            .map(|i| format!("127.0.0.1:{}", 1000 + i))
            .collect();
        assert!(destinations_within_bound("--tcp", &many[..BENCH_DESTINATIONS_MAX]).is_ok());
        assert!(destinations_within_bound("--tcp", &many).is_err());
        assert!(destinations_within_bound("--tcp", &[]).is_err());
    }

    #[tokio::test]
    async fn targets_are_labelled_by_their_ends_and_count() {
        let one = Targets::tcp(&["127.0.0.1:80".into()]).await.unwrap();
        assert_eq!(one.label(), "127.0.0.1:80");
        let names: Vec<String> = (1..=8).map(|i| format!("127.0.0.{i}:80")).collect();
        let eight = Targets::tcp(&names).await.unwrap();
        assert_eq!(eight.checks.len(), 8);
        assert_eq!(eight.label(), "8 destinations: 127.0.0.1:80 … 127.0.0.8:80");
        assert!(
            Targets::tcp(&["127.0.0.1:80".into(), "192.0.2.10:80".into()])
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn only_loopback_targets_are_accepted() {
        assert!(ensure_loopback("--tcp", "127.0.0.1", 80).await.is_ok());
        assert!(ensure_loopback("--tcp", "192.0.2.10", 80).await.is_err());
    }
}

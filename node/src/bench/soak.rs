//! `consentry bench soak`: three real nodes on loopback (site-a, site-b and the witness
//! site-c, each its own `consentry run` process), thousands of TCP checks against local
//! listeners, for minutes. Every sample prints each node's CPU, resident memory and data
//! directory size, the results committed per second, and the result batches' commit
//! latency (p50 and p99 over the last minute, from each probing node's `/metrics`).
//!
//! A benchmark, never a test: it prints figures and asserts nothing about speed. The
//! listeners accept and close; they run in this process, on loopback addresses
//! 127.0.0.2 and up, so the probes' ephemeral ports spread over many destinations.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use tokio::net::TcpListener;

use super::{cpu_time, memory, now};
use crate::client::ApiClient;

/// Most checks `--checks` allows.
const CHECKS_MAX: usize = 100_000;
/// Longest run `--minutes` allows.
const MINUTES_MAX: u64 = 120;
/// Time for the three nodes to elect a leader.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Args)]
pub struct SoakArgs {
    /// TCP checks in the catalog.
    #[arg(long, default_value_t = 10_000)]
    checks: usize,
    /// Their interval, seconds.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// How long to run after the catalog is applied.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 30)]
    sample: u64,
    /// Listeners the checks spread over (each on its own loopback address and port).
    #[arg(long, default_value_t = 64)]
    targets: usize,
    /// Log entries between snapshots (`[raft] snapshot_every` of every node).
    #[arg(long, default_value_t = 1_000)]
    snapshot_every: u64,
    /// The node that leads during the run (1 and 2 probe, 3 is the witness); handed over
    /// with `transfer-leader` before the checks are applied, so runs compare.
    #[arg(long, default_value_t = 3)]
    leader: u64,
    /// Keep the nodes' directory (configs, logs, data) instead of removing it.
    #[arg(long)]
    keep: bool,
}

struct Node {
    id: u64,
    api: String,
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One node's figures at one sample.
#[derive(Debug, Clone, Default)]
struct NodeSample {
    cpu_s: f64,
    rss_mib: f64,
    hwm_mib: f64,
    data_mib: f64,
    committed: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    last_log: f64,
    purged: f64,
}

pub async fn soak(args: SoakArgs) -> anyhow::Result<ExitCode> {
    if args.checks == 0 || args.checks > CHECKS_MAX {
        bail!("--checks must be 1 to {CHECKS_MAX}");
    }
    if args.minutes == 0 || args.minutes > MINUTES_MAX {
        bail!("--minutes must be 1 to {MINUTES_MAX}");
    }
    if !(1..=3).contains(&args.leader) {
        bail!("--leader must be 1, 2 or 3");
    }
    if args.interval == 0 || args.sample == 0 || args.targets == 0 || args.targets > 250 {
        bail!("--interval and --sample must be positive, --targets 1 to 250");
    }
    let dir = tempfile::Builder::new()
        .prefix("consentry-soak-")
        .tempdir()?;
    let root = dir.path().to_path_buf();
    eprintln!("soak: directory {}", root.display());
    let targets = start_targets(args.targets).await?;
    let nodes = start_nodes(&root, args.snapshot_every)?;
    let token = std::fs::read_to_string(root.join("certs/api.token"))?
        .trim()
        .to_string();
    let clients: Vec<ApiClient> = nodes
        .iter()
        .map(|n| ApiClient::new(&n.api, Some(token.clone())))
        .collect::<Result<_, _>>()?;
    wait_leader(&clients[0]).await?;
    let moved = clients[0]
        .post_json(
            "/api/v1/cluster/leader",
            &serde_json::json!({ "node_id": args.leader }),
        )
        .await
        .context("handing leadership over")?;
    eprintln!(
        "soak: {}",
        moved["message"].as_str().unwrap_or("leader set")
    );

    let catalog = checks_toml(&targets, args.checks, args.interval);
    eprintln!(
        "soak: applying {} TCP checks every {} s over {} listeners ({} KiB of checks.toml)",
        args.checks,
        args.interval,
        targets.len(),
        catalog.len() / 1024
    );
    clients[1]
        .put("/api/v1/checks", catalog)
        .await
        .context("applying the checks")?;

    let started = now();
    let mut first: Option<Vec<NodeSample>> = None;
    let mut rows = Vec::new();
    let total = Duration::from_secs(args.minutes * 60);
    let step = Duration::from_secs(args.sample);
    let mut peak_rss = [0f64; 3];
    let mut p99s = Vec::new();
    let mut p50s = Vec::new();
    while started.elapsed() < total {
        tokio::time::sleep(step.min(total.saturating_sub(started.elapsed()))).await;
        let at = started.elapsed().as_secs();
        let mut samples = Vec::new();
        for (node, client) in nodes.iter().zip(&clients) {
            samples.push(sample(node, client).await);
        }
        for (i, s) in samples.iter().enumerate() {
            peak_rss[i] = peak_rss[i].max(s.rss_mib);
            // The first minute fills the summaries from the catalog apply; judge after it.
            if at >= 60 && i < 2 {
                if let (Some(p50), Some(p99)) = (s.p50_ms, s.p99_ms) {
                    p50s.push(p50);
                    p99s.push(p99);
                }
            }
        }
        let base = first.get_or_insert_with(|| samples.clone()).clone();
        let elapsed = (at as f64 - args.sample as f64).max(1.0);
        let committed: f64 = samples[..2]
            .iter()
            .zip(&base[..2])
            .map(|(s, b)| s.committed - b.committed)
            .sum();
        let row = format!(
            "| {at} | {} | {} | {} | {:.0} | {} | {} |",
            per_node(&samples, |s| format!("{:.0}", s.rss_mib)),
            per_node(&samples, |s| format!("{:.1}", s.data_mib)),
            per_node(&samples, |s| format!(
                "{:.0} %",
                cpu_percent(s.cpu_s, at as f64)
            )),
            if at > args.sample {
                committed / elapsed
            } else {
                0.0
            },
            samples[..2]
                .iter()
                .map(|s| fmt_ms(s.p50_ms))
                .collect::<Vec<_>>()
                .join(" / "),
            samples[..2]
                .iter()
                .map(|s| fmt_ms(s.p99_ms))
                .collect::<Vec<_>>()
                .join(" / "),
        );
        eprintln!(
            "soak: {row}  log {} purged {}",
            samples[0].last_log, samples[0].purged
        );
        rows.push(row);
    }

    let end: Vec<NodeSample> = {
        let mut v = Vec::new();
        for (node, client) in nodes.iter().zip(&clients) {
            v.push(sample(node, client).await);
        }
        v
    };
    let base = first.unwrap_or_else(|| end.clone());
    let seconds = started.elapsed().as_secs_f64();
    let committed: f64 = end[..2]
        .iter()
        .zip(&base[..2])
        .map(|(e, b)| e.committed - b.committed)
        .sum();
    let span = (seconds - args.sample as f64).max(1.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### Soak: {} checks every {} s, 3 nodes (2 probing), leader node {}, {} min, snapshot every {} entries\n",
        args.checks, args.interval, args.leader, args.minutes, args.snapshot_every
    );
    let _ = writeln!(
        out,
        "| elapsed s | RSS MiB (1/2/3) | data_dir MiB (1/2/3) | CPU of one core (1/2/3) | results/s committed | commit p50 ms (a/b) | commit p99 ms (a/b) |\n|---|---|---|---|---:|---|---|"
    );
    for row in &rows {
        let _ = writeln!(out, "{row}");
    }
    p50s.sort_by(f64::total_cmp);
    p99s.sort_by(f64::total_cmp);
    let _ = writeln!(
        out,
        "\n| figure | value | target |\n|---|---|---|\n\
         | results committed per second (both sites) | {:.0} (expected {:.0}) | |\n\
         | peak RSS per node, MiB (1/2/3) | {:.0} / {:.0} / {:.0} | ≤ 150 MB |\n\
         | VmHWM per node, MiB (1/2/3) | {} | |\n\
         | commit latency p50, median of samples after the first minute | {} | |\n\
         | commit latency p99, worst sample after the first minute | {} | ≤ 50 ms |\n\
         | data_dir MiB at the end (1/2/3) | {} | flat after compaction |\n\
         | raft log on node 1: last index, purged up to | {} / {} | |\n\
         | CPU of one core over the run (1/2/3) | {} | |",
        committed / span,
        2.0 * args.checks as f64 / args.interval as f64,
        peak_rss[0],
        peak_rss[1],
        peak_rss[2],
        per_node(&end, |s| format!("{:.0}", s.hwm_mib)),
        fmt_ms(p50s.get(p50s.len() / 2).copied()),
        fmt_ms(p99s.last().copied()),
        per_node(&end, |s| format!("{:.1}", s.data_mib)),
        end[0].last_log,
        end[0].purged,
        per_node(&end, |s| format!("{:.0} %", cpu_percent(s.cpu_s, seconds))),
    );
    println!("{out}");
    drop(nodes);
    if args.keep {
        eprintln!("soak: kept {}", dir.keep().display());
    }
    drop(targets);
    Ok(ExitCode::SUCCESS)
}

fn per_node(samples: &[NodeSample], f: impl Fn(&NodeSample) -> String) -> String {
    samples.iter().map(f).collect::<Vec<_>>().join(" / ")
}

fn cpu_percent(cpu_s: f64, wall_s: f64) -> f64 {
    if wall_s <= 0.0 {
        0.0
    } else {
        100.0 * cpu_s / wall_s
    }
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |ms| format!("{ms:.1}"))
}

/// Listeners that accept and close, each on its own loopback address (127.0.0.2 up).
async fn start_targets(
    count: usize,
) -> anyhow::Result<Vec<(SocketAddr, tokio::task::JoinHandle<()>)>> {
    let mut targets = Vec::new();
    for i in 0..count {
        let ip = Ipv4Addr::new(127, 0, 0, u8::try_from(2 + i).context("too many targets")?);
        let listener = TcpListener::bind((ip, 0))
            .await
            .with_context(|| format!("binding a target on {ip}"))?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => drop(stream),
                    // Out of file descriptors, say: do not spin on it.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
        targets.push((addr, task));
    }
    Ok(targets)
}

fn checks_toml(
    targets: &[(SocketAddr, tokio::task::JoinHandle<()>)],
    checks: usize,
    interval: u64,
) -> String {
    let timeout = interval.min(5);
    let mut text = format!(
        "[defaults]\ninterval = \"{interval}s\"\ntimeout = \"{timeout}s\"\nconfirm = {{ sites = 2, rounds = 2 }}\n"
    );
    for i in 0..checks {
        let addr = targets[i % targets.len()].0;
        let _ = write!(
            text,
            "\n[[check]]\nname = \"soak-{i:05}\"\nkind = \"tcp\"\nhost = \"{}\"\nport = {}\n",
            addr.ip(),
            addr.port()
        );
    }
    text
}

/// A free port on 127.0.0.1 (UDP or TCP), released for the node to bind.
fn free_port(udp: bool) -> anyhow::Result<u16> {
    Ok(if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    })
}

fn start_nodes(root: &Path, snapshot_every: u64) -> anyhow::Result<Vec<Node>> {
    let certs = root.join("certs");
    consentry_cluster::tls::generate(&certs, &[1, 2, 3], &[])?;
    let sites = [
        (1u64, "site-a", true),
        (2, "site-b", true),
        (3, "site-c", false),
    ];
    let mut ports = Vec::new();
    for _ in &sites {
        ports.push((free_port(true)?, free_port(false)?));
    }
    let mut members = String::new();
    for ((id, site, probe), (raft, api)) in sites.iter().zip(&ports) {
        let _ = write!(
            members,
            "\n[[initial_member]]\nid = {id}\nsite = \"{site}\"\naddr = \"127.0.0.1:{raft}\"\napi = \"http://127.0.0.1:{api}\"\nprobe = {probe}\n"
        );
    }
    let exe = std::env::current_exe().context("finding the consentry binary")?;
    let mut nodes = Vec::new();
    for ((id, site, probe), (raft, api)) in sites.iter().zip(&ports) {
        let node_dir: PathBuf = root.join(format!("node-{id}"));
        std::fs::create_dir_all(&node_dir)?;
        let config = format!(
            "node_id = {id}\nsite = \"{site}\"\ndata_dir = \"data\"\nlisten_raft = \"127.0.0.1:{raft}\"\n\
             listen_api = \"127.0.0.1:{api}\"\nprobe = {probe}\n\n[tls]\nca = \"../certs/ca.pem\"\n\
             cert = \"../certs/node-{id}.pem\"\nkey = \"../certs/node-{id}.key\"\n\n[api]\n\
             token_file = \"../certs/api.token\"\n\n[raft]\nsnapshot_every = {snapshot_every}\n{members}"
        );
        let config_path = node_dir.join("node.toml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(node_dir.join("node.log"))?;
        let mut command = Command::new(&exe);
        // SAFETY: prctl in the child before exec; it only sets the parent-death signal, so
        // the nodes die with the benchmark however it ends (Ctrl-C included).
        unsafe {
            use std::os::unix::process::CommandExt as _;
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting node {id}"))?;
        nodes.push(Node {
            id: *id,
            api: format!("http://127.0.0.1:{api}"),
            child,
        });
    }
    Ok(nodes)
}

async fn wait_leader(client: &ApiClient) -> anyhow::Result<()> {
    let started = now();
    while started.elapsed() < FORM_TIMEOUT {
        if let Ok(v) = client.get("/api/v1/cluster").await {
            if v["leader"].is_u64() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("the three nodes elected no leader within {FORM_TIMEOUT:?}")
}

async fn sample(node: &Node, client: &ApiClient) -> NodeSample {
    let pid = node.child.id();
    let memory = memory(Some(pid));
    let mut s = NodeSample {
        cpu_s: cpu_time(Some(pid)).map_or(0.0, |d| d.as_secs_f64()),
        rss_mib: memory.map_or(0.0, |m| m.rss_kib as f64 / 1024.0),
        hwm_mib: memory.map_or(0.0, |m| m.hwm_kib as f64 / 1024.0),
        ..NodeSample::default()
    };
    let metrics = client.get_text("/metrics").await.unwrap_or_else(|e| {
        eprintln!("soak: node {}: /metrics: {e:#}", node.id);
        String::new()
    });
    s.data_mib = metric(&metrics, "consentry_data_dir_bytes", None).unwrap_or(0.0) / 1_048_576.0;
    s.committed = metric(&metrics, "consentry_results_committed_total", None).unwrap_or(0.0);
    let quantile = |q: &str| {
        metric(
            &metrics,
            "consentry_result_batch_commit_seconds",
            Some(&format!("quantile=\"{q}\"")),
        )
        .map(|v| v * 1_000.0)
    };
    s.p50_ms = quantile("0.5");
    s.p99_ms = quantile("0.99");
    s.last_log = metric(&metrics, "consentry_raft_last_log_index", None).unwrap_or(0.0);
    if let Ok(v) = client.get("/api/v1/cluster").await {
        s.purged = v["purged_index"].as_f64().unwrap_or(0.0);
    }
    s
}

/// The value of `name` (with `label` inside its braces when given) in Prometheus text.
fn metric(text: &str, name: &str, label: Option<&str>) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let Some(rest) = l.strip_prefix(name) else {
                return false;
            };
            match label {
                None => rest.starts_with(' ') || rest.starts_with('{'),
                Some(label) => rest.starts_with('{') && rest.contains(label),
            }
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prometheus_lines() {
        let text = "# HELP x\nconsentry_results_committed_total 1200\n\
                    consentry_result_batch_commit_seconds{quantile=\"0.5\"} 0.002\n\
                    consentry_result_batch_commit_seconds{quantile=\"0.99\"} 0.031\n";
        assert_eq!(
            metric(text, "consentry_results_committed_total", None),
            Some(1200.0)
        );
        assert_eq!(
            metric(
                text,
                "consentry_result_batch_commit_seconds",
                Some("quantile=\"0.99\"")
            ),
            Some(0.031)
        );
        assert_eq!(metric(text, "consentry_absent", None), None);
    }
}

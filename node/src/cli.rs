//! The `consentry` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::checks_file;
use crate::client::ApiClient;
use crate::clock::SystemClock;
use crate::config::NodeConfig;
use crate::server::{self, Seams};

#[derive(Parser)]
#[command(
    name = "consentry",
    version,
    about = "Multi-site monitoring that alerts only when the sites agree."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a 3-node demo cluster on loopback (site-a, site-b, witness site-c) with a target
    /// you can break, and the dashboard.
    Demo(crate::demo::DemoArgs),
    /// Run one node.
    Run {
        /// The node's configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the host agent: report this host's resources, run allow-listed recovery actions.
    Agent {
        /// The agent's configuration file (agent.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Certificates for the cluster.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Check a checks file offline; print every problem with its line and column.
    Validate {
        #[arg(long = "file", short = 'f')]
        file: PathBuf,
    },
    /// Run checks once from this machine, without a cluster, and print the results. Exit
    /// code: the worst status, Nagios-style (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
    Probe(ProbeArgs),
    /// Replace the cluster's checks and notifiers with those in a file (replicated).
    Apply {
        #[arg(long = "file", short = 'f')]
        file: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Each check's agreed verdict and every site's latest result.
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Incidents, newest first; `ack` takes one.
    Incidents {
        #[command(subcommand)]
        action: Option<IncidentsCommand>,
        /// Only open incidents.
        #[arg(long)]
        open: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Availability report per check (agreed verdict, maintenance excluded, per-site raw
    /// availability beside it), or with --results every recorded result of one check.
    Report(ReportArgs),
    /// Silences (maintenance windows): hold the notifications of matching checks.
    #[command(subcommand)]
    Silence(SilenceCommand),
    /// Read and operate the cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Back up the catalog, silences and incident history; restore them into a new cluster.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Benchmarks: print figures and a ratio against a peer run beside them.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
}

#[derive(Args)]
struct ProbeArgs {
    #[arg(long = "file", short = 'f')]
    file: PathBuf,
    /// Only these checks (repeatable); all when absent.
    #[arg(long = "check")]
    checks: Vec<String>,
    /// The local address probes leave from.
    #[arg(long)]
    source_ip: Option<std::net::IpAddr>,
    /// Directories nagios plugins may run from (repeatable; default: Debian's).
    #[arg(long = "plugin-dir")]
    plugin_dirs: Vec<PathBuf>,
    /// Print JSON (one result per check, with perfdata).
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a CA, one certificate per node (and agent), and the API token.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// Node ids, comma separated (e.g. 1,2,3).
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<u64>,
        /// Agent names, comma separated.
        #[arg(long, value_delimiter = ',')]
        agents: Vec<String>,
    },
    /// Issue certificates from the CA in --dir (ca.pem and ca.key): for new members, or to
    /// rotate existing ones (their files are replaced; send the node SIGHUP to load them).
    Issue {
        #[arg(long)]
        dir: PathBuf,
        /// Node ids, comma separated.
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<u64>,
        /// Agent names, comma separated.
        #[arg(long, value_delimiter = ',')]
        agents: Vec<String>,
    },
}

#[derive(Subcommand)]
enum IncidentsCommand {
    /// Acknowledge an open incident: recorded and shown with it (notifications continue).
    Ack {
        id: u64,
        /// Who takes it (default: $USER).
        #[arg(long)]
        by: Option<String>,
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// One incident: its evidence, notifications and timeline.
    Show {
        id: u64,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
enum SilenceCommand {
    /// Hold notifications of the matching checks from --start (default: now) until --end or
    /// for --for. Results and incidents are still recorded.
    #[command(group(clap::ArgGroup::new("until").required(true).args(["end", "duration"])))]
    Add {
        /// A check name, a glob over names (`web-*`), or `label=value`.
        #[arg(long = "match")]
        matcher: String,
        /// RFC 3339, e.g. 2026-11-21T02:00:00Z or 2026-11-21T11:00:00+09:00.
        #[arg(long)]
        start: Option<String>,
        /// RFC 3339.
        #[arg(long)]
        end: Option<String>,
        /// How long from the start: 30m, 2h.
        #[arg(long = "for")]
        duration: Option<String>,
        /// Why (shown with the silence and its incidents).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Active and scheduled silences.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Remove a silence: held incidents that are still open notify at the next tick.
    Remove {
        id: u64,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Write the node's applied catalog, silences and incident history to FILE (mode 0600:
    /// it holds the catalog's secrets). Needs the token.
    Save {
        file: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Restore FILE into a fresh cluster (no catalog, silence or incident yet). Open
    /// incidents come back closed; the new cluster judges every check afresh.
    Restore {
        file: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Every member: site, role, reachable, last log and applied index, lag, leader, term.
    /// Lag and reachability are the leader's view; each node's indexes and term are its own
    /// answer (asked at the API URL the member was added with).
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Add a node as a learner: it replicates the log and, unless --witness, probes from
    /// its site, but does not vote. Start it first with `join = true` in its node.toml and
    /// a certificate from `consentry certs issue`.
    Add {
        /// The new node's node_id (its certificate names it).
        #[arg(long)]
        id: u64,
        /// Its listen_raft address, IP:PORT.
        #[arg(long)]
        addr: String,
        /// Its site.
        #[arg(long)]
        site: String,
        /// It votes (once promoted) but never probes.
        #[arg(long)]
        witness: bool,
        /// Its API base URL, for `cluster status`.
        #[arg(long, default_value = "")]
        node_api: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Make a caught-up learner a voter.
    Promote {
        id: u64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Remove a node (voter or learner) from the cluster. Stop its process afterwards.
    Remove {
        id: u64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Hand leadership to a voter: the leader holds new writes (at most 2 s) until it has
    /// every entry, then it stands for election and the leader grants its vote (openraft
    /// 0.9 has no transfer).
    TransferLeader {
        id: u64,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Args)]
pub struct ReportArgs {
    /// Start of the period: RFC 3339 (2026-10-01T00:00:00+09:00) or epoch ms. Default: 30
    /// days before --to (10 days with --results).
    #[arg(long)]
    pub from: Option<String>,
    /// End of the period (exclusive). Default: now.
    #[arg(long)]
    pub to: Option<String>,
    /// A calendar month, YYYY-MM, instead of --from/--to (the monthly report).
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub month: Option<String>,
    /// UTC offset the month is taken in, e.g. +09:00.
    #[arg(long, default_value = "Z")]
    pub tz: String,
    /// Only this check (repeat for more).
    #[arg(long)]
    pub check: Vec<String>,
    /// Only checks with this label, key=value.
    #[arg(long)]
    pub label: Option<String>,
    /// table, csv or json.
    #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
    pub format: String,
    /// Every recorded result of one --check (the 10-day per-result history), not the
    /// availability report.
    #[arg(long, conflicts_with_all = ["month", "label", "consistent"])]
    pub results: bool,
    /// Read through the leader (reflects every write committed before the request).
    #[arg(long)]
    pub consistent: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Args, Clone)]
pub struct ApiArgs {
    /// The node API to talk to.
    #[arg(long, env = "CONSENTRY_API", default_value = "http://127.0.0.1:7480")]
    pub api: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Read the API token from this file (otherwise env CONSENTRY_TOKEN).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

impl ApiArgs {
    fn client(&self) -> anyhow::Result<ApiClient> {
        let token = match &self.token_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("reading token file {}", p.display()))?
                    .trim()
                    .to_string(),
            ),
            None => std::env::var("CONSENTRY_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty()),
        };
        ApiClient::new(&self.api, token)
    }
}

/// Parses arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo shares its terminal with the notifications it prints: keep logs to problems.
    let default_filter = if matches!(cli.command, Command::Demo(_)) {
        "warn,openraft=off,consentry_cluster::transport=error"
    } else {
        "info,openraft=warn,quinn=warn,quinn_proto=warn,sled=warn"
    };
    init_tracing(default_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Colour only for a person at a terminal; log files and journald get plain text.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Installs the process's one crypto provider (ring) for rustls users that need a default.
pub fn install_crypto_provider() {
    // Err means one is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Installs the Prometheus recorder for this process.
pub fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    match metrics_exporter_prometheus::PrometheusBuilder::new()
        .idle_timeout(
            metrics_util::MetricKindMask::GAUGE,
            Some(std::time::Duration::from_secs(
                crate::metrics::GAUGE_IDLE_SECS,
            )),
        )
        .install_recorder()
    {
        Ok(h) => {
            crate::metrics::describe();
            Some(h)
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed; /metrics will answer 404");
            None
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    install_crypto_provider();
    match cli.command {
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Run { config } => {
            let cfg = NodeConfig::load(&config)?;
            let seams = Seams {
                clock: SystemClock::shared(),
                metrics: install_metrics(),
                demo: None,
            };
            let mut node = server::start(&cfg, seams).await?;
            tokio::select! {
                _ = shutdown_signal() => tracing::info!("signal received; shutting down"),
                _ = node.wait() => tracing::warn!("a node task ended; shutting down"),
            }
            node.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent { config } => {
            let cancel = tokio_util::sync::CancellationToken::new();
            let stop = cancel.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                tracing::info!("signal received; agent shutting down");
                stop.cancel();
            });
            crate::agent::run::run(&config, cancel)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Certs(CertsCommand::Init { dir, nodes, agents }) => {
            consentry_cluster::tls::generate(&dir, &nodes, &agents)?;
            println!(
                "wrote CA, {} node certificate(s), {} agent certificate(s) and api.token to {}",
                nodes.len(),
                agents.len(),
                dir.display()
            );
            println!(
                "keep ca.key offline; copy ca.pem, node-N.pem, node-N.key and api.token to node N"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Certs(CertsCommand::Issue { dir, nodes, agents }) => {
            let written = consentry_cluster::tls::issue(&dir, &nodes, &agents)?;
            for path in &written {
                println!("wrote {} (and its key)", path.display());
            }
            println!(
                "a running node loads a replaced certificate on SIGHUP (systemctl reload consentry)"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            match checks_file::parse(&text) {
                Ok(c) => {
                    println!(
                        "{}: OK ({} checks, {} notifiers)",
                        file.display(),
                        c.checks.len(),
                        c.notifiers.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(problems) => {
                    for p in &problems {
                        eprintln!("{}:{}:{}: {}", file.display(), p.line, p.column, p.message);
                    }
                    eprintln!("{}: {} problem(s)", file.display(), problems.len());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Probe(args) => probe_once(args).await,
        Command::Bench(command) => crate::bench::run(command).await,
        Command::Apply { file, api } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            // Validate locally first so errors name this file.
            if let Err(problems) = checks_file::parse(&text) {
                for p in &problems {
                    eprintln!("{}:{}:{}: {}", file.display(), p.line, p.column, p.message);
                }
                eprintln!(
                    "{}: {} problem(s); nothing was applied",
                    file.display(),
                    problems.len()
                );
                return Ok(ExitCode::FAILURE);
            }
            let v = api.client()?.put("/api/v1/checks", text).await?;
            if api.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "applied {} checks and {} notifiers",
                    v["checks"], v["notifiers"]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { api } => {
            let v = api.client()?.get("/api/v1/status").await?;
            print_or(&api, &v, print_status)
        }
        Command::Incidents {
            action: Some(action),
            ..
        } => incidents_action(action).await,
        Command::Incidents {
            action: None,
            open,
            api,
        } => {
            let path = if open {
                "/api/v1/incidents?open=true"
            } else {
                "/api/v1/incidents"
            };
            let v = api.client()?.get(path).await?;
            print_or(&api, &v, print_incidents)
        }
        Command::Report(args) => report(args).await,
        Command::Silence(command) => silence(command).await,
        Command::Snapshot(command) => snapshot(command).await,
        Command::Cluster(command) => cluster(command).await,
    }
}

/// How long `cluster status` waits for each member's own answer.
const MEMBER_STATUS_TIMEOUT_MS: u64 = 2_000;

async fn cluster(command: ClusterCommand) -> anyhow::Result<ExitCode> {
    // The node forwards a change to the leader, which may wait for a new node to catch up
    // or for a voter change to commit: longer than a read.
    let within = Duration::from_millis(consentry_cluster::membership::CHANGE_MEMBERSHIP_MS * 2);
    let (api, v) = match command {
        ClusterCommand::Status { api } => {
            let v = cluster_status(&api.client()?).await?;
            return print_or(&api, &v, print_cluster);
        }
        ClusterCommand::Add {
            id,
            addr,
            site,
            witness,
            node_api,
            api,
        } => {
            let body = serde_json::json!({
                "id": id, "addr": addr, "site": site, "probe": !witness, "api": node_api,
            });
            let client = api.client()?;
            let v = client
                .post_json_within("/api/v1/cluster/members", &body, within)
                .await?;
            (api, v)
        }
        ClusterCommand::Promote { id, api } => {
            let path = format!("/api/v1/cluster/members/{id}/promote");
            let v = api
                .client()?
                .post_json_within(&path, &Value::Null, within)
                .await?;
            (api, v)
        }
        ClusterCommand::Remove { id, api } => {
            let path = format!("/api/v1/cluster/members/{id}");
            let v = api.client()?.delete_within(&path, within).await?;
            (api, v)
        }
        ClusterCommand::TransferLeader { id, api } => {
            let body = serde_json::json!({ "node_id": id });
            let v = api
                .client()?
                .post_json_within("/api/v1/cluster/leader", &body, within)
                .await?;
            (api, v)
        }
    };
    print_or(&api, &v, print_message)
}

fn print_message(v: &Value) {
    println!("{}", s(&v["message"]));
}

/// The cluster as the leader sees it, with each member's own role, term and indexes under
/// `self` (`{"error": ...}` when its API did not answer, `null` when it has no API URL).
/// Members are asked at once, each for at most `MEMBER_STATUS_TIMEOUT_MS`.
async fn cluster_status(client: &ApiClient) -> anyhow::Result<Value> {
    fn figures(v: &Value) -> Value {
        serde_json::json!({
            "role": v["role"], "term": v["term"], "leader": v["leader"],
            "last_log_index": v["last_log_index"], "applied_index": v["applied_index"],
        })
    }
    let quick = Duration::from_millis(MEMBER_STATUS_TIMEOUT_MS);
    let asked_view = client.get("/api/v1/cluster").await?;
    let members = asked_view["members"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let asked = &asked_view;
    // Every member's own view, asked at once; the asked node's is in hand.
    let views = futures::future::join_all(members.iter().map(|m| async move {
        if m["id"] == asked["node_id"] {
            return Some(Ok(asked.clone()));
        }
        let url = m["api"].as_str().filter(|a| !a.is_empty())?;
        Some(client.at(url).get_within("/api/v1/cluster", quick).await)
    }))
    .await;
    let own: Vec<Value> = views
        .into_iter()
        .map(|v| match v {
            Some(Ok(v)) => v,
            Some(Err(e)) => serde_json::json!({ "error": format!("{e:#}") }),
            None => Value::Null,
        })
        .collect();
    // Lag and reachability are known on the leader: take the member table from its view.
    let mut view = asked_view.clone();
    let leader_view = own
        .iter()
        .find(|v| v["role"] == "Leader" && v["node_id"] != asked_view["node_id"]);
    if let Some(leader_view) = leader_view {
        view["members"] = leader_view["members"].clone();
        view["members_from"] = leader_view["node_id"].clone();
    }
    let by_id: std::collections::BTreeMap<String, &Value> = members
        .iter()
        .zip(&own)
        .map(|(m, v)| (m["id"].to_string(), v))
        .collect();
    if let Some(rows) = view["members"].as_array_mut() {
        for member in rows {
            member["self"] = match by_id.get(&member["id"].to_string()) {
                Some(v) if v.get("error").is_some() => (*v).clone(),
                Some(v) if !v.is_null() => figures(v),
                _ => Value::Null,
            };
        }
    }
    Ok(view)
}

async fn incidents_action(action: IncidentsCommand) -> anyhow::Result<ExitCode> {
    match action {
        IncidentsCommand::Ack {
            id,
            by,
            comment,
            api,
        } => {
            let by = by
                .or_else(|| std::env::var("USER").ok())
                .or_else(|| std::env::var("LOGNAME").ok())
                .filter(|b| !b.trim().is_empty())
                .unwrap_or_else(|| "cli".to_string());
            let body = serde_json::json!({ "by": by, "comment": comment.unwrap_or_default() });
            let v = api
                .client()?
                .post_json(&format!("/api/v1/incidents/{id}/ack"), &body)
                .await?;
            if api.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("incident {id} acknowledged by {by}");
            }
            Ok(ExitCode::SUCCESS)
        }
        IncidentsCommand::Show { id, api } => {
            let v = api
                .client()?
                .get(&format!("/api/v1/incidents/{id}"))
                .await?;
            print_or(&api, &v, print_incident)
        }
    }
}

/// Milliseconds as a short human duration: `850ms`, `42s`, `3m20s`, `2h05m`.
fn human_ms(v: &Value) -> String {
    let Some(ms) = v.as_u64() else {
        return "-".into();
    };
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{}s", ms / 1_000),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, ms / 1_000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

fn print_incident(i: &Value) {
    println!(
        "incident {} on {}: {} {}",
        s(&i["id"]),
        s(&i["check"]),
        s(&i["state"]),
        s(&i["severity"])
    );
    println!(
        "opened {} (detected in {}), duration {}",
        i["opened_at_ms"]
            .as_u64()
            .filter(|ms| *ms > 0)
            .map_or("-".into(), crate::wall_time::format_rfc3339),
        human_ms(&i["time_to_detect_ms"]),
        human_ms(&i["duration_ms"])
    );
    let notes = incident_notes(i);
    if !notes.is_empty() {
        println!("notes: {notes}");
    }
    for (what, key) in [("opened by", "opened_by"), ("closed by", "closed_by")] {
        for e in i[key].as_array().into_iter().flatten() {
            println!(
                "  {what} {}: {} {} x{} {:?}",
                s(&e["site"]),
                s(&e["last"]["status"]),
                s(&e["last"]["reason"]),
                s(&e["consecutive"]),
                e["last"]["message"].as_str().unwrap_or("")
            );
        }
    }
    if let Some(n) = i["timeline_dropped"].as_u64().filter(|n| *n > 0) {
        println!("({n} older timeline events dropped)");
    }
    let rows: Vec<Vec<String>> = i["timeline"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let at = e["at_ms"]
                        .as_u64()
                        .filter(|ms| *ms > 0)
                        .map_or("-".into(), crate::wall_time::format_rfc3339);
                    let (kind, detail) = match e["event"].as_object().and_then(|o| o.iter().next())
                    {
                        Some((kind, detail)) => (kind.clone(), timeline_detail(detail)),
                        None => (s(&e["event"]), String::new()),
                    };
                    vec![at, s(&e["index"]), kind, detail]
                })
                .collect()
        })
        .unwrap_or_default();
    table(&["AT", "INDEX", "EVENT", "DETAIL"], &rows);
}

/// A timeline event's fields as `key=value` pairs.
fn timeline_detail(detail: &Value) -> String {
    detail
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| match v {
                    Value::Object(inner) => match inner.iter().next() {
                        Some((tag, fields)) => format!("{k}={tag} {fields}"),
                        None => format!("{k}={{}}"),
                    },
                    other => format!("{k}={}", s(other)),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

async fn snapshot(command: SnapshotCommand) -> anyhow::Result<ExitCode> {
    use crate::snapshot_file::{self, SNAPSHOT_BYTES_MAX};
    match command {
        SnapshotCommand::Save { file, api } => {
            let bytes = api
                .client()?
                .download("/api/v1/snapshot", SNAPSHOT_BYTES_MAX)
                .await?;
            let snapshot = snapshot_file::decode(&bytes)
                .context("the node answered something that is not a snapshot")?;
            crate::data_dir::write_whole(&file, &bytes, 0o600)
                .with_context(|| format!("writing {}", file.display()))?;
            let b = &snapshot.backup;
            if api.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "file": file.display().to_string(),
                        "bytes": bytes.len(),
                        "node": snapshot.node_id,
                        "applied_index": snapshot.applied_index,
                        "checks": b.catalog.checks.len(),
                        "silences": b.silences.len(),
                        "incidents": b.incidents.len(),
                    })
                );
            } else {
                println!(
                    "saved {} ({} bytes): {} checks, {} notifiers, {} silences, {} incidents, from node {} at index {}",
                    file.display(),
                    bytes.len(),
                    b.catalog.checks.len(),
                    b.catalog.notifiers.len(),
                    b.silences.len(),
                    b.incidents.len(),
                    snapshot.node_id,
                    snapshot.applied_index
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SnapshotCommand::Restore { file, api } => {
            let meta =
                std::fs::metadata(&file).with_context(|| format!("reading {}", file.display()))?;
            if meta.len() > SNAPSHOT_BYTES_MAX as u64 {
                anyhow::bail!(
                    "{} is {} bytes; a snapshot is at most {SNAPSHOT_BYTES_MAX}",
                    file.display(),
                    meta.len()
                );
            }
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            snapshot_file::decode(&bytes).with_context(|| format!("{}", file.display()))?;
            let v = api
                .client()?
                .post_bytes("/api/v1/snapshot/restore", bytes)
                .await?;
            if api.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let r = &v["restored"];
                println!(
                    "restored {}: {} checks, {} notifiers, {} silences, {} incidents",
                    file.display(),
                    r["checks"],
                    r["notifiers"],
                    r["silences"],
                    r["incidents"]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn silence(command: SilenceCommand) -> anyhow::Result<ExitCode> {
    match command {
        SilenceCommand::Add {
            matcher,
            start,
            end,
            duration,
            reason,
            api,
        } => {
            // Check locally first so a typo is reported before anything is sent.
            consentry_cluster::model::Matcher::parse(&matcher).map_err(anyhow::Error::msg)?;
            for t in start.iter().chain(end.iter()) {
                crate::wall_time::parse_rfc3339(t).map_err(anyhow::Error::msg)?;
            }
            if let Some(d) = &duration {
                crate::duration::parse_ms(d).map_err(anyhow::Error::msg)?;
            }
            let body = serde_json::json!({
                "match": matcher, "reason": reason, "start": start, "end": end, "for": duration,
            });
            let v = api.client()?.post_json("/api/v1/silences", &body).await?;
            if api.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "silence {} added: {} from {} until {}",
                    s(&v["id"]),
                    s(&v["match"]),
                    s(&v["start"]),
                    s(&v["end"])
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SilenceCommand::List { api } => {
            let v = api.client()?.get("/api/v1/silences").await?;
            print_or(&api, &v, print_silences)
        }
        SilenceCommand::Remove { id, api } => {
            let v = api
                .client()?
                .delete(&format!("/api/v1/silences/{id}"))
                .await?;
            if api.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("silence {id} removed");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_silences(v: &Value) {
    let rows: Vec<Vec<String>> = v["silences"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    vec![
                        s(&x["id"]),
                        s(&x["match"]),
                        s(&x["state"]),
                        s(&x["start"]),
                        s(&x["end"]),
                        s(&x["checks"]),
                        s(&x["reason"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &["ID", "MATCH", "STATE", "START", "END", "CHECKS", "REASON"],
        &rows,
    );
}

/// Probes run at once by `consentry probe`.
const PROBE_ONCE_CONCURRENCY_MAX: usize = 64;

async fn probe_once(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    use futures::StreamExt;

    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let catalog = match checks_file::parse(&text) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems {
                eprintln!(
                    "{}:{}:{}: {}",
                    args.file.display(),
                    p.line,
                    p.column,
                    p.message
                );
            }
            return Ok(ExitCode::from(3));
        }
    };
    let unknown: Vec<&String> = args
        .checks
        .iter()
        .filter(|n| !catalog.checks.iter().any(|c| &c.name == *n))
        .collect();
    if !unknown.is_empty() {
        anyhow::bail!("no check named {unknown:?} in {}", args.file.display());
    }
    let selected: Vec<_> = catalog
        .checks
        .into_iter()
        .filter(|c| args.checks.is_empty() || args.checks.contains(&c.name))
        .collect();
    let plugin_dirs = if args.plugin_dirs.is_empty() {
        crate::config::default_plugin_dirs()
    } else {
        args.plugin_dirs
    };
    let prober = crate::probe::Prober::new(crate::probe::ProbeConfig {
        source_ip: args.source_ip,
        plugin_dirs,
    });
    let results: Vec<_> = futures::stream::iter(selected.iter().map(|c| prober.probe(c)))
        .buffered(PROBE_ONCE_CONCURRENCY_MAX)
        .collect()
        .await;
    let worst = results
        .iter()
        .map(|r| r.status)
        .max_by_key(|s| s.severity())
        .unwrap_or(consentry_cluster::model::Status::Ok);
    if args.json {
        let rows: Vec<Value> = selected
            .iter()
            .zip(&results)
            .map(|(c, r)| serde_json::json!({ "check": c.name, "kind": c.probe.kind(), "target": c.probe.target(), "result": r }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let rows: Vec<Vec<String>> = selected
            .iter()
            .zip(&results)
            .map(|(c, r)| {
                vec![
                    c.name.clone(),
                    c.probe.kind().to_string(),
                    r.status.to_string(),
                    r.reason.to_string(),
                    format!("{} ms", r.latency_ms),
                    r.message.clone(),
                ]
            })
            .collect();
        table(
            &["CHECK", "KIND", "STATUS", "REASON", "LATENCY", "MESSAGE"],
            &rows,
        );
    }
    Ok(ExitCode::from(worst.nagios_code()))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let q = crate::client::percent_encode;
    let client = args.api.client()?;
    let mut query = Vec::new();
    if let Some(v) = &args.from {
        query.push(format!("from={}", q(v)));
    }
    if let Some(v) = &args.to {
        query.push(format!("to={}", q(v)));
    }
    if args.consistent {
        query.push("consistent=true".into());
    }
    let format = if args.api.json {
        "json"
    } else {
        args.format.as_str()
    };
    if args.results {
        let [check] = args.check.as_slice() else {
            anyhow::bail!("--results needs exactly one --check NAME");
        };
        query.push(format!("check={}", q(check)));
        let path = format!("/api/v1/reports/results?{}", query.join("&"));
        // Up to 200,000 rows: the transfer timeout, not one API call's.
        let within = Duration::from_millis(crate::client::CLI_TRANSFER_TIMEOUT_MS);
        let truncated = if format == "json" {
            let v = client
                .get_within(&format!("{path}&format=json"), within)
                .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            v["truncated"].as_bool() == Some(true)
        } else {
            let (csv, headers) = client
                .get_text_within(&format!("{path}&format=csv"), within)
                .await?;
            print!("{csv}");
            headers
                .get("x-consentry-truncated")
                .is_some_and(|v| v == "true")
        };
        if truncated {
            eprintln!(
                "warning: more results exist than were returned (at most {} per request); \
                 narrow --from/--to",
                crate::history::store::RAW_READ_MAX
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(m) = &args.month {
        query.push(format!("month={}&tz={}", q(m), q(&args.tz)));
    }
    if !args.check.is_empty() {
        query.push(format!("check={}", q(&args.check.join(","))));
    }
    if let Some(l) = &args.label {
        query.push(format!("label={}", q(l)));
    }
    let path = format!("/api/v1/reports/availability?{}", query.join("&"));
    match format {
        "csv" => print!("{}", client.get_text(&format!("{path}&format=csv")).await?),
        "json" => {
            let v = client.get(&path).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        _ => print_report(&client.get(&path).await?),
    }
    Ok(ExitCode::SUCCESS)
}

/// `1d 02:03:04`, `02:03:04`.
fn hms(ms: u64) -> String {
    let secs = ms / 1000;
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

fn print_report(v: &Value) {
    let ms = |k: &str| v[k].as_u64().unwrap_or(0);
    println!(
        "Availability {} .. {}",
        crate::wall_time::format_rfc3339(ms("from_ms")),
        crate::wall_time::format_rfc3339(ms("until_ms"))
    );
    if ms("history_gap_entries") > 0 {
        println!(
            "note: this node's history misses {} log entries (purged before it recorded them); \
             per-site figures may be low",
            ms("history_gap_entries")
        );
    }
    match v["history_from_ms"].as_u64() {
        None => println!("note: this node's history has recorded nothing yet: no figures"),
        Some(h) if h > ms("from_ms") => println!(
            "note: this node's history begins at {}: time before it has no data and counts \
             as up",
            crate::wall_time::format_rfc3339(h)
        ),
        Some(_) => {}
    }
    println!(
        "{:<28} {:>10} {:>12} {:>12} {:>4} {:>9} {:>9}  per-site raw",
        "CHECK", "AVAIL %", "DOWNTIME", "MAINTENANCE", "INC", "MTTD", "MTTR"
    );
    for c in v["checks"].as_array().into_iter().flatten() {
        let pct = c["availability_percent"]
            .as_f64()
            .map_or("-".to_string(), |p| format!("{p:.3}"));
        let dur = |k: &str| c[k].as_u64().map_or("-".to_string(), hms);
        let sites: Vec<String> = c["sites"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|site| {
                format!(
                    "{} {}",
                    s(&site["site"]),
                    site["availability_percent"]
                        .as_f64()
                        .map_or("-".to_string(), |p| format!("{p:.2}%"))
                )
            })
            .collect();
        println!(
            "{:<28} {:>10} {:>12} {:>12} {:>4} {:>9} {:>9}  {}",
            s(&c["check"]),
            pct,
            dur("downtime_ms"),
            dur("maintenance_ms"),
            c["incidents"].as_u64().unwrap_or(0),
            dur("mean_time_to_detect_ms"),
            dur("mean_time_to_recover_ms"),
            sites.join(", ")
        );
    }
    let incidents = v["incidents"].as_array().map_or(&[][..], Vec::as_slice);
    if !incidents.is_empty() {
        println!();
        println!("Incidents in the period");
        println!(
            "{:>6} {:<28} {:<9} {:<21} {:<21} {:>12}",
            "ID", "CHECK", "SEVERITY", "STARTED", "RECOVERED", "OUTAGE"
        );
        for i in incidents {
            let start = i["start_ms"].as_u64().unwrap_or(0);
            let end = i["closed_at_ms"].as_u64();
            println!(
                "{:>6} {:<28} {:<9} {:<21} {:<21} {:>12}",
                s(&i["id"]),
                s(&i["check"]),
                s(&i["severity"]),
                crate::wall_time::format_rfc3339(start),
                end.map_or("open".to_string(), crate::wall_time::format_rfc3339),
                end.map_or("-".to_string(), |e| hms(e.saturating_sub(start))),
            );
        }
    }
}

fn print_or(api: &ApiArgs, v: &Value, table: fn(&Value)) -> anyhow::Result<ExitCode> {
    if api.json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        table(v);
    }
    Ok(ExitCode::SUCCESS)
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Prints rows with columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

fn print_status(v: &Value) {
    let sites: Vec<String> = v["probing_sites"]
        .as_array()
        .map(|a| a.iter().map(s).collect())
        .unwrap_or_default();
    let mut header = vec!["CHECK", "KIND", "VERDICT", "INCIDENT"];
    header.extend(sites.iter().map(String::as_str));
    let rows: Vec<Vec<String>> = v["checks"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .map(|c| {
                    let mut verdict = s(&c["verdict"]);
                    let confirming = c["confirming"].as_array().map_or(0, Vec::len);
                    if confirming > 0 {
                        verdict.push_str(&format!(" (confirming: {confirming} site(s) failing)"));
                    }
                    let mut row = vec![s(&c["name"]), s(&c["kind"]), verdict, s(&c["incident"])];
                    for site in &sites {
                        let cell = c["sites"]
                            .as_array()
                            .and_then(|a| a.iter().find(|x| x["site"] == site.as_str()))
                            .map(|x| {
                                let mut cell =
                                    format!("{} {}ms", s(&x["status"]), s(&x["latency_ms"]));
                                if x["reason"] != "none" {
                                    cell.push_str(&format!(" {}", s(&x["reason"])));
                                }
                                if x["path_suspect"] == true {
                                    cell.push_str(" (path suspect)");
                                }
                                if x["fresh"] == false {
                                    cell.push_str(" (stale)");
                                }
                                cell
                            })
                            .unwrap_or_else(|| "-".into());
                        row.push(cell);
                    }
                    row
                })
                .collect()
        })
        .unwrap_or_default();
    table(&header, &rows);
}

fn print_incidents(v: &Value) {
    let rows: Vec<Vec<String>> = v["incidents"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    let sites: Vec<String> = i["opened_by"]
                        .as_array()
                        .map(|e| e.iter().map(|x| s(&x["site"])).collect())
                        .unwrap_or_default();
                    let unconfirmed = i["unconfirmed"]
                        .as_array()
                        .map(|u| format!(" unconfirmed: {} of {} sites", s(&u[0]), s(&u[1])))
                        .unwrap_or_default();
                    vec![
                        s(&i["id"]),
                        s(&i["check"]),
                        s(&i["state"]),
                        s(&i["severity"]),
                        format!("{}{unconfirmed}", sites.join(",")),
                        human_ms(&i["time_to_detect_ms"]),
                        human_ms(&i["duration_ms"]),
                        incident_notes(i),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &[
            "ID", "CHECK", "STATE", "SEVERITY", "SITES", "DETECT", "DURATION", "NOTES",
        ],
        &rows,
    );
}

/// What held or marked an incident, for the NOTES column.
fn incident_notes(i: &Value) -> String {
    let mut notes = Vec::new();
    if let Some(id) = i["silenced_by"].as_u64() {
        notes.push(format!("silenced by {id}"));
    } else if i["silenced"] == true {
        notes.push("was silenced".to_string());
    }
    if let Some(parent) = i["suppressed_by"].as_str() {
        notes.push(format!("suppressed by {parent}"));
    }
    if let Some(by) = i["ack"]["by"].as_str() {
        notes.push(format!("acked by {by}"));
    }
    if i["state"] == "open" && i["notified"] == false {
        notes.push("not notified yet".to_string());
    }
    notes.join("; ")
}

fn print_cluster(v: &Value) {
    println!(
        "asked node {} ({}): {}; leader: {}; term {}",
        s(&v["node_id"]),
        s(&v["site"]),
        s(&v["role"]),
        s(&v["leader"]),
        s(&v["term"]),
    );
    let rows: Vec<Vec<String>> = v["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    let own = &m["self"];
                    let role = if m["leader"] == true {
                        format!("{} (leader)", s(&m["role"]))
                    } else {
                        s(&m["role"])
                    };
                    let reachable = match (&m["reachable"], own.get("error")) {
                        (Value::Bool(true), _) => "yes".to_string(),
                        (Value::Bool(false), _) => {
                            format!("NO ({} ago)", human_ms(&m["last_answer_ms"]))
                        }
                        (_, Some(_)) => "NO (api)".to_string(),
                        (_, None) if own.is_object() => "yes (api)".to_string(),
                        _ => "-".to_string(),
                    };
                    vec![
                        s(&m["id"]),
                        s(&m["site"]),
                        role,
                        if m["probe"] == true {
                            "yes".into()
                        } else {
                            "no (witness)".into()
                        },
                        reachable,
                        s(&own["last_log_index"]),
                        s(&own["applied_index"]),
                        s(&m["lag"]),
                        s(&own["leader"]),
                        s(&own["term"]),
                        s(&m["addr"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &[
            "ID",
            "SITE",
            "ROLE",
            "PROBES",
            "REACHABLE",
            "LAST LOG",
            "APPLIED",
            "LAG",
            "LEADER",
            "TERM",
            "RAFT ADDR",
        ],
        &rows,
    );
}

//! `consentry demo`: three real nodes (real raft over QUIC with mTLS, real sled files in a
//! temporary directory, real probes) on loopback, a target to break and heal, a webhook
//! receiver that prints what the leader sends, and the dashboard.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::body::Bytes;
use axum::routing::post;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::clock::SystemClock;
use crate::config::{Member, NodeConfig, TlsPaths};
use crate::demo_target::DemoTarget;
use crate::server::{self, RunningNode, Seams};

/// How long the demo waits for its cluster to elect a leader.
const LEADER_WAIT_MS: u64 = 20_000;

#[derive(Args, Clone)]
pub struct DemoArgs {
    /// API port of the first node (the dashboard); the others use the next two ports.
    #[arg(long, default_value_t = 7480)]
    pub port: u16,
    /// Keep the data here instead of a temporary directory.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
}

const SITES: [(u64, &str, bool); 3] = [
    (1, "site-a", true),
    (2, "site-b", true),
    (3, "site-c", false),
];

/// # Errors
/// When certificates cannot be written, ports cannot be bound, or the cluster does not form.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let tmp = tempfile::Builder::new()
        .prefix("consentry-demo-")
        .tempdir()?;
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let certs = dir.join("certs");
    if !certs.join("ca.pem").exists() {
        consentry_cluster::tls::generate(&certs, &[1, 2, 3], &[])?;
    }
    let cancel = CancellationToken::new();

    let (target, _target_task) =
        DemoTarget::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), cancel.clone())
            .await
            .context("starting the demo target")?;
    let hook = start_receiver(cancel.clone()).await?;

    let raft_ports = free_udp_ports(3)?;
    let api_ports: Vec<u16> = (0..3u16).map(|i| args.port.saturating_add(i)).collect();
    let members: Vec<Member> = SITES
        .iter()
        .enumerate()
        .map(|(i, (id, site, probe))| Member {
            id: *id,
            site: (*site).into(),
            addr: format!("127.0.0.1:{}", raft_ports[i]),
            probe: *probe,
            api: format!("http://127.0.0.1:{}", api_ports[i]),
        })
        .collect();
    let metrics = crate::cli::install_metrics();
    let mut nodes: Vec<RunningNode> = Vec::new();
    for (i, (id, site, probe)) in SITES.iter().enumerate() {
        let cfg = NodeConfig {
            node_id: *id,
            site: (*site).into(),
            data_dir: dir.join(format!("node-{id}")),
            listen_raft: SocketAddr::from((Ipv4Addr::LOCALHOST, raft_ports[i])),
            listen_api: SocketAddr::from((Ipv4Addr::LOCALHOST, api_ports[i])),
            probe: *probe,
            probe_source_ip: None,
            plugin_dirs: crate::config::default_plugin_dirs(),
            notify_exec_dirs: Vec::new(),
            tls: TlsPaths {
                ca: certs.join("ca.pem"),
                cert: certs.join(format!("node-{id}.pem")),
                key: certs.join(format!("node-{id}.key")),
            },
            token_file: certs.join("api.token"),
            initial_members: members.clone(),
            log: crate::config::LogPolicy::default(),
            history: crate::history::Retention::default(),
            metrics_checks_max: crate::config::METRICS_CHECKS_MAX_DEFAULT,
        };
        let seams = Seams {
            clock: SystemClock::shared(),
            metrics: metrics.clone(),
            demo: Some(target.clone()),
        };
        let node = server::start(&cfg, seams).await.with_context(|| {
            format!(
                "starting node {id} (API port {}; pick others with --port)",
                api_ports[i]
            )
        })?;
        nodes.push(node);
    }

    wait_for_leader(&nodes).await?;
    let token = std::fs::read_to_string(certs.join("api.token"))?
        .trim()
        .to_string();
    let checks = demo_checks(&target, &hook);
    let api = format!("http://127.0.0.1:{}", api_ports[0]);
    crate::client::ApiClient::new(&api, Some(token.clone()))?
        .put("/api/v1/checks", checks.clone())
        .await
        .context("applying the demo checks")?;
    std::fs::write(dir.join("checks.toml"), &checks)?;

    print_welcome(&api, &dir, &target, &token, args.data_dir.is_none());

    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { for n in &mut nodes { n.wait().await; } } => {}
    }
    println!("\nstopping the demo cluster...");
    cancel.cancel();
    for n in nodes {
        n.shutdown().await;
    }
    drop(tmp);
    Ok(ExitCode::SUCCESS)
}

fn print_welcome(api: &str, dir: &Path, target: &DemoTarget, token: &str, temporary: bool) {
    println!();
    println!(
        "consentry demo: 3 nodes on loopback (site-a, site-b, witness site-c), real raft over QUIC"
    );
    println!();
    println!("  dashboard      {api}/");
    println!(
        "  demo target    {}  (probed from site-a and site-b every 2s)",
        target.url()
    );
    println!(
        "  data           {}{}",
        dir.display(),
        if temporary { "  (deleted on exit)" } else { "" }
    );
    println!();
    println!("try:");
    println!("  break the target   curl -X POST {api}/api/v1/demo/break   (or the button on the dashboard)");
    println!("  heal it            curl -X POST {api}/api/v1/demo/heal");
    println!(
        "  CLI                consentry status; consentry incidents; consentry cluster status"
    );
    println!(
        "  as an operator     CONSENTRY_TOKEN={token} consentry apply -f {}",
        dir.join("checks.toml").display()
    );
    println!();
    println!("An incident opens when both sites agree (2 rounds each); the leader's webhook lands");
    println!("in this terminal as [notification] lines. Ctrl-C stops everything.");
    println!();
}

fn demo_checks(target: &DemoTarget, hook: &str) -> String {
    format!(
        r#"# The demo's checks (applied through raft like any `consentry apply`).
[defaults]
interval = "2s"
timeout = "1s"
confirm = {{ sites = 2, rounds = 2 }}
recover = {{ rounds = 2 }}
notify = ["terminal"]

[[check]]
name = "demo-web"
kind = "http"
url = "{url}"
expect_status = "200-399"
body_contains = "all good"
labels = {{ customer = "demo" }}

[[check]]
name = "demo-port"
kind = "tcp"
host = "127.0.0.1"
port = {port}

[[notifier]]
name = "terminal"
kind = "webhook"
url = "{hook}"
"#,
        url = target.url(),
        port = target.addr().port(),
    )
}

/// A webhook receiver that prints each notification.
async fn start_receiver(cancel: CancellationToken) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/hook",
        post(|body: Bytes| async move {
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(v) => println!(
                    "[notification] {} {} {} (sites: {}) from node {} dedup_key={}",
                    v["transition"].as_str().unwrap_or("?").to_uppercase(),
                    v["check"].as_str().unwrap_or("?"),
                    v["status"].as_str().unwrap_or("?"),
                    v["sites"]
                        .as_array()
                        .map(|a| a
                            .iter()
                            .filter_map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default(),
                    v["node_id"],
                    v["dedup_key"].as_str().unwrap_or("?"),
                ),
                Err(_) => println!("[notification] (unreadable body, {} bytes)", body.len()),
            }
            "ok"
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
    });
    Ok(format!("http://{addr}/hook"))
}

fn free_udp_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    // Hold all sockets until every port is chosen so the ports differ.
    let sockets: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<_, _>>()?;
    sockets.iter().map(|s| Ok(s.local_addr()?.port())).collect()
}

async fn wait_for_leader(nodes: &[RunningNode]) -> anyhow::Result<()> {
    let wait = async {
        loop {
            if nodes
                .iter()
                .any(|n| n.raft.metrics().borrow().current_leader.is_some())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    if tokio::time::timeout(Duration::from_millis(LEADER_WAIT_MS), wait)
        .await
        .is_err()
    {
        bail!("the demo cluster elected no leader within {LEADER_WAIT_MS} ms");
    }
    Ok(())
}

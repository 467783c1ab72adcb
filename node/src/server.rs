//! The composition root: wires one node from its config and the chosen seams (socket,
//! prober, clock, stores) and runs it until shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use consentry_cluster::state::ClusterState;
use consentry_cluster::tls::TlsMaterial;
use consentry_cluster::transport::{self, QuicNetworkFactory};
use consentry_cluster::types::{ClusterNode, Raft, TypeConfig};
use consentry_storage::StateReader;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use crate::api::{self, ApiState};
use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::demo_target::DemoTarget;
use crate::error::StartError;
use crate::leader::Leader;
use crate::notify::{Channels, Notify};
use crate::poller::Poller;
use crate::probe::{Probe, ProbeConfig, Prober};
use crate::writer::Writer;

/// Raft timing: a dead leader is replaced in about two seconds.
pub const HEARTBEAT_MS: u64 = 250;
pub const ELECTION_TIMEOUT_MS_MIN: u64 = 1_000;
pub const ELECTION_TIMEOUT_MS_MAX: u64 = 2_000;
/// How long shutdown waits for tasks before aborting them.
pub const SHUTDOWN_GRACE_MS: u64 = 3_000;
/// Longest API token accepted from the token file.
pub const API_TOKEN_BYTES_MAX: usize = 4_096;

/// Seams chosen by the caller.
pub struct Seams {
    pub clock: Arc<dyn Clock>,
    pub metrics: Option<PrometheusHandle>,
    pub demo: Option<DemoTarget>,
}

/// A running node.
pub struct RunningNode {
    pub node_id: u64,
    /// The API's bound address; `None` on a node assembled without an API.
    pub api_addr: Option<SocketAddr>,
    pub raft: Raft,
    pub state: StateReader<ClusterState>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    endpoint: quinn::Endpoint,
    dialer: transport::Dialer,
}

impl RunningNode {
    /// Stops the node: cancels every task, waits up to `SHUTDOWN_GRACE_MS`, stops raft.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), drain)
            .await
            .is_err()
        {
            warn!(
                node_id = self.node_id,
                "tasks did not stop in time; aborting them"
            );
            self.tasks.abort_all();
        }
        if let Err(e) = self.raft.shutdown().await {
            warn!(node_id = self.node_id, error = %e, "raft shutdown failed");
        }
        self.endpoint.close(0u32.into(), b"shutdown");
    }

    /// Waits until any task ends (which only happens on failure or shutdown).
    pub async fn wait(&mut self) {
        self.tasks.join_next().await;
    }
}

/// Starts one node.
///
/// # Errors
/// When certificates, token or storage cannot be loaded, the certificate names another node,
/// or an address cannot be bound. Each error says which file or address to fix.
pub async fn start(cfg: &NodeConfig, seams: Seams) -> Result<RunningNode, StartError> {
    let span = tracing::info_span!("node", node_id = cfg.node_id, site = %cfg.site);
    start_inner(cfg, seams).instrument(span).await
}

async fn start_inner(cfg: &NodeConfig, seams: Seams) -> Result<RunningNode, StartError> {
    let tls = TlsMaterial::load(&cfg.tls.ca, &cfg.tls.cert, &cfg.tls.key)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    let cert_id = tls.node_id().map_err(|e| StartError::Tls(e.to_string()))?;
    if cert_id != cfg.node_id {
        return Err(StartError::CertIdentity {
            cert: cfg.tls.cert.clone(),
            expected: cfg.node_id,
            found: cert_id,
        });
    }
    let token = read_token(&cfg.token_file)?;

    let ca_sha256 = tls.ca_fingerprint();
    let ca_sha256_at_start = ca_sha256.clone();
    crate::data_dir::claim(&cfg.data_dir, &ca_sha256, &cfg.tls.ca)?;
    let raft_dir = cfg.data_dir.join("raft");
    std::fs::create_dir_all(&raft_dir).map_err(|e| StartError::Storage {
        path: raft_dir.clone(),
        message: e.to_string(),
    })?;
    let (mut log_store, state_machine) =
        consentry_storage::open_sled::<TypeConfig, ClusterState>(&raft_dir).map_err(|e| {
            StartError::Storage {
                path: raft_dir.clone(),
                message: e.to_string(),
            }
        })?;
    let log_reader = openraft::storage::RaftLogStorage::get_log_reader(&mut log_store).await;
    let history_dir = cfg.data_dir.join("history");
    let history = Arc::new(
        crate::history::History::open(&history_dir, cfg.history).map_err(|e| {
            StartError::Storage {
                path: history_dir.clone(),
                message: e.to_string(),
            }
        })?,
    );

    let endpoint = transport::endpoint(cfg.listen_raft, &tls).map_err(|e| StartError::Bind {
        what: "raft (QUIC/UDP)",
        addr: cfg.listen_raft,
        message: e.to_string(),
    })?;
    if let Some(me) = cfg.initial_members.iter().find(|m| m.id == cfg.node_id) {
        if me.probe != cfg.probe || me.site != cfg.site {
            warn!(
                member_probe = me.probe,
                member_site = %me.site,
                "this node's [[initial_member]] entry disagrees with its own probe/site settings; \
                 the cluster counts sites from the members list, so fix the list on every node"
            );
        }
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .user_agent(concat!("consentry/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| StartError::Raft(format!("building the HTTP client failed: {e}")))?;
    let prober: Arc<dyn Probe> = Arc::new(Prober::new(ProbeConfig {
        source_ip: cfg.probe_source_ip,
        plugin_dirs: cfg.plugin_dirs.clone(),
    }));
    let (mut node, writer) = assemble(Parts {
        node_id: cfg.node_id,
        site: cfg.site.clone(),
        probe: cfg.probe,
        initial_members: cfg
            .initial_members
            .iter()
            .map(|m| {
                (
                    m.id,
                    ClusterNode {
                        addr: m.addr.clone(),
                        site: m.site.clone(),
                        probe: m.probe,
                        api: m.api.clone(),
                    },
                )
            })
            .collect(),
        endpoint,
        log_store,
        state: state_machine.reader(),
        state_machine,
        clock: seams.clock.clone(),
        prober,
        notify: Arc::new(Channels {
            http: http.clone(),
            exec_dirs: cfg.notify_exec_dirs.clone().into(),
        }),
        run_id: new_run_id(),
        log: cfg.log,
        exec_dirs: cfg.notify_exec_dirs.clone().into(),
        http: Some(http.clone()),
    })
    .await?;

    let bound = async {
        let listener = tokio::net::TcpListener::bind(cfg.listen_api).await?;
        let addr = listener.local_addr()?;
        Ok::<_, std::io::Error>((listener, addr))
    };
    let (listener, api_addr) = match bound.await {
        Ok(bound) => bound,
        Err(e) => {
            node.shutdown().await;
            return Err(StartError::Bind {
                what: "API (HTTP)",
                addr: cfg.listen_api,
                message: e.to_string(),
            });
        }
    };
    let router = api::router(Arc::new(ApiState {
        node_id: cfg.node_id,
        site: cfg.site.clone(),
        raft: node.raft.clone(),
        state: node.state.clone(),
        writer,
        token,
        metrics: seams.metrics,
        data_dir: cfg.data_dir.clone(),
        cluster_ca_sha256: ca_sha256,
        demo: seams.demo,
        history: Some(history.clone()),
        clock: seams.clock.clone(),
        metrics_checks_max: cfg.metrics_checks_max,
    }));
    let api_cancel = node.cancel.clone();
    node.tasks.spawn(
        async move {
            let serve =
                axum::serve(listener, router).with_graceful_shutdown(api_cancel.cancelled_owned());
            if let Err(e) = serve.await {
                warn!(error = %e, "API server failed");
            }
        }
        .instrument(tracing::Span::current()),
    );
    node.tasks.spawn(
        crate::history::follower::run(
            history,
            log_reader,
            node.state.clone(),
            seams.clock.clone(),
            node.cancel.clone(),
        )
        .instrument(tracing::Span::current()),
    );
    node.tasks.spawn(return_memory_after_snapshots(
        node.raft.clone(),
        node.cancel.clone(),
    ));
    node.tasks.spawn(
        reload_tls_on_sighup(
            TlsFiles {
                ca: cfg.tls.ca.clone(),
                cert: cfg.tls.cert.clone(),
                key: cfg.tls.key.clone(),
            },
            cfg.node_id,
            ca_sha256_at_start,
            node.dialer.clone(),
            node.cancel.clone(),
        )
        .instrument(tracing::Span::current()),
    );
    node.api_addr = Some(api_addr);
    info!(raft = %cfg.listen_raft, api = %api_addr, "node started");
    Ok(node)
}

/// The node's TLS files, read again on SIGHUP.
struct TlsFiles {
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

/// Reloads the node's certificate and key on SIGHUP (certificate rotation without a
/// restart): new QUIC connections, dialled or accepted, use them; open connections keep
/// theirs until they are replaced. A certificate that names another node or chains to
/// another CA is refused and the node keeps the one it has.
async fn reload_tls_on_sighup(
    files: TlsFiles,
    node_id: u64,
    ca_sha256: String,
    dialer: transport::Dialer,
    cancel: CancellationToken,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(hup) => hup,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; certificates reload only on restart");
            return;
        }
    };
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            got = hup.recv() => if got.is_none() { return },
        }
        match reload_tls(&files, node_id, &ca_sha256, &dialer) {
            Ok(cert_sha256) => info!(
                cert = %files.cert.display(),
                %cert_sha256,
                "SIGHUP: reloaded the TLS certificate; new connections use it"
            ),
            Err(e) => tracing::error!(
                error = %e,
                "SIGHUP: TLS certificate NOT reloaded; the node keeps its current one"
            ),
        }
    }
}

fn reload_tls(
    files: &TlsFiles,
    node_id: u64,
    started_with: &str,
    dialer: &transport::Dialer,
) -> Result<String, String> {
    let tls = TlsMaterial::load(&files.ca, &files.cert, &files.key).map_err(|e| e.to_string())?;
    let id = tls.node_id().map_err(|e| e.to_string())?;
    if id != node_id {
        return Err(format!(
            "{} names node {id}, but this is node {node_id}",
            files.cert.display()
        ));
    }
    if tls.ca_fingerprint() != started_with {
        return Err(format!(
            "{} is a different CA (SHA-256 {}) than the node runs with ({started_with}); a new CA \
             is a new cluster: restart the node to change it",
            files.ca.display(),
            tls.ca_fingerprint()
        ));
    }
    tls.verify_own_chain().map_err(|e| {
        format!(
            "{} does not chain to {}: {e}",
            files.cert.display(),
            files.ca.display()
        )
    })?;
    let (server, client) = transport::endpoint_configs(&tls).map_err(|e| e.to_string())?;
    dialer.endpoint().set_server_config(Some(server));
    dialer.set_client_config(client);
    Ok(tls.cert_fingerprint())
}

/// What [`assemble`] wires into a node: stores and an endpoint already opened, and the
/// seams. Production opens sled and a UDP socket ([`start`]); the simulation passes
/// in-memory stores and an endpoint over its simulated network.
pub struct Parts<LS, SM> {
    pub node_id: u64,
    pub site: String,
    /// False for a witness: it votes but never probes.
    pub probe: bool,
    /// The cluster formed on first start (ignored once raft state exists).
    pub initial_members: BTreeMap<u64, ClusterNode>,
    pub endpoint: quinn::Endpoint,
    pub log_store: LS,
    pub state_machine: SM,
    /// The reader of `state_machine`'s applied state.
    pub state: StateReader<ClusterState>,
    pub clock: Arc<dyn Clock>,
    pub prober: Arc<dyn Probe>,
    pub notify: Arc<dyn Notify>,
    /// Names this run of the node among tick proposers (random per start in production).
    pub run_id: u64,
    /// When the log is snapshotted and purged.
    pub log: crate::config::LogPolicy,
    /// Where `exec` recovery steps may run programs from.
    pub exec_dirs: Arc<[std::path::PathBuf]>,
    /// For `webhook` recovery steps (`None`: they fail, as in the simulation).
    pub http: Option<reqwest::Client>,
}

/// Wires raft, the QUIC server, the leader's ticker and effects executor, and (on probing
/// nodes) the poller; returns the running node (without an API) and the writer that
/// submits commands through the leader.
///
/// # Errors
/// [`StartError::Raft`] when raft cannot start on the given stores.
pub async fn assemble<LS, SM>(parts: Parts<LS, SM>) -> Result<(RunningNode, Writer), StartError>
where
    LS: openraft::storage::RaftLogStorage<TypeConfig>,
    SM: openraft::storage::RaftStateMachine<TypeConfig>,
{
    let Parts {
        node_id,
        site,
        probe,
        initial_members,
        endpoint,
        log_store,
        state_machine,
        state,
        clock,
        prober,
        notify,
        run_id,
        log,
        exec_dirs,
        http,
    } = parts;
    let config = openraft::Config {
        cluster_name: "consentry".into(),
        heartbeat_interval: HEARTBEAT_MS,
        election_timeout_min: ELECTION_TIMEOUT_MS_MIN,
        election_timeout_max: ELECTION_TIMEOUT_MS_MAX,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(log.snapshot_every),
        max_in_snapshot_log_to_keep: log.log_kept,
        snapshot_max_chunk_size: log.snapshot_chunk,
        ..Default::default()
    }
    .validate()
    .map_err(|e| StartError::Raft(e.to_string()))?;
    let dialer = transport::Dialer::new(endpoint.clone());
    let network = QuicNetworkFactory::new(dialer.clone(), node_id);
    let raft = Raft::new(node_id, Arc::new(config), network, log_store, state_machine)
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;

    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let span = tracing::Span::current();
    let writer = Writer::new(raft.clone(), dialer.clone(), node_id, clock.clone());
    tasks.spawn(
        writer
            .clone()
            .track_leadership(cancel.clone())
            .instrument(span.clone()),
    );
    let rpc = crate::writer::NodeRpc {
        raft: raft.clone(),
        writer: writer.clone(),
        state: state.clone(),
        self_id: node_id,
    };
    tasks.spawn(
        transport::serve(endpoint.clone(), Arc::new(rpc), cancel.clone()).instrument(span.clone()),
    );

    initialize(&raft, initial_members).await?;

    let leader = Arc::new(Leader {
        raft: raft.clone(),
        writer: writer.clone(),
        state: state.clone(),
        notify,
        self_id: node_id,
        clock: clock.clone(),
        run_id,
        exec_dirs: exec_dirs.clone(),
        http: http.clone(),
    });
    tasks.spawn(leader.run(cancel.clone()).instrument(span.clone()));

    if probe {
        let poller = Arc::new(Poller {
            prober,
            state: state.clone(),
            writer: writer.clone(),
            clock,
            node_id,
            site,
        });
        tasks.spawn(poller.run(cancel.clone()).instrument(span));
    } else {
        info!("probe = false: this node votes but never probes (witness)");
    }
    Ok((
        RunningNode {
            node_id,
            api_addr: None,
            raft,
            state,
            cancel,
            tasks,
            endpoint,
            dialer,
        },
        writer,
    ))
}

/// Forms the cluster from `members` on first start. Every member may call this with the
/// same list; openraft accepts it only on a node with empty state.
async fn initialize(raft: &Raft, members: BTreeMap<u64, ClusterNode>) -> Result<(), StartError> {
    if raft
        .is_initialized()
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?
    {
        debug!("raft state found on disk; not initializing");
        return Ok(());
    }
    if members.is_empty() {
        info!(
            "join = true: waiting for a running cluster to add this node (consentry cluster add)"
        );
        return Ok(());
    }
    let count = members.len();
    match raft.initialize(members).await {
        Ok(()) => info!(
            members = count,
            "initialized a new cluster from initial_member"
        ),
        Err(e) => {
            debug!(error = %e, "initialize refused (another member may have started the cluster)")
        }
    }
    Ok(())
}

/// glibc keeps what a snapshot build freed (a copy of the whole state and its encoding) in
/// its arenas. Handing it back after each snapshot keeps a node's resident memory near its
/// state's size instead of at its largest snapshot build.
async fn return_memory_after_snapshots(raft: Raft, cancel: CancellationToken) {
    let mut metrics = raft.metrics();
    let mut last = metrics.borrow().snapshot;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let now = metrics.borrow().snapshot;
        if now != last {
            last = now;
            // It walks the whole heap: not on a worker thread.
            let _ = tokio::task::spawn_blocking(release_free_heap).await;
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_heap() {
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_heap() {}

/// A random id for this run of the process (tick proposals name it).
#[allow(clippy::disallowed_methods)] // The composition root seeds randomness.
fn new_run_id() -> u64 {
    use rand::RngCore as _;
    rand::thread_rng().next_u64() | 1
}

fn read_token(path: &std::path::Path) -> Result<String, StartError> {
    let text = std::fs::read_to_string(path).map_err(|e| StartError::Token {
        path: path.to_path_buf(),
        source: e,
    })?;
    let token = text.trim().to_string();
    if token.is_empty() || token.len() > API_TOKEN_BYTES_MAX {
        return Err(StartError::Token {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the token must be 1 to {API_TOKEN_BYTES_MAX} bytes"),
            ),
        });
    }
    Ok(token)
}

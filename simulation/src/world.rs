//! One simulated run: three sites on turmoil, each a host running the real node (poller,
//! leader, openraft over QUIC, in-memory stores on a "disk" that survives crashes), the
//! simulated targets the pollers probe, and the driver that injects the schedule's faults
//! and watches every replica.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use consentry_cluster::command::Command;
use consentry_cluster::model::{
    CheckSpec, Incident, NotifierSpec, NotifyIntent, ProbeResult, ProbeSpec, Reason, Status,
};
use consentry_cluster::state::ClusterState;
use consentry_cluster::tls::TlsMaterial;
use consentry_cluster::types::{ClusterNode, Raft};
use consentry_node::clock::Clock;
use consentry_node::notify::Notify;
use consentry_node::probe::Probe;
use consentry_node::server::{assemble, Parts};
use consentry_storage::{MemDisk, StateReader};
use futures::future::BoxFuture;

use crate::schedule::{Schedule, SITES, TARGETS};
use crate::trace::Trace;

/// The UDP port every node's QUIC endpoint listens on.
pub const RAFT_PORT: u16 = 7000;
/// How much simulated time one turmoil step advances.
pub const TICK_MS: u64 = 10;
/// How often the driver records every replica's applied index and state hash.
pub const CHECKPOINT_MS: u64 = 60_000;
/// Replicas' states are hashed and compared at applied indexes divisible by this.
pub const HASH_EVERY: u64 = 8;
/// The simulated Unix time the run starts at (2026-01-01T00:00:00Z).
pub const EPOCH_MS: u64 = 1_767_225_600_000;

/// What one run varies besides its seed.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    pub seed: u64,
    /// Simulated time with faults; a quiet tail follows.
    pub faulty_ms: u64,
    /// Overrides `confirm.sites` of every check: `Some(1)` is the deliberately broken rule
    /// (any one site opens an incident) that the oracle must catch.
    pub confirm_sites: Option<u32>,
}

/// One probe a poller made, as the baselines see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawResult {
    /// When the probe finished.
    pub ms: u64,
    pub site: usize,
    pub target: usize,
    pub ok: bool,
}

/// One notification the leader delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub ms: u64,
    pub node: u64,
    pub intent_id: u64,
    pub incident_id: u64,
    pub dedup_key: String,
    pub transition: String,
    pub check: String,
}

/// An incident as the replicas showed it, timed by the simulation's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenIncident {
    pub id: u64,
    pub target: usize,
    /// First moment any replica had applied the opening.
    pub opened_ms: u64,
    pub closed_ms: Option<u64>,
    pub unconfirmed: bool,
    pub sites: Vec<String>,
}

/// One replica at the end of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalReplica {
    pub node: u64,
    pub running: bool,
    pub applied: u64,
    /// Targets with an open incident.
    pub open: BTreeSet<usize>,
    /// Notification intents without an outcome.
    pub unsettled: usize,
}

/// Everything the oracle and the baselines judge.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub config: RunConfig,
    pub schedule: Schedule,
    pub incidents: Vec<SeenIncident>,
    pub deliveries: Vec<DeliveryRecord>,
    pub raw: Vec<RawResult>,
    /// Per node (index = site): when it was down (crashes and leader kills as executed).
    pub down: Vec<Vec<crate::schedule::Window>>,
    /// Two replicas with different states at the same applied index.
    pub divergences: Vec<String>,
    pub final_replicas: Vec<FinalReplica>,
    pub leader_changes: u64,
    pub catalog_applied_ms: Option<u64>,
    pub trace: Trace,
}

fn node_name(site: usize) -> String {
    format!("node-{}", site + 1)
}

fn node_id(site: usize) -> u64 {
    site as u64 + 1
}

/// The check name of a target.
pub fn check_name(target: usize) -> String {
    format!("t{}", target + 1)
}

/// The target a check name or host names (`t3`, `t3.sim.invalid`).
pub fn target_of(name: &str) -> Option<usize> {
    let digits = name.strip_prefix('t')?.split('.').next()?;
    let n: usize = digits.parse().ok()?;
    (1..=TARGETS).contains(&n).then(|| n - 1)
}

/// The simulated catalog, in the checks.toml users write, through the real parser.
pub fn catalog_toml(confirm_sites: Option<u32>) -> String {
    let sites = confirm_sites.unwrap_or(2);
    let mut text = format!(
        "[defaults]\ninterval = \"{}s\"\ntimeout = \"{}s\"\n\
         confirm = {{ sites = {sites}, rounds = {} }}\nrecover = {{ rounds = {} }}\n\
         notify = [\"ops\"]\n\n\
         [[notifier]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"http://receiver.sim.invalid/hook\"\n",
        crate::schedule::INTERVAL_MS / 1000,
        crate::schedule::TIMEOUT_MS / 1000,
        crate::schedule::CONFIRM_ROUNDS,
        crate::schedule::RECOVER_ROUNDS,
    );
    for t in 0..TARGETS {
        text.push_str(&format!(
            "\n[[check]]\nname = \"{0}\"\nkind = \"tcp\"\nhost = \"{0}.sim.invalid\"\nport = 80\n",
            check_name(t)
        ));
    }
    text
}

/// Simulated milliseconds since the run started (inside a host or the driver).
fn sim_ms() -> u64 {
    turmoil::sim_elapsed().map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A site's clock: tokio's simulated clock for intervals, a drifted wall clock for display.
struct SimClock {
    start: tokio::time::Instant,
    drift: crate::schedule::Drift,
}

impl SimClock {
    // The simulated runtime's clock: turmoil drives it.
    #[allow(clippy::disallowed_methods)]
    fn new(drift: crate::schedule::Drift) -> Self {
        Self {
            start: tokio::time::Instant::now(),
            drift,
        }
    }
}

impl Clock for SimClock {
    fn wall_ms(&self) -> u64 {
        let elapsed = i128::from(sim_ms());
        let drifted = elapsed + elapsed * i128::from(self.drift.ppm) / 1_000_000;
        let wall = i128::from(EPOCH_MS) + i128::from(self.drift.offset_ms) + drifted;
        u64::try_from(wall).unwrap_or(0)
    }

    fn monotonic_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// The simulated targets as one site sees them: the answer depends on the ground truth
/// (is the target up) and the path (can this site reach it). An unreachable target
/// swallows the probe until its timeout; a down target refuses at once.
struct SimProber {
    site: usize,
    schedule: Arc<Schedule>,
    raw: Arc<Mutex<Vec<RawResult>>>,
}

impl SimProber {
    /// Round-trip time to a target: fixed per site and target, 5 to 84 ms.
    fn rtt_ms(&self, target: usize) -> u64 {
        5 + (self.site as u64 * 31 + target as u64 * 17) % 80
    }

    async fn run(&self, check: &CheckSpec) -> ProbeResult {
        let target = match &check.probe {
            ProbeSpec::Tcp(spec) => target_of(&spec.host),
            _ => None,
        };
        let Some(target) = target else {
            return ProbeResult::new(
                &check.name,
                Status::Unknown,
                Reason::Internal,
                0,
                "not a simulated target",
            );
        };
        let started = sim_ms();
        let reachable = self.schedule.path_ok(self.site, target, started);
        let up = self.schedule.target_up(target, started);
        let rtt = self.rtt_ms(target);
        let (wait, status, reason, message) = if !reachable {
            (
                check.timeout_ms,
                Status::Critical,
                Reason::Timeout,
                "timed out",
            )
        } else if !up {
            (rtt, Status::Critical, Reason::Refused, "connection refused")
        } else {
            (rtt, Status::Ok, Reason::None, "connected")
        };
        tokio::time::sleep(Duration::from_millis(wait)).await;
        if let Ok(mut raw) = self.raw.lock() {
            raw.push(RawResult {
                ms: sim_ms(),
                site: self.site,
                target,
                ok: status == Status::Ok,
            });
        }
        ProbeResult::new(&check.name, status, reason, wait, message)
    }
}

impl Probe for SimProber {
    fn probe<'a>(&'a self, check: &'a CheckSpec) -> BoxFuture<'a, ProbeResult> {
        Box::pin(self.run(check))
    }
}

/// The notification receiver: records every delivery, always accepts.
struct Recorder {
    deliveries: Arc<Mutex<Vec<DeliveryRecord>>>,
}

impl Notify for Recorder {
    fn deliver<'a>(
        &'a self,
        _spec: &'a NotifierSpec,
        intent: &'a NotifyIntent,
        _incident: &'a Incident,
        _check: Option<&'a CheckSpec>,
        node_id: u64,
        _wall_ms: u64,
    ) -> BoxFuture<'a, Result<(), String>> {
        let record = DeliveryRecord {
            ms: sim_ms(),
            node: node_id,
            intent_id: intent.id,
            incident_id: intent.incident_id,
            dedup_key: intent.dedup_key.clone(),
            transition: intent.transition.as_str().to_string(),
            check: intent.check.clone(),
        };
        if let Ok(mut d) = self.deliveries.lock() {
            d.push(record);
        }
        Box::pin(async { Ok(()) })
    }
}

/// What every node's software shares with the driver.
struct Shared {
    seed: u64,
    schedule: Arc<Schedule>,
    certs: PathBuf,
    catalog: consentry_cluster::model::Catalog,
    raw: Arc<Mutex<Vec<RawResult>>>,
    deliveries: Arc<Mutex<Vec<DeliveryRecord>>>,
    /// Node starts so far (names each start's tick proposals).
    starts: std::sync::atomic::AtomicU64,
    /// Each running node's raft handle and state, published when it starts.
    nodes: Mutex<BTreeMap<u64, (Raft, StateReader<ClusterState>)>>,
}

/// One node's software: what a restart runs again on the same "disk".
async fn node_software(shared: Arc<Shared>, site: usize, disk: MemDisk) -> anyhow::Result<()> {
    let id = node_id(site);
    let dir = &shared.certs;
    let tls = TlsMaterial::load(
        &dir.join("ca.pem"),
        &dir.join(format!("node-{id}.pem")),
        &dir.join(format!("node-{id}.key")),
    )?;
    let mut quic_seed = [0u8; 32];
    quic_seed[..8].copy_from_slice(&shared.seed.to_le_bytes());
    quic_seed[8..16].copy_from_slice(&id.to_le_bytes());
    let endpoint = crate::net::endpoint(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), RAFT_PORT),
        &tls,
        quic_seed,
    )
    .await?;
    let (log_store, state_machine) = consentry_storage::open_mem_disk(&disk)?;
    let members: BTreeMap<u64, ClusterNode> = (0..SITES.len())
        .map(|s| {
            (
                node_id(s),
                ClusterNode {
                    addr: SocketAddr::new(turmoil::lookup(node_name(s)), RAFT_PORT).to_string(),
                    site: SITES[s].to_string(),
                    probe: true,
                    api: String::new(),
                },
            )
        })
        .collect();
    let state = state_machine.reader();
    let (mut node, writer) = assemble(Parts {
        node_id: id,
        site: SITES[site].to_string(),
        probe: true,
        initial_members: members,
        endpoint,
        log_store,
        state_machine,
        state: state.clone(),
        clock: Arc::new(SimClock::new(shared.schedule.drift[site])),
        prober: Arc::new(SimProber {
            site,
            schedule: shared.schedule.clone(),
            raw: shared.raw.clone(),
        }),
        notify: Arc::new(Recorder {
            deliveries: shared.deliveries.clone(),
        }),
        run_id: {
            // Deterministic per node and start: the starts of a run follow from its seed.
            let starts = shared
                .starts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (id << 32) | (starts + 1)
        },
        log: consentry_node::config::LogPolicy::default(),
        exec_dirs: Arc::from(Vec::new()),
        http: None,
    })
    .await?;
    if let Ok(mut nodes) = shared.nodes.lock() {
        nodes.insert(id, (node.raft.clone(), state.clone()));
    }
    // The operator applies the catalog once, through whichever node is up (here: any node
    // that finds none applied yet, like `consentry apply` retried against another node).
    let catalog = shared.catalog.clone();
    tokio::spawn(async move {
        while state.read(|s| s.catalog_index) == 0 {
            let _ = writer.write(Command::ApplyCatalog(catalog.clone())).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    node.wait().await;
    anyhow::bail!("node {id}: a task ended while the node was running")
}

/// Certificates for the simulated cluster, made once per process (key generation is the
/// slowest part of starting a run, and the certificates never reach the trace).
fn certs() -> anyhow::Result<PathBuf> {
    static DIR: std::sync::OnceLock<Result<tempfile::TempDir, String>> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ids: Vec<u64> = (0..SITES.len()).map(node_id).collect();
        consentry_cluster::tls::generate(dir.path(), &ids, &[]).map_err(|e| e.to_string())?;
        Ok(dir)
    });
    match dir {
        Ok(dir) => Ok(dir.path().to_path_buf()),
        Err(e) => anyhow::bail!("generating the simulation's certificates failed: {e}"),
    }
}

/// Runs one simulation to the end of its quiet tail.
///
/// # Errors
/// When the simulation cannot be built (certificates, catalog) or a node's software fails
/// (a task of the real node code ended or panicked): that is a finding, not noise.
pub fn run(config: &RunConfig) -> anyhow::Result<RunRecord> {
    let schedule = Arc::new(Schedule::generate(config.seed, config.faulty_ms));
    let catalog = consentry_node::checks_file::parse(&catalog_toml(config.confirm_sites))
        .map_err(|problems| anyhow::anyhow!("the simulated catalog is invalid: {problems:?}"))?;
    let shared = Arc::new(Shared {
        seed: config.seed,
        schedule: schedule.clone(),
        certs: certs()?,
        catalog,
        raw: Arc::default(),
        deliveries: Arc::default(),
        starts: std::sync::atomic::AtomicU64::new(0),
        nodes: Mutex::default(),
    });

    consentry_cluster::runtime::seed_thread_rng(config.seed);
    let net = schedule.net;
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_millis(schedule.end_ms() + 60_000))
        .tick_duration(Duration::from_millis(TICK_MS))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(net.max_latency_ms.max(2)))
        .fail_rate(net.fail_rate)
        .repair_rate(net.repair_rate)
        .rng_seed(config.seed)
        .build();
    for site in 0..SITES.len() {
        let shared = shared.clone();
        let disk = MemDisk::default();
        sim.host(node_name(site), move || {
            let (shared, disk) = (shared.clone(), disk.clone());
            async move {
                node_software(shared, site, disk)
                    .await
                    .map_err(|e| -> Box<dyn std::error::Error> { e.to_string().into() })
            }
        });
    }

    let mut driver = Driver::new(config.clone(), schedule.clone(), shared.clone());
    let outcome = driver.drive(&mut sim);
    consentry_cluster::runtime::unseed_thread_rng();
    outcome?;
    Ok(driver.finish())
}

/// A fault the driver acts on at a given instant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Crash(usize),
    Restart(usize),
    Isolate(usize),
    Heal(usize),
    KillLeader { down_ms: u64 },
}

struct Driver {
    config: RunConfig,
    schedule: Arc<Schedule>,
    shared: Arc<Shared>,
    trace: Trace,
    /// Pending actions by time (stable order within one instant).
    actions: BTreeMap<u64, Vec<Action>>,
    /// World faults to log as they start and end.
    marks: BTreeMap<u64, Vec<String>>,
    running: Vec<bool>,
    /// Overlapping crash windows per node (a node restarts when its last one ends).
    crash_depth: Vec<u32>,
    isolation_depth: Vec<u32>,
    down_since: Vec<Option<u64>>,
    down: Vec<Vec<crate::schedule::Window>>,
    /// Per node: the state's last applied index the driver looked at.
    seen_index: Vec<u64>,
    incidents: BTreeMap<u64, SeenIncident>,
    /// Applied index -> (state hash, node that showed it first).
    hashes: BTreeMap<u64, (u64, u64)>,
    divergences: Vec<String>,
    leader: Option<(u64, u64)>,
    leader_changes: u64,
    catalog_applied_ms: Option<u64>,
    deliveries_seen: usize,
    /// The node that made each delivery, in order.
    delivered_by: Vec<u64>,
    /// The last delivery ordinal a scheduled kill was handled for.
    delivery_kills_done: u64,
}

impl Driver {
    fn new(config: RunConfig, schedule: Arc<Schedule>, shared: Arc<Shared>) -> Self {
        let mut actions: BTreeMap<u64, Vec<Action>> = BTreeMap::new();
        let mut marks: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        let mut at = |ms: u64, a: Action| actions.entry(ms).or_default().push(a);
        for c in &schedule.crashes {
            at(c.window.from, Action::Crash(c.site));
            at(c.window.to, Action::Restart(c.site));
        }
        for p in &schedule.partitions {
            at(p.window.from, Action::Isolate(p.site));
            at(p.window.to, Action::Heal(p.site));
        }
        for k in &schedule.leader_kills {
            at(k.at, Action::KillLeader { down_ms: k.down_ms });
        }
        let mut mark = |ms: u64, text: String| marks.entry(ms).or_default().push(text);
        for o in &schedule.outages {
            let t = check_name(o.target);
            mark(o.window.from, format!("truth: {t} down"));
            mark(o.window.to, format!("truth: {t} up"));
        }
        for p in &schedule.paths {
            let what = p.target.map_or("carrier".to_string(), check_name);
            mark(
                p.window.from,
                format!("path: {} -> {what} cut", SITES[p.site]),
            );
            mark(
                p.window.to,
                format!("path: {} -> {what} restored", SITES[p.site]),
            );
        }
        let n = SITES.len();
        Self {
            config,
            schedule,
            shared,
            trace: Trace::default(),
            actions,
            marks,
            running: vec![true; n],
            crash_depth: vec![0; n],
            isolation_depth: vec![0; n],
            down_since: vec![None; n],
            down: vec![Vec::new(); n],
            seen_index: vec![0; n],
            incidents: BTreeMap::new(),
            hashes: BTreeMap::new(),
            divergences: Vec::new(),
            leader: None,
            leader_changes: 0,
            catalog_applied_ms: None,
            deliveries_seen: 0,
            delivered_by: Vec::new(),
            delivery_kills_done: 0,
        }
    }

    fn drive(&mut self, sim: &mut turmoil::Sim<'_>) -> anyhow::Result<()> {
        let end = self.schedule.end_ms();
        let mut next_checkpoint = CHECKPOINT_MS;
        loop {
            let now = u64::try_from(sim.elapsed().as_millis()).unwrap_or(u64::MAX);
            if now >= end {
                break;
            }
            self.act(sim, now);
            sim.step()
                .map_err(|e| anyhow::anyhow!("simulation failed at {}: {e}", fmt_ms(now)))?;
            let now = u64::try_from(sim.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.observe(now, now >= next_checkpoint);
            self.kill_mid_delivery(sim, now);
            if now >= next_checkpoint {
                next_checkpoint += CHECKPOINT_MS;
            }
        }
        Ok(())
    }

    fn act(&mut self, sim: &mut turmoil::Sim<'_>, now: u64) {
        let due: Vec<u64> = self.marks.range(..=now).map(|(k, _)| *k).collect();
        for k in due {
            for text in self.marks.remove(&k).unwrap_or_default() {
                self.trace.push(k, text);
            }
        }
        let due: Vec<u64> = self.actions.range(..=now).map(|(k, _)| *k).collect();
        for k in due {
            for action in self.actions.remove(&k).unwrap_or_default() {
                self.apply(sim, now, action);
            }
        }
    }

    fn apply(&mut self, sim: &mut turmoil::Sim<'_>, now: u64, action: Action) {
        match action {
            Action::Crash(site) => {
                self.crash_depth[site] += 1;
                if self.running[site] {
                    self.crash(sim, now, site, "crash");
                }
            }
            Action::Restart(site) => {
                self.crash_depth[site] = self.crash_depth[site].saturating_sub(1);
                if self.crash_depth[site] == 0 && !self.running[site] {
                    self.restart(sim, now, site);
                }
            }
            Action::Isolate(site) => {
                self.isolation_depth[site] += 1;
                if self.isolation_depth[site] == 1 {
                    for other in (0..SITES.len()).filter(|&o| o != site) {
                        sim.partition(node_name(site), node_name(other));
                    }
                    self.trace
                        .push(now, format!("partition: {} cut off", SITES[site]));
                }
            }
            Action::Heal(site) => {
                self.isolation_depth[site] = self.isolation_depth[site].saturating_sub(1);
                if self.isolation_depth[site] == 0 {
                    for other in (0..SITES.len()).filter(|&o| o != site) {
                        // Stay cut from a peer that is itself still isolated.
                        if self.isolation_depth[other] == 0 {
                            sim.repair(node_name(site), node_name(other));
                        }
                    }
                    self.trace
                        .push(now, format!("partition: {} healed", SITES[site]));
                }
            }
            Action::KillLeader { down_ms } => {
                let Some((leader, _)) = self.leader else {
                    self.trace
                        .push(now, "leader kill: no leader to kill".into());
                    return;
                };
                let site = usize::try_from(leader - 1).unwrap_or(0);
                if !self.running[site] {
                    return;
                }
                self.crash(sim, now, site, "leader kill");
                self.crash_depth[site] += 1;
                self.actions
                    .entry(now + down_ms)
                    .or_default()
                    .push(Action::Restart(site));
            }
        }
    }

    /// Kills a node in the step in which it made a scheduled delivery. Its outcome cannot
    /// have committed yet (followers receive the append in a later step), so the next
    /// leader finds the intent unsettled and sends it again.
    fn kill_mid_delivery(&mut self, sim: &mut turmoil::Sim<'_>, now: u64) {
        let due: Vec<(u64, u64)> = self
            .schedule
            .delivery_kills
            .iter()
            .filter(|k| {
                k.delivery > self.delivery_kills_done && k.delivery <= self.deliveries_seen as u64
            })
            .map(|k| (k.delivery, k.down_ms))
            .collect();
        for (delivery, down_ms) in due {
            self.delivery_kills_done = delivery;
            let node = self
                .delivered_by
                .get(usize::try_from(delivery - 1).unwrap_or(usize::MAX))
                .copied();
            let Some(site) = node.and_then(|n| usize::try_from(n.checked_sub(1)?).ok()) else {
                continue;
            };
            if !self.running[site] {
                continue;
            }
            self.crash(sim, now, site, &format!("kill after delivery {delivery}"));
            self.crash_depth[site] += 1;
            self.actions
                .entry(now + down_ms)
                .or_default()
                .push(Action::Restart(site));
        }
    }

    fn crash(&mut self, sim: &mut turmoil::Sim<'_>, now: u64, site: usize, why: &str) {
        sim.crash(node_name(site));
        self.running[site] = false;
        self.down_since[site] = Some(now);
        if let Ok(mut nodes) = self.shared.nodes.lock() {
            nodes.remove(&node_id(site));
        }
        self.trace
            .push(now, format!("{why}: {} stopped", node_name(site)));
    }

    fn restart(&mut self, sim: &mut turmoil::Sim<'_>, now: u64, site: usize) {
        sim.bounce(node_name(site));
        self.running[site] = true;
        if let Some(from) = self.down_since[site].take() {
            self.down[site].push(crate::schedule::Window { from, to: now });
        }
        self.trace
            .push(now, format!("restart: {} started", node_name(site)));
    }

    /// Looks at every running replica: incidents, leader, and (at checkpoints) the state
    /// hash; compares states at equal applied indexes.
    fn observe(&mut self, now: u64, checkpoint: bool) {
        let nodes: Vec<(u64, Raft, StateReader<ClusterState>)> = match self.shared.nodes.lock() {
            Ok(nodes) => nodes
                .iter()
                .map(|(id, (raft, state))| (*id, raft.clone(), state.clone()))
                .collect(),
            Err(_) => return,
        };
        // Leader: the highest term any running node has seen a leader in.
        let mut best: Option<(u64, u64)> = None;
        for (_, raft, _) in &nodes {
            let m = raft.metrics().borrow().clone();
            if let Some(leader) = m.current_leader {
                if best.is_none_or(|(term, _)| m.current_term > term) {
                    best = Some((m.current_term, leader));
                }
            }
        }
        if let Some((term, leader)) = best {
            if self.leader.map(|(l, t)| (t, l)) != Some((term, leader))
                && self.leader.is_none_or(|(_, t)| term > t)
            {
                self.leader = Some((leader, term));
                self.leader_changes += 1;
                self.trace
                    .push(now, format!("raft: node-{leader} leads term {term}"));
            }
        }
        for (id, _, state) in &nodes {
            let site = usize::try_from(id - 1).unwrap_or(0);
            let index = state.read(|s| s.last_index);
            if index == self.seen_index[site] && !checkpoint {
                continue;
            }
            self.seen_index[site] = index;
            // Hashing the whole state costs as much as the state is large: sample every
            // HASH_EVERY-th index (replicas meet at the same sampled indexes) and checkpoints.
            let sampled = checkpoint || index % HASH_EVERY == 0;
            // Incidents not yet seen, or seen open: the closed ones are settled.
            let low = self
                .incidents
                .values()
                .find(|i| i.closed_ms.is_none())
                .map_or_else(
                    || self.incidents.keys().next_back().map_or(0, |k| k + 1),
                    |i| i.id,
                );
            let (hash, catalog, incidents) = state.read(|s| {
                (
                    if sampled { state_hash(s) } else { 0 },
                    s.catalog_index,
                    s.incidents
                        .range(low..)
                        .map(|(_, i)| i)
                        .map(|i| {
                            (
                                i.id,
                                i.check.clone(),
                                i.closed_index.is_some(),
                                i.unconfirmed.is_some(),
                                i.opened_by.iter().map(|e| e.site.clone()).collect(),
                            )
                        })
                        .collect::<Vec<(u64, String, bool, bool, Vec<String>)>>(),
                )
            });
            match self.hashes.get(&index) {
                _ if !sampled => {}
                Some(&(h, other)) if h != hash && self.divergences.len() < 16 => {
                    self.divergences.push(format!(
                        "at applied index {index}: node-{other} has state {h:016x}, node-{id} has {hash:016x}"
                    ));
                }
                Some(_) => {}
                None => {
                    self.hashes.insert(index, (hash, *id));
                }
            }
            if checkpoint {
                self.trace.push(
                    now,
                    format!("checkpoint: node-{id} applied {index} state {hash:016x}"),
                );
            }
            if catalog != 0 && self.catalog_applied_ms.is_none() {
                self.catalog_applied_ms = Some(now);
                self.trace.push(now, "catalog applied".into());
            }
            for (iid, check, closed, unconfirmed, sites) in incidents {
                let target = target_of(&check).unwrap_or(usize::MAX);
                let seen = self.incidents.entry(iid).or_insert_with(|| {
                    self.trace.push(
                        now,
                        format!(
                            "incident {iid} opened: {check} (sites {}){}",
                            sites.join(","),
                            if unconfirmed { " unconfirmed" } else { "" }
                        ),
                    );
                    SeenIncident {
                        id: iid,
                        target,
                        opened_ms: now,
                        closed_ms: None,
                        unconfirmed,
                        sites,
                    }
                });
                if closed && seen.closed_ms.is_none() {
                    seen.closed_ms = Some(now);
                    self.trace
                        .push(now, format!("incident {iid} closed: {check}"));
                }
            }
        }
        let deliveries = match self.shared.deliveries.lock() {
            Ok(d) => d[self.deliveries_seen..].to_vec(),
            Err(_) => Vec::new(),
        };
        self.deliveries_seen += deliveries.len();
        self.delivered_by.extend(deliveries.iter().map(|d| d.node));
        for d in deliveries {
            self.trace.push(
                d.ms,
                format!(
                    "notify: node-{} delivered intent {} ({}) {}",
                    d.node, d.intent_id, d.transition, d.dedup_key
                ),
            );
        }
    }

    fn finish(mut self) -> RunRecord {
        self.trace.sort();
        let end = self.schedule.end_ms();
        let mut down = self.down;
        for (site, since) in self.down_since.iter().enumerate() {
            if let Some(from) = since {
                down[site].push(crate::schedule::Window {
                    from: *from,
                    to: end,
                });
            }
        }
        let nodes = self
            .shared
            .nodes
            .lock()
            .map(|n| n.clone())
            .unwrap_or_default();
        let final_replicas = (0..SITES.len())
            .map(|site| {
                let id = node_id(site);
                match nodes.get(&id) {
                    Some((_, state)) => state.read(|s| FinalReplica {
                        node: id,
                        running: self.running[site],
                        applied: s.last_index,
                        open: s
                            .incidents
                            .values()
                            .filter(|i| i.closed_index.is_none())
                            .filter_map(|i| target_of(&i.check))
                            .collect(),
                        unsettled: s.pending_intents().count(),
                    }),
                    None => FinalReplica {
                        node: id,
                        running: false,
                        applied: 0,
                        open: BTreeSet::new(),
                        unsettled: 0,
                    },
                }
            })
            .collect();
        let raw = self
            .shared
            .raw
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        let deliveries = self
            .shared
            .deliveries
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default();
        RunRecord {
            config: self.config,
            schedule: (*self.schedule).clone(),
            incidents: self.incidents.into_values().collect(),
            deliveries,
            raw,
            down,
            divergences: self.divergences,
            final_replicas,
            leader_changes: self.leader_changes,
            catalog_applied_ms: self.catalog_applied_ms,
            trace: self.trace,
        }
    }
}

/// A replica's state, hashed: the codec's bytes through SHA-256, first 8 bytes. A state the
/// codec refuses (over its size limit) hashes to 0, which shows as a divergence against
/// any replica that still encodes.
fn state_hash(state: &ClusterState) -> u64 {
    let Ok(bytes) = consentry_storage::codec::encode(state) else {
        return 0;
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(first)
}

/// `h:mm:ss.mmm` of a simulated instant.
pub fn fmt_ms(ms: u64) -> String {
    format!(
        "{}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip_through_names() {
        assert_eq!(target_of(&check_name(0)), Some(0));
        assert_eq!(target_of("t8.sim.invalid"), Some(7));
        assert_eq!(target_of("t9"), None);
        assert_eq!(target_of("x1"), None);
    }

    #[test]
    fn the_simulated_catalog_parses_with_the_broken_rule_too() {
        for sites in [None, Some(1)] {
            let catalog = consentry_node::checks_file::parse(&catalog_toml(sites))
                .unwrap_or_else(|p| panic!("{p:?}"));
            assert_eq!(catalog.checks.len(), TARGETS);
            assert_eq!(catalog.checks[0].confirm.sites, Some(sites.unwrap_or(2)));
        }
    }
}

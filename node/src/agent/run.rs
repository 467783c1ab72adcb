//! `consentry agent`: reports the host's resources to the cluster and runs the recovery
//! actions its own `agent.toml` allows, each at most once.
//!
//! The agent connects to the first cluster node of its list that answers (QUIC, its own
//! certificate) and moves to the next one when a request fails. Reports are queued and
//! removed only once a node says they are committed, so a node that dies loses none of them.
//! A report left unsent for a minute is folded into the next one ([`fold_old_reports`]): the
//! cluster counts it as a gap from the skipped sequence number, its log matches are carried
//! on, and old measurements are never judged as fresh. Dispatches are polled from whichever node it is connected
//! to; the [`Ledger`] on disk keeps the newest fencing token seen and each step's outcome, so
//! a repeated or re-dispatched step is answered from it and never runs twice.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use consentry_cluster::agent::{AgentDispatch, AgentRequest, AgentResponse};
use consentry_cluster::model::{
    ActionOutcome, FencingToken, HostReport, StepOutcome, REPORT_LOG_LINES_MAX,
};
use consentry_cluster::tls::TlsMaterial;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::host::{HostCollector, LogWatch};
use crate::clock::Clock;

/// Unsent reports kept: enough for a node failing over, not hours of them.
pub const REPORTS_QUEUED_MAX: usize = 64;
/// An unsent report older than this is folded into the next ([`fold_old_reports`]).
pub const REPORT_QUEUED_AGE_MAX_MS: u64 = 60_000;
/// How long one report or outcome request may take.
pub const CALL_TIMEOUT_MS: u64 = 5_000;
/// How long a poll waits at the node for a dispatch.
pub const POLL_WAIT_MS: u32 = 10_000;
/// Time to connect to one node.
pub const CONNECT_TIMEOUT_MS: u64 = 3_000;
/// Steps whose outcomes the ledger keeps (the oldest reported ones go first).
pub const LEDGER_STEPS_MAX: usize = 1_000;
/// Largest ledger file read: [`LEDGER_STEPS_MAX`] entries with their bounded outputs fit
/// with room to spare.
pub const LEDGER_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Actions and nodes one agent.toml may list.
pub const ACTIONS_MAX: usize = 64;
/// Longest `agent.toml` read.
pub const AGENT_CONFIG_BYTES_MAX: u64 = 256 * 1024;

/// The allowed actions by name: argv and the most time each may take.
pub type Actions = BTreeMap<String, (Vec<String>, u64)>;

/// `agent.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Must match the certificate's `agent-<name>.consentry` (default: taken from it).
    pub name: Option<String>,
    /// Where the ledger lives.
    pub state_dir: PathBuf,
    /// Report interval (default 10s).
    #[serde(default = "default_interval")]
    pub interval: String,
    /// Mount points to report (default: every local filesystem).
    pub mounts: Option<Vec<PathBuf>>,
    pub tls: AgentTls,
    pub node: Vec<AgentNode>,
    #[serde(default)]
    pub log: Vec<AgentLog>,
    #[serde(default)]
    pub action: Vec<AgentAction>,
}

fn default_interval() -> String {
    "10s".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A cluster node to report to: its id (its certificate is `node-<id>.consentry`) and raft
/// address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentNode {
    pub id: u64,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentLog {
    pub path: PathBuf,
    pub pattern: String,
}

/// An action the cluster may ask for by name: a program and its arguments, no shell.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentAction {
    pub name: String,
    pub argv: Vec<String>,
    /// At most this long, whatever the runbook says (default 60s).
    pub timeout: Option<String>,
}

impl AgentConfig {
    /// Reads and checks `agent.toml`; paths in it are relative to its directory.
    ///
    /// # Errors
    /// A sentence naming the file and what is wrong.
    pub fn load(path: &Path) -> Result<(Self, u64, Actions), String> {
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
        if meta.len() > AGENT_CONFIG_BYTES_MAX {
            return Err(format!(
                "{shown}: larger than {AGENT_CONFIG_BYTES_MAX} bytes"
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
        let mut cfg: AgentConfig = toml::from_str(&text).map_err(|e| format!("{shown}: {e}"))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut cfg.state_dir,
            &mut cfg.tls.ca,
            &mut cfg.tls.cert,
            &mut cfg.tls.key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        let interval_ms = crate::duration::parse_ms(&cfg.interval)
            .map_err(|e| format!("{shown}: interval: {e}"))?;
        if !(1_000..=3_600_000).contains(&interval_ms) {
            return Err(format!("{shown}: interval must be 1s to 1h"));
        }
        if cfg.node.is_empty() || cfg.node.len() > ACTIONS_MAX {
            return Err(format!(
                "{shown}: list 1 to {ACTIONS_MAX} [[node]] tables (id, addr)"
            ));
        }
        if cfg.action.len() > ACTIONS_MAX {
            return Err(format!("{shown}: at most {ACTIONS_MAX} [[action]] tables"));
        }
        let mut actions = BTreeMap::new();
        for a in &cfg.action {
            if !consentry_cluster::model::valid_action_name(&a.name) {
                return Err(format!(
                    "{shown}: action {:?}: use 1 to {} characters from a-z, A-Z, 0-9, '-', '_', '.'",
                    a.name,
                    consentry_cluster::model::ACTION_NAME_BYTES_MAX
                ));
            }
            if a.argv.is_empty() || !a.argv[0].starts_with('/') {
                return Err(format!(
                    "{shown}: action {:?}: argv must start with an absolute path (no shell is used)",
                    a.name
                ));
            }
            let timeout_ms = match &a.timeout {
                Some(t) => crate::duration::parse_ms(t)
                    .map_err(|e| format!("{shown}: action {:?}: timeout: {e}", a.name))?,
                None => 60_000,
            };
            if actions
                .insert(a.name.clone(), (a.argv.clone(), timeout_ms))
                .is_some()
            {
                return Err(format!("{shown}: action {:?} is listed twice", a.name));
            }
        }
        Ok((cfg, interval_ms, actions))
    }
}

/// One step as the agent knows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub token: FencingToken,
    pub action: String,
    /// `None` while it runs (or if the agent stopped while it ran).
    pub outcome: Option<ActionOutcome>,
    /// Whether a node said the outcome is committed.
    pub reported: bool,
}

/// The agent's memory across restarts: the newest fencing token it has seen and every
/// step's outcome, keyed `intent/attempt`. Written atomically (temp file, fsync, rename).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Ledger {
    pub newest: FencingToken,
    pub steps: BTreeMap<String, LedgerEntry>,
    #[serde(skip)]
    path: PathBuf,
}

impl Ledger {
    /// Opens the ledger in `dir` (created if missing). Steps that were running when the
    /// agent stopped are settled as interrupted: they are never run again.
    ///
    /// # Errors
    /// When the directory or the file cannot be read or written, or the file is corrupt.
    pub fn open(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join("ledger.json");
        let read = std::fs::File::open(&path).and_then(|f| {
            use std::io::Read;
            let mut bytes = Vec::new();
            f.take(LEDGER_BYTES_MAX + 1).read_to_end(&mut bytes)?;
            Ok(bytes)
        });
        let mut ledger = match read {
            Ok(bytes) if bytes.len() as u64 > LEDGER_BYTES_MAX => {
                return Err(format!(
                    "{}: larger than {LEDGER_BYTES_MAX} bytes; not this agent's ledger?",
                    path.display()
                ))
            }
            Ok(bytes) => serde_json::from_slice::<Ledger>(&bytes)
                .map_err(|e| format!("{}: corrupt ledger: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ledger::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        ledger.path = path;
        let mut changed = false;
        for (key, e) in &mut ledger.steps {
            if e.outcome.is_none() {
                warn!(step = %key, action = %e.action, "the agent stopped while this action ran; it is not run again");
                e.outcome = Some(ActionOutcome::Interrupted {
                    reason: "the agent stopped while the action ran (a reboot ends this way)"
                        .into(),
                });
                changed = true;
            }
        }
        if changed {
            ledger.save()?;
        }
        Ok(ledger)
    }

    /// Writes the ledger durably.
    ///
    /// # Errors
    /// When writing, syncing or renaming fails.
    pub fn save(&mut self) -> Result<(), String> {
        while self.steps.len() > LEDGER_STEPS_MAX {
            let oldest = self
                .steps
                .iter()
                .filter(|(_, e)| e.reported)
                .min_by_key(|(_, e)| e.token)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.steps.remove(&k),
                None => break,
            };
        }
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        let tmp = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| format!("writing {} failed: {e}", self.path.display()))
    }
}

/// What to do with one dispatch, decided against the ledger (and recorded in it).
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Run it now (recorded as started).
    Run { argv: Vec<String>, timeout_ms: u64 },
    /// Answer with this outcome without running anything.
    Answer(ActionOutcome),
    /// It is running in this process: nothing to do yet.
    Running,
    /// Its token is older than the newest this agent has seen (from a node that is behind):
    /// ignored and not reported, since the cluster accepts an outcome whose token is not
    /// newer than its own and would settle the current attempt with it. The up-to-date
    /// dispatch, or the step's deadline, settles the step. Carries why, for the log.
    Stale(String),
}

/// Decides a dispatch: a step already seen is answered from the ledger; an older token than
/// the newest seen is ignored as stale; an action not in `agent.toml` is refused; otherwise
/// it runs, recorded as started (durably) first.
///
/// # Errors
/// When the ledger cannot be saved: then nothing runs.
pub fn decide(
    ledger: &mut Ledger,
    actions: &Actions,
    d: &AgentDispatch,
) -> Result<Decision, String> {
    let key = format!("{}/{}", d.intent_id, d.attempt);
    if let Some(e) = ledger.steps.get_mut(&key) {
        if d.token > e.token {
            e.token = d.token;
        }
        return Ok(match &e.outcome {
            Some(o) => Decision::Answer(o.clone()),
            None => Decision::Running,
        });
    }
    if d.token < ledger.newest {
        return Ok(Decision::Stale(format!(
            "fencing token {} is older than {}, the newest this agent has seen",
            d.token, ledger.newest
        )));
    }
    ledger.newest = d.token;
    let (decision, outcome) = match actions.get(&d.action) {
        None => {
            let refused = ActionOutcome::Refused {
                reason: format!("no action {:?} in this agent's agent.toml", d.action),
            };
            (Decision::Answer(refused.clone()), Some(refused))
        }
        Some((argv, max_ms)) => (
            Decision::Run {
                argv: argv.clone(),
                timeout_ms: d.timeout_ms.min(*max_ms).max(1),
            },
            None,
        ),
    };
    ledger.steps.insert(
        key,
        LedgerEntry {
            token: d.token,
            action: d.action.clone(),
            outcome,
            reported: false,
        },
    );
    ledger.save()?;
    Ok(decision)
}

/// The connection to one node, replaced by the next node's when a request fails.
struct Link {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    nodes: Vec<AgentNode>,
    current: Mutex<(usize, Option<quinn::Connection>)>,
}

impl Link {
    async fn connection(&self) -> Option<(u64, quinn::Connection)> {
        let mut cur = self.current.lock().await;
        if let Some(c) = &cur.1 {
            if c.close_reason().is_none() {
                return Some((self.nodes[cur.0].id, c.clone()));
            }
        }
        for _ in 0..self.nodes.len() {
            let node = self.nodes[cur.0].clone();
            let name = consentry_cluster::tls::node_server_name(node.id);
            let connecting = self
                .endpoint
                .connect_with(self.client.clone(), node.addr, &name);
            let connected = match connecting {
                Ok(c) => tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), c)
                    .await
                    .map_err(|_| "timed out".to_string())
                    .and_then(|r| r.map_err(|e| e.to_string())),
                Err(e) => Err(e.to_string()),
            };
            match connected {
                Ok(c) => {
                    info!(node = node.id, addr = %node.addr, "agent connected");
                    cur.1 = Some(c.clone());
                    return Some((node.id, c));
                }
                Err(e) => {
                    warn!(node = node.id, addr = %node.addr, error = %e, "connecting to node failed; trying the next");
                    cur.0 = (cur.0 + 1) % self.nodes.len();
                }
            }
        }
        None
    }

    /// Gives up on `node`'s connection: the next request goes to the next node.
    async fn fail_over(&self, node: u64, why: &str) {
        let mut cur = self.current.lock().await;
        if self.nodes[cur.0].id != node {
            return; // Another task moved on already.
        }
        warn!(node, error = why, "request failed; moving to the next node");
        if let Some(c) = cur.1.take() {
            c.close(0u32.into(), b"failing over");
        }
        cur.0 = (cur.0 + 1) % self.nodes.len();
    }

    async fn call(&self, request: &AgentRequest, timeout_ms: u64) -> Option<AgentResponse> {
        let (node, conn) = self.connection().await?;
        match consentry_cluster::agent::call(&conn, node, request, timeout_ms).await {
            Ok(AgentResponse::Refused(why)) => {
                self.fail_over(node, &why).await;
                None
            }
            Ok(r) => Some(r),
            Err(e) => {
                self.fail_over(node, &e.to_string()).await;
                None
            }
        }
    }
}

/// Runs the agent until `cancel`.
///
/// # Errors
/// A configuration, certificate or ledger problem, as a sentence.
pub async fn run(config: &Path, cancel: CancellationToken) -> Result<(), String> {
    let (cfg, interval_ms, actions) = AgentConfig::load(config)?;
    let tls =
        TlsMaterial::load(&cfg.tls.ca, &cfg.tls.cert, &cfg.tls.key).map_err(|e| e.to_string())?;
    let name = tls
        .agent_name()
        .map_err(|e| format!("{}: {e}", cfg.tls.cert.display()))?;
    if cfg.name.as_ref().is_some_and(|n| *n != name) {
        return Err(format!(
            "{}: name {:?} differs from the certificate's agent {name:?}",
            config.display(),
            cfg.name.as_deref().unwrap_or_default()
        ));
    }
    let logs = cfg
        .log
        .iter()
        .map(|l| LogWatch {
            path: l.path.clone(),
            pattern: l.pattern.clone(),
        })
        .collect();
    let mut collector = HostCollector::new(
        PathBuf::from("/proc"),
        PathBuf::from("/var/run/utmp"),
        cfg.mounts.clone(),
        logs,
    )
    .map_err(|e| format!("{}: {e}", config.display()))?;
    let ledger = Arc::new(Mutex::new(Ledger::open(&cfg.state_dir)?));
    let mut client = tls.agent_client_config().map_err(|e| e.to_string())?;
    client.transport_config(Arc::new(consentry_cluster::transport::transport_config()));
    let bind: SocketAddr = if cfg.node[0].addr.is_ipv6() {
        "[::]:0".parse().map_err(|e| format!("{e}"))?
    } else {
        "0.0.0.0:0".parse().map_err(|e| format!("{e}"))?
    };
    let endpoint = quinn::Endpoint::client(bind).map_err(|e| format!("binding UDP failed: {e}"))?;
    let link = Arc::new(Link {
        endpoint,
        client,
        nodes: cfg.node.clone(),
        current: Mutex::new((0, None)),
    });
    let clock = crate::clock::SystemClock::shared();
    info!(agent = %name, nodes = cfg.node.len(), actions = actions.len(), interval_ms, "agent started");

    let poller = tokio::spawn(poll_loop(
        link.clone(),
        ledger.clone(),
        Arc::new(actions),
        clock.clone(),
        cancel.clone(),
    ));
    let run_id: u64 = rand::random();
    let mut seq = 0u64;
    let mut queue: VecDeque<HostReport> = VecDeque::new();
    let mut every = tokio::time::interval(Duration::from_millis(interval_ms));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut collect_due = true;
    loop {
        if collect_due {
            let (c, mut report) = tokio::task::spawn_blocking(move || {
                let r = collector.collect();
                (collector, r)
            })
            .await
            .map_err(|e| format!("collecting host metrics failed: {e}"))?;
            collector = c;
            seq += 1;
            report.run = run_id;
            report.seq = seq;
            report.at_ms = clock.wall_ms();
            report.interval_ms = interval_ms;
            queue.push_back(report);
            fold_old_reports(&mut queue, clock.wall_ms());
        }
        while let Some(report) = queue.front() {
            match link
                .call(&AgentRequest::Report(report.clone()), CALL_TIMEOUT_MS)
                .await
            {
                Some(AgentResponse::Committed) => {
                    queue.pop_front();
                }
                _ => break,
            }
        }
        let retry = if queue.is_empty() {
            Duration::from_millis(interval_ms)
        } else {
            Duration::from_millis(1_000.min(interval_ms))
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = every.tick() => collect_due = true,
            _ = tokio::time::sleep(retry), if !queue.is_empty() => collect_due = false,
        }
    }
    poller.abort();
    Ok(())
}

/// Folds unsent reports older than [`REPORT_QUEUED_AGE_MAX_MS`] at `now_ms`, or past
/// [`REPORTS_QUEUED_MAX`], into the report after them ([`merge_pending`]): a node failing
/// over loses no report, and after a long outage the cluster gets current figures (the
/// folded ones count as gaps), never old ones judged as fresh. The newest is always kept.
pub fn fold_old_reports(queue: &mut VecDeque<HostReport>, now_ms: u64) {
    while queue.len() > 1
        && (queue.len() > REPORTS_QUEUED_MAX
            || queue
                .front()
                .is_some_and(|r| now_ms.saturating_sub(r.at_ms) > REPORT_QUEUED_AGE_MAX_MS))
    {
        let older = queue.pop_front();
        if let Some(next) = queue.pop_front() {
            debug!(
                seq = older.as_ref().map_or(0, |r| r.seq),
                "no node took an old report; folded into the next"
            );
            queue.push_front(merge_pending(older, next));
        }
    }
}

/// The report to send once `newer` is collected while `older` is still unsent: `newer`, with
/// the log matches of `older` added in (they happened, and are counted only once a report
/// carries them). `older` itself is never sent: the cluster counts it as a gap from the
/// sequence numbers `newer` skips, and does not judge stale measurements as fresh.
pub fn merge_pending(older: Option<HostReport>, mut newer: HostReport) -> HostReport {
    let Some(older) = older else {
        return newer;
    };
    for log in &mut newer.logs {
        if let Some(old) = older
            .logs
            .iter()
            .find(|o| o.path == log.path && o.pattern == log.pattern)
        {
            log.matches = old.matches.saturating_add(log.matches);
            let mut lines = old.lines.clone();
            lines.append(&mut log.lines);
            lines.truncate(REPORT_LOG_LINES_MAX);
            log.lines = lines;
        }
    }
    newer
}

/// Polls for dispatches, runs what the ledger allows, and reports every outcome until a node
/// says it is committed.
async fn poll_loop(
    link: Arc<Link>,
    ledger: Arc<Mutex<Ledger>>,
    actions: Arc<Actions>,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    let mut running = tokio::task::JoinSet::new();
    loop {
        if cancel.is_cancelled() {
            return;
        }
        while running.try_join_next().is_some() {}
        report_outcomes(&link, &ledger).await;
        let wait = u64::from(POLL_WAIT_MS) + CALL_TIMEOUT_MS;
        let dispatches = tokio::select! {
            _ = cancel.cancelled() => return,
            r = link.call(&AgentRequest::Poll { wait_ms: POLL_WAIT_MS }, wait) => r,
        };
        let Some(AgentResponse::Dispatches(dispatches)) = dispatches else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        for d in dispatches {
            let decision = {
                let mut l = ledger.lock().await;
                decide(&mut l, &actions, &d)
            };
            match decision {
                Ok(Decision::Run { argv, timeout_ms }) => {
                    info!(step = d.intent_id, attempt = d.attempt, action = %d.action, token = %d.token, check = %d.check, "running recovery action");
                    let (ledger, link, clock) = (ledger.clone(), link.clone(), clock.clone());
                    running.spawn(async move {
                        let env = [
                            ("CONSENTRY_CHECK", d.check.clone()),
                            ("CONSENTRY_INCIDENT", d.incident_id.to_string()),
                            ("CONSENTRY_TOKEN", d.token.to_string()),
                        ];
                        let outcome = super::action::run(&argv, &env, timeout_ms, &*clock).await;
                        info!(
                            step = d.intent_id,
                            attempt = d.attempt,
                            outcome = outcome.as_str(),
                            "recovery action ended"
                        );
                        {
                            let mut l = ledger.lock().await;
                            if let Some(e) =
                                l.steps.get_mut(&format!("{}/{}", d.intent_id, d.attempt))
                            {
                                e.outcome = Some(outcome);
                            }
                            if let Err(e) = l.save() {
                                warn!(error = %e, "saving the ledger failed");
                            }
                        }
                        report_outcomes(&link, &ledger).await;
                    });
                }
                Ok(Decision::Answer(outcome)) => {
                    if matches!(outcome, ActionOutcome::Refused { .. }) {
                        warn!(step = d.intent_id, action = %d.action, token = %d.token, outcome = %outcome.summary(), "refused a dispatch");
                    }
                    let o = StepOutcome {
                        intent_id: d.intent_id,
                        attempt: d.attempt,
                        token: d.token,
                        by: String::new(),
                        outcome,
                    };
                    if let Some(AgentResponse::Committed) =
                        link.call(&AgentRequest::Outcome(o), CALL_TIMEOUT_MS).await
                    {
                        let mut l = ledger.lock().await;
                        if let Some(e) = l.steps.get_mut(&format!("{}/{}", d.intent_id, d.attempt))
                        {
                            e.reported = true;
                        }
                        let _ = l.save();
                    }
                }
                Ok(Decision::Running) => {}
                Ok(Decision::Stale(why)) => {
                    warn!(step = d.intent_id, attempt = d.attempt, action = %d.action, token = %d.token, reason = %why, "ignored a stale dispatch (not reported)");
                }
                Err(e) => {
                    warn!(step = d.intent_id, error = %e, "cannot record the dispatch; not running it")
                }
            }
        }
    }
}

/// Sends every outcome no node has confirmed yet.
async fn report_outcomes(link: &Link, ledger: &Mutex<Ledger>) {
    let pending: Vec<(String, StepOutcome)> = {
        let l = ledger.lock().await;
        l.steps
            .iter()
            .filter(|(_, e)| !e.reported)
            .filter_map(|(k, e)| {
                let (id, attempt) = k.split_once('/')?;
                Some((
                    k.clone(),
                    StepOutcome {
                        intent_id: id.parse().ok()?,
                        attempt: attempt.parse().ok()?,
                        token: e.token,
                        by: String::new(),
                        outcome: e.outcome.clone()?,
                    },
                ))
            })
            .collect()
    };
    for (key, o) in pending {
        if let Some(AgentResponse::Committed) =
            link.call(&AgentRequest::Outcome(o), CALL_TIMEOUT_MS).await
        {
            let mut l = ledger.lock().await;
            if let Some(e) = l.steps.get_mut(&key) {
                e.reported = true;
            }
            if let Err(e) = l.save() {
                warn!(error = %e, "saving the ledger failed");
            }
        } else {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dispatch(
        intent_id: u64,
        attempt: u32,
        term: u64,
        index: u64,
        action: &str,
    ) -> AgentDispatch {
        AgentDispatch {
            intent_id,
            attempt,
            token: FencingToken { term, index },
            action: action.into(),
            timeout_ms: 5_000,
            check: "web".into(),
            incident_id: 1,
        }
    }

    #[test]
    fn the_ledger_runs_each_step_once_and_refuses_old_tokens_and_unknown_actions() {
        let dir = tempfile::tempdir().unwrap();
        let actions = BTreeMap::from([(
            "restart".to_string(),
            (vec!["/bin/true".to_string()], 60_000),
        )]);
        let mut l = Ledger::open(dir.path()).unwrap();
        let d = dispatch(7, 1, 3, 100, "restart");
        assert!(matches!(
            decide(&mut l, &actions, &d).unwrap(),
            Decision::Run {
                timeout_ms: 5_000,
                ..
            }
        ));
        assert_eq!(decide(&mut l, &actions, &d).unwrap(), Decision::Running);
        // The agent stops while it runs: reopened, the step is interrupted, never rerun.
        drop(l);
        let mut l = Ledger::open(dir.path()).unwrap();
        let again = dispatch(7, 1, 4, 140, "restart");
        assert!(matches!(
            decide(&mut l, &actions, &again).unwrap(),
            Decision::Answer(ActionOutcome::Interrupted { .. })
        ));
        let old = dispatch(8, 1, 2, 90, "restart");
        match decide(&mut l, &actions, &old).unwrap() {
            Decision::Stale(reason) => {
                assert!(reason.contains("older"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !l.steps.contains_key("8/1"),
            "a stale dispatch is not recorded"
        );
        let unknown = dispatch(9, 1, 4, 150, "format-disk");
        assert!(matches!(
            decide(&mut l, &actions, &unknown).unwrap(),
            Decision::Answer(ActionOutcome::Refused { .. })
        ));
        assert_eq!(
            l.newest,
            FencingToken {
                term: 4,
                index: 150
            }
        );
        drop(l);
        let l = Ledger::open(dir.path()).unwrap();
        assert_eq!(
            l.newest,
            FencingToken {
                term: 4,
                index: 150
            },
            "the newest token is durable"
        );
        assert_eq!(l.steps.len(), 2);
    }

    #[test]
    fn only_the_newest_unsent_report_is_kept_with_the_log_matches_added_up() {
        use consentry_cluster::model::LogMatches;
        let report = |seq: u64, cpu: f64, matches: u32, lines: &[&str]| HostReport {
            run: 9,
            seq,
            cpu_pct: cpu,
            logs: vec![LogMatches {
                path: "/var/log/messages".into(),
                pattern: "Error".into(),
                matches,
                lines: lines.iter().map(ToString::to_string).collect(),
                error: None,
            }],
            ..HostReport::default()
        };
        let first = report(1, 10.0, 0, &[]);
        assert_eq!(merge_pending(None, first.clone()), first);
        let mut pending = first;
        for (seq, cpu, matches, lines) in [
            (2, 20.0, 2, &["e1", "e2"][..]),
            (3, 30.0, 0, &[][..]),
            (4, 40.0, 5, &["e3", "e4", "e5", "e6", "e7"][..]),
        ] {
            pending = merge_pending(Some(pending), report(seq, cpu, matches, lines));
        }
        // Only the newest is sent: its seq skips 1-3, which the cluster counts as gaps.
        assert_eq!((pending.run, pending.seq, pending.cpu_pct), (9, 4, 40.0));
        assert_eq!(pending.logs.len(), 1);
        assert_eq!(pending.logs[0].matches, 7);
        assert_eq!(pending.logs[0].lines, ["e1", "e2", "e3", "e4", "e5"]);
    }

    #[test]
    fn unsent_reports_are_kept_for_a_failover_and_folded_when_old() {
        use consentry_cluster::model::LogMatches;
        let report = |seq: u64, at_ms: u64, matches: u32| HostReport {
            seq,
            at_ms,
            logs: vec![LogMatches {
                path: "/var/log/messages".into(),
                pattern: "Error".into(),
                matches,
                lines: Vec::new(),
                error: None,
            }],
            ..HostReport::default()
        };
        let mut queue: VecDeque<HostReport> = (1..=5).map(|s| report(s, s * 1_000, 1)).collect();
        // A failover of a few seconds: every report is still sent.
        fold_old_reports(&mut queue, 6_000);
        assert_eq!(
            queue.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        // Two minutes on: the ones older than a minute are folded into the next.
        queue.push_back(report(6, 62_500, 1));
        fold_old_reports(&mut queue, 62_500);
        assert_eq!(
            queue.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [3, 4, 5, 6],
            "1 and 2 are over a minute old"
        );
        assert_eq!(queue[0].logs[0].matches, 3);
        fold_old_reports(&mut queue, 122_500);
        assert_eq!(queue.iter().map(|r| r.seq).collect::<Vec<_>>(), [6]);
        assert_eq!(queue[0].logs[0].matches, 6, "no log match is lost");
        // The newest is kept however old.
        fold_old_reports(&mut queue, 10_000_000);
        assert_eq!(queue.len(), 1);
        // And the count is bounded.
        let mut queue: VecDeque<HostReport> = (1..=REPORTS_QUEUED_MAX as u64 + 10)
            .map(|s| report(s, 0, 0))
            .collect();
        fold_old_reports(&mut queue, 0);
        assert_eq!(queue.len(), REPORTS_QUEUED_MAX);
        assert_eq!(queue.back().unwrap().seq, REPORTS_QUEUED_MAX as u64 + 10);
    }

    #[test]
    fn a_stale_dispatch_is_not_reported_and_the_current_one_still_runs() {
        let dir = tempfile::tempdir().unwrap();
        let actions = BTreeMap::from([(
            "restart".to_string(),
            (vec!["/bin/true".to_string()], 60_000),
        )]);
        let mut l = Ledger::open(dir.path()).unwrap();
        assert!(matches!(
            decide(&mut l, &actions, &dispatch(1, 1, 4, 150, "restart")).unwrap(),
            Decision::Run { .. }
        ));
        // A node that is behind hands out step 2 with an older token: ignored, nothing is
        // left to report (an outcome would settle the current attempt as refused).
        let stale = dispatch(2, 1, 3, 120, "restart");
        assert!(matches!(
            decide(&mut l, &actions, &stale).unwrap(),
            Decision::Stale(_)
        ));
        assert!(!l.steps.contains_key("2/1"));
        assert!(l.steps.values().all(|e| e.outcome.is_none()));
        // The up-to-date dispatch of the same step runs it.
        assert!(matches!(
            decide(&mut l, &actions, &dispatch(2, 1, 4, 160, "restart")).unwrap(),
            Decision::Run { .. }
        ));
    }
}

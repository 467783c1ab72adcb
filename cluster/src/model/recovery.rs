//! Recovery runbooks, the intents that run their steps, and what host agents report.
//!
//! A check with `recovery = "<runbook>"` runs that runbook's steps while one of its incidents
//! is open: each step when its `after` has passed since the incident opened and the step
//! before it has settled. Only the leader acts, and before it acts it commits a dispatch: the
//! step's intent gets a fencing token (the raft term and log index of that entry). An agent
//! refuses a token older than the newest it has seen and answers a repeated intent with the
//! outcome it stored, so a step runs at most once however often leaders change.

use serde::{Deserialize, Serialize};

/// Steps one runbook may have.
pub const RUNBOOK_STEPS_MAX: usize = 16;
/// Attempts one step may make.
pub const STEP_ATTEMPTS_MAX: u32 = 10;
/// Longest kept output of an action (stdout and stderr, or the webhook's answer).
pub const ACTION_OUTPUT_BYTES_MAX: usize = 1_024;
/// Mounts one report may carry.
pub const REPORT_MOUNTS_MAX: usize = 64;
/// Watched logs one report may carry.
pub const REPORT_LOGS_MAX: usize = 32;
/// Matching lines kept per watched log per report.
pub const REPORT_LOG_LINES_MAX: usize = 5;
/// Longest matching line kept.
pub const REPORT_LINE_BYTES_MAX: usize = 256;
/// Longest action name (`[[action]] name` in agent.toml, `action` in a runbook step).
pub const ACTION_NAME_BYTES_MAX: usize = 64;

/// Whether `name` can name an agent action: 1 to [`ACTION_NAME_BYTES_MAX`] characters from
/// a-z, A-Z, 0-9, '-', '_', '.'. Runbooks and agent.toml are both checked with it, so a name
/// one accepts the other does too.
pub fn valid_action_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= ACTION_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// `[[runbook]]` in `checks.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunbookSpec {
    pub name: String,
    pub steps: Vec<StepSpec>,
}

/// One step of a runbook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSpec {
    /// A name for people (the timeline, notifications); defaults to the action's.
    pub name: String,
    /// Time since the incident opened before the step may run (seed 000: 20 minutes).
    pub after_ms: u64,
    pub action: StepAction,
    /// The most one attempt may take.
    pub timeout_ms: u64,
    /// Attempts before the step counts as failed (at least 1).
    pub attempts: u32,
    /// After a successful action, how long to wait for the check to recover before the next
    /// step runs (0: do not wait). Meanwhile the pollers re-probe the check at once.
    pub verify_ms: u64,
}

/// What a step does. Externally tagged (bincode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepAction {
    /// Ask host agent `agent` to run its allow-listed action `action` (by name: the cluster
    /// never sends a command line).
    Agent { agent: String, action: String },
    /// The leader runs this program, without a shell (argv[0] in node.toml `notify_exec_dirs`).
    Exec { argv: Vec<String> },
    /// The leader POSTs the step as JSON to this URL.
    Webhook { url: String },
}

impl StepAction {
    /// `agent`, `exec` or `webhook` (a bounded label).
    pub fn kind(&self) -> &'static str {
        match self {
            StepAction::Agent { .. } => "agent",
            StepAction::Exec { .. } => "exec",
            StepAction::Webhook { .. } => "webhook",
        }
    }

    /// A short description for people: `agent web1: restart-nginx`, the program, the URL.
    pub fn describe(&self) -> String {
        match self {
            StepAction::Agent { agent, action } => format!("agent {agent}: {action}"),
            StepAction::Exec { argv } => format!("exec {}", argv.join(" ")),
            StepAction::Webhook { url } => format!("webhook {url}"),
        }
    }
}

/// Orders dispatches: a raft term, then the log index of the dispatch entry. A newer leader's
/// dispatch always carries a larger token than any older leader's.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct FencingToken {
    pub term: u64,
    pub index: u64,
}

impl std::fmt::Display for FencingToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.term, self.index)
    }
}

/// How one attempt of a step ended. Externally tagged (bincode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionOutcome {
    /// Exit status 0 (or a 2xx answer).
    Succeeded { output: String, duration_ms: u64 },
    /// It ran and failed: a non-zero exit, a signal, a timeout, an error answer.
    Failed {
        error: String,
        output: String,
        duration_ms: u64,
    },
    /// It did not run: an unknown action, an older fencing token, a missing agent.
    Refused { reason: String },
    /// It started and nobody knows how it ended: the agent or the leader that ran it
    /// stopped first (a reboot action ends this way). Never run again.
    Interrupted { reason: String },
}

impl ActionOutcome {
    pub fn succeeded(&self) -> bool {
        matches!(self, ActionOutcome::Succeeded { .. })
    }

    /// `succeeded`, `failed`, `refused` or `interrupted` (a bounded label).
    pub fn as_str(&self) -> &'static str {
        match self {
            ActionOutcome::Succeeded { .. } => "succeeded",
            ActionOutcome::Failed { .. } => "failed",
            ActionOutcome::Refused { .. } => "refused",
            ActionOutcome::Interrupted { .. } => "interrupted",
        }
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        match self {
            ActionOutcome::Succeeded { duration_ms, .. } => {
                format!("succeeded in {duration_ms} ms")
            }
            ActionOutcome::Failed { error, .. } => format!("failed: {error}"),
            ActionOutcome::Refused { reason } => format!("refused: {reason}"),
            ActionOutcome::Interrupted { reason } => format!("interrupted: {reason}"),
        }
    }

    /// A copy whose texts are displayable and bounded (it may come from a host agent).
    pub fn bounded(&self) -> Self {
        let b = |s: &str| super::truncate(&super::displayable(s), ACTION_OUTPUT_BYTES_MAX);
        match self {
            ActionOutcome::Succeeded {
                output,
                duration_ms,
            } => ActionOutcome::Succeeded {
                output: b(output),
                duration_ms: *duration_ms,
            },
            ActionOutcome::Failed {
                error,
                output,
                duration_ms,
            } => ActionOutcome::Failed {
                error: b(error),
                output: b(output),
                duration_ms: *duration_ms,
            },
            ActionOutcome::Refused { reason } => ActionOutcome::Refused { reason: b(reason) },
            ActionOutcome::Interrupted { reason } => {
                ActionOutcome::Interrupted { reason: b(reason) }
            }
        }
    }
}

/// One attempt's dispatch: committed by the leader before anyone acts on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepDispatch {
    pub attempt: u32,
    pub token: FencingToken,
    pub leader_id: u64,
    /// The leader's wall clock at the last tick (display only).
    pub at_ms: u64,
    /// Cluster tick when it was committed (an agent that never answers times out from it).
    pub tick: u64,
}

/// Whether an intent still runs, and how it ended. Externally tagged (bincode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Waiting for the leader to dispatch the next attempt.
    Pending,
    /// `dispatch` is out; waiting for its outcome.
    Dispatched,
    /// The action succeeded (or was interrupted); until `until_tick` the check may recover.
    Verifying { until_tick: u64 },
    /// Settled: the incident recovered after it, or it failed (all attempts), or the
    /// incident closed first, or verification ended with the check still down.
    Done { ok: bool, note: String },
}

/// One step of a runbook run for one incident: created when it becomes due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryIntent {
    /// Stable id: identical on every replica (a counter in the state, 1, 2, 3, ...; never
    /// reused).
    pub id: u64,
    pub incident_id: u64,
    pub check: String,
    pub runbook: String,
    /// Position in the runbook (0-based).
    pub step: u32,
    /// The step as it was when it became due (a later catalog does not change a run).
    pub spec: StepSpec,
    pub created_index: u64,
    /// The newest dispatch (one per attempt; a new leader re-dispatches the same attempt
    /// with a newer token).
    pub dispatch: Option<StepDispatch>,
    /// Outcomes, one per attempt that has one.
    pub outcomes: Vec<ActionOutcome>,
    pub state: StepState,
    /// A retry after a failed attempt waits for this tick.
    pub not_before_tick: u64,
}

impl RecoveryIntent {
    /// Whether the leader still has something to do for it (dispatch or wait for outcome).
    pub fn is_active(&self) -> bool {
        matches!(self.state, StepState::Pending | StepState::Dispatched)
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, StepState::Done { .. })
    }
}

/// What the leader (or the node an agent reports to) commits when an attempt ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOutcome {
    pub intent_id: u64,
    pub attempt: u32,
    /// The token of the dispatch it answers: an outcome for an attempt that was
    /// re-dispatched is still accepted, one for an unknown attempt is not.
    pub token: FencingToken,
    /// Who ran it: `agent web1`, `leader 2`.
    pub by: String,
    pub outcome: ActionOutcome,
}

/// One mount's usage in a host report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MountUsage {
    pub path: String,
    pub disk_pct: f64,
    pub inode_pct: f64,
}

/// Lines of one watched log that matched its pattern since the last report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogMatches {
    pub path: String,
    pub pattern: String,
    pub matches: u32,
    /// The first matching lines, at most [`REPORT_LOG_LINES_MAX`].
    pub lines: Vec<String>,
    /// Why the log could not be read, if it could not.
    pub error: Option<String>,
}

/// What a host agent reports every interval.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HostReport {
    /// Random per agent process start: sequence numbers count within one run.
    pub run: u64,
    /// 1, 2, 3, ... within the run; the cluster keeps each (run, seq) once.
    pub seq: u64,
    /// The agent's wall clock when it measured (display only).
    pub at_ms: u64,
    /// The agent's report interval.
    pub interval_ms: u64,
    pub load: [f64; 3],
    /// CPU busy since the last report, percent of all CPUs.
    pub cpu_pct: f64,
    pub memory_pct: f64,
    pub swap_pct: f64,
    pub mounts: Vec<MountUsage>,
    pub procs: u32,
    pub zombies: u32,
    pub users: u32,
    pub logs: Vec<LogMatches>,
    /// What could not be measured (each a short sentence).
    pub errors: Vec<String>,
}

impl HostReport {
    /// A copy within the bounds above, with displayable texts (reports come from hosts).
    pub fn bounded(&self) -> Self {
        let text = |s: &str, max: usize| super::truncate(&super::displayable(s), max);
        let finite = |v: f64| {
            if v.is_finite() {
                v.clamp(0.0, 1e9)
            } else {
                0.0
            }
        };
        let mut r = self.clone();
        r.load = r.load.map(finite);
        r.cpu_pct = finite(r.cpu_pct);
        r.memory_pct = finite(r.memory_pct);
        r.swap_pct = finite(r.swap_pct);
        r.mounts.truncate(REPORT_MOUNTS_MAX);
        for m in &mut r.mounts {
            m.path = text(&m.path, 256);
            m.disk_pct = finite(m.disk_pct);
            m.inode_pct = finite(m.inode_pct);
        }
        r.logs.truncate(REPORT_LOGS_MAX);
        for l in &mut r.logs {
            l.path = text(&l.path, 256);
            l.pattern = text(&l.pattern, 256);
            l.lines.truncate(REPORT_LOG_LINES_MAX);
            for line in &mut l.lines {
                *line = text(line, REPORT_LINE_BYTES_MAX);
            }
            l.error = l.error.as_deref().map(|e| text(e, 256));
        }
        r.errors.truncate(8);
        for e in &mut r.errors {
            *e = text(e, 256);
        }
        r
    }
}

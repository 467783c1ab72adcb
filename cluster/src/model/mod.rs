//! The domain model: checks, results, incidents, intents.

mod check;
mod incident;
mod recovery;
mod result;
mod silence;
mod status;

pub use check::{
    AgentMetric, AgentSpec, BannerProtocol, BannerSpec, Catalog, CheckSpec, Confirm, Credentials,
    DegradedPolicy, DnsSpec, EmailNotifier, ExecNotifier, Flap, HttpSpec, IcmpSpec, Latency,
    NagiosSpec, NotifierKind, NotifierSpec, ProbeSpec, Recover, SqlEngine, SqlSpec, StatusRange,
    TcpSpec, TlsMode, TlsSpec, REDACTED,
};
pub use incident::{
    Ack, Delivery, Event, Evidence, Incident, IntentKind, NotifyIntent, NotifyOutcome,
    TimelineEvent, Transition, ACK_BY_BYTES_MAX, ACK_COMMENT_BYTES_MAX, ATTEMPT_ERROR_BYTES_MAX,
    TIMELINE_EVENTS_MAX,
};
pub use recovery::{
    valid_action_name, ActionOutcome, FencingToken, HostReport, LogMatches, MountUsage,
    RecoveryIntent, RunbookSpec, StepAction, StepDispatch, StepOutcome, StepSpec, StepState,
    ACTION_NAME_BYTES_MAX, ACTION_OUTPUT_BYTES_MAX, REPORT_LINE_BYTES_MAX, REPORT_LOGS_MAX,
    REPORT_LOG_LINES_MAX, REPORT_MOUNTS_MAX, RUNBOOK_STEPS_MAX, STEP_ATTEMPTS_MAX,
};
pub use result::{
    displayable, truncate, Perf, ProbeResult, ResultBatch, PERFDATA_ITEMS_MAX,
    PERF_LABEL_BYTES_MAX, RESULT_MESSAGE_BYTES_MAX,
};
pub use silence::{
    glob_match, Matcher, Silence, SilenceSpec, SILENCE_DURATION_MS_MAX, SILENCE_PATTERN_BYTES_MAX,
    SILENCE_REASON_BYTES_MAX,
};
pub use status::{Reason, Status};

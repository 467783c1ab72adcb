//! Incidents and the notification intents they create.

use serde::{Deserialize, Serialize};

use super::result::ProbeResult;
use super::status::Status;

/// One agreeing site's evidence when an incident opened or closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub site: String,
    pub consecutive: u32,
    pub last: ProbeResult,
}

/// Whether an incident is firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Firing,
    Resolved,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Firing => "firing",
            Transition::Resolved => "resolved",
        }
    }
}

/// An incident: opened when a quorum of fresh sites agreed the check is down.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Incident {
    /// The log index of the entry that opened it: unique and identical on every replica.
    pub id: u64,
    pub check: String,
    pub severity: Status,
    pub opened_index: u64,
    pub opened_tick: u64,
    /// Observed wall time of the evidence that opened it (display only).
    pub opened_at_ms: u64,
    pub opened_by: Vec<Evidence>,
    pub closed_index: Option<u64>,
    pub closed_tick: Option<u64>,
    pub closed_at_ms: Option<u64>,
    pub closed_by: Vec<Evidence>,
    /// `Some((n, m))` when opened on a degraded quorum: n of m probing sites were fresh.
    pub unconfirmed: Option<(u32, u32)>,
    /// Why it closed when not by recovery (e.g. the check was removed).
    pub close_note: Option<String>,
    /// Whether its firing notifications were emitted (at opening, or later when what held
    /// them ended). A resolved notification is emitted exactly when this is set, so a
    /// receiver never gets a resolve for a page it never got, nor keeps one open.
    pub notified: bool,
    /// The silence holding its notifications now, if any.
    pub silenced_by: Option<u64>,
    /// Set once any silence held it: the incident happened during maintenance.
    pub silenced: bool,
    /// The parent check (`depends_on`) whose open incident held this one when it opened.
    /// Kept after the parent closes, as the record; `notified` says whether it paged later.
    pub suppressed_by: Option<String>,
    /// The latest acknowledgement, if someone took it.
    pub ack: Option<Ack>,
    /// The parent whose open incident holds its firing notification now (`None` once the
    /// parent closed or the incident notified).
    pub parent_hold: Option<String>,
    /// From the first failing result at the agreeing sites to the result that confirmed
    /// it, by the probing sites' clocks (display only; `None` without clock readings).
    pub time_to_detect_ms: Option<u64>,
    /// From the evidence that opened it to the evidence that closed it (display only).
    pub duration_ms: Option<u64>,
    /// What happened to it, oldest first; at most `TIMELINE_EVENTS_MAX` (the opening is
    /// always kept; older events after it are dropped and counted).
    pub timeline: Vec<TimelineEvent>,
    pub timeline_dropped: u32,
}

/// Events kept per incident.
pub const TIMELINE_EVENTS_MAX: usize = 64;

/// One entry of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEvent {
    /// Log index of the entry that caused it.
    pub index: u64,
    /// The leader's wall clock at the last tick (display only).
    pub at_ms: u64,
    pub event: Event,
}

/// What happened. Externally tagged: the state is replicated through bincode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A quorum agreed (the evidence is the incident's `opened_by`).
    Opened {
        severity: Status,
        sites: Vec<String>,
    },
    /// A silence started holding its notifications.
    Silenced {
        silence_id: u64,
    },
    /// That silence ended or was removed.
    Unsilenced {
        silence_id: u64,
    },
    /// A parent's open incident holds its firing notification.
    Suppressed {
        parent: String,
    },
    /// The parent's incident closed.
    Unsuppressed {
        parent: String,
    },
    /// Notification intents were created for these notifiers.
    Notifying {
        transition: Transition,
        notifiers: Vec<String>,
    },
    /// The leader's committed outcome of one notification.
    Notified {
        intent_id: u64,
        notifier: String,
        transition: Transition,
        attempts: u32,
        delivery: Delivery,
    },
    Acknowledged {
        by: String,
        comment: String,
    },
    /// The check started flapping (episode `alert_id`): firing notifications are held.
    FlappingStarted {
        alert_id: u64,
    },
    /// The check stopped flapping.
    FlappingStopped {
        alert_id: u64,
    },
    /// Recovered (the evidence is `closed_by`), or closed for `note`.
    Closed {
        sites: Vec<String>,
        note: Option<String>,
    },
    /// One committed delivery attempt of a notification (`error` `None`: delivered). Kept
    /// last in the enum: bincode numbers variants by position.
    NotifyAttempt {
        intent_id: u64,
        notifier: String,
        transition: Transition,
        attempt: u32,
        leader_id: u64,
        term: u64,
        error: Option<String>,
    },
    /// A runbook step became due (`action` describes it). The recovery events are kept
    /// last, as above.
    RecoveryStep {
        intent_id: u64,
        step: u32,
        name: String,
        action: String,
    },
    /// The leader committed a dispatch of the step: it may run now, under this token.
    RecoveryDispatched {
        intent_id: u64,
        step: u32,
        attempt: u32,
        token: super::FencingToken,
        leader_id: u64,
    },
    /// How one attempt ended, and who ran it.
    RecoveryOutcome {
        intent_id: u64,
        step: u32,
        attempt: u32,
        by: String,
        outcome: super::ActionOutcome,
    },
    /// The runbook ended: the check recovered (`ok`), or every step ran and it did not.
    RecoveryFinished {
        runbook: String,
        ok: bool,
        note: String,
    },
}

/// Longest delivery attempt error kept (a `NotifyAttempt`'s text comes from a receiver).
pub const ATTEMPT_ERROR_BYTES_MAX: usize = 512;

/// Longest acknowledging name kept.
pub const ACK_BY_BYTES_MAX: usize = 128;
/// Longest acknowledgement comment kept.
pub const ACK_COMMENT_BYTES_MAX: usize = 512;

/// Someone took the incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub by: String,
    pub comment: String,
    /// Log index of the `Ack` entry.
    pub index: u64,
    /// The leader's wall clock at the last tick before it (display only).
    pub at_ms: u64,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.closed_index.is_none()
    }

    /// What holds it now, if anything: `silence N`, or `the incident of <parent>`. While held
    /// its firing notifications wait and no recovery step runs or escalates.
    pub fn hold(&self) -> Option<String> {
        match (&self.silenced_by, &self.parent_hold) {
            (Some(silence), _) => Some(format!("silence {silence}")),
            (None, Some(parent)) => Some(format!("the incident of {parent}")),
            (None, None) => None,
        }
    }

    /// Whether a silence or a parent's open incident holds it now (see [`Self::hold`]).
    pub fn is_held(&self) -> bool {
        self.silenced_by.is_some() || self.parent_hold.is_some()
    }

    /// Appends to the timeline, dropping the oldest event after the opening when full.
    pub fn record(&mut self, index: u64, at_ms: u64, event: Event) {
        if self.timeline.len() >= TIMELINE_EVENTS_MAX {
            self.timeline.remove(1.min(self.timeline.len() - 1));
            self.timeline_dropped = self.timeline_dropped.saturating_add(1);
        }
        self.timeline.push(TimelineEvent {
            index,
            at_ms,
            event,
        });
    }
}

/// A notification the leader must deliver exactly once per dedup key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyIntent {
    /// Stable id: identical on every replica (log index * 256 + ordinal within the entry).
    pub id: u64,
    pub incident_id: u64,
    pub check: String,
    pub notifier: String,
    pub transition: Transition,
    /// `incident/transition/channel`: receivers that dedupe use it.
    pub dedup_key: String,
    pub created_index: u64,
    pub attempts: u32,
    pub outcome: Option<Delivery>,
    /// What the notification is about. `Incident` keeps every other field's meaning; the
    /// other kinds are not about one incident (`incident_id` is 0) and read `transition` as
    /// started (`Firing`) / stopped (`Resolved`). Absent from JSON means `Incident`.
    #[serde(default)]
    pub kind: IntentKind,
}

/// What a notification intent is about. Externally tagged (bincode).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentKind {
    /// An incident opened (`Firing`) or closed (`Resolved`): `incident_id` names it.
    #[default]
    Incident,
    /// `check` started (`Firing`) or stopped (`Resolved`) flapping. While it flaps its
    /// incidents are recorded but their firing notifications are held; this one replaces
    /// them. `alert_id` numbers the flapping episode (the dedup key is
    /// `flapping-<alert_id>/<transition>/<notifier>`); `percent_tenths` is the highest
    /// agreeing site's weighted percent state change, in tenths of a percent.
    Flapping { alert_id: u64, percent_tenths: u32 },
    /// Operator alert (to `[operator] notify` only; `check` is empty): probing site `site`
    /// is path-suspect on most of the checks it has fresh results for (`suspect` of
    /// `checks`), so its network path, not the targets, is likely broken. Dedup key
    /// `site-degraded-<alert_id>/<transition>/<notifier>`.
    SiteDegraded {
        alert_id: u64,
        site: String,
        suspect: u32,
        checks: u32,
    },
    /// Operator alert: probing site `site` has delivered no fresh result on any check for
    /// longer than the freshness window (`Firing`), or delivers again (`Resolved`). Dedup key
    /// `site-silent-<alert_id>/<transition>/<notifier>`.
    SiteSilent { alert_id: u64, site: String },
    /// Every step of the incident's runbook ran and the check is still down: people must
    /// take over. Dedup key `recovery-failed-<incident>/firing/<notifier>`.
    RecoveryFailed { runbook: String, steps: u32 },
}

/// The committed result of delivering an intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    Delivered {
        leader_id: u64,
        term: u64,
    },
    Failed {
        leader_id: u64,
        term: u64,
        error: String,
    },
}

/// What the leader commits after trying an intent: the settling record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyOutcome {
    pub intent_id: u64,
    /// Attempts made in all, counting the ones earlier leaders committed as
    /// `Command::NotifyAttempt` (the intent keeps the larger of this and what it has).
    pub attempts: u32,
    pub delivery: Delivery,
}

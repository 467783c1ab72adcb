//! `checks.toml`: checks, notifiers and runbooks, parsed once into a validated
//! [`Catalog`]. Every error carries the line and column it refers to.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use consentry_cluster::model::{
    valid_action_name, AgentMetric, Catalog, CheckSpec, Confirm, DegradedPolicy, Flap,
    NotifierSpec, ProbeSpec, Recover, RunbookSpec, StepAction, StepSpec, ACTION_NAME_BYTES_MAX,
    RUNBOOK_STEPS_MAX, STEP_ATTEMPTS_MAX,
};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::check_kinds::{self, kind_keys, COMMON_KEYS};
use crate::duration::parse_ms;
use crate::notifier_kinds;
use crate::position::Position;

/// Largest checks file accepted (a bound on what `apply` will parse).
pub const CHECKS_FILE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Checks in one catalog.
pub const CHECKS_MAX: usize = 20_000;
/// Longest check or notifier name.
pub const NAME_BYTES_MAX: usize = 128;
/// Parents one check may name in `depends_on`.
pub const DEPENDS_ON_MAX: usize = 32;

/// Defaults when neither the check nor `[defaults]` says (see docs/configuration.md).
pub const DEFAULT_INTERVAL_MS: u64 = 60_000;
pub const DEFAULT_CONFIRM_ROUNDS: u32 = 2;
pub const DEFAULT_RECOVER_ROUNDS: u32 = 2;
pub const INTERVAL_MS_MIN: u64 = 1_000;

/// One validation problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

#[derive(Deserialize)]
struct RawFile {
    defaults: Option<RawDefaults>,
    #[serde(default)]
    check: Vec<Spanned<RawCheck>>,
    #[serde(default)]
    notifier: Vec<Spanned<RawNotifier>>,
    operator: Option<RawOperator>,
    #[serde(default)]
    runbook: Vec<Spanned<RawRunbook>>,
}

/// `[operator]`: where alerts about the cluster itself go.
#[derive(Deserialize, Default)]
struct RawOperator {
    notify: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
struct RawDefaults {
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    confirm: Option<Spanned<RawConfirm>>,
    recover: Option<Spanned<RawRecover>>,
    notify: Option<Vec<Spanned<String>>>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Clone, Copy)]
pub(crate) struct RawConfirm {
    sites: Option<i64>,
    rounds: Option<i64>,
}

#[derive(Deserialize, Clone, Copy)]
pub(crate) struct RawRecover {
    rounds: Option<i64>,
}

/// A `[[check]]` table as written: every key of every kind (which keys apply to which
/// kind is checked by the key scan and [`check_kinds::probe_spec`]).
#[derive(Deserialize)]
pub(crate) struct RawCheck {
    pub(crate) name: Spanned<String>,
    pub(crate) kind: Spanned<String>,
    pub(crate) host: Option<Spanned<String>>,
    pub(crate) port: Option<Spanned<i64>>,
    pub(crate) url: Option<Spanned<String>>,
    pub(crate) method: Option<Spanned<String>>,
    pub(crate) expect_status: Option<Spanned<String>>,
    pub(crate) body_contains: Option<String>,
    pub(crate) body_regex: Option<Spanned<String>>,
    pub(crate) tls_verify: Option<bool>,
    pub(crate) redirects: Option<Spanned<i64>>,
    pub(crate) basic_auth_user: Option<String>,
    pub(crate) basic_auth_password: Option<String>,
    pub(crate) layer4_on_401: Option<bool>,
    pub(crate) server: Option<Spanned<String>>,
    pub(crate) query: Option<Spanned<String>>,
    pub(crate) record: Option<Spanned<String>>,
    pub(crate) expect: Option<Vec<String>>,
    pub(crate) tls: Option<Spanned<String>>,
    pub(crate) ehlo: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) database: Option<String>,
    pub(crate) server_name: Option<String>,
    pub(crate) starttls: Option<Spanned<String>>,
    pub(crate) days_warning: Option<Spanned<i64>>,
    pub(crate) days_critical: Option<Spanned<i64>>,
    pub(crate) verify_chain: Option<bool>,
    pub(crate) packets: Option<Spanned<i64>>,
    pub(crate) rtt_warning: Option<Spanned<String>>,
    pub(crate) rtt_critical: Option<Spanned<String>>,
    pub(crate) loss_warning: Option<Spanned<i64>>,
    pub(crate) loss_critical: Option<Spanned<i64>>,
    pub(crate) command: Option<Spanned<Vec<String>>>,
    pub(crate) interval: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
    pub(crate) latency_warning: Option<Spanned<String>>,
    pub(crate) latency_critical: Option<Spanned<String>>,
    pub(crate) confirm: Option<Spanned<RawConfirm>>,
    pub(crate) recover: Option<Spanned<RawRecover>>,
    pub(crate) notify: Option<Vec<Spanned<String>>>,
    pub(crate) labels: Option<BTreeMap<String, String>>,
    pub(crate) depends_on: Option<Vec<Spanned<String>>>,
    pub(crate) flap_high: Option<Spanned<i64>>,
    pub(crate) flap_low: Option<Spanned<i64>>,
    pub(crate) degraded: Option<Spanned<String>>,
    pub(crate) recovery: Option<Spanned<String>>,
    pub(crate) agent: Option<Spanned<String>>,
    pub(crate) metric: Option<Spanned<String>>,
    pub(crate) mount: Option<Spanned<String>>,
    pub(crate) log: Option<Spanned<String>>,
    pub(crate) warning: Option<Spanned<toml::Value>>,
    pub(crate) critical: Option<Spanned<toml::Value>>,
}

/// A `[[runbook]]` table as written.
#[derive(Deserialize)]
struct RawRunbook {
    name: Spanned<String>,
    #[serde(default)]
    step: Vec<Spanned<RawStep>>,
}

/// A `[[runbook.step]]` as written.
#[derive(Deserialize)]
struct RawStep {
    name: Option<Spanned<String>>,
    after: Option<Spanned<String>>,
    agent: Option<Spanned<String>>,
    action: Option<Spanned<String>>,
    exec: Option<Spanned<Vec<String>>>,
    webhook: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    attempts: Option<Spanned<i64>>,
    verify: Option<Spanned<String>>,
}

/// A `[[notifier]]` table as written: every key of every kind (which keys apply to which
/// kind is checked by the key scan and [`notifier_kinds::notifier_kind`]).
#[derive(Deserialize)]
pub(crate) struct RawNotifier {
    pub(crate) name: Spanned<String>,
    pub(crate) kind: Spanned<String>,
    pub(crate) url: Option<Spanned<String>>,
    pub(crate) server: Option<Spanned<String>>,
    pub(crate) port: Option<Spanned<i64>>,
    pub(crate) tls: Option<Spanned<String>>,
    pub(crate) tls_verify: Option<bool>,
    pub(crate) from: Option<Spanned<String>>,
    pub(crate) to: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) user: Option<Spanned<String>>,
    pub(crate) password: Option<Spanned<String>>,
    pub(crate) subject_firing: Option<Spanned<String>>,
    pub(crate) subject_resolved: Option<Spanned<String>>,
    pub(crate) argv: Option<Spanned<Vec<String>>>,
    pub(crate) timeout: Option<Spanned<String>>,
}

/// The keys each table may hold. `None`: any keys (labels). Unknown keys are reported by
/// [`unknown_keys`] with their position, so one typo does not hide the file's other errors.
struct Schema {
    table: &'static str,
    keys: &'static [(&'static str, Option<&'static Schema>)],
}

const CONFIRM_SCHEMA: Schema = Schema {
    table: "confirm",
    keys: &[("sites", None), ("rounds", None)],
};
const RECOVER_SCHEMA: Schema = Schema {
    table: "recover",
    keys: &[("rounds", None)],
};
const DEFAULTS_SCHEMA: Schema = Schema {
    table: "[defaults]",
    keys: &[
        ("interval", None),
        ("timeout", None),
        ("confirm", Some(&CONFIRM_SCHEMA)),
        ("recover", Some(&RECOVER_SCHEMA)),
        ("notify", None),
        ("labels", None),
    ],
};
/// `[[check]]`: the nested tables; which plain keys apply depends on the check's kind
/// ([`check_kinds::kind_keys`]).
const CHECK_SCHEMA: Schema = Schema {
    table: "[[check]]",
    keys: &[
        ("confirm", Some(&CONFIRM_SCHEMA)),
        ("recover", Some(&RECOVER_SCHEMA)),
    ],
};
/// `[[notifier]]`: which keys apply depends on the notifier's kind
/// ([`notifier_kinds::notifier_kind_keys`]).
const NOTIFIER_SCHEMA: Schema = Schema {
    table: "[[notifier]]",
    keys: &[("name", None), ("kind", None)],
};

/// The keys of a table whose plain keys depend on its `kind`.
struct KindKeys {
    table: &'static str,
    common: &'static [&'static str],
    kinds: &'static [&'static str],
    keys: fn(&str) -> Option<&'static [&'static str]>,
}

const CHECK_KIND_KEYS: KindKeys = KindKeys {
    table: "[[check]]",
    common: COMMON_KEYS,
    kinds: check_kinds::KINDS,
    keys: kind_keys,
};
const NOTIFIER_KIND_KEYS: KindKeys = KindKeys {
    table: "[[notifier]]",
    common: notifier_kinds::NOTIFIER_COMMON_KEYS,
    kinds: notifier_kinds::NOTIFIER_KINDS,
    keys: notifier_kinds::notifier_kind_keys,
};
const OPERATOR_SCHEMA: Schema = Schema {
    table: "[operator]",
    keys: &[("notify", None)],
};
const STEP_SCHEMA: Schema = Schema {
    table: "[[runbook.step]]",
    keys: &[
        ("name", None),
        ("after", None),
        ("agent", None),
        ("action", None),
        ("exec", None),
        ("webhook", None),
        ("timeout", None),
        ("attempts", None),
        ("verify", None),
    ],
};
const RUNBOOK_SCHEMA: Schema = Schema {
    table: "[[runbook]]",
    keys: &[("name", None), ("step", Some(&STEP_SCHEMA))],
};
const FILE_SCHEMA: Schema = Schema {
    table: "the top level",
    keys: &[
        ("defaults", Some(&DEFAULTS_SCHEMA)),
        ("check", Some(&CHECK_SCHEMA)),
        ("notifier", Some(&NOTIFIER_SCHEMA)),
        ("operator", Some(&OPERATOR_SCHEMA)),
        ("runbook", Some(&RUNBOOK_SCHEMA)),
    ],
};

/// Every key of `text` that its table does not know, with its position.
fn unknown_keys(text: &str) -> Vec<Problem> {
    let Ok(doc) = toml_edit::ImDocument::parse(text) else {
        return Vec::new(); // Syntax errors are reported by the serde pass.
    };
    let mut out = Vec::new();
    scan_table(text, doc.as_table(), &FILE_SCHEMA, &mut out);
    out
}

fn scan_table(
    text: &str,
    table: &dyn toml_edit::TableLike,
    schema: &Schema,
    out: &mut Vec<Problem>,
) {
    // A check's or notifier's plain keys depend on its kind; an unknown kind is reported
    // elsewhere, so then every kind's keys are allowed rather than flagging each one.
    let per_kind = if std::ptr::eq(schema, &CHECK_SCHEMA) {
        Some(&CHECK_KIND_KEYS)
    } else if std::ptr::eq(schema, &NOTIFIER_SCHEMA) {
        Some(&NOTIFIER_KIND_KEYS)
    } else {
        None
    };
    let kind_allowed = |name: &str| -> Result<(), String> {
        let Some(pk) = per_kind else {
            return Err(String::new());
        };
        let kind = table.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        if pk.common.contains(&name) {
            return Ok(());
        }
        let any_kind = pk
            .kinds
            .iter()
            .any(|k| (pk.keys)(k).is_some_and(|ks| ks.contains(&name)));
        match (pk.keys)(kind) {
            Some(keys) if keys.contains(&name) => Ok(()),
            Some(keys) if any_kind => Err(format!(
                "key `{name}` does not apply to kind {kind:?}; it takes: {}",
                keys.join(", ")
            )),
            Some(keys) => Err(format!(
                "unknown key `{name}` in {} of kind {kind:?}; it takes: {}, {}",
                pk.table,
                pk.common.join(", "),
                keys.join(", ")
            )),
            None if any_kind => Ok(()),
            None => Err(format!("unknown key `{name}` in {}", pk.table)),
        }
    };
    for (name, item) in table.iter() {
        let known = schema.keys.iter().find(|(k, _)| *k == name);
        if known.is_none() {
            let message = match kind_allowed(name) {
                Ok(()) => continue,
                Err(m) if !m.is_empty() => m,
                Err(_) => {
                    let expected: Vec<&str> = schema.keys.iter().map(|(k, _)| *k).collect();
                    format!(
                        "unknown key `{name}` in {}; expected one of: {}",
                        schema.table,
                        expected.join(", ")
                    )
                }
            };
            let span = table
                .key(name)
                .and_then(toml_edit::Key::span)
                .unwrap_or(0..0);
            let p = Position::of_span(text, span);
            out.push(Problem {
                line: p.line,
                column: p.column,
                message,
            });
            continue;
        }
        let Some((_, Some(sub))) = known else {
            continue;
        };
        if let Some(t) = item.as_table_like() {
            scan_table(text, t, sub, out);
        } else if let Some(tables) = item.as_array_of_tables() {
            for t in tables.iter() {
                scan_table(text, t, sub, out);
            }
        } else if let Some(array) = item.as_array() {
            for v in array.iter() {
                if let Some(t) = v.as_inline_table() {
                    scan_table(text, t, sub, out);
                }
            }
        }
    }
}

/// Round counts as written (see [`Checker::rounds_of`]).
#[derive(Default)]
struct Rounds {
    confirm_sites: Option<u32>,
    confirm_rounds: Option<u32>,
    recover_rounds: Option<u32>,
}

/// Collects problems while resolving one file.
pub(crate) struct Checker<'a> {
    text: &'a str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    pub(crate) fn at(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        let p = Position::of_span(self.text, span);
        self.problems.push(Problem {
            line: p.line,
            column: p.column,
            message: message.into(),
        });
    }

    /// The `confirm = { sites, rounds }` and `recover = { rounds }` of a check or of
    /// `[defaults]`; each `None` when absent or invalid (the problem is reported).
    fn rounds_of(
        &mut self,
        confirm: &Option<Spanned<RawConfirm>>,
        recover: &Option<Spanned<RawRecover>>,
    ) -> Rounds {
        let mut out = Rounds::default();
        if let Some(c) = confirm {
            out.confirm_sites = self.rounds(c.get_ref().sites, c.span(), "confirm.sites");
            out.confirm_rounds = self.rounds(c.get_ref().rounds, c.span(), "confirm.rounds");
        }
        if let Some(r) = recover {
            out.recover_rounds = self.rounds(r.get_ref().rounds, r.span(), "recover.rounds");
        }
        out
    }

    pub(crate) fn duration(&mut self, v: &Spanned<String>, what: &str) -> Option<u64> {
        match parse_ms(v.get_ref()) {
            Ok(ms) => Some(ms),
            Err(e) => {
                self.at(v.span(), format!("{what}: {e}"));
                None
            }
        }
    }

    fn rounds(&mut self, v: Option<i64>, span: std::ops::Range<usize>, what: &str) -> Option<u32> {
        let n = v?;
        if (1..=100).contains(&n) {
            return u32::try_from(n).ok();
        }
        self.at(span, format!("{what} must be between 1 and 100, got {n}"));
        None
    }

    fn name(&mut self, v: &Spanned<String>, what: &str) -> bool {
        let s = v.get_ref();
        let ok = !s.is_empty()
            && s.len() <= NAME_BYTES_MAX
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            self.at(
                v.span(),
                format!("{what} {s:?}: use 1 to {NAME_BYTES_MAX} characters from a-z, A-Z, 0-9, '-', '_', '.'"),
            );
        }
        ok
    }
}

/// Defaults of a runbook step (seed 000 restarts a daemon after 20 minutes of failure).
pub const STEP_AFTER_DEFAULT_MS: u64 = 20 * 60_000;
pub const STEP_TIMEOUT_DEFAULT_MS: u64 = 60_000;
pub const STEP_TIMEOUT_MAX_MS: u64 = 3_600_000;
pub const STEP_VERIFY_DEFAULT_MS: u64 = 120_000;
/// Runbooks one catalog may hold.
pub const RUNBOOKS_MAX: usize = 1_000;

/// The `[[runbook]]` tables, validated; a bad step is reported and left out.
fn runbooks(ck: &mut Checker<'_>, raw: &[Spanned<RawRunbook>]) -> Vec<RunbookSpec> {
    if raw.len() > RUNBOOKS_MAX {
        ck.at(
            0..0,
            format!("{} runbooks; the limit is {RUNBOOKS_MAX}", raw.len()),
        );
    }
    let mut out: Vec<RunbookSpec> = Vec::new();
    for rb in raw {
        let span = rb.span();
        let rb = rb.get_ref();
        if !ck.name(&rb.name, "runbook name") {
            continue;
        }
        if out.iter().any(|o| &o.name == rb.name.get_ref()) {
            ck.at(
                rb.name.span(),
                format!("runbook {:?} is defined twice", rb.name.get_ref()),
            );
            continue;
        }
        if rb.step.is_empty() || rb.step.len() > RUNBOOK_STEPS_MAX {
            ck.at(
                span,
                format!("a runbook needs 1 to {RUNBOOK_STEPS_MAX} [[runbook.step]] tables"),
            );
            continue;
        }
        let steps: Vec<StepSpec> = rb.step.iter().filter_map(|s| step(ck, s)).collect();
        if steps.len() == rb.step.len() {
            out.push(RunbookSpec {
                name: rb.name.get_ref().clone(),
                steps,
            });
        }
    }
    out
}

fn step(ck: &mut Checker<'_>, raw: &Spanned<RawStep>) -> Option<StepSpec> {
    let span = raw.span();
    let s = raw.get_ref();
    let action = match (&s.agent, &s.action, &s.exec, &s.webhook) {
        (Some(agent), Some(action), None, None) => {
            if let Err(e) = consentry_cluster::tls::validate_agent_name(agent.get_ref()) {
                ck.at(agent.span(), e.to_string());
                return None;
            }
            if !valid_action_name(action.get_ref()) {
                ck.at(action.span(), format!("action {:?}: use 1 to {ACTION_NAME_BYTES_MAX} characters from a-z, A-Z, 0-9, '-', '_', '.' (the name of an action in the agent's agent.toml)", action.get_ref()));
                return None;
            }
            StepAction::Agent {
                agent: agent.get_ref().clone(),
                action: action.get_ref().clone(),
            }
        }
        (None, None, Some(argv), None) => {
            let a = argv.get_ref();
            if a.is_empty() || a.len() > check_kinds::PLUGIN_ARGS_MAX || !a[0].starts_with('/') {
                ck.at(argv.span(), format!("exec must be 1 to {} strings, the first an absolute path (no shell is used)", check_kinds::PLUGIN_ARGS_MAX));
                return None;
            }
            StepAction::Exec { argv: a.clone() }
        }
        (None, None, None, Some(url)) => {
            let u = url.get_ref();
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                ck.at(url.span(), "webhook must be an http:// or https:// URL");
                return None;
            }
            StepAction::Webhook { url: u.clone() }
        }
        _ => {
            ck.at(span, "a step takes exactly one action: agent = \"<name>\" with action = \"<action>\", or exec = [\"/path\", ...], or webhook = \"http://...\"");
            return None;
        }
    };
    let dur = |ck: &mut Checker<'_>, v: &Option<Spanned<String>>, what: &str, default: u64| match v
    {
        Some(v) => ck.duration(v, what),
        None => Some(default),
    };
    let after_ms = dur(ck, &s.after, "after", STEP_AFTER_DEFAULT_MS)?;
    let timeout_ms = dur(ck, &s.timeout, "timeout", STEP_TIMEOUT_DEFAULT_MS)?;
    if timeout_ms == 0 || timeout_ms > STEP_TIMEOUT_MAX_MS {
        let at = s.timeout.as_ref().map_or(span.clone(), |v| v.span());
        ck.at(
            at,
            format!(
                "timeout must be more than 0 and at most {} s",
                STEP_TIMEOUT_MAX_MS / 1000
            ),
        );
        return None;
    }
    let verify_ms = dur(ck, &s.verify, "verify", STEP_VERIFY_DEFAULT_MS)?;
    let attempts = match &s.attempts {
        Some(a) => match u32::try_from(*a.get_ref())
            .ok()
            .filter(|n| (1..=STEP_ATTEMPTS_MAX).contains(n))
        {
            Some(n) => n,
            None => {
                ck.at(
                    a.span(),
                    format!("attempts must be 1 to {STEP_ATTEMPTS_MAX}"),
                );
                return None;
            }
        },
        None => 1,
    };
    let name = match &s.name {
        Some(n) if ck.name(n, "step name") => n.get_ref().clone(),
        Some(_) => return None,
        None => match &action {
            StepAction::Agent { action, .. } => action.clone(),
            StepAction::Exec { argv } => argv[0].rsplit('/').next().unwrap_or("exec").to_string(),
            StepAction::Webhook { .. } => "webhook".to_string(),
        },
    };
    Some(StepSpec {
        name,
        after_ms,
        action,
        timeout_ms,
        attempts,
        verify_ms,
    })
}

/// Parses and validates a checks file.
///
/// # Errors
/// Every problem found, each with a line and column.
pub fn parse(text: &str) -> Result<Catalog, Vec<Problem>> {
    if text.len() > CHECKS_FILE_BYTES_MAX {
        return Err(vec![Problem {
            line: 0,
            column: 0,
            message: format!(
                "file is {} bytes; the limit is {CHECKS_FILE_BYTES_MAX}",
                text.len()
            ),
        }]);
    }
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let (p, message) = Position::of_toml_error(text, &e);
        vec![Problem {
            line: p.line,
            column: p.column,
            message,
        }]
    })?;
    let mut ck = Checker {
        text,
        problems: unknown_keys(text),
    };
    let defaults = raw.defaults.unwrap_or_default();
    // `None` below means "given but invalid": the problem is reported once, and checks
    // that inherit the value skip the comparisons that would only repeat it.
    let d_interval = match &defaults.interval {
        Some(v) => ck.duration(v, "interval"),
        None => Some(DEFAULT_INTERVAL_MS),
    };
    // Outer None: [defaults] does not say (each check then uses min(15 s, its interval)).
    let d_timeout: Option<Option<u64>> =
        defaults.timeout.as_ref().map(|v| ck.duration(v, "timeout"));
    let d_rounds = ck.rounds_of(&defaults.confirm, &defaults.recover);
    let d_confirm_sites = d_rounds.confirm_sites;
    let d_confirm_rounds = d_rounds.confirm_rounds.unwrap_or(DEFAULT_CONFIRM_ROUNDS);
    let d_recover_rounds = d_rounds.recover_rounds.unwrap_or(DEFAULT_RECOVER_ROUNDS);
    let d_notify = defaults.notify.clone().unwrap_or_default();
    let d_labels = defaults.labels.clone().unwrap_or_default();

    // Notifiers first, so checks can be checked against them.
    let mut notifiers = Vec::new();
    let mut notifier_names = BTreeSet::new();
    for n in &raw.notifier {
        let span = n.span();
        let n = n.get_ref();
        if ck.name(&n.name, "notifier name") && !notifier_names.insert(n.name.get_ref().clone()) {
            ck.at(
                n.name.span(),
                format!("notifier {:?} is defined twice", n.name.get_ref()),
            );
        }
        if let Some(kind) = notifier_kinds::notifier_kind(n, span, &mut ck) {
            notifiers.push(NotifierSpec {
                name: n.name.get_ref().clone(),
                kind,
            });
        }
    }

    let runbooks = runbooks(&mut ck, &raw.runbook);

    let mut checks = Vec::new();
    let mut check_names = BTreeSet::new();
    let mut dependencies: Vec<(String, &[Spanned<String>])> = Vec::new();
    if raw.check.len() > CHECKS_MAX {
        ck.at(
            0..0,
            format!("{} checks; the limit is {CHECKS_MAX}", raw.check.len()),
        );
    }
    for c in &raw.check {
        let span = c.span();
        let c = c.get_ref();
        if ck.name(&c.name, "check name") && !check_names.insert(c.name.get_ref().clone()) {
            ck.at(
                c.name.span(),
                format!("check {:?} is defined twice", c.name.get_ref()),
            );
        }
        let kind = c.kind.get_ref().as_str();
        let probe = check_kinds::probe_spec(kind, c, span.clone(), &mut ck);
        let interval_ms = match &c.interval {
            Some(v) => ck.duration(v, "interval"),
            None => d_interval,
        };
        let timeout_ms = match (&c.timeout, d_timeout) {
            (Some(v), _) => ck.duration(v, "timeout"),
            (None, Some(d)) => d,
            (None, None) => interval_ms.map(|iv| iv.min(check_kinds::DEFAULT_TIMEOUT_MS)),
        };
        if let Some(iv) = interval_ms.filter(|iv| *iv < INTERVAL_MS_MIN) {
            let s = c.interval.as_ref().map_or(span.clone(), |v| v.span());
            ck.at(
                s,
                format!("interval ({iv} ms) must be at least {INTERVAL_MS_MIN} ms"),
            );
        }
        if let (Some(iv), Some(to)) = (interval_ms, timeout_ms) {
            if to == 0 || to > iv {
                let s = c.timeout.as_ref().map_or(span.clone(), |v| v.span());
                ck.at(
                    s,
                    format!(
                        "timeout ({to} ms) must be more than 0 and at most the interval ({iv} ms)"
                    ),
                );
            }
        }
        let interval_ms = interval_ms.unwrap_or(DEFAULT_INTERVAL_MS);
        let timeout_ms = timeout_ms.unwrap_or(check_kinds::DEFAULT_TIMEOUT_MS);
        let mut latency = check_kinds::default_latency(kind);
        if kind == "icmp" {
            // An icmp probe's duration includes the spacing between its echo requests, so
            // it says nothing about the round trip: that is what rtt_* judge.
            for v in [&c.latency_warning, &c.latency_critical]
                .into_iter()
                .flatten()
            {
                ck.at(v.span(), "icmp checks judge the round trip with rtt_warning / rtt_critical, not latency_*");
            }
        }
        if let Some(v) = &c.latency_warning {
            latency.warn_ms = ck.duration(v, "latency_warning");
        }
        if let Some(v) = &c.latency_critical {
            latency.crit_ms = ck.duration(v, "latency_critical");
        }
        let rounds = ck.rounds_of(&c.confirm, &c.recover);
        let mut confirm_sites = rounds.confirm_sites.or(d_confirm_sites);
        let mut confirm_rounds = rounds.confirm_rounds.unwrap_or(d_confirm_rounds);
        let mut recover_rounds = rounds.recover_rounds.unwrap_or(d_recover_rounds);
        if let Some(ProbeSpec::Agent(a)) = &probe {
            // One observer, the host: its quorum is itself. A matching log line is news
            // once; the next report without one recovers it.
            confirm_sites = Some(1);
            if matches!(a.metric, AgentMetric::Log { .. }) {
                confirm_rounds = rounds.confirm_rounds.unwrap_or(1);
                recover_rounds = rounds.recover_rounds.unwrap_or(1);
            }
        }
        let recovery = c.recovery.as_ref().and_then(|r| {
            if runbooks.iter().any(|rb| &rb.name == r.get_ref()) {
                Some(r.get_ref().clone())
            } else {
                ck.at(
                    r.span(),
                    format!(
                        "recovery names {:?}, which no [[runbook]] defines",
                        r.get_ref()
                    ),
                );
                None
            }
        });
        let notify = c.notify.clone().unwrap_or_else(|| d_notify.clone());
        for n in &notify {
            if !notifier_names.contains(n.get_ref()) {
                ck.at(
                    n.span(),
                    format!(
                        "notify names {:?}, which no [[notifier]] defines",
                        n.get_ref()
                    ),
                );
            }
        }
        let mut labels = d_labels.clone();
        labels.extend(c.labels.clone().unwrap_or_default());
        let parents = c.depends_on.as_deref().unwrap_or_default();
        if let Some(extra) = parents.get(DEPENDS_ON_MAX) {
            ck.at(
                extra.span(),
                format!("depends_on names more than {DEPENDS_ON_MAX} checks"),
            );
        }
        dependencies.push((c.name.get_ref().clone(), parents));
        let flap = flap_thresholds(&mut ck, c.flap_high.as_ref(), c.flap_low.as_ref());
        let degraded = degraded_policy(&mut ck, c.degraded.as_ref());
        if let Some(probe) = probe {
            checks.push(CheckSpec {
                name: c.name.get_ref().clone(),
                probe,
                interval_ms,
                timeout_ms,
                latency,
                confirm: Confirm {
                    sites: confirm_sites,
                    rounds: confirm_rounds,
                },
                recover: Recover {
                    rounds: recover_rounds,
                },
                notify: notify.into_iter().map(Spanned::into_inner).collect(),
                labels,
                depends_on: parents.iter().map(|p| p.get_ref().clone()).collect(),
                flap,
                degraded,
                recovery,
            });
        }
    }
    check_dependencies(&mut ck, &dependencies);
    let operator_notify = raw
        .operator
        .as_ref()
        .and_then(|o| o.notify.clone())
        .unwrap_or_default();
    for n in &operator_notify {
        if !notifier_names.contains(n.get_ref()) {
            ck.at(
                n.span(),
                format!(
                    "[operator] notify names {:?}, which no [[notifier]] defines",
                    n.get_ref()
                ),
            );
        }
    }
    let operator_notify: Vec<String> = operator_notify
        .into_iter()
        .map(Spanned::into_inner)
        .collect();
    if ck.problems.is_empty() {
        Ok(Catalog {
            checks,
            notifiers,
            operator_notify,
            runbooks,
        })
    } else {
        ck.problems.sort_by_key(|p| (p.line, p.column));
        Err(ck.problems)
    }
}

/// `flap_high` / `flap_low` (percent; `flap_high = 0` turns flap detection off).
fn flap_thresholds(
    ck: &mut Checker<'_>,
    high: Option<&Spanned<i64>>,
    low: Option<&Spanned<i64>>,
) -> Flap {
    let d = Flap::default();
    let mut pct = |v: Option<&Spanned<i64>>, what: &str, default: u8| -> u8 {
        let Some(v) = v else {
            return default;
        };
        match u8::try_from(*v.get_ref()).ok().filter(|p| *p <= 100) {
            Some(p) => p,
            None => {
                ck.at(
                    v.span(),
                    format!(
                        "{what} must be a percentage from 0 to 100, got {}",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    };
    let high_pct = pct(high, "flap_high", d.high_pct);
    let low_pct = pct(low, "flap_low", d.low_pct.min(high_pct));
    if high_pct > 0 && low_pct >= high_pct {
        let span = low.or(high).map_or(0..0, Spanned::span);
        ck.at(
            span,
            format!("flap_low ({low_pct}) must be below flap_high ({high_pct}); flap_high = 0 turns flap detection off"),
        );
    }
    Flap { high_pct, low_pct }
}

/// `degraded = "alert" | "hold"`: whether a degraded quorum may open an incident.
fn degraded_policy(ck: &mut Checker<'_>, v: Option<&Spanned<String>>) -> DegradedPolicy {
    let Some(v) = v else {
        return DegradedPolicy::default();
    };
    match v.get_ref().as_str() {
        "alert" => DegradedPolicy::Alert,
        "hold" => DegradedPolicy::Hold,
        other => {
            ck.at(
                v.span(),
                format!("degraded {other:?}: use \"alert\" (open an unconfirmed incident after twice the rounds) or \"hold\" (never open on a degraded quorum)"),
            );
            DegradedPolicy::default()
        }
    }
}

/// Every `depends_on` entry must name another defined check, once, and the dependencies
/// must not form a cycle. Problems are reported at the entry.
fn check_dependencies(ck: &mut Checker<'_>, graph: &[(String, &[Spanned<String>])]) {
    let names: BTreeSet<&str> = graph.iter().map(|(n, _)| n.as_str()).collect();
    let mut edges: BTreeMap<&str, Vec<&Spanned<String>>> = BTreeMap::new();
    for (name, parents) in graph {
        let mut seen = BTreeSet::new();
        for p in *parents {
            let parent = p.get_ref().as_str();
            if parent == name {
                ck.at(p.span(), format!("check {name:?} cannot depend on itself"));
            } else if !names.contains(parent) {
                ck.at(
                    p.span(),
                    format!("depends_on names {parent:?}, which no [[check]] defines"),
                );
            } else if !seen.insert(parent) {
                ck.at(p.span(), format!("depends_on names {parent:?} twice"));
            } else {
                edges.entry(name.as_str()).or_default().push(p);
            }
        }
    }
    // Depth-first search with an explicit stack (a chain of thousands of checks must not
    // overflow the thread's stack); an edge back into the current path closes a cycle.
    const WHITE: u8 = 0;
    const GREY: u8 = 1;
    const BLACK: u8 = 2;
    let mut color: BTreeMap<&str, u8> = BTreeMap::new();
    let starts: Vec<&str> = edges.keys().copied().collect();
    for start in starts {
        if color.get(start).copied().unwrap_or(WHITE) != WHITE {
            continue;
        }
        color.insert(start, GREY);
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        while let Some(top) = stack.last_mut() {
            let node = top.0;
            let children = edges.get(node).map_or(&[][..], Vec::as_slice);
            let Some(edge) = children.get(top.1).copied() else {
                color.insert(node, BLACK);
                stack.pop();
                continue;
            };
            top.1 += 1;
            let child = edge.get_ref().as_str();
            match color.get(child).copied().unwrap_or(WHITE) {
                WHITE => {
                    color.insert(child, GREY);
                    stack.push((child, 0));
                }
                GREY => {
                    let from = stack.iter().position(|(n, _)| *n == child).unwrap_or(0);
                    let mut path: Vec<&str> = stack[from..].iter().map(|(n, _)| *n).collect();
                    path.push(child);
                    ck.at(
                        edge.span(),
                        format!("depends_on makes a cycle: {}", path.join(" -> ")),
                    );
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use consentry_cluster::model::{Latency, StatusRange};

    use super::*;
    use crate::check_kinds::parse_status_ranges;

    const GOOD: &str = r#"
[defaults]
interval = "10s"
timeout = "5s"
confirm = { sites = 2, rounds = 2 }
recover = { rounds = 2 }
notify = ["ops"]

[[check]]
name = "web1-http"
kind = "http"
url = "http://192.0.2.10/"
expect_status = "200-399"

[[check]]
name = "web1-ssh"
kind = "tcp"
host = "192.0.2.10"
port = 22

[[notifier]]
name = "ops"
kind = "webhook"
url = "http://127.0.0.1:9000/hook"
"#;

    #[test]
    fn parses_the_documented_shape() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.checks.len(), 2);
        let web = &c.checks[0];
        assert_eq!(web.interval_ms, 10_000);
        assert_eq!(web.timeout_ms, 5_000);
        assert_eq!(
            web.confirm,
            Confirm {
                sites: Some(2),
                rounds: 2
            }
        );
        assert_eq!(
            web.latency,
            Latency {
                warn_ms: Some(5_000),
                crit_ms: Some(10_000)
            }
        );
        assert_eq!(web.notify, vec!["ops".to_string()]);
        assert_eq!(c.checks[1].latency.crit_ms, Some(11_000));
    }

    #[test]
    fn runbooks_and_agent_checks() {
        let text = r#"
[[check]]
name = "web"
kind = "tcp"
host = "192.0.2.10"
port = 80
recovery = "restart-web"

[[check]]
name = "web1-load"
kind = "agent"
agent = "web1"
metric = "load5"

[[check]]
name = "web1-log"
kind = "agent"
agent = "web1"
metric = "log"
log = "/var/log/messages"

[[runbook]]
name = "restart-web"
[[runbook.step]]
agent = "web1"
action = "restart-nginx"
[[runbook.step]]
name = "reboot"
exec = ["/usr/local/bin/ipmi-reset", "web1"]
after = "40m"
attempts = 2
verify = "0s"
"#;
        let c = parse(text).unwrap();
        assert_eq!(c.checks[0].recovery.as_deref(), Some("restart-web"));
        let rb = &c.runbooks[0];
        assert_eq!(
            rb.steps[0].after_ms, STEP_AFTER_DEFAULT_MS,
            "seed 000: 20 minutes"
        );
        assert_eq!(rb.steps[0].name, "restart-nginx");
        assert_eq!(rb.steps[0].verify_ms, STEP_VERIFY_DEFAULT_MS);
        assert_eq!(rb.steps[1].after_ms, 40 * 60_000);
        assert_eq!(rb.steps[1].attempts, 2);
        let ProbeSpec::Agent(load) = &c.checks[1].probe else {
            panic!("{:?}", c.checks[1].probe)
        };
        assert_eq!(
            (load.warn_milli, load.crit_milli),
            (Some(4_000), Some(7_000))
        );
        assert_eq!(c.checks[1].confirm.sites, Some(1), "one observer");
        assert_eq!(c.checks[2].confirm.rounds, 1, "a log line is news once");

        let bad = r#"
[[check]]
name = "web"
kind = "tcp"
host = "192.0.2.10"
port = 80
recovery = "nope"

[[check]]
name = "a"
kind = "agent"
agent = "web1"
metric = "diskk"

[[runbook]]
name = "rb"
[[runbook.step]]
agent = "web1"
exec = ["/bin/true"]
[[runbook.step]]
webhook = "ftp://x"
colour = "red"
"#;
        let problems = parse(bad).unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        for want in [
            "recovery names \"nope\"",
            "unknown metric \"diskk\"",
            "exactly one action",
            "webhook must be an http",
            "unknown key `colour`",
        ] {
            assert!(text.iter().any(|t| t.contains(want)), "{want} in {text:#?}");
        }
        assert!(problems.iter().all(|p| p.line > 0), "{text:#?}");
    }

    #[test]
    fn every_error_has_a_position() {
        let bad = r#"
[[check]]
name = "a"
kind = "http"
interval = "ten seconds"

[[check]]
name = "b"
kind = "gopher"

[[check]]
name = "a"
kind = "tcp"
host = "x"
port = 70000
notify = ["nobody"]
"#;
        let errs = parse(bad).unwrap_err();
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert!(errs.iter().all(|e| e.line > 0 && e.column > 0), "{errs:?}");
        assert!(lines.contains(&5), "interval: {errs:?}");
        assert!(lines.contains(&9), "kind: {errs:?}");
        assert!(lines.contains(&12), "duplicate name: {errs:?}");
        assert!(lines.contains(&15), "port: {errs:?}");
        assert!(lines.contains(&16), "notify: {errs:?}");
        assert!(
            errs.iter().any(|e| e.message.contains("needs url")),
            "{errs:?}"
        );
    }

    #[test]
    fn rounds_from_defaults_and_checks() {
        let ok = "[defaults]\nconfirm = { sites = 3, rounds = 4 }\nrecover = { rounds = 5 }\n\n[[check]]\nname = \"a\"\nkind = \"tcp\"\nhost = \"h\"\nport = 1\nconfirm = { rounds = 1 }\n";
        let c = parse(ok).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            c.checks[0].confirm,
            Confirm {
                sites: Some(3),
                rounds: 1
            },
            "a check overrides only what it says"
        );
        assert_eq!(c.checks[0].recover, Recover { rounds: 5 });

        let bad = "[defaults]\nconfirm = { sites = 0 }\n\n[[check]]\nname = \"a\"\nkind = \"tcp\"\nhost = \"h\"\nport = 1\nrecover = { rounds = 101 }\n";
        let errs = parse(bad).unwrap_err();
        let got: Vec<(usize, String)> = errs.iter().map(|e| (e.line, e.message.clone())).collect();
        assert!(
            got.iter()
                .any(|(l, m)| *l == 2
                    && m.contains("confirm.sites must be between 1 and 100, got 0")),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|(l, m)| *l == 9
                    && m.contains("recover.rounds must be between 1 and 100, got 101")),
            "{got:?}"
        );
    }

    #[test]
    fn unknown_keys_do_not_hide_other_errors() {
        let text = "[defaults]\ntimeout = \"soon\"\ncolour = 1\n\n[[check]]\nname = \"a\"\nkind = \"tcp\"\nhots = \"x\"\nport = 22\nconfirm = { sites = 2, round = 3 }\n";
        let errs = parse(text).unwrap_err();
        let got: Vec<(usize, usize)> = errs.iter().map(|e| (e.line, e.column)).collect();
        // timeout, colour, missing host (the check's table), hots, confirm.round
        assert!(got.contains(&(2, 11)), "{errs:?}");
        assert!(got.contains(&(3, 1)), "{errs:?}");
        assert!(got.contains(&(8, 1)), "{errs:?}");
        assert!(got.contains(&(10, 24)), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.message.contains("needs host")),
            "{errs:?}"
        );
        // The invalid default timeout is reported once, not again for every check.
        let about_timeout = errs
            .iter()
            .filter(|e| e.message.starts_with("timeout"))
            .count();
        assert_eq!(about_timeout, 1, "{errs:?}");
    }

    #[test]
    fn dependencies_are_checked() {
        let head =
            "[[notifier]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n";
        let check = |name: &str, deps: &str| {
            format!("\n[[check]]\nname = \"{name}\"\nkind = \"tcp\"\nhost = \"h\"\nport = 1\ndepends_on = [{deps}]\n")
        };
        let good = format!(
            "{head}{}{}{}",
            check("host", ""),
            check("web", "\"host\""),
            check("db", "\"host\", \"web\"")
        );
        let c = parse(&good).unwrap();
        assert_eq!(
            c.checks[2].depends_on,
            vec!["host".to_string(), "web".to_string()]
        );

        /// (line, column, part of the message)
        type Want = (usize, usize, &'static str);
        // (checks as (name, depends_on entries), the expected problem)
        let cases: [(&[(&str, &str)], Want); 4] = [
            (&[("a", "\"nope\"")], (11, 15, "which no [[check]] defines")),
            (&[("a", "\"a\"")], (11, 15, "cannot depend on itself")),
            (
                &[("a", "\"b\""), ("b", "\"a\"")],
                (18, 15, "cycle: a -> b -> a"),
            ),
            (
                &[("a", "\"b\", \"b\""), ("b", "")],
                (11, 20, "names \"b\" twice"),
            ),
        ];
        for (checks, (line, column, part)) in cases {
            let text = format!(
                "{head}{}",
                checks.iter().map(|(n, d)| check(n, d)).collect::<String>()
            );
            let errs = parse(&text).unwrap_err();
            assert!(
                errs.iter()
                    .any(|e| e.line == line && e.column == column && e.message.contains(part)),
                "{checks:?}: want {line}:{column} {part:?}, got {errs:?}"
            );
        }
    }

    #[test]
    fn notifier_kinds_and_their_keys() {
        let text = r#"
[[notifier]]
name = "mail"
kind = "email"
server = "127.0.0.1"
port = 2525
tls = "starttls"
from = "consentry@example.org"
to = ["ops@example.org"]
user = "u"
password = "p"
subject_firing = "【障害】{check} が停止しました"

[[notifier]]
name = "am"
kind = "alertmanager"
url = "http://127.0.0.1:9093"

[[notifier]]
name = "chat"
kind = "slack"
url = "https://hooks.slack.com/services/T/B/x"

[[notifier]]
name = "page"
kind = "exec"
argv = ["/etc/consentry/notify.d/page", "--now"]
timeout = "20s"
"#;
        let c = parse(text).unwrap();
        let kinds: Vec<&str> = c.notifiers.iter().map(|n| n.kind.as_str()).collect();
        assert_eq!(kinds, vec!["email", "alertmanager", "slack", "exec"]);
        let bad = r#"
[[notifier]]
name = "mail"
kind = "email"
server = "127.0.0.1"
tls = "sometimes"
from = "not an address"
to = []
url = "http://x/"
subject_firing = "{check} {oops}"

[[notifier]]
name = "page"
kind = "exec"
argv = ["page"]
timeout = "5m"
"#;
        let errs = parse(bad).unwrap_err();
        let at = |line: usize, text: &str| {
            assert!(
                errs.iter()
                    .any(|e| e.line == line && e.column > 0 && e.message.contains(text)),
                "line {line} {text:?}: {errs:?}"
            );
        };
        at(6, "tls \"sometimes\"");
        at(7, "not a mail address");
        at(8, "at least one address");
        at(9, "does not apply to kind \"email\"");
        at(10, "{oops}");
        at(15, "absolute path");
    }

    #[test]
    fn operator_notify() {
        let text = "[operator]\nnotify = [\"pager\"]\n\n[[notifier]]\nname = \"pager\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n";
        assert_eq!(
            parse(text).unwrap().operator_notify,
            vec!["pager".to_string()]
        );
        assert!(parse("").unwrap().operator_notify.is_empty());
        let errs = parse("[operator]\nnotify = [\"nobody\"]\ncolour = 1\n").unwrap_err();
        let got: Vec<(usize, usize)> = errs.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(got, vec![(2, 11), (3, 1)], "{errs:?}");
    }

    #[test]
    fn flap_keys() {
        let check = |keys: &str| {
            format!("[[check]]\nname = \"a\"\nkind = \"tcp\"\nhost = \"h\"\nport = 1\nnotify = []\n{keys}\n")
        };
        /// Thresholds, or the problem's line, column and part of the message.
        type Want = Result<(u8, u8), (usize, usize, &'static str)>;
        let cases: [(&str, Want); 6] = [
            ("", Ok((50, 25))),
            ("flap_high = 40\nflap_low = 20", Ok((40, 20))),
            ("flap_high = 0", Ok((0, 0))),
            ("flap_high = 101", Err((7, 13, "from 0 to 100"))),
            (
                "flap_high = 30\nflap_low = 30",
                Err((8, 12, "must be below")),
            ),
            ("flap_low = -1", Err((7, 12, "from 0 to 100"))),
        ];
        for (keys, want) in cases {
            let got = parse(&check(keys));
            match (got, want) {
                (Ok(c), Ok((high, low))) => {
                    assert_eq!(
                        (c.checks[0].flap.high_pct, c.checks[0].flap.low_pct),
                        (high, low),
                        "{keys}"
                    );
                }
                (Err(errs), Err((line, column, part))) => assert!(
                    errs.iter()
                        .any(|e| e.line == line && e.column == column && e.message.contains(part)),
                    "{keys}: {errs:?}"
                ),
                (got, _) => panic!("{keys}: {got:?}"),
            }
        }
    }

    #[test]
    fn degraded_key() {
        let check = |keys: &str| {
            format!("[[check]]\nname = \"a\"\nkind = \"tcp\"\nhost = \"h\"\nport = 1\nnotify = []\n{keys}\n")
        };
        /// The policy, or the problem's line, column and part of the message.
        type Want = Result<DegradedPolicy, (usize, usize, &'static str)>;
        let cases: [(&str, Want); 5] = [
            ("", Ok(DegradedPolicy::Alert)),
            ("degraded = \"alert\"", Ok(DegradedPolicy::Alert)),
            ("degraded = \"hold\"", Ok(DegradedPolicy::Hold)),
            ("degraded = \"Hold\"", Err((7, 12, "use \"alert\""))),
            ("degraded = 1", Err((7, 12, "expected a string"))),
        ];
        for (keys, want) in cases {
            match (parse(&check(keys)), want) {
                (Ok(c), Ok(policy)) => assert_eq!(c.checks[0].degraded, policy, "{keys}"),
                (Err(errs), Err((line, column, part))) => assert!(
                    errs.iter()
                        .any(|e| e.line == line && e.column == column && e.message.contains(part)),
                    "{keys}: {errs:?}"
                ),
                (got, _) => panic!("{keys}: {got:?}"),
            }
        }
    }

    #[test]
    fn status_ranges() {
        assert_eq!(
            parse_status_ranges("200").unwrap(),
            vec![StatusRange { lo: 200, hi: 200 }]
        );
        assert_eq!(parse_status_ranges("200-299, 301").unwrap().len(), 2);
        for bad in ["", "abc", "300-200", "99", "200-600"] {
            assert!(parse_status_ranges(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod example_tests {
    /// The shipped examples must stay valid: users copy them.
    #[test]
    fn shipped_examples_parse() {
        let checks = include_str!("../../ops/examples/three-sites/checks.toml");
        let c = super::parse(checks).unwrap_or_else(|e| panic!("ops example checks.toml: {e:?}"));
        assert_eq!(c.checks.len(), 4);
        assert_eq!(c.runbooks.len(), 1);
        let agent = include_str!("../../ops/examples/three-sites/agent.toml");
        let a: crate::agent::run::AgentConfig =
            toml::from_str(agent).unwrap_or_else(|e| panic!("ops example agent.toml: {e}"));
        assert_eq!(a.action.len(), 2);
        for (i, text) in [
            include_str!("../../ops/examples/three-sites/node-1.toml"),
            include_str!("../../ops/examples/three-sites/node-2.toml"),
            include_str!("../../ops/examples/three-sites/node-3.toml"),
        ]
        .iter()
        .enumerate()
        {
            let n = crate::config::NodeConfig::parse(text, std::path::Path::new("/etc/consentry"))
                .unwrap_or_else(|e| panic!("ops example node-{}.toml: {e:?}", i + 1));
            assert_eq!(n.initial_members.len(), 3);
            assert_eq!(n.probe, i != 2);
        }
    }
}

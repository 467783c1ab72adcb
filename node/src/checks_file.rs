//! `checks.toml`: checks, notifiers (and later runbooks), parsed once into a validated
//! [`Catalog`]. Every error carries the line and column it refers to.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use consentry_cluster::model::{
    Catalog, CheckSpec, Confirm, Latency, NotifierKind, NotifierSpec, ProbeSpec, Recover,
    StatusRange,
};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::duration::parse_ms;
use crate::position::Position;

/// Largest checks file accepted (a bound on what `apply` will parse).
pub const CHECKS_FILE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Checks in one catalog.
pub const CHECKS_MAX: usize = 20_000;
/// Longest check or notifier name.
pub const NAME_BYTES_MAX: usize = 128;

/// Defaults when neither the check nor `[defaults]` says (see docs/checks.md).
pub const DEFAULT_INTERVAL_MS: u64 = 60_000;
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_CONFIRM_ROUNDS: u32 = 2;
pub const DEFAULT_RECOVER_ROUNDS: u32 = 2;
pub const INTERVAL_MS_MIN: u64 = 1_000;

/// Seed 000's thresholds: HTTP(S) WARNING over 5 s, CRITICAL over 10 s; a plain port
/// WARNING from 6 s, CRITICAL from 11 s.
fn default_latency(kind: &str) -> Latency {
    match kind {
        "http" | "https" => Latency {
            warn_ms: Some(5_000),
            crit_ms: Some(10_000),
        },
        _ => Latency {
            warn_ms: Some(6_000),
            crit_ms: Some(11_000),
        },
    }
}

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
struct RawConfirm {
    sites: Option<i64>,
    rounds: Option<i64>,
}

#[derive(Deserialize, Clone, Copy)]
struct RawRecover {
    rounds: Option<i64>,
}

#[derive(Deserialize)]
struct RawCheck {
    name: Spanned<String>,
    kind: Spanned<String>,
    host: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    url: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
    expect_status: Option<Spanned<String>>,
    body_contains: Option<String>,
    tls_verify: Option<bool>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    latency_warning: Option<Spanned<String>>,
    latency_critical: Option<Spanned<String>>,
    confirm: Option<Spanned<RawConfirm>>,
    recover: Option<Spanned<RawRecover>>,
    notify: Option<Vec<Spanned<String>>>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RawNotifier {
    name: Spanned<String>,
    kind: Spanned<String>,
    url: Option<Spanned<String>>,
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
const CHECK_SCHEMA: Schema = Schema {
    table: "[[check]]",
    keys: &[
        ("name", None),
        ("kind", None),
        ("host", None),
        ("port", None),
        ("url", None),
        ("method", None),
        ("expect_status", None),
        ("body_contains", None),
        ("tls_verify", None),
        ("interval", None),
        ("timeout", None),
        ("latency_warning", None),
        ("latency_critical", None),
        ("confirm", Some(&CONFIRM_SCHEMA)),
        ("recover", Some(&RECOVER_SCHEMA)),
        ("notify", None),
        ("labels", None),
    ],
};
const NOTIFIER_SCHEMA: Schema = Schema {
    table: "[[notifier]]",
    keys: &[("name", None), ("kind", None), ("url", None)],
};
const FILE_SCHEMA: Schema = Schema {
    table: "the top level",
    keys: &[
        ("defaults", Some(&DEFAULTS_SCHEMA)),
        ("check", Some(&CHECK_SCHEMA)),
        ("notifier", Some(&NOTIFIER_SCHEMA)),
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
    for (name, item) in table.iter() {
        let known = schema.keys.iter().find(|(k, _)| *k == name);
        let Some((_, sub)) = known else {
            let span = table
                .key(name)
                .and_then(toml_edit::Key::span)
                .unwrap_or(0..0);
            let p = Position::of_span(text, span);
            let expected: Vec<&str> = schema.keys.iter().map(|(k, _)| *k).collect();
            out.push(Problem {
                line: p.line,
                column: p.column,
                message: format!(
                    "unknown key `{name}` in {}; expected one of: {}",
                    schema.table,
                    expected.join(", ")
                ),
            });
            continue;
        };
        let Some(sub) = sub else { continue };
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

/// Collects problems while resolving one file.
struct Checker<'a> {
    text: &'a str,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn at(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        let p = Position::of_span(self.text, span);
        self.problems.push(Problem {
            line: p.line,
            column: p.column,
            message: message.into(),
        });
    }

    fn duration(&mut self, v: &Spanned<String>, what: &str) -> Option<u64> {
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
    let d_timeout = match &defaults.timeout {
        Some(v) => ck.duration(v, "timeout"),
        None => Some(DEFAULT_TIMEOUT_MS),
    };
    let d_confirm_sites = defaults.confirm.as_ref().and_then(|c| {
        let span = c.span();
        ck.rounds(c.get_ref().sites, span, "confirm.sites")
    });
    let d_confirm_rounds = defaults
        .confirm
        .as_ref()
        .and_then(|c| {
            let span = c.span();
            ck.rounds(c.get_ref().rounds, span, "confirm.rounds")
        })
        .unwrap_or(DEFAULT_CONFIRM_ROUNDS);
    let d_recover_rounds = defaults
        .recover
        .as_ref()
        .and_then(|c| {
            let span = c.span();
            ck.rounds(c.get_ref().rounds, span, "recover.rounds")
        })
        .unwrap_or(DEFAULT_RECOVER_ROUNDS);
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
        match n.kind.get_ref().as_str() {
            "webhook" => match &n.url {
                Some(url) if valid_http_url(url.get_ref()) => notifiers.push(NotifierSpec {
                    name: n.name.get_ref().clone(),
                    kind: NotifierKind::Webhook {
                        url: url.get_ref().clone(),
                    },
                }),
                Some(url) => ck.at(url.span(), format!("url {:?} must start with http:// or https://", url.get_ref())),
                None => ck.at(span, "a webhook notifier needs url = \"http://...\""),
            },
            other => ck.at(
                n.kind.span(),
                format!("unknown notifier kind {other:?}; supported: webhook (slack, email, alertmanager and exec arrive later)"),
            ),
        }
    }

    let mut checks = Vec::new();
    let mut check_names = BTreeSet::new();
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
        let probe = match kind {
            "tcp" => {
                let host = match &c.host {
                    Some(h) if !h.get_ref().trim().is_empty() => Some(h.get_ref().clone()),
                    Some(h) => {
                        ck.at(h.span(), "host must not be empty");
                        None
                    }
                    None => {
                        ck.at(span.clone(), "a tcp check needs host = \"...\"");
                        None
                    }
                };
                let port = match &c.port {
                    Some(p) => match u16::try_from(*p.get_ref()) {
                        Ok(port) if port > 0 => Some(port),
                        _ => {
                            ck.at(
                                p.span(),
                                format!("port must be 1-65535, got {}", p.get_ref()),
                            );
                            None
                        }
                    },
                    None => {
                        ck.at(span.clone(), "a tcp check needs port = N");
                        None
                    }
                };
                host.zip(port)
                    .map(|(host, port)| ProbeSpec::Tcp { host, port })
            }
            "http" | "https" => {
                let url = match &c.url {
                    Some(u) if valid_http_url(u.get_ref()) => Some(u.get_ref().clone()),
                    Some(u) => {
                        ck.at(
                            u.span(),
                            format!("url {:?} must start with http:// or https://", u.get_ref()),
                        );
                        None
                    }
                    None => {
                        ck.at(
                            span.clone(),
                            format!("a {kind} check needs url = \"http://...\""),
                        );
                        None
                    }
                };
                let method = match &c.method {
                    None => Some("GET".to_string()),
                    Some(m) => match m.get_ref().to_ascii_uppercase().as_str() {
                        "GET" => Some("GET".into()),
                        "HEAD" => Some("HEAD".into()),
                        _ => {
                            ck.at(
                                m.span(),
                                format!("method {:?}: use GET or HEAD", m.get_ref()),
                            );
                            None
                        }
                    },
                };
                let expect = match &c.expect_status {
                    None => Some(vec![StatusRange { lo: 200, hi: 399 }]),
                    Some(s) => match parse_status_ranges(s.get_ref()) {
                        Ok(r) => Some(r),
                        Err(e) => {
                            ck.at(s.span(), e);
                            None
                        }
                    },
                };
                match (url, method, expect) {
                    (Some(url), Some(method), Some(expect_status)) => Some(ProbeSpec::Http {
                        url,
                        method,
                        expect_status,
                        body_contains: c.body_contains.clone(),
                        tls_verify: c.tls_verify.unwrap_or(true),
                    }),
                    _ => None,
                }
            }
            other => {
                ck.at(
                    c.kind.span(),
                    format!("unknown check kind {other:?}; supported now: tcp, http, https"),
                );
                None
            }
        };
        let interval_ms = match &c.interval {
            Some(v) => ck.duration(v, "interval"),
            None => d_interval,
        };
        let timeout_ms = match &c.timeout {
            Some(v) => ck.duration(v, "timeout"),
            None => d_timeout,
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
        let timeout_ms = timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        let mut latency = default_latency(kind);
        if let Some(v) = &c.latency_warning {
            latency.warn_ms = ck.duration(v, "latency_warning");
        }
        if let Some(v) = &c.latency_critical {
            latency.crit_ms = ck.duration(v, "latency_critical");
        }
        let confirm_sites = c
            .confirm
            .as_ref()
            .and_then(|v| {
                let s = v.span();
                ck.rounds(v.get_ref().sites, s, "confirm.sites")
            })
            .or(d_confirm_sites);
        let confirm_rounds = c
            .confirm
            .as_ref()
            .and_then(|v| {
                let s = v.span();
                ck.rounds(v.get_ref().rounds, s, "confirm.rounds")
            })
            .unwrap_or(d_confirm_rounds);
        let recover_rounds = c
            .recover
            .as_ref()
            .and_then(|v| {
                let s = v.span();
                ck.rounds(v.get_ref().rounds, s, "recover.rounds")
            })
            .unwrap_or(d_recover_rounds);
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
            });
        }
    }
    if ck.problems.is_empty() {
        Ok(Catalog { checks, notifiers })
    } else {
        ck.problems.sort_by_key(|p| (p.line, p.column));
        Err(ck.problems)
    }
}

fn valid_http_url(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://"))
        && s.len() > "https://".len()
        && !s.contains(char::is_whitespace)
}

/// Parses `"200-399"`, `"200,301-302"`.
fn parse_status_ranges(s: &str) -> Result<Vec<StatusRange>, String> {
    let bad =
        || format!("expect_status {s:?}: use codes and ranges like \"200-399\" or \"200,301-302\"");
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let lo: u16 = lo.parse().map_err(|_| bad())?;
        let hi: u16 = hi.parse().map_err(|_| bad())?;
        if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
            return Err(bad());
        }
        out.push(StatusRange { lo, hi });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(c.checks.len(), 2);
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

//! The monitoring of the monitor: the Prometheus rules, their unit tests and the example
//! Prometheus configuration pass `promtool`, and the Grafana dashboard and the rules use
//! only metric names the node exports (the `"consentry_..."` literals of
//! node/src/metrics.rs), every one of which docs/metrics.md documents. Every alert has a
//! `for`, a page or ticket severity, a runbook that names a section of
//! docs/operations.md, and a case in the promtool unit tests that makes it fire.
//!
//! promtool comes from the Debian package `prometheus`; without it the promtool part
//! skips (fails under `CONSENTRY_E2E_REQUIRED=1`). The static checks need nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{run_with_deadline, skip_unless_required};
use crate::servers::{Unavailable, PROMTOOL_DEADLINE};

const RULES: &str = "ops/prometheus/consentry-alerts.yml";
const RULES_TEST: &str = "ops/prometheus/consentry-alerts.test.yml";
const PROMETHEUS_CONFIG: &str = "ops/prometheus/prometheus.yml";
const DASHBOARD: &str = "ops/grafana/consentry.json";
const METRICS_RS: &str = "node/src/metrics.rs";
const METRICS_DOC: &str = "docs/metrics.md";
const OPERATIONS_DOC: &str = "docs/operations.md";

/// Suffixes the exporter appends to a summary's or histogram's name.
const SERIES_SUFFIXES: [&str; 3] = ["_sum", "_count", "_bucket"];
/// Panel types built into Grafana that the dashboard may use.
const PANEL_TYPES: [&str; 6] = [
    "row",
    "timeseries",
    "stat",
    "state-timeline",
    "table",
    "bargauge",
];
const DASHBOARD_VARIABLES: [&str; 4] = ["datasource", "instance", "check", "site"];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the workspace root")
}

fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Runs `promtool args...` from the workspace root and panics with its output on failure.
fn promtool(promtool: &Path, args: &[&str]) {
    info!("promtool {}", args.join(" "));
    let out = run_with_deadline(
        Command::new(promtool).args(args).current_dir(repo_root()),
        None,
        PROMTOOL_DEADLINE,
    );
    eprint!("{}{}", out.stdout, out.stderr);
    out.expect_success();
}

#[test]
fn rules_and_prometheus_config_pass_promtool() {
    let promtool_bin = match crate::servers::promtool() {
        Ok(p) => p,
        Err(Unavailable(reason)) => {
            skip_unless_required(&reason);
            return;
        }
    };
    promtool(&promtool_bin, &["check", "rules", RULES]);
    promtool(&promtool_bin, &["test", "rules", RULES_TEST]);
    // Relative `rule_files` resolve from the config file's directory, so this also
    // checks the rules file it loads.
    promtool(&promtool_bin, &["check", "config", PROMETHEUS_CONFIG]);
}

/// Metric names the node exports: the `"consentry_..."` string literals of metrics.rs.
fn exported_metrics() -> BTreeSet<String> {
    let src = read(METRICS_RS);
    let mut names = BTreeSet::new();
    let mut rest = src.as_str();
    while let Some(at) = rest.find("\"consentry_") {
        let lit = &rest[at + 1..];
        let end = lit
            .find('"')
            .expect("a closed string literal in metrics.rs");
        let name = &lit[..end];
        if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.insert(name.to_owned());
        }
        rest = &lit[end + 1..];
    }
    assert!(
        names.len() >= 10,
        "found only {names:?} in {METRICS_RS}; did its layout change?"
    );
    names
}

/// Every identifier-like token of `text` (PromQL names: letters, digits, `_`, `:`).
fn tokens(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| !t.is_empty())
        .collect()
}

/// `consentry_*` metric names used in `text`; recorded series (`level:name:op`) are
/// returned in the second set.
fn used_names(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut metrics = BTreeSet::new();
    let mut recorded = BTreeSet::new();
    for t in tokens(text) {
        if t.contains(':') {
            if t.contains(":consentry_") {
                recorded.insert(t.to_owned());
            }
        } else if t.starts_with("consentry_") {
            metrics.insert(t.to_owned());
        }
    }
    (metrics, recorded)
}

fn is_exported(name: &str, exported: &BTreeSet<String>) -> bool {
    exported.contains(name)
        || SERIES_SUFFIXES.iter().any(|s| {
            name.strip_suffix(s)
                .is_some_and(|base| exported.contains(base))
        })
}

/// `record:` names defined in the rules file.
fn recording_rules(rules: &str) -> BTreeSet<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record:"))
        .map(|n| n.trim().to_owned())
        .collect()
}

/// The rules file's alerting rules: name and the text of the rule.
fn alert_blocks(rules: &str) -> BTreeMap<String, String> {
    let mut blocks = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in rules.lines() {
        let trimmed = line.trim();
        let starts_rule = trimmed.starts_with("- alert:") || trimmed.starts_with("- record:");
        let starts_group = trimmed.starts_with("- name:");
        if starts_rule || starts_group {
            if let Some((name, text)) = current.take() {
                blocks.insert(name, text);
            }
        }
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            current = Some((name.trim().to_owned(), String::new()));
        }
        if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    if let Some((name, text)) = current {
        blocks.insert(name, text);
    }
    blocks
}

/// GitHub's anchors for the headings of a Markdown file.
fn heading_anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

/// Every panel, rows' nested panels included.
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

fn check_dashboard(dashboard: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if dashboard["schemaVersion"] != 39 {
        problems.push(format!(
            "schemaVersion is {}, not 39",
            dashboard["schemaVersion"]
        ));
    }
    let variables: BTreeSet<&str> = dashboard["templating"]["list"]
        .as_array()
        .map(|l| l.iter().filter_map(|v| v["name"].as_str()).collect())
        .unwrap_or_default();
    for v in DASHBOARD_VARIABLES {
        if !variables.contains(v) {
            problems.push(format!("no template variable `{v}`"));
        }
    }
    let mut ids = BTreeSet::new();
    let mut cells: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for p in all_panels(dashboard) {
        let title = p["title"].as_str().unwrap_or("(untitled)");
        let kind = p["type"].as_str().unwrap_or("");
        match p["id"].as_u64() {
            Some(id) if !ids.insert(id) => problems.push(format!("panel id {id} repeats")),
            Some(_) => {}
            None => problems.push(format!("panel {title:?} has no numeric id")),
        }
        if !PANEL_TYPES.contains(&kind) {
            problems.push(format!("panel {title:?} has type {kind:?}"));
        }
        let g = &p["gridPos"];
        let [Some(x), Some(y), Some(w), Some(h)] = ["x", "y", "w", "h"].map(|k| g[k].as_u64())
        else {
            problems.push(format!("panel {title:?} has no complete gridPos"));
            continue;
        };
        if x + w > 24 {
            problems.push(format!("panel {title:?} is wider than the grid"));
        }
        for cx in x..x + w {
            for cy in y..y + h {
                if let Some(other) = cells.insert((cx, cy), title.to_owned()) {
                    problems.push(format!("panels {other:?} and {title:?} overlap"));
                }
            }
        }
        if kind == "row" {
            continue;
        }
        if p["datasource"]["uid"] != "${datasource}" {
            problems.push(format!(
                "panel {title:?} does not use the datasource variable"
            ));
        }
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if targets.is_empty() {
            problems.push(format!("panel {title:?} has no query"));
        }
        for t in targets {
            if t["datasource"]["uid"] != "${datasource}" {
                problems.push(format!(
                    "a query of {title:?} does not use the datasource variable"
                ));
            }
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

/// Indentation of a line: its leading spaces.
fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// A YAML line without its comment (a `#` at the start or after a space, outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if prev == ' ' || prev == '\t' => return &line[..i],
            _ => {}
        }
        prev = c;
    }
    line
}

/// The value of `key:` if `line` (without its indentation) is that key.
fn key_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.trim()
        .strip_prefix(key)
        .and_then(|rest| rest.strip_prefix(':'))
        .map(str::trim)
}

/// Alerts that a promtool test file expects to fire: the `alertname` of every entry of an
/// `alert_rule_test` list whose `exp_alerts` is not empty. Line-based: block-style YAML as
/// promtool test files are written (a flow sequence other than `[]` counts as non-empty).
fn alerts_expected_to_fire(tests: &str) -> BTreeSet<String> {
    /// One `alert_rule_test` entry: its lines, the entry's `- ` replaced by spaces.
    fn fires(entry: &[String]) -> Option<String> {
        let key_indent = entry.iter().map(|l| indent(l)).min()?;
        let mut name = None;
        let mut non_empty = false;
        for (i, line) in entry.iter().enumerate() {
            if indent(line) != key_indent {
                continue;
            }
            if let Some(v) = key_value(line, "alertname") {
                name = Some(v.trim_matches(|c| c == '"' || c == '\'').to_owned());
            }
            if let Some(v) = key_value(line, "exp_alerts") {
                non_empty = match v.replace(' ', "").as_str() {
                    "" => entry[i + 1..]
                        .iter()
                        .take_while(|l| indent(l) > key_indent || l.trim_start().starts_with('-'))
                        .any(|l| l.trim_start().starts_with('-')),
                    "[]" | "~" | "null" => false,
                    _ => true,
                };
            }
        }
        name.filter(|n| non_empty && !n.is_empty())
    }

    let mut fired = BTreeSet::new();
    // The indentation of `alert_rule_test:` while inside its list, and the entry being read.
    let mut section: Option<usize> = None;
    let mut entry: Vec<String> = Vec::new();
    let mut entry_dash: Option<usize> = None;
    for raw in tests.lines() {
        let line = strip_comment(raw).trim_end();
        if line.trim().is_empty() {
            continue;
        }
        let at = indent(line);
        if let Some(key_at) = section {
            let in_list = at > key_at || (at == key_at && line.trim_start().starts_with("- "));
            if !in_list {
                fired.extend(fires(&entry));
                entry.clear();
                entry_dash = None;
                section = None;
            } else {
                let dash = entry_dash.get_or_insert(at);
                if at == *dash && line.trim_start().starts_with('-') {
                    fired.extend(fires(&entry));
                    entry.clear();
                    // `-   key: v` -> `    key: v`: the entry's keys line up.
                    let after = line[at + 1..].trim_start_matches(' ');
                    entry.push(format!("{}{after}", " ".repeat(line.len() - after.len())));
                } else {
                    entry.push(line.to_owned());
                }
                continue;
            }
        }
        if key_value(line, "alert_rule_test") == Some("") {
            section = Some(at);
        }
    }
    fired.extend(fires(&entry));
    fired
}

#[test]
fn alerts_expected_to_fire_reads_promtool_test_entries() {
    let tests = r#"
rule_files:
  - rules.yml
tests:
  - name: one
    input_series:
      - series: 'up{job="consentry"}'
        values: '0x10'
    alert_rule_test:
      # A comment: exp_alerts: [] alertname: Commented
      - eval_time: 1m
        alertname: Quiet
        exp_alerts: []
      - eval_time: 5m
        alertname: "Fires" # quoted, with a comment
        exp_alerts:
          - exp_labels:
              severity: page
      - exp_alerts:
        - exp_labels: {severity: ticket}
        alertname: KeysInAnotherOrder
        eval_time: 5m
      -   eval_time: 5m
          alertname: Flow
          exp_alerts: [{exp_labels: {severity: page}}]
      - eval_time: 5m
        alertname: NoExpAlerts
  - name: two
    alert_rule_test:
    - eval_time: 1m
      alertname: CompactList
      exp_alerts:
      - exp_labels:
          severity: page
    - eval_time: 1m
      alertname: EmptyWithSpace
      exp_alerts: [ ]
    promql_expr_test:
      - expr: up
        eval_time: 1m
        exp_samples:
          - labels: 'up'
            value: 0
  - name: three
    alert_rule_test:
      - eval_time: 1m
        alertname: LastEntry
        exp_alerts:
          - exp_labels:
              severity: ticket
"#;
    let fired: Vec<String> = alerts_expected_to_fire(tests).into_iter().collect();
    assert_eq!(
        fired,
        [
            "CompactList",
            "Fires",
            "Flow",
            "KeysInAnotherOrder",
            "LastEntry"
        ]
    );
}

fn check_alerts(rules: &str, rules_test: &str, anchors: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let alerts = alert_blocks(rules);
    if alerts.len() < 14 {
        problems.push(format!("only {} alerts in {RULES}", alerts.len()));
    }
    let fired = alerts_expected_to_fire(rules_test);
    let untested: Vec<&str> = alerts
        .keys()
        .filter(|name| !fired.contains(*name))
        .map(String::as_str)
        .collect();
    if !untested.is_empty() {
        problems.push(format!(
            "{} alert(s) of {RULES} have no case in {RULES_TEST} that makes them fire \
             (an alert_rule_test entry with that alertname and a non-empty exp_alerts): {}",
            untested.len(),
            untested.join(", ")
        ));
    }
    for (name, block) in &alerts {
        let has = |key: &str| block.lines().any(|l| l.trim().starts_with(key));
        for key in ["for:", "summary:", "description:", "runbook:"] {
            if !has(key) {
                problems.push(format!("alert {name} has no `{key}`"));
            }
        }
        if !(has("severity: page") || has("severity: ticket")) {
            problems.push(format!("alert {name} has no `severity: page|ticket`"));
        }
        for line in block.lines() {
            let Some(runbook) = line.trim().strip_prefix("runbook:") else {
                continue;
            };
            let runbook = runbook.trim().trim_matches('"');
            match runbook.split_once('#') {
                Some((OPERATIONS_DOC, anchor)) if anchors.contains(anchor) => {}
                _ => problems.push(format!(
                    "alert {name}'s runbook {runbook:?} is not a section of {OPERATIONS_DOC}"
                )),
            }
        }
    }
    problems
}

#[test]
fn dashboard_and_rules_use_only_exported_metrics() {
    let exported = exported_metrics();
    let rules = read(RULES);
    let rules_test = read(RULES_TEST);
    let dashboard_text = read(DASHBOARD);
    let dashboard: Value = serde_json::from_str(&dashboard_text)
        .unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"));
    let mut problems = Vec::new();

    info!("the dashboard: schema, variables, unique panel ids, layout, datasource");
    problems.extend(check_dashboard(&dashboard));

    info!(
        "every alert: for, severity, summary, description, a runbook section that exists, \
         a unit test in {RULES_TEST} that makes it fire"
    );
    problems.extend(check_alerts(
        &rules,
        &rules_test,
        &heading_anchors(&read(OPERATIONS_DOC)),
    ));

    info!(
        "every consentry_* name in the rules, their tests and the dashboard is one of the {} in {METRICS_RS}",
        exported.len()
    );
    let recorded = recording_rules(&rules);
    for (file, text) in [
        (RULES, &rules),
        (RULES_TEST, &rules_test),
        (DASHBOARD, &dashboard_text),
    ] {
        let (metrics, recorded_used) = used_names(text);
        for m in metrics {
            if !is_exported(&m, &exported) {
                problems.push(format!("{file} uses {m}, which {METRICS_RS} does not name"));
            }
        }
        for r in recorded_used {
            if !recorded.contains(&r) {
                problems.push(format!(
                    "{file} uses the recorded series {r}, which {RULES} does not record"
                ));
            }
        }
    }

    info!("every exported metric is documented in {METRICS_DOC}");
    let doc = read(METRICS_DOC);
    for m in &exported {
        if !doc.contains(&format!("`{m}`")) {
            problems.push(format!("{METRICS_DOC} does not document {m}"));
        }
    }

    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

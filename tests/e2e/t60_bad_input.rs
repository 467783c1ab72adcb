//! Bad input is reported with positions and changes nothing: `validate` lists every error
//! with line and column, `apply` and `PUT /api/v1/checks` refuse invalid files and missing
//! or wrong tokens, and the replicated checks stay as they were.

use std::fs;
use std::ops::RangeInclusive;
use std::path::Path;

use serde_json::Value;

use crate::harness::{
    hold_for, ChecksFile, Receiver, Target, World, WorldOptions, CHECKS_OK_TIMEOUT, FORM_TIMEOUT,
    SETTLE,
};

/// A checks file with four independent mistakes, one line per entry.
const BAD_LINES: &[&str] = &[
    "[defaults]",
    "interval = \"1s\"",
    "timeout = \"5 parsecs\"",
    "",
    "[[check]]",
    "name = \"good-one\"",
    "kind = \"tcp\"",
    "host = \"127.0.0.1\"",
    "port = 9",
    "colour = \"blue\"",
    "",
    "[[check]]",
    "name = \"no-url\"",
    "kind = \"http\"",
    "expect_status = \"200-399\"",
    "",
    "[[check]]",
    "name = \"weird\"",
    "kind = \"gopher\"",
    "host = \"127.0.0.1\"",
];

/// One mistake the report must contain: where (a line range and, when the position is
/// unambiguous, the accepted columns, 1-based) and a word the message must mention.
struct Expected {
    what: &'static str,
    lines: RangeInclusive<usize>,
    /// Empty: any column.
    columns: Vec<usize>,
    keywords: &'static [&'static str],
}

/// One reported error.
#[derive(Debug, Clone)]
struct Reported {
    line: usize,
    column: usize,
    message: String,
}

/// Offline: `validate` passes a good file, and for a file with four independent mistakes
/// prints each as `checks.toml:LINE:COLUMN: message` and exits 1.
#[test]
fn validate_reports_every_error_with_its_position() {
    let world = World::new();
    let receiver = Receiver::start(&world.handle());
    let good = ChecksFile::new()
        .http("web", "http://127.0.0.1:9/health")
        .tcp("db", 9)
        .webhook(receiver.url());
    let good_dir = write_checks(world.root(), "good", &good.render());
    let bad_dir = write_checks(world.root(), "bad", &bad_text());

    info!("validate is offline: a good file passes");
    world
        .cli_in(&good_dir, &["validate", "-f", "checks.toml"], &[])
        .expect_success();

    info!("validate must report each of the four mistakes as checks.toml:LINE:COLUMN: message and exit 1");
    let out = world.cli_in(&bad_dir, &["validate", "-f", "checks.toml"], &[]);
    info!("validate printed:\n{}", out.stderr.trim_end());
    assert_eq!(
        out.code,
        Some(1),
        "validate of a bad file exits 1: {}",
        out.describe()
    );
    assert_reports_all(&parse_cli_errors(&out.stderr), &out.describe());
}

/// Against a running cluster: `apply` of an invalid file fails with positioned errors,
/// `PUT /api/v1/checks` answers 400 `invalid_config` (every mistake in `details`) and 401
/// `unauthorized` without a valid token, and the replicated checks never change.
#[test]
fn refused_writes_change_nothing() {
    let world = World::three_nodes(&WorldOptions::default());
    let receiver = Receiver::start(&world.handle());
    let web = Target::http(&world.handle(), None);
    let db = Target::tcp(&world.handle());
    let good = ChecksFile::new()
        .http("web", &web.url())
        .tcp("db", db.port())
        .webhook(receiver.url());
    let good_dir = write_checks(world.root(), "good", &good.render());
    let bad_dir = write_checks(world.root(), "bad", &bad_text());
    // What a typo or an intruder would add if a refused write slipped through.
    let sneaky = good.clone().tcp("sneaky", 9).render();
    let sneaky_dir = write_checks(world.root(), "sneaky", &sneaky);

    info!("form the cluster and apply the good file with --token-file");
    let leader = world.wait_formed(FORM_TIMEOUT).node_id;
    let leader_api = world.api(leader);
    let token_file = world.token_file().to_string_lossy().into_owned();
    let apply_good = [
        "apply",
        "-f",
        "checks.toml",
        "--token-file",
        &token_file,
        "--api",
        &leader_api,
    ];
    world.cli_in(&good_dir, &apply_good, &[]).expect_success();
    world.wait_checks_ok(&["web", "db"], CHECKS_OK_TIMEOUT);
    let baseline = world.wait(
        "every node to serve the applied checks",
        CHECKS_OK_TIMEOUT,
        || {
            let lists: Vec<Value> = (1..=3)
                .map(|id| checks_list(&world, id))
                .collect::<Result<_, _>>()?;
            if names(&lists[0]) != ["db", "web"] || lists.iter().any(|l| *l != lists[0]) {
                return Err(format!("checks per node: {lists:?}"));
            }
            Ok(lists[0].clone())
        },
    );

    info!("apply of the bad file with a valid token must fail and print positioned errors");
    let out = world.cli_in(
        &bad_dir,
        &["apply", "-f", "checks.toml", "--api", &leader_api],
        &[("CONSENTRY_TOKEN", world.token())],
    );
    info!("apply printed:\n{}", out.stderr.trim_end());
    assert!(
        !out.success(),
        "apply of an invalid file must fail: {}",
        out.describe()
    );
    assert!(
        !parse_cli_errors(&out.stderr).is_empty(),
        "apply must print the errors as checks.toml:LINE:COLUMN: message: {}",
        out.describe()
    );

    info!("PUT of the bad file with a valid token must answer 400 invalid_config with positioned details");
    let url = format!("{leader_api}/api/v1/checks");
    let (code, body) = world
        .http_put(&url, Some(world.token()), &bad_text())
        .expect("PUT answers");
    assert_eq!(code, 400, "PUT of an invalid file: {body}");
    let error = error_object(&body);
    assert_eq!(error["code"], "invalid_config", "error code: {body}");
    assert!(error["message"].is_string(), "error message: {body}");
    let details: Vec<Reported> = error["details"]
        .as_array()
        .unwrap_or_else(|| panic!("error.details is not an array: {body}"))
        .iter()
        .map(|d| Reported {
            line: d["line"].as_u64().unwrap_or(0) as usize,
            column: d["column"].as_u64().unwrap_or(0) as usize,
            message: d["message"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    assert!(
        details.iter().any(|d| d.line > 0 && d.column > 0),
        "details carry line and column: {body}"
    );

    info!("a write without the token, or with a wrong one, must answer 401 unauthorized");
    for token in [None, Some("not-the-token")] {
        let (code, body) = world.http_put(&url, token, &sneaky).expect("PUT answers");
        assert_eq!(code, 401, "PUT with token {token:?}: {body}");
        assert_eq!(
            error_object(&body)["code"],
            "unauthorized",
            "PUT with token {token:?}: {body}"
        );
    }
    let out = world.cli_in(
        &sneaky_dir,
        &["apply", "-f", "checks.toml", "--api", &leader_api],
        &[("CONSENTRY_TOKEN", "not-the-token")],
    );
    info!(
        "apply with a wrong token printed: {}",
        out.stderr.trim_end()
    );
    assert!(
        !out.success(),
        "apply with a wrong token must fail: {}",
        out.describe()
    );

    info!("after all refused writes, every node still serves exactly the checks applied before");
    hold_for("checks unchanged on every node", SETTLE, || {
        world.ensure_alive();
        for id in 1..=3 {
            let list = checks_list(&world, id)?;
            if list != baseline {
                return Err(format!("node {id} now serves {list}, before {baseline}"));
            }
        }
        Ok(())
    });

    info!("the 400 named every mistake, as validate must");
    assert_reports_all(&details, &body);
}

fn bad_text() -> String {
    BAD_LINES.join("\n") + "\n"
}

fn write_checks(root: &Path, dir: &str, text: &str) -> std::path::PathBuf {
    let dir = root.join(dir);
    fs::create_dir_all(&dir).expect("create checks dir");
    fs::write(dir.join("checks.toml"), text).expect("write checks.toml");
    dir
}

/// 1-based number of the first line of `BAD_LINES` that starts with `prefix`.
fn line_of(prefix: &str) -> usize {
    BAD_LINES
        .iter()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in BAD_LINES"))
        + 1
}

fn expected_errors() -> Vec<Expected> {
    let no_url = line_of("name = \"no-url\"");
    vec![
        Expected {
            what: "unknown key `colour`",
            lines: line_of("colour")..=line_of("colour"),
            columns: vec![1],
            keywords: &["colour"],
        },
        Expected {
            what: "bad duration `timeout = \"5 parsecs\"`",
            lines: line_of("timeout")..=line_of("timeout"),
            // The key, the opening quote, or the first character of the value.
            columns: vec![1, 11, 12],
            keywords: &["timeout", "duration", "5 parsecs"],
        },
        Expected {
            what: "missing `url` in check \"no-url\"",
            // Anywhere from its [[check]] header to its last key.
            lines: (no_url - 1)..=(no_url + 2),
            columns: vec![],
            keywords: &["url"],
        },
        Expected {
            what: "unknown kind \"gopher\"",
            lines: line_of("kind = \"gopher\"")..=line_of("kind = \"gopher\""),
            columns: vec![1, 8, 9],
            keywords: &["gopher", "kind"],
        },
    ]
}

/// Lines `checks.toml:LINE:COLUMN: message` from a CLI's output.
fn parse_cli_errors(text: &str) -> Vec<Reported> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("checks.toml:")?;
            let (line_no, rest) = rest.split_once(':')?;
            let (column, message) = rest.split_once(':')?;
            Some(Reported {
                line: line_no.trim().parse().ok()?,
                column: column.trim().parse().ok()?,
                message: message.trim().to_owned(),
            })
        })
        .collect()
}

/// Every expected mistake must be among `reported`, at its place, with its word.
fn assert_reports_all(reported: &[Reported], context: &str) {
    let mut missing = Vec::new();
    for expected in expected_errors() {
        let found = reported.iter().any(|r| {
            let message = r.message.to_lowercase();
            expected.lines.contains(&r.line)
                && (expected.columns.is_empty() || expected.columns.contains(&r.column))
                && expected.keywords.iter().any(|k| message.contains(k))
        });
        if !found {
            missing.push(format!(
                "{} (line {:?}, column one of {:?}, message naming one of {:?})",
                expected.what, expected.lines, expected.columns, expected.keywords
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "not reported:\n  {}\nreported errors: {reported:#?}\nfrom: {context}",
        missing.join("\n  ")
    );
}

/// The `error` object of an API error body.
fn error_object(body: &str) -> Value {
    let value: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {body}"));
    let error = value.get("error").cloned().unwrap_or(Value::Null);
    assert!(error.is_object(), "no `error` object in {body}");
    error
}

/// GET /api/v1/checks on node `id`: the checks array (bare, or under `checks`).
fn checks_list(world: &World, id: u64) -> Result<Value, String> {
    let url = format!("{}/api/v1/checks", world.api(id));
    let (code, body) = world.http_get(&url)?;
    if code != 200 {
        return Err(format!("GET {url}: {code} {body}"));
    }
    let value: Value =
        serde_json::from_str(&body).map_err(|e| format!("GET {url}: not JSON ({e}): {body}"))?;
    let list = match value {
        Value::Array(_) => value,
        Value::Object(ref map) => map
            .get("checks")
            .filter(|c| c.is_array())
            .cloned()
            .ok_or_else(|| format!("GET {url}: no checks array in {body}"))?,
        _ => return Err(format!("GET {url}: unexpected {body}")),
    };
    Ok(list)
}

/// Sorted check names of a checks array.
fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

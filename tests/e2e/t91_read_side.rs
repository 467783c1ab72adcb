//! The read side on a live cluster: `/metrics` passes `promtool check metrics` and its
//! per-check series stay bounded as checks grow; an outage shows up in the availability
//! report, the per-result CSV and the latency series; `?consistent=true` reads through the
//! leader from a follower; errors are JSON with a code.

use serde_json::Value;

use crate::harness::{
    run_with_deadline, skip_unless_required, wait_until, ChecksFile, Receiver, Target, World,
    WorldOptions, CHECKS_OK_TIMEOUT, FORM_TIMEOUT,
};

/// Checks that get per-check series in this test's node.toml.
const CHECKS_MAX: usize = 10;

fn metrics_text(world: &World, id: u64) -> String {
    let (code, body) = world
        .http_get(&format!("{}/metrics", world.api(id)))
        .expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    body
}

/// Series of `name` (sample lines, not comments).
fn series<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .collect()
}

/// Every label key used by consentry's own series.
fn label_keys(text: &str) -> std::collections::BTreeSet<String> {
    let mut keys = std::collections::BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("consentry_")) {
        let Some(open) = line.find('{') else { continue };
        let Some(close) = line.rfind('}') else {
            continue;
        };
        for pair in line[open + 1..close].split("\",") {
            if let Some((k, _)) = pair.split_once('=') {
                keys.insert(k.trim().to_string());
            }
        }
    }
    keys
}

fn promtool_check(promtool: &std::path::Path, text: &str) {
    let out = run_with_deadline(
        std::process::Command::new(promtool).args(["check", "metrics"]),
        Some(text.as_bytes()),
        crate::servers::PROMTOOL_DEADLINE,
    );
    assert!(
        out.success(),
        "promtool check metrics failed:\n{}\n--- metrics ---\n{text}",
        out.describe()
    );
}

fn tcp_checks(n: usize, port: u16, hook: &str) -> String {
    let mut f = ChecksFile::new().webhook(hook);
    for i in 0..n {
        f = f.tcp(&format!("svc-{i:03}"), port);
    }
    f.render()
}

#[test]
fn metrics_pass_promtool_and_per_check_series_stay_bounded() {
    let promtool = match crate::servers::promtool() {
        Ok(p) => p,
        Err(crate::servers::Unavailable(reason)) => {
            skip_unless_required(&reason);
            return;
        }
    };
    let world = World::three_nodes(&WorldOptions {
        extra_config: format!("[metrics]\nchecks_max = {CHECKS_MAX}\n"),
        ..WorldOptions::default()
    });
    let target = Target::tcp(&world.handle());
    let receiver = Receiver::start(&world.handle());
    world.wait_formed(FORM_TIMEOUT);

    info!("4 checks: every one has a status and latency series per probing site");
    world
        .apply(&tcp_checks(4, target.port(), receiver.url()))
        .expect_success();
    let names: Vec<String> = (0..4).map(|i| format!("svc-{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    world.wait_checks_ok(&refs, CHECKS_OK_TIMEOUT);
    let leader = world.leader();
    let text = metrics_text(&world, leader);
    promtool_check(&promtool, &text);
    assert_eq!(
        series(&text, "consentry_check_status").len(),
        4 * 2,
        "{text}"
    );
    assert_eq!(series(&text, "consentry_check_verdict").len(), 4);
    assert!(text.contains("consentry_check_verdict{check=\"svc-000\"} 0"));
    assert!(text.contains("consentry_metrics_checks_omitted 0"));
    assert!(!series(&text, "consentry_raft_replication_lag_entries").is_empty());
    assert!(text.contains("consentry_cluster_members{role=\"voter\"} 3"));

    for n in [25, 60] {
        info!("{n} checks: per-check series stop at checks_max = {CHECKS_MAX}");
        world
            .apply(&tcp_checks(n, target.port(), receiver.url()))
            .expect_success();
        // Every check of the grown catalog has results: more checks than the limit report.
        let names: Vec<String> = (0..n).map(|i| format!("svc-{i:03}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        world.wait_checks_ok(&refs, CHECKS_OK_TIMEOUT);
        let text = wait_until("the grown catalog on /metrics", CHECKS_OK_TIMEOUT, || {
            let text = metrics_text(&world, leader);
            text.contains(&format!("consentry_checks {n}"))
                .then_some(text)
                .ok_or_else(|| "not yet".to_string())
        });
        promtool_check(&promtool, &text);
        assert!(
            text.contains(&format!(
                "consentry_metrics_checks_omitted {}",
                n - CHECKS_MAX
            )),
            "{text}"
        );
        let status = series(&text, "consentry_check_status");
        // Exactly the first checks_max checks by name, at each probing site, though all n
        // have results.
        assert_eq!(status.len(), CHECKS_MAX * 2, "{status:?}");
        // The bounded labels: check names of the first checks_max checks, sites, node ids
        // and small fixed sets; never a URL, message or incident id.
        let keys = label_keys(&text);
        let allowed = [
            "check", "site", "kind", "status", "outcome", "role", "peer", "quantile",
        ];
        assert!(
            keys.iter().all(|k| allowed.contains(&k.as_str())),
            "unexpected label keys {keys:?}"
        );
        assert!(
            !text.contains("svc-059"),
            "a check past the limit has series"
        );
        assert!(
            !text.contains(&format!("\"svc-{CHECKS_MAX:03}\"")),
            "the first check past the limit has series"
        );
        let labelled: std::collections::BTreeSet<&str> = status
            .iter()
            .filter_map(|l| l.split("check=\"").nth(1)?.split('"').next())
            .collect();
        let first: std::collections::BTreeSet<String> =
            (0..CHECKS_MAX).map(|i| format!("svc-{i:03}")).collect();
        assert_eq!(
            labelled,
            first.iter().map(String::as_str).collect(),
            "the series are the first checks_max checks by name"
        );
    }
}

fn get_json(world: &World, url: &str) -> (u16, Value) {
    let (code, body) = world.http_get(url).expect("GET");
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"));
    (code, v)
}

#[test]
fn an_outage_reaches_the_report_the_csv_and_the_series() {
    let world = World::three_nodes(&WorldOptions::default());
    let web = Target::http(&world.handle(), None);
    let receiver = Receiver::start(&world.handle());
    world.wait_formed(FORM_TIMEOUT);
    world
        .apply(
            &ChecksFile::new()
                .http("web", &web.url())
                .webhook(receiver.url())
                .render(),
        )
        .expect_success();
    world.wait_checks_ok(&["web"], CHECKS_OK_TIMEOUT);

    info!("an outage both sites agree on, then recovery");
    web.stop();
    let incident = world.wait_one_open_incident("web", crate::harness::alert_deadline());
    web.resume();
    world.wait_incident_closed(&incident.id(), crate::harness::alert_deadline());

    let leader = world.leader();
    let follower = world
        .running_members()
        .into_iter()
        .find(|id| *id != leader)
        .unwrap();
    let api = world.api(follower);

    info!("the availability report, read through the leader from follower {follower}");
    let report = wait_until(
        "the incident in the follower's report",
        CHECKS_OK_TIMEOUT,
        || {
            let (code, v) = get_json(
                &world,
                &format!("{api}/api/v1/reports/availability?check=web&consistent=true"),
            );
            if code == 200 && v["checks"][0]["incidents"] == 1 {
                Ok(v)
            } else {
                Err(format!("{code}: {v}"))
            }
        },
    );
    let web_row = &report["checks"][0];
    let inc = &report["incidents"][0];
    let outage = inc["closed_at_ms"].as_u64().unwrap() - inc["start_ms"].as_u64().unwrap();
    assert_eq!(web_row["downtime_ms"].as_u64().unwrap(), outage, "{report}");
    assert!(outage > 0);
    assert!(web_row["availability_percent"].as_f64().unwrap() < 100.0);
    let sites: Vec<&str> = web_row["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["site"].as_str().unwrap())
        .collect();
    assert_eq!(sites, ["site-a", "site-b"], "{report}");
    for s in web_row["sites"].as_array().unwrap() {
        assert!(s["results"].as_u64().unwrap() > s["up"].as_u64().unwrap());
    }

    info!("the per-result CSV download and the CLI report");
    let (code, csv) = world
        .http_get(&format!("{api}/api/v1/reports/results?check=web"))
        .unwrap();
    assert_eq!(code, 200);
    assert!(csv.starts_with("observed_at,check,site,status,reason,latency_ms,message\n"));
    assert!(csv.lines().any(|l| l.contains(",CRITICAL,")), "{csv}");
    assert!(csv.lines().any(|l| l.contains(",OK,")));
    let out = world
        .cli(&["report", "--api", &api, "--check", "web", "--format", "csv"])
        .expect_success();
    assert!(
        out.stdout.lines().nth(1).unwrap().starts_with("web,"),
        "{}",
        out.stdout
    );
    // The monthly report (seed 004) of the month the outage began in, at +09:00.
    let start_jst = inc["start_ms"].as_u64().unwrap() + 9 * 3_600_000;
    let month = &consentry_node::wall_time::format_rfc3339(start_jst)[..7];
    let out = world
        .cli(&["report", "--api", &api, "--month", month, "--tz", "+09:00"])
        .expect_success();
    assert!(out.stdout.contains("AVAIL %"), "{}", out.stdout);
    let row: Vec<&str> = out
        .stdout
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("no web row in the {month} report:\n{}", out.stdout))
        .split_whitespace()
        .collect();
    // CHECK AVAIL% DOWNTIME MAINTENANCE INC ...: one incident, billed downtime.
    assert_eq!(row[4], "1", "{}", out.stdout);
    assert_ne!(row[2], "00:00:00", "{}", out.stdout);

    info!("the latency series per site");
    let (code, s) = get_json(&world, &format!("{api}/api/v1/checks/web/series"));
    assert_eq!(code, 200);
    assert_eq!(s["sites"].as_array().unwrap().len(), 2, "{s}");
    for site in s["sites"].as_array().unwrap() {
        assert!(!site["points"].as_array().unwrap().is_empty(), "{s}");
    }

    info!("consistent reads from the follower, and errors as JSON");
    let (code, c) = get_json(&world, &format!("{api}/api/v1/cluster?consistent=true"));
    assert_eq!(code, 200);
    assert_eq!(c["members"].as_array().unwrap().len(), 3, "{c}");
    assert!(
        c["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["lag"].is_u64()),
        "the leader's lag for every member: {c}"
    );
    let (code, st) = get_json(&world, &format!("{api}/api/v1/status/web?consistent=true"));
    assert_eq!((code, st["verdict"].as_str()), (200, Some("OK")), "{st}");
    for (path, status, code_name) in [
        ("/api/v1/nope", 404, "not_found"),
        ("/api/v1/incidents/abc", 400, "invalid_path"),
        (
            "/api/v1/reports/availability?from=yesterday",
            400,
            "invalid_query",
        ),
        (
            "/api/v1/reports/availability?check=missing",
            404,
            "not_found",
        ),
        ("/api/v1/status/missing", 404, "not_found"),
    ] {
        let (code, v) = get_json(&world, &format!("{api}{path}"));
        assert_eq!(code, status, "{path}: {v}");
        assert_eq!(v["error"]["code"], code_name, "{path}: {v}");
    }
}

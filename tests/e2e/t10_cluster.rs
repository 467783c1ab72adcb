//! Three processes form one cluster from their `initial_member` lists; applied checks are
//! probed from the two probing sites and never from the witness.

use crate::harness::{
    ChecksFile, Receiver, Target, World, WorldOptions, CHECKS_OK_TIMEOUT, FORM_TIMEOUT, SITE_A,
    SITE_B, SITE_C,
};

/// Three nodes started from one `initial_member` list form a cluster with one leader,
/// three voters and their sites; `apply` makes every check OK from site-a and site-b
/// with no result from the witness site-c; the read commands and probes answer.
#[test]
fn cluster_forms_and_checks_run_from_probing_sites() {
    let world = World::three_nodes(&WorldOptions::default());

    info!("three separate processes must elect one leader from their shared initial_member list");
    let view = world.wait_formed(FORM_TIMEOUT);
    info!("leader is node {} at term {}", view.node_id, view.term);
    let members: Vec<(u64, &str, &str, bool)> = view
        .members
        .iter()
        .map(|m| (m.id, m.site.as_str(), m.role.as_str(), m.probe))
        .collect();
    assert_eq!(
        members.len(),
        3,
        "the cluster lists exactly the three initial members: {members:?}"
    );
    for (id, site, probe) in [(1, SITE_A, true), (2, SITE_B, true), (3, SITE_C, false)] {
        let member = view
            .members
            .iter()
            .find(|m| m.id == id)
            .unwrap_or_else(|| panic!("node {id} missing from members: {members:?}"));
        assert_eq!(member.site, site, "node {id}'s site: {members:?}");
        assert_eq!(
            member.role, "voter",
            "node {id} must be a voter: {members:?}"
        );
        assert_eq!(member.probe, probe, "node {id}'s probe flag: {members:?}");
        assert!(
            member
                .addr
                .ends_with(&format!(":{}", world.node(id).spec.raft_port)),
            "node {id}'s raft address {} is not the configured one {}",
            member.addr,
            world.node(id).spec.raft_addr()
        );
        assert_eq!(
            member.api.as_deref(),
            Some(world.api(id).as_str()),
            "node {id}'s api as given in initial_member: {members:?}"
        );
    }
    for id in 1..=3 {
        let own = world.cluster_view(id).expect("cluster status");
        assert_eq!(own.node_id, id, "node {id} reports its own id");
        assert_eq!(
            own.site,
            world.node(id).spec.site,
            "node {id} reports its own site"
        );
    }

    info!("each node's HTTP API must be healthy and ready once a leader exists");
    for id in 1..=3 {
        for path in ["/healthz", "/readyz"] {
            let url = format!("{}{path}", world.api(id));
            let (code, body) = world.http_get(&url).expect("API answers");
            assert_eq!(code, 200, "GET {url}: {code} {body}");
        }
    }

    info!("apply two checks (HTTP and TCP) against targets this test serves");
    let receiver = Receiver::start(&world.handle());
    let web = Target::http(&world.handle(), None);
    let db = Target::tcp(&world.handle());
    let checks = ChecksFile::new()
        .http("web", &web.url())
        .tcp("db", db.port())
        .webhook(receiver.url())
        .render();
    let out = world.apply(&checks).expect_success();
    info!("apply printed: {}", out.stdout.trim());

    info!("both checks must turn OK from site-a and site-b; the witness site-c must not probe");
    let status = world.wait_checks_ok(&["web", "db"], CHECKS_OK_TIMEOUT);
    for check in &status.checks {
        info!("  {}", check.describe());
    }
    assert_eq!(
        status.checks.len(),
        2,
        "exactly the applied checks: {:?}",
        status.names()
    );
    assert!(
        status.applied_index > 0 && status.tick > 0,
        "status reports progress: applied_index {} tick {}",
        status.applied_index,
        status.tick
    );
    assert!(
        web.request_counts().contains("127.0.0.1"),
        "the web target was probed"
    );

    info!("every node serves the same checks and nothing was notified");
    for id in 1..=3 {
        let (code, body) = world
            .http_get(&format!("{}/api/v1/checks", world.api(id)))
            .expect("GET /api/v1/checks");
        assert_eq!(code, 200, "GET /api/v1/checks on node {id}: {body}");
        for name in ["\"web\"", "\"db\""] {
            assert!(
                body.contains(name),
                "node {id}'s /api/v1/checks lacks {name}: {body}"
            );
        }
    }
    let incidents = world.incidents_view(world.reader()).expect("incidents");
    assert!(
        incidents.is_empty(),
        "no incident while targets are up: {incidents:?}"
    );
    assert!(
        receiver.hooks().is_empty(),
        "no webhook while targets are up: {}",
        receiver.describe()
    );

    info!("metrics are Prometheus text with consentry_ names");
    let (code, metrics) = world
        .http_get(&format!("{}/metrics", world.api(1)))
        .expect("GET /metrics");
    assert_eq!(code, 200, "GET /metrics: {metrics}");
    assert!(
        metrics.lines().any(|l| l.starts_with("consentry_")),
        "no consentry_ sample in /metrics:\n{metrics}"
    );
    let disk: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("consentry_data_dir_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no consentry_data_dir_bytes sample in /metrics:\n{metrics}"));
    assert!(disk > 0.0, "node 1's data_dir is reported empty: {disk}");

    info!("the same reads without --json print tables");
    let api = world.api(world.reader());
    let table = world.cli(&["status", "--api", &api]).expect_success();
    assert!(
        table.stdout.contains("web") && table.stdout.contains("db"),
        "status table lacks the checks:\n{}",
        table.stdout
    );
    let table = world
        .cli(&["cluster", "status", "--api", &api])
        .expect_success();
    assert!(
        table.stdout.contains(SITE_A) && table.stdout.contains(SITE_C),
        "cluster table lacks the sites:\n{}",
        table.stdout
    );
    world.cli(&["incidents", "--api", &api]).expect_success();
}

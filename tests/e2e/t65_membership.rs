//! Membership through the CLI: a node joins as a probing learner and catches up from a
//! snapshot (the leader has purged the log it would need), is promoted, an old voter is
//! removed, and leadership is handed over. The log stays bounded by compaction throughout,
//! and no incident opens.

use std::time::Duration;

use crate::harness::{
    ChecksFile, Receiver, Target, World, WorldOptions, CHECKS_OK_TIMEOUT, FORM_TIMEOUT,
};

/// Small on purpose: the log is compacted every few seconds of this test.
const SNAPSHOT_EVERY: u64 = 50;
const LOG_KEPT: u64 = 10;
/// Entries a node may hold between compactions: a snapshot's worth, what it keeps, and
/// what arrives while the snapshot is built.
const LOG_ENTRIES_BOUND: u64 = 2 * (SNAPSHOT_EVERY + LOG_KEPT);
const SITE_D: &str = "site-d";
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Small, so that the snapshot node 4 is sent travels in several InstallSnapshot RPCs (the
/// test cannot count them: openraft logs them at info, and the nodes log at warn).
const SNAPSHOT_CHUNK: u64 = 1024;

fn raft_table() -> String {
    format!(
        "[raft]\nsnapshot_every = {SNAPSHOT_EVERY}\nlog_kept = {LOG_KEPT}\nsnapshot_chunk = {SNAPSHOT_CHUNK}\n"
    )
}

fn wait_ok_from(world: &World, via: u64, names: &[&str], sites: &[&str]) {
    world.wait_checks_ok_from(via, names, sites, CHECKS_OK_TIMEOUT);
}

/// Samples each node's log five times over 8 s: it must stay within `LOG_ENTRIES_BOUND`.
/// Returns the purged index each node showed last.
fn assert_log_bounded(world: &World, ids: &[u64]) -> Vec<u64> {
    let mut purged = Vec::new();
    for round in 0..5 {
        purged.clear();
        for id in ids {
            let view = world.cluster_view(*id).expect("cluster status");
            let held = view.last_log_index - view.purged_index;
            assert!(
                held <= LOG_ENTRIES_BOUND,
                "node {id} holds {held} log entries (last {}, purged {}), more than \
                 {LOG_ENTRIES_BOUND} with snapshot_every = {SNAPSHOT_EVERY}",
                view.last_log_index,
                view.purged_index
            );
            purged.push(view.purged_index);
        }
        if round < 4 {
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    purged
}

fn assert_no_incident(world: &World, via: u64) {
    let incidents = world.incidents_view(via).expect("incidents");
    assert!(
        incidents.is_empty(),
        "membership changes opened incidents: {}",
        crate::harness::describe_incidents(&incidents)
    );
}

#[test]
fn a_node_joins_from_a_snapshot_is_promoted_and_an_old_voter_leaves() {
    let mut world = World::three_nodes(&WorldOptions {
        extra_config: raft_table(),
        ..WorldOptions::default()
    });
    let web = Target::http(&world.handle(), None);
    let db = Target::tcp(&world.handle());
    let receiver = Receiver::start(&world.handle());
    world.wait_formed(FORM_TIMEOUT);
    let checks = ChecksFile::new()
        .http("web", &web.url())
        .tcp("db", db.port())
        .webhook(receiver.url())
        .render();
    world.apply(&checks).expect_success();
    world.wait_checks_ok(&["web", "db"], CHECKS_OK_TIMEOUT);

    info!("the log is compacted on every node: purged behind a snapshot, bounded");
    for id in [1, 2, 3] {
        world.wait(
            &format!("node {id} to purge its log behind a snapshot"),
            JOIN_TIMEOUT,
            || {
                let view = world.cluster_view(id)?;
                if view.purged_index == 0 || view.snapshot_index == 0 {
                    return Err(format!(
                        "snapshot {} purged {} last {}",
                        view.snapshot_index, view.purged_index, view.last_log_index
                    ));
                }
                Ok(())
            },
        );
    }
    let purged_before = assert_log_bounded(&world, &[1, 2, 3]);

    info!("refusals: an unknown node cannot be promoted or removed");
    let refused = world.operator_cli(2, &["cluster", "promote", "9"]);
    assert!(
        !refused.success() && refused.stderr.contains("not a learner"),
        "{}",
        refused.describe()
    );
    let refused = world.operator_cli(2, &["cluster", "remove", "9"]);
    assert!(
        !refused.success() && refused.stderr.contains("not a member"),
        "{}",
        refused.describe()
    );

    info!("node 4 (site-d) starts with join = true and a certificate from certs issue");
    let joiner = world.start_joining_node(4, SITE_D, true, &raft_table());
    let leader = world.leader();
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    info!("cluster add through follower {follower} (the leader is {leader})");
    let added = world.cluster_add(follower, &joiner).expect_success();
    info!("{}", added.stdout.trim());
    assert!(
        added.stdout.contains("and caught up") && !added.stdout.contains("not caught up"),
        "{}",
        added.describe()
    );
    let again = world.operator_cli(
        leader,
        &[
            "cluster",
            "add",
            "--id",
            "5",
            "--addr",
            &joiner.raft_addr(),
            "--site",
            SITE_D,
        ],
    );
    assert!(
        !again.success() && again.stderr.contains("already uses the raft address"),
        "{}",
        again.describe()
    );

    info!("node 4 caught up from a snapshot: the log it needed was purged");
    let view4 = world.wait("node 4 to apply the catalog", JOIN_TIMEOUT, || {
        let view = world.cluster_view(4)?;
        if view.role != "Learner" || view.snapshot_index == 0 {
            return Err(format!(
                "role {} snapshot {} applied {}",
                view.role, view.snapshot_index, view.applied_index
            ));
        }
        Ok(view)
    });
    let log4 = world.node(4).log_since(0);
    assert!(
        log4.contains("join = true: waiting"),
        "node 4 did not say it waits to be added:\n{log4}"
    );
    info!(
        "node 4: learner, snapshot at {}, applied {}",
        view4.snapshot_index, view4.applied_index
    );
    info!("the probing learner's site-d results count beside site-a and site-b");
    wait_ok_from(&world, 1, &["web", "db"], &["site-a", "site-b", SITE_D]);
    wait_ok_from(&world, 4, &["web", "db"], &["site-a", "site-b", SITE_D]);

    info!("promote node 4 to voter");
    let promoted = world
        .operator_cli(3, &["cluster", "promote", "4"])
        .expect_success();
    assert!(
        promoted.stdout.contains("is a voter"),
        "{}",
        promoted.describe()
    );
    world.set_members(&[1, 2, 3, 4]);
    world.wait_formed(FORM_TIMEOUT);

    info!("remove node 2 (site-b), then stop it");
    let removed = world
        .operator_cli(1, &["cluster", "remove", "2"])
        .expect_success();
    assert!(removed.stdout.contains("removed"), "{}", removed.describe());
    world.kill9(2);
    world.set_members(&[1, 3, 4]);
    let formed = world.wait_formed(FORM_TIMEOUT);
    assert_eq!(formed.member_ids(), vec![1, 3, 4]);
    wait_ok_from(&world, 1, &["web", "db"], &["site-a", SITE_D]);

    info!("hand leadership to another voter");
    let leader = formed.node_id;
    let to = [1, 3, 4].into_iter().find(|id| *id != leader).unwrap();
    let moved = world.operator_cli(leader, &["cluster", "transfer-leader", &to.to_string()]);
    info!("{}", moved.describe());
    let moved = moved.expect_success();
    assert!(moved.stdout.contains(&format!("node {to} is the leader")));
    let formed = world.wait_formed(FORM_TIMEOUT);
    assert_eq!(formed.node_id, to, "the leader after the hand-over");

    info!("hand it straight back: the new leader first waits out its leader lease");
    let back = world
        .operator_cli(to, &["cluster", "transfer-leader", &leader.to_string()])
        .expect_success();
    assert!(
        back.stdout
            .contains(&format!("node {leader} is the leader")),
        "{}",
        back.describe()
    );
    assert_eq!(world.wait_formed(FORM_TIMEOUT).node_id, leader);
    let again = world
        .operator_cli(leader, &["cluster", "transfer-leader", &to.to_string()])
        .expect_success();
    assert!(again.stdout.contains(&format!("node {to} is the leader")));
    let formed = world.wait_formed(FORM_TIMEOUT);
    assert_eq!(formed.node_id, to, "the leader after three hand-overs");

    info!("cluster status shows every member from the leader's view, reachable");
    let table = world
        .operator_cli(1, &["cluster", "status"])
        .expect_success();
    info!("\n{}", table.stdout);
    let view = world.cluster_view(to).expect("cluster status");
    for id in [1, 3, 4] {
        let member = view.member(id).expect("member");
        assert_eq!(member.role, "voter", "member {id}");
        assert_eq!(member.reachable, Some(true), "member {id} from the leader");
        assert!(member.lag.is_some(), "member {id} has a lag on the leader");
    }
    assert!(table.stdout.contains(SITE_D), "{}", table.stdout);

    wait_ok_from(&world, to, &["web", "db"], &["site-a", SITE_D]);
    assert_no_incident(&world, to);

    info!("compaction kept going through the changes, and the log stayed bounded on all");
    let purged_after = assert_log_bounded(&world, &[1, 3, 4]);
    let node_1_before = purged_before[0];
    assert!(
        purged_after[0] > node_1_before,
        "node 1 compacted nothing since the start (purged {node_1_before} then {})",
        purged_after[0]
    );
    assert!(
        receiver.hooks().is_empty(),
        "notifications were sent: {}",
        receiver.describe()
    );
}

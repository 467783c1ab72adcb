//! The leader dies (SIGKILL) while an incident is open: a new leader takes over without
//! re-sending the delivered notification, and the recovery is notified exactly once.

use std::time::Duration;

use crate::harness::{
    alert_deadline, ChecksFile, Deadline, Receiver, Target, World, WorldOptions, CHECKS_OK_TIMEOUT,
    FORM_TIMEOUT, INTERVAL, SETTLE,
};

/// After the firing webhook arrives, the leader still has to commit its outcome (the
/// record that stops a successor from sending it again). Give it two intervals before
/// killing it; a kill inside that window is the dedup key's job, not this test's.
const OUTCOME_COMMIT_GRACE: Duration = Duration::from_secs(2);
/// A new leader, its first ticks and any resumed intents: long enough for a wrongly
/// resumed notification to be sent.
const AFTER_FAILOVER_WATCH: Duration = Duration::from_secs(5);
/// A restarted node must be back in the cluster and caught up within this.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn leader_killed_during_incident_does_not_renotify() {
    let world = World::three_nodes(&WorldOptions::default());
    let receiver = Receiver::start(&world.handle());
    let web = Target::http(&world.handle(), None);

    info!("form the cluster, apply one HTTP check, wait for OK");
    world.wait_formed(FORM_TIMEOUT);
    let checks = ChecksFile::new()
        .http("web", &web.url())
        .webhook(receiver.url())
        .render();
    world.apply(&checks).expect_success();
    world.wait_checks_ok(&["web"], CHECKS_OK_TIMEOUT);

    info!("stop the target: one incident, one firing webhook from the leader");
    let deadline = Deadline::after(alert_deadline());
    web.stop();
    let incident = world.wait_one_open_incident("web", deadline.remaining());
    let firing = world.wait_hook(&receiver, "web", "firing", deadline.remaining());
    info!(
        "incident {} firing webhook: {}",
        incident.describe(),
        firing.summary()
    );
    let old_leader = world.leader();
    assert_eq!(
        firing.node_id(),
        Some(old_leader),
        "the firing webhook comes from the leader (node {old_leader}): {}",
        firing.summary()
    );

    info!(
        "give the leader {}s to record the delivery, then kill -9 it (node {old_leader})",
        OUTCOME_COMMIT_GRACE.as_secs()
    );
    world.hold_hook_counts(&receiver, "web", 1, 0, OUTCOME_COMMIT_GRACE);
    world.kill9(old_leader);

    info!("the two survivors must elect a new leader");
    let view = world.wait_formed(FORM_TIMEOUT);
    let new_leader = view.node_id;
    assert_ne!(new_leader, old_leader, "a surviving node leads");
    info!("node {new_leader} leads at term {}", view.term);

    info!("the new leader must not fire the delivered notification again; the incident stays the same and open");
    world.hold_hook_counts(&receiver, "web", 1, 0, AFTER_FAILOVER_WATCH);
    let still = world.wait_one_open_incident("web", SETTLE);
    assert_eq!(
        still.id(),
        incident.id(),
        "the same incident, not a new one: {}",
        still.describe()
    );

    info!("restart node {old_leader}: it must rejoin and catch up");
    world.restart(old_leader);
    world.wait_caught_up(old_leader, REJOIN_TIMEOUT);

    info!("heal the target: the incident closes and exactly one resolved webhook arrives");
    web.resume();
    let closed = world.wait_incident_closed(&incident.id(), alert_deadline() + INTERVAL * 4);
    info!("incident closed: {}", closed.describe());
    let resolved = world.wait_hook(&receiver, "web", "resolved", alert_deadline());
    info!("resolved webhook: {}", resolved.summary());
    assert_eq!(
        resolved.incident_id(),
        Some(incident.id()),
        "resolved names the same incident"
    );
    let leader_now = world.leader();
    assert_eq!(
        resolved.node_id(),
        Some(leader_now),
        "the resolved webhook comes from the current leader: {}",
        resolved.summary()
    );
    world.hold_hook_counts(&receiver, "web", 1, 1, SETTLE);
}

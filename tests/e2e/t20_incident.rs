//! A real outage seen by both probing sites opens exactly one incident and fires exactly
//! one webhook; recovery closes it and resolves exactly once.

use crate::harness::{
    alert_deadline, ChecksFile, Deadline, Receiver, Target, World, WorldOptions, CHECKS_OK_TIMEOUT,
    FORM_TIMEOUT, SETTLE, SITE_A, SITE_B,
};

#[test]
fn outage_opens_one_incident_and_notifies_once() {
    let world = World::three_nodes(&WorldOptions::default());
    let receiver = Receiver::start(&world.handle());
    let web = Target::http(&world.handle(), None);
    let db = Target::tcp(&world.handle());

    info!("form the cluster and apply two checks; the TCP one stays up throughout as a control");
    world.wait_formed(FORM_TIMEOUT);
    let checks = ChecksFile::new()
        .http("web", &web.url())
        .tcp("db", db.port())
        .webhook(receiver.url())
        .render();
    world.apply(&checks).expect_success();
    world.wait_checks_ok(&["web", "db"], CHECKS_OK_TIMEOUT);
    assert!(
        receiver.hooks().is_empty(),
        "no webhook before the outage: {}",
        receiver.describe()
    );

    info!(
        "stop the web target: both sites must agree within interval x rounds + {}s",
        crate::harness::ALERT_SLACK.as_secs()
    );
    let deadline = Deadline::after(alert_deadline());
    web.stop();
    let incident = world.wait_one_open_incident("web", deadline.remaining());
    info!("incident opened: {}", incident.describe());
    assert_eq!(
        incident.opened_by_sites(),
        vec![SITE_A.to_owned(), SITE_B.to_owned()],
        "both probing sites (and not the witness) opened it: {}",
        incident.describe()
    );
    assert!(
        matches!(incident.severity.as_deref(), Some("CRITICAL" | "WARNING")),
        "severity is the worst agreeing status: {}",
        incident.describe()
    );
    let firing = world.wait_hook(&receiver, "web", "firing", deadline.remaining());
    info!("firing webhook: {}", firing.summary());
    assert_eq!(
        firing.incident_id(),
        Some(incident.id()),
        "the webhook names the incident"
    );
    let mut sites = firing.sites();
    sites.sort();
    assert_eq!(
        sites,
        vec![SITE_A.to_owned(), SITE_B.to_owned()],
        "the webhook lists the agreeing sites"
    );
    assert!(
        firing.body["target"]
            .to_string()
            .contains(&web.port().to_string()),
        "the webhook's target names the web target: {}",
        firing.raw
    );

    info!("the status view shows the incident on the check and the control check still OK");
    let status = world.status_view(world.reader()).expect("status");
    let check = status.check("web").expect("web in status");
    assert!(
        check
            .incident
            .as_ref()
            .is_some_and(|id| crate::harness::id_string(id) == incident.id()),
        "web carries the open incident: {}",
        check.describe()
    );
    assert_ne!(
        check.verdict,
        "OK",
        "web is not OK during the outage: {}",
        check.describe()
    );
    let control = status.check("db").expect("db in status");
    assert_eq!(
        control.verdict,
        "OK",
        "the control check is untouched: {}",
        control.describe()
    );

    info!("nothing more may fire while the outage goes on: no repeat, no second incident");
    world.hold_hook_counts(&receiver, "web", 1, 0, SETTLE);
    world.wait_one_open_incident("web", SETTLE);

    info!("start the web target again: two OK rounds from both sites must close the incident");
    let deadline = Deadline::after(alert_deadline());
    web.resume();
    let closed = world.wait_incident_closed(&incident.id(), deadline.remaining());
    info!("incident closed: {}", closed.describe());
    let resolved = world.wait_hook(&receiver, "web", "resolved", deadline.remaining());
    info!("resolved webhook: {}", resolved.summary());
    assert_eq!(
        resolved.incident_id(),
        Some(incident.id()),
        "the resolved webhook names the incident"
    );
    assert_ne!(
        resolved.dedup_key(),
        firing.dedup_key(),
        "firing and resolved are different transitions, so different dedup keys"
    );
    for hook in [&firing, &resolved] {
        assert!(
            hook.dedup_key().is_some() && hook.dedup_header == hook.dedup_key(),
            "X-Consentry-Dedup-Key carries the body's dedup key: {:?} vs {:?}",
            hook.dedup_header,
            hook.dedup_key()
        );
    }

    info!("exactly one firing and one resolved webhook, and the check is OK again");
    world.hold_hook_counts(&receiver, "web", 1, 1, SETTLE);
    world.wait_checks_ok(&["web", "db"], CHECKS_OK_TIMEOUT);
}

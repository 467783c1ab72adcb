//! A failure on one site's network path is shown as `path_suspect` and pages nobody.

use std::net::{IpAddr, Ipv4Addr, TcpListener};

use crate::harness::{
    hold_for, skip_unless_required, ChecksFile, Receiver, Target, World, WorldOptions,
    CHECKS_OK_TIMEOUT, FORM_TIMEOUT, ROUNDS, SETTLE, SITE_A, SITE_B,
};

/// The source address site-a's probes leave from; the target refuses it.
const BLOCKED_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

#[test]
fn one_site_failing_alone_is_path_suspect_not_an_incident() {
    if TcpListener::bind((BLOCKED_SOURCE, 0)).is_err()
        && skip_unless_required("cannot bind 127.0.0.2 (this loopback does not route 127.0.0.0/8)")
    {
        return;
    }
    let world = World::three_nodes(&WorldOptions {
        probe_source_ip: vec![(1, BLOCKED_SOURCE.to_string())],
        ..WorldOptions::default()
    });
    let receiver = Receiver::start(&world.handle());
    let web = Target::http(&world.handle(), Some(IpAddr::V4(BLOCKED_SOURCE)));

    info!("node 1 (site-a) probes from 127.0.0.2, which the web target answers with 403; site-b gets 200");
    world.wait_formed(FORM_TIMEOUT);
    let checks = ChecksFile::new()
        .http("web", &web.url())
        .webhook(receiver.url())
        .render();
    world.apply(&checks).expect_success();

    info!("site-a must report the check down and be marked path_suspect while site-b is OK");
    let check = world.wait(
        "site-a down and path_suspect, site-b OK",
        CHECKS_OK_TIMEOUT,
        || {
            let status = world.status_view(world.reader())?;
            let check = status.check("web")?.clone();
            let a = check.site(SITE_A).ok_or_else(|| check.describe())?;
            let b = check.site(SITE_B).ok_or_else(|| check.describe())?;
            let a_failing = !a.is_ok() && a.consecutive_fail >= u64::from(ROUNDS) && a.path_suspect;
            let b_ok = b.is_ok() && b.fresh && !b.path_suspect;
            if a_failing && b_ok {
                Ok(check)
            } else {
                Err(check.describe())
            }
        },
    );
    info!("  {}", check.describe());
    assert!(
        web.requests_from(IpAddr::V4(BLOCKED_SOURCE)) > 0,
        "site-a's probes must leave from probe_source_ip 127.0.0.2; the target saw {}",
        web.request_counts()
    );
    assert!(
        web.requests_from(IpAddr::V4(Ipv4Addr::LOCALHOST)) > 0,
        "site-b's probes reach the target from 127.0.0.1; the target saw {}",
        web.request_counts()
    );

    info!("for several more rounds: no incident, no webhook, site-a stays path_suspect");
    hold_for("no incident and site-a path_suspect", SETTLE, || {
        world.ensure_alive();
        let incidents = world.incidents_view(world.reader())?;
        if !incidents.is_empty() {
            return Err(format!(
                "incident opened for a one-site failure: {incidents:?}"
            ));
        }
        if !receiver.hooks().is_empty() {
            return Err(format!(
                "webhook sent for a one-site failure: {}",
                receiver.describe()
            ));
        }
        let status = world.status_view(world.reader())?;
        let check = status.check("web")?;
        if check.incident.as_ref().is_some_and(|i| !i.is_null()) {
            return Err(format!("check carries an incident: {}", check.describe()));
        }
        if !check.site(SITE_A).is_some_and(|a| a.path_suspect) {
            return Err(format!(
                "site-a no longer path_suspect: {}",
                check.describe()
            ));
        }
        Ok(())
    });
    let status = world.status_view(world.reader()).expect("status");
    info!(
        "final verdict: {}",
        status.check("web").expect("web").describe()
    );
}

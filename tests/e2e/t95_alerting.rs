//! Alerting through a real cluster: what is recorded and what pages when a silence holds
//! an outage, when a parent check takes its ten children down with it, and when a target
//! flaps.
//!
//! Every test counts webhooks at the receiver and reads the incidents' `silenced`,
//! `suppressed_by` and `notified` fields through `consentry incidents --json`.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{
    alert_deadline, hold_for, id_string, ChecksFile, Deadline, Receiver, Target, World,
    WorldOptions, ALERT_SLACK, CHECKS_OK_TIMEOUT, FORM_TIMEOUT, SETTLE,
};

/// How long a test watches that a held outage pages no one: six rounds of probes.
const HOLD_WINDOW: Duration = Duration::from_secs(6);

/// Runs the CLI from the test's root with the API token in `CONSENTRY_TOKEN`.
/// `consentry incidents --json` as raw JSON, for the fields the shared view does not read
/// (`silenced`, `silenced_by`, `suppressed_by`, `parent_hold`, `notified`).
fn incidents_json(world: &World) -> Result<Vec<Value>, String> {
    let out = world.cli(&["incidents", "--json", "--api", &world.api(world.reader())]);
    if !out.success() {
        return Err(out.describe());
    }
    let v: Value = serde_json::from_str(&out.stdout)
        .map_err(|e| format!("incidents --json is not JSON ({e}): {}", out.stdout))?;
    v["incidents"]
        .as_array()
        .cloned()
        .ok_or_else(|| format!("no `incidents` array: {v}"))
}

/// One check of `consentry status --json` as raw JSON (`silenced_by`, `flapping`).
fn status_check_json(world: &World, name: &str) -> Result<Value, String> {
    let out = world.cli(&["status", "--json", "--api", &world.api(world.reader())]);
    if !out.success() {
        return Err(out.describe());
    }
    let v: Value = serde_json::from_str(&out.stdout)
        .map_err(|e| format!("status --json is not JSON ({e}): {}", out.stdout))?;
    v["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .cloned()
        .ok_or_else(|| format!("no check {name:?} in status: {v}"))
}

/// One line per incident: id, check, state and the alerting flags.
fn describe(incidents: &[Value]) -> String {
    if incidents.is_empty() {
        return "no incidents".to_owned();
    }
    incidents
        .iter()
        .map(|i| {
            format!(
                "#{} {} {} notified={} silenced={} silenced_by={} suppressed_by={} parent_hold={}",
                id_string(&i["id"]),
                i["check"],
                i["state"],
                i["notified"],
                i["silenced"],
                i["silenced_by"],
                i["suppressed_by"],
                i["parent_hold"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n    ")
}

/// The `alert` field of a webhook body: `incident`, `flapping`, ...
fn alert_kind(hook: &crate::harness::Hook) -> Option<&str> {
    hook.body.get("alert").and_then(Value::as_str)
}

#[test]
fn silence_over_a_real_outage_records_but_does_not_page() {
    let world = World::three_nodes(&WorldOptions::default());
    let receiver = Receiver::start(&world.handle());
    let web = Target::http(&world.handle(), None);

    info!("form the cluster and apply one HTTP check `web` notifying the ops webhook");
    world.wait_formed(FORM_TIMEOUT);
    let checks = ChecksFile::new()
        .http("web", &web.url())
        .webhook(receiver.url())
        .render();
    world.apply(&checks).expect_success();
    world.wait_checks_ok(&["web"], CHECKS_OK_TIMEOUT);

    info!("silence `web` for 10m with `consentry silence add` (token from CONSENTRY_TOKEN)");
    let api = world.api(world.reader());
    let added = world
        .token_cli(&[
            "silence",
            "add",
            "--match",
            "web",
            "--for",
            "10m",
            "--reason",
            "maintenance",
            "--json",
            "--api",
            &api,
        ])
        .expect_success();
    let added: Value = serde_json::from_str(&added.stdout)
        .unwrap_or_else(|e| panic!("silence add --json is not JSON ({e}): {}", added.stdout));
    let silence_id = added["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("silence add answered no id: {added}"));
    info!("silence {silence_id} added: {added}");
    world.wait(
        &format!("status to show `web` silenced by silence {silence_id}"),
        ALERT_SLACK,
        || {
            let check = status_check_json(&world, "web")?;
            if check["silenced_by"].as_u64() == Some(silence_id) {
                Ok(())
            } else {
                Err(format!("web: {check}"))
            }
        },
    );

    info!("stop the target: the outage is recorded as one incident, flagged silenced");
    let deadline = Deadline::after(alert_deadline());
    web.stop();
    let incident = world.wait_one_open_incident("web", deadline.remaining());
    let raw = world.wait(
        "the open incident to be flagged silenced and not notified",
        ALERT_SLACK,
        || {
            let incidents = incidents_json(&world)?;
            match incidents.as_slice() {
                [one]
                    if one["silenced"] == true
                        && one["silenced_by"].as_u64() == Some(silence_id)
                        && one["notified"] == false =>
                {
                    Ok(one.clone())
                }
                _ => Err(describe(&incidents)),
            }
        },
    );
    info!("incident recorded: {}", describe(&[raw]));

    info!(
        "while silenced the outage pages no one: zero webhooks for {}s",
        HOLD_WINDOW.as_secs()
    );
    hold_for("no webhook while the silence holds", HOLD_WINDOW, || {
        world.ensure_alive();
        if receiver.hooks().is_empty() {
            Ok(())
        } else {
            Err(receiver.describe())
        }
    });
    world.wait_one_open_incident("web", SETTLE);

    info!("remove silence {silence_id} while the outage goes on: the open incident notifies now, once");
    let deadline = Deadline::after(ALERT_SLACK);
    world
        .token_cli(&["silence", "remove", &silence_id.to_string(), "--api", &api])
        .expect_success();
    let firing = world.wait_hook(&receiver, "web", "firing", deadline.remaining());
    info!(
        "firing webhook after the silence ended: {}",
        firing.summary()
    );
    assert_eq!(
        firing.incident_id(),
        Some(incident.id()),
        "the late firing webhook names the silenced incident"
    );
    world.hold_hook_counts(&receiver, "web", 1, 0, SETTLE);
    let incidents = incidents_json(&world).expect("incidents");
    assert!(
        matches!(incidents.as_slice(), [one] if one["notified"] == true
            && one["silenced"] == true
            && one["silenced_by"].is_null()),
        "the incident is notified, no longer held, and keeps `silenced` as the record: {}",
        describe(&incidents)
    );

    info!("resume the target: the incident closes and resolves once");
    let deadline = Deadline::after(alert_deadline());
    web.resume();
    world.wait_incident_closed(&incident.id(), deadline.remaining());
    let resolved = world.wait_hook(&receiver, "web", "resolved", deadline.remaining());
    info!("resolved webhook: {}", resolved.summary());
    assert_eq!(resolved.incident_id(), Some(incident.id()));
    world.hold_hook_counts(&receiver, "web", 1, 1, SETTLE);
}

/// The outage pages once (the parent's firing webhook, the ten children recorded as
/// suppressed by it) and the parent resolves once. Runs by default; it does not assert on
/// the children's webhooks after the parent closes, which `dead_parent_recovery_pages_no_child`
/// does.
#[test]
fn dead_parent_with_ten_children_pages_once() {
    dead_parent_with_ten_children(false);
}

/// The same outage, also asserting that the recovery sends no child webhook at all.
///
/// Fails against the current product: every check has its own probe phase inside the
/// interval, so the parent can reach `recover.rounds` a tick before some children. At the
/// next tick the still-open child is unsuppressed and pages `firing`, and its own OK results,
/// applied a moment later in the same second, close it and page `resolved`: a firing /
/// resolved pair per lagging child for a host that came back whole. Seen with 1 to 4 of
/// the 10 children in 7 of 8 runs.
#[test]
fn dead_parent_recovery_pages_no_child() {
    dead_parent_with_ten_children(true);
}

fn dead_parent_with_ten_children(strict_recovery: bool) {
    const CHILDREN: usize = 10;
    let world = World::three_nodes(&WorldOptions::default());
    let receiver = Receiver::start(&world.handle());
    // One process serves the host check (TCP connect) and every child (HTTP paths), so
    // stopping it takes all eleven down at once.
    let server = Target::http(&world.handle(), None);
    let children: Vec<String> = (0..CHILDREN).map(|i| format!("svc-{i}")).collect();

    info!("form the cluster; apply `host` (tcp) and {CHILDREN} http children with depends_on = [\"host\"]");
    world.wait_formed(FORM_TIMEOUT);
    let mut checks = ChecksFile::new().tcp("host", server.port());
    for child in &children {
        let url = format!("http://127.0.0.1:{}/{child}", server.port());
        checks = checks.http(child, &url).with("depends_on", "[\"host\"]");
    }
    world
        .apply(&checks.webhook(receiver.url()).render())
        .expect_success();
    let mut names: Vec<&str> = vec!["host"];
    names.extend(children.iter().map(String::as_str));
    world.wait_checks_ok(&names, CHECKS_OK_TIMEOUT);

    info!("stop the server: eleven incidents, the children's suppressed by host");
    let deadline = Deadline::after(alert_deadline());
    server.stop();
    let incidents = world.wait(
        "one open incident for host and one suppressed_by host for each child",
        deadline.remaining(),
        || {
            let incidents = incidents_json(&world)?;
            let open: Vec<&Value> = incidents.iter().filter(|i| i["state"] == "open").collect();
            let host_ok = open
                .iter()
                .filter(|i| i["check"] == "host")
                .any(|i| i["suppressed_by"].is_null());
            let children_ok = children.iter().all(|c| {
                open.iter()
                    .any(|i| i["check"] == c.as_str() && i["suppressed_by"] == "host")
            });
            if incidents.len() == CHILDREN + 1 && host_ok && children_ok {
                Ok(incidents)
            } else {
                Err(describe(&incidents))
            }
        },
    );
    info!("incidents:\n    {}", describe(&incidents));
    let host_incident = incidents
        .iter()
        .find(|i| i["check"] == "host")
        .map(|i| id_string(&i["id"]))
        .expect("host incident");

    info!("exactly one firing webhook, the host's; none for the children");
    let firing = world.wait_hook(&receiver, "host", "firing", ALERT_SLACK);
    info!("firing webhook: {}", firing.summary());
    assert_eq!(firing.incident_id(), Some(host_incident.clone()));
    world.hold_hook_counts(&receiver, "host", 1, 0, SETTLE);
    let incidents = incidents_json(&world).expect("incidents");
    for child in &children {
        let i = incidents
            .iter()
            .find(|i| i["check"] == child.as_str())
            .unwrap_or_else(|| panic!("no incident for {child}: {}", describe(&incidents)));
        assert!(
            i["notified"] == false && i["parent_hold"] == "host",
            "{child}'s incident is held by host and not notified: {}",
            describe(&incidents)
        );
    }

    info!("resume the server: the host resolves once and every incident closes");
    let deadline = Deadline::after(alert_deadline());
    server.resume();
    let resolved = world.wait_hook(&receiver, "host", "resolved", deadline.remaining());
    info!("resolved webhook: {}", resolved.summary());
    assert_eq!(resolved.incident_id(), Some(host_incident));
    world.wait("every incident closed", deadline.remaining(), || {
        let incidents = incidents_json(&world)?;
        if incidents.len() == CHILDREN + 1 && incidents.iter().all(|i| i["state"] == "closed") {
            Ok(())
        } else {
            Err(describe(&incidents))
        }
    });
    if !strict_recovery {
        hold_for(
            "exactly one firing and one resolved webhook for host",
            SETTLE,
            || {
                world.ensure_alive();
                let hooks = receiver.matching("host", "firing").len();
                let resolved = receiver.matching("host", "resolved").len();
                if (hooks, resolved) == (1, 1) {
                    Ok(())
                } else {
                    Err(receiver.describe())
                }
            },
        );
        // Not asserted here (see dead_parent_recovery_pages_no_child): children that page
        // after the parent closed.
        let late: Vec<String> = receiver
            .hooks()
            .iter()
            .filter(|h| h.check() != Some("host"))
            .map(crate::harness::Hook::summary)
            .collect();
        info!("child webhooks after the parent closed: {late:?}");
        let incidents = incidents_json(&world).expect("incidents");
        assert!(
            incidents
                .iter()
                .filter(|i| i["check"] != "host")
                .all(|i| i["suppressed_by"] == "host"),
            "the children keep suppressed_by = host as the record: {}",
            describe(&incidents)
        );
        return;
    }
    info!("strict: no child webhook at all");
    hold_for(
        "exactly one firing and one resolved webhook, the host's, and none for the children",
        SETTLE,
        || {
            world.ensure_alive();
            let hooks = receiver.hooks();
            if hooks.len() == 2 && hooks.iter().all(|h| h.check() == Some("host")) {
                return Ok(());
            }
            // The children that paged, with their timelines: when they were unsuppressed.
            let incidents = incidents_json(&world)?;
            let paged: Vec<String> = incidents
                .iter()
                .filter(|i| i["check"] != "host" && i["notified"] == true)
                .map(|i| format!("{} #{} timeline {}", i["check"], i["id"], i["timeline"]))
                .collect();
            let host: Vec<String> = incidents
                .iter()
                .filter(|i| i["check"] == "host")
                .map(|i| format!("host #{} timeline {}", i["id"], i["timeline"]))
                .collect();
            Err(format!(
                "{}\n  {}\n  children that paged:\n    {}",
                receiver.describe(),
                host.join("\n    "),
                paged.join("\n    ")
            ))
        },
    );
    let incidents = incidents_json(&world).expect("incidents");
    assert!(
        incidents
            .iter()
            .filter(|i| i["check"] != "host")
            .all(|i| i["notified"] == false && i["suppressed_by"] == "host"),
        "the children never notified and keep suppressed_by = host as the record: {}",
        describe(&incidents)
    );
}

/// Each half of a flap: the target is down for this long, then up for this long.
const FLAP_HALF: Duration = Duration::from_secs(2);
/// The longest the target is toggled before flapping must have been detected.
const FLAP_DETECT_MAX: Duration = Duration::from_secs(40);
/// After flapping is detected the target keeps flapping this many more cycles, each of
/// which would open (and, unheld, page) a new incident.
const FLAP_MORE_CYCLES: u32 = 2;
/// The longest flapping may take to stop once the target stays up.
const FLAP_STOP_MAX: Duration = Duration::from_secs(35);

/// Counts of a receiver's hooks for `check`, by alert kind and transition.
fn count(receiver: &Receiver, check: &str, alert: &str, transition: &str) -> usize {
    receiver
        .hooks()
        .iter()
        .filter(|h| {
            h.check() == Some(check)
                && alert_kind(h) == Some(alert)
                && h.transition() == Some(transition)
        })
        .count()
}

/// Flips `target` down or up, then watches for `FLAP_HALF` that the nodes are alive and
/// `invariant` holds.
fn flap_half(
    world: &World,
    target: &Target,
    up: bool,
    invariant: &mut dyn FnMut() -> Result<(), String>,
) {
    if up {
        target.resume();
    } else {
        target.stop();
    }
    hold_for(
        &format!("target {}", if up { "up" } else { "down" }),
        FLAP_HALF,
        || {
            world.ensure_alive();
            invariant()
        },
    );
}

#[test]
fn flapping_target_pages_once() {
    let world = World::three_nodes(&WorldOptions::default());
    let receiver = Receiver::start(&world.handle());
    let target = Target::tcp(&world.handle());

    // Toggled every 2 s with a 1 s interval, a site sees a change every second result,
    // about 50% weighted state change once the 21-result history is full; 30% is crossed
    // after about six changes (3 cycles). Once the target stays up, the oldest four changes
    // weigh under 20%, so flapping stops about 12 results after the last change. One round
    // to confirm and to recover makes every down half open an incident.
    info!("form the cluster; apply `flappy` (tcp) with rounds 1/1, flap_high 30, flap_low 20");
    world.wait_formed(FORM_TIMEOUT);
    let checks = ChecksFile::new()
        .tcp("flappy", target.port())
        .with("confirm", "{ sites = 2, rounds = 1 }")
        .with("recover", "{ rounds = 1 }")
        .with("flap_high", "30")
        .with("flap_low", "20")
        .webhook(receiver.url())
        .render();
    world.apply(&checks).expect_success();
    world.wait_checks_ok(&["flappy"], CHECKS_OK_TIMEOUT);

    info!(
        "toggle the target every {}s until the flapping-started webhook arrives (at most {}s)",
        FLAP_HALF.as_secs(),
        FLAP_DETECT_MAX.as_secs()
    );
    let deadline = Deadline::after(FLAP_DETECT_MAX);
    let mut cycles = 0_u32;
    let started = loop {
        assert!(
            !deadline.remaining().is_zero(),
            "no flapping webhook after {cycles} cycles: {}\n  status: {:?}",
            receiver.describe(),
            status_check_json(&world, "flappy")
        );
        flap_half(&world, &target, false, &mut || Ok(()));
        flap_half(&world, &target, true, &mut || Ok(()));
        cycles += 1;
        let hooks: Vec<_> = receiver
            .matching("flappy", "firing")
            .into_iter()
            .filter(|h| alert_kind(h) == Some("flapping"))
            .collect();
        if let Some(hook) = hooks.into_iter().next() {
            break hook;
        }
    };
    let before = count(&receiver, "flappy", "incident", "firing");
    info!(
        "flapping started after {cycles} cycles: {} ({}); {before} incident firing webhooks so far",
        started.summary(),
        started.raw
    );
    let errors = started.shape_errors();
    assert!(errors.is_empty(), "{errors:?}: {}", started.raw);
    let alert_id = started.incident_id();
    assert_eq!(
        started.dedup_key(),
        alert_id
            .as_ref()
            .map(|id| format!("flapping-{id}/firing/ops")),
        "the flapping intent's dedup key names the episode"
    );

    // Intents committed before the flapping tick may still be in flight when the
    // flapping webhook arrives (deliveries run concurrently), so the count is taken after
    // one more cycle. From then on no incident firing webhook may arrive: every incident
    // opened while the check flaps is held.
    info!("keep flapping; the first cycle lets deliveries committed before detection land");
    flap_half(&world, &target, false, &mut || Ok(()));
    flap_half(&world, &target, true, &mut || Ok(()));
    let pre_flap_firing = count(&receiver, "flappy", "incident", "firing");
    let incidents_at_detection = incidents_json(&world).expect("incidents").len();
    info!(
        "{pre_flap_firing} incident firing webhooks arrived for incidents opened before flapping was detected; \
         {incidents_at_detection} incidents recorded"
    );
    assert!(
        pre_flap_firing <= before + 1,
        "at most one firing intent was in flight at detection: {before} then {pre_flap_firing}\n    {}",
        receiver.describe()
    );

    info!("{FLAP_MORE_CYCLES} more cycles while flapping: incidents open and close, nothing pages");
    let mut no_storm = || {
        let firing = count(&receiver, "flappy", "incident", "firing");
        let flapping = count(&receiver, "flappy", "flapping", "firing");
        if firing == pre_flap_firing && flapping == 1 {
            Ok(())
        } else {
            Err(format!(
                "{firing} incident firing (want {pre_flap_firing}), {flapping} flapping firing (want 1):\n    {}",
                receiver.describe()
            ))
        }
    };
    for _ in 0..FLAP_MORE_CYCLES {
        flap_half(&world, &target, false, &mut no_storm);
        flap_half(&world, &target, true, &mut no_storm);
    }
    let incidents = incidents_json(&world).expect("incidents");
    let held: Vec<&Value> = incidents
        .iter()
        .filter(|i| i["notified"] == false)
        .collect();
    info!("incidents:\n    {}", describe(&incidents));
    assert!(
        incidents.len() > incidents_at_detection && !held.is_empty(),
        "incidents kept opening while flapping ({incidents_at_detection} -> {}) and were held, not paged:\n    {}",
        incidents.len(),
        describe(&incidents)
    );

    info!(
        "leave the target up: flapping stops within {}s with one flapping resolved webhook",
        FLAP_STOP_MAX.as_secs()
    );
    let stopped = world.wait("the flapping resolved webhook", FLAP_STOP_MAX, || {
        no_storm()?;
        receiver
            .matching("flappy", "resolved")
            .into_iter()
            .find(|h| alert_kind(h) == Some("flapping"))
            .ok_or_else(|| receiver.describe())
    });
    info!("flapping stopped: {} ({})", stopped.summary(), stopped.raw);
    assert_eq!(
        stopped.incident_id(),
        alert_id,
        "started and stopped name the same episode"
    );

    info!("afterwards: one flapping started, one stopped, no incident page beyond the pre-detection ones");
    hold_for("no more webhooks", SETTLE, || {
        world.ensure_alive();
        no_storm()?;
        let resolved = count(&receiver, "flappy", "flapping", "resolved");
        if resolved == 1 {
            Ok(())
        } else {
            Err(format!(
                "{resolved} flapping resolved:\n    {}",
                receiver.describe()
            ))
        }
    });
    // A resolved notification goes out exactly when the firing one did: every incident
    // resolved webhook belongs to an incident that paged firing, at most once each.
    let hooks = receiver.hooks();
    let ids = |transition: &str| -> Vec<String> {
        hooks
            .iter()
            .filter(|h| alert_kind(h) == Some("incident") && h.transition() == Some(transition))
            .filter_map(|h| h.incident_id())
            .collect()
    };
    let fired: BTreeSet<String> = ids("firing").into_iter().collect();
    let resolved = ids("resolved");
    let unique: BTreeSet<String> = resolved.iter().cloned().collect();
    assert!(
        unique.len() == resolved.len() && unique.is_subset(&fired),
        "incident resolved webhooks only for incidents that paged, once each: {}",
        receiver.describe()
    );
    world.wait_checks_ok(&["flappy"], CHECKS_OK_TIMEOUT);
}

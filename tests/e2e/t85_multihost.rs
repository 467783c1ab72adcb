//! Multi-host tests on real links: each site is a network namespace with its own carrier to a
//! shared "internet" namespace where the targets live, and its own links to the other sites
//! (see `harness::netns`). Links are cut with `ip link set ... down`. Needs root; skipped
//! with the reason otherwise, and required in CI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::clock;
use crate::harness::netns::{self, Net, TARGET_IP};
use crate::harness::{
    run_cli, skip_unless_required, ChecksFile, Receiver, Target, World, FORM_TIMEOUT, SETTLE,
    SITE_A, SITE_B, SITE_C,
};

/// Checks beside `web`: enough that one site failing them all is "site degraded" (at
/// least 3, more than half) and that the cluster carries some load.
const TCP_CHECKS: usize = 40;
/// Distinct TCP servers the checks spread over.
const TCP_TARGETS: usize = 8;
const CONVERGE: Duration = Duration::from_secs(40);
const STOP_GRACE: Duration = Duration::from_secs(10);

struct MultiHost {
    world: World,
    receiver: Receiver,
    web: Target,
    names: Vec<String>,
    _tcp: Vec<Target>,
}

impl MultiHost {
    /// Site-a and site-b (probing) and the witness site-c, each in its namespace; the
    /// checks applied and OK from both probing sites. `None` when the test must skip.
    fn start(extra: &str) -> Option<Self> {
        if let Err(why) = netns::available() {
            skip_unless_required(&format!("{why}: the multi-host tests build namespaces"));
            return None;
        }
        let mut net = Net::new();
        net.add_site(SITE_A, 1, true);
        net.add_site(SITE_B, 2, true);
        net.add_site(SITE_C, 3, false);
        let receiver_ip = net.site(SITE_A).test_side_ip();
        let world = World::multi_host(net, &[SITE_A, SITE_B, SITE_C], extra);
        let rt = world.handle();
        let receiver = Receiver::start_at(&rt, &receiver_ip);
        let internet = world.net().internet().to_owned();
        let web = Target::http_in(&rt, &internet, TARGET_IP);
        let tcp: Vec<Target> = (0..TCP_TARGETS)
            .map(|_| Target::tcp_in(&rt, &internet, TARGET_IP))
            .collect();
        let mut checks = ChecksFile::new().http("web", &web.url());
        let mut names = vec!["web".to_owned()];
        for i in 0..TCP_CHECKS {
            let name = format!("svc-{i:02}");
            checks = checks.tcp_at(&name, TARGET_IP, tcp[i % TCP_TARGETS].port());
            names.push(name);
        }
        let checks = checks.webhook(receiver.url()).operator_alerts().render();
        world.wait_formed(FORM_TIMEOUT);
        world.apply(&checks).expect_success();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        world.wait_checks_ok(&refs, CONVERGE);
        Some(Self {
            world,
            receiver,
            web,
            names,
            _tcp: tcp,
        })
    }

    fn names(&self) -> Vec<&str> {
        self.names.iter().map(String::as_str).collect()
    }

    /// Notifications about target incidents (not operator alerts).
    fn incident_hooks(&self) -> Vec<crate::harness::Hook> {
        self.receiver
            .hooks()
            .into_iter()
            .filter(|h| alert(h) == Some("incident"))
            .collect()
    }

    fn operator_hooks(&self, kind: &str, transition: &str) -> Vec<crate::harness::Hook> {
        self.receiver
            .hooks()
            .into_iter()
            .filter(|h| alert(h) == Some(kind) && h.transition() == Some(transition))
            .collect()
    }

    /// No node's log says it dropped a result batch, in any of its runs.
    fn assert_no_batch_dropped(&self, ids: &[u64]) {
        for id in ids {
            let log = self.world.node(*id).log_since(0);
            let dropped: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("results dropped"))
                .collect();
            assert!(
                dropped.is_empty(),
                "node {id} dropped result batches:\n{}",
                dropped.join("\n")
            );
        }
    }
}

fn alert(hook: &crate::harness::Hook) -> Option<&str> {
    hook.body.get("alert").and_then(Value::as_str)
}

/// The site an operator alert is about: its webhook's `check` is `site <name>`.
fn degraded_site(hook: &crate::harness::Hook) -> Option<&str> {
    hook.check().and_then(|c| c.strip_prefix("site "))
}

fn admin(world: &World, via: u64, args: &[&str]) -> crate::harness::CliOutput {
    world.operator_cli(via, args).expect_success()
}

/// Makes node `id` the leader (the tests need to know which site leads).
fn lead_from(world: &World, id: u64) {
    if world.leader() != id {
        let out = admin(world, id, &["cluster", "transfer-leader", &id.to_string()]);
        info!("{}", out.stdout.trim());
    }
    let formed = world.wait_formed(FORM_TIMEOUT);
    assert_eq!(formed.node_id, id, "node {id} leads");
}

/// The longest a (check, site) result may stay the same while a watch runs: three rounds
/// of the 1 s interval. Freshness alone would allow about five.
const ROUND_GAP_MAX: Duration = Duration::from_secs(3);

/// Watches `consentry status` of one node on its own thread while the test changes the
/// cluster. A problem is every moment a check was not OK and fresh from `sites`, a result
/// that did not change for [`ROUND_GAP_MAX`] (a missed round), or a stretch of that long in
/// which the watch itself could not read the status.
struct Watch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<(usize, Vec<String>)>>,
}

impl Watch {
    fn start(root: &Path, api: String, names: Vec<String>, sites: Vec<&'static str>) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let root: PathBuf = root.to_path_buf();
        let thread = std::thread::spawn(move || {
            let mut samples = 0;
            let mut problems = Vec::new();
            // (check, site) -> (its last `observed_at_ms`, when that value was first seen).
            let mut last_seen: BTreeMap<(String, String), (u64, Instant)> = BTreeMap::new();
            let mut last_sample = clock::now();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                // The answer shows the state of some moment between these two: a value
                // counts as stuck from when it was first back (`now`) to when the next
                // status was asked for, so a slow command is not a missed round.
                let asked = clock::now();
                let out = run_cli(&root, ["status", "--json", "--api", &api], &[]);
                let now = clock::now();
                let parsed = serde_json::from_str::<Value>(&out.stdout)
                    .ok()
                    .filter(|_| out.success());
                let Some(v) = parsed else {
                    if now.duration_since(last_sample) > ROUND_GAP_MAX {
                        problems.push(format!(
                            "no status for {:?}: {}",
                            now.duration_since(last_sample),
                            out.describe()
                        ));
                        last_sample = now;
                    }
                    std::thread::sleep(Duration::from_millis(400));
                    continue;
                };
                samples += 1;
                last_sample = now;
                for name in &names {
                    let Some(check) = v["checks"]
                        .as_array()
                        .and_then(|a| a.iter().find(|c| c["name"] == name.as_str()))
                    else {
                        problems.push(format!("{name}: missing from status"));
                        continue;
                    };
                    if check["verdict"] != "OK" {
                        problems.push(format!("{name}: verdict {}", check["verdict"]));
                    }
                    for site in &sites {
                        let Some(s) = check["sites"]
                            .as_array()
                            .and_then(|a| a.iter().find(|s| s["site"] == *site))
                        else {
                            problems.push(format!("{name}: no result from {site}"));
                            continue;
                        };
                        if s["fresh"] != true || s["status"] != "OK" {
                            problems.push(format!(
                                "{name} from {site}: status {} fresh {}",
                                s["status"], s["fresh"]
                            ));
                        }
                        let observed = s["observed_at_ms"].as_u64().unwrap_or(0);
                        let key = (name.clone(), (*site).to_owned());
                        match last_seen.get(&key) {
                            Some((before, since)) if *before == observed => {
                                let stuck = asked.saturating_duration_since(*since);
                                if stuck > ROUND_GAP_MAX {
                                    problems.push(format!(
                                        "{name} from {site}: the same result for {stuck:?}"
                                    ));
                                    last_seen.insert(key, (observed, now));
                                }
                            }
                            _ => {
                                last_seen.insert(key, (observed, now));
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(400));
            }
            (samples, problems)
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .expect("watch thread")
            .join()
            .expect("watch thread panicked")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // A test that panics: stop the thread before the world's directory goes.
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_cut_carrier_is_a_degraded_site_not_an_outage() {
    let Some(mh) = MultiHost::start("") else {
        return;
    };
    let world = &mh.world;

    info!("cut site-a's carrier: it can no longer reach any target");
    world.net().set_carrier(SITE_A, false);
    let firing = world.wait("a site-a degraded alert", CONVERGE, || {
        let hooks = mh.operator_hooks("site_degraded", "firing");
        hooks
            .into_iter()
            .find(|h| degraded_site(h) == Some(SITE_A))
            .ok_or_else(|| mh.receiver.describe())
    });
    info!("operator alert: {}", firing.summary());
    info!("site-a keeps reporting its failures; every check stays OK; no incident");
    world.wait(
        "every check path-suspect on site-a and OK",
        CONVERGE,
        || {
            let status = world.status_view(2)?;
            for name in mh.names() {
                let check = status.check(name)?;
                let a = check
                    .site(SITE_A)
                    .ok_or_else(|| format!("no site-a result: {}", check.describe()))?;
                if check.verdict != "OK" {
                    return Err(format!("verdict changed: {}", check.describe()));
                }
                if !(a.fresh && !a.is_ok() && a.path_suspect) {
                    return Err(check.describe());
                }
            }
            Ok(())
        },
    );
    crate::harness::hold_for(
        "no incident while only site-a fails",
        Duration::from_secs(4),
        || match mh.incident_hooks().len() {
            0 => Ok(()),
            n => Err(format!(
                "{n} incident notifications: {}",
                mh.receiver.describe()
            )),
        },
    );

    info!("heal the carrier: the alert clears, checks are OK from both sites");
    world.net().set_carrier(SITE_A, true);
    world.wait("the site-a degraded alert to clear", CONVERGE, || {
        if mh
            .operator_hooks("site_degraded", "resolved")
            .iter()
            .any(|h| degraded_site(h) == Some(SITE_A))
        {
            Ok(())
        } else {
            Err(mh.receiver.describe())
        }
    });
    world.wait_checks_ok(&mh.names(), CONVERGE);
    assert!(world.incidents_view(1).expect("incidents").is_empty());
    assert!(mh.incident_hooks().is_empty(), "{}", mh.receiver.describe());
    mh.assert_no_batch_dropped(&[1, 2, 3]);
}

#[test]
fn a_partition_isolating_the_leader_leaves_one_history() {
    let Some(mh) = MultiHost::start("") else {
        return;
    };
    let world = &mh.world;
    lead_from(world, 1);
    let hooks_before = mh.receiver.hooks().len();

    info!("isolate site-a (the leader's site) from the other sites; its carrier stays up");
    world.net().set_isolated(SITE_A, true);
    let majority_leader = world.wait("the majority to elect a leader", CONVERGE, || {
        let view = world.cluster_view(2)?;
        match view.leader {
            Some(l) if l != 1 && world.cluster_view(3)?.leader == Some(l) => Ok(l),
            other => Err(format!("nodes 2 and 3 see leader {other:?}")),
        }
    });
    info!("nodes 2 and 3 elected node {majority_leader}");
    std::thread::sleep(Duration::from_secs(2));
    let frozen = world.cluster_view(1).expect("node 1 answers its API");
    info!(
        "node 1 (minority) applied {} at term {}",
        frozen.applied_index, frozen.term
    );

    info!("the majority keeps deciding: an outage of web opens an incident there");
    mh.web.stop();
    let incident = world.wait("an incident for web on the majority", CONVERGE, || {
        let incidents = world.incidents_view(2)?;
        incidents
            .into_iter()
            .find(|i| i.check == "web" && i.is_open())
            .ok_or_else(|| "no open incident for web yet".to_string())
    });
    info!("majority incident: {}", incident.describe());
    let firing = world.wait("the majority leader's notification", CONVERGE, || {
        mh.receiver
            .hooks()
            .into_iter()
            .skip(hooks_before)
            .find(|h| h.check() == Some("web") && h.transition() == Some("firing"))
            .ok_or_else(|| mh.receiver.describe())
    });
    assert_eq!(
        firing.node_id(),
        Some(majority_leader),
        "{}",
        firing.summary()
    );

    info!("the minority committed nothing and sent nothing");
    let still = world.cluster_view(1).expect("node 1 answers its API");
    assert_eq!(
        still.applied_index, frozen.applied_index,
        "node 1 applied entries without a quorum"
    );
    assert!(
        world
            .incidents_view(1)
            .expect("incidents of node 1")
            .iter()
            .all(|i| i.check != "web"),
        "the minority knows of the incident it could not have committed"
    );
    // Judged by where a notification came from (site-a's management address), not only
    // by the node id its body names, and over a window, not at one moment.
    let site_a_ip: std::net::IpAddr = world.net().site(SITE_A).mgmt_ip().parse().expect("an IP");
    crate::harness::hold_for("nothing sent by the minority", SETTLE, || {
        let from_minority: Vec<String> = mh
            .receiver
            .hooks()
            .into_iter()
            .skip(hooks_before)
            .filter(|h| h.node_id() == Some(1) || h.peer == Some(site_a_ip))
            .map(|h| h.summary())
            .collect();
        match from_minority.is_empty() {
            true => Ok(()),
            false => Err(format!("node 1 notified: {from_minority:?}")),
        }
    });

    info!("heal: web comes back, the partition ends, every node has one history");
    mh.web.resume();
    world.net().set_isolated(SITE_A, false);
    world.wait_formed(CONVERGE);
    let closed = world.wait_incident_closed(&incident.id(), CONVERGE);
    info!("closed: {}", closed.describe());
    world.wait("every node to hold the same incidents", CONVERGE, || {
        let mut seen = Vec::new();
        for id in [1, 2, 3] {
            let incidents = world.incidents_view(id)?;
            seen.push(
                incidents
                    .iter()
                    .map(|i| format!("{}:{}:{}", i.id(), i.check, i.is_open()))
                    .collect::<Vec<_>>(),
            );
        }
        if seen.windows(2).all(|w| w[0] == w[1]) {
            Ok(())
        } else {
            Err(format!("nodes disagree: {seen:?}"))
        }
    });
    let web_incidents = world
        .incidents_view(1)
        .expect("incidents")
        .into_iter()
        .filter(|i| i.check == "web")
        .count();
    assert_eq!(web_incidents, 1, "one incident for the one outage");
}

#[test]
fn a_fourth_node_joins_under_load_and_an_old_one_leaves() {
    let Some(mut mh) = MultiHost::start("") else {
        return;
    };
    lead_from(&mh.world, 1);
    let watch = Watch::start(
        mh.world.root(),
        mh.world.api(1),
        mh.names.clone(),
        vec![SITE_A],
    );

    info!("node 4 starts in a new site-d namespace with join = true");
    let joiner = mh.world.start_joining_site("site-d", 4, "");
    let world = &mh.world;
    let added = world.cluster_add(2, &joiner).expect_success();
    info!("{}", added.stdout.trim());
    assert!(
        added.stdout.contains("and caught up") && !added.stdout.contains("not caught up"),
        "{}",
        added.describe()
    );
    world.wait_checks_ok_from(1, &mh.names(), &["site-d"], CONVERGE);
    info!("promote node 4, remove node 2 (site-b), stop it");
    admin(world, 3, &["cluster", "promote", "4"]);
    admin(world, 1, &["cluster", "remove", "2"]);
    mh.world.kill9(2);
    mh.world.set_members(&[1, 3, 4]);
    let world = &mh.world;
    let formed = world.wait_formed(CONVERGE);
    assert_eq!(formed.member_ids(), vec![1, 3, 4]);
    // A few more rounds with the new membership before judging.
    std::thread::sleep(Duration::from_secs(3));
    let (samples, problems) = watch.finish();
    info!("watched {samples} status samples of node 1");
    assert!(samples >= 10, "too few status samples: {samples}");
    assert!(
        problems.is_empty(),
        "a check missed a round or changed verdict:\n{}",
        problems.join("\n")
    );
    assert!(world.incidents_view(1).expect("incidents").is_empty());
    assert!(mh.incident_hooks().is_empty(), "{}", mh.receiver.describe());
    mh.assert_no_batch_dropped(&[1, 3, 4]);
}

#[test]
fn a_rolling_restart_under_load_loses_nothing() {
    let Some(mh) = MultiHost::start("") else {
        return;
    };
    let world = &mh.world;
    // Followers first, the leader last: what an operator does.
    let leader = world.leader();
    let mut order: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    order.push(leader);
    for id in order {
        info!("restart node {id} (SIGTERM, then start)");
        world.node(id).stop(STOP_GRACE);
        std::thread::sleep(Duration::from_millis(500));
        world.restart(id);
        world.wait_caught_up(id, CONVERGE);
        // Both probing sites report again before the next node goes.
        world.wait_checks_ok(&mh.names(), CONVERGE);
    }
    crate::harness::hold_for("no incident after the restarts", SETTLE, || {
        let incidents = world.incidents_view(1)?;
        let hooks = mh.incident_hooks();
        match incidents.is_empty() && hooks.is_empty() {
            true => Ok(()),
            false => Err(format!(
                "incidents {} hooks {}",
                crate::harness::describe_incidents(&incidents),
                mh.receiver.describe()
            )),
        }
    });
    mh.assert_no_batch_dropped(&[1, 2, 3]);
}

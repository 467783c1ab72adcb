//! Recovery runbooks and the host agent, end to end: the real `consentry agent` process with
//! its own certificate, real nginx restarted by an allow-listed action, a leader killed
//! between the dispatch and the outcome, agent checks on a filled filesystem and a log line.
//!
//! The ledger's refusal of an older fencing token is a unit test in node/src/agent/run.rs
//! (`the_ledger_runs_each_step_once_and_refuses_old_tokens_and_unknown_actions`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{
    alert_deadline, clean_env, die_with_test, hold_for, run_with_deadline, Receiver, World,
    WorldOptions, CHECKS_OK_TIMEOUT, FORM_TIMEOUT,
};
use crate::servers::{binary, is_root, ServerDir, Unavailable};

/// From a stopped target to a closed incident: confirm, `after`, dispatch, poll, run, verify.
const RECOVERED_TIMEOUT: Duration = Duration::from_secs(90);
/// nginx's launcher checks the config, forks the daemon and exits.
const NGINX_START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `consentry agent`, killed on drop.
struct AgentProc {
    child: Child,
    log: PathBuf,
}

impl AgentProc {
    fn start(world: &World, config: &Path) -> Self {
        let log = config.with_extension("log");
        let out = fs::File::create(&log).expect("agent log");
        let mut cmd = Command::new(crate::harness::cli::binary());
        clean_env(&mut cmd);
        die_with_test(&mut cmd);
        let child = cmd
            .args(["agent", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .current_dir(world.root())
            .spawn()
            .expect("start consentry agent");
        Self { child, log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- agent log ---\n{}", self.log());
        }
    }
}

/// Issues `agent-web1` and writes agent.toml (nodes in `order`, reporting every second).
fn agent_config(world: &World, dir: &Path, order: &[u64], extra: &str) -> PathBuf {
    let certs = world.root().join("certs");
    world
        .cli(&[
            "certs",
            "issue",
            "--dir",
            &certs.to_string_lossy(),
            "--agents",
            "web1",
        ])
        .expect_success();
    let mut text = format!(
        "state_dir = \"{}\"\ninterval = \"1s\"\n{extra}\n[tls]\nca = \"{c}/ca.pem\"\ncert = \"{c}/agent-web1.pem\"\nkey = \"{c}/agent-web1.key\"\n",
        dir.join("agent-state").display(),
        c = certs.display(),
    );
    for id in order {
        text.push_str(&format!(
            "\n[[node]]\nid = {id}\naddr = \"{}\"\n",
            world.node(*id).spec.raft_addr()
        ));
    }
    let path = dir.join("agent.toml");
    fs::write(&path, text).expect("write agent.toml");
    path
}

fn incident_json(world: &World, id: &str) -> Result<Value, String> {
    let url = format!("{}/api/v1/incidents/{id}", world.api(world.reader()));
    let (code, body) = world.http_get(&url)?;
    if code != 200 {
        return Err(format!("GET {url}: {code} {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
}

/// The incident's timeline events as (kind, fields).
fn events(incident: &Value) -> Vec<(String, Value)> {
    incident["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let obj = e["event"].as_object()?;
            let (k, v) = obj.iter().next()?;
            Some((k.clone(), v.clone()))
        })
        .collect()
}

fn kinds(incident: &Value) -> Vec<String> {
    events(incident).into_iter().map(|(k, _)| k).collect()
}

/// nginx that daemonizes (`daemon on`), as an init script leaves it: the agent's restart
/// action starts it the same way.
struct DaemonNginx {
    argv: Vec<String>,
    pid_file: PathBuf,
    port: u16,
}

impl DaemonNginx {
    fn prepare(dir: &ServerDir) -> Result<Self, Unavailable> {
        let nginx = binary(&["/usr/sbin/nginx"], "nginx")?;
        let port = crate::harness::free_tcp_port();
        let d = dir.mkdir("nginx");
        fs::create_dir_all(d.join("www")).expect("www");
        fs::create_dir_all(d.join("tmp")).expect("tmp");
        fs::write(d.join("www/index.html"), "up\n").expect("index");
        let dd = d.display();
        let conf = format!(
            "daemon on;\nmaster_process on;\nworker_processes 1;\npid {dd}/nginx.pid;\nerror_log {dd}/error.log;\nevents {{ worker_connections 32; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {dd}/tmp/body;\n  proxy_temp_path {dd}/tmp/proxy;\n  fastcgi_temp_path {dd}/tmp/fastcgi;\n  uwsgi_temp_path {dd}/tmp/uwsgi;\n  scgi_temp_path {dd}/tmp/scgi;\n  server {{ listen 127.0.0.1:{port}; root {dd}/www; }}\n}}\n"
        );
        let conf_path = dir.write("nginx/nginx.conf", &conf);
        Ok(Self {
            argv: vec![
                nginx.display().to_string(),
                "-c".into(),
                conf_path.display().to_string(),
                "-p".into(),
                d.display().to_string(),
            ],
            pid_file: d.join("nginx.pid"),
            port,
        })
    }

    fn start(&self) {
        let out = run_with_deadline(
            Command::new(&self.argv[0]).args(&self.argv[1..]),
            None,
            NGINX_START_TIMEOUT,
        );
        assert!(out.success(), "nginx did not start: {}", out.describe());
    }

    /// SIGKILL to the master and its workers (their process group).
    fn kill(&self) {
        if let Ok(pid) = fs::read_to_string(&self.pid_file) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: kill(2) has no memory effects; -pid names nginx's group.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }

    fn answers(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }
}

impl Drop for DaemonNginx {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A small tmpfs of our own (root only): an agent disk check's mount.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Result<Self, String> {
        fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "consentry-e2e"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_killed_nginx_is_restarted_by_the_agent_and_agent_checks_open_incidents() {
    let dir = ServerDir::new("recovery");
    let Some(nginx) = crate::servers::available(DaemonNginx::prepare(&dir)) else {
        return;
    };
    nginx.start();
    let tmpfs = if is_root() {
        Some(Tmpfs::mount(&dir.join("small")).expect("mount a tmpfs"))
    } else {
        crate::harness::skip_unless_required("the disk part needs root to mount a tmpfs");
        None
    };
    let world = World::three_nodes(&WorldOptions::default());
    let receiver = Receiver::start(&world.handle());
    world.wait_formed(FORM_TIMEOUT);
    let messages = dir.join("messages");
    fs::write(&messages, "boot\n").expect("log");
    let mounts = match &tmpfs {
        Some(t) => format!("mounts = [\"{}\"]", t.0.display()),
        None => String::new(),
    };
    let actions = format!(
        "{mounts}\n\n[[log]]\npath = \"{}\"\npattern = \"Error\"\n\n[[action]]\nname = \"restart-nginx\"\nargv = [{}]\ntimeout = \"20s\"\n",
        messages.display(),
        nginx
            .argv
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let config = agent_config(&world, dir.path(), &[1, 2, 3], "");
    let text = fs::read_to_string(&config).unwrap();
    let (head, tail) = text.split_at(text.find("[tls]").unwrap());
    fs::write(&config, format!("{head}{actions}\n{tail}")).unwrap();
    let agent = AgentProc::start(&world, &config);

    let disk_check = match &tmpfs {
        Some(t) => format!(
            "\n[[check]]\nname = \"web1-disk\"\nkind = \"agent\"\nagent = \"web1\"\nmetric = \"disk\"\nmount = \"{}\"\ninterval = \"2s\"\n",
            t.0.display()
        ),
        None => String::new(),
    };
    let checks = format!(
        "[defaults]\ninterval = \"1s\"\ntimeout = \"500ms\"\nconfirm = {{ sites = 2, rounds = 2 }}\nrecover = {{ rounds = 2 }}\nnotify = [\"ops\"]\n\n\
         [[check]]\nname = \"web\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{}/\"\nrecovery = \"restart-web\"\n\n\
         [[check]]\nname = \"web1-log\"\nkind = \"agent\"\nagent = \"web1\"\nmetric = \"log\"\nlog = \"{}\"\ninterval = \"2s\"\n{disk_check}\n\
         [[notifier]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"{}\"\n\n\
         [[runbook]]\nname = \"restart-web\"\n[[runbook.step]]\nagent = \"web1\"\naction = \"restart-nginx\"\nafter = \"1s\"\ntimeout = \"15s\"\nverify = \"30s\"\n",
        nginx.port,
        messages.display(),
        receiver.url(),
    );
    world.apply(&checks).expect_success();
    let mut names = vec!["web", "web1-log"];
    if tmpfs.is_some() {
        names.push("web1-disk");
    }
    world.wait_checks_ok_from(world.reader(), &names, &[], CHECKS_OK_TIMEOUT);

    info!("kill nginx: quorum incident, the leader dispatches restart-nginx, the agent runs it");
    nginx.kill();
    let incident = world.wait_one_open_incident("web", alert_deadline());
    let closed = world.wait_incident_closed(&incident.id(), RECOVERED_TIMEOUT);
    assert!(nginx.answers(), "nginx answers after the restart");
    let inc = incident_json(&world, &closed.id()).expect("incident");
    let kinds = kinds(&inc);
    info!("timeline: {kinds:?}");
    for k in [
        "opened",
        "recovery_step",
        "recovery_dispatched",
        "recovery_outcome",
        "closed",
    ] {
        assert!(kinds.contains(&k.to_string()), "{k} missing from {kinds:?}");
    }
    let outcome = events(&inc)
        .into_iter()
        .find(|(k, _)| k == "recovery_outcome")
        .map(|(_, v)| v)
        .unwrap();
    assert_eq!(outcome["by"], "agent web1", "{outcome}");
    assert!(outcome["outcome"]["succeeded"].is_object(), "{outcome}");
    let order: Vec<usize> = [
        "opened",
        "recovery_dispatched",
        "recovery_outcome",
        "closed",
    ]
    .iter()
    .map(|k| kinds.iter().position(|x| x == k).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "order: {kinds:?}");

    info!("a log line with \"Error\": web1-log opens an incident");
    fs::OpenOptions::new()
        .append(true)
        .open(&messages)
        .and_then(|mut f| {
            use std::io::Write;
            writeln!(f, "Nov 22 03:00:00 web1 kernel: Error: I/O error on sda")
        })
        .expect("append");
    // A matching line is news once: the next report without one recovers the check, so
    // the incident may already be closed when we look.
    let log_incident = world.wait("an incident for web1-log", alert_deadline(), || {
        let all = world.incidents_view(world.reader())?;
        all.into_iter()
            .find(|i| i.check == "web1-log")
            .ok_or_else(|| "none yet".to_string())
    });
    assert_eq!(
        log_incident.opened_by_sites(),
        vec!["agent:web1".to_string()]
    );
    let inc = incident_json(&world, &log_incident.id()).unwrap();
    assert!(
        inc["opened_by"][0]["last"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("I/O error on sda")),
        "{}",
        inc["opened_by"]
    );

    if let Some(t) = &tmpfs {
        info!("fill the 4 MiB filesystem to 95 %: web1-disk opens a CRITICAL incident");
        fs::write(t.0.join("fill"), vec![0u8; 3_900 * 1024]).expect("fill tmpfs");
        let find = |open: bool| {
            let all = world.incidents_view(world.reader())?;
            all.iter()
                .find(|i| i.check == "web1-disk" && i.is_open() == open)
                .cloned()
                .ok_or_else(|| crate::harness::describe_incidents(&all))
        };
        let disk = world.wait("an open incident for web1-disk", alert_deadline(), || {
            find(true)
        });
        assert_eq!(disk.severity.as_deref(), Some("CRITICAL"));
        assert!(
            disk.opened_by[0]["last"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("disk")),
            "{:?}",
            disk.opened_by
        );
        fs::remove_file(t.0.join("fill")).unwrap();
        world.wait("the web1-disk incident to close", alert_deadline(), || {
            find(false)
        });
    }
    drop(agent);
}

#[test]
fn a_leader_killed_mid_step_the_action_runs_exactly_once_and_the_agent_fails_over() {
    let dir = ServerDir::new("recovery-once");
    let world = World::three_nodes(&WorldOptions::default());
    let receiver = Receiver::start(&world.handle());
    world.wait_formed(FORM_TIMEOUT);
    let leader = world.leader();
    let mut order = vec![leader];
    order.extend([1, 2, 3].into_iter().filter(|id| *id != leader));
    let counter = dir.join("counter");
    let script = dir.write(
        "count.sh",
        &format!("sleep 4\necho ran >> {}\n", counter.display()),
    );
    let config = agent_config(
        &world,
        dir.path(),
        &order,
        &format!(
            "\n[[action]]\nname = \"count\"\nargv = [\"/bin/sh\", \"{}\"]\n",
            script.display()
        ),
    );
    let agent = AgentProc::start(&world, &config);
    let checks = format!(
        "[defaults]\ninterval = \"1s\"\ntimeout = \"500ms\"\nconfirm = {{ sites = 2, rounds = 2 }}\nrecover = {{ rounds = 2 }}\nnotify = [\"ops\"]\n\n\
         [[check]]\nname = \"svc\"\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {}\nrecovery = \"twice\"\n\n\
         [[notifier]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"{}\"\n\n\
         [[runbook]]\nname = \"twice\"\n\
         [[runbook.step]]\nagent = \"web1\"\naction = \"count\"\nafter = \"1s\"\ntimeout = \"30s\"\nverify = \"0s\"\n\
         [[runbook.step]]\nagent = \"web1\"\naction = \"format-disk\"\nafter = \"1s\"\n\
         [[runbook.step]]\nwebhook = \"{}\"\nafter = \"1s\"\nverify = \"0s\"\n",
        crate::harness::free_tcp_port(),
        receiver.url(),
        receiver.url().replace("/hook", "/recovery"),
    );
    world.apply(&checks).expect_success();

    info!("the agent reports through the leader (node {leader})");
    let agents = |via: u64| -> Result<Value, String> {
        let (code, body) = world.http_get(&format!("{}/api/v1/agents", world.api(via)))?;
        if code != 200 {
            return Err(format!("{code} {body}"));
        }
        serde_json::from_str::<Value>(&body).map_err(|e| e.to_string())
    };
    world.wait(
        "the agent to report through the leader",
        Duration::from_secs(30),
        || {
            let a = agents(leader)?;
            (a["web1"]["via_node"] == leader && a["web1"]["reports"].as_u64() > Some(2))
                .then_some(())
                .ok_or_else(|| a.to_string())
        },
    );

    info!("svc never answered: the runbook's first step is dispatched; kill -9 the leader then");
    let incident = world.wait_one_open_incident("svc", alert_deadline());
    world.wait("the dispatch to commit", Duration::from_secs(30), || {
        let inc = incident_json(&world, &incident.id())?;
        let seen = kinds(&inc);
        // The step takes over 4 s (count.sh sleeps first): the kill must come before its
        // outcome, or this test would not kill the leader mid-step.
        assert!(
            !seen.contains(&"recovery_outcome".to_string()),
            "the step's outcome is recorded before the leader could be killed: {seen:?}"
        );
        seen.contains(&"recovery_dispatched".to_string())
            .then_some(())
            .ok_or_else(|| format!("{seen:?}"))
    });
    // The leader's own view, just before it dies: the last report it applied.
    let at_leader = agents(leader).expect("the leader's agents view before the kill");
    let seq_at_kill = at_leader["web1"]["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no report of web1 in the leader's view: {at_leader}"));
    info!("node {leader} applied web1's report {seq_at_kill}; kill -9 it");
    world.kill9(leader);
    assert!(
        !counter.exists(),
        "the action finished before the leader was killed: it was not killed mid-step"
    );
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();

    info!("the agent moves to another node within seconds, and loses no report");
    let moved = world.wait(
        "the agent to report through another node",
        Duration::from_secs(20),
        || {
            let a = agents(others[0])?;
            let via = a["web1"]["via_node"].as_u64().unwrap_or(0);
            (via != leader && a["web1"]["seq"].as_u64() > Some(seq_at_kill + 2))
                .then_some(a.clone())
                .ok_or_else(|| a.to_string())
        },
    );
    assert_eq!(moved["web1"]["gaps"], 0, "no report lost: {moved}");

    info!("the step's outcome reaches the new leader's log; the action ran once");
    let inc = world.wait(
        "the outcomes of the three steps",
        Duration::from_secs(60),
        || {
            let inc = incident_json(&world, &incident.id())?;
            let outcomes: Vec<Value> = events(&inc)
                .into_iter()
                .filter(|(k, _)| k == "recovery_outcome")
                .map(|(_, v)| v)
                .collect();
            (outcomes.len() >= 3 && kinds(&inc).contains(&"recovery_finished".to_string()))
                .then_some(inc.clone())
                .ok_or_else(|| format!("{:?}", events(&inc)))
        },
    );
    let ev = events(&inc);
    let outcomes: Vec<&Value> = ev
        .iter()
        .filter(|(k, _)| k == "recovery_outcome")
        .map(|(_, v)| v)
        .collect();
    assert!(outcomes[0]["outcome"]["succeeded"].is_object(), "{ev:?}");
    assert_eq!(outcomes[0]["by"], "agent web1");
    let dispatches: Vec<&Value> = ev
        .iter()
        .filter(|(k, _)| k == "recovery_dispatched")
        .map(|(_, v)| v)
        .collect();
    info!("dispatches: {dispatches:?}");
    let refused = &outcomes[1]["outcome"]["refused"]["reason"];
    assert!(
        refused.as_str().is_some_and(|r| r.contains("format-disk")),
        "the unknown action is refused: {ev:?}"
    );
    info!("the leader ran the webhook step itself, under its fencing token");
    let new_leader = world.leader();
    assert_eq!(outcomes[2]["by"], format!("leader {new_leader}"), "{ev:?}");
    assert!(outcomes[2]["outcome"]["succeeded"].is_object(), "{ev:?}");
    let step_hook = receiver
        .hooks()
        .into_iter()
        .find(|h| h.path == "/recovery")
        .unwrap_or_else(|| panic!("no recovery webhook: {}", receiver.describe()));
    assert_eq!(step_hook.body["check"], "svc", "{}", step_hook.body);
    // The header receivers dedupe by, as notifications carry it.
    assert_eq!(
        step_hook.dedup_header.as_deref(),
        step_hook.body["dedup_key"].as_str(),
        "{}",
        step_hook.body
    );
    assert!(step_hook.dedup_header.is_some(), "{}", step_hook.body);
    let token = dispatches
        .last()
        .map(|d| format!("{}.{}", d["token"]["term"], d["token"]["index"]));
    assert_eq!(
        step_hook.body["fencing_token"].as_str().map(String::from),
        token,
        "{}",
        step_hook.body
    );
    hold_for(
        "the action to stay run once",
        Duration::from_secs(5),
        || {
            let runs = fs::read_to_string(&counter).unwrap_or_default();
            (runs.lines().count() == 1)
                .then_some(())
                .ok_or_else(|| format!("counter: {runs:?}"))
        },
    );
    info!("every step ran and svc is still down: \"recovery failed\" is notified");
    world.wait(
        "the recovery-failed notification",
        Duration::from_secs(30),
        || {
            receiver
                .hooks()
                .into_iter()
                .find(|h| h.body["alert"] == "recovery_failed")
                .map(|_| ())
                .ok_or_else(|| receiver.describe())
        },
    );
    assert!(
        agent.log().contains("refused a dispatch"),
        "the agent logs the refusal"
    );
}

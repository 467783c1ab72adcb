//! The README's run command: `consentry demo` forms its cluster, probes its target from
//! both sites, and reports an outage that both sites agree on, with the notification
//! printed to its terminal.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{clean_env, wait_until};

/// The demo builds nothing, but three nodes must elect a leader and probe twice.
const DEMO_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// interval 2 s x 2 rounds, plus flush and replication slack.
const DEMO_ALERT_TIMEOUT: Duration = Duration::from_secs(20);

struct Demo {
    child: Child,
    stdout: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three consecutive free TCP ports (the demo's APIs use port, port+1, port+2).
///
/// Searched below Linux's ephemeral range (32768-60999 by default), where outgoing
/// connections of other tests and programs take ports at random and would make
/// consecutive free ports rare; the start varies with the process id so parallel runs
/// do not collide.
fn three_free_ports() -> u16 {
    const LOW: u32 = 20_000;
    const HIGH: u32 = 32_000;
    let span = (HIGH - LOW) / 3;
    let start = std::process::id() % span;
    for i in 0..span {
        let base = u16::try_from(LOW + ((start + i) % span) * 3).expect("below 32000");
        let held: Vec<_> = (0..3)
            .map_while(|k| TcpListener::bind((Ipv4Addr::LOCALHOST, base + k)).ok())
            .collect();
        if held.len() == 3 {
            return base;
        }
    }
    panic!("no three consecutive free loopback ports in {LOW}-{HIGH}");
}

fn http(port: u16, method: &str, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.take(4 * 1024 * 1024)
        .read_to_string(&mut out)
        .map_err(|e| e.to_string())?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    if out.starts_with("HTTP/1.1 200") {
        Ok(body)
    } else {
        Err(out.lines().next().unwrap_or("").to_string())
    }
}

fn verdicts(port: u16) -> Result<Vec<(String, String, usize)>, String> {
    let body = http(port, "GET", "/api/v1/status")?;
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    Ok(v["checks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    let fresh_sites = c["sites"]
                        .as_array()
                        .map_or(0, |s| s.iter().filter(|x| x["fresh"] == true).count());
                    (
                        c["name"].as_str().unwrap_or("").to_string(),
                        c["verdict"].as_str().unwrap_or("").to_string(),
                        fresh_sites,
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

#[test]
fn demo_runs_and_reports_an_agreed_outage() {
    let port = three_free_ports();
    let dir = tempfile::tempdir().expect("tempdir");
    let stdout = dir.path().join("demo.out");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_consentry"));
    clean_env(&mut cmd);
    cmd.args(["demo", "--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).expect("stdout file"))
        .stderr(std::fs::File::create(dir.path().join("demo.err")).expect("stderr file"));
    let demo = Demo {
        child: cmd.spawn().expect("spawn consentry demo"),
        stdout,
        _dir: dir,
    };
    let printed = || std::fs::read_to_string(&demo.stdout).unwrap_or_default();

    info!("the demo prints where the dashboard is and what to try");
    wait_until("the demo's welcome text", DEMO_READY_TIMEOUT, || {
        let out = printed();
        if out.contains(&format!("http://127.0.0.1:{port}/")) && out.contains("/api/v1/demo/break")
        {
            Ok(())
        } else {
            Err(out)
        }
    });
    let page = http(port, "GET", "/").expect("dashboard");
    assert!(
        page.contains("<title>consentry</title>"),
        "the dashboard is served at /"
    );

    info!("both demo checks become OK, seen fresh from both probing sites");
    wait_until("demo checks OK from two sites", DEMO_READY_TIMEOUT, || {
        let v = verdicts(port)?;
        if v.len() == 2
            && v.iter()
                .all(|(_, verdict, fresh)| verdict == "OK" && *fresh == 2)
        {
            Ok(())
        } else {
            Err(format!("{v:?}"))
        }
    });

    info!("break the target: both sites agree, the checks turn CRITICAL and the leader's webhook is printed");
    http(port, "POST", "/api/v1/demo/break").expect("break");
    wait_until("both checks CRITICAL", DEMO_ALERT_TIMEOUT, || {
        let v = verdicts(port + 1)?;
        if v.iter().all(|(_, verdict, _)| verdict == "CRITICAL") {
            Ok(())
        } else {
            Err(format!("{v:?}"))
        }
    });
    wait_until("a FIRING notification line", DEMO_ALERT_TIMEOUT, || {
        let out = printed();
        if out.contains("[notification] FIRING demo-web") {
            Ok(())
        } else {
            Err(out)
        }
    });

    info!("heal it: a RESOLVED line follows");
    http(port, "POST", "/api/v1/demo/heal").expect("heal");
    wait_until("a RESOLVED notification line", DEMO_ALERT_TIMEOUT, || {
        let out = printed();
        if out.contains("[notification] RESOLVED demo-web") {
            Ok(())
        } else {
            Err(out)
        }
    });
    assert_eq!(
        printed().matches("[notification] FIRING demo-web").count(),
        1,
        "one firing line: {}",
        printed()
    );
}

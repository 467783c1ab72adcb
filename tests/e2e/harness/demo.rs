//! `consentry demo` as a child process: three nodes on consecutive loopback API ports, its
//! own target and webhook receiver. Shared by the demo test (t05) and the dashboard test
//! (t88).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{clean_env, die_with_test, wait_until};

/// The demo builds nothing, but three nodes must elect a leader and probe twice.
pub const DEMO_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// interval 2 s x 2 rounds, plus flush and replication slack.
pub const DEMO_ALERT_TIMEOUT: Duration = Duration::from_secs(20);
/// Lines of the demo's output printed when a test using it fails.
const OUTPUT_TAIL_LINES: usize = 40;

/// A running `consentry demo`; killed when dropped (its output is printed first when the
/// test is failing).
pub struct Demo {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    /// The first node's API port (the dashboard); the others use the next two.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Demo {
    /// Starts `consentry demo` on three free consecutive ports.
    pub fn spawn() -> Self {
        let port = three_free_ports();
        let dir = tempfile::tempdir().expect("tempdir");
        let stdout = dir.path().join("demo.out");
        let stderr = dir.path().join("demo.err");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_consentry"));
        clean_env(&mut cmd);
        // The demo frees its ports however the test ends.
        die_with_test(&mut cmd);
        cmd.args(["demo", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        Demo {
            child: cmd.spawn().expect("spawn consentry demo"),
            stdout,
            stderr,
            port,
            _dir: dir,
        }
    }

    /// What the demo printed to its terminal so far.
    pub fn printed(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// The dashboard's address.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Waits for the welcome text, which the demo prints once its checks are applied.
    pub fn wait_for_welcome(&self) {
        wait_until("the demo's welcome text", DEMO_READY_TIMEOUT, || {
            let out = self.printed();
            if out.contains(&self.url()) && out.contains("/api/v1/demo/break") {
                Ok(())
            } else {
                Err(out)
            }
        });
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            for (name, path) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(OUTPUT_TAIL_LINES)..];
                eprintln!(
                    "\n===== consentry demo {name} (last lines) =====\n{}",
                    tail.join("\n")
                );
            }
        }
    }
}

/// Three consecutive free TCP ports (the demo's APIs use port, port+1, port+2).
///
/// Searched below Linux's ephemeral range (32768-60999 by default), where outgoing
/// connections of other tests and programs take ports at random and would make
/// consecutive free ports rare; the start varies with the process id so parallel runs
/// do not collide, and ports handed out by this process are not handed out again.
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
        if held.len() == 3 && super::ports::claim_range(base, 3) {
            return base;
        }
    }
    panic!("no three consecutive free loopback ports in {LOW}-{HIGH}");
}

/// One HTTP/1.1 request to the demo's node at `port`; the body of a 200 answer, else the
/// status line.
pub fn http(port: u16, method: &str, path: &str) -> Result<String, String> {
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

/// Each check's name, agreed verdict and number of fresh sites, from `GET /api/v1/status`.
pub fn verdicts(port: u16) -> Result<Vec<(String, String, usize)>, String> {
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

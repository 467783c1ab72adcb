//! Real Debian servers the probe and notifier tests start and stop themselves: nginx, sshd,
//! postfix, dovecot, vsftpd, unbound, mariadb, postgresql and alertmanager.
//!
//! Each server runs from config files written into its own temporary directory, listens
//! only on 127.0.0.1 ports the harness picked, runs in the foreground in its own process
//! group, and is killed (the whole group, SIGKILL) when its handle is dropped. No system
//! service is used or touched. Every server's logs stay in its directory and are printed
//! when a test fails. A server whose binary is missing (or that needs root when the suite
//! is not root) is [`Unavailable`]: the test skips, or fails under
//! `CONSENTRY_E2E_REQUIRED=1`.
//!
//! Beside the servers: a self-signed certificate made with `openssl` ([`TestCert`]), a
//! delaying TCP relay that puts a real server behind a slow path ([`DelayProxy`]), and
//! runners for `consentry probe` ([`probe`]) and monitoring-plugins ([`plugin`]).

pub mod alertmanager;
pub mod dovecot;
pub mod mariadb;
pub mod nginx;
pub mod postfix;
pub mod postgres;
pub mod sshd;
pub mod unbound;
pub mod vsftpd;

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde::Deserialize;

use crate::harness::{clean_env, run_cli, skip_unless_required, wait_until};

/// How long a server may take from spawn to answering on its port (mariadb and postgres
/// on two busy cores are the slow ones).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// A setup command (initdb, mariadb-install-db, openssl, ssh-keygen) that runs longer
/// than this is killed and fails the test.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// A monitoring plugin that runs longer than this is killed (their own default is 10 s).
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The part of a log printed when a test fails.
const LOG_TAIL_BYTES: u64 = 8 * 1024;
/// Output kept from one setup command or plugin run.
const OUTPUT_BYTES_MAX: u64 = 1024 * 1024;
/// Days the test certificate is valid: between the tls kind's default `days_critical` (14)
/// and `days_warning` (30), so the defaults judge it WARNING.
pub const CERT_DAYS: u32 = 20;

/// Why a server cannot run on this machine; the test skips (or fails in CI).
#[derive(Debug, Clone)]
pub struct Unavailable(pub String);

/// Unwraps a started server, or skips the test: `let Some(s) = available(X::start(..)) else { return };`.
pub fn available<T>(started: Result<T, Unavailable>) -> Option<T> {
    match started {
        Ok(server) => Some(server),
        Err(Unavailable(reason)) => {
            skip_unless_required(&reason);
            None
        }
    }
}

/// The first of `candidates` that exists, or `Unavailable` naming the Debian package.
pub fn binary(candidates: &[&str], package: &str) -> Result<PathBuf, Unavailable> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Unavailable(format!(
                "{} not found (install the Debian package {package})",
                candidates.join(" or ")
            ))
        })
}

/// Prometheus' `promtool` (Debian package `prometheus`).
pub fn promtool() -> Result<PathBuf, Unavailable> {
    binary(
        &["/usr/bin/promtool", "/usr/local/bin/promtool"],
        "prometheus",
    )
}

/// How long one `promtool` run may take.
pub const PROMTOOL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// Whether the suite runs as root (postfix, sshd's privilege separation, postgres's
/// user switch need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn need_root(server: &str) -> Result<(), Unavailable> {
    if is_root() {
        Ok(())
    } else {
        Err(Unavailable(format!(
            "{server} needs root to start privately"
        )))
    }
}

/// One server's temporary directory, readable by the unprivileged users daemons switch
/// to (postfix, dovecot, postgres).
pub struct ServerDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl ServerDir {
    pub fn new(server: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("consentry-{server}-"))
            .tempdir()
            .expect("create server tempdir");
        let path = dir.path().to_path_buf();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod server dir");
        Self {
            dir: Some(dir),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `name` in the directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create config dir");
        }
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    pub fn mkdir(&self, name: &str) -> PathBuf {
        let path = self.join(name);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        path
    }
}

impl Drop for ServerDir {
    fn drop(&mut self) {
        let keep = std::env::var("CONSENTRY_E2E_KEEP").unwrap_or_default();
        if (std::thread::panicking() && !keep.is_empty()) || keep == "always" {
            if let Some(dir) = self.dir.take() {
                eprintln!("CONSENTRY_E2E_KEEP: kept {}", dir.keep().display());
            }
        }
    }
}

/// A server process in its own process group. Dropping it kills the group; when the
/// thread is panicking it first prints the server's logs.
pub struct Daemon {
    name: String,
    child: RefCell<Option<Child>>,
    logs: Vec<PathBuf>,
}

impl Daemon {
    /// Spawns `cmd` with stdout and stderr appended to `log` (also printed on failure,
    /// with `extra_logs`).
    pub fn spawn(name: &str, mut cmd: Command, log: &Path, extra_logs: &[PathBuf]) -> Self {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log handle");
        clean_env(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let mut logs = vec![log.to_path_buf()];
        logs.extend(extra_logs.iter().cloned());
        Self {
            name: name.to_owned(),
            child: RefCell::new(Some(child)),
            logs,
        }
    }

    /// Waits until `port` on 127.0.0.1 accepts connections; panics with the logs when the
    /// process exits or the deadline passes.
    pub fn wait_tcp(&self, port: u16) {
        wait_until(
            &format!("{} to listen on 127.0.0.1:{port}", self.name),
            READY_TIMEOUT,
            || {
                self.ensure_running()?;
                TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                    .map(drop)
                    .map_err(|e| format!("connect: {e}"))
            },
        );
    }

    /// `Err` with the logs when the process has exited.
    pub fn ensure_running(&self) -> Result<(), String> {
        let mut child = self.child.borrow_mut();
        let Some(child) = child.as_mut() else {
            return Err(format!("{} was stopped", self.name));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited on its own ({status})\n{}",
                self.name,
                self.logs_text()
            )),
            Err(e) => Err(format!("waiting for {}: {e}", self.name)),
        }
    }

    /// SIGSTOP to the whole process group: the kernel still accepts connections on its
    /// listening sockets, but nothing answers (a hung server). [`Daemon::kill`] ends it.
    pub fn freeze(&self) {
        if let Some(child) = self.child.borrow().as_ref() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: signalling the process group we created for this child.
                unsafe {
                    libc::kill(-pid, libc::SIGSTOP);
                }
            }
        }
    }

    /// SIGKILL to the whole process group, then reap. Idempotent.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.borrow_mut().take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: signalling the process group we created for this child.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The tail of every log, for failure messages.
    pub fn logs_text(&self) -> String {
        let mut text = String::new();
        for log in &self.logs {
            let _ = writeln!(
                text,
                "----- {} log {} (tail) -----\n{}",
                self.name,
                log.display(),
                tail(log)
            );
        }
        text
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs_text());
        }
        self.kill();
    }
}

fn tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return "<no log>".to_owned();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.take(LOG_TAIL_BYTES).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion with a deadline; `None` in `code` when it was killed.
pub fn run_command(mut cmd: Command, timeout: Duration) -> Output {
    clean_env(&mut cmd);
    let described = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {described}: {e}"));
    let read = |stream: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(s) = stream {
                let _ = s.take(OUTPUT_BYTES_MAX).read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let code = wait_until(&format!("{described} to finish"), timeout, || {
        match child.try_wait() {
            Ok(Some(status)) => Ok(status.code()),
            Ok(None) => Err("still running".to_owned()),
            Err(e) => panic!("waiting for {described}: {e}"),
        }
    });
    Output {
        code,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Runs a setup step and panics with its output unless it exits 0.
pub fn setup(cmd: Command) -> Output {
    let described = format!("{cmd:?}");
    let out = run_command(cmd, SETUP_TIMEOUT);
    assert_eq!(
        out.code,
        Some(0),
        "setup step failed: {described}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.stdout,
        out.stderr
    );
    out
}

/// A self-signed certificate for `localhost` and 127.0.0.1, valid [`CERT_DAYS`] days,
/// made by `openssl req` (an EC key: fast to make, accepted by every server here).
pub struct TestCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCert {
    pub fn make(dir: &ServerDir) -> Result<Self, Unavailable> {
        let openssl = binary(&["/usr/bin/openssl"], "openssl")?;
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let mut cmd = Command::new(openssl);
        cmd.args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .arg("ec_paramgen_curve:prime256v1")
            .args(["-nodes", "-days", &CERT_DAYS.to_string()])
            .args(["-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert);
        setup(cmd);
        // Daemons read the key after dropping privileges (dovecot reads it as root, but
        // keep it simple and readable: it protects nothing).
        for path in [&cert, &key] {
            fs::set_permissions(path, fs::Permissions::from_mode(0o644)).expect("chmod cert");
        }
        Ok(Self { cert, key })
    }
}

/// A TCP relay on its own loopback port that waits `delay` after accepting before it
/// connects to the real server and relays both ways: the server, behind a slow path.
/// Connecting to it is immediate (the kernel accepts); the server's first byte arrives
/// `delay` later, which is what latency thresholds of banner and database kinds see.
pub struct DelayProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

impl DelayProxy {
    pub fn start(upstream_port: u16, delay: Duration) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind delay proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let accept = thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                thread::spawn(move || {
                    thread::sleep(delay);
                    let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream_port))
                    else {
                        return;
                    };
                    relay(client, server);
                });
            }
        });
        Self {
            port,
            stop,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn relay(client: TcpStream, server: TcpStream) {
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = thread::spawn(move || copy_then_close(client, server));
    copy_then_close(server2, client2);
    let _ = up.join();
}

fn copy_then_close(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// One check's result from `consentry probe --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ProbeRow {
    pub check: String,
    pub kind: String,
    pub target: String,
    pub result: ProbeResultView,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProbeResultView {
    pub status: String,
    pub reason: String,
    pub latency_ms: u64,
    pub message: String,
}

impl ProbeRow {
    pub fn describe(&self) -> String {
        format!(
            "{} ({} {}): {} {} in {} ms: {}",
            self.check,
            self.kind,
            self.target,
            self.result.status,
            self.result.reason,
            self.result.latency_ms,
            self.result.message
        )
    }
}

/// The checks of one `consentry probe` run, as `[[check]]` tables.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    body: String,
    names: Vec<String>,
}

impl Checks {
    /// Checks time out after `timeout` unless they say otherwise.
    pub fn new(timeout: &str) -> Self {
        Self {
            body: format!("[defaults]\ninterval = \"60s\"\ntimeout = \"{timeout}\"\n"),
            names: Vec::new(),
        }
    }

    /// Adds `[[check]]` `name` of `kind` with `keys` (TOML lines, e.g. `port = 25`).
    pub fn check(mut self, name: &str, kind: &str, keys: &[String]) -> Self {
        let _ = write!(
            self.body,
            "\n[[check]]\nname = \"{name}\"\nkind = \"{kind}\"\n"
        );
        for key in keys {
            let _ = writeln!(self.body, "{key}");
        }
        self.names.push(name.to_owned());
        self
    }

    pub fn render(&self) -> &str {
        &self.body
    }
}

/// What one `consentry probe` run said, by check name.
#[derive(Debug, Clone)]
pub struct Probed {
    pub rows: Vec<ProbeRow>,
    pub checks_toml: String,
}

impl Probed {
    pub fn row(&self, name: &str) -> &ProbeRow {
        self.rows
            .iter()
            .find(|r| r.check == name)
            .unwrap_or_else(|| panic!("no result for check {name:?} in {:#?}", self.rows))
    }

    /// Asserts `name` ended `status` with `reason`.
    pub fn expect(&self, name: &str, status: &str, reason: &str) -> &ProbeRow {
        let row = self.row(name);
        assert!(
            row.result.status == status && row.result.reason == reason,
            "check {name:?}: expected {status} {reason}, got {}\n--- checks.toml ---\n{}",
            row.describe(),
            self.checks_toml
        );
        info!("  {}", row.describe());
        row
    }
}

/// Runs `consentry probe -f checks.toml --json` once in `dir` and parses its answer.
pub fn probe(dir: &Path, checks: &Checks) -> Probed {
    let file = dir.join("probe-checks.toml");
    fs::write(&file, checks.render()).expect("write probe-checks.toml");
    let file_arg = file.to_string_lossy().into_owned();
    let out = run_cli(dir, ["probe", "-f", &file_arg, "--json"], &[]);
    let rows: Vec<ProbeRow> = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "`consentry probe` did not print its JSON ({e}): {}\n--- checks.toml ---\n{}",
            out.describe(),
            checks.render()
        )
    });
    assert_eq!(
        rows.len(),
        checks.names.len(),
        "one result per check expected: {}",
        out.describe()
    );
    Probed {
        rows,
        checks_toml: checks.render().to_owned(),
    }
}

/// The directory monitoring-plugins installs into on Debian.
pub const PLUGIN_DIR: &str = "/usr/lib/nagios/plugins";

/// What one plugin run said.
#[derive(Debug, Clone)]
pub struct PluginRun {
    pub status: &'static str,
    pub first_line: String,
}

/// Runs plugin `argv[0]` (a name under [`PLUGIN_DIR`]) with its arguments.
pub fn plugin(argv: &[String]) -> PluginRun {
    let path = format!("{PLUGIN_DIR}/{}", argv[0]);
    let mut cmd = Command::new(&path);
    cmd.args(&argv[1..]);
    let out = run_command(cmd, PLUGIN_TIMEOUT);
    let status = match out.code {
        Some(0) => "OK",
        Some(1) => "WARNING",
        Some(2) => "CRITICAL",
        _ => "UNKNOWN",
    };
    let text = if out.stdout.trim().is_empty() {
        &out.stderr
    } else {
        &out.stdout
    };
    PluginRun {
        status,
        first_line: text.lines().next().unwrap_or("").trim().to_owned(),
    }
}

/// Whether monitoring-plugins is installed, or why not.
pub fn plugins_available() -> Result<(), Unavailable> {
    binary(&[&format!("{PLUGIN_DIR}/check_tcp")], "monitoring-plugins").map(drop)
}

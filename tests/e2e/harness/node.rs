//! One `consentry run` process: its config file, its log file and its lifetime.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use super::cli::binary;
use super::process::{clean_env, die_with_test};

/// The node log printed when a test fails is cut to its last lines.
const LOG_TAIL_LINES: usize = 80;
/// A log read for a pattern is cut at this size.
const LOG_READ_BYTES_MAX: u64 = 32 * 1024 * 1024;

/// What a node is: identity, role and addresses.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: u64,
    pub site: String,
    /// `false` for the witness, which votes but never probes.
    pub probe: bool,
    pub probe_source_ip: Option<String>,
    /// The address raft binds (loopback unless the node lives in a network namespace).
    pub raft_host: String,
    pub raft_port: u16,
    pub api_host: String,
    pub api_port: u16,
    /// `join = true`: a node a running cluster adds; it has no `initial_member` list.
    pub join: bool,
    /// More node.toml, appended after everything else (tables such as `[raft]`).
    pub extra: String,
    /// The network namespace the process runs in (`ip netns exec`).
    pub netns: Option<String>,
}

impl NodeSpec {
    /// A node on loopback with fresh ports.
    pub fn loopback(id: u64, site: &str, probe: bool) -> Self {
        Self {
            id,
            site: site.to_owned(),
            probe,
            probe_source_ip: None,
            raft_host: "127.0.0.1".to_owned(),
            raft_port: super::ports::free_udp_port(),
            api_host: "127.0.0.1".to_owned(),
            api_port: super::ports::free_tcp_port(),
            join: false,
            extra: String::new(),
            netns: None,
        }
    }

    pub fn raft_addr(&self) -> String {
        format!("{}:{}", self.raft_host, self.raft_port)
    }

    pub fn api_url(&self) -> String {
        format!("http://{}:{}", self.api_host, self.api_port)
    }
}

/// Where a node's TLS material lives, as written into its `[tls]` table.
#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub ca: String,
    pub cert: String,
    pub key: String,
    pub token_file: PathBuf,
}

/// Renders `node.toml` for `spec` with the shared `initial_member` list.
pub fn render_config(
    spec: &NodeSpec,
    data_dir: &Path,
    tls: &TlsPaths,
    members: &[NodeSpec],
) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "node_id = {}", spec.id);
    let _ = writeln!(text, "site = \"{}\"", spec.site);
    let _ = writeln!(text, "data_dir = \"{}\"", data_dir.display());
    let _ = writeln!(text, "listen_raft = \"{}\"", spec.raft_addr());
    let _ = writeln!(text, "listen_api = \"{}:{}\"", spec.api_host, spec.api_port);
    let _ = writeln!(text, "probe = {}", spec.probe);
    if spec.join {
        let _ = writeln!(text, "join = true");
    }
    if let Some(ip) = &spec.probe_source_ip {
        let _ = writeln!(text, "probe_source_ip = \"{ip}\"");
    }
    let _ = writeln!(text, "\n[tls]");
    let _ = writeln!(text, "ca = \"{}\"", tls.ca);
    let _ = writeln!(text, "cert = \"{}\"", tls.cert);
    let _ = writeln!(text, "key = \"{}\"", tls.key);
    let _ = writeln!(text, "\n[api]");
    let _ = writeln!(text, "token_file = \"{}\"", tls.token_file.display());
    for member in members {
        let _ = writeln!(text, "\n[[initial_member]]");
        let _ = writeln!(text, "id = {}", member.id);
        let _ = writeln!(text, "site = \"{}\"", member.site);
        let _ = writeln!(text, "addr = \"{}\"", member.raft_addr());
        let _ = writeln!(text, "api = \"{}\"", member.api_url());
        if !member.probe {
            let _ = writeln!(text, "probe = false");
        }
    }
    text.push('\n');
    text.push_str(&spec.extra);
    text
}

/// A node process that the harness starts, kills and restarts. Dropping it kills the
/// process (SIGKILL) and reaps it.
pub struct NodeProc {
    pub spec: NodeSpec,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    child: RefCell<Option<Child>>,
    starts: Cell<u32>,
    /// Set when the process was seen to exit without the harness killing it.
    exit_seen: Cell<Option<ExitStatus>>,
}

impl NodeProc {
    /// Writes the node's directory and config; does not start it.
    pub fn create(root: &Path, spec: NodeSpec, tls: &TlsPaths, members: &[NodeSpec]) -> Self {
        let dir = root.join(format!("node-{}", spec.id));
        let data_dir = dir.join("data");
        fs::create_dir_all(&dir).expect("create node dir");
        let config_path = dir.join("node.toml");
        fs::write(&config_path, render_config(&spec, &data_dir, tls, members))
            .expect("write node.toml");
        let log_path = dir.join("node.log");
        Self {
            spec,
            config_path,
            data_dir,
            log_path,
            child: RefCell::new(None),
            starts: Cell::new(0),
            exit_seen: Cell::new(None),
        }
    }

    pub fn id(&self) -> u64 {
        self.spec.id
    }

    pub fn api_url(&self) -> String {
        self.spec.api_url()
    }

    /// Starts `consentry run --config node.toml` from `cwd` (the test's root directory, not
    /// the node's, so relative TLS paths only work when resolved against the config file),
    /// appending stdout and stderr to `node.log`.
    pub fn start(&self, cwd: &Path) {
        assert!(!self.is_running(), "node {} is already running", self.id());
        self.starts.set(self.starts.get() + 1);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open node log");
        let _ = writeln!(
            log,
            "===== e2e harness: start #{} of node {} =====",
            self.starts.get(),
            self.id()
        );
        let stdout = log.try_clone().expect("clone log handle");
        let mut cmd = match &self.spec.netns {
            None => Command::new(binary()),
            Some(ns) => {
                // `ip netns exec` execs the binary: the child's pid is the node's.
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns.as_str(), binary()]);
                cmd
            }
        };
        // The node does not hold its namespace or ports for the next run.
        die_with_test(&mut cmd);
        clean_env(&mut cmd);
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(cwd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node {} ({}): {e}", self.id(), binary()));
        *self.child.borrow_mut() = Some(child);
        self.exit_seen.set(None);
    }

    /// Sends SIGHUP (reload certificates). No-op when not running.
    pub fn hup(&self) {
        if let Some(child) = self.child.borrow().as_ref() {
            let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
            // SAFETY: kill(2) with a pid this harness spawned and has not reaped.
            unsafe {
                libc::kill(pid, libc::SIGHUP);
            }
        }
    }

    /// SIGTERM (what `systemctl restart` sends) and reap, SIGKILL after `grace`. No-op when
    /// not running.
    pub fn stop(&self, grace: std::time::Duration) {
        if let Some(mut child) = self.child.borrow_mut().take() {
            let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
            // SAFETY: kill(2) with a pid this harness spawned and has not reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            let deadline = super::poll::Deadline::after(grace);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                if deadline.remaining().is_zero() {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "node {} did not stop within {grace:?} of SIGTERM",
                        self.id()
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }

    /// SIGKILL and reap. No-op when not running.
    pub fn kill9(&self) {
        if let Some(mut child) = self.child.borrow_mut().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the harness started the process and has not killed it (it may have crashed:
    /// see `unexpected_exit`).
    pub fn is_running(&self) -> bool {
        self.child.borrow().is_some()
    }

    /// `Some(status)` when the process exited on its own since it was started.
    pub fn unexpected_exit(&self) -> Option<ExitStatus> {
        if self.exit_seen.get().is_none() {
            if let Some(child) = self.child.borrow_mut().as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.exit_seen.set(Some(status));
                }
            }
        }
        self.exit_seen.get()
    }

    /// Current size of the log, to read only what comes after it later.
    pub fn log_len(&self) -> u64 {
        fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0)
    }

    /// The log from byte `offset` on.
    pub fn log_since(&self, offset: u64) -> String {
        let Ok(mut file) = File::open(&self.log_path) else {
            return String::new();
        };
        if file.seek(SeekFrom::Start(offset)).is_err() {
            return String::new();
        }
        let mut bytes = Vec::new();
        let _ = file.take(LOG_READ_BYTES_MAX).read_to_end(&mut bytes);
        strip_ansi(&String::from_utf8_lossy(&bytes))
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        let text = self.log_since(0);
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(LOG_TAIL_LINES);
        lines[from..].join("\n")
    }
}

/// Removes terminal colour sequences (`ESC [ ... letter`), which a logger may write even
/// to a file, so log lines can be matched and printed as text.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

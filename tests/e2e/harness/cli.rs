//! Running the `consentry` binary as a command-line tool, with a deadline.

use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::clock::now;
use super::node::clean_env;

/// A CLI command that runs longer than this is killed and reported as hung.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// Output read from one command is cut at this size.
const CLI_OUTPUT_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// The `consentry` binary cargo built for this test run.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_consentry")
}

/// What one CLI invocation did.
#[derive(Debug, Clone)]
pub struct CliOutput {
    pub command: String,
    /// The exit code; `None` when the command was killed (by a signal or our timeout).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The whole invocation, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "`{}` exited {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.code,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }

    /// Panics unless the command exited 0.
    pub fn expect_success(self) -> Self {
        assert!(self.success(), "command failed: {}", self.describe());
        self
    }
}

/// Runs `consentry ARGS` in `cwd` with `env` set on a cleaned environment (`clean_env`), so
/// a developer's shell cannot steer the suite.
pub fn run_cli<I, S>(cwd: &Path, args: I, env: &[(&str, &str)]) -> CliOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut running = spawn(cwd, args, env);
    let code = wait_with_deadline(&mut running.child, &running.command);
    running.finish(code)
}

/// What the kernel measured of one finished `consentry` process.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// From just before the spawn to the reap.
    pub wall: Duration,
    /// The command's own peak resident set size in KiB: its `VmHWM`, sampled while it ran
    /// (see `wait_sampling_memory` for why not `ru_maxrss`); `None` when it ended before the
    /// first sample.
    pub max_rss_kib: Option<u64>,
}

/// [`run_cli`], sampling the process's own peak memory while it runs.
pub fn run_cli_measured<I, S>(cwd: &Path, args: I, env: &[(&str, &str)]) -> (CliOutput, Usage)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let started = now();
    let mut running = spawn(cwd, args, env);
    let (code, max_rss_kib) = wait_sampling_memory(&mut running.child, &running.command);
    let wall = now().saturating_duration_since(started);
    (running.finish(code), Usage { wall, max_rss_kib })
}

/// A started command whose output is being drained.
struct Running {
    command: String,
    child: Child,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
}

impl Running {
    fn finish(self, code: Option<i32>) -> CliOutput {
        CliOutput {
            command: self.command,
            code,
            stdout: join_output(self.stdout),
            stderr: join_output(self.stderr),
        }
    }
}

fn spawn<I, S>(cwd: &Path, args: I, env: &[(&str, &str)]) -> Running
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    let command = format!("consentry {}", args.join(" "));
    let mut cmd = Command::new(binary());
    cmd.args(&args).current_dir(cwd);
    clean_env(&mut cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{command}` ({}): {e}", binary()));
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    Running {
        command,
        child,
        stdout,
        stderr,
    }
}

fn drain(stream: Option<Box<dyn Read + Send>>) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(stream) = stream {
            let _ = stream.take(CLI_OUTPUT_BYTES_MAX).read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    })
}

fn join_output(handle: JoinHandle<String>) -> String {
    handle
        .join()
        .unwrap_or_else(|_| String::from("<reader thread panicked>"))
}

fn wait_with_deadline(child: &mut Child, command: &str) -> Option<i32> {
    let start = now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.code(),
            Ok(None) => {}
            Err(e) => panic!("waiting for `{command}`: {e}"),
        }
        if now().saturating_duration_since(start) >= CLI_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{command}` did not finish within {CLI_TIMEOUT:?}; killed it");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Reaps `child`, killing it after [`CLI_TIMEOUT`]. Returns the exit code (`None` when
/// killed by a signal) and the peak resident memory in KiB (`None`: it ended before the
/// first sample).
///
/// The peak is the child's own `VmHWM`, read from `/proc` every few milliseconds while it
/// runs. `ru_maxrss` from `wait4` is no use: a child made by `fork` or `posix_spawn` counts
/// the test process's resident memory before `exec` in it (Linux keeps the larger
/// high-water mark across `exec`), so it measured this whole test binary, not the command.
fn wait_sampling_memory(child: &mut Child, command: &str) -> (Option<i32>, Option<u64>) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    let start = now();
    let mut sampled_hwm_kib: Option<u64> = None;
    loop {
        if let Some(hwm) = vm_hwm_kib(child.id()) {
            sampled_hwm_kib = Some(sampled_hwm_kib.map_or(hwm, |s| s.max(hwm)));
        }
        let mut status: libc::c_int = 0;
        // SAFETY: `pid` is our own unreaped child (std reaps only in wait/try_wait, which
        // this path never calls); the pointer is valid for the call.
        let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if reaped == pid {
            let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
            return (code, sampled_hwm_kib);
        }
        if reaped == -1 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            panic!("waitpid for `{command}`: {e}");
        }
        if now().saturating_duration_since(start) >= CLI_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{command}` did not finish within {CLI_TIMEOUT:?}; killed it");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// `VmHWM` of a running process (`None` once it has exited, or without procfs).
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

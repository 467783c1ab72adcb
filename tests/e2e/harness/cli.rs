//! Running commands to completion with a deadline: the `consentry` binary as a
//! command-line tool (`run_cli`), and any other program a test runs (`run_with_deadline`).

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::clock::now;
use super::process::{clean_env, die_with_test};

/// A CLI command that runs longer than this is killed and reported as hung.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// Output kept from one command is cut at this size (each of stdout and stderr).
const OUTPUT_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// How long a command's output pipes may stay open after it exited: a process it left
/// running (a daemon it started) may still hold them, and must not hang the test.
const OUTPUT_CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Pause between two looks at a running command.
const WAIT_PAUSE: Duration = Duration::from_millis(20);

/// The `consentry` binary cargo built for this test run.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_consentry")
}

/// What one command did: a `consentry` CLI invocation, or any [`run_with_deadline`].
#[derive(Debug, Clone)]
pub struct CliOutput {
    pub command: String,
    /// The exit code; `None` when the command was killed by a signal.
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
            "`{}` exited {:?}\n{}",
            self.command,
            self.code,
            self.streams()
        )
    }

    /// Panics unless the command exited 0.
    pub fn expect_success(self) -> Self {
        assert!(self.success(), "command failed: {}", self.describe());
        self
    }

    fn streams(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `consentry ARGS` in `cwd` with `env` set on a cleaned environment (`clean_env`), so
/// a developer's shell cannot steer the suite. Panics, with what it printed, when the
/// command runs longer than 30 s.
pub fn run_cli<I, S>(cwd: &Path, args: I, env: &[(&str, &str)]) -> CliOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut running = spawn(cwd, args, env);
    let waited = wait_with_deadline(&mut running.child, &running.command, CLI_TIMEOUT);
    running.finish(waited)
}

/// Runs `cmd` to completion: spawns it with `die_with_test` and `clean_env` applied (a
/// variable `cmd` sets itself is kept), writes `stdin` to it (`None`: stdin is `/dev/null`) and closes it, and collects what it
/// prints (each stream cut at 4 MiB). Whatever the exit status, returns it with the output
/// (`.expect_success()` to require 0).
///
/// Panics, naming the command and with what it printed so far, when it runs longer than
/// `limit` (it is killed and reaped first), or when it cannot be started. A command that
/// exits without reading all of `stdin` is not an error: its exit status tells.
pub fn run_with_deadline(cmd: &mut Command, stdin: Option<&[u8]>, limit: Duration) -> CliOutput {
    let command = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let set: Vec<(OsString, OsString)> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    clean_env(cmd).envs(set);
    let mut running = start(cmd, command, stdin);
    let waited = wait_with_deadline(&mut running.child, &running.command, limit);
    running.finish(waited)
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
    (running.finish(Ok(code)), Usage { wall, max_rss_kib })
}

/// A started command whose output is being drained (and stdin fed).
struct Running {
    command: String,
    child: Child,
    stdin: Option<JoinHandle<io::Result<()>>>,
    stdout: Drain,
    stderr: Drain,
}

impl Running {
    /// Collects the output of the reaped command; panics with it when `waited` is an error
    /// (the command hung), or when feeding its stdin failed otherwise than by its exit.
    fn finish(self, waited: Result<Option<i32>, String>) -> CliOutput {
        let grace_ends = now() + OUTPUT_CLOSE_GRACE;
        let out = CliOutput {
            command: self.command,
            code: waited.as_ref().ok().copied().flatten(),
            stdout: join_output(self.stdout, grace_ends),
            stderr: join_output(self.stderr, grace_ends),
        };
        if let Err(why) = waited {
            panic!("{why}\n{}", out.streams());
        }
        if let Some(Ok(Err(e))) = self.stdin.and_then(|w| join_within(w, grace_ends)) {
            // A command that exits without reading all of its input closes the pipe.
            if e.kind() != io::ErrorKind::BrokenPipe {
                panic!(
                    "writing the standard input of `{}`: {e}\n{}",
                    out.command,
                    out.describe()
                );
            }
        }
        out
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
    for (key, value) in env {
        cmd.env(key, value);
    }
    start(&mut cmd, command, None)
}

/// Spawns `cmd` (dying with the test) with its output piped to reader threads and `stdin`
/// fed by a writer thread, so a command that stops reading cannot block the test.
fn start(cmd: &mut Command, command: String, stdin: Option<&[u8]>) -> Running {
    die_with_test(cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start `{command}` ({}): {e}",
            cmd.get_program().to_string_lossy()
        )
    });
    let stdin = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let bytes = bytes.to_vec();
        // The pipe closes when the thread ends: the command sees the end of its input.
        thread::spawn(move || pipe.write_all(&bytes))
    });
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
        stdin,
        stdout,
        stderr,
    }
}

/// A thread reading one output stream into a buffer the test can take even while a
/// process the command left behind keeps the pipe open.
struct Drain {
    text: Arc<Mutex<Vec<u8>>>,
    /// Bytes read past `OUTPUT_BYTES_MAX` and thrown away.
    dropped: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

/// Reads `stream` to its end, keeping the first `OUTPUT_BYTES_MAX` bytes. It reads on past
/// them rather than closing the pipe, which would kill a chatty command with SIGPIPE.
fn drain(stream: Option<Box<dyn Read + Send>>) -> Drain {
    let text = Arc::new(Mutex::new(Vec::new()));
    let dropped = Arc::new(AtomicU64::new(0));
    let (sink, dropped_sink) = (Arc::clone(&text), Arc::clone(&dropped));
    let thread = thread::spawn(move || {
        let Some(mut stream) = stream else { return };
        let mut chunk = [0_u8; 16 * 1024];
        loop {
            let n = match stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let mut kept = sink.lock().unwrap_or_else(PoisonError::into_inner);
            let room = usize::try_from(OUTPUT_BYTES_MAX)
                .unwrap_or(usize::MAX)
                .saturating_sub(kept.len())
                .min(n);
            kept.extend_from_slice(&chunk[..room]);
            dropped_sink.fetch_add((n - room) as u64, Ordering::Relaxed);
        }
    });
    Drain {
        text,
        dropped,
        thread,
    }
}

/// What a reader collected once its pipe closed, or by `grace_ends` with a note that the
/// pipe is still open.
fn join_output(drain: Drain, grace_ends: Instant) -> String {
    let closed = join_within(drain.thread, grace_ends).is_some();
    let bytes = drain.text.lock().unwrap_or_else(PoisonError::into_inner);
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    let mut note = |line: String| {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&line);
    };
    let dropped = drain.dropped.load(Ordering::Relaxed);
    if dropped > 0 {
        note(format!("<{dropped} more bytes not kept>"));
    }
    if !closed {
        note(format!(
            "<still open {OUTPUT_CLOSE_GRACE:?} after the command ended: a process it started holds it>"
        ));
    }
    text
}

/// Joins `handle` if its thread ends by `deadline`; `None` leaves it running, detached.
fn join_within<T>(handle: JoinHandle<T>, deadline: Instant) -> Option<thread::Result<T>> {
    while !handle.is_finished() {
        if now() >= deadline {
            return None;
        }
        thread::sleep(WAIT_PAUSE);
    }
    Some(handle.join())
}

/// Reaps `child`, killing and reaping it once `limit` has passed. `Ok` with the exit code
/// (`None`: killed by a signal); `Err` saying why it was given up on.
fn wait_with_deadline(
    child: &mut Child,
    command: &str,
    limit: Duration,
) -> Result<Option<i32>, String> {
    let start = now();
    loop {
        let gave_up = match child.try_wait() {
            Ok(Some(status)) => return Ok(status.code()),
            Ok(None) if now().saturating_duration_since(start) < limit => None,
            Ok(None) => Some(format!(
                "`{command}` did not finish within {limit:?}; killed it"
            )),
            Err(e) => Some(format!("waiting for `{command}`: {e}; killed it")),
        };
        if let Some(why) = gave_up {
            let _ = child.kill();
            let _ = child.wait();
            return Err(why);
        }
        thread::sleep(WAIT_PAUSE);
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

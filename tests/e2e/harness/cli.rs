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
    let code = wait_with_deadline(&mut child, &command);
    CliOutput {
        command,
        code,
        stdout: join_output(stdout),
        stderr: join_output(stderr),
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

//! Running an untrusted program safely: the shared runner of `nagios` checks and `exec`
//! notifiers.
//!
//! Both take `argv` from the replicated catalog, so it is remote input: a program runs only
//! when `argv[0]`, with every symlink resolved, is a file inside one of the node's (equally
//! resolved) allowed directories ([`allowed_program`]); otherwise the cluster API token
//! would be remote code execution. The caller builds the `Command` (no shell, a cleared
//! environment); [`ChildProcess::spawn`] adds stdin closed, piped output and a process
//! group of its own.
//!
//! The whole process group is killed when the program exits (so a background child cannot
//! hold the output pipes open or outlive the run) and when the run is cancelled (the
//! caller's timeout drops the future). Output is kept up to the caller's bounds; more is
//! read and discarded so the program does not block on a full pipe, up to
//! [`OUTPUT_DRAIN_BYTES_MAX`], past which it is killed.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

/// Most bytes read (kept or discarded) from one of a program's streams before the program
/// is killed as runaway.
pub const OUTPUT_DRAIN_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Size of one read from a program's pipe.
const READ_CHUNK_BYTES: usize = 8 * 1024;

/// What a program printed on one stream.
#[derive(Debug, Default)]
pub struct Captured {
    pub kept: Vec<u8>,
    /// More than `OUTPUT_DRAIN_BYTES_MAX` arrived: the program was killed.
    pub runaway: bool,
}

/// A finished program.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Captured,
    pub stderr: Captured,
}

/// A running program and its process group, killed as a whole when dropped.
pub struct ChildProcess {
    child: Child,
    /// The program's pid, which is also its process group id (`process_group(0)`).
    pgid: Option<libc::pid_t>,
}

impl ChildProcess {
    /// Starts `command` with stdin closed, stdout and stderr piped, `/` as its working
    /// directory, in a new process group that is killed when the handle is dropped.
    ///
    /// # Errors
    /// When the program cannot be started.
    pub fn spawn(command: &mut Command) -> io::Result<Self> {
        command
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let child = command.spawn()?;
        let pgid = child.id().and_then(|id| libc::pid_t::try_from(id).ok());
        Ok(Self { child, pgid })
    }

    /// Reads both streams (keeping at most `stdout_max` and `stderr_max` bytes) while
    /// waiting for the program to exit; once it has, kills what is left of its group so
    /// that no background child holds the pipes open.
    ///
    /// # Errors
    /// When waiting for the program fails.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future leaves the handle, whose drop kills the group.
    pub async fn finish(&mut self, stdout_max: usize, stderr_max: usize) -> io::Result<Finished> {
        let pgid = self.pgid;
        let stdout = self.child.stdout.take();
        let stderr = self.child.stderr.take();
        let read_stdout = read_bounded(stdout, stdout_max, pgid);
        let read_stderr = read_bounded(stderr, stderr_max, pgid);
        let child = &mut self.child;
        let wait = async move {
            let status = child.wait().await;
            kill_group(pgid);
            status
        };
        let (stdout, stderr, status) = tokio::join!(read_stdout, read_stderr, wait);
        Ok(Finished {
            status: status?,
            stdout,
            stderr,
        })
    }
}

impl Drop for ChildProcess {
    /// Kills the group before the `Child` is dropped: while the program is unreaped its
    /// pid cannot be reused, so the signal reaches only its group.
    fn drop(&mut self) {
        kill_group(self.pgid);
    }
}

/// Resolves `program` and checks it is a file inside one of `dirs`. `what` names the
/// program in messages ("plugin", "exec notifier"), `dirs_key` the node.toml key of `dirs`.
///
/// # Errors
/// A message saying why the program may not run.
pub async fn allowed_program(
    program: &Path,
    dirs: &[PathBuf],
    what: &str,
    dirs_key: &str,
) -> Result<PathBuf, String> {
    let shown = program.display();
    if !program.is_absolute() {
        return Err(format!("{what} {shown} must be an absolute path"));
    }
    let resolved = tokio::fs::canonicalize(program)
        .await
        .map_err(|e| format!("cannot find {what} {shown}: {e}"))?;
    let mut allowed = false;
    for dir in dirs {
        // A configured directory that does not exist allows nothing.
        if let Ok(dir) = tokio::fs::canonicalize(dir).await {
            if resolved.starts_with(&dir) {
                allowed = true;
                break;
            }
        }
    }
    if !allowed {
        let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        let via = if resolved == program {
            String::new()
        } else {
            format!(" (it resolves to {})", resolved.display())
        };
        return Err(format!(
            "{what} {shown} is outside the allowed {dirs_key} ({}){via}",
            dirs.join(", ")
        ));
    }
    let metadata = tokio::fs::metadata(&resolved)
        .await
        .map_err(|e| format!("cannot inspect {what} {shown}: {e}"))?;
    if !metadata.is_file() {
        return Err(format!("{what} {shown} is not a file"));
    }
    Ok(resolved)
}

/// Sends SIGKILL to the process group `pgid`.
///
/// After the leader has been reaped (the program exited normally), the group id stays
/// reserved while any member lives; once none does, a later group with the same id would
/// need the pid counter to wrap around in the meantime, which the immediate kill makes
/// negligible.
pub(crate) fn kill_group(pgid: Option<libc::pid_t>) {
    // Never signal group 0 (our own) or -1 (everything we may signal).
    let Some(pgid) = pgid.filter(|pgid| *pgid > 1) else {
        return;
    };
    // SAFETY: kill(2) has no memory effects; a negative pid names the process group.
    // ESRCH (the group is already gone) is the expected outcome after a clean exit.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Reads `stream` to its end, keeping at most `keep_max` bytes; past
/// `OUTPUT_DRAIN_BYTES_MAX` kills the group and stops. A read error ends the stream: what
/// was read so far stands.
async fn read_bounded<R: AsyncRead + Unpin>(
    stream: Option<R>,
    keep_max: usize,
    pgid: Option<libc::pid_t>,
) -> Captured {
    let mut captured = Captured::default();
    let Some(mut stream) = stream else {
        return captured;
    };
    let mut chunk = [0u8; READ_CHUNK_BYTES];
    let mut total = 0usize;
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return captured,
            Ok(n) => n,
        };
        let room = keep_max.saturating_sub(captured.kept.len());
        captured.kept.extend_from_slice(&chunk[..n.min(room)]);
        total = total.saturating_add(n);
        if total > OUTPUT_DRAIN_BYTES_MAX {
            kill_group(pgid);
            captured.runaway = true;
            return captured;
        }
    }
}

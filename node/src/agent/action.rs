//! Running one recovery action: a program without a shell, bounded in time and output.
//!
//! Unlike a check plugin, a recovery action is meant to leave something running (it restarts
//! a daemon), so its process group is killed only when it overruns its timeout, never when
//! it exits. Its output goes to an unlinked temporary file rather than a pipe, so a daemon it
//! started that keeps the inherited descriptors cannot hold the run open; at most
//! [`ACTION_OUTPUT_BYTES_MAX`] bytes of it are kept, and anything past [`ACTION_FILE_BYTES_MAX`] is
//! never read.

use std::io::{Read, Seek, SeekFrom};
use std::process::Stdio;
use std::time::Duration;

use consentry_cluster::model::{ActionOutcome, ACTION_OUTPUT_BYTES_MAX};

/// Most bytes of the output file looked at (the tail is what is kept).
pub const ACTION_FILE_BYTES_MAX: u64 = 64 * 1024;

/// Runs `argv` (argv[0] an absolute path) with a cleared environment plus `env`, in `/`,
/// for at most `timeout_ms`. Exit status 0 is `Succeeded`; anything else, a signal, a
/// timeout (the group is killed) or a program that cannot start is `Failed`.
pub async fn run(
    argv: &[String],
    env: &[(&str, String)],
    timeout_ms: u64,
    clock: &dyn crate::clock::Clock,
) -> ActionOutcome {
    let started = clock.monotonic_ms();
    let elapsed = || clock.monotonic_ms().saturating_sub(started);
    let Some(program) = argv.first() else {
        return failed("the action has no program", String::new(), 0);
    };
    let out = match tempfile::tempfile() {
        Ok(f) => f,
        Err(e) => {
            return failed(
                &format!("cannot create the output file: {e}"),
                String::new(),
                0,
            )
        }
    };
    let (Ok(stdout), Ok(stderr)) = (out.try_clone(), out.try_clone()) else {
        return failed("cannot share the output file", String::new(), 0);
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(&argv[1..])
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return failed(&format!("cannot start {program}: {e}"), String::new(), 0),
    };
    let pgid = child.id().and_then(|id| libc::pid_t::try_from(id).ok());
    let waited = tokio::time::timeout(Duration::from_millis(timeout_ms), child.wait()).await;
    let duration_ms = elapsed();
    let output = tail(out);
    match waited {
        Ok(Ok(status)) if status.success() => ActionOutcome::Succeeded {
            output,
            duration_ms,
        },
        Ok(Ok(status)) => failed(&describe(status), output, duration_ms),
        Ok(Err(e)) => failed(
            &format!("waiting for {program} failed: {e}"),
            output,
            duration_ms,
        ),
        Err(_) => {
            crate::child_process::kill_group(pgid);
            let _ = child.kill().await;
            failed(
                &format!("timed out after {timeout_ms} ms (its process group was killed)"),
                output,
                duration_ms,
            )
        }
    }
}

fn failed(error: &str, output: String, duration_ms: u64) -> ActionOutcome {
    ActionOutcome::Failed {
        error: error.to_string(),
        output,
        duration_ms,
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => "ended abnormally".to_string(),
    }
}

/// The last [`ACTION_OUTPUT_BYTES_MAX`] bytes of the first [`ACTION_FILE_BYTES_MAX`] of the
/// output, as text.
fn tail(mut file: std::fs::File) -> String {
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(0)).is_err() {
        return String::new();
    }
    if (&mut file)
        .take(ACTION_FILE_BYTES_MAX)
        .read_to_end(&mut bytes)
        .is_err()
    {
        return String::new();
    }
    let start = bytes.len().saturating_sub(ACTION_OUTPUT_BYTES_MAX);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> std::sync::Arc<dyn crate::clock::Clock> {
        crate::clock::SystemClock::shared()
    }

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(ToString::to_string).collect()
    }

    #[tokio::test]
    async fn actions_succeed_fail_and_time_out_with_bounded_output() {
        let ok = run(
            &argv(&["/bin/sh", "-c", "echo restarted; echo $X >&2"]),
            &[("X", "y".into())],
            5_000,
            &*clock(),
        )
        .await;
        match ok {
            ActionOutcome::Succeeded { output, .. } => assert_eq!(output, "restarted\ny"),
            other => panic!("{other:?}"),
        }
        let bad = run(&argv(&["/bin/sh", "-c", "exit 3"]), &[], 5_000, &*clock()).await;
        assert!(
            matches!(&bad, ActionOutcome::Failed { error, .. } if error == "exit status 3"),
            "{bad:?}"
        );
        let slow = run(&argv(&["/bin/sleep", "30"]), &[], 200, &*clock()).await;
        assert!(
            matches!(&slow, ActionOutcome::Failed { error, .. } if error.contains("timed out")),
            "{slow:?}"
        );
        let loud = run(
            &argv(&["/bin/sh", "-c", "head -c 10000000 /dev/zero | tr '\\0' x"]),
            &[],
            10_000,
            &*clock(),
        )
        .await;
        match loud {
            ActionOutcome::Succeeded { output, .. } => {
                assert!(output.len() <= ACTION_OUTPUT_BYTES_MAX)
            }
            other => panic!("{other:?}"),
        }
        let missing = run(&argv(&["/nonexistent/prog"]), &[], 1_000, &*clock()).await;
        assert!(
            matches!(&missing, ActionOutcome::Failed { error, .. } if error.contains("cannot start"))
        );
        // A daemon it leaves behind does not hold the run open, and is not killed.
        let daemon = run(
            &argv(&["/bin/sh", "-c", "sleep 3 & echo started"]),
            &[],
            2_000,
            &*clock(),
        )
        .await;
        assert!(daemon.succeeded(), "{daemon:?}");
    }
}

//! Running one recovery action: a program without a shell, bounded in time and output.
//!
//! Unlike a check plugin, a recovery action is meant to leave something running (it restarts
//! a daemon), so its process group is killed only when it overruns its timeout, never when
//! it exits. Its output goes to an unlinked temporary file rather than a pipe, so a daemon it
//! started that keeps the inherited descriptors cannot hold the run open; only its
//! last [`ACTION_OUTPUT_BYTES_MAX`] bytes are read and kept (the end is where the error is).

use std::io::{Read, Seek, SeekFrom};
use std::process::Stdio;
use std::time::Duration;

use consentry_cluster::model::{ActionOutcome, ACTION_OUTPUT_BYTES_MAX};

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

/// The last [`ACTION_OUTPUT_BYTES_MAX`] bytes of the output, as text (lossy at a cut
/// character).
fn tail(mut file: std::fs::File) -> String {
    let Ok(len) = file.seek(SeekFrom::End(0)) else {
        return String::new();
    };
    let max = ACTION_OUTPUT_BYTES_MAX as u64;
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(len.saturating_sub(max))).is_err()
        || (&mut file).take(max).read_to_end(&mut bytes).is_err()
    {
        return String::new();
    }
    // A cut character at the start is dropped, not replaced; invalid bytes elsewhere become
    // U+FFFD, which may lengthen the text, so it is cut again from the front.
    let start = bytes
        .iter()
        .take(3)
        .take_while(|b| (**b & 0xC0) == 0x80)
        .count();
    let text = String::from_utf8_lossy(&bytes[start..]);
    let mut cut = text.len().saturating_sub(ACTION_OUTPUT_BYTES_MAX);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    text[cut..].trim().to_string()
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

    #[test]
    fn the_tail_is_bounded_and_cut_at_a_character() {
        use std::io::Write;
        let mut f = tempfile::tempfile().unwrap();
        // 1 byte then 3-byte characters: the last 1024 bytes start inside a character.
        write!(f, "a{}", "€".repeat(1_000)).unwrap();
        let t = tail(f);
        assert!(t.len() <= ACTION_OUTPUT_BYTES_MAX, "{}", t.len());
        assert!(!t.contains('\u{fffd}'));
        assert!(t.chars().all(|c| c == '€'));
        assert_eq!(t.len(), 1_023);
        // Invalid bytes are replaced, and the text still fits.
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[0xFF; 4_000]).unwrap();
        let t = tail(f);
        assert!(t.len() <= ACTION_OUTPUT_BYTES_MAX && !t.is_empty());
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b" short \n").unwrap();
        assert_eq!(tail(f), "short");
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
        // Long output keeps its real end, where the error usually is.
        let long = run(
            &argv(&[
                "/bin/sh",
                "-c",
                "head -c 200000 /dev/zero | tr '\\0' x; echo; echo 'fatal: the end'; exit 1",
            ]),
            &[],
            10_000,
            &*clock(),
        )
        .await;
        match long {
            ActionOutcome::Failed { output, .. } => {
                assert!(output.len() <= ACTION_OUTPUT_BYTES_MAX);
                assert!(output.ends_with("fatal: the end"), "{output:?}");
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

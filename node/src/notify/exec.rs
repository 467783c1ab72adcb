//! The `exec` notifier: runs `argv` without a shell, with only the documented
//! `CONSENTRY_*` variables (plus `PATH` and `LANG`) in its environment; exit status 0
//! means delivered.
//!
//! `argv` comes from the replicated catalog, so `argv[0]` must lie in one of the leader's
//! `notify_exec_dirs` (node.toml), checked like a nagios plugin's
//! ([`crate::child_process`]). The run is bounded by the notifier's `timeout` (the caller
//! drops this future, which kills the process group) and its output by
//! [`EXEC_OUTPUT_BYTES_MAX`].

use std::path::Path;

use consentry_cluster::model::ExecNotifier;
use tokio::process::Command;

use super::{NotifyContext, Summary};
use crate::child_process::{allowed_program, ChildProcess};

/// Output kept from a run, to explain a failure.
pub const EXEC_OUTPUT_BYTES_MAX: usize = 4 * 1024;
/// The only search path the program gets.
const EXEC_ENV_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The environment a run gets, in the documented order (docs/notifications.md).
pub fn environment(s: &Summary<'_>, ctx: &NotifyContext) -> Vec<(&'static str, String)> {
    vec![
        ("PATH", EXEC_ENV_PATH.to_string()),
        ("LANG", "C.UTF-8".to_string()),
        ("CONSENTRY_NOTIFIER", s.notifier.to_string()),
        ("CONSENTRY_CHECK", s.check.to_string()),
        ("CONSENTRY_TRANSITION", s.transition.as_str().to_string()),
        ("CONSENTRY_STATUS", s.status.to_string()),
        ("CONSENTRY_SEVERITY", s.severity.to_string()),
        ("CONSENTRY_INCIDENT_ID", s.incident_id.to_string()),
        ("CONSENTRY_DEDUP_KEY", s.dedup_key.to_string()),
        ("CONSENTRY_SITES", s.sites.join(",")),
        ("CONSENTRY_TARGET", s.target.clone()),
        (
            "CONSENTRY_UNCONFIRMED",
            s.unconfirmed.clone().unwrap_or_default(),
        ),
        ("CONSENTRY_OPENED_AT_MS", s.opened_at_ms.to_string()),
        (
            "CONSENTRY_CLOSED_AT_MS",
            s.closed_at_ms.map(|t| t.to_string()).unwrap_or_default(),
        ),
        ("CONSENTRY_SUMMARY", s.headline()),
        ("CONSENTRY_NODE_ID", ctx.node_id.to_string()),
    ]
}

/// Runs the notifier's program once for `summary`.
///
/// # Errors
/// When the program may not or cannot run, or exits non-zero (with its output's start).
///
/// # Cancel safety
/// Cancel safe: dropping the future kills the program's process group.
pub async fn run(
    spec: &ExecNotifier,
    summary: &Summary<'_>,
    ctx: &NotifyContext,
) -> Result<(), String> {
    let Some(program) = spec.argv.first() else {
        return Err("the notifier names no program to run".to_string());
    };
    let path = allowed_program(
        Path::new(program),
        &ctx.exec_dirs,
        "exec notifier",
        "notify_exec_dirs",
    )
    .await?;
    let mut command = Command::new(&path);
    command
        .arg0(program)
        .args(&spec.argv[1..])
        .env_clear()
        .envs(environment(summary, ctx));
    let mut process =
        ChildProcess::spawn(&mut command).map_err(|e| format!("cannot run {program}: {e}"))?;
    let finished = process
        .finish(EXEC_OUTPUT_BYTES_MAX, EXEC_OUTPUT_BYTES_MAX)
        .await
        .map_err(|e| format!("cannot wait for {program}: {e}"))?;
    if finished.status.success() {
        return Ok(());
    }
    let said = [&finished.stderr.kept, &finished.stdout.kept]
        .into_iter()
        .map(|b| String::from_utf8_lossy(b).trim().to_string())
        .find(|t| !t.is_empty())
        .unwrap_or_default();
    let said = consentry_cluster::model::truncate(&said, super::ERROR_BODY_BYTES_MAX);
    Err(format!("{program} exited with {}: {said}", finished.status))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;
    use std::time::Duration;

    use consentry_cluster::model::{NotifierKind, NotifierSpec, Transition};

    use super::*;
    use crate::notify::deliver;
    use crate::notify::summary::tests::fixture;

    fn script(dir: &Path, name: &str, body: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    fn spec(argv: Vec<String>, timeout_ms: u64) -> NotifierSpec {
        NotifierSpec {
            name: "ops".into(),
            kind: NotifierKind::Exec(ExecNotifier { argv, timeout_ms }),
        }
    }

    #[tokio::test]
    async fn receives_its_variables_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env.txt");
        let prog = script(dir.path(), "notify", "env > \"$1\"; echo \"$0\" >> \"$1\"");
        let mut ctx = crate::notify::NotifyContext::for_test(1);
        ctx.exec_dirs = Arc::from(vec![dir.path().to_path_buf()]);
        let (intent, incident, check) = fixture(Transition::Firing);
        let n = spec(vec![prog.clone(), out.display().to_string()], 5_000);
        std::env::set_var("CONSENTRY_TEST_LEAK", "1");
        deliver(&n, &intent, &incident, Some(&check), &ctx)
            .await
            .unwrap();
        let env = std::fs::read_to_string(&out).unwrap();
        for want in [
            "CONSENTRY_CHECK=web1",
            "CONSENTRY_STATUS=CRITICAL",
            "CONSENTRY_TRANSITION=firing",
            "CONSENTRY_INCIDENT_ID=2",
            "CONSENTRY_DEDUP_KEY=incident-2/firing/ops",
            "CONSENTRY_SITES=site-a,site-b",
            "CONSENTRY_TARGET=127.0.0.1:1",
            "CONSENTRY_NOTIFIER=ops",
            "CONSENTRY_NODE_ID=1",
        ] {
            assert!(env.lines().any(|l| l == want), "{want} in\n{env}");
        }
        assert!(!env.contains("CONSENTRY_TEST_LEAK"), "{env}");
        assert!(!env.contains("HOME="), "{env}");
        assert!(env.lines().any(|l| l == prog), "argv[0] as written: {env}");

        // Non-zero exit: failed, with what it said.
        let fail = script(dir.path(), "fail", "echo 'pager down' >&2; exit 3");
        let err = deliver(&spec(vec![fail], 5_000), &intent, &incident, None, &ctx)
            .await
            .unwrap_err();
        assert!(err.contains("pager down"), "{err}");

        // Outside notify_exec_dirs: refused, never run.
        let err = deliver(
            &spec(vec!["/bin/true".into()], 5_000),
            &intent,
            &incident,
            None,
            &ctx,
        )
        .await
        .unwrap_err();
        assert!(
            err.contains("outside the allowed notify_exec_dirs"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_hanging_program_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        // A background grandchild that would outlive a plain kill of the program.
        let prog = script(
            dir.path(),
            "hang",
            &format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
        );
        let mut ctx = crate::notify::NotifyContext::for_test(1);
        ctx.exec_dirs = Arc::from(vec![dir.path().to_path_buf()]);
        let (intent, incident, _) = fixture(Transition::Firing);
        let err = tokio::time::timeout(
            Duration::from_secs(10),
            deliver(&spec(vec![prog], 500), &intent, &incident, None, &ctx),
        )
        .await
        .expect("bounded by the notifier's timeout")
        .unwrap_err();
        assert!(err.contains("within 500 ms"), "{err}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut gone = false;
        for _ in 0..50 {
            // SAFETY: signal 0 only checks that the process exists.
            let alive = unsafe { libc::kill(pid, 0) } == 0
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .contains(") Z ");
            if !alive {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(gone, "the grandchild {pid} was killed with the group");
    }
}

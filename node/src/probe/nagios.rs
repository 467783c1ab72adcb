//! Nagios plugin probe: runs a plugin from the node's `plugin_dirs` and maps its exit code
//! (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) and output to an outcome.
//!
//! The checks a node runs come from the cluster, so `argv` is remote input: a plugin runs
//! only when `argv[0]`, with every symlink resolved, is a file inside one of the
//! (equally resolved) `plugin_dirs`; otherwise the cluster API token would be remote code
//! execution. The plugin runs without a shell, with an empty environment apart from
//! `PATH` and `LANG=C`, stdin closed, in its own process group.
//!
//! The whole process group is killed when the plugin exits (so a background child cannot
//! hold the output pipe open or outlive the check) and when the probe is cancelled (the
//! prober's timeout). What the plugin prints is kept up to `PLUGIN_OUTPUT_BYTES_MAX`
//! (stdout) and `PLUGIN_STDERR_BYTES_MAX`; more is read and discarded so the plugin does
//! not block on a full pipe, up to `OUTPUT_DRAIN_BYTES_MAX`, past which it is killed.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use consentry_cluster::model::{NagiosSpec, Reason, Status};
use tokio::process::Command;

use crate::child_process::{allowed_program, Captured, ChildProcess, OUTPUT_DRAIN_BYTES_MAX};

use super::{perfdata, Outcome, ProbeContext};

/// Most stdout kept from one plugin run; the Nagios core keeps less.
pub const PLUGIN_OUTPUT_BYTES_MAX: usize = 64 * 1024;

/// Most stderr kept, only to explain a plugin that printed nothing on stdout.
const PLUGIN_STDERR_BYTES_MAX: usize = 4 * 1024;

/// The only search path a plugin gets.
const PLUGIN_ENV_PATH: &str = "/usr/bin:/bin";

/// Runs the plugin `spec.argv` and judges it by its exit code.
///
/// The prober's timeout bounds the run by cancelling this future.
///
/// # Cancel safety
///
/// Cancel safe: dropping the future kills the plugin's whole process group, and tokio
/// reaps the plugin.
pub(super) async fn probe(spec: &NagiosSpec, ctx: &ProbeContext, _timeout: Duration) -> Outcome {
    let Some(program) = spec.argv.first() else {
        return Outcome::unknown("the check names no plugin to run");
    };
    let dirs = &ctx.config.plugin_dirs;
    let plugin = match allowed_program(Path::new(program), dirs, "plugin", "plugin_dirs").await {
        Ok(plugin) => plugin,
        Err(refusal) => return Outcome::unknown(refusal),
    };
    let mut command = Command::new(&plugin);
    // Keep the name the check used: multi-call plugins (`check_imap` linking to
    // `check_tcp`) choose their behaviour by it.
    command
        .arg0(program)
        .args(&spec.argv[1..])
        .env_clear()
        .env("PATH", PLUGIN_ENV_PATH)
        .env("LANG", "C");
    let mut process = match ChildProcess::spawn(&mut command) {
        Ok(process) => process,
        Err(e) => return Outcome::unknown(format!("cannot run plugin {program}: {e}")),
    };
    let finished = match process
        .finish(PLUGIN_OUTPUT_BYTES_MAX, PLUGIN_STDERR_BYTES_MAX)
        .await
    {
        Ok(finished) => finished,
        Err(e) => return Outcome::unknown(format!("cannot wait for plugin {program}: {e}")),
    };
    judge(program, finished.status, &finished.stdout, &finished.stderr)
}

/// Maps a finished plugin to an outcome: its exit code is the verdict, the first line of
/// stdout (before `|`) the message, and the perfdata of the first line and of the long
/// output the measurements.
fn judge(program: &str, status: ExitStatus, stdout: &Captured, stderr: &Captured) -> Outcome {
    let output = String::from_utf8_lossy(&stdout.kept);
    let (first_line, perf_text) = split_output(&output);
    let mut message = first_line.trim().to_string();
    if message.is_empty() {
        let stderr_text = String::from_utf8_lossy(&stderr.kept);
        message = match stderr_text.lines().map(str::trim).find(|l| !l.is_empty()) {
            Some(line) => format!("plugin printed nothing (stderr: {line})"),
            None => "plugin printed nothing".to_string(),
        };
    }
    if stdout.runaway || stderr.runaway {
        let message = format!(
            "plugin {program} printed more than {OUTPUT_DRAIN_BYTES_MAX} bytes and was killed"
        );
        return Outcome::with_status(Status::Unknown, Reason::Plugin, message);
    }
    let perf = perfdata::parse(&perf_text);
    let outcome = match (status.code(), status.signal()) {
        (Some(0), _) => Outcome::ok(message),
        (Some(1), _) => Outcome::with_status(Status::Warning, Reason::Plugin, message),
        (Some(2), _) => Outcome::with_status(Status::Critical, Reason::Plugin, message),
        (Some(3), _) => Outcome::with_status(Status::Unknown, Reason::Plugin, message),
        (Some(code), _) => Outcome::with_status(
            Status::Unknown,
            Reason::Plugin,
            format!("plugin exited with code {code}: {message}"),
        ),
        (None, signal) => Outcome::with_status(
            Status::Unknown,
            Reason::Plugin,
            format!(
                "plugin was killed by signal {}: {message}",
                signal.unwrap_or_default()
            ),
        ),
    };
    outcome.perf(perf)
}

/// Splits plugin output in the Nagios format
///
/// ```text
/// TEXT OUTPUT | OPTIONAL PERFDATA
/// LONG TEXT LINE 1
/// LONG TEXT LINE N | PERFDATA LINE 2
/// PERFDATA LINE 3
/// ```
///
/// into the first line's text and all the perfdata (items separated by whitespace).
fn split_output(output: &str) -> (&str, String) {
    let (first, rest) = output.split_once('\n').unwrap_or((output, ""));
    let (text, first_perf) = first.split_once('|').unwrap_or((first, ""));
    let long_perf = rest.split_once('|').map_or("", |(_long_text, perf)| perf);
    (text, format!("{first_perf}\n{long_perf}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{ProbeConfig, Prober};
    use consentry_cluster::model::{CheckSpec, ProbeSpec};
    use std::os::unix::fs::PermissionsExt;

    const CHECK_DUMMY: &str = "/usr/lib/nagios/plugins/check_dummy";

    struct Plugins {
        dir: tempfile::TempDir,
    }

    impl Plugins {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().expect("temporary directory"),
            }
        }

        /// Writes an executable `/bin/sh` script named `name`.
        fn script(&self, name: &str, body: &str) -> String {
            let path = self.dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write plugin");
            let mut perms = std::fs::metadata(&path).expect("plugin").permissions();
            perms.set_mode(0o755);
            std::fs::set_permissions(&path, perms).expect("chmod plugin");
            path.display().to_string()
        }

        fn ctx(&self) -> ProbeContext {
            ProbeContext {
                config: self.config(),
                tls_verified: crate::probe::tls_config::verified(),
                tls_unverified: crate::probe::tls_config::unverified(),
            }
        }

        fn config(&self) -> ProbeConfig {
            ProbeConfig {
                source_ip: None,
                plugin_dirs: vec![self.dir.path().to_path_buf()],
            }
        }

        /// Runs `argv`, retrying when the script was just written: another test thread
        /// forking while our write descriptor was open makes exec fail with ETXTBSY.
        async fn run(&self, argv: &[&str]) -> Outcome {
            let spec = NagiosSpec {
                argv: argv.iter().map(|a| a.to_string()).collect(),
            };
            let ctx = self.ctx();
            let mut outcome = probe(&spec, &ctx, Duration::from_secs(10)).await;
            for _ in 0..5 {
                if !outcome.message.contains("Text file busy") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                outcome = probe(&spec, &ctx, Duration::from_secs(10)).await;
            }
            outcome
        }
    }

    fn e2e_required() -> bool {
        std::env::var("CONSENTRY_E2E_REQUIRED").is_ok_and(|v| v == "1")
    }

    /// Whether `pid` has ended (gone, or a zombie nobody has reaped yet).
    fn ended(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            // The state follows the parenthesised command name.
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        }
    }

    async fn wait_ended(pid: u32) -> bool {
        for _ in 0..100 {
            if ended(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    fn pids(path: &Path) -> Vec<u32> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    #[tokio::test]
    async fn exit_codes_map_to_statuses() {
        let plugins = Plugins::new();
        // (exit code, status, reason, message)
        let cases: &[(i32, Status, Reason, &str)] = &[
            (0, Status::Ok, Reason::None, "said 0"),
            (1, Status::Warning, Reason::Plugin, "said 1"),
            (2, Status::Critical, Reason::Plugin, "said 2"),
            (3, Status::Unknown, Reason::Plugin, "said 3"),
            (
                7,
                Status::Unknown,
                Reason::Plugin,
                "plugin exited with code 7: said 7",
            ),
        ];
        for &(code, status, reason, message) in cases {
            let name = format!("check_exit_{code}");
            let plugin = plugins.script(&name, &format!("echo 'said {code}'\nexit {code}"));
            let outcome = plugins.run(&[&plugin]).await;
            assert_eq!(outcome.status, status, "exit {code}: {}", outcome.message);
            assert_eq!(outcome.reason, reason, "exit {code}");
            assert_eq!(outcome.message, message, "exit {code}");
        }
    }

    #[tokio::test]
    async fn a_signal_is_unknown() {
        let plugins = Plugins::new();
        let plugin = plugins.script("check_suicide", "echo dying\nkill -TERM $$");
        let outcome = plugins.run(&[&plugin]).await;
        assert_eq!(outcome.status, Status::Unknown, "{}", outcome.message);
        assert_eq!(outcome.reason, Reason::Plugin);
        assert_eq!(outcome.message, "plugin was killed by signal 15: dying");
    }

    #[tokio::test]
    async fn output_and_perfdata_follow_the_nagios_format() {
        let plugins = Plugins::new();
        let plugin = plugins.script(
            "check_long",
            "printf '%s\\n' \
             'DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968' \
             '/ 15272 MB (77%);' \
             '/boot 68 MB (69%); | /boot=68MB;88;93;0;98' \
             \"'home dir'=69%;80;90\"",
        );
        let outcome = plugins.run(&[&plugin]).await;
        assert_eq!(outcome.status, Status::Ok, "{}", outcome.message);
        assert_eq!(outcome.message, "DISK OK - free space: / 3326 MB (56%);");
        let labels: Vec<&str> = outcome.perfdata.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["/", "/boot", "home dir"]);
        assert_eq!(outcome.perfdata[0].value, 2643.0);
        assert_eq!(outcome.perfdata[0].max, Some(5968.0));
        assert_eq!(outcome.perfdata[2].crit, Some(90.0));
    }

    #[tokio::test]
    async fn arguments_pass_verbatim_in_a_clean_environment() {
        let plugins = Plugins::new();
        let plugin = plugins.script(
            "check_env",
            "echo \"args=$# first=$1 second=$2 path=$PATH lang=$LANG home=${HOME-unset} pwd=$(pwd)\"",
        );
        let outcome = plugins.run(&[&plugin, "a b", "$(touch /tmp/x);*"]).await;
        assert_eq!(
            outcome.message,
            "args=2 first=a b second=$(touch /tmp/x);* path=/usr/bin:/bin lang=C home=unset pwd=/"
        );
    }

    #[tokio::test]
    async fn plugins_outside_plugin_dirs_are_refused() {
        let plugins = Plugins::new();
        let inside = plugins.script("check_ok", "echo fine");
        let outside_dir = tempfile::tempdir().expect("temporary directory");
        let outside = outside_dir.path().join("check_evil");
        std::fs::write(&outside, "#!/bin/sh\necho pwned\n").expect("write");
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let link = plugins.dir.path().join("check_link");
        std::os::unix::fs::symlink(&outside, &link).expect("symlink");
        // The outside plugin reached through `..` from the plugin directory (both are
        // in the same temporary directory).
        let sibling = outside_dir
            .path()
            .file_name()
            .expect("name")
            .to_string_lossy();
        let dotdot = format!("{}/../{sibling}/check_evil", plugins.dir.path().display());
        let refused: &[(&str, &str)] = &[
            ("/bin/sh", "is outside the allowed plugin_dirs"),
            (
                &outside.display().to_string(),
                "is outside the allowed plugin_dirs",
            ),
            (&link.display().to_string(), "resolves to"),
            (&dotdot, "is outside the allowed plugin_dirs"),
            ("check_ok", "must be an absolute path"),
            (&format!("{inside}-missing"), "cannot find plugin"),
            (&plugins.dir.path().display().to_string(), "is not a file"),
        ];
        for &(program, why) in refused {
            let outcome = plugins.run(&[program, "-c", "echo pwned"]).await;
            assert_eq!(
                outcome.status,
                Status::Unknown,
                "{program}: {}",
                outcome.message
            );
            assert_eq!(outcome.reason, Reason::Internal, "{program}");
            assert!(
                outcome.message.contains(why),
                "{program}: {}",
                outcome.message
            );
        }
        let no_dirs = ProbeContext {
            config: ProbeConfig::default(),
            ..plugins.ctx()
        };
        let spec = NagiosSpec { argv: vec![inside] };
        let outcome = probe(&spec, &no_dirs, Duration::from_secs(5)).await;
        assert!(
            outcome
                .message
                .contains("outside the allowed plugin_dirs ()"),
            "{}",
            outcome.message
        );
        let outcome = probe(
            &NagiosSpec { argv: vec![] },
            &plugins.ctx(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(outcome.status, Status::Unknown);
    }

    #[tokio::test]
    async fn a_symlink_inside_plugin_dirs_runs_under_its_own_name() {
        // A binary multi-call plugin (like `check_imap` -> `check_tcp`) sees the name the
        // check used as argv[0]. A copy of /bin/sh stands in for it; `sh -c` reports
        // argv[0] as `$0`. (A `#!` script sees the resolved path instead: the kernel hands
        // the interpreter the path that was executed.)
        let plugins = Plugins::new();
        let target = plugins.dir.path().join("check_multi");
        std::fs::copy("/bin/sh", &target).expect("copy /bin/sh");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let link = plugins.dir.path().join("check_alias");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let link = link.display().to_string();
        let outcome = plugins.run(&[&link, "-c", "echo \"I am $0\""]).await;
        assert_eq!(outcome.status, Status::Ok, "{}", outcome.message);
        assert_eq!(outcome.message, format!("I am {link}"));
    }

    #[tokio::test]
    async fn a_plugin_that_outlives_the_timeout_is_killed_with_its_children() {
        let plugins = Plugins::new();
        let pid_file = plugins.dir.path().join("pids");
        let plugin = plugins.script(
            "check_sleepy",
            "echo $$ > \"$1\"\nsleep 60 &\necho $! >> \"$1\"\nwait",
        );
        let mut check = CheckSpec::for_test("sleepy");
        check.probe = ProbeSpec::Nagios(NagiosSpec {
            argv: vec![plugin, pid_file.display().to_string()],
        });
        check.timeout_ms = 500;
        let prober = Prober::new(plugins.config());
        let mut result = prober.probe(&check).await;
        // See `Plugins::run` on ETXTBSY.
        for _ in 0..5 {
            if !result.message.contains("Text file busy") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            result = prober.probe(&check).await;
        }
        assert_eq!(result.status, Status::Critical, "{}", result.message);
        assert_eq!(result.reason, Reason::Timeout);
        let pids = pids(&pid_file);
        assert_eq!(pids.len(), 2, "the plugin and its sleep wrote their pids");
        for pid in pids {
            assert!(wait_ended(pid).await, "process {pid} survived the timeout");
        }
    }

    #[tokio::test]
    async fn a_background_child_does_not_hold_the_probe() {
        let plugins = Plugins::new();
        let pid_file = plugins.dir.path().join("pids");
        // The sleep inherits stdout: without killing the group, reading to the end of
        // the output would wait for it.
        let plugin = plugins.script(
            "check_leaky",
            "sleep 60 &\necho $! > \"$1\"\necho 'OK - left a child'\nexit 0",
        );
        let pid_path = pid_file.display().to_string();
        let argv = [plugin.as_str(), pid_path.as_str()];
        let run = plugins.run(&argv);
        let outcome = tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("the probe returns when the plugin exits");
        assert_eq!(outcome.status, Status::Ok, "{}", outcome.message);
        assert_eq!(outcome.message, "OK - left a child");
        for pid in pids(&pid_file) {
            assert!(wait_ended(pid).await, "background process {pid} survived");
        }
    }

    #[tokio::test]
    async fn output_is_bounded() {
        let plugins = Plugins::new();
        // One 200 KB line of `a`s, then perfdata nobody will see: past the kept bytes.
        let plugin = plugins.script(
            "check_chatty",
            "head -c 200000 /dev/zero | tr '\\0' a\necho ' | lost=1'\necho 'to stderr' >&2\nexit 1",
        );
        let outcome = plugins.run(&[&plugin]).await;
        let start: String = outcome.message.chars().take(80).collect();
        assert_eq!(outcome.status, Status::Warning, "{start}");
        assert!(outcome.message.len() <= PLUGIN_OUTPUT_BYTES_MAX);
        assert!(outcome.message.bytes().all(|b| b == b'a'));
        assert!(outcome.perfdata.is_empty());

        let runaway = plugins.script(
            "check_runaway",
            &format!(
                "head -c {} /dev/zero\necho done",
                OUTPUT_DRAIN_BYTES_MAX * 2
            ),
        );
        let outcome = plugins.run(&[&runaway]).await;
        assert_eq!(outcome.status, Status::Unknown, "{}", outcome.message);
        assert!(
            outcome.message.contains("was killed"),
            "{}",
            outcome.message
        );
    }

    #[tokio::test]
    async fn silence_is_explained_by_stderr() {
        let plugins = Plugins::new();
        let plugin = plugins.script("check_quiet", "echo '  ' \necho 'no such host' >&2\nexit 2");
        let outcome = plugins.run(&[&plugin]).await;
        assert_eq!(outcome.status, Status::Critical);
        assert_eq!(
            outcome.message,
            "plugin printed nothing (stderr: no such host)"
        );
        let plugin = plugins.script("check_mute", "exit 0");
        let outcome = plugins.run(&[&plugin]).await;
        assert_eq!(outcome.message, "plugin printed nothing");
    }

    #[test]
    fn output_splits_into_text_and_perfdata() {
        // (output, text, perfdata labels)
        let cases: &[(&str, &str, &[&str])] = &[
            ("OK", "OK", &[]),
            ("OK | a=1", "OK ", &["a"]),
            ("OK | a=1 b=2\n", "OK ", &["a", "b"]),
            ("OK\nlong 1\nlong 2", "OK", &[]),
            (
                "OK | a=1\nlong 1\nlong 2 | b=2\nc=3\nd=4",
                "OK ",
                &["a", "b", "c", "d"],
            ),
            ("OK\nlong | b=2 | c=3", "OK", &["b", "c"]),
            ("", "", &[]),
            ("|a=1", "", &["a"]),
        ];
        for &(output, text, labels) in cases {
            let (got_text, perf_text) = split_output(output);
            assert_eq!(got_text, text, "{output:?}");
            let got: Vec<String> = perfdata::parse(&perf_text)
                .into_iter()
                .map(|p| p.label)
                .collect();
            assert_eq!(got, labels, "{output:?}");
        }
    }

    #[tokio::test]
    async fn check_dummy_from_monitoring_plugins() {
        if !Path::new(CHECK_DUMMY).exists() {
            let reason = format!("{CHECK_DUMMY} is missing (install monitoring-plugins)");
            assert!(!e2e_required(), "{reason}");
            eprintln!("skipped: {reason}");
            return;
        }
        let ctx = ProbeContext {
            config: ProbeConfig {
                source_ip: None,
                plugin_dirs: vec![std::path::PathBuf::from("/usr/lib/nagios/plugins")],
            },
            ..Plugins::new().ctx()
        };
        let cases: &[(&str, Status)] = &[
            ("0", Status::Ok),
            ("1", Status::Warning),
            ("2", Status::Critical),
            ("3", Status::Unknown),
        ];
        for &(code, status) in cases {
            let spec = NagiosSpec {
                argv: vec![CHECK_DUMMY.into(), code.into(), "from check_dummy".into()],
            };
            let outcome = probe(&spec, &ctx, Duration::from_secs(5)).await;
            assert_eq!(outcome.status, status, "{}", outcome.message);
            assert!(
                outcome.message.contains("from check_dummy"),
                "{}",
                outcome.message
            );
        }
    }
}

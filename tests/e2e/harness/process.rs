//! What every child process the harness starts gets: an environment the developer's shell
//! cannot steer, and a death tied to the test's.

use std::io;
use std::os::unix::process::CommandExt as _;
use std::process::Command;

/// Keeps the developer's shell out of the child: no API/token defaults, and no proxy, so
/// loopback traffic (API calls, webhooks) goes straight to loopback.
pub fn clean_env(cmd: &mut Command) -> &mut Command {
    for key in [
        "CONSENTRY_API",
        "CONSENTRY_TOKEN",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ] {
        cmd.env_remove(key);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
}

/// Makes the child get SIGKILL when the test ends, however it ends (a failed assertion, or
/// a CI timeout's SIGKILL that runs no destructor), so that it does not outlive the test
/// holding ports, namespaces or files the next run needs.
///
/// The signal is Linux's parent-death signal (`PR_SET_PDEATHSIG`), and Linux ties it to
/// the *thread* that spawned the child, not to the test process: the child is killed when
/// that thread exits. Every long-lived child (nodes, the demo, chromedriver, t77's agent)
/// is spawned on the test's own thread today; a command run to completion (`run_cli`,
/// `run_with_deadline`, also from t85's watcher thread) is safe on any thread, since that
/// thread waits for it. A long-lived child must not be started from a helper thread that
/// ends before the child should, such as `netns::in_netns`'s.
///
/// The setting survives `exec` (so `ip netns exec BINARY` passes it on), but not `fork`:
/// a program that daemonizes leaves a grandchild this does not cover.
pub fn die_with_test(cmd: &mut Command) -> &mut Command {
    let parent = libc::pid_t::try_from(std::process::id()).expect("pid fits pid_t");
    // SAFETY: the closure runs in the child between fork and exec; it only calls prctl(2)
    // and getppid(2), which are async-signal-safe, and allocates nothing (an OS error is
    // a plain code).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The test process ended between fork and prctl: no signal will come.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        })
    }
}

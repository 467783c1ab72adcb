//! The end-to-end harness: processes, ports, polling, in-process servers and JSON views.
//!
//! The harness is the suite's composition root, so it is the one place that reads the
//! real clock (`clock::now`); tests only pass durations.

mod checks;
pub mod cli;
pub mod clock;
pub mod demo;
mod expect;
mod http1;
pub mod netns;
mod node;
mod poll;
mod ports;
mod process;
mod receiver;
mod target;
mod views;
mod world;

use std::fmt;
use std::time::Duration;

pub use checks::ChecksFile;
pub use cli::{run_cli, run_cli_measured, run_with_deadline, CliOutput};
pub use poll::{hold_for, wait_until, Deadline};
pub use ports::free_tcp_port;
pub use process::{clean_env, die_with_test};
pub use receiver::{Hook, Receiver};
pub use target::Target;
pub use views::{describe_incidents, id_string, ClusterView};
pub use world::{World, WorldOptions, CHECKS_OK_TIMEOUT, FORM_TIMEOUT, SITE_A, SITE_B, SITE_C};

/// The check interval every test uses (`interval = "1s"`).
pub const INTERVAL: Duration = Duration::from_secs(1);
/// `confirm.rounds` and `recover.rounds` in every test's checks file.
pub const ROUNDS: u32 = 2;
/// What the pinned "interval x rounds plus a few seconds" allows on top of the rounds:
/// raft commit, the leader's tick, the webhook POST, and a debug build on two busy cores.
pub const ALERT_SLACK: Duration = Duration::from_secs(8);
/// How long a test watches that nothing more happens after an expected event
/// (a second webhook, an incident that should not open): three rounds of probes.
pub const SETTLE: Duration = Duration::from_secs(3);

/// How long an outage may take to open an incident and fire its webhook.
pub fn alert_deadline() -> Duration {
    INTERVAL * ROUNDS + ALERT_SLACK
}

/// Prints one phase line; used through the `info!` macro.
pub fn log_phase(args: fmt::Arguments<'_>) {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("e2e").to_owned();
    eprintln!(
        "[{name} +{:.1}s] {args}",
        clock::since_test_start().as_secs_f64()
    );
}

/// Whether CI demands every test to run (`CONSENTRY_E2E_REQUIRED=1`).
pub fn required() -> bool {
    std::env::var("CONSENTRY_E2E_REQUIRED").is_ok_and(|v| v == "1")
}

/// Skips the calling test with a printed reason, or fails it when CI requires every test.
/// Returns `true` when the caller should return early.
pub fn skip_unless_required(reason: &str) -> bool {
    if required() {
        panic!("CONSENTRY_E2E_REQUIRED=1 but this test cannot run: {reason}");
    }
    eprintln!("SKIPPED: {reason} (set CONSENTRY_E2E_REQUIRED=1 to make this a failure)");
    true
}

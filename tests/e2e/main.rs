//! End-to-end tests of the real `consentry` binary.
//!
//! Each test builds a small world in its own temporary directory: a CA and node
//! certificates made by `consentry certs init`, three `consentry run` processes (site-a,
//! site-b and the witness site-c) that form their cluster from `initial_member` lists,
//! and in-process servers owned by the test: the targets the nodes probe and a webhook
//! receiver that counts notifications. The test then drives the cluster through the CLI
//! and the HTTP API and watches what the nodes decide.
//!
//! Every wait is a poll with an explicit deadline (`harness::wait_until`); a condition that
//! must stay true ("no second webhook") is watched for a window (`harness::hold_for`).
//! Node processes are killed with SIGKILL when the world is dropped, also when a test
//! panics, and their logs are printed when a test fails.
//!
//! Environment: `CONSENTRY_E2E_KEEP=1` keeps a failed test's directory (configs, data,
//! logs), `CONSENTRY_E2E_KEEP=always` every test's; `CONSENTRY_E2E_REQUIRED=1` (set by CI) turns a skip for a missing facility into
//! a failure.

/// Prints why the next phase of a test runs, with the test's name and elapsed time.
macro_rules! info {
    ($($arg:tt)*) => {
        $crate::harness::log_phase(format_args!($($arg)*))
    };
}

mod browser;
mod harness;
mod servers;
mod t05_demo;
mod t10_cluster;
mod t20_incident;
mod t30_path;
mod t40_failover;
mod t50_restart_tls;
mod t55_snapshot;
mod t60_bad_input;
mod t65_membership;
mod t70_probes_real;
mod t75_conformance;
mod t77_recovery;
mod t80_hostile;
mod t85_multihost;
mod t88_dashboard;
mod t90_notifiers;
mod t91_read_side;
mod t92_ops;
mod t95_alerting;

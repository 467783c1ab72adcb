//! The harness's only access to the real clock.
//!
//! The workspace's `clippy.toml` bans `Instant::now` outside composition roots; the
//! end-to-end harness is one (it measures real processes in real time), so the ban is
//! lifted here and nowhere else in the suite.

use std::cell::Cell;
use std::time::{Duration, Instant};

thread_local! {
    /// When the current test (one test per libtest thread) first asked for the time.
    static TEST_START: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The current instant.
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    let now = Instant::now();
    TEST_START.with(|start| {
        if start.get().is_none() {
            start.set(Some(now));
        }
    });
    now
}

/// Time since the current test first looked at the clock.
pub fn since_test_start() -> Duration {
    let now = now();
    TEST_START.with(|start| now.saturating_duration_since(start.get().unwrap_or(now)))
}

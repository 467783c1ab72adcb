//! consentry's deterministic simulation.
//!
//! The real node code (poller, leader, openraft, QUIC through [`net`]) runs on turmoil
//! hosts, one per site, against simulated targets whose answers follow the ground truth of
//! a [`schedule`] derived from one seed: target outages, path failures, partitions, crashes,
//! leader kills, message loss and delay, clock drift. The [`world`] driver injects the faults
//! and watches every replica; the [`oracle`] checks consentry's invariants on the record;
//! the [`baselines`] judge simpler monitors on the same probe results; [`report`] prints the
//! table. Everything a run does follows from its seed, so `--reproduce SEED` replays it
//! exactly.

// Without tokio's unstable cfg turmoil cannot seed each host's runtime, `select!` polls
// its branches in a random order, and no run could be replayed.
#[cfg(not(tokio_unstable))]
compile_error!(
    "consentry-sim needs `--cfg tokio_unstable` (set in .cargo/config.toml; a RUSTFLAGS \
     environment variable replaces it, so add `--cfg tokio_unstable` there too)"
);

pub mod baselines;
pub mod judge;
pub mod net;
pub mod oracle;
pub mod report;
pub mod schedule;
pub mod trace;
pub mod world;

#[cfg(test)]
mod tests;

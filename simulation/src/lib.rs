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

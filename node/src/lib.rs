//! consentry's node: everything one cluster member runs, and the `consentry` CLI.
//!
//! Data flows one way. The [`poller`] probes the checks that are due (the [`schedule`]
//! spreads them over their interval; [`probe`] does the network work) and writes one result
//! batch per flush through the [`writer`], which hands it to the raft leader. Every node
//! applies the committed log to the cluster state machine (`consentry_cluster::state`),
//! which decides incidents. The [`leader`] alone commits ticks and delivers notification
//! intents ([`notify`]). The [`api`] serves the applied state, the [`dashboard`](api) and
//! `/metrics`, and accepts catalog writes. [`server`] is the composition root that wires
//! these with the real socket, clock and stores; [`cli`] and [`demo`] drive it.

pub mod agent;
pub mod api;
pub mod bench;
pub mod check_kinds;
pub mod checks_file;
pub mod child_process;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod data_dir;
pub mod demo;
pub mod demo_target;
pub mod duration;
pub mod error;
pub mod history;
pub mod leader;
pub mod metrics;
pub mod notifier_kinds;
pub mod notify;
#[cfg(test)]
mod openapi_tests;
pub mod poller;
pub mod position;
pub mod probe;
pub mod read_api;
pub mod schedule;
pub mod server;
pub mod snapshot_file;
pub mod views;
pub mod wall_time;
pub mod writer;

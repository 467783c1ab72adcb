//! The host agent (`consentry agent --config agent.toml`) and a node's side of it.
pub mod action;
pub mod host;
pub mod hub;
pub mod run;

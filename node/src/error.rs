//! The node crate's error types, one per boundary.

use std::path::PathBuf;

use crate::position::Position;

/// Loading `node.toml` failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path} failed")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", format_invalid(path, errors))]
    Invalid {
        path: PathBuf,
        errors: Vec<(Position, String)>,
    },
}

fn format_invalid(path: &std::path::Path, errors: &[(Position, String)]) -> String {
    errors
        .iter()
        .map(|(p, m)| {
            if p.line == 0 {
                format!("{}: {m}", path.display())
            } else {
                format!("{}:{p}: {m}", path.display())
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Starting a node failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("loading TLS material failed: {0}")]
    Tls(String),
    #[error(
        "certificate {cert} names node {found}, but node_id is {expected}: use node-{expected}.pem"
    )]
    CertIdentity {
        cert: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("reading API token {path} failed")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening raft storage in {path} failed: {message}")]
    Storage { path: PathBuf, message: String },
    #[error("binding {what} on {addr} failed: {message}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        message: String,
    },
    #[error("starting raft failed: {0}")]
    Raft(String),
    #[error(transparent)]
    DataDir(#[from] crate::data_dir::DataDirError),
}

/// Writing a command through raft failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("no leader is known (the cluster may have lost its quorum)")]
    NoLeader,
    #[error("writing through raft failed: {0}")]
    Raft(String),
    #[error("forwarding the write to leader {leader} failed: {message}")]
    Forward { leader: u64, message: String },
    #[error("the state machine rejected the command: {0}")]
    Rejected(String),
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: String },
}

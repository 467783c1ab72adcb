//! The errors this crate reports outside of openraft's own `StorageError`.

use std::io;
use std::path::PathBuf;

use crate::codec::CodecError;

/// Opening a store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled refused the directory: it is locked by another process, unreadable, or holds a
    /// database written by an incompatible sled version.
    #[error("opening sled database at {} failed: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    /// The persisted snapshot could not be read from the database.
    #[error("reading the stored snapshot failed: {source}")]
    ReadSnapshot {
        #[source]
        source: io::Error,
    },
    /// The persisted snapshot is there but cannot be decoded or contradicts itself. Restore
    /// the directory from a backup or remove it and let the node catch up from its peers.
    #[error("stored snapshot is corrupt: {source}")]
    CorruptSnapshot {
        #[source]
        source: SnapshotError,
    },
}

/// A snapshot's bytes could not be turned back into a state machine.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("decoding snapshot {part} failed: {source}")]
    Decode {
        part: &'static str,
        #[source]
        source: CodecError,
    },
    #[error("snapshot data disagrees with its metadata on {field}")]
    Mismatch { field: &'static str },
    #[error("snapshot record is incomplete: {part} is missing")]
    Missing { part: &'static str },
}

//! The file `consentry snapshot save` writes and `consentry snapshot restore` reads.
//!
//! One header line naming the format and its version (`consentry-snapshot 1`), then the
//! codec's bytes of a [`SnapshotFile`]. The header lets a later consentry say which format
//! a file has before decoding anything; the bytes hold secrets (notifier URLs, check
//! credentials), so the file is written mode 0600 and the API serves it only with the token.

use consentry_cluster::backup::Backup;
use consentry_cluster::codec;
use serde::{Deserialize, Serialize};

/// The header of format version 1.
pub const HEADER: &[u8] = b"consentry-snapshot 1\n";
const HEADER_PREFIX: &[u8] = b"consentry-snapshot ";
/// Largest snapshot accepted: it travels through raft as one entry, and a transport frame
/// holds at most 32 MiB (see `consentry_cluster::transport::FRAME_BYTES_MAX`) for that entry
/// together with the others replicated in the same AppendEntries. Half leaves the room.
pub const SNAPSHOT_BYTES_MAX: usize = 16 * 1024 * 1024;

/// What a snapshot file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// SHA-256 of the CA of the cluster it was taken from (informational).
    pub cluster_ca_sha256: String,
    /// The node that served it, and the log index its state was at.
    pub node_id: u64,
    pub applied_index: u64,
    /// The cluster's time (leader's last tick) when it was taken.
    pub taken_at_ms: u64,
    pub backup: Backup,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotFileError {
    #[error("not a consentry snapshot (it does not start with \"consentry-snapshot\")")]
    NotASnapshot,
    #[error("snapshot format {0:?} is not one this consentry reads (it reads format 1)")]
    Version(String),
    #[error("the snapshot is {0} bytes; at most {SNAPSHOT_BYTES_MAX} are accepted")]
    TooLarge(usize),
    #[error("the snapshot is damaged: {0}")]
    Corrupt(String),
}

/// Encodes `file` with its header.
///
/// # Errors
/// `TooLarge` when the result exceeds [`SNAPSHOT_BYTES_MAX`]; `Corrupt` when the codec
/// refuses the value.
pub fn encode(file: &SnapshotFile) -> Result<Vec<u8>, SnapshotFileError> {
    let body = codec::encode(file).map_err(|e| SnapshotFileError::Corrupt(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER.len() + body.len());
    out.extend_from_slice(HEADER);
    out.extend_from_slice(&body);
    if out.len() > SNAPSHOT_BYTES_MAX {
        return Err(SnapshotFileError::TooLarge(out.len()));
    }
    Ok(out)
}

/// Decodes a snapshot file.
///
/// # Errors
/// `NotASnapshot` without the header, `Version` for another format version, `TooLarge`,
/// `Corrupt` when the bytes after the header do not decode.
pub fn decode(bytes: &[u8]) -> Result<SnapshotFile, SnapshotFileError> {
    if bytes.len() > SNAPSHOT_BYTES_MAX {
        return Err(SnapshotFileError::TooLarge(bytes.len()));
    }
    let Some(rest) = bytes.strip_prefix(HEADER_PREFIX) else {
        return Err(SnapshotFileError::NotASnapshot);
    };
    let Some(end) = rest.iter().take(32).position(|b| *b == b'\n') else {
        return Err(SnapshotFileError::NotASnapshot);
    };
    let version = String::from_utf8_lossy(&rest[..end]).into_owned();
    if version != "1" {
        return Err(SnapshotFileError::Version(version));
    }
    codec::decode(&rest[end + 1..]).map_err(|e| SnapshotFileError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use consentry_cluster::model::Catalog;

    use super::*;

    fn sample() -> SnapshotFile {
        SnapshotFile {
            cluster_ca_sha256: "ab".repeat(32),
            node_id: 2,
            applied_index: 40,
            taken_at_ms: 1_763_740_000_000,
            backup: Backup {
                catalog: Catalog::default(),
                silences: Vec::new(),
                incidents: Vec::new(),
                next_incident_id: 7,
                next_silence_id: 3,
            },
        }
    }

    #[test]
    fn round_trips_and_refuses_what_is_not_format_1() {
        let bytes = encode(&sample()).unwrap();
        assert!(bytes.starts_with(HEADER));
        assert_eq!(decode(&bytes).unwrap(), sample());

        assert_eq!(
            decode(b"{\"json\": 1}"),
            Err(SnapshotFileError::NotASnapshot)
        );
        assert_eq!(
            decode(b"consentry-snapshot 1"),
            Err(SnapshotFileError::NotASnapshot)
        );
        let mut v2 = b"consentry-snapshot 2\n".to_vec();
        v2.extend_from_slice(&bytes[HEADER.len()..]);
        assert_eq!(decode(&v2), Err(SnapshotFileError::Version("2".into())));
        let truncated = &bytes[..bytes.len() - 3];
        assert!(matches!(
            decode(truncated),
            Err(SnapshotFileError::Corrupt(_))
        ));
        let mut garbage = HEADER.to_vec();
        garbage.extend_from_slice(&[0xff; 64]);
        assert!(matches!(
            decode(&garbage),
            Err(SnapshotFileError::Corrupt(_))
        ));
        let huge = vec![b'c'; SNAPSHOT_BYTES_MAX + 1];
        assert_eq!(
            decode(&huge),
            Err(SnapshotFileError::TooLarge(SNAPSHOT_BYTES_MAX + 1))
        );
    }
}

//! Which cluster a data directory belongs to.
//!
//! On first start a node writes `cluster-id` into its data directory: the SHA-256 of the
//! cluster CA certificate it was started with. Later starts compare. A data directory from
//! another cluster (copied by mistake, or left over from a `certs init` that made a new CA)
//! would otherwise join its stale raft log and votes to the wrong peers; the node refuses to
//! start and says which directory and which CA disagree.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The file in `data_dir` that names the cluster.
pub const CLUSTER_ID_FILE: &str = "cluster-id";
/// Longest `cluster-id` file read (a hex SHA-256 and a newline; anything longer is not ours).
const CLUSTER_ID_BYTES_MAX: u64 = 256;

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "data directory {dir} belongs to the cluster whose CA has SHA-256 {found}, but this \
         node's CA ({ca}) has SHA-256 {expected}. Start it with that cluster's certificates, \
         or point data_dir at an empty directory to join this cluster as a new member"
    )]
    OtherCluster {
        dir: PathBuf,
        ca: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{path} is not a consentry cluster id (expected 64 hex characters): remove it only if this data directory belongs to this cluster")]
    Corrupt { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Checks that `dir` belongs to the cluster `expected` (a CA fingerprint); records it when
/// the directory has no record yet (a new node, or one from before the record existed).
///
/// # Errors
/// [`DataDirError::OtherCluster`] when the recorded cluster differs; `Corrupt` when the
/// record is unreadable; `Io` when it cannot be read or written.
pub fn claim(dir: &Path, expected: &str, ca: &Path) -> Result<(), DataDirError> {
    let path = dir.join(CLUSTER_ID_FILE);
    let io = |source| DataDirError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::metadata(&path) {
        Ok(meta) => {
            if meta.len() > CLUSTER_ID_BYTES_MAX {
                return Err(DataDirError::Corrupt { path });
            }
            let text = std::fs::read_to_string(&path).map_err(io)?;
            let found = text.trim();
            if found.len() != 64 || !found.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(DataDirError::Corrupt { path });
            }
            if !found.eq_ignore_ascii_case(expected) {
                return Err(DataDirError::OtherCluster {
                    dir: dir.to_path_buf(),
                    ca: ca.to_path_buf(),
                    found: found.to_string(),
                    expected: expected.to_string(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io)?;
            write_whole(&path, format!("{expected}\n").as_bytes(), 0o644).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}

/// Writes `bytes` to `path` whole or not at all: a temporary file beside it (created with
/// `mode`), synced, then renamed over it. A crash leaves the old file or the new one.
///
/// # Errors
/// When the directory is not writable or the disk is full.
pub fn write_whole(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file")
    })?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Files counted at most by [`size`]; a data directory holds a few dozen.
pub const SIZE_FILES_MAX: usize = 100_000;

/// Bytes of the regular files under `dir` (not following links), counting at most
/// [`SIZE_FILES_MAX`] entries; unreadable entries count as 0.
pub fn size(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut seen = 0usize;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > SIZE_FILES_MAX {
                return total;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                total += entry.metadata().map_or(0, |m| m.len());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aa00000000000000000000000000000000000000000000000000000000000001";
    const B: &str = "bb00000000000000000000000000000000000000000000000000000000000002";

    #[test]
    fn the_first_start_records_the_cluster_and_later_starts_must_match() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let ca = Path::new("/etc/consentry/ca.pem");
        claim(&data, A, ca)?;
        assert_eq!(
            std::fs::read_to_string(data.join(CLUSTER_ID_FILE))?,
            format!("{A}\n")
        );
        claim(&data, A, ca)?;
        claim(&data, &A.to_uppercase(), ca)?;
        let err = claim(&data, B, ca).expect_err("another cluster's CA is refused");
        let text = err.to_string();
        assert!(text.contains(A) && text.contains(B), "{text}");
        assert!(
            text.contains(&data.display().to_string()) && text.contains("ca.pem"),
            "{text}"
        );
        Ok(())
    }

    #[test]
    fn size_counts_nested_files_and_nothing_else() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("a"), [0u8; 100])?;
        std::fs::create_dir_all(dir.path().join("raft/db"))?;
        std::fs::write(dir.path().join("raft/db/b"), [0u8; 23])?;
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link"))?;
        assert_eq!(size(dir.path()), 123);
        assert_eq!(size(&dir.path().join("missing")), 0);
        Ok(())
    }

    #[test]
    fn a_damaged_record_is_refused_not_overwritten() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        for bad in ["not hex".to_string(), "a".repeat(10_000), String::new()] {
            std::fs::write(dir.path().join(CLUSTER_ID_FILE), &bad)?;
            let err = claim(dir.path(), A, Path::new("ca.pem")).expect_err("refused");
            assert!(matches!(err, DataDirError::Corrupt { .. }), "{err}");
            assert_eq!(
                std::fs::read_to_string(dir.path().join(CLUSTER_ID_FILE))?,
                bad
            );
        }
        Ok(())
    }
}

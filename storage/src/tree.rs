//! The ordered byte map that the stores keep their data in: a sled tree on disk, or a
//! [`MemTree`](crate::mem_tree::MemTree) in memory.
//!
//! The stores only ever see this trait, so the disk and memory variants run the same
//! encode/decode and bookkeeping code and differ only in where the bytes end up.

use std::future::Future;
use std::io;
use std::ops::Bound;

/// Writes applied atomically by [`Tree::write`]: `Some` inserts, `None` removes.
pub type Batch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// How much one [`Tree::scan`] may return.
#[derive(Debug, Clone, Copy)]
pub struct ScanLimit {
    /// At most this many pairs.
    pub entries_max: usize,
    /// Stop once the values returned so far add up to this many bytes. The first pair is
    /// always returned, so a non-empty range never yields an empty result.
    pub bytes_max: usize,
}

impl ScanLimit {
    pub const NONE: ScanLimit = ScanLimit {
        entries_max: usize::MAX,
        bytes_max: usize::MAX,
    };
}

/// An ordered map from byte keys to byte values.
///
/// Public only so the store type aliases can name their backend; it cannot be implemented
/// outside this crate because its module is private.
pub trait Tree: Clone + Send + Sync + 'static {
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>>;

    /// The pair with the greatest key.
    fn last(&self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>>;

    /// Pairs with `start <= key < end` (no upper bound when `end` is `None`), in key order,
    /// cut short by `limit`.
    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: ScanLimit,
    ) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Applies `batch` atomically.
    fn write(&self, batch: Batch) -> io::Result<()>;

    /// Removes every key in `start <= key < end` (`end = None`: no upper bound) atomically.
    fn remove_range(&self, start: &[u8], end: Option<&[u8]>) -> io::Result<()>;

    /// Resolves once everything written before the call is durable.
    fn flush(&self) -> impl Future<Output = io::Result<()>> + Send;
}

/// A byte-key range in the form `BTreeMap::range` and `sled::Tree::range` take.
pub(crate) type KeyRange<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// The range bounds for `start <= key < end`, or `None` when that range is empty. Both
/// backends go through this, so an inverted range behaves the same (and `BTreeMap::range`,
/// which panics on one, never sees it).
pub(crate) fn key_bounds<'a>(start: &'a [u8], end: Option<&'a [u8]>) -> Option<KeyRange<'a>> {
    match end {
        Some(end) if end <= start => None,
        Some(end) => Some((Bound::Included(start), Bound::Excluded(end))),
        None => Some((Bound::Included(start), Bound::Unbounded)),
    }
}

impl Tree for sled::Tree {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        Ok(sled::Tree::get(self, key)?.map(|v| v.to_vec()))
    }

    fn last(&self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        Ok(sled::Tree::last(self)?.map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: ScanLimit,
    ) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let Some(range) = key_bounds(start, end) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for pair in self.range::<&[u8], _>(range) {
            if out.len() >= limit.entries_max || (!out.is_empty() && bytes >= limit.bytes_max) {
                break;
            }
            let (k, v) = pair?;
            bytes = bytes.saturating_add(v.len());
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn write(&self, batch: Batch) -> io::Result<()> {
        let mut sled_batch = sled::Batch::default();
        for (key, value) in batch {
            match value {
                Some(value) => sled_batch.insert(key, value),
                None => sled_batch.remove(key),
            }
        }
        Ok(self.apply_batch(sled_batch)?)
    }

    fn remove_range(&self, start: &[u8], end: Option<&[u8]>) -> io::Result<()> {
        let Some(range) = key_bounds(start, end) else {
            return Ok(());
        };
        let mut sled_batch = sled::Batch::default();
        for key in self.range::<&[u8], _>(range).keys() {
            sled_batch.remove(key?);
        }
        Ok(self.apply_batch(sled_batch)?)
    }

    async fn flush(&self) -> io::Result<()> {
        self.flush_async().await?;
        Ok(())
    }
}

//! The raft log and vote store, generic over the [`Tree`] its bytes go to.

// openraft's storage traits return `StorageError` by value, and it is large; the helpers
// here return the same type so `?` carries it through unchanged.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogId, RaftLogReader,
    RaftTypeConfig, StorageError, StorageIOError, Vote,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::tree::{ScanLimit, Tree};

/// Most entries one `limited_get_log_entries` call returns, i.e. one replication batch.
pub const LOG_READ_ENTRIES_MAX: usize = 4096;
/// Encoded bytes after which `limited_get_log_entries` stops adding entries (it always
/// returns at least one).
pub const LOG_READ_BYTES_MAX: usize = 8 * 1024 * 1024;

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// The raft log (one tree, entries keyed by big-endian `u64` index) and its metadata: vote,
/// committed log id, last purged log id (a second tree).
///
/// Clones are cheap and share the trees; the log reader is such a clone.
///
/// Durability: `append` flushes before it reports the entries flushed, `save_vote`,
/// `truncate` and `purge` flush before they return. `save_committed` does not flush (it is
/// called on every commit and only saves re-applying on restart), so after a crash the
/// committed log id read back may be older than the last one saved.
pub struct LogStore<C, T> {
    log: T,
    meta: T,
    _config: PhantomData<fn() -> C>,
}

impl<C, T: Clone> Clone for LogStore<C, T> {
    fn clone(&self) -> Self {
        Self {
            log: self.log.clone(),
            meta: self.meta.clone(),
            _config: PhantomData,
        }
    }
}

impl<C, T> LogStore<C, T>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
    T: Tree,
{
    pub(crate) fn new(log: T, meta: T) -> Self {
        Self {
            log,
            meta,
            _config: PhantomData,
        }
    }

    fn read_meta<V: DeserializeOwned>(
        &self,
        key: &[u8],
        subject: ErrorSubject<C::NodeId>,
    ) -> Result<Option<V>, StorageError<C::NodeId>> {
        let io_error = |e: AnyError| StorageIOError::new(subject.clone(), ErrorVerb::Read, e);
        let Some(bytes) = self
            .meta
            .get(key)
            .map_err(|e| io_error(AnyError::new(&e)))?
        else {
            return Ok(None);
        };
        let value = codec::decode(&bytes).map_err(|e| io_error(AnyError::new(&e)))?;
        Ok(Some(value))
    }

    fn write_meta<V: Serialize>(
        &self,
        key: &[u8],
        value: Option<&V>,
        subject: ErrorSubject<C::NodeId>,
    ) -> Result<(), StorageError<C::NodeId>> {
        let io_error = |e: AnyError| StorageIOError::new(subject.clone(), ErrorVerb::Write, e);
        let bytes = value
            .map(codec::encode)
            .transpose()
            .map_err(|e| io_error(AnyError::new(&e)))?;
        self.meta
            .write(vec![(key.to_vec(), bytes)])
            .map_err(|e| io_error(AnyError::new(&e)))?;
        Ok(())
    }

    /// Entries with `start <= index < end`, in order, cut short by `limit`.
    fn read_entries(
        &self,
        start: u64,
        end: Option<u64>,
        limit: ScanLimit,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        let end_key = end.map(u64::to_be_bytes);
        let pairs = self
            .log
            .scan(
                &start.to_be_bytes(),
                end_key.as_ref().map(|k| &k[..]),
                limit,
            )
            .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
        pairs
            .iter()
            .map(|(key, value)| decode_entry::<C>(key, value))
            .collect()
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        let last = self
            .log
            .last()
            .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)))?;
        let Some((key, value)) = last else {
            return Ok(None);
        };
        Ok(Some(decode_entry::<C>(&key, &value)?.get_log_id().clone()))
    }

    async fn flush(
        &self,
        tree: &T,
        subject: ErrorSubject<C::NodeId>,
    ) -> Result<(), StorageError<C::NodeId>> {
        tree.flush()
            .await
            .map_err(|e| StorageIOError::new(subject, ErrorVerb::Write, AnyError::new(&e)).into())
    }
}

/// Decodes one log tree pair, checking that the key is an 8-byte index and agrees with the
/// entry's own log id.
fn decode_entry<C>(key: &[u8], value: &[u8]) -> Result<C::Entry, StorageError<C::NodeId>>
where
    C: RaftTypeConfig,
    C::Entry: DeserializeOwned,
{
    let Ok(index_bytes) = <[u8; 8]>::try_from(key) else {
        return Err(StorageIOError::read_logs(AnyError::error(format!(
            "log tree key is {} bytes long, expected an 8-byte big-endian index",
            key.len()
        )))
        .into());
    };
    let index = u64::from_be_bytes(index_bytes);
    let entry: C::Entry = codec::decode(value)
        .map_err(|e| StorageIOError::read_log_at_index(index, AnyError::new(&e)))?;
    if entry.get_log_id().index != index {
        return Err(StorageIOError::read_log_at_index(
            index,
            AnyError::error(format!(
                "entry stored under index {index} carries log id {}",
                entry.get_log_id()
            )),
        )
        .into());
    }
    Ok(entry)
}

/// `range` as `start <= index < end` (`end = None`: unbounded), or `None` when it is empty.
fn index_range(range: &impl RangeBounds<u64>) -> Option<(u64, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        // `Included(u64::MAX)` has no exclusive end in u64: it is the same as unbounded.
        Bound::Included(&e) => e.checked_add(1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    match end {
        Some(end) if end <= start => None,
        _ => Some((start, end)),
    }
}

impl<C, T> RaftLogReader<C> for LogStore<C, T>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
    T: Tree,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        let Some((start, end)) = index_range(&range) else {
            return Ok(Vec::new());
        };
        self.read_entries(start, end, ScanLimit::NONE)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        if end <= start {
            return Ok(Vec::new());
        }
        let limit = ScanLimit {
            entries_max: LOG_READ_ENTRIES_MAX,
            bytes_max: LOG_READ_BYTES_MAX,
        };
        self.read_entries(start, Some(end), limit)
    }
}

impl<C, T> RaftLogStorage<C> for LogStore<C, T>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
    T: Tree,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let last_purged_log_id: Option<LogId<C::NodeId>> =
            self.read_meta(KEY_LAST_PURGED, ErrorSubject::Logs)?;
        let last_entry = self.last_entry_log_id()?;
        // A crash between recording a purge and removing its entries can leave entries at
        // or below the purge point; the purge point is then the last log id.
        let last_log_id = match (last_entry, last_purged_log_id.clone()) {
            (Some(entry), Some(purged)) if purged.index > entry.index => Some(purged),
            (Some(entry), _) => Some(entry),
            (None, purged) => purged,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.write_meta(KEY_VOTE, Some(vote), ErrorSubject::Vote)?;
        self.flush(&self.meta, ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        self.read_meta(KEY_VOTE, ErrorSubject::Vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        self.write_meta(KEY_COMMITTED, committed.as_ref(), ErrorSubject::Store)
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        self.read_meta(KEY_COMMITTED, ErrorSubject::Store)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = Vec::new();
        let mut previous: Option<u64> = None;
        for entry in entries {
            let log_id = entry.get_log_id().clone();
            if let Some(previous) = previous {
                assert!(
                    previous.checked_add(1) == Some(log_id.index),
                    "append batch has a hole: index {} follows {previous}",
                    log_id.index
                );
            }
            previous = Some(log_id.index);
            let index_key = log_id.index.to_be_bytes();
            let bytes = codec::encode(&entry)
                .map_err(|e| StorageIOError::write_log_entry(log_id, AnyError::new(&e)))?;
            batch.push((index_key.to_vec(), Some(bytes)));
        }
        self.log
            .write(batch)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        // The entries are readable now; report them flushed only once they are durable.
        match self.log.flush().await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let error = StorageIOError::write_logs(AnyError::new(&e));
                callback.log_io_completed(Err(e));
                Err(error.into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.log
            .remove_range(&log_id.index.to_be_bytes(), None)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        self.flush(&self.log, ErrorSubject::Logs).await
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        // Record the purge point first: a crash before the entries are gone then leaves
        // harmless extra entries, never a log that looks shorter than it is.
        self.write_meta(KEY_LAST_PURGED, Some(&log_id), ErrorSubject::Logs)?;
        let end = log_id.index.checked_add(1).map(u64::to_be_bytes);
        self.log
            .remove_range(&0u64.to_be_bytes(), end.as_ref().map(|k| &k[..]))
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        self.flush(&self.log, ErrorSubject::Logs).await
    }
}

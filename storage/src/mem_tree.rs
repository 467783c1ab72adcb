//! An in-memory [`Tree`] for simulation and tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::tree::{key_bounds, Batch, ScanLimit, Tree};

/// A `BTreeMap` behind a mutex; clones share the map. Nothing survives the process.
#[derive(Debug, Clone, Default)]
pub struct MemTree {
    map: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
}

impl MemTree {
    fn lock(&self) -> io::Result<MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>>> {
        self.map
            .lock()
            .map_err(|_| io::Error::other("in-memory tree lock poisoned by an earlier panic"))
    }
}

impl Tree for MemTree {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        Ok(self.lock()?.get(key).cloned())
    }

    fn last(&self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        Ok(self
            .lock()?
            .last_key_value()
            .map(|(k, v)| (k.clone(), v.clone())))
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
        let map = self.lock()?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (k, v) in map.range::<[u8], _>(range) {
            if out.len() >= limit.entries_max || (!out.is_empty() && bytes >= limit.bytes_max) {
                break;
            }
            bytes = bytes.saturating_add(v.len());
            out.push((k.clone(), v.clone()));
        }
        Ok(out)
    }

    fn write(&self, batch: Batch) -> io::Result<()> {
        let mut map = self.lock()?;
        for (key, value) in batch {
            match value {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
        }
        Ok(())
    }

    fn remove_range(&self, start: &[u8], end: Option<&[u8]>) -> io::Result<()> {
        let Some(range) = key_bounds(start, end) else {
            return Ok(());
        };
        let mut map = self.lock()?;
        let keys: Vec<Vec<u8>> = map
            .range::<[u8], _>(range)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            map.remove(&key);
        }
        Ok(())
    }

    fn flush(&self) -> impl Future<Output = io::Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

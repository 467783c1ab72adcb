//! The history's sled database: raw results and rollups, keyed time first, and the incident
//! and silence records.
//!
//! Keys are `tier ‖ bucket (u64, big-endian) ‖ check name` for results and rollups, so a
//! report over a period is one sequential scan per tier and retention deletes a key prefix.
//! Check names never contain a NUL byte (they are `[A-Za-z0-9._-]`).
//!
//! All rows a chunk of log entries touches are written in one sled batch together with the
//! new cursor (the last log index recorded), so a crash never counts a result twice or
//! skips one: recording restarts from the cursor.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use consentry_cluster::command::Command;
use consentry_cluster::model::{Incident, Matcher, Silence, Status};
use consentry_cluster::state::ClusterState;
use consentry_storage::codec;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub const MINUTE_MS: u64 = 60_000;
pub const HOUR_MS: u64 = 3_600_000;
pub const DAY_MS: u64 = 86_400_000;

/// Raw results kept per check and minute (all sites); later ones are counted, not kept.
pub const RAW_PER_MINUTE_MAX: usize = 600;
/// Bytes of a raw result's message kept.
pub const RAW_MESSAGE_BYTES_MAX: usize = 200;
/// Sites one rollup row holds (a cluster has a handful).
pub const SITES_PER_ROW_MAX: usize = 64;
/// Gaps remembered (the oldest are dropped; `gap_entries` keeps counting).
pub const GAPS_MAX: usize = 100;
/// A result observed this far after the newest leader tick is not recorded: a poller
/// whose clock is wrong must not write rows that retention would never reach.
pub const FUTURE_SKEW_MS_MAX: u64 = 15 * MINUTE_MS;
/// Raw results one read returns.
pub const RAW_READ_MAX: usize = 200_000;

const TIER_RAW: u8 = b'r';
const TIER_MINUTE: u8 = b'm';
const TIER_HOUR: u8 = b'h';
const TIER_DAY: u8 = b'd';
const TIER_INCIDENT: u8 = b'i';
const TIER_SILENCE: u8 = b's';
/// Bookkeeping keys start with a byte no tier uses.
const META_KEY: &[u8] = b"\0meta";

/// How long each kind of row is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub raw_days: u64,
    pub minute_days: u64,
    pub hour_days: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            raw_days: 10,
            minute_days: 35,
            hour_days: 400,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history database {path}: {message}")]
    Open { path: String, message: String },
    #[error("history database: {0}")]
    Sled(#[from] sled::Error),
    #[error("history row: {0}")]
    Codec(#[from] codec::CodecError),
}

/// Results of one site in one minute, hour or day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Results.
    pub n: u64,
    /// Results that were OK or WARNING (the target answered).
    pub up: u64,
    pub latency_sum_ms: u64,
    pub latency_max_ms: u64,
}

impl Bucket {
    pub fn add(&mut self, status: Status, latency_ms: u64) {
        self.n += 1;
        if matches!(status, Status::Ok | Status::Warning) {
            self.up += 1;
        }
        self.latency_sum_ms = self.latency_sum_ms.saturating_add(latency_ms);
        self.latency_max_ms = self.latency_max_ms.max(latency_ms);
    }

    pub fn merge(&mut self, other: &Bucket) {
        self.n += other.n;
        self.up += other.up;
        self.latency_sum_ms = self.latency_sum_ms.saturating_add(other.latency_sum_ms);
        self.latency_max_ms = self.latency_max_ms.max(other.latency_max_ms);
    }

    #[allow(clippy::cast_precision_loss)]
    pub fn avg_ms(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.latency_sum_ms as f64 / self.n as f64
        }
    }
}

/// One rollup row: every site's bucket, by site number (see [`History::site_names`]),
/// sorted. Numbers rather than names keep rows small and quick to read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Row {
    sites: Vec<(u16, Bucket)>,
}

impl Row {
    fn bucket(&mut self, site: u16) -> Option<&mut Bucket> {
        match self.sites.binary_search_by_key(&site, |(s, _)| *s) {
            Ok(i) => Some(&mut self.sites[i].1),
            Err(_) if self.sites.len() >= SITES_PER_ROW_MAX => None,
            Err(i) => {
                self.sites.insert(i, (site, Bucket::default()));
                Some(&mut self.sites[i].1)
            }
        }
    }
}

/// Site names ever numbered.
pub const SITES_MAX: usize = 1_024;
const SITES_KEY: &[u8] = b"\0sites";

/// One probe result as kept for the per-result download.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawResult {
    pub observed_at_ms: u64,
    pub site: String,
    pub status: Status,
    pub reason: String,
    pub latency_ms: u64,
    pub message: String,
    /// The log index of the batch it came in.
    pub index: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RawRow {
    results: Vec<RawResult>,
    /// Results of this minute past `RAW_PER_MINUTE_MAX`, counted in the rollups only.
    dropped: u64,
}

/// An incident as the history keeps it (the replicated state keeps only the newest 10,000).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentRecord {
    pub id: u64,
    pub check: String,
    pub severity: Status,
    /// The first failing result at the sites that agreed (the outage's start).
    pub start_ms: u64,
    /// The result that confirmed it (quorum agreement).
    pub opened_at_ms: u64,
    /// The result that confirmed recovery; `None` while open.
    pub closed_at_ms: Option<u64>,
    pub time_to_detect_ms: Option<u64>,
    pub sites: Vec<String>,
    /// Opened on a degraded quorum.
    pub unconfirmed: bool,
    /// A silence held it at some point.
    pub silenced: bool,
    pub close_note: Option<String>,
}

impl IncidentRecord {
    pub fn from_incident(inc: &Incident) -> Self {
        let start_ms = inc
            .opened_at_ms
            .saturating_sub(inc.time_to_detect_ms.unwrap_or(0));
        Self {
            id: inc.id,
            check: inc.check.clone(),
            severity: inc.severity,
            start_ms,
            opened_at_ms: inc.opened_at_ms,
            // Closed without closing evidence (its check was removed): the leader's time of
            // the closing entry.
            closed_at_ms: inc.closed_at_ms.or_else(|| {
                inc.closed_index?;
                inc.timeline
                    .iter()
                    .rev()
                    .find(|e| matches!(e.event, consentry_cluster::model::Event::Closed { .. }))
                    .map_or(Some(inc.opened_at_ms), |e| {
                        Some(e.at_ms.max(inc.opened_at_ms))
                    })
            }),
            time_to_detect_ms: inc.time_to_detect_ms,
            sites: inc.opened_by.iter().map(|e| e.site.clone()).collect(),
            unconfirmed: inc.unconfirmed.is_some(),
            silenced: inc.silenced,
            close_note: inc.close_note.clone(),
        }
    }

    /// Whether it counts as downtime: the agreed verdict was CRITICAL or UNKNOWN (a WARNING,
    /// such as a slow answer or a certificate near expiry, is counted but not billed).
    pub fn is_outage(&self) -> bool {
        matches!(self.severity, Status::Critical | Status::Unknown)
    }
}

/// A silence (maintenance window) as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceRecord {
    pub id: u64,
    pub matcher: Matcher,
    pub start_ms: u64,
    /// The window's end, or when it was removed if that was earlier.
    pub end_ms: u64,
    pub reason: String,
    pub removed: bool,
}

impl SilenceRecord {
    fn from_silence(s: &Silence) -> Self {
        Self {
            id: s.id,
            matcher: s.matcher.clone(),
            start_ms: s.start_ms,
            end_ms: s.end_ms,
            reason: s.reason.clone(),
            removed: false,
        }
    }
}

/// Where recording stands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meta {
    /// The last log index recorded.
    pub cursor: u64,
    /// Log entries that were purged before the history read them.
    pub gap_entries: u64,
    /// The newest gaps, as inclusive index ranges.
    pub gaps: Vec<(u64, u64)>,
    /// The newest leader tick's wall time seen in the log.
    pub last_wall_ms: u64,
    /// Results not recorded because they were observed too far ahead of the leader's clock.
    pub future_skipped: u64,
    /// Closed incidents up to this applied index are recorded.
    pub incidents_synced_index: u64,
    /// The oldest leader tick's wall time seen in the log (0: none yet): the history
    /// covers nothing before it.
    pub first_wall_ms: u64,
}

/// What [`History::sync_state`] needs of the applied state, copied out under its lock.
pub struct StateCopy {
    incidents: Vec<IncidentRecord>,
    silences: Vec<SilenceRecord>,
    wall_ms: u64,
    last_index: u64,
}

impl StateCopy {
    /// The incidents open or closed after `synced_index`, and every silence.
    pub fn take(st: &ClusterState, synced_index: u64) -> Self {
        Self {
            incidents: st
                .incidents
                .values()
                .filter(|inc| inc.closed_index.is_none_or(|i| i > synced_index))
                .map(IncidentRecord::from_incident)
                .collect(),
            silences: st
                .silences
                .values()
                .map(SilenceRecord::from_silence)
                .collect(),
            wall_ms: st.wall_ms,
            last_index: st.last_index,
        }
    }
}

/// The history database of one node.
pub struct History {
    db: sled::Db,
    tree: sled::Tree,
    retention: Retention,
    /// Site names by number, as stored under `SITES_KEY`.
    sites: std::sync::Mutex<Vec<String>>,
}

fn key(tier: u8, bucket: u64, check: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + check.len());
    k.push(tier);
    k.extend_from_slice(&bucket.to_be_bytes());
    k.extend_from_slice(check.as_bytes());
    k
}

fn id_key(tier: u8, id: u64) -> Vec<u8> {
    let mut k = vec![tier];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The bucket and check name of a result or rollup key.
fn split_key(k: &[u8]) -> Option<(u64, &str)> {
    let bucket = u64::from_be_bytes(k.get(1..9)?.try_into().ok()?);
    let name = std::str::from_utf8(k.get(9..)?).ok()?;
    Some((bucket, name))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HistoryError> {
    Ok(codec::decode(bytes)?)
}

/// Rows a chunk touches, read once and written once.
#[derive(Default)]
struct Pending {
    rollups: HashMap<Vec<u8>, Row>,
    raw: HashMap<Vec<u8>, RawRow>,
    /// The site table, when this chunk numbered a new site.
    sites: Option<Vec<String>>,
}

impl History {
    /// Opens (or creates) the history database in `dir`.
    ///
    /// # Errors
    /// When sled cannot open the directory (another process holds it, permissions, a
    /// corrupt file).
    pub fn open(dir: &Path, retention: Retention) -> Result<Self, HistoryError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 * 1024 * 1024)
            .flush_every_ms(Some(1_000))
            .open()
            .map_err(|e| HistoryError::Open {
                path: dir.display().to_string(),
                message: e.to_string(),
            })?;
        let tree = db.open_tree("history")?;
        let sites = match tree.get(SITES_KEY)? {
            Some(v) => decode(&v)?,
            None => Vec::new(),
        };
        Ok(Self {
            db,
            tree,
            retention,
            sites: std::sync::Mutex::new(sites),
        })
    }

    /// Site names by number.
    pub fn site_names(&self) -> Vec<String> {
        self.sites.lock().expect("sites lock").clone()
    }

    /// The number of `site`, numbering it (and noting the new table in `batch`) if new;
    /// `None` past `SITES_MAX`.
    fn site_number(&self, site: &str, batch: &mut Option<Vec<String>>) -> Option<u16> {
        let mut sites = self.sites.lock().expect("sites lock");
        if let Some(i) = sites.iter().position(|s| s == site) {
            return u16::try_from(i).ok();
        }
        if sites.len() >= SITES_MAX {
            return None;
        }
        sites.push(site.to_string());
        *batch = Some(sites.clone());
        u16::try_from(sites.len() - 1).ok()
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Where recording stands.
    ///
    /// # Errors
    /// When the meta row cannot be read.
    pub fn meta(&self) -> Result<Meta, HistoryError> {
        match self.tree.get(META_KEY)? {
            Some(v) => decode(&v),
            None => Ok(Meta::default()),
        }
    }

    /// Bytes the database takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Records entries `(log index, command)` that follow the cursor, in index order, and
    /// moves the cursor to `through` (at least the last entry's index; more when the rest
    /// held nothing to record).
    ///
    /// # Errors
    /// When sled fails; nothing of the chunk is then recorded.
    pub fn record<'a>(
        &self,
        entries: impl IntoIterator<Item = (u64, &'a Command)>,
        through: u64,
    ) -> Result<(), HistoryError> {
        let mut meta = self.meta()?;
        let mut pending = Pending::default();
        for (index, cmd) in entries {
            if index <= meta.cursor {
                continue;
            }
            match cmd {
                Command::Tick { wall_ms, .. } => {
                    meta.last_wall_ms = meta.last_wall_ms.max(*wall_ms);
                    if meta.first_wall_ms == 0 || *wall_ms < meta.first_wall_ms {
                        meta.first_wall_ms = *wall_ms;
                    }
                }
                Command::Results(batch) => {
                    for r in &batch.results {
                        if r.observed_at_ms == 0 {
                            continue;
                        }
                        if meta.last_wall_ms > 0
                            && r.observed_at_ms > meta.last_wall_ms + FUTURE_SKEW_MS_MAX
                        {
                            meta.future_skipped += 1;
                            continue;
                        }
                        self.add_result(&mut pending, index, &batch.site, r)?;
                    }
                }
                _ => {}
            }
        }
        meta.cursor = meta.cursor.max(through);
        let mut batch = sled::Batch::default();
        for (k, row) in pending.rollups {
            batch.insert(k, codec::encode(&row)?);
        }
        for (k, row) in pending.raw {
            batch.insert(k, codec::encode(&row)?);
        }
        if let Some(sites) = &pending.sites {
            batch.insert(SITES_KEY, codec::encode(sites)?);
        }
        batch.insert(META_KEY, codec::encode(&meta)?);
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    fn add_result(
        &self,
        pending: &mut Pending,
        index: u64,
        site: &str,
        r: &consentry_cluster::model::ProbeResult,
    ) -> Result<(), HistoryError> {
        let t = r.observed_at_ms;
        let site_no = self.site_number(site, &mut pending.sites);
        for (tier, width) in [
            (TIER_MINUTE, MINUTE_MS),
            (TIER_HOUR, HOUR_MS),
            (TIER_DAY, DAY_MS),
        ] {
            let k = key(tier, t / width, &r.check);
            let row = match pending.rollups.entry(k) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let row = match self.tree.get(v.key())? {
                        Some(bytes) => decode(&bytes)?,
                        None => Row::default(),
                    };
                    v.insert(row)
                }
            };
            if let Some(b) = site_no.and_then(|n| row.bucket(n)) {
                b.add(r.status, r.latency_ms);
            }
        }
        let k = key(TIER_RAW, t / MINUTE_MS, &r.check);
        let raw = match pending.raw.entry(k) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let row = match self.tree.get(v.key())? {
                    Some(bytes) => decode(&bytes)?,
                    None => RawRow::default(),
                };
                v.insert(row)
            }
        };
        if raw.results.len() < RAW_PER_MINUTE_MAX {
            raw.results.push(RawResult {
                observed_at_ms: t,
                site: site.to_string(),
                status: r.status,
                reason: r.reason.as_str().to_string(),
                latency_ms: r.latency_ms,
                message: consentry_cluster::model::truncate(&r.message, RAW_MESSAGE_BYTES_MAX),
                index,
            });
        } else {
            raw.dropped += 1;
        }
        Ok(())
    }

    /// Notes that entries `from..=to` were purged from the log before they were recorded,
    /// and moves the cursor past them.
    ///
    /// # Errors
    /// When sled fails.
    pub fn record_gap(&self, from: u64, to: u64) -> Result<(), HistoryError> {
        let mut meta = self.meta()?;
        if to < from || to <= meta.cursor {
            return Ok(());
        }
        let from = from.max(meta.cursor + 1);
        meta.gap_entries += to - from + 1;
        match meta.gaps.last_mut() {
            // Contiguous with the last gap: one range, so the list keeps distinct gaps.
            Some((_, last_to)) if *last_to + 1 == from => *last_to = to,
            _ => meta.gaps.push((from, to)),
        }
        if meta.gaps.len() > GAPS_MAX {
            meta.gaps.remove(0);
        }
        meta.cursor = to;
        self.tree.insert(META_KEY, codec::encode(&meta)?)?;
        Ok(())
    }

    /// Copies the incidents and silences of the applied state (taken by [`StateCopy::take`]):
    /// open incidents and those closed since the last sync are written; a silence that left
    /// the state is kept, ended at the state's time if it was removed before its end.
    ///
    /// # Errors
    /// When sled fails.
    pub fn sync_state(&self, copy: StateCopy) -> Result<(), HistoryError> {
        let mut meta = self.meta()?;
        let mut batch = sled::Batch::default();
        for rec in &copy.incidents {
            batch.insert(id_key(TIER_INCIDENT, rec.id), codec::encode(rec)?);
        }
        let mut stored = BTreeMap::new();
        for item in self.tree.scan_prefix([TIER_SILENCE]) {
            let (_, v) = item?;
            let rec: SilenceRecord = decode(&v)?;
            stored.insert(rec.id, rec);
        }
        let live: std::collections::BTreeSet<u64> = copy.silences.iter().map(|s| s.id).collect();
        for rec in copy.silences {
            if stored.get(&rec.id) != Some(&rec) {
                batch.insert(id_key(TIER_SILENCE, rec.id), codec::encode(&rec)?);
            }
        }
        for (id, mut rec) in stored {
            if !rec.removed && !live.contains(&id) {
                rec.removed = true;
                if copy.wall_ms > 0 && copy.wall_ms < rec.end_ms {
                    rec.end_ms = copy.wall_ms.max(rec.start_ms);
                }
                batch.insert(id_key(TIER_SILENCE, id), codec::encode(&rec)?);
            }
        }
        meta.incidents_synced_index = meta.incidents_synced_index.max(copy.last_index);
        batch.insert(META_KEY, codec::encode(&meta)?);
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Records an incident directly (tests and tools that script a history).
    ///
    /// # Errors
    /// When sled fails.
    pub fn put_incident(&self, rec: &IncidentRecord) -> Result<(), HistoryError> {
        self.tree
            .insert(id_key(TIER_INCIDENT, rec.id), codec::encode(rec)?)?;
        Ok(())
    }

    /// Records a silence directly (tests and tools that script a history).
    ///
    /// # Errors
    /// When sled fails.
    pub fn put_silence(&self, rec: &SilenceRecord) -> Result<(), HistoryError> {
        self.tree
            .insert(id_key(TIER_SILENCE, rec.id), codec::encode(rec)?)?;
        Ok(())
    }

    /// Adds one rollup bucket directly at hour or day granularity (the report benchmark
    /// fills months of rollups this way).
    ///
    /// # Errors
    /// When sled fails.
    pub fn put_rollup(
        &self,
        hourly: bool,
        bucket_start_ms: u64,
        check: &str,
        sites: &[(String, Bucket)],
    ) -> Result<(), HistoryError> {
        let (tier, width) = if hourly {
            (TIER_HOUR, HOUR_MS)
        } else {
            (TIER_DAY, DAY_MS)
        };
        let mut table = None;
        let mut row = Row::default();
        for (site, bucket) in sites {
            if let Some(b) = self
                .site_number(site, &mut table)
                .and_then(|n| row.bucket(n))
            {
                *b = *bucket;
            }
        }
        if let Some(table) = table {
            self.tree.insert(SITES_KEY, codec::encode(&table)?)?;
        }
        self.tree.insert(
            key(tier, bucket_start_ms / width, check),
            codec::encode(&row)?,
        )?;
        Ok(())
    }

    /// Incidents whose outage overlaps `[from_ms, to_ms)`, oldest first.
    ///
    /// # Errors
    /// When sled fails or a row is corrupt.
    pub fn incidents(&self, from_ms: u64, to_ms: u64) -> Result<Vec<IncidentRecord>, HistoryError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix([TIER_INCIDENT]) {
            let (_, v) = item?;
            let rec: IncidentRecord = decode(&v)?;
            let starts = rec.start_ms.min(rec.opened_at_ms);
            if starts < to_ms && rec.closed_at_ms.is_none_or(|c| c > from_ms) {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// Every silence the history holds.
    ///
    /// # Errors
    /// When sled fails or a row is corrupt.
    pub fn silences(&self) -> Result<Vec<SilenceRecord>, HistoryError> {
        self.tree
            .scan_prefix([TIER_SILENCE])
            .map(|item| decode(&item?.1))
            .collect()
    }

    /// Raw results of `check` observed in `[from_ms, to_ms)`, oldest first, at most
    /// `limit`; the second value says whether more were left out (by the limit, or by
    /// `RAW_PER_MINUTE_MAX`). Only the last `raw_days + 1` days before `to_ms` are read
    /// (one key per minute): older raw rows do not outlive retention.
    ///
    /// # Errors
    /// When sled fails or a row is corrupt.
    pub fn raw(
        &self,
        check: &str,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> Result<(Vec<RawResult>, bool), HistoryError> {
        let mut out = Vec::new();
        let mut more = false;
        if to_ms <= from_ms {
            return Ok((out, more));
        }
        let last = (to_ms - 1) / MINUTE_MS;
        let span = (self.retention.raw_days + 1).saturating_mul(DAY_MS / MINUTE_MS);
        let first = (from_ms / MINUTE_MS).max(last.saturating_sub(span));
        for minute in first..=last {
            let Some(v) = self.tree.get(key(TIER_RAW, minute, check))? else {
                continue;
            };
            let mut row: RawRow = decode(&v)?;
            more |= row.dropped > 0;
            row.results.sort_by_key(|r| (r.observed_at_ms, r.index));
            for r in row.results {
                if r.observed_at_ms < from_ms || r.observed_at_ms >= to_ms {
                    continue;
                }
                if out.len() >= limit {
                    return Ok((out, true));
                }
                out.push(r);
            }
        }
        Ok((out, more))
    }

    /// `check`'s buckets per site in `[from_ms, to_ms)` at `step_ms` (a minute or an hour),
    /// as (bucket start, bucket) in time order.
    ///
    /// # Errors
    /// When sled fails or a row is corrupt.
    pub fn series(
        &self,
        check: &str,
        from_ms: u64,
        to_ms: u64,
        step_ms: u64,
    ) -> Result<BTreeMap<String, Vec<(u64, Bucket)>>, HistoryError> {
        let tier = if step_ms >= HOUR_MS {
            TIER_HOUR
        } else {
            TIER_MINUTE
        };
        let width = if tier == TIER_HOUR {
            HOUR_MS
        } else {
            MINUTE_MS
        };
        let mut out: BTreeMap<String, Vec<(u64, Bucket)>> = BTreeMap::new();
        if to_ms <= from_ms {
            return Ok(out);
        }
        let names = self.site_names();
        for b in from_ms / width..=(to_ms - 1) / width {
            let Some(v) = self.tree.get(key(tier, b, check))? else {
                continue;
            };
            let row: Row = decode(&v)?;
            for (site, bucket) in row.sites {
                let name = names
                    .get(usize::from(site))
                    .cloned()
                    .unwrap_or_else(|| format!("site #{site}"));
                out.entry(name).or_default().push((b * width, bucket));
            }
        }
        Ok(out)
    }

    /// Per check and site, the sum of the rollups covering `[from_ms, to_ms)` for the
    /// checks in `only` (every check when `None`): whole days from day rows, the hours
    /// around them from hour rows, the minutes at the edges from minute rows (an edge older
    /// than `minute_days` has no minute rows and is left out). The minutes holding
    /// `from_ms` and `to_ms` count whole.
    ///
    /// A few checks are read by key; many by scanning each bucket's rows, on up to four
    /// threads.
    ///
    /// # Errors
    /// When sled fails or a row is corrupt.
    pub fn totals(
        &self,
        from_ms: u64,
        to_ms: u64,
        only: Option<&std::collections::HashSet<&str>>,
    ) -> Result<HashMap<String, BTreeMap<String, Bucket>>, HistoryError> {
        let units: Vec<(u8, u64)> = segments(from_ms, to_ms)
            .into_iter()
            .flat_map(|(tier, a, b)| (a..b).map(move |bucket| (tier, bucket)))
            .collect();
        let mut acc: HashMap<String, Vec<Bucket>> = HashMap::new();
        match only {
            Some(names) if names.len() <= POINT_READ_CHECKS_MAX => {
                for name in names {
                    for (tier, bucket) in &units {
                        if let Some(v) = self.tree.get(key(*tier, *bucket, name))? {
                            add_row(&mut acc, name, &decode(&v)?);
                        }
                    }
                }
            }
            _ => {
                let threads = std::thread::available_parallelism()
                    .map_or(1, std::num::NonZero::get)
                    .clamp(1, 4);
                let parts: Vec<Result<HashMap<String, Vec<Bucket>>, HistoryError>> =
                    std::thread::scope(|scope| {
                        let handles: Vec<_> = (0..threads)
                            .map(|t| {
                                let units = &units;
                                scope.spawn(move || {
                                    let mut acc = HashMap::new();
                                    for (tier, bucket) in units.iter().skip(t).step_by(threads) {
                                        let range =
                                            key(*tier, *bucket, "")..key(*tier, bucket + 1, "");
                                        for item in self.tree.range(range) {
                                            let (k, v) = item?;
                                            let Some((_, name)) = split_key(&k) else {
                                                continue;
                                            };
                                            if only.is_some_and(|o| !o.contains(name)) {
                                                continue;
                                            }
                                            add_row(&mut acc, name, &decode(&v)?);
                                        }
                                    }
                                    Ok(acc)
                                })
                            })
                            .collect();
                        handles
                            .into_iter()
                            .map(|h| h.join().expect("history scan thread panicked"))
                            .collect()
                    });
                for part in parts {
                    for (name, buckets) in part? {
                        let into = acc.entry(name).or_default();
                        merge_into(into, &buckets);
                    }
                }
            }
        }
        let names = self.site_names();
        Ok(acc
            .into_iter()
            .map(|(check, buckets)| {
                let per_site = buckets
                    .into_iter()
                    .enumerate()
                    .filter(|(_, b)| b.n > 0)
                    .filter_map(|(i, b)| names.get(i).map(|n| (n.clone(), b)))
                    .collect();
                (check, per_site)
            })
            .collect())
    }

    /// Deletes what retention no longer keeps at `now_ms`; returns the rows deleted.
    ///
    /// # Errors
    /// When sled fails.
    pub fn prune(&self, now_ms: u64) -> Result<u64, HistoryError> {
        let r = self.retention;
        let horizon = |days: u64| now_ms.saturating_sub(days.saturating_mul(DAY_MS));
        let mut deleted = 0;
        for (tier, width, days) in [
            (TIER_RAW, MINUTE_MS, r.raw_days),
            (TIER_MINUTE, MINUTE_MS, r.minute_days),
            (TIER_HOUR, HOUR_MS, r.hour_days),
            (TIER_DAY, DAY_MS, r.hour_days),
        ] {
            let end = key(tier, horizon(days) / width, "");
            deleted += self.delete_range(key(tier, 0, "")..end)?;
        }
        let oldest = horizon(r.hour_days);
        let mut batch = sled::Batch::default();
        for item in self.tree.scan_prefix([TIER_INCIDENT]) {
            let (k, v) = item?;
            let rec: IncidentRecord = decode(&v)?;
            if rec.closed_at_ms.is_some_and(|c| c < oldest) {
                batch.remove(k);
                deleted += 1;
            }
        }
        for item in self.tree.scan_prefix([TIER_SILENCE]) {
            let (k, v) = item?;
            let rec: SilenceRecord = decode(&v)?;
            if rec.end_ms < oldest {
                batch.remove(k);
                deleted += 1;
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(deleted)
    }

    fn delete_range(&self, range: std::ops::Range<Vec<u8>>) -> Result<u64, HistoryError> {
        let mut deleted = 0;
        loop {
            let keys: Vec<sled::IVec> = self
                .tree
                .range(range.clone())
                .keys()
                .take(10_000)
                .collect::<Result<_, _>>()?;
            if keys.is_empty() {
                return Ok(deleted);
            }
            let mut batch = sled::Batch::default();
            for k in &keys {
                batch.remove(k.clone());
            }
            deleted += keys.len() as u64;
            self.tree.apply_batch(batch)?;
        }
    }

    /// Waits until everything written is on disk.
    ///
    /// # Errors
    /// When sled fails.
    pub fn flush(&self) -> Result<(), HistoryError> {
        self.db.flush()?;
        Ok(())
    }
}

/// Checks up to which [`History::totals`] reads by key rather than scanning.
pub const POINT_READ_CHECKS_MAX: usize = 200;

fn add_row(acc: &mut HashMap<String, Vec<Bucket>>, name: &str, row: &Row) {
    let into = match acc.get_mut(name) {
        Some(v) => v,
        None => acc.entry(name.to_string()).or_default(),
    };
    for (site, bucket) in &row.sites {
        let i = usize::from(*site);
        if into.len() <= i {
            into.resize(i + 1, Bucket::default());
        }
        into[i].merge(bucket);
    }
}

fn merge_into(into: &mut Vec<Bucket>, from: &[Bucket]) {
    if into.len() < from.len() {
        into.resize(from.len(), Bucket::default());
    }
    for (a, b) in into.iter_mut().zip(from) {
        a.merge(b);
    }
}

/// `[from_ms, to_ms)` widened to whole minutes (so a report up to now counts the current
/// minute) and split into minutes, hours and days: `(tier, first, end)` bucket ranges, the
/// widest buckets in the middle.
fn segments(from_ms: u64, to_ms: u64) -> Vec<(u8, u64, u64)> {
    let mut out = Vec::new();
    let m0 = from_ms / MINUTE_MS;
    let m1 = to_ms.div_ceil(MINUTE_MS);
    if m0 >= m1 {
        return out;
    }
    let h0 = m0.div_ceil(60);
    let h1 = m1 / 60;
    if h0 >= h1 {
        out.push((TIER_MINUTE, m0, m1));
        return out;
    }
    out.push((TIER_MINUTE, m0, h0 * 60));
    out.push((TIER_MINUTE, h1 * 60, m1));
    let d0 = h0.div_ceil(24);
    let d1 = h1 / 24;
    if d0 >= d1 {
        out.push((TIER_HOUR, h0, h1));
        return out;
    }
    out.push((TIER_HOUR, h0, d0 * 24));
    out.push((TIER_HOUR, d1 * 24, h1));
    out.push((TIER_DAY, d0, d1));
    out.retain(|(_, a, b)| a < b);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cover_the_period_once_with_the_widest_buckets() {
        let day = DAY_MS;
        // 2 days 3 hours 4 minutes from 00:00 of day 10 plus 5 minutes.
        let from = 10 * day + 5 * MINUTE_MS;
        let to = 12 * day + 3 * HOUR_MS + 4 * MINUTE_MS;
        let segs = segments(from, to);
        let covered: u64 = segs
            .iter()
            .map(|(tier, a, b)| {
                (b - a)
                    * match *tier {
                        TIER_MINUTE => MINUTE_MS,
                        TIER_HOUR => HOUR_MS,
                        _ => DAY_MS,
                    }
            })
            .sum();
        assert_eq!(covered, to - from);
        assert!(segs.contains(&(TIER_DAY, 11, 12)));
        assert!(segs.contains(&(TIER_MINUTE, 10 * 1440 + 5, 10 * 1440 + 60)));
        assert_eq!(segments(5, 6), vec![(TIER_MINUTE, 0, 1)]);
    }
}

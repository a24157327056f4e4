//! The redb backend: one file per process, one writer thread doing group commits.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shiki_proto::{DeviceId, Event, Sample};

use shiki_cloud_model::schedule::DeviceSchedules;

use super::chunks;
use super::{
    Commit, DeviceSnapshot, HistoryEntry, HistoryItem, SeqGap, Store, StoreError, StoreStats,
    TimeQuery, TokenRecord, VerificationRecord, Write,
};

const TELEMETRY: TableDefinition<'static, (&str, u64), &[u8]> = TableDefinition::new("telemetry");
/// Telemetry of recent group commits, before it moves into [`TELEMETRY`] (see
/// [`chunks::Stager`]).
const STAGING: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("telemetry_staging");
/// Staged rows that did not decode, moved aside (raw bytes) so they no longer block every
/// telemetry commit; key: order of quarantine.
const QUARANTINE: TableDefinition<'static, u64, &[u8]> =
    TableDefinition::new("telemetry_quarantine");
const EVENTS: TableDefinition<'static, (&str, u64), &[u8]> = TableDefinition::new("events");
const HISTORY: TableDefinition<'static, (&str, u64), &[u8]> = TableDefinition::new("history");
const VERIFICATIONS: TableDefinition<'static, (&str, u64), &[u8]> =
    TableDefinition::new("verifications");
const DEVICES: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("devices");
const TOKENS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("tokens");
/// Device id → its `DeviceSchedules` (JSON).
const SCHEDULES: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("schedules");
/// Process-wide values by name (JSON), e.g. [`FLEET_LAST_RUN`].
const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");
const FLEET_LAST_RUN: &str = "fleet.last_run";

struct Job {
    writes: Vec<Write>,
    ack: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    samples_stored: AtomicU64,
    duplicates_dropped: AtomicU64,
    events_stored: AtomicU64,
    last_commit_micros: AtomicU64,
    total_commit_micros: AtomicU64,
    last_batch_writes: AtomicU64,
    failed_commits: AtomicU64,
    quarantined_rows: AtomicU64,
    max_commit_micros: AtomicU64,
}

/// The redb-backed [`Store`]. Dropping it commits what is queued and stops the writer.
#[derive(Debug)]
pub struct RedbStore {
    /// `None` once closed, so the file can be opened again in this process.
    db: RwLock<Option<Arc<Database>>>,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    next_id: AtomicU64,
    counters: Arc<Counters>,
}

impl RedbStore {
    /// Opens (or creates) the store file. Only one open per file and process is possible.
    pub fn open(path: &Path, max_batch: usize) -> Result<Self, StoreError> {
        Self::open_with_cache(path, max_batch, 64 * 1024 * 1024)
    }

    /// As [`RedbStore::open`] with a page cache of `cache_bytes`.
    pub fn open_with_cache(
        path: &Path,
        max_batch: usize,
        cache_bytes: usize,
    ) -> Result<Self, StoreError> {
        Self::open_with(
            path,
            &StoreOptions {
                max_batch,
                cache_bytes,
                ..StoreOptions::default()
            },
        )
    }

    /// Opens (or creates) the store file with every option.
    pub fn open_with(path: &Path, options: &StoreOptions) -> Result<Self, StoreError> {
        let StoreOptions {
            max_batch,
            cache_bytes,
            linger,
            max_staged,
        } = *options;
        let open_err = |e: &dyn std::fmt::Display| StoreError::Open {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(&e))?;
        }
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| open_err(&e))?;
        // Create every table so reads never see a missing table.
        let wtx = db.begin_write().map_err(|e| open_err(&e))?;
        {
            for def in [TELEMETRY, EVENTS, HISTORY, VERIFICATIONS] {
                wtx.open_table(def).map_err(|e| open_err(&e))?;
            }
            for def in [DEVICES, TOKENS, SCHEDULES, META] {
                wtx.open_table(def).map_err(|e| open_err(&e))?;
            }
            for def in [STAGING, QUARANTINE] {
                wtx.open_table(def).map_err(|e| open_err(&e))?;
            }
        }
        wtx.commit().map_err(|e| open_err(&e))?;
        let db = Arc::new(db);
        let next_id = max_id(&db)? + 1;
        let counters = Arc::new(Counters::default());
        quarantine_damaged_staging(&db, &counters)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let mut stager = chunks::Stager::new();
        stager.max_staged = max_staged;
        let writer = {
            let db = db.clone();
            let counters = counters.clone();
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || {
                    writer_loop(&db, &rx, max_batch.max(1), linger, &counters, stager);
                    drop(db);
                })
                .map_err(|e| open_err(&e))?
        };
        Ok(Self {
            db: RwLock::new(Some(db)),
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            next_id: AtomicU64::new(next_id),
            counters,
        })
    }

    /// Commits everything queued and stops the writer thread. Later writes fail with
    /// [`StoreError::Closed`].
    pub fn close(&self) {
        let tx = self.tx.lock().map(|mut g| g.take()).unwrap_or(None);
        drop(tx);
        let handle = self.writer.lock().map(|mut g| g.take()).unwrap_or(None);
        if let Some(h) = handle
            && h.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
        if let Ok(mut db) = self.db.write() {
            db.take();
        }
    }

    /// Writes a staged row as it is, past the writer (tests damage the store with it).
    #[cfg(test)]
    pub(super) fn put_staged_row(&self, key: u64, row: &[u8]) {
        let db = self.db.read().expect("lock").clone().expect("open");
        let wtx = db.begin_write().expect("write transaction");
        wtx.open_table(STAGING)
            .expect("staging")
            .insert(key, row)
            .expect("insert");
        wtx.commit().expect("commit");
    }

    /// Every row of `telemetry_quarantine`.
    #[cfg(test)]
    pub(super) fn quarantined(&self) -> Vec<(u64, Vec<u8>)> {
        self.read("quarantine", |rtx| {
            let t = rtx
                .open_table(QUARANTINE)
                .map_err(|e| StoreError::backend("quarantine", e))?;
            let rows = t
                .iter()
                .map_err(|e| StoreError::backend("quarantine", e))?
                .map(|r| {
                    let (k, v) = r.expect("row");
                    (k.value(), v.value().to_vec())
                })
                .collect();
            Ok(rows)
        })
        .expect("reads")
    }

    fn read<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self
            .db
            .read()
            .ok()
            .and_then(|g| g.clone())
            .ok_or(StoreError::Closed)?;
        let rtx = db.begin_read().map_err(|e| StoreError::backend(op, e))?;
        f(&rtx)
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn max_id(db: &Database) -> Result<u64, StoreError> {
    let rtx = db
        .begin_read()
        .map_err(|e| StoreError::backend("open", e))?;
    let mut max = 0;
    for def in [HISTORY, VERIFICATIONS] {
        let t = rtx
            .open_table(def)
            .map_err(|e| StoreError::backend("open", e))?;
        for row in t.iter().map_err(|e| StoreError::backend("open", e))? {
            let (k, _) = row.map_err(|e| StoreError::backend("open", e))?;
            max = max.max(k.value().1);
        }
    }
    Ok(max)
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("store records always serialise")
}

fn from_json<T: DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

/// How the store's writer commits.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Most queued writes committed in one transaction.
    pub max_batch: usize,
    /// Page cache of the redb file.
    pub cache_bytes: usize,
    /// Under load (the last commit carried at least 64 writes), how long the
    /// writer lets writes gather before its next commit: fewer, larger commits, each with
    /// one fsync. Zero when writers wait for their commit to let the next writes in (the
    /// ingest acknowledging after the commit), where lingering only adds latency.
    pub linger: Duration,
    /// Staged telemetry samples past which a commit moves them into per-device chunks.
    pub max_staged: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_batch: 4096,
            cache_bytes: 64 * 1024 * 1024,
            linger: Duration::ZERO,
            max_staged: chunks::STAGE_MAX,
        }
    }
}

/// Writes in the last commit from which the writer lingers before the next one.
const LINGER_AFTER: usize = 64;

fn writer_loop(
    db: &Database,
    rx: &mpsc::Receiver<Job>,
    max_batch: usize,
    linger: Duration,
    c: &Counters,
    mut stager: chunks::Stager,
) {
    let mut busy = false;
    // A commit that fails keeps failing (a full disk): logged every 10 s, all counted.
    let mut failure_log = shiki_shared::throttle::Throttle::new(Duration::from_secs(10));
    while let Ok(first) = rx.recv() {
        if busy && !linger.is_zero() {
            // Sleep rather than wait on the channel: a receiver waiting on it is woken by
            // every send, which cost both threads a futex call per message.
            std::thread::sleep(linger);
        }
        let mut jobs = vec![first];
        let mut n = jobs[0].writes.len();
        while n < max_batch {
            match rx.try_recv() {
                Ok(job) => {
                    n += job.writes.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        busy = n >= LINGER_AFTER;
        let started = Instant::now();
        let mut result = commit_batch(db, &jobs, c, &mut stager);
        if let Err(StoreError::Corrupt {
            table: "telemetry_staging",
            ..
        }) = &result
        {
            // A damaged staged row fails every commit that carries telemetry: move it
            // aside and try the batch once more.
            stager.reset();
            match quarantine_damaged_staging(db, c) {
                Ok(0) => {}
                Ok(_) => result = commit_batch(db, &jobs, c, &mut stager),
                Err(e) => tracing::error!(error = %e, "cannot move damaged staged telemetry aside"),
            }
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        c.commits.fetch_add(1, Ordering::Relaxed);
        c.last_commit_micros.store(micros, Ordering::Relaxed);
        c.total_commit_micros.fetch_add(micros, Ordering::Relaxed);
        c.max_commit_micros.fetch_max(micros, Ordering::Relaxed);
        c.last_batch_writes.store(n as u64, Ordering::Relaxed);
        if let Err(e) = &result {
            // The transaction rolled back, so the stager's cache may be ahead of the
            // tables. Only its efficiency depends on that (a sample at or below a cached
            // newest seq takes the exact path), but start again from the tables.
            stager.reset();
            c.failed_commits.fetch_add(1, Ordering::Relaxed);
            if let Some(held_back) = failure_log.pass(Instant::now()) {
                tracing::error!(error = %e, writes = n, failed_commits_not_logged = held_back, "store commit failed");
            }
        }
        for job in jobs {
            // The writer may have stopped waiting; that is fine.
            let _ = job.ack.send(result.clone());
        }
    }
}

/// Moves staged telemetry rows that do not decode into `telemetry_quarantine` (their bytes
/// as they were, for whoever repairs them) and counts them; returns how many.
fn quarantine_damaged_staging(db: &Database, c: &Counters) -> Result<u64, StoreError> {
    let be = |e: &dyn std::fmt::Display| StoreError::backend("quarantine", e);
    let wtx = db.begin_write().map_err(|e| be(&e))?;
    let damaged = {
        let staging = wtx.open_table(STAGING).map_err(|e| be(&e))?;
        chunks::damaged_staged(&staging)?
    };
    if damaged.is_empty() {
        wtx.abort().map_err(|e| be(&e))?;
        return Ok(0);
    }
    {
        let mut staging = wtx.open_table(STAGING).map_err(|e| be(&e))?;
        let mut quarantine = wtx.open_table(QUARANTINE).map_err(|e| be(&e))?;
        let first = match quarantine.last().map_err(|e| be(&e))? {
            Some((k, _)) => k.value() + 1,
            None => 0,
        };
        for (at, (key, row, why)) in (first..).zip(&damaged) {
            staging.remove(*key).map_err(|e| be(&e))?;
            quarantine.insert(at, row.as_slice()).map_err(|e| be(&e))?;
            tracing::error!(
                staging_key = key,
                quarantine_key = at,
                bytes = row.len(),
                error = %why,
                "damaged staged telemetry moved to telemetry_quarantine; its samples are not readable"
            );
        }
    }
    wtx.commit().map_err(|e| be(&e))?;
    let n = damaged.len() as u64;
    c.quarantined_rows.fetch_add(n, Ordering::Relaxed);
    Ok(n)
}

fn commit_batch(
    db: &Database,
    jobs: &[Job],
    c: &Counters,
    stager: &mut chunks::Stager,
) -> Result<(), StoreError> {
    let be = |e: &dyn std::fmt::Display| StoreError::backend("commit", e);
    let wtx = db.begin_write().map_err(|e| be(&e))?;
    let (mut stored, mut dups, mut events) = (0u64, 0u64, 0u64);
    {
        let mut tel = wtx.open_table(TELEMETRY).map_err(|e| be(&e))?;
        let mut ev = wtx.open_table(EVENTS).map_err(|e| be(&e))?;
        let mut hist = wtx.open_table(HISTORY).map_err(|e| be(&e))?;
        let mut ver = wtx.open_table(VERIFICATIONS).map_err(|e| be(&e))?;
        let mut dev = wtx.open_table(DEVICES).map_err(|e| be(&e))?;
        let mut tok = wtx.open_table(TOKENS).map_err(|e| be(&e))?;
        let mut sched = wtx.open_table(SCHEDULES).map_err(|e| be(&e))?;
        let mut meta = wtx.open_table(META).map_err(|e| be(&e))?;
        // Telemetry by device: each device's samples of the group go into one chunk.
        let mut by_device: BTreeMap<&str, Vec<(u64, &[u8])>> = BTreeMap::new();
        for w in jobs.iter().flat_map(|j| j.writes.iter()) {
            if let Write::Telemetry { device, samples } = w {
                by_device
                    .entry(device.as_str())
                    .or_default()
                    .extend(samples.iter().map(|s| (s.seq, &s.json[..])));
            }
        }
        if !by_device.is_empty() {
            let mut staging = wtx.open_table(STAGING).map_err(|e| be(&e))?;
            let done = stager.store(&mut tel, &mut staging, by_device.into_iter().collect())?;
            stored += done.stored;
            dups += done.duplicates;
        }
        for w in jobs.iter().flat_map(|j| j.writes.iter()) {
            match w {
                Write::Telemetry { .. } => {}
                Write::Events {
                    device,
                    events: list,
                } => {
                    for e in list {
                        let key = (device.as_str(), e.seq);
                        if ev.get(key).map_err(|e| be(&e))?.is_some() {
                            dups += 1;
                        } else {
                            ev.insert(key, to_json(e).as_slice()).map_err(|e| be(&e))?;
                            events += 1;
                        }
                    }
                }
                Write::History(h) => {
                    hist.insert((h.device.as_str(), h.id), to_json(h).as_slice())
                        .map_err(|e| be(&e))?;
                }
                Write::Verification(v) => {
                    ver.insert((v.device.as_str(), v.id), to_json(v).as_slice())
                        .map_err(|e| be(&e))?;
                }
                Write::Device { device, snapshot } => {
                    dev.insert(device.as_str(), to_json(snapshot.as_ref()).as_slice())
                        .map_err(|e| be(&e))?;
                }
                Write::PutToken(t) => {
                    tok.insert(t.hash.as_str(), to_json(t).as_slice())
                        .map_err(|e| be(&e))?;
                }
                Write::RevokeToken { hash } => {
                    tok.remove(hash.as_str()).map_err(|e| be(&e))?;
                }
                Write::Schedules { device, schedules } => {
                    sched
                        .insert(device.as_str(), to_json(schedules.as_ref()).as_slice())
                        .map_err(|e| be(&e))?;
                }
                Write::FleetLastRun(at) => {
                    meta.insert(FLEET_LAST_RUN, to_json(at).as_slice())
                        .map_err(|e| be(&e))?;
                }
            }
        }
    }
    wtx.commit().map_err(|e| be(&e))?;
    c.samples_stored.fetch_add(stored, Ordering::Relaxed);
    c.duplicates_dropped.fetch_add(dups, Ordering::Relaxed);
    c.events_stored.fetch_add(events, Ordering::Relaxed);
    Ok(())
}

type Row<'a> = Result<
    (
        redb::AccessGuard<'a, (&'static str, u64)>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

type SeqTable = redb::ReadOnlyTable<(&'static str, u64), &'static [u8]>;

fn open_seq(
    rtx: &redb::ReadTransaction,
    def: TableDefinition<'static, (&'static str, u64), &'static [u8]>,
    op: &'static str,
) -> Result<SeqTable, StoreError> {
    rtx.open_table(def).map_err(|e| StoreError::backend(op, e))
}

fn open_staging(
    rtx: &redb::ReadTransaction,
    op: &'static str,
) -> Result<redb::ReadOnlyTable<u64, &'static [u8]>, StoreError> {
    rtx.open_table(STAGING)
        .map_err(|e| StoreError::backend(op, e))
}

/// Rows of one device in a (device, u64)-keyed table, oldest first, decoded and filtered.
fn scan_device<T: DeserializeOwned>(
    t: &SeqTable,
    device: &DeviceId,
    table: &'static str,
    mut keep: impl FnMut(&T) -> bool,
    limit: usize,
    newest_first: bool,
) -> Result<Vec<T>, StoreError> {
    let op = "read";
    if limit == 0 {
        return Ok(Vec::new());
    }
    let range = t
        .range((device.as_str(), 0u64)..=(device.as_str(), u64::MAX))
        .map_err(|e| StoreError::backend(op, e))?;
    let mut out = Vec::new();
    let rows: Box<dyn Iterator<Item = Row<'_>>> = if newest_first {
        Box::new(range.rev())
    } else {
        Box::new(range)
    };
    for row in rows {
        let (_, v) = row.map_err(|e| StoreError::backend(op, e))?;
        let item: T = from_json(table, v.value())?;
        if keep(&item) {
            out.push(item);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

impl Store for RedbStore {
    fn submit(&self, writes: Vec<Write>) -> Commit {
        let (ack, rx) = tokio::sync::oneshot::channel();
        let sent = match self.tx.lock() {
            Ok(g) => g
                .as_ref()
                .map(|tx| tx.send(Job { writes, ack }).is_ok())
                .unwrap_or(false),
            Err(_) => false,
        };
        if sent {
            Commit::waiting(rx)
        } else {
            Commit::ready(Err(StoreError::Closed))
        }
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn telemetry(&self, device: &DeviceId, q: &TimeQuery) -> Result<Vec<Sample>, StoreError> {
        let limit = q.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.read("telemetry query", |rtx| {
            let t = open_seq(rtx, TELEMETRY, "telemetry query")?;
            let staging = open_staging(rtx, "telemetry query")?;
            chunks::for_each_sample(&t, &staging, device.as_str(), |_, body| {
                let s: Sample = from_json("telemetry", body)?;
                if q.contains(s.ts) {
                    out.push(s);
                }
                Ok(out.len() < limit)
            })
        })?;
        Ok(out)
    }

    fn last_sample(&self, device: &DeviceId) -> Result<Option<Sample>, StoreError> {
        self.read("last sample", |rtx| {
            let t = open_seq(rtx, TELEMETRY, "last sample")?;
            let staging = open_staging(rtx, "last sample")?;
            chunks::newest_sample(&t, &staging, device.as_str())?
                .map(|json| from_json("telemetry", &json))
                .transpose()
        })
    }

    fn telemetry_gaps(&self, device: &DeviceId, max: usize) -> Result<Vec<SeqGap>, StoreError> {
        let mut gaps = Vec::new();
        if max == 0 {
            return Ok(gaps);
        }
        let mut expected = 1u64;
        self.read("telemetry gaps", |rtx| {
            let t = open_seq(rtx, TELEMETRY, "telemetry gaps")?;
            let staging = open_staging(rtx, "telemetry gaps")?;
            chunks::for_each_sample(&t, &staging, device.as_str(), |seq, _| {
                if seq > expected {
                    gaps.push(SeqGap {
                        from: expected,
                        to: seq - 1,
                    });
                }
                expected = seq.saturating_add(1);
                Ok(gaps.len() < max)
            })
        })?;
        Ok(gaps)
    }

    fn events(&self, device: &DeviceId, q: &TimeQuery) -> Result<Vec<Event>, StoreError> {
        self.read("events query", |rtx| {
            let t = open_seq(rtx, EVENTS, "events query")?;
            scan_device(
                &t,
                device,
                "events",
                |e: &Event| q.contains(e.ts),
                q.limit.unwrap_or(usize::MAX),
                false,
            )
        })
    }

    fn history(&self, device: &DeviceId, q: &TimeQuery) -> Result<Vec<HistoryItem>, StoreError> {
        self.read("history query", |rtx| {
            let t = open_seq(rtx, HISTORY, "history query")?;
            let entries = scan_device(
                &t,
                device,
                "history",
                |h: &HistoryEntry| q.contains(h.ts),
                q.limit.unwrap_or(usize::MAX),
                true,
            )?;
            let v = open_seq(rtx, VERIFICATIONS, "history query")?;
            entries
                .into_iter()
                .map(|entry| {
                    let verification = match entry.verification_id {
                        Some(id) => v
                            .get((device.as_str(), id))
                            .map_err(|e| StoreError::backend("history query", e))?
                            .map(|g| from_json::<VerificationRecord>("verifications", g.value()))
                            .transpose()?,
                        None => None,
                    };
                    Ok(HistoryItem {
                        entry,
                        verification,
                    })
                })
                .collect()
        })
    }

    fn verifications(&self, device: &DeviceId) -> Result<Vec<VerificationRecord>, StoreError> {
        self.read("verifications query", |rtx| {
            let t = open_seq(rtx, VERIFICATIONS, "verifications query")?;
            scan_device(&t, device, "verifications", |_| true, usize::MAX, false)
        })
    }

    fn device(&self, device: &DeviceId) -> Result<Option<DeviceSnapshot>, StoreError> {
        self.read("device query", |rtx| {
            let t = rtx
                .open_table(DEVICES)
                .map_err(|e| StoreError::backend("device query", e))?;
            t.get(device.as_str())
                .map_err(|e| StoreError::backend("device query", e))?
                .map(|g| from_json("devices", g.value()))
                .transpose()
        })
    }

    fn devices(&self) -> Result<Vec<DeviceId>, StoreError> {
        self.read("device list", |rtx| {
            let t = rtx
                .open_table(DEVICES)
                .map_err(|e| StoreError::backend("device list", e))?;
            let mut out = Vec::new();
            for row in t
                .iter()
                .map_err(|e| StoreError::backend("device list", e))?
            {
                let (k, _) = row.map_err(|e| StoreError::backend("device list", e))?;
                match DeviceId::new(k.value()) {
                    Ok(id) => out.push(id),
                    Err(e) => tracing::warn!(error = %e, "skipping invalid stored device id"),
                }
            }
            Ok(out)
        })
    }

    fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.read("token lookup", |rtx| {
            let t = rtx
                .open_table(TOKENS)
                .map_err(|e| StoreError::backend("token lookup", e))?;
            t.get(hash)
                .map_err(|e| StoreError::backend("token lookup", e))?
                .map(|g| from_json("tokens", g.value()))
                .transpose()
        })
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.read("token list", |rtx| {
            let t = rtx
                .open_table(TOKENS)
                .map_err(|e| StoreError::backend("token list", e))?;
            let mut out = Vec::new();
            for row in t.iter().map_err(|e| StoreError::backend("token list", e))? {
                let (_, v) = row.map_err(|e| StoreError::backend("token list", e))?;
                out.push(from_json("tokens", v.value())?);
            }
            Ok(out)
        })
    }

    fn schedules(&self, device: &DeviceId) -> Result<Option<DeviceSchedules>, StoreError> {
        self.read("schedule query", |rtx| {
            let t = rtx
                .open_table(SCHEDULES)
                .map_err(|e| StoreError::backend("schedule query", e))?;
            t.get(device.as_str())
                .map_err(|e| StoreError::backend("schedule query", e))?
                .map(|g| from_json("schedules", g.value()))
                .transpose()
        })
    }

    fn fleet_last_run(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read("fleet last run query", |rtx| {
            let t = rtx
                .open_table(META)
                .map_err(|e| StoreError::backend("fleet last run query", e))?;
            t.get(FLEET_LAST_RUN)
                .map_err(|e| StoreError::backend("fleet last run query", e))?
                .map(|g| from_json("meta", g.value()))
                .transpose()
        })
    }

    fn stats(&self) -> StoreStats {
        let c = &self.counters;
        StoreStats {
            commits: c.commits.load(Ordering::Relaxed),
            samples_stored: c.samples_stored.load(Ordering::Relaxed),
            duplicates_dropped: c.duplicates_dropped.load(Ordering::Relaxed),
            events_stored: c.events_stored.load(Ordering::Relaxed),
            last_commit_micros: c.last_commit_micros.load(Ordering::Relaxed),
            total_commit_micros: c.total_commit_micros.load(Ordering::Relaxed),
            last_batch_writes: c.last_batch_writes.load(Ordering::Relaxed),
            failed_commits: c.failed_commits.load(Ordering::Relaxed),
            quarantined_rows: c.quarantined_rows.load(Ordering::Relaxed),
            max_commit_micros: c.max_commit_micros.load(Ordering::Relaxed),
        }
    }
}

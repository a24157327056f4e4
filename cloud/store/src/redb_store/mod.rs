//! The redb backend: one file per process, one writer thread doing group commits.
//!
//! # Layout
//! - [`tables`]: the table definitions, record encoding and the reads queries share;
//! - [`writer`]: the writer thread and its group commit;
//! - [`read`]: the [`Store`](crate::Store) trait on [`RedbStore`];
//! - [`chunks`]: telemetry rows holding several samples of one device;
//! - [`staging`]: telemetry of recent commits, before it moves into chunks.

pub(crate) mod chunks;
mod read;
mod staging;
mod tables;
mod writer;

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, ReadableDatabase};

use crate::Job;
use crate::StoreError;
use crate::counters::Counters;

/// The redb-backed [`Store`](crate::Store). Dropping it commits what is queued and stops
/// the writer.
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
        tables::create_all(&db).map_err(|e| open_err(&e))?;
        let db = Arc::new(db);
        let next_id = tables::max_id(&db)? + 1;
        let counters = Arc::new(Counters::default());
        writer::quarantine_damaged_staging(&db, &counters)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let mut stager = staging::Stager::new();
        stager.max_staged = max_staged;
        let writer = {
            let db = db.clone();
            let counters = counters.clone();
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || {
                    writer::writer_loop(&db, &rx, max_batch.max(1), linger, &counters, stager);
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
    pub(crate) fn put_staged_row(&self, key: u64, row: &[u8]) {
        let db = self.db.read().expect("lock").clone().expect("open");
        let wtx = db.begin_write().expect("write transaction");
        wtx.open_table(tables::STAGING)
            .expect("staging")
            .insert(key, row)
            .expect("insert");
        wtx.commit().expect("commit");
    }

    /// Every row of `telemetry_quarantine`.
    #[cfg(test)]
    pub(crate) fn quarantined(&self) -> Vec<(u64, Vec<u8>)> {
        let op = "quarantine";
        self.read(op, |rtx| {
            let mut rows = Vec::new();
            tables::for_each_row(&tables::open(rtx, tables::QUARANTINE, op)?, op, |k, v| {
                rows.push((k.value(), v.value().to_vec()));
                Ok(true)
            })?;
            Ok(rows)
        })
        .expect("reads")
    }

    /// Runs `f` in a read transaction; `op` names the read in errors.
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

/// How the store's writer commits.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Most queued writes committed in one transaction.
    pub max_batch: usize,
    /// Page cache of the redb file.
    pub cache_bytes: usize,
    /// Under load (the last commit carried at least 64 writes), how long the writer lets
    /// writes gather before its next commit: fewer, larger commits, each with one fsync. Zero when writers wait for their commit to let the next writes in (the
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
            max_staged: staging::STAGE_MAX,
        }
    }
}

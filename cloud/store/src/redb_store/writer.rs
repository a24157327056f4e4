//! The writer thread: it takes queued writes in groups, commits each group in one
//! transaction (one fsync), and tells every writer of the group how it went.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use redb::{Database, Key, ReadableTable, Table, WriteTransaction};
use serde::Serialize;
use shiki_shared::throttle::Throttle;

use super::staging::Stager;
use super::tables::{
    ARTIFACTS, DEVICES, EVENTS, FLEET_LAST_RUN, HISTORY, JOBS, META, QUARANTINE, REGISTRY,
    SCHEDULES, STAGING, TELEMETRY, TOKENS, VERIFICATIONS, commit_err, to_json,
};
use crate::counters::{Counters, Tally};
use crate::{Job, StoreError, Write};

/// Writes in the last commit from which the writer lingers before the next one (the number
/// [`super::StoreOptions::linger`] names).
const LINGER_AFTER: usize = 64;

/// Runs until every sender of `rx` is gone, then returns (nothing is left queued).
pub(super) fn writer_loop(
    db: &Database,
    rx: &mpsc::Receiver<Job>,
    max_batch: usize,
    linger: Duration,
    c: &Counters,
    mut stager: Stager,
) {
    let mut busy = false;
    // A commit that fails keeps failing (a full disk): logged every 10 s, all counted.
    let mut failure_log = Throttle::new(Duration::from_secs(10));
    while let Ok(first) = rx.recv() {
        if busy && !linger.is_zero() {
            // Sleep rather than wait on the channel: a waiting receiver is woken by every
            // send, a futex call per message on both threads.
            std::thread::sleep(linger);
        }
        let (jobs, n) = gather(rx, first, max_batch);
        busy = n >= LINGER_AFTER;
        let started = Instant::now();
        let result = commit_or_quarantine(db, &jobs, c, &mut stager);
        c.commit_done(started.elapsed(), n);
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

/// `first` and the jobs queued behind it, up to `max_batch` writes; and how many writes.
fn gather(rx: &mpsc::Receiver<Job>, first: Job, max_batch: usize) -> (Vec<Job>, usize) {
    let mut n = first.writes.len();
    let mut jobs = vec![first];
    while n < max_batch {
        match rx.try_recv() {
            Ok(job) => {
                n += job.writes.len();
                jobs.push(job);
            }
            Err(_) => break,
        }
    }
    (jobs, n)
}

/// Commits `jobs`; a damaged staged row fails every commit that carries telemetry, so
/// one is moved aside and the group tried once more.
fn commit_or_quarantine(
    db: &Database,
    jobs: &[Job],
    c: &Counters,
    stager: &mut Stager,
) -> Result<(), StoreError> {
    let result = commit_batch(db, jobs, c, stager);
    let Err(StoreError::Corrupt {
        table: "telemetry_staging",
        ..
    }) = &result
    else {
        return result;
    };
    stager.reset();
    match quarantine_damaged_staging(db, c) {
        Ok(0) => result,
        Ok(_) => commit_batch(db, jobs, c, stager),
        Err(e) => {
            tracing::error!(error = %e, "cannot move damaged staged telemetry aside");
            result
        }
    }
}

/// Moves staged telemetry rows that do not decode into `telemetry_quarantine` (their bytes
/// as they were, for whoever repairs them) and counts them; returns how many.
pub(super) fn quarantine_damaged_staging(db: &Database, c: &Counters) -> Result<u64, StoreError> {
    let be = |e: &dyn std::fmt::Display| StoreError::backend("quarantine", e);
    let wtx = db.begin_write().map_err(|e| be(&e))?;
    let damaged = {
        let staging = wtx.open_table(STAGING).map_err(|e| be(&e))?;
        super::staging::damaged_staged(&staging)?
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

/// Commits the writes of `jobs` in one transaction: telemetry through the stager, each
/// device's samples of the group as one chunk, then every other write in order.
fn commit_batch(
    db: &Database,
    jobs: &[Job],
    c: &Counters,
    stager: &mut Stager,
) -> Result<(), StoreError> {
    let writes = || jobs.iter().flat_map(|j| j.writes.iter());
    let wtx = db.begin_write().map_err(commit_err)?;
    let mut tally = Tally::default();
    {
        let mut by_device: BTreeMap<&str, Vec<(u64, &[u8])>> = BTreeMap::new();
        for w in writes() {
            if let Write::Telemetry { device, samples } = w {
                by_device
                    .entry(device.as_str())
                    .or_default()
                    .extend(samples.iter().map(|s| (s.seq, &s.json[..])));
            }
        }
        let mut telemetry = wtx.open_table(TELEMETRY).map_err(commit_err)?;
        if !by_device.is_empty() {
            let mut staging = wtx.open_table(STAGING).map_err(commit_err)?;
            let by_device = by_device.into_iter().collect();
            let done = stager.store(&mut telemetry, &mut staging, by_device)?;
            tally.samples += done.stored;
            tally.duplicates += done.duplicates;
        }
        let mut records = Records::open(&wtx)?;
        for w in writes() {
            records.apply(w, &mut tally)?;
        }
    }
    wtx.commit().map_err(commit_err)?;
    c.stored(&tally);
    Ok(())
}

type KeyedBySeq<'txn> = Table<'txn, (&'static str, u64), &'static [u8]>;
type KeyedByName<'txn> = Table<'txn, &'static str, &'static [u8]>;

/// The JSON tables of a group commit's transaction.
struct Records<'txn> {
    events: KeyedBySeq<'txn>,
    history: KeyedBySeq<'txn>,
    verifications: KeyedBySeq<'txn>,
    devices: KeyedByName<'txn>,
    tokens: KeyedByName<'txn>,
    schedules: KeyedByName<'txn>,
    meta: KeyedByName<'txn>,
    artifacts: KeyedByName<'txn>,
    jobs: KeyedByName<'txn>,
    registry: KeyedByName<'txn>,
}

impl<'txn> Records<'txn> {
    fn open(wtx: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            events: wtx.open_table(EVENTS.def).map_err(commit_err)?,
            history: wtx.open_table(HISTORY.def).map_err(commit_err)?,
            verifications: wtx.open_table(VERIFICATIONS.def).map_err(commit_err)?,
            devices: wtx.open_table(DEVICES.def).map_err(commit_err)?,
            tokens: wtx.open_table(TOKENS.def).map_err(commit_err)?,
            schedules: wtx.open_table(SCHEDULES.def).map_err(commit_err)?,
            meta: wtx.open_table(META.def).map_err(commit_err)?,
            artifacts: wtx.open_table(ARTIFACTS.def).map_err(commit_err)?,
            jobs: wtx.open_table(JOBS.def).map_err(commit_err)?,
            registry: wtx.open_table(REGISTRY.def).map_err(commit_err)?,
        })
    }

    /// Applies one write (telemetry is the stager's); events are stored once per seq.
    fn apply(&mut self, w: &Write, tally: &mut Tally) -> Result<(), StoreError> {
        match w {
            Write::Telemetry { .. } => {}
            Write::Events { device, events } => {
                for e in events {
                    let key = (device.as_str(), e.seq);
                    if self.events.get(key).map_err(commit_err)?.is_some() {
                        tally.duplicates += 1;
                    } else {
                        put(&mut self.events, key, e)?;
                        tally.events += 1;
                    }
                }
            }
            Write::History(h) => put(&mut self.history, (h.device.as_str(), h.id), h)?,
            Write::Verification(v) => {
                put(&mut self.verifications, (v.device.as_str(), v.id), v)?;
            }
            Write::Device { device, snapshot } => {
                put(&mut self.devices, device.as_str(), snapshot.as_ref())?;
            }
            Write::PutToken(t) => put(&mut self.tokens, t.hash.as_str(), t)?,
            Write::RevokeToken { hash } => {
                self.tokens.remove(hash.as_str()).map_err(commit_err)?;
            }
            Write::Schedules { device, schedules } => {
                put(&mut self.schedules, device.as_str(), schedules.as_ref())?;
            }
            Write::FleetLastRun(at) => put(&mut self.meta, FLEET_LAST_RUN, at)?,
            Write::PutArtifact(a) => put(&mut self.artifacts, a.version.as_str(), a)?,
            Write::Job(job) => put(&mut self.jobs, job.id.as_str(), job.as_ref())?,
            Write::PutRegistry(r) => put(&mut self.registry, r.id.as_str(), r.as_ref())?,
        }
        Ok(())
    }
}

/// Inserts (or replaces) `record` as JSON under `key`.
fn put<'k, K: Key + 'static>(
    table: &mut Table<'_, K, &'static [u8]>,
    key: impl Borrow<K::SelfType<'k>>,
    record: &impl Serialize,
) -> Result<(), StoreError> {
    table
        .insert(key, to_json(record).as_slice())
        .map_err(commit_err)?;
    Ok(())
}

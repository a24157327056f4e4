//! What the store's writers count, for metrics ([`crate::StoreStats`]); shared by the
//! backends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::StoreStats;

/// What the writer counts, read by [`Counters::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub commits: AtomicU64,
    pub samples_stored: AtomicU64,
    pub duplicates_dropped: AtomicU64,
    pub events_stored: AtomicU64,
    pub last_commit_micros: AtomicU64,
    pub total_commit_micros: AtomicU64,
    pub last_batch_writes: AtomicU64,
    pub failed_commits: AtomicU64,
    pub quarantined_rows: AtomicU64,
    pub max_commit_micros: AtomicU64,
    pub fenced: AtomicU64,
}

impl Counters {
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.commits.load(Ordering::Relaxed),
            samples_stored: self.samples_stored.load(Ordering::Relaxed),
            duplicates_dropped: self.duplicates_dropped.load(Ordering::Relaxed),
            events_stored: self.events_stored.load(Ordering::Relaxed),
            last_commit_micros: self.last_commit_micros.load(Ordering::Relaxed),
            total_commit_micros: self.total_commit_micros.load(Ordering::Relaxed),
            last_batch_writes: self.last_batch_writes.load(Ordering::Relaxed),
            failed_commits: self.failed_commits.load(Ordering::Relaxed),
            quarantined_rows: self.quarantined_rows.load(Ordering::Relaxed),
            max_commit_micros: self.max_commit_micros.load(Ordering::Relaxed),
            fenced_submissions: self.fenced.load(Ordering::Relaxed),
        }
    }

    /// One group commit of `writes` writes that took `took` (failed or not).
    pub fn commit_done(&self, took: Duration, writes: usize) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.last_commit_micros.store(micros, Ordering::Relaxed);
        self.total_commit_micros
            .fetch_add(micros, Ordering::Relaxed);
        self.max_commit_micros.fetch_max(micros, Ordering::Relaxed);
        self.last_batch_writes
            .store(writes as u64, Ordering::Relaxed);
    }

    pub fn stored(&self, t: &Tally) {
        self.samples_stored.fetch_add(t.samples, Ordering::Relaxed);
        self.duplicates_dropped
            .fetch_add(t.duplicates, Ordering::Relaxed);
        self.events_stored.fetch_add(t.events, Ordering::Relaxed);
    }
}

/// What one group commit stored.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub samples: u64,
    pub duplicates: u64,
    pub events: u64,
}

//! Where the edge keeps its schedules across reboots: a tiny trait, so the schedule actor
//! does not depend on redb. The redb implementation lives in the edge's store module; the
//! in-memory one here is for tests and for running without a disk.

use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// One stored schedule document, exactly as accepted (typed document re-serialised, so its
/// hash recomputes to `hash`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSchedule {
    pub id: String,
    /// Content hash ([`shiki_shared::schedule::ScheduleDocument::hash`]).
    pub hash: String,
    pub document: serde_json::Value,
}

/// Both slots. `current` runs now (or will when its validity starts); `next` takes over
/// when the current validity ends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredSchedules {
    pub current: Option<StoredSchedule>,
    pub next: Option<StoredSchedule>,
}

/// Why the store could not load or save.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleStoreError {
    #[error("loading the stored schedules failed: {0}")]
    Load(String),
    #[error("saving the schedules failed: {0}")]
    Save(String),
}

/// Load and save both schedule slots as one record. `save` must be atomic (one redb write
/// transaction): after a crash either the old or the new pair is read back.
///
/// Both calls may block (disk I/O); the actor runs them on `spawn_blocking`.
pub trait ScheduleStore: Send + Sync + std::fmt::Debug {
    /// The stored pair; both `None` when nothing was ever stored.
    fn load(&self) -> Result<StoredSchedules, ScheduleStoreError>;
    /// Replaces the stored pair.
    fn save(&self, schedules: &StoredSchedules) -> Result<(), ScheduleStoreError>;
}

/// A store in memory (tests, or a gateway without a writable disk). `fail_saves` makes
/// every save fail, to test that a schedule that could not be stored is refused.
#[derive(Debug, Default)]
pub struct MemoryScheduleStore {
    inner: Mutex<StoredSchedules>,
    fail_saves: Mutex<Option<String>>,
}

impl MemoryScheduleStore {
    pub fn new(initial: StoredSchedules) -> Self {
        Self {
            inner: Mutex::new(initial),
            fail_saves: Mutex::new(None),
        }
    }

    /// From now on every save fails with `reason` (`None`: saves work again).
    pub fn fail_saves(&self, reason: Option<&str>) {
        *self
            .fail_saves
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = reason.map(str::to_owned);
    }

    /// What is stored now.
    pub fn snapshot(&self) -> StoredSchedules {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ScheduleStore for MemoryScheduleStore {
    fn load(&self) -> Result<StoredSchedules, ScheduleStoreError> {
        Ok(self.snapshot())
    }

    fn save(&self, schedules: &StoredSchedules) -> Result<(), ScheduleStoreError> {
        if let Some(reason) = self
            .fail_saves
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Err(ScheduleStoreError::Save(reason));
        }
        *self.inner.lock().unwrap_or_else(PoisonError::into_inner) = schedules.clone();
        Ok(())
    }
}

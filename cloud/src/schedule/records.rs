//! What the store keeps of a device's yearly schedules: each slot's [`StoredSchedule`]
//! and its [`SyncStatus`] ([`DeviceSchedules`], the `schedules` table's value).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shiki_proto::ActiveSchedule;

/// A schedule the cloud holds for a device, as validated when it was put.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSchedule {
    pub id: String,
    pub hash: String,
    /// The typed document re-serialised (what is pushed and hashed).
    pub document: Value,
    pub timezone: String,
    pub valid_from: NaiveDate,
    pub valid_to: NaiveDate,
    /// First instant of validity (`valid_from` 00:00 local).
    pub start: DateTime<Utc>,
    /// First instant after validity.
    pub end: DateTime<Utc>,
    /// Who put it (operator name, API key id, `fleet`).
    pub set_by: String,
    pub set_at: DateTime<Utc>,
}

impl StoredSchedule {
    pub fn covers(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }

    pub fn active(&self) -> ActiveSchedule {
        ActiveSchedule {
            id: self.id.clone(),
            hash: self.hash.clone(),
        }
    }
}

/// Whether the device has confirmed a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SyncStatus {
    /// Pushed `attempts` times (0: not yet, waiting for the device to come online).
    Pending {
        attempts: u32,
        next_retry: DateTime<Utc>,
    },
    Acked {
        hash: String,
        at: DateTime<Utc>,
    },
    Failed {
        reason: String,
        at: DateTime<Utc>,
    },
}

/// A slot: the schedule and its sync status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotSync {
    pub schedule: StoredSchedule,
    pub status: SyncStatus,
}

impl SlotSync {
    /// Whether the device confirmed this slot's schedule (by hash).
    pub(crate) fn acked(&self) -> bool {
        matches!(&self.status, SyncStatus::Acked { hash, .. } if *hash == self.schedule.hash)
    }
}

/// What the store keeps per device (serialisable).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceSchedules {
    pub current: Option<SlotSync>,
    pub next: Option<SlotSync>,
}

//! What `GET /api/v1/devices/{id}/schedule` returns.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use shiki_proto::ScheduleSlot;
use shiki_shared::schedule::Problem;

use super::records::{SlotSync, SyncStatus};
use super::state::ScheduleSync;

/// One slot as the API shows it (the document itself: `?include=document`, see
/// [`ScheduleSync::current`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlotView {
    pub id: String,
    pub hash: String,
    pub timezone: String,
    pub valid_from: NaiveDate,
    pub valid_to: NaiveDate,
    pub set_by: String,
    pub set_at: DateTime<Utc>,
    /// `{"state": "pending", "attempts": 2, "next_retry": …}`,
    /// `{"state": "acked", "hash": …, "at": …}` or `{"state": "failed", "reason": …, "at": …}`.
    pub status: SyncStatus,
}

impl From<&SlotSync> for SlotView {
    fn from(s: &SlotSync) -> Self {
        Self {
            id: s.schedule.id.clone(),
            hash: s.schedule.hash.clone(),
            timezone: s.schedule.timezone.clone(),
            valid_from: s.schedule.valid_from,
            valid_to: s.schedule.valid_to,
            set_by: s.schedule.set_by.clone(),
            set_at: s.schedule.set_at,
            status: s.status.clone(),
        }
    }
}

/// `GET /api/v1/devices/{id}/schedule` (200).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleView {
    pub device_id: String,
    pub current: Option<SlotView>,
    pub next: Option<SlotView>,
}

impl From<&ScheduleSync> for ScheduleView {
    fn from(s: &ScheduleSync) -> Self {
        Self {
            device_id: s.device_id().to_owned(),
            current: s.current().map(SlotView::from),
            next: s.next().map(SlotView::from),
        }
    }
}

/// `PUT /api/v1/devices/{id}/schedule` (200/202): where it went, the new view, and the
/// validation warnings (policies applied, e.g. a DST gap).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PutScheduleResponse {
    pub slot: ScheduleSlot,
    /// `true` when it was published now; `false` when the device is offline (pushed on
    /// reconnect).
    pub pushed: bool,
    pub schedule: ScheduleView,
    pub warnings: Vec<Problem>,
}

//! What a [`ScheduleSync`](super::ScheduleSync) step asks of its device actor
//! ([`SyncEffects`]: persist, publish, record history, alert), and why a put is refused.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use shiki_proto::{ScheduleSet, ScheduleSlot, Severity};
use shiki_shared::schedule::Problem;

use shiki_cloud_model::schedule::DeviceSchedules;

/// One history record: who changed which slot from what to what.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleHistory {
    pub at: DateTime<Utc>,
    /// Operator / API key for a put, `device` for an ack, `schedule` for a switch.
    pub actor: String,
    /// `schedule.current` or `schedule.next`.
    pub key: String,
    pub old: Value,
    pub new: Value,
    pub comment: String,
}

/// What went wrong with a device's schedule sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The edge refused a schedule (reason in the message).
    Refused,
    /// No ack after [`SyncConfig::alert_after_attempts`](super::SyncConfig::alert_after_attempts)
    /// pushes.
    NotAcknowledged,
    /// The yearly job found no schedule for the coming year.
    MissingNextYear,
    /// The device entered a new year without a confirmed schedule covering it.
    EnteredYearWithoutSchedule,
}

/// An alert for the notifier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleAlert {
    pub device_id: String,
    pub at: DateTime<Utc>,
    pub kind: AlertKind,
    pub severity: Severity,
    pub message: String,
}

/// What the device actor must do after a step: persist, then publish, record, alert.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncEffects {
    pub persist: Option<DeviceSchedules>,
    /// Publish on the device's `schedule/set`.
    pub publish: Vec<ScheduleSet>,
    pub history: Vec<ScheduleHistory>,
    pub alerts: Vec<ScheduleAlert>,
    /// Validation warnings of an accepted put (DST policies applied, …), for the response.
    pub warnings: Vec<Problem>,
    /// The slot a put went to.
    pub slot: Option<ScheduleSlot>,
}

/// Why a put was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SetError {
    /// 400: the body is not a schedule document.
    #[error("the body is not a schedule document: {0}")]
    Malformed(String),
    /// 422: every problem (errors and warnings) with its location.
    #[error("schedule is invalid: {} problem(s), first: {}", problems.len(),
        problems.first().map(ToString::to_string).unwrap_or_default())]
    Invalid { problems: Vec<Problem> },
}

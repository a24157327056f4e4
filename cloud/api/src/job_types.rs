//! The DTOs of the job routes: the `POST /api/v1/jobs` body as the backend gets it, and the
//! job as the API shows it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shiki_proto::DeviceId;

use super::types::AuthorView;

/// `POST /api/v1/jobs` body, as sent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewJobRequest {
    pub artifact_version: String,
    pub devices: Vec<String>,
    #[serde(default)]
    pub max_in_progress: Option<u32>,
    #[serde(default)]
    pub abort_failure_ratio: Option<f64>,
    #[serde(default)]
    pub allow_downgrade: bool,
}

/// A job to create, checked for shape: at least one device, valid ids, limits in range.
/// Unset rollout limits take the cloud's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub artifact_version: String,
    pub devices: Vec<DeviceId>,
    pub max_in_progress: Option<u32>,
    pub abort_failure_ratio: Option<f64>,
    pub allow_downgrade: bool,
}

/// `201` answer of `POST /api/v1/jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCreated {
    pub id: String,
}

/// Where one device's execution of a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobExecutionStatus {
    Queued,
    InProgress,
    Succeeded,
    Failed,
    RolledBack,
    TimedOut,
    Canceled,
}

/// One device of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDeviceView {
    pub device: String,
    pub status: JobExecutionStatus,
    /// 0–100.
    pub progress: u8,
    /// Why it failed, rolled back, timed out or was canceled (`null` otherwise).
    pub reason: Option<String>,
    /// The step the edge last reported (`downloading`, `verifying`, `installing`, `trial`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// A job and each of its devices (`GET /api/v1/jobs/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: String,
    pub artifact_version: String,
    pub created_at: DateTime<Utc>,
    pub created_by: AuthorView,
    pub max_in_progress: u32,
    pub abort_failure_ratio: f64,
    pub allow_downgrade: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canceled_by: Option<AuthorView>,
    pub devices: Vec<JobDeviceView>,
}

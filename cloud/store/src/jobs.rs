//! OTA job records: one [`JobRecord`] per job with the execution of each of its devices,
//! stored whole (table `jobs`, keyed by job id) each time one of them changes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shiki_cloud_model::{Author, AuthorRecord};
use shiki_proto::{DeviceId, JobId, JobStep};

/// Reads an [`Author`] stored as an [`AuthorRecord`]. Jobs are written only by versions
/// that name every author (a device by its id), so no device stands in for a missing one.
fn author<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Author, D::Error> {
    let record = AuthorRecord::deserialize(d)?;
    let nobody = DeviceId::new("unknown").expect("a valid device id");
    Ok(record.into_author(&nobody))
}

fn optional_author<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Author>, D::Error> {
    let record = Option::<AuthorRecord>::deserialize(d)?;
    let nobody = DeviceId::new("unknown").expect("a valid device id");
    Ok(record.map(|r| r.into_author(&nobody)))
}

/// The artifact a job installs, as it was when the job was created: what the edge needs
/// to verify it (the signed manifest's fields) and what a download URL is signed for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobArtifact {
    pub version: String,
    /// SHA-256 of the artifact, lowercase hex.
    pub sha256: String,
    pub size: u64,
    /// ed25519 signature (base64) over the manifest.
    pub signature: String,
}

/// How a job rolls out over its devices.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// At most this many executions in progress at once (≥ 1).
    pub max_in_progress: u32,
    /// Once at least two executions finished, the queued rest is canceled when the share
    /// of failed, rolled back and timed out ones among the finished exceeds this (0–1).
    pub abort_failure_ratio: f64,
    /// The edge installs even an older version.
    pub allow_downgrade: bool,
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            max_in_progress: 10,
            abort_failure_ratio: 0.5,
            allow_downgrade: false,
        }
    }
}

/// Where one device's execution of a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    Queued,
    InProgress,
    Succeeded,
    Failed,
    RolledBack,
    TimedOut,
    Canceled,
}

impl ExecutionStatus {
    /// Every status, in the order of the lifecycle.
    pub const ALL: [ExecutionStatus; 7] = [
        ExecutionStatus::Queued,
        ExecutionStatus::InProgress,
        ExecutionStatus::Succeeded,
        ExecutionStatus::Failed,
        ExecutionStatus::RolledBack,
        ExecutionStatus::TimedOut,
        ExecutionStatus::Canceled,
    ];

    /// The wire and API name (`in_progress`, …).
    pub fn name(self) -> &'static str {
        match self {
            ExecutionStatus::Queued => "queued",
            ExecutionStatus::InProgress => "in_progress",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::RolledBack => "rolled_back",
            ExecutionStatus::TimedOut => "timed_out",
            ExecutionStatus::Canceled => "canceled",
        }
    }

    /// Nothing changes it any more.
    pub fn is_terminal(self) -> bool {
        !matches!(self, ExecutionStatus::Queued | ExecutionStatus::InProgress)
    }

    /// A terminal state that counts against the rollout (failed, rolled back, timed out).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Failed | ExecutionStatus::RolledBack | ExecutionStatus::TimedOut
        )
    }
}

impl std::fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One device's execution of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    pub device: DeviceId,
    pub status: ExecutionStatus,
    /// 0–100.
    #[serde(default)]
    pub progress: u8,
    /// Why it failed, rolled back, timed out or was canceled (the edge's detail, or ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The step the edge last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<JobStep>,
    /// When it went in progress (the first `jobs/notify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// The last sign of life of the execution: start, an update, the device reconnecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<DateTime<Utc>>,
    /// When the edge reported `succeeded`; the execution succeeds once the device's status
    /// reports the artifact's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_succeeded_at: Option<DateTime<Utc>>,
    /// The `software_version` of the device's last online status since the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

impl ExecutionRecord {
    /// A queued execution for `device`.
    pub fn queued(device: DeviceId) -> Self {
        Self {
            device,
            status: ExecutionStatus::Queued,
            progress: 0,
            reason: None,
            step: None,
            started_at: None,
            last_activity: None,
            edge_succeeded_at: None,
            reported_version: None,
            finished_at: None,
        }
    }
}

/// One OTA job: an artifact for a list of devices, and where each device is with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub artifact: JobArtifact,
    pub created_at: DateTime<Utc>,
    #[serde(deserialize_with = "author")]
    pub created_by: Author,
    pub rollout: Rollout,
    /// In the order the job listed the devices (the rollout starts them in this order).
    pub executions: Vec<ExecutionRecord>,
    #[serde(
        default,
        deserialize_with = "optional_author",
        skip_serializing_if = "Option::is_none"
    )]
    pub canceled_by: Option<Author>,
}

impl JobRecord {
    /// Every execution reached a terminal state.
    pub fn is_finished(&self) -> bool {
        self.executions.iter().all(|e| e.status.is_terminal())
    }
}

//! OTA job messages: `jobs/notify` (cloud→edge) and `jobs/{job_id}/update` (edge→cloud),
//! shaped like AWS IoT Jobs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::JobId;
use crate::messages::protocol_version;

/// What a job asks the edge to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "snake_case")]
pub enum JobOperation {
    /// Install a signed edge build.
    Ota {
        software_version: String,
        /// Where to download the artifact: a short-lived signed URL that serves `Range`
        /// requests. When it has expired the edge sends a [`JobUpdate`] with
        /// [`JobStep::UrlExpired`] and the cloud answers with a fresh `jobs/notify`.
        url: String,
        size: u64,
        /// SHA-256 of the artifact, lowercase hex.
        sha256: String,
        /// ed25519 signature (base64) over the manifest (version, sha256, size); see
        /// `shiki_shared::ota::Manifest`.
        signature: String,
        /// When `url` stops working (absent: unknown).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url_expires: Option<DateTime<Utc>>,
        /// Install even when `software_version` is older than the running one.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        allow_downgrade: bool,
    },
    #[serde(other)]
    Unknown,
}

/// One job for the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDocument {
    pub job_id: JobId,
    #[serde(flatten)]
    pub operation: JobOperation,
}

/// `jobs/notify` (cloud→edge): the device's pending jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobNotify {
    #[serde(default = "protocol_version")]
    pub v: u32,
    pub jobs: Vec<JobDocument>,
}

/// Status of a job execution, as AWS IoT Jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    InProgress,
    /// The new version proved healthy and runs.
    Succeeded,
    /// The edge could not do the job (download, disk, install); `detail` says why.
    Failed,
    /// The edge refused the job (signature, hash, downgrade, not an executable for it).
    Rejected,
    /// The new version did not prove healthy; the previous one runs again.
    RolledBack,
    #[serde(other)]
    Unknown,
}

/// Where an in-progress execution is on the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStep {
    Downloading,
    Verifying,
    Installing,
    /// The new version runs on trial and must prove healthy within the health window.
    Trial,
    /// The download URL has expired: send the job again with a fresh one.
    UrlExpired,
    #[serde(other)]
    Unknown,
}

/// `jobs/{job_id}/update` (edge→cloud).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobUpdate {
    #[serde(default = "protocol_version")]
    pub v: u32,
    pub status: JobStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// With `in_progress`: the step the edge is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<JobStep>,
    /// With `in_progress`: 0–100 (download progress, 100 once installed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    pub ts: DateTime<Utc>,
}

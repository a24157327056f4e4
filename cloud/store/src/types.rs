//! Records the store keeps. They are the persistence schema: serde JSON in redb, columns
//! in a PostgreSQL backend (planned).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shiki_proto::{Catalog, DeviceId, Event, Sample, SettingStatus, Status};

use shiki_cloud_model::shadow::Shadow;

use super::legacy;
use shiki_cloud_model::schedule::DeviceSchedules;
use shiki_cloud_model::{Author, Role};

/// Which half of the shadow changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Desired,
    Reported,
}

/// One settings change. Read through `legacy::StoredHistoryEntry`, so entries written
/// by older versions (an API key without its role, a device without its id) still load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "legacy::StoredHistoryEntry")]
pub struct HistoryEntry {
    pub id: u64,
    pub device: DeviceId,
    pub ts: DateTime<Utc>,
    pub actor: Author,
    pub side: Side,
    pub key: String,
    /// `null` when the key did not exist.
    pub old: serde_json::Value,
    /// `null` when the key was removed.
    pub new: serde_json::Value,
    /// Desired version after the change (for reported changes: the version the edge applied).
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The verification started for this change (desired changes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_id: Option<u64>,
}

/// A history entry with the current state of its verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryItem {
    #[serde(flatten)]
    pub entry: HistoryEntry,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationRecord>,
}

/// Why a verification failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum FailureReason {
    /// The device was offline at the last re-check.
    DeviceOffline,
    /// The PLC (or the edge) refused the value.
    PlcRefused { detail: Option<String> },
    /// The edge clamped the value to its safety limits.
    Clamped { value: serde_json::Value },
    /// No matching reported state after every re-check.
    TimedOut,
    /// A newer desired change of the same key replaced this one.
    Superseded { by_version: u64 },
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::DeviceOffline => f.write_str("device offline"),
            FailureReason::PlcRefused { detail: Some(d) } => write!(f, "PLC refused: {d}"),
            FailureReason::PlcRefused { detail: None } => f.write_str("PLC refused"),
            FailureReason::Clamped { value } => write!(f, "clamped to {value}"),
            FailureReason::TimedOut => f.write_str("timed out"),
            FailureReason::Superseded { by_version } => {
                write!(f, "superseded by desired version {by_version}")
            }
        }
    }
}

/// Where a verification stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum VerificationOutcome {
    Pending,
    Verified {
        at: DateTime<Utc>,
    },
    Failed {
        at: DateTime<Utc>,
        #[serde(flatten)]
        reason: FailureReason,
    },
}

/// The check that one desired setting took effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationRecord {
    pub id: u64,
    pub device: DeviceId,
    pub key: String,
    pub requested: serde_json::Value,
    /// Desired version of the change.
    pub version: u64,
    pub started: DateTime<Utc>,
    /// Re-checks done so far.
    pub attempts: u32,
    /// When the next re-check is due (pending only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check: Option<DateTime<Utc>>,
    pub outcome: VerificationOutcome,
}

impl VerificationRecord {
    pub fn is_pending(&self) -> bool {
        matches!(self.outcome, VerificationOutcome::Pending)
    }
}

/// The persisted state of one device actor (telemetry state is rebuilt from the telemetry
/// table, pending verifications from theirs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceSnapshot {
    /// The shared shadow model (snapshots of older versions are read by `legacy::shadow`).
    #[serde(deserialize_with = "legacy::shadow")]
    pub shadow: Shadow,
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(default)]
    pub catalog: Option<Catalog>,
    #[serde(default)]
    pub last_seen: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_event_seq: u64,
    #[serde(default)]
    pub offline_since: Option<DateTime<Utc>>,
    #[serde(default)]
    pub offline_alerted: bool,
    /// The desired version the edge last said it applied.
    #[serde(default)]
    pub applied_version: Option<u64>,
    /// Per setting, where its value came from (from the last reported updates).
    #[serde(default)]
    pub settings: BTreeMap<String, SettingStatus>,
}

/// An API token as stored: only the hash of the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Lowercase hex SHA-256 of the token secret.
    pub hash: String,
    pub name: String,
    /// Stored by name (`viewer`, `operator`, `admin`); a record with any other name does not
    /// load ([`StoreError::Corrupt`](super::StoreError::Corrupt)), it never falls back.
    pub role: Role,
    pub created: DateTime<Utc>,
    /// Name of the token that created it (`bootstrap` for the first admin token).
    #[serde(default)]
    pub created_by: String,
    /// The customer whose devices alone it sees (`None`: staff, every device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// An OTA artifact (an edge build) the cloud keeps: its metadata. The bytes live in the
/// data dir, content-addressed by `sha256` (`<data_dir>/artifacts/sha256/<hex>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// The build's version (unique: one version, one content).
    pub version: String,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// Size of the bytes.
    pub size: u64,
    /// The release key's signature of the manifest (version, sha256, size), base64.
    pub signature: String,
    pub uploaded_at: DateTime<Utc>,
    /// Name of the API token that uploaded it.
    pub uploaded_by: String,
}

/// A device registered to use the embedded broker: its MQTT password (hashed), its
/// customer, and whether it was retired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryRecord {
    pub id: DeviceId,
    /// The customer the device belongs to (`None`: staff only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// PHC string of the Argon2id hash of its MQTT password; `None` once retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Who registered it (an API token's name, or `first-contact`).
    pub created_by: String,
    /// When its password was last set.
    pub credentials_at: DateTime<Utc>,
    /// When it was retired (it may not connect; its data is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<DateTime<Utc>>,
}

/// One queued write.
#[derive(Debug, Clone)]
pub enum Write {
    /// Samples of one device, de-duplicated on (device, seq) (see [`Write::telemetry`]).
    Telemetry {
        device: DeviceId,
        samples: Vec<SampleRow>,
    },
    Events {
        device: DeviceId,
        events: Vec<Event>,
    },
    History(Box<HistoryEntry>),
    /// Inserts or replaces a verification record (by id).
    Verification(Box<VerificationRecord>),
    Device {
        device: DeviceId,
        snapshot: Box<DeviceSnapshot>,
    },
    PutToken(Box<TokenRecord>),
    /// Removes a token by hash.
    RevokeToken {
        hash: String,
    },
    /// Replaces a device's yearly schedules (current and next, with their sync status).
    Schedules {
        device: DeviceId,
        schedules: Box<DeviceSchedules>,
    },
    /// The instant the fleet's yearly jobs were last evaluated.
    FleetLastRun(DateTime<Utc>),
    /// Inserts or replaces the artifact record of its version (the admin API checks first
    /// that a version is never given other content).
    PutArtifact(Box<ArtifactRecord>),
    /// Inserts or replaces an OTA job with its executions (by job id).
    Job(Box<super::JobRecord>),
    /// Inserts or replaces a device's registration (by device id).
    PutRegistry(Box<RegistryRecord>),
}

impl Write {
    /// Telemetry from decoded samples.
    pub fn telemetry(device: DeviceId, samples: impl IntoIterator<Item = Sample>) -> Self {
        Write::Telemetry {
            device,
            samples: samples.into_iter().map(|s| SampleRow::encode(&s)).collect(),
        }
    }
}

/// A sample as the store keeps it: its seq and its JSON text, which decodes as a
/// [`Sample`] with that seq. The ingest passes on the text it received (after checking
/// that it decodes), a slice of the MQTT payload rather than a copy, so the store's writer
/// does no JSON work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRow {
    pub seq: u64,
    pub json: bytes::Bytes,
}

impl SampleRow {
    pub fn encode(sample: &Sample) -> Self {
        SampleRow {
            seq: sample.seq,
            json: serde_json::to_vec(sample)
                .expect("samples always serialise")
                .into(),
        }
    }
}

/// A time window with a row limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeQuery {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: Option<usize>,
    /// Telemetry and events: newest first (`limit` keeps the newest). History is always
    /// newest first.
    pub newest_first: bool,
}

impl TimeQuery {
    pub fn contains(&self, ts: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| ts >= f) && self.to.is_none_or(|t| ts <= t)
    }
}

/// Missing telemetry sequence numbers `from..=to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqGap {
    pub from: u64,
    pub to: u64,
}

/// Store counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    pub commits: u64,
    pub samples_stored: u64,
    pub duplicates_dropped: u64,
    pub events_stored: u64,
    pub last_commit_micros: u64,
    pub total_commit_micros: u64,
    pub last_batch_writes: u64,
    /// Group commits that failed (their writes were not stored).
    pub failed_commits: u64,
    /// Staged telemetry rows that did not decode and were moved to `telemetry_quarantine`.
    pub quarantined_rows: u64,
    /// Longest group commit so far.
    pub max_commit_micros: u64,
    /// Submissions refused because their shard's lease had passed to another node.
    pub fenced_submissions: u64,
}

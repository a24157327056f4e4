//! Data shapes the admin API exchanges with the [`Backend`](super::Backend) and, serialised
//! as JSON, with API clients. Field names are part of the HTTP contract (see `openapi.json`).
//!
//! Timestamps are UTC and serialise as RFC 3339. Shadow values are plain JSON values, as in
//! the AWS IoT Device Shadow service. Types that already exist on the wire (`Sample`,
//! `Event`, `Status`, `Catalog`, `ShadowMetadata`, `SettingStatus`) are reused from
//! `shiki-proto` rather than copied.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use shiki_proto::{
    Catalog, DeviceId, Event, JsonMap, Sample, ScheduleSlot, SettingStatus, ShadowMetadata, Status,
};

use shiki_cloud_model::schedule::{SlotSync, SyncStatus};
use shiki_shared::schedule::Problem;

use shiki_cloud_model::Author;

use crate::auth::Role;

// ---------------------------------------------------------------------------------------
// devices

/// One line of `GET /api/v1/devices`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSummary {
    pub id: DeviceId,
    /// True while the device's retained `status` says `online` (and no Last Will arrived).
    pub online: bool,
    /// When the cloud last received any message from the device; `None` if never.
    pub last_seen: Option<DateTime<Utc>>,
    /// Current desired-state version of the shadow (0 before the first desired change).
    pub shadow_version: u64,
    /// Desired changes whose verification has not finished yet.
    pub pending_verifications: u32,
    /// The edge software the device runs, as its last `status` said.
    #[serde(default)]
    pub software_version: Option<String>,
    /// Time of the newest telemetry sample received.
    #[serde(default)]
    pub last_sample_at: Option<DateTime<Utc>>,
    /// Since when the device is in its state: online since its `status` said so, offline
    /// since it was last heard from.
    #[serde(default)]
    pub state_since: Option<DateTime<Utc>>,
    /// The newest sample's values (running state, temperatures, alarm code …).
    #[serde(default)]
    pub last_values: BTreeMap<String, shiki_proto::PointValue>,
    /// The customer the device belongs to (filled in for the page listed).
    #[serde(default)]
    pub tenant: Option<String>,
}

impl DeviceSummary {
    /// [`DeviceSummary::state_since`]: online since its `status` (sent at `status_ts`) said
    /// so, else since `last_seen`.
    pub fn state_since(
        online: bool,
        status_ts: Option<DateTime<Utc>>,
        last_seen: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        if online {
            status_ts.or(last_seen)
        } else {
            last_seen
        }
    }
}

/// `GET /api/v1/devices/{id}`: the device actor's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceView {
    pub id: DeviceId,
    /// The last `status` message (software version, boot time), if any arrived.
    pub status: Option<Status>,
    /// The edge software the device runs, as its last `status` said (after an OTA update:
    /// the version it reported after its restart).
    pub software_version: Option<String>,
    /// Same meaning as [`DeviceSummary::online`].
    pub online: bool,
    /// Same meaning as [`DeviceSummary::last_seen`].
    pub last_seen: Option<DateTime<Utc>>,
    /// Desired state (operator overrides in force).
    pub desired: JsonMap,
    /// Reported state: what the PLC really holds, as last reported by the edge.
    pub reported: JsonMap,
    /// Desired keys whose value differs from reported (compared at the point's resolution).
    pub delta: JsonMap,
    /// Desired-state version; pass it as `expected_version` for optimistic concurrency.
    pub version: u64,
    /// The desired version the edge says it has applied, if it reported one.
    pub applied_version: Option<u64>,
    /// Per-key timestamps and override lifetimes (`until`).
    pub metadata: ShadowMetadata,
    /// Per setting: where its value came from (override, schedule, default, clamped, refused).
    #[serde(default)]
    pub settings: BTreeMap<String, SettingStatus>,
    /// The newest telemetry sample received.
    pub last_telemetry: Option<Sample>,
    /// Highest telemetry `seq` stored for the device.
    pub last_seq: Option<u64>,
    /// Verifications still running, oldest first.
    #[serde(default)]
    pub pending_verifications: Vec<KeyVerification>,
    /// The most recently finished verification (verified or failed).
    pub last_verification: Option<KeyVerification>,
    /// The device's point list from its retained `catalog`; `None` until one arrived
    /// (desired changes are then refused with 422, since they cannot be validated).
    pub catalog: Option<Catalog>,
}

// ---------------------------------------------------------------------------------------
// desired changes

/// Answer to a successful desired change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchOutcome {
    /// The new desired-state version.
    pub version: u64,
}

/// Who made a change, as history lists it: `{"kind", "name", "role"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AuthorView {
    pub kind: AuthorKind,
    /// Token name, user name, `schedule`, or device id.
    pub name: String,
    /// Role the author held when it acted (API callers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

impl From<&Author> for AuthorView {
    fn from(author: &Author) -> Self {
        let (kind, name, role) = match author {
            Author::Operator(n) => (AuthorKind::Operator, n.clone(), None),
            Author::User { name, role } => (AuthorKind::User, name.clone(), *role),
            Author::ApiKey { name, role } => (AuthorKind::ApiKey, name.clone(), *role),
            Author::Schedule => (AuthorKind::Schedule, "schedule".to_owned(), None),
            Author::Device(id) => (AuthorKind::Device, id.to_string(), None),
        };
        AuthorView { kind, name, role }
    }
}

/// What kind of identity an [`AuthorView`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorKind {
    /// A person named by a tool.
    Operator,
    /// Someone signed in at the identity provider (OIDC bearer token or the web page).
    User,
    /// A caller holding an API bearer token (including `SHIKI_ADMIN_TOKEN`).
    ApiKey,
    /// The yearly schedule (e.g. an override ended at the next transition).
    Schedule,
    /// The device itself (reported changes, overrides it expired).
    Device,
    /// The cloud itself (housekeeping).
    System,
    #[serde(other)]
    Unknown,
}

// ---------------------------------------------------------------------------------------
// history, telemetry, events

/// Which half of the shadow a history entry changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShadowSide {
    Desired,
    Reported,
}

/// One settings change, as listed by `GET /api/v1/devices/{id}/history` (newest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub ts: DateTime<Utc>,
    pub actor: AuthorView,
    pub side: ShadowSide,
    pub key: String,
    /// Value before the change; `None` when the key was absent.
    pub old: Option<serde_json::Value>,
    /// Value after the change; `None` when the key was removed.
    pub new: Option<serde_json::Value>,
    /// Desired-state version after the change (for reported changes: the version in force).
    pub version: u64,
    pub comment: Option<String>,
    /// Outcome of verifying a desired change; `None` for reported changes.
    pub verification: Option<Verification>,
}

/// Result of checking that a desired change took effect on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationOutcome {
    /// Reported state matched desired (at the point's resolution).
    Verified,
    /// Did not match after all attempts, or the device said why not (see `reason`).
    Failed,
    /// Still waiting for a matching report.
    Pending,
    /// A newer desired change to the same key replaced this one before it was verified.
    Superseded,
}

impl VerificationOutcome {
    /// Lowercase name, as in JSON and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationOutcome::Verified => "verified",
            VerificationOutcome::Failed => "failed",
            VerificationOutcome::Pending => "pending",
            VerificationOutcome::Superseded => "superseded",
        }
    }
}

/// Verification state of one desired change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub outcome: VerificationOutcome,
    /// For a person: "device offline", "PLC refused: exception 0x02", "clamped to 12.0",
    /// "timed out after 5 attempts".
    pub reason: Option<String>,
    /// When the outcome was decided (`None` while pending).
    pub at: Option<DateTime<Utc>>,
    /// Checks made so far.
    pub attempts: u32,
}

/// A verification of one desired key at one version (device view).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyVerification {
    pub key: String,
    /// The desired version that set the key.
    pub version: u64,
    #[serde(flatten)]
    pub verification: Verification,
}

/// One telemetry sample (`seq`, `ts`, `values`), exactly as the edge sent it.
pub type TelemetryRow = Sample;

/// One device event (alarm, PLC error, applied setting, ...), exactly as the edge sent it.
pub type EventRow = Event;

/// A time window for history, telemetry and events. Both ends inclusive; `None` is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// List the newest first (so `limit` keeps the newest); telemetry and events only.
    pub newest_first: bool,
}

impl TimeRange {
    /// True when `ts` lies inside the window.
    pub fn contains(&self, ts: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| ts >= f) && self.to.is_none_or(|t| ts <= t)
    }
}

// ---------------------------------------------------------------------------------------
// tokens

/// A token as stored: its name, role and the SHA-256 of the secret. The secret itself is
/// never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewToken {
    /// Unique name, `[A-Za-z0-9_.@-]{1,64}`.
    pub name: String,
    pub role: Role,
    /// Lowercase hex SHA-256 of the token string (see [`crate::auth::hash_token`]).
    pub hash: String,
    pub created_at: DateTime<Utc>,
    /// Name of the token that created it (`bootstrap` for the first admin token).
    pub created_by: String,
    /// The customer whose devices alone it sees (`None`: staff).
    pub tenant: Option<String>,
}

/// A device to register (`POST /api/v1/devices`), with the hash of the password the API
/// made for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRegistration {
    pub id: DeviceId,
    pub tenant: Option<String>,
    /// Argon2id PHC string (see [`crate::auth::hash_device_password`]).
    pub password_hash: String,
    pub at: DateTime<Utc>,
    /// Name of the token that registered it.
    pub by: String,
}

/// A device's registration as the API shows it: never the password or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub id: DeviceId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// When its password was last set.
    pub credentials_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<DateTime<Utc>>,
}

/// What `GET /api/v1/tokens` lists: never the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// What authentication needs to know about a presented token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

// ---------------------------------------------------------------------------------------
// metrics

/// Figures for `GET /metrics`. Counters (`*_total`) only grow while the process runs;
/// gauges are current values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Gauge: device actors known (resident or restorable).
    pub devices: u64,
    /// Gauge: devices whose status is online.
    pub devices_online: u64,
    /// Counter: MQTT messages accepted by ingest, by channel (`telemetry`, `events`,
    /// `status`, `catalog`, `shadow/reported`, ...).
    pub ingest_messages_total: BTreeMap<String, u64>,
    /// Counter: telemetry samples stored (after de-duplication).
    pub ingest_samples_total: u64,
    /// Gauge: messages accepted per second over the last few seconds.
    pub ingest_rate_per_second: f64,
    /// Counter: telemetry samples and events dropped as duplicates of a stored (device, seq).
    pub dedup_dropped_total: u64,
    /// Counter: messages dropped because they could not be decoded or named an invalid
    /// device id or topic.
    pub malformed_dropped_total: u64,
    /// Counter: finished verifications by outcome (`verified`, `failed`, `superseded`).
    pub verifications_total: BTreeMap<VerificationOutcome, u64>,
    /// Gauge: verifications still pending.
    pub verifications_pending: u64,
    /// Store commit latency (group commits).
    pub store_commit: LatencySummary,
    /// Counter: group commits that failed.
    #[serde(default)]
    pub store_commit_failures_total: u64,
    /// Counter: ingested messages whose store commit failed.
    #[serde(default)]
    pub ingest_unstored_total: u64,
    /// Counter: telemetry samples stamped with an implausible time (a gateway clock not
    /// set: before any release, or over an hour ahead); stored all the same.
    #[serde(default)]
    pub ingest_implausible_time_total: u64,
    /// Counter: device connections the embedded broker's front refused, by reason
    /// (`unknown_device`, `wrong_password`, `no_password`, `retired`, …).
    #[serde(default)]
    pub mqtt_connections_refused_total: BTreeMap<String, u64>,
    /// Counter: device connections the front let through.
    #[serde(default)]
    pub mqtt_connections_accepted_total: u64,
    /// Counter: device connections closed for publishing outside their own topics.
    #[serde(default)]
    pub mqtt_publishes_refused_total: u64,
    /// Counter: subscription filters refused (outside the device's own topics).
    #[serde(default)]
    pub mqtt_subscriptions_refused_total: u64,
    /// Gauge: devices connected through the front now.
    #[serde(default)]
    pub mqtt_devices_connected: u64,
    /// Counter: staged telemetry rows that did not decode and were moved aside.
    #[serde(default)]
    pub store_quarantined_rows_total: u64,
    /// Counter: device actors' submissions refused by a lease's fence (a cluster).
    #[serde(default)]
    pub store_fenced_total: u64,
    /// Gauge: shard leases this cluster node holds.
    #[serde(default)]
    pub cluster_leases: u64,
}

/// A Prometheus-style summary of a latency.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of observations.
    pub count: u64,
    /// Sum of all observations, seconds.
    pub sum_seconds: f64,
    /// `(quantile, seconds)` pairs over a recent window, e.g. `(0.5, 0.0004)`, `(0.99, 0.003)`.
    pub quantiles: Vec<(f64, f64)>,
}

// ---------------------------------------------------------------------------------------
// schedules (semantics: `shiki_cloud::schedule`)

/// One slot as the API shows it (the document itself: `?include=document`).
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
    /// The document (`?documents=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<serde_json::Value>,
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
            document: Some(s.schedule.document.clone()),
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

//! Message types for every topic. JSON, tolerant on input: unknown fields are ignored and
//! unknown enum values decode to an `Unknown` variant, so an older peer can read a newer one.
//!
//! Every message carries `v`, the protocol version ([`PROTOCOL_VERSION`]); it is a short
//! name because gateways pay for every byte on a cellular link. In shadow messages
//! `version` is the shadow document version, as in the AWS IoT Device Shadow service.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The protocol version this crate writes.
pub const PROTOCOL_VERSION: u32 = 1;

pub(crate) fn protocol_version() -> u32 {
    PROTOCOL_VERSION
}

/// A JSON object as used in shadow documents.
pub type JsonMap = serde_json::Map<String, serde_json::Value>;

/// A point value in telemetry: a number, a boolean, or an enum label such as `"cooling"`.
///
/// On the wire it is the bare JSON value. Decoding is a direct visitor rather than
/// `#[serde(untagged)]`, which buffers each value and builds an error string for every
/// variant it rejects: telemetry carries millions of these.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PointValue {
    Bool(bool),
    Number(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for PointValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PointValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number, a boolean or a string")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<PointValue, E> {
                Ok(PointValue::Bool(v))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<PointValue, E> {
                Ok(PointValue::Number(v))
            }
            #[allow(clippy::cast_precision_loss)]
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PointValue, E> {
                Ok(PointValue::Number(v as f64))
            }
            #[allow(clippy::cast_precision_loss)]
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PointValue, E> {
                Ok(PointValue::Number(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PointValue, E> {
                Ok(PointValue::Text(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<PointValue, E> {
                Ok(PointValue::Text(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl From<f64> for PointValue {
    fn from(v: f64) -> Self {
        PointValue::Number(v)
    }
}

impl From<bool> for PointValue {
    fn from(v: bool) -> Self {
        PointValue::Bool(v)
    }
}

impl From<&str> for PointValue {
    fn from(v: &str) -> Self {
        PointValue::Text(v.to_owned())
    }
}

impl From<PointValue> for serde_json::Value {
    fn from(v: PointValue) -> Self {
        match v {
            PointValue::Bool(b) => serde_json::Value::Bool(b),
            PointValue::Number(n) => serde_json::Number::from_f64(n)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            PointValue::Text(s) => serde_json::Value::String(s),
        }
    }
}

// ---------------------------------------------------------------------------------------
// telemetry and events

/// One sample of every readable point. `seq` counts telemetry samples per device, from 1,
/// without gaps; the cloud de-duplicates on (device, seq).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub seq: u64,
    pub ts: DateTime<Utc>,
    pub values: BTreeMap<String, PointValue>,
}

/// `telemetry`: a batch of samples, oldest first. Live batches are small; backlog replay
/// batches are large and are gzip-compressed when that saves bytes (see [`crate::encode_compressed`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetryBatch {
    #[serde(default = "protocol_version")]
    pub v: u32,
    /// True when the batch comes from the offline backlog rather than live sampling.
    #[serde(default)]
    pub backlog: bool,
    pub samples: Vec<Sample>,
}

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The PLC raised an alarm (`alarm_code` went non-zero).
    Alarm,
    /// The PLC cleared its alarm.
    AlarmCleared,
    /// A Modbus read or write failed (timeout, exception, lost connection).
    PlcError,
    /// The PLC link came back after errors.
    PlcRecovered,
    /// A setting was written to the PLC and read back.
    SettingApplied,
    /// A setting could not be applied (refused by the PLC, out of limits).
    ControlError,
    /// An operator override reached its end and the setting went back to the schedule.
    OverrideExpired,
    /// The yearly schedule changed a setting.
    ScheduleTransition,
    /// A schedule was installed, switched or refused.
    ScheduleChanged,
    /// The outbox reached its disk quota and dropped old records (counted in `data`).
    DataDropped,
    /// The agent started.
    Boot,
    /// An OTA update step.
    Ota,
    /// The gateway's wall clock stepped (an NTP correction, an RTC reset after a power
    /// cut); `data` holds the step in seconds and the times before and after.
    ClockStep,
    #[serde(other)]
    Unknown,
}

/// How bad an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
    #[serde(other)]
    Unknown,
}

/// One event. `seq` counts events per device, from 1, independent of telemetry `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub ts: DateTime<Utc>,
    pub kind: EventKind,
    pub severity: Severity,
    /// One line for a person: "modbus read of holding register 40012 timed out after 2 s".
    pub message: String,
    /// Structured details (register, point, value, cause, counts).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

/// `events`: a batch of events, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventBatch {
    #[serde(default = "protocol_version")]
    pub v: u32,
    pub events: Vec<Event>,
}

// ---------------------------------------------------------------------------------------
// status and catalog

/// Connection state on the retained `status` topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Connectivity {
    Online,
    Offline,
    #[serde(other)]
    Unknown,
}

/// `status` (retained). The edge sets an `offline` status as its MQTT Last Will.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    #[serde(default = "protocol_version")]
    pub v: u32,
    pub state: Connectivity,
    /// Edge software version, e.g. `0.1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<DateTime<Utc>>,
}

impl Status {
    /// The Last Will payload an edge registers when it connects.
    pub fn last_will(software_version: &str, boot_time: DateTime<Utc>) -> Self {
        Status {
            v: PROTOCOL_VERSION,
            state: Connectivity::Offline,
            software_version: Some(software_version.to_owned()),
            boot_time: Some(boot_time),
            ts: None,
        }
    }
}

/// Whether a point is measured or set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointRole {
    Reading,
    Setting,
    #[serde(other)]
    Unknown,
}

/// The type of a point's value as the cloud sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    Bool,
    Number,
    /// One of `options`.
    Enum,
    #[serde(other)]
    Unknown,
}

/// One point of the device's point list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointInfo {
    pub name: String,
    pub role: PointRole,
    pub kind: ValueKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default)]
    pub writable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Smallest step the PLC can hold (the register scale), e.g. 0.1. Values are compared
    /// at this resolution, never with float equality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<f64>,
    /// Labels of an enum point, e.g. `["cooling", "heating"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// `catalog` (retained): the device's point list, sent on connect and on change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    #[serde(default = "protocol_version")]
    pub v: u32,
    pub points: Vec<PointInfo>,
}

impl Catalog {
    pub fn point(&self, name: &str) -> Option<&PointInfo> {
        self.points.iter().find(|p| p.name == name)
    }
}

// ---------------------------------------------------------------------------------------
// shadow

/// Per-key metadata of a shadow document. `until` is the end of an operator override's
/// lifetime; without it, the override lasts until the next scheduled transition that
/// touches the key (or forever when no schedule is active).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMetadata {
    pub timestamp: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// Desired keys: the desired version in which the key was last set. An override the
    /// edge reports expired is removed only if the key was not set again after it. Absent
    /// in reported metadata and in documents written before versions were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// `metadata` of a shadow document: one entry per top-level key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowMetadata {
    #[serde(default)]
    pub desired: BTreeMap<String, KeyMetadata>,
    #[serde(default)]
    pub reported: BTreeMap<String, KeyMetadata>,
}

/// `state` of a full shadow document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowState {
    #[serde(default)]
    pub desired: JsonMap,
    #[serde(default)]
    pub reported: JsonMap,
    #[serde(default, skip_serializing_if = "JsonMap::is_empty")]
    pub delta: JsonMap,
}

/// `shadow/get` (edge→cloud): asks for the full document, answered on `shadow/document`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowGet {
    #[serde(default = "protocol_version")]
    pub v: u32,
    #[serde(
        rename = "clientToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_token: Option<String>,
}

/// `shadow/document` (cloud→edge): the full shadow, as AWS IoT's `get/accepted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowDocument {
    #[serde(default = "protocol_version")]
    pub v: u32,
    pub state: ShadowState,
    #[serde(default)]
    pub metadata: ShadowMetadata,
    /// Desired-state version: incremented by the device actor on every desired change.
    pub version: u64,
    pub timestamp: DateTime<Utc>,
    #[serde(
        rename = "clientToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_token: Option<String>,
}

/// `shadow/delta` (cloud→edge): desired keys that differ from reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowDelta {
    #[serde(default = "protocol_version")]
    pub v: u32,
    /// The delta; a key whose desired value was removed appears as `null`.
    pub state: JsonMap,
    /// Metadata of the delta's desired keys (timestamp, override `until`).
    #[serde(default)]
    pub metadata: BTreeMap<String, KeyMetadata>,
    pub version: u64,
    pub timestamp: DateTime<Utc>,
    #[serde(
        rename = "clientToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_token: Option<String>,
}

/// Where the value a setting holds came from (precedence: clamped by safety limits >
/// operator override > schedule > default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingSource {
    Override,
    Schedule,
    Default,
    /// The requested value was outside the point's limits and was clamped.
    Clamped,
    /// The PLC or the edge refused the requested value; the PLC keeps its old value.
    Refused,
    #[serde(other)]
    Unknown,
}

/// How one setting stands on the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingStatus {
    pub source: SettingSource,
    /// The value that was asked for, when it differs from what the PLC holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<serde_json::Value>,
    /// For a person: "clamped to 12.0", "PLC refused: exception 0x02".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// An override the edge ended by itself (its `until` passed, or the schedule moved on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpiredOverride {
    pub key: String,
    pub at: DateTime<Utc>,
    /// The desired version in which the override was set.
    pub desired_version: u64,
}

/// The schedule a device runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveSchedule {
    pub id: String,
    pub hash: String,
}

/// `state` of a reported update.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportedState {
    pub reported: JsonMap,
}

/// `shadow/reported` (edge→cloud): what the PLC really holds, read back after writing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportedUpdate {
    #[serde(default = "protocol_version")]
    pub v: u32,
    pub state: ReportedState,
    /// The desired version the edge has applied (None before it saw any desired document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_version: Option<u64>,
    /// Per setting: where its value came from and why it differs from what was asked.
    #[serde(default)]
    pub settings: BTreeMap<String, SettingStatus>,
    /// Overrides the edge ended since its last report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expired: Vec<ExpiredOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ActiveSchedule>,
    pub timestamp: DateTime<Utc>,
    #[serde(
        rename = "clientToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_token: Option<String>,
}

// ---------------------------------------------------------------------------------------
// schedule

/// Which slot a schedule goes to on the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleSlot {
    Current,
    Next,
    #[serde(other)]
    Unknown,
}

/// `schedule/set` (cloud→edge): a yearly schedule document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSet {
    #[serde(default = "protocol_version")]
    pub v: u32,
    pub schedule_id: String,
    /// SHA-256 of the document's canonical JSON, lowercase hex.
    pub hash: String,
    pub slot: ScheduleSlot,
    /// The schedule document itself; its model and validation live in `shiki-shared`.
    pub document: serde_json::Value,
}

/// Outcome of a schedule push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckResult {
    Accepted,
    Rejected,
    #[serde(other)]
    Unknown,
}

/// `schedule/ack` (edge→cloud): the edge stored (or refused) a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleAck {
    #[serde(default = "protocol_version")]
    pub v: u32,
    pub schedule_id: String,
    pub hash: String,
    pub result: AckResult,
    /// Why it was refused (validation problems, hash mismatch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub ts: DateTime<Utc>,
}

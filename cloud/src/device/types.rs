//! What the device state machine ([`DeviceState`](super::DeviceState)) is configured with,
//! what its inputs cause ([`Effects`]) and the view it gives the API.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use shiki_cloud_model::shadow::ShadowLimits;
use shiki_proto::{
    Catalog, DeviceId, JsonMap, Sample, SettingStatus, ShadowDelta, ShadowDocument, ShadowMetadata,
    Status,
};

use crate::config::VerificationConfig;
use crate::notifier::Alert;
use crate::store::{VerificationRecord, Write};

/// Settings of one device actor.
#[derive(Debug, Clone, Copy)]
pub struct DeviceConfig {
    pub verification: VerificationConfig,
    /// An offline device raises an alert after this long.
    pub offline_after: Duration,
    /// Size and nesting limits of each device's shadow.
    pub shadow_limits: ShadowLimits,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            verification: VerificationConfig::default(),
            offline_after: Duration::from_secs(600),
            shadow_limits: ShadowLimits::DEFAULT,
        }
    }
}

/// A message for the device's edge.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    Document(ShadowDocument),
    Delta(ShadowDelta),
    /// A yearly schedule for the edge (`schedule/set`).
    ScheduleSet(Box<shiki_proto::ScheduleSet>),
    /// The device's pending OTA jobs (`jobs/notify`), from the jobs actor.
    JobNotify(Box<shiki_proto::JobNotify>),
}

/// What an input caused.
#[derive(Debug, Default)]
pub struct Effects {
    pub writes: Vec<Write>,
    pub publish: Vec<Outbound>,
    pub alerts: Vec<Alert>,
}

/// The read-only view of a device for the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceView {
    pub id: DeviceId,
    pub online: bool,
    pub last_seen: Option<DateTime<Utc>>,
    pub version: u64,
    pub desired: JsonMap,
    pub reported: JsonMap,
    pub delta: JsonMap,
    pub status: Option<Status>,
    pub catalog: Option<Catalog>,
    pub last_seq: u64,
    pub last_telemetry: Option<Sample>,
    pub pending_verifications: Vec<VerificationRecord>,
    pub last_verification: Option<VerificationRecord>,
    pub applied_version: Option<u64>,
    pub metadata: ShadowMetadata,
    pub settings: BTreeMap<String, SettingStatus>,
}

/// A sample as JSON text known to decode as a [`Sample`] (checked with
/// [`Sample::check_json`]): how the ingest hands a device actor its newest telemetry. The
/// ingest checks every sample anyway, so nothing builds the `Sample` until someone looks
/// ([`SampleJson::decode`]). The text is a slice of the MQTT payload; the actor copies it
/// into the buffer it keeps rather than holding the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleJson {
    seq: u64,
    json: bytes::Bytes,
}

impl SampleJson {
    /// `json`, which [`Sample::check_json`] accepted with `seq`.
    pub(crate) fn checked(seq: u64, json: bytes::Bytes) -> Self {
        Self { seq, json }
    }

    /// The text of `sample`.
    pub fn of(sample: &Sample) -> Result<Self, serde_json::Error> {
        Ok(Self {
            seq: sample.seq,
            json: serde_json::to_vec(sample)?.into(),
        })
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The JSON text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.json
    }

    /// The sample.
    pub fn decode(&self) -> Option<Sample> {
        decode_checked(self.seq, &self.json)
    }
}

/// A sample from text that was checked to decode. `None` cannot happen; it is logged if it
/// does.
pub(crate) fn decode_checked(seq: u64, json: &[u8]) -> Option<Sample> {
    serde_json::from_slice(json)
        .inspect_err(|e| {
            tracing::error!(seq, error = %e, "a checked sample does not decode");
        })
        .ok()
}

/// `sample`'s numbers at their point's resolution in `catalog` (an older edge sent raw
/// values such as `24.400000000000002`; the API shows `24.4`, as newer edges send it).
/// Points without a catalog entry or resolution are left as they are.
pub fn at_resolution(sample: &mut shiki_proto::Sample, catalog: Option<&shiki_proto::Catalog>) {
    let Some(catalog) = catalog else { return };
    for (name, value) in &mut sample.values {
        if let shiki_proto::PointValue::Number(n) = value
            && let Some(point) = catalog.point(name)
        {
            *n = shiki_shared::resolution::round_to(*n, point.resolution);
        }
    }
}

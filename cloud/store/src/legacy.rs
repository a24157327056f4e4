//! Stored formats written by older versions of the cloud, read into today's records.
//!
//! # Device shadows before the shared model
//! Until the cloud used `shiki_cloud_model::shadow::Shadow`, a [`DeviceSnapshot`]'s `shadow` was
//! the cloud's own copy, serialised as
//!
//! ```json
//! {"desired": {...}, "reported": {...}, "version": 7,
//!  "desired_meta": {"sp": {"timestamp": "…", "until": "…", "version": 6}},
//!  "reported_meta": {"sp": {"timestamp": "…", "version": 7}}}
//! ```
//!
//! The shared model keeps the same maps and version and one `metadata` object with
//! `desired` and `reported` sections of `shiki_proto::KeyMetadata`. An old desired entry
//! is a valid `KeyMetadata` as it is (its `version` is the per-key desired version the
//! shared model keeps); an old reported entry loses its `version` (the shadow version at
//! the time of the report, which the shared model does not keep). Snapshots are rewritten
//! in the new format the next time the device's state is saved.
//!
//!
//! # History actors before roles and device ids
//! A history entry's `actor` was stored as `{"kind": "api_key", "name": "ops"}` (no role)
//! and `{"kind": "device"}` (no id). Today's [`AuthorRecord`] adds `role` to API keys and
//! the device id as `name`; an old API-key entry reads with no role, an old device entry
//! with the entry's own `device` (the only device that can report its own changes).
//!
//! [`DeviceSnapshot`]: super::DeviceSnapshot

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use shiki_cloud_model::shadow::Shadow;
use shiki_proto::DeviceId;

use shiki_cloud_model::AuthorRecord;

use super::types::{HistoryEntry, Side};

/// `deserialize_with` for `DeviceSnapshot::shadow`: today's format, or the old cloud one.
pub(super) fn shadow<'de, D: Deserializer<'de>>(de: D) -> Result<Shadow, D::Error> {
    let mut value = Value::deserialize(de)?;
    if let Value::Object(map) = &mut value
        && (map.contains_key("desired_meta") || map.contains_key("reported_meta"))
    {
        upgrade_cloud_shadow(map);
    }
    serde_json::from_value(value).map_err(serde::de::Error::custom)
}

/// Moves `desired_meta` / `reported_meta` into `metadata.desired` / `metadata.reported`.
fn upgrade_cloud_shadow(map: &mut Map<String, Value>) {
    let desired = map
        .remove("desired_meta")
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut reported = map
        .remove("reported_meta")
        .unwrap_or_else(|| Value::Object(Map::new()));
    if let Value::Object(keys) = &mut reported {
        for meta in keys.values_mut() {
            if let Value::Object(fields) = meta {
                fields.remove("version");
            }
        }
    }
    let mut metadata = Map::new();
    metadata.insert("desired".into(), desired);
    metadata.insert("reported".into(), reported);
    map.insert("metadata".into(), Value::Object(metadata));
}

/// A stored [`HistoryEntry`], with its actor in any stored format.
#[derive(Debug, Deserialize)]
pub(super) struct StoredHistoryEntry {
    id: u64,
    device: DeviceId,
    ts: DateTime<Utc>,
    actor: AuthorRecord,
    side: Side,
    key: String,
    old: Value,
    new: Value,
    version: u64,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    verification_id: Option<u64>,
}

impl From<StoredHistoryEntry> for HistoryEntry {
    fn from(e: StoredHistoryEntry) -> Self {
        HistoryEntry {
            actor: e.actor.into_author(&e.device),
            id: e.id,
            device: e.device,
            ts: e.ts,
            side: e.side,
            key: e.key,
            old: e.old,
            new: e.new,
            version: e.version,
            comment: e.comment,
            verification_id: e.verification_id,
        }
    }
}

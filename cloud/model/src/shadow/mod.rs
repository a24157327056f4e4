//! The device shadow: desired and reported state, per-key metadata, the desired version,
//! the delta between them, and the limits every change must respect. Pure functions; each
//! of the cloud's device actors holds one [`Shadow`] (the edge keeps only its desired
//! overrides, in `shiki-edge`'s own shadow actor).
//!
//! ```
//! use chrono::Utc;
//! use serde_json::json;
//! use shiki_cloud_model::shadow::{DesiredChange, Shadow};
//!
//! let now = Utc::now();
//! let mut shadow = Shadow::default();
//! let settings = json!({"chw_setpoint_c": 7.0}).as_object().cloned().unwrap();
//! let outcome = shadow.apply_desired(DesiredChange::new(settings).expecting(0), now).unwrap();
//! assert_eq!(outcome.version, 1);
//!
//! let reported = json!({"chw_setpoint_c": 7.04}).as_object().cloned().unwrap();
//! shadow.apply_reported(reported, now).unwrap();
//! assert!(shadow.delta_with(&|_| Some(0.1)).is_empty()); // equal at 0.1 resolution
//! assert!(!shadow.delta().is_empty()); // not equal without one
//! ```
//!
//! # Decisions
//! - **Every accepted desired change increments the version by exactly one**, even one that
//!   changes no value (as AWS IoT does): the version counts operator actions, so a device
//!   that reports `applied_version` can be matched to the action it applied.
//! - **`null` deletes a key**, at any depth. Objects are merged field by field (AWS IoT's
//!   partial update); any other value replaces the old one. Deleting an absent key is not
//!   a change.
//! - Desired metadata is refreshed for every key a change names (a new `until` replaces
//!   the old one, no `until` clears it). **Reported metadata changes only when the value
//!   changes**, so applying the same report twice changes nothing the second time.
//! - A change that breaks a limit or names a stale version is refused and leaves the shadow
//!   exactly as it was. Depth is checked on the keys the change sets; size on desired plus
//!   reported, except that a change that shrinks a shadow already over the size limit
//!   (limits lowered since) passes, so keys can always be deleted.
//! - Reported updates are checked against the limits too, so
//!   [`Shadow::apply_reported`] returns a `Result`.
//! - A desired key deleted with `null` is remembered until the device acknowledges a version
//!   at or after the deletion ([`Shadow::acknowledge`]); until then [`Shadow::delta_message`]
//!   carries it as `null` so the edge drops its override.
//! - **Every desired key remembers the version that last set it** (`metadata.desired[key]
//!   .version`, refreshed with the rest of its metadata). When the edge reports that an
//!   override expired, [`Shadow::remove_expired`] removes the key only if it was not set
//!   again after the version the edge had; a newer override stays. A key whose metadata has
//!   no version (written before versions were kept) counts as set in version 0.
//! - Reported changes can be listed at each point's resolution
//!   ([`Shadow::apply_reported_with`]): the new value is stored, but a value that moved by
//!   less than half the resolution is not a change for history.

mod change;
mod compare;
mod limits;
mod merge;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shiki_proto::{
    JsonMap, KeyMetadata, PROTOCOL_VERSION, ReportedUpdate, ShadowDelta, ShadowDocument,
    ShadowMetadata, ShadowState,
};

pub use change::{DesiredChange, DesiredOutcome, KeyChange, ReportedOutcome};
pub use compare::{catalog_resolution, delta_of, values_match};
pub use limits::ShadowLimits;

use merge::merge_section;

/// Why a shadow change was refused. The shadow is unchanged after any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShadowError {
    /// The change named a desired version other than the current one (optimistic
    /// concurrency, as AWS IoT's `409 Version conflict`).
    #[error(
        "version conflict: the change expects desired version {expected}, but the shadow is at version {current}"
    )]
    VersionConflict { expected: u64, current: u64 },
    /// A value is nested deeper than [`ShadowLimits::max_depth`].
    #[error("`{key}` is nested deeper than the limit of {limit} levels")]
    TooDeep { key: String, limit: usize },
    /// Desired plus reported would serialise to more than [`ShadowLimits::max_bytes`].
    #[error(
        "the shadow would be {size} bytes (desired + reported), over the limit of {limit} bytes"
    )]
    TooLarge { size: usize, limit: usize },
    /// The override's end is not after the time of the change.
    #[error("override end {until} is not after the time of the change ({now})")]
    UntilNotInFuture {
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    },
}

/// A device shadow. Serialisable so the cloud can persist it; the limits are configuration
/// and are not persisted (set them again with [`Shadow::set_limits`] after loading).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Shadow {
    #[serde(default)]
    desired: JsonMap,
    #[serde(default)]
    reported: JsonMap,
    #[serde(default)]
    metadata: ShadowMetadata,
    #[serde(default)]
    version: u64,
    /// Desired keys deleted with `null` → the version that deleted them, kept until the
    /// device acknowledges that version.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    removed: BTreeMap<String, u64>,
    /// The newest desired version the device has said it applied (0: none yet).
    #[serde(default, skip_serializing_if = "is_zero")]
    acknowledged: u64,
    #[serde(skip)]
    limits: ShadowLimits,
}

impl Shadow {
    /// An empty shadow at version 0 with the given limits.
    pub fn new(limits: ShadowLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// A shadow holding what a full document says (the edge builds its copy this way).
    /// Limits are the defaults; the document is not checked against them.
    pub fn from_document(doc: &ShadowDocument) -> Self {
        Self {
            desired: doc.state.desired.clone(),
            reported: doc.state.reported.clone(),
            metadata: doc.metadata.clone(),
            version: doc.version,
            ..Self::default()
        }
    }

    /// Desired state.
    pub fn desired(&self) -> &JsonMap {
        &self.desired
    }

    /// Reported state.
    pub fn reported(&self) -> &JsonMap {
        &self.reported
    }

    /// Per-key metadata of both sections.
    pub fn metadata(&self) -> &ShadowMetadata {
        &self.metadata
    }

    /// The desired version: 0 for a new shadow, +1 for every accepted desired change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The limits changes are checked against.
    pub fn limits(&self) -> ShadowLimits {
        self.limits
    }

    /// Changes the limits for future changes (the current state is not re-checked).
    pub fn set_limits(&mut self, limits: ShadowLimits) {
        self.limits = limits;
    }

    /// Applies a desired change; see the module docs for the rules.
    ///
    /// # Errors
    /// [`ShadowError::VersionConflict`] for a stale `expected_version`,
    /// [`ShadowError::UntilNotInFuture`] when `until <= now`, [`ShadowError::TooDeep`] /
    /// [`ShadowError::TooLarge`] when the result would break a limit. The shadow is
    /// unchanged on error.
    pub fn apply_desired(
        &mut self,
        change: DesiredChange,
        now: DateTime<Utc>,
    ) -> Result<DesiredOutcome, ShadowError> {
        if let Some(expected) = change.expected_version
            && expected != self.version
        {
            return Err(ShadowError::VersionConflict {
                expected,
                current: self.version,
            });
        }
        if let Some(until) = change.until
            && until <= now
        {
            return Err(ShadowError::UntilNotInFuture { until, now });
        }
        let mut desired = self.desired.clone();
        let changes = merge_section(&mut desired, &change.settings);
        self.check_limits(&changes, &desired, &self.reported)?;

        // Accepted: commit.
        self.desired = desired;
        self.version += 1;
        for c in &changes {
            if c.new.is_some() {
                self.metadata.desired.insert(
                    c.key.clone(),
                    KeyMetadata {
                        timestamp: now,
                        until: change.until,
                        version: Some(self.version),
                    },
                );
                self.removed.remove(&c.key);
            } else {
                self.metadata.desired.remove(&c.key);
                self.removed.insert(c.key.clone(), self.version);
            }
        }
        Ok(DesiredOutcome {
            version: self.version,
            at: now,
            changes,
        })
    }

    /// Applies a reported update (what the PLC really holds). `null` deletes a key. Only
    /// keys whose value changes get a new metadata timestamp, so the same report applied
    /// twice changes nothing the second time. Does not change the desired version.
    ///
    /// # Errors
    /// [`ShadowError::TooDeep`] / [`ShadowError::TooLarge`]; the shadow is unchanged then.
    pub fn apply_reported(
        &mut self,
        reported: JsonMap,
        now: DateTime<Utc>,
    ) -> Result<ReportedOutcome, ShadowError> {
        let changes = self.merge_reported(reported, now)?;
        Ok(ReportedOutcome { changes })
    }

    /// As [`Shadow::apply_reported`], but the outcome lists only keys whose value changed
    /// at `resolution(key)` (see [`values_match`]): 7.0 → 7.04 at resolution 0.1 stores
    /// 7.04 (and refreshes its timestamp) without listing it, so history is not flooded
    /// with measurement noise.
    ///
    /// # Errors
    /// As [`Shadow::apply_reported`].
    pub fn apply_reported_with(
        &mut self,
        reported: JsonMap,
        now: DateTime<Utc>,
        resolution: &dyn Fn(&str) -> Option<f64>,
    ) -> Result<ReportedOutcome, ShadowError> {
        let mut changes = self.merge_reported(reported, now)?;
        changes.retain(|c| !c.is_same_at(resolution(&c.key)));
        Ok(ReportedOutcome { changes })
    }

    /// Merges a reported update; returns every key whose stored value changed.
    fn merge_reported(
        &mut self,
        reported: JsonMap,
        now: DateTime<Utc>,
    ) -> Result<Vec<KeyChange>, ShadowError> {
        let mut next = self.reported.clone();
        let mut changes = merge_section(&mut next, &reported);
        changes.retain(|c| !c.is_noop());
        if changes.is_empty() {
            return Ok(changes);
        }
        self.check_limits(&changes, &self.desired, &next)?;
        self.reported = next;
        for c in &changes {
            if c.new.is_some() {
                self.metadata.reported.insert(
                    c.key.clone(),
                    KeyMetadata {
                        timestamp: now,
                        until: None,
                        version: None,
                    },
                );
            } else {
                self.metadata.reported.remove(&c.key);
            }
        }
        Ok(changes)
    }

    /// Applies a `shadow/reported` message: its reported state ([`Shadow::apply_reported`])
    /// and, when that is accepted, its `applied_version` ([`Shadow::acknowledge`]). Expired
    /// overrides and setting sources are left to the caller, which records them in history.
    ///
    /// # Errors
    /// As [`Shadow::apply_reported`]; nothing is acknowledged then.
    pub fn apply_reported_update(
        &mut self,
        update: &ReportedUpdate,
        now: DateTime<Utc>,
    ) -> Result<ReportedOutcome, ShadowError> {
        let outcome = self.apply_reported(update.state.reported.clone(), now)?;
        if let Some(applied) = update.applied_version {
            self.acknowledge(applied);
        }
        Ok(outcome)
    }

    /// [`Shadow::apply_reported_update`] with changes listed at the given resolutions
    /// (see [`Shadow::apply_reported_with`]).
    ///
    /// # Errors
    /// As [`Shadow::apply_reported`]; nothing is acknowledged then.
    pub fn apply_reported_update_with(
        &mut self,
        update: &ReportedUpdate,
        now: DateTime<Utc>,
        resolution: &dyn Fn(&str) -> Option<f64>,
    ) -> Result<ReportedOutcome, ShadowError> {
        let outcome = self.apply_reported_with(update.state.reported.clone(), now, resolution)?;
        if let Some(applied) = update.applied_version {
            self.acknowledge(applied);
        }
        Ok(outcome)
    }

    /// Removes one desired key (an override that expired) and bumps the version. Returns
    /// `None`, changing nothing, when the key is not desired. No `null` is sent to the
    /// device for it: the device ended the override itself.
    pub fn remove_desired(&mut self, key: &str, now: DateTime<Utc>) -> Option<DesiredOutcome> {
        let old = self.desired.remove(key)?;
        self.version += 1;
        self.metadata.desired.remove(key);
        Some(DesiredOutcome {
            version: self.version,
            at: now,
            changes: vec![KeyChange {
                key: key.to_owned(),
                old: Some(old),
                new: None,
            }],
        })
    }

    /// The desired version in which `key` was last set (`None` when it is not desired; 0
    /// when its metadata predates per-key versions).
    pub fn set_in_version(&self, key: &str) -> Option<u64> {
        self.desired.get(key)?;
        Some(
            self.metadata
                .desired
                .get(key)
                .and_then(|m| m.version)
                .unwrap_or(0),
        )
    }

    /// The edge reports that the override of `key` it received in desired version
    /// `desired_version` ended. Removes the key as [`Shadow::remove_desired`] does, unless
    /// it was set again after that version (the newer override stays). Returns `None`,
    /// changing nothing, when the key is not desired or was set again since.
    pub fn remove_expired(
        &mut self,
        key: &str,
        desired_version: u64,
        now: DateTime<Utc>,
    ) -> Option<DesiredOutcome> {
        if self.set_in_version(key)? > desired_version {
            return None;
        }
        self.remove_desired(key, now)
    }

    /// The device has applied desired version `applied_version`: forget deletions it has
    /// seen, so they leave [`Shadow::delta_message`].
    pub fn acknowledge(&mut self, applied_version: u64) {
        self.acknowledged = self.acknowledged.max(applied_version);
        self.removed.retain(|_, v| *v > applied_version);
    }

    /// The newest desired version the device has acknowledged applying (0: none).
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged
    }

    /// Desired keys whose override `until` is at or before `now`.
    pub fn expired_overrides(&self, now: DateTime<Utc>) -> Vec<String> {
        self.metadata
            .desired
            .iter()
            .filter(|(k, m)| m.until.is_some_and(|u| u <= now) && self.desired.contains_key(*k))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Desired keys that reported does not match, numbers compared within
    /// [`DEFAULT_RELATIVE_TOLERANCE`](shiki_shared::resolution::DEFAULT_RELATIVE_TOLERANCE). Prefer [`Shadow::delta_with`] when point resolutions are known.
    pub fn delta(&self) -> JsonMap {
        self.delta_with(&|_| None)
    }

    /// Desired keys that reported does not match, numbers of key `k` compared at
    /// `resolution(k)` (see [`values_match`]). Nested objects give nested deltas of only
    /// the fields that differ.
    pub fn delta_with(&self, resolution: &dyn Fn(&str) -> Option<f64>) -> JsonMap {
        delta_of(&self.desired, &self.reported, resolution)
    }

    /// True when reported matches every desired key at the given resolutions.
    pub fn is_in_sync(&self, resolution: &dyn Fn(&str) -> Option<f64>) -> bool {
        self.desired.iter().all(|(k, v)| {
            self.reported
                .get(k)
                .is_some_and(|r| values_match(v, r, resolution(k)))
        })
    }

    /// The full document, as sent on `shadow/document`.
    pub fn document(&self, now: DateTime<Utc>) -> ShadowDocument {
        self.document_with(now, &|_| None)
    }

    /// The full document with the delta computed at the given resolutions.
    pub fn document_with(
        &self,
        now: DateTime<Utc>,
        resolution: &dyn Fn(&str) -> Option<f64>,
    ) -> ShadowDocument {
        ShadowDocument {
            v: PROTOCOL_VERSION,
            state: ShadowState {
                desired: self.desired.clone(),
                reported: self.reported.clone(),
                delta: self.delta_with(resolution),
            },
            metadata: self.metadata.clone(),
            version: self.version,
            timestamp: now,
            client_token: None,
        }
    }

    /// The `shadow/delta` message, or `None` when there is nothing to send: desired keys
    /// reported does not match, desired keys set in a version the device has not
    /// acknowledged (an override to the value the plant already holds must still reach
    /// the edge, with its `until`, or the schedule would overwrite it), plus unacknowledged
    /// deletions as `null`.
    pub fn delta_message(&self, now: DateTime<Utc>) -> Option<ShadowDelta> {
        self.delta_message_with(now, &|_| None)
    }

    /// [`Shadow::delta_message`] with numbers compared at the given resolutions.
    pub fn delta_message_with(
        &self,
        now: DateTime<Utc>,
        resolution: &dyn Fn(&str) -> Option<f64>,
    ) -> Option<ShadowDelta> {
        let mut state = self.delta_with(resolution);
        for (key, meta) in &self.metadata.desired {
            if meta.version.is_some_and(|v| v > self.acknowledged)
                && let Some(value) = self.desired.get(key)
            {
                state.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
        for key in self.removed.keys() {
            state.entry(key.clone()).or_insert(Value::Null);
        }
        if state.is_empty() {
            return None;
        }
        let metadata = state
            .keys()
            .filter_map(|k| Some((k.clone(), self.metadata.desired.get(k)?.clone())))
            .collect();
        Some(ShadowDelta {
            v: PROTOCOL_VERSION,
            state,
            metadata,
            version: self.version,
            timestamp: now,
            client_token: None,
        })
    }
}

impl Shadow {
    /// Checks a candidate state: the depth of every key the change set, and the size
    /// (which may exceed the limit only if it shrank).
    fn check_limits(
        &self,
        changes: &[KeyChange],
        desired: &JsonMap,
        reported: &JsonMap,
    ) -> Result<(), ShadowError> {
        self.limits.check_depth(
            changes
                .iter()
                .filter_map(|c| Some((&c.key, c.new.as_ref()?))),
        )?;
        self.limits.check_size(
            desired,
            reported,
            limits::size_of(&self.desired, &self.reported),
        )
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(v: &u64) -> bool {
    *v == 0
}

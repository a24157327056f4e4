//! The cloud's device shadow, with the semantics of `shiki_shared::shadow::Shadow` (and its
//! [`values_match`]) plus what the cloud persists per key: the desired version that last
//! set it (an override the edge reports expired is only removed from desired if it was not
//! set again since). It stays separate until the shared metadata carries that version and
//! stored `DeviceSnapshot`s are migrated: desired/reported JSON maps, a version incremented on
//! every desired change, optimistic concurrency, `null` deletes, per-key metadata with an
//! override `until`, and a delta compared at the catalog's resolution (never float `==`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shiki_proto::{Catalog, JsonMap, KeyMetadata, ShadowMetadata, ShadowState};

/// Per-key metadata kept by the cloud (a superset of the wire [`KeyMetadata`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMeta {
    pub timestamp: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// Desired version in which the key was last set.
    #[serde(default)]
    pub version: u64,
}

impl KeyMeta {
    fn wire(&self) -> KeyMetadata {
        KeyMetadata {
            timestamp: self.timestamp,
            until: self.until,
        }
    }
}

/// A desired change named a version that is no longer current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("desired state is at version {current}, the change expected version {expected}")]
pub struct VersionConflict {
    pub expected: u64,
    pub current: u64,
}

/// One key that changed: `old`/`new` are `null` for an absent key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyChange {
    pub key: String,
    pub old: Value,
    pub new: Value,
}

/// The shadow of one device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Shadow {
    pub desired: JsonMap,
    pub reported: JsonMap,
    pub version: u64,
    #[serde(default)]
    pub desired_meta: BTreeMap<String, KeyMeta>,
    #[serde(default)]
    pub reported_meta: BTreeMap<String, KeyMeta>,
}

/// Values are compared at a point's resolution, never with float `==` (the shared rule).
pub use shiki_shared::shadow::values_match;

fn resolution_of(catalog: Option<&Catalog>, key: &str) -> Option<f64> {
    catalog
        .and_then(|c| c.point(key))
        .and_then(|p| p.resolution)
}

impl Shadow {
    /// Applies a desired change. `null` removes a key. Keys whose value does not change are
    /// left out of the result; the version is bumped when anything changed.
    pub fn apply_desired(
        &mut self,
        changes: &JsonMap,
        expected_version: Option<u64>,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<KeyChange>, VersionConflict> {
        if let Some(expected) = expected_version
            && expected != self.version
        {
            return Err(VersionConflict {
                expected,
                current: self.version,
            });
        }
        let version = self.version + 1;
        let mut out = Vec::new();
        for (key, new) in changes {
            let old = self.desired.get(key).cloned().unwrap_or(Value::Null);
            let same_until = self.desired_meta.get(key).and_then(|m| m.until) == until;
            if old == *new && (new.is_null() || same_until) {
                continue;
            }
            if new.is_null() {
                self.desired.remove(key);
                self.desired_meta.remove(key);
            } else {
                self.desired.insert(key.clone(), new.clone());
                self.desired_meta.insert(
                    key.clone(),
                    KeyMeta {
                        timestamp: now,
                        until,
                        version,
                    },
                );
            }
            out.push(KeyChange {
                key: key.clone(),
                old,
                new: new.clone(),
            });
        }
        if !out.is_empty() {
            self.version = version;
        }
        Ok(out)
    }

    /// Removes one desired key (an override that ended), bumping the version.
    pub fn remove_desired(&mut self, key: &str, now: DateTime<Utc>) -> Option<KeyChange> {
        let mut m = JsonMap::new();
        m.insert(key.to_owned(), Value::Null);
        let _ = now;
        self.apply_desired(&m, None, None, now)
            .ok()
            .and_then(|mut v| v.pop())
    }

    /// Merges a reported state; returns the keys whose value changed at their resolution.
    pub fn apply_reported(
        &mut self,
        reported: &JsonMap,
        catalog: Option<&Catalog>,
        now: DateTime<Utc>,
    ) -> Vec<KeyChange> {
        let mut out = Vec::new();
        for (key, new) in reported {
            let old = self.reported.get(key).cloned().unwrap_or(Value::Null);
            let unchanged = if new.is_null() {
                old.is_null()
            } else {
                values_match(&old, new, resolution_of(catalog, key))
            };
            if new.is_null() {
                self.reported.remove(key);
                self.reported_meta.remove(key);
            } else {
                self.reported.insert(key.clone(), new.clone());
                self.reported_meta.insert(
                    key.clone(),
                    KeyMeta {
                        timestamp: now,
                        until: None,
                        version: self.version,
                    },
                );
            }
            if !unchanged {
                out.push(KeyChange {
                    key: key.clone(),
                    old,
                    new: new.clone(),
                });
            }
        }
        out
    }

    /// Desired keys whose value differs from reported at the point's resolution.
    pub fn delta(&self, catalog: Option<&Catalog>) -> JsonMap {
        self.desired
            .iter()
            .filter(|(k, want)| {
                self.reported
                    .get(*k)
                    .is_none_or(|have| !values_match(want, have, resolution_of(catalog, k)))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Wire metadata of the given desired keys.
    pub fn desired_metadata(
        &self,
        keys: impl Iterator<Item = String>,
    ) -> BTreeMap<String, KeyMetadata> {
        keys.filter_map(|k| self.desired_meta.get(&k).map(|m| (k, m.wire())))
            .collect()
    }

    /// The full document state and metadata.
    pub fn state(&self, catalog: Option<&Catalog>) -> (ShadowState, ShadowMetadata) {
        let state = ShadowState {
            desired: self.desired.clone(),
            reported: self.reported.clone(),
            delta: self.delta(catalog),
        };
        let meta = ShadowMetadata {
            desired: self
                .desired_meta
                .iter()
                .map(|(k, m)| (k.clone(), m.wire()))
                .collect(),
            reported: self
                .reported_meta
                .iter()
                .map(|(k, m)| (k.clone(), m.wire()))
                .collect(),
        };
        (state, meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> JsonMap {
        v.as_object().cloned().expect("test object")
    }

    fn catalog() -> Catalog {
        serde_json::from_value(json!({"points": [
            {"name": "sp", "role": "setting", "kind": "number", "writable": true, "resolution": 0.1}
        ]}))
        .expect("catalog")
    }

    #[test]
    fn version_bumps_once_per_change_and_stale_versions_conflict() {
        let now = Utc::now();
        let mut s = Shadow::default();
        let ch = s
            .apply_desired(
                &map(json!({"sp": 7.0, "mode": "cooling"})),
                Some(0),
                None,
                now,
            )
            .expect("first change");
        assert_eq!(ch.len(), 2);
        assert_eq!(s.version, 1);
        let err = s
            .apply_desired(&map(json!({"sp": 8.0})), Some(0), None, now)
            .expect_err("stale");
        assert_eq!(
            err,
            VersionConflict {
                expected: 0,
                current: 1
            }
        );
        assert_eq!(s.desired["sp"], json!(7.0));
    }

    #[test]
    fn null_deletes_and_unchanged_values_do_not_bump() {
        let now = Utc::now();
        let mut s = Shadow::default();
        s.apply_desired(&map(json!({"sp": 7.0})), None, None, now)
            .expect("set");
        let none = s
            .apply_desired(&map(json!({"sp": 7.0})), None, None, now)
            .expect("same");
        assert!(none.is_empty());
        assert_eq!(s.version, 1);
        let del = s
            .apply_desired(&map(json!({"sp": null})), None, None, now)
            .expect("delete");
        assert_eq!(del[0].old, json!(7.0));
        assert!(!s.desired.contains_key("sp"));
        assert!(!s.desired_meta.contains_key("sp"));
        assert_eq!(s.version, 2);
    }

    #[test]
    fn delta_compares_at_the_resolution() {
        let now = Utc::now();
        let c = catalog();
        let mut s = Shadow::default();
        s.apply_desired(&map(json!({"sp": 7.0})), None, None, now)
            .expect("set");
        s.apply_reported(&map(json!({"sp": 7.04})), Some(&c), now);
        assert!(s.delta(Some(&c)).is_empty());
        s.apply_reported(&map(json!({"sp": 7.1})), Some(&c), now);
        assert_eq!(s.delta(Some(&c))["sp"], json!(7.0));
        assert!(values_match(&json!(0.1 + 0.2), &json!(0.3), None));
        assert!(!values_match(&json!(1), &json!("1"), None));
    }

    proptest::proptest! {
        #[test]
        fn reconciliation_invariants_hold_for_any_sequence(
            ops in proptest::collection::vec(
                (proptest::bool::ANY, 0usize..4, proptest::option::of(0i32..200)),
                1..40,
            )
        ) {
            let keys = ["a", "b", "c", "d"];
            let now = Utc::now();
            let c = Catalog { v: 1, points: Vec::new() };
            let mut s = Shadow::default();
            for (desired, k, v) in ops {
                let value = v.map_or(Value::Null, |v| json!(f64::from(v) / 10.0));
                let mut m = JsonMap::new();
                m.insert(keys[k].to_owned(), value);
                if desired {
                    let before = s.version;
                    let changed = s.apply_desired(&m, Some(before), None, now).expect("current version");
                    proptest::prop_assert_eq!(s.version, before + u64::from(!changed.is_empty()));
                    let stale = s.version + 1;
                    proptest::prop_assert!(s.apply_desired(&m, Some(stale), None, now).is_err());
                } else {
                    s.apply_reported(&m, Some(&c), now);
                }
                proptest::prop_assert!(s.delta(Some(&c)).keys().all(|k| s.desired.contains_key(k)));
                proptest::prop_assert!(s.desired.keys().all(|k| s.desired_meta.contains_key(k)));
            }
            let desired = s.desired.clone();
            s.apply_reported(&desired, Some(&c), now);
            proptest::prop_assert!(s.delta(Some(&c)).is_empty());
        }
    }
}

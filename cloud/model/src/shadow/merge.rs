//! Merging a patch into a shadow section: `null` deletes, objects merge field by field,
//! anything else replaces (AWS IoT's partial update).

use serde_json::Value;
use shiki_proto::JsonMap;

use super::KeyChange;

/// Merges `patch` into `section` (null deletes, objects merge, the rest replaces) and
/// returns, per named top-level key that exists before or after, its old and new value.
pub(super) fn merge_section(section: &mut JsonMap, patch: &JsonMap) -> Vec<KeyChange> {
    let mut changes = Vec::with_capacity(patch.len());
    for (key, value) in patch {
        let old = section.get(key).cloned();
        let new = if value.is_null() {
            section.remove(key);
            None
        } else {
            let slot = section.entry(key.clone()).or_insert(Value::Null);
            merge_value(slot, value);
            Some(slot.clone())
        };
        if old.is_some() || new.is_some() {
            changes.push(KeyChange {
                key: key.clone(),
                old,
                new,
            });
        }
    }
    changes
}

fn merge_value(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, pv) in p {
                if pv.is_null() {
                    t.remove(k);
                } else {
                    merge_value(t.entry(k.clone()).or_insert(Value::Null), pv);
                }
            }
        }
        (target, patch) => *target = without_nulls(patch),
    }
}

/// `value` with object fields that are `null` removed, at every depth.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

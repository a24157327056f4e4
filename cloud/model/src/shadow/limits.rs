//! Size and nesting limits of a shadow (AWS IoT's defaults: depth 6, 8 KiB).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use shiki_proto::JsonMap;

use super::ShadowError;

/// Limits a shadow enforces on every change; a change that would break one is refused and
/// leaves the shadow untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShadowLimits {
    /// Deepest allowed nesting of a value in `desired` or `reported`. A top-level scalar
    /// (`{"sp": 7}`) has depth 1, `{"sp": {"chw": 7}}` depth 2.
    pub max_depth: usize,
    /// Largest allowed size of the serialised `desired` plus `reported` objects, in bytes.
    pub max_bytes: usize,
}

impl ShadowLimits {
    /// AWS IoT's limits: depth 6, 8 KiB.
    pub const DEFAULT: ShadowLimits = ShadowLimits {
        max_depth: 6,
        max_bytes: 8 * 1024,
    };

    /// Checks both sections against the limits (used by tests: after any sequence of
    /// changes under fixed limits, this holds).
    #[cfg(test)]
    pub(crate) fn check(&self, desired: &JsonMap, reported: &JsonMap) -> Result<(), ShadowError> {
        for section in [desired, reported] {
            self.check_depth(section.iter())?;
        }
        self.check_size(desired, reported, 0)
    }

    /// Checks the nesting depth of the given top-level entries.
    pub(crate) fn check_depth<'a>(
        &self,
        entries: impl IntoIterator<Item = (&'a String, &'a Value)>,
    ) -> Result<(), ShadowError> {
        for (key, value) in entries {
            if let Some(path) = too_deep(key, value, 1, self.max_depth) {
                return Err(ShadowError::TooDeep {
                    key: path,
                    limit: self.max_depth,
                });
            }
        }
        Ok(())
    }

    /// Checks the size of both sections. A change that shrinks a shadow already over the
    /// limit (limits lowered since) passes, so keys can still be deleted.
    pub(crate) fn check_size(
        &self,
        desired: &JsonMap,
        reported: &JsonMap,
        size_before: usize,
    ) -> Result<(), ShadowError> {
        let size = size_of(desired, reported);
        if size > self.max_bytes && size > size_before {
            return Err(ShadowError::TooLarge {
                size,
                limit: self.max_bytes,
            });
        }
        Ok(())
    }
}

/// Size of desired plus reported, serialised as compact JSON.
pub(crate) fn size_of(desired: &JsonMap, reported: &JsonMap) -> usize {
    json_len(desired) + json_len(reported)
}

impl Default for ShadowLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The dotted path of the first key below `value` that sits deeper than `limit`.
fn too_deep(path: &str, value: &Value, depth: usize, limit: usize) -> Option<String> {
    if depth > limit {
        return Some(path.to_owned());
    }
    match value {
        Value::Object(map) => map
            .iter()
            .find_map(|(k, v)| too_deep(&format!("{path}.{k}"), v, depth + 1, limit)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| too_deep(&format!("{path}[{i}]"), v, depth + 1, limit)),
        _ => None,
    }
}

fn json_len(map: &JsonMap) -> usize {
    serde_json::to_vec(map).map_or(usize::MAX / 2, |v| v.len())
}

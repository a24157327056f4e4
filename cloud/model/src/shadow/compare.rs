//! Comparing desired against reported values: numbers at a point's resolution, objects
//! recursively, never float `==`.

use serde_json::Value;

use shiki_proto::{Catalog, JsonMap};

use shiki_shared::resolution::{same_number, usable_resolution};

/// Do `desired` and `reported` hold the same value at `resolution`?
///
/// - Numbers match when `|a − b| < resolution / 2` (resolution 0.1: 7.04 matches 7.0,
///   7.06 does not). Without a usable resolution (none, zero, negative or not finite) they
///   match within [`DEFAULT_RELATIVE_TOLERANCE`](shiki_shared::resolution::DEFAULT_RELATIVE_TOLERANCE)
///   (the edge's rule too: [`same_number`]); two integers are compared exactly.
/// - Objects match when every field of `desired` is matched by the same field of
///   `reported` (extra reported fields are fine), recursively, at the same resolution.
/// - Arrays match element by element and must have the same length.
/// - Anything else (strings, booleans, null) must be equal.
///
/// ```
/// use serde_json::json;
/// use shiki_cloud_model::shadow::values_match;
///
/// assert!(values_match(&json!(7.04), &json!(7.0), Some(0.1)));
/// assert!(!values_match(&json!(7.06), &json!(7.0), Some(0.1)));
/// assert!(values_match(&json!(0.3), &json!(0.1 + 0.2), None));
/// ```
pub fn values_match(desired: &Value, reported: &Value, resolution: Option<f64>) -> bool {
    match (desired, reported) {
        (Value::Number(a), Value::Number(b)) => numbers_match(a, b, resolution),
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .all(|(k, av)| b.get(k).is_some_and(|bv| values_match(av, bv, resolution))),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(av, bv)| values_match(av, bv, resolution))
        }
        (a, b) => a == b,
    }
}

fn numbers_match(a: &serde_json::Number, b: &serde_json::Number, resolution: Option<f64>) -> bool {
    if usable_resolution(resolution).is_none() {
        if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
            return x == y;
        }
        if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
            return x == y;
        }
    }
    // Every serde_json number converts to f64 (large integers lose precision, which is
    // irrelevant for plant values).
    let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
        return false;
    };
    same_number(x, y, resolution)
}

/// The resolution of each key as the device's point catalog declares it (`None` for keys
/// that are not points, without a resolution, or when no catalog arrived yet), for
/// [`Shadow::delta_with`](super::Shadow::delta_with) and the other `_with` methods.
///
/// ```
/// use serde_json::json;
/// use shiki_proto::Catalog;
/// use shiki_cloud_model::shadow::catalog_resolution;
///
/// let catalog: Catalog = serde_json::from_value(json!({"points": [
///     {"name": "sp", "role": "setting", "kind": "number", "writable": true, "resolution": 0.1}
/// ]})).unwrap();
/// let resolution = catalog_resolution(Some(&catalog));
/// assert_eq!(resolution("sp"), Some(0.1));
/// assert_eq!(resolution("other"), None);
/// assert_eq!(catalog_resolution(None)("sp"), None);
/// ```
pub fn catalog_resolution(catalog: Option<&Catalog>) -> impl Fn(&str) -> Option<f64> + '_ {
    move |key| {
        catalog
            .and_then(|c| c.point(key))
            .and_then(|p| p.resolution)
    }
}

/// The part of `desired` that `reported` does not match, or `None` when it matches.
/// For two objects it is the sub-object of fields that differ (as AWS IoT nests deltas);
/// otherwise it is the whole desired value.
pub(crate) fn value_delta(
    desired: &Value,
    reported: Option<&Value>,
    resolution: Option<f64>,
) -> Option<Value> {
    match (desired, reported) {
        (Value::Object(d), Some(Value::Object(r))) => {
            let mut out = JsonMap::new();
            for (k, dv) in d {
                if let Some(diff) = value_delta(dv, r.get(k), resolution) {
                    out.insert(k.clone(), diff);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        (d, Some(r)) if values_match(d, r, resolution) => None,
        (d, _) => Some(d.clone()),
    }
}

/// Desired keys that `reported` does not match, each at the resolution `resolution(key)`.
pub fn delta_of(
    desired: &JsonMap,
    reported: &JsonMap,
    resolution: &dyn Fn(&str) -> Option<f64>,
) -> JsonMap {
    desired
        .iter()
        .filter_map(|(k, dv)| {
            value_delta(dv, reported.get(k), resolution(k)).map(|diff| (k.clone(), diff))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_match_at_half_the_resolution() {
        let cases = [
            (json!(7.04), json!(7.0), Some(0.1), true),
            (json!(7.06), json!(7.0), Some(0.1), false),
            (json!(6.96), json!(7.0), Some(0.1), true),
            (json!(6.94), json!(7.0), Some(0.1), false),
            (json!(7), json!(7.0), Some(0.1), true),
            (json!(20), json!(21), Some(1.0), false),
            (json!(20.4), json!(20), Some(1.0), true),
            (json!(7.0), json!(7.0000000001), None, true),
            (json!(7.0), json!(7.001), None, false),
            (json!(0.3), json!(0.30000000000000004), None, true),
            (json!(u64::MAX), json!(u64::MAX - 1), None, false),
            (json!(-1), json!(-1), None, true),
            (json!(7.0), json!(7.04), Some(0.0), false),
            (json!(7.0), json!(7.04), Some(f64::NAN), false),
        ];
        for (a, b, res, expected) in cases {
            assert_eq!(values_match(&a, &b, res), expected, "{a} vs {b} at {res:?}");
        }
    }

    #[test]
    fn an_f32_read_back_without_a_resolution_matches_what_was_desired() {
        // The edge writes 7.3 into an f32 register and reads back 7.300000190734863; the
        // catalog has no resolution for such a point. The edge counts the write as applied,
        // so verification must agree (it did not while the cloud used 1e-9).
        let read_back = f64::from(7.3_f32);
        assert!(values_match(&json!(7.3), &json!(read_back), None));
        assert!(!values_match(&json!(7.3), &json!(7.31), None));
    }

    #[test]
    fn other_values_compare_by_equality() {
        assert!(values_match(&json!("cooling"), &json!("cooling"), None));
        assert!(!values_match(&json!("cooling"), &json!("heating"), None));
        assert!(!values_match(&json!(true), &json!(1), None));
        assert!(!values_match(&json!("7"), &json!(7), Some(1.0)));
        assert!(values_match(&json!(null), &json!(null), None));
    }

    #[test]
    fn objects_match_when_reported_covers_desired() {
        let d = json!({"a": 1.0, "b": {"c": "x"}});
        let r = json!({"a": 1.04, "b": {"c": "x", "extra": 2}, "z": 0});
        assert!(values_match(&d, &r, Some(0.1)));
        assert!(!values_match(&r, &d, Some(0.1)));
        assert!(!values_match(&json!({"a": 1}), &json!({"a": 2}), None));
    }

    #[test]
    fn arrays_match_elementwise() {
        assert!(values_match(
            &json!([1.0, 2.0]),
            &json!([1.01, 2.0]),
            Some(0.1)
        ));
        assert!(!values_match(&json!([1.0, 2.0]), &json!([1.0]), Some(0.1)));
    }

    #[test]
    fn delta_of_nested_objects_lists_only_differing_fields() {
        let d = json!({"mode": "cooling", "sp": {"chw": 7.0, "hw": 45.0}, "run": true});
        let r = json!({"mode": "cooling", "sp": {"chw": 7.5, "hw": 45.0}});
        let (Value::Object(d), Value::Object(r)) = (d, r) else {
            unreachable!("literals are objects")
        };
        let delta = delta_of(&d, &r, &|_| Some(0.1));
        assert_eq!(
            Value::Object(delta),
            json!({"sp": {"chw": 7.0}, "run": true})
        );
    }
}

//! Validation of a desired change's settings against the device's catalog, and why a
//! change is refused.

use serde_json::Value;
use shiki_cloud_model::shadow::ShadowError;
use shiki_proto::{Catalog, JsonMap, PointRole, ValueKind};

/// A desired change named a version that is no longer current (HTTP 409).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("desired state is at version {current}, the change expected version {expected}")]
pub struct VersionConflict {
    pub expected: u64,
    pub current: u64,
}

/// Why a desired change was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DesiredError {
    #[error(transparent)]
    Conflict(#[from] VersionConflict),
    #[error("device has not sent its point catalog yet, so `{key}` cannot be validated")]
    NoCatalog { key: String },
    #[error("`{key}` is not a point of this device")]
    UnknownKey { key: String },
    #[error("`{key}` is read-only")]
    ReadOnly { key: String },
    #[error("`{key}` = {value} is outside its limits [{min}, {max}]")]
    OutOfLimits {
        key: String,
        value: f64,
        min: String,
        max: String,
    },
    /// A number between two steps of the point's resolution (7.55 for a 0.1 step): the PLC
    /// would hold a rounded value and the change would still show as verified.
    #[error(
        "`{key}` = {value} is between two steps of its resolution {step}: write {below} or {above}"
    )]
    OffStep {
        key: String,
        value: f64,
        step: f64,
        below: String,
        above: String,
    },
    #[error("`{key}`: {reason}")]
    InvalidValue { key: String, reason: String },
    #[error("the change names no settings")]
    Empty,
    /// The shadow would break its size or nesting limits.
    #[error("the change was refused: {0}")]
    Limit(ShadowError),
}

impl From<ShadowError> for DesiredError {
    fn from(e: ShadowError) -> Self {
        match e {
            ShadowError::VersionConflict { expected, current } => {
                DesiredError::Conflict(VersionConflict { expected, current })
            }
            ShadowError::UntilNotInFuture { .. } => DesiredError::InvalidValue {
                key: "until".into(),
                reason: "must lie in the future".into(),
            },
            other @ (ShadowError::TooDeep { .. } | ShadowError::TooLarge { .. }) => {
                DesiredError::Limit(other)
            }
        }
    }
}

impl DesiredError {
    /// The offending key, if the error is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            DesiredError::NoCatalog { key }
            | DesiredError::UnknownKey { key }
            | DesiredError::ReadOnly { key }
            | DesiredError::OutOfLimits { key, .. }
            | DesiredError::OffStep { key, .. }
            | DesiredError::InvalidValue { key, .. }
            | DesiredError::Limit(ShadowError::TooDeep { key, .. }) => Some(key),
            _ => None,
        }
    }
}

pub(crate) fn validate(catalog: Option<&Catalog>, settings: &JsonMap) -> Result<(), DesiredError> {
    if settings.is_empty() {
        return Err(DesiredError::Empty);
    }
    for (key, value) in settings {
        let Some(catalog) = catalog else {
            return Err(DesiredError::NoCatalog { key: key.clone() });
        };
        let point = catalog
            .point(key)
            .ok_or_else(|| DesiredError::UnknownKey { key: key.clone() })?;
        if !point.writable || point.role == PointRole::Reading {
            return Err(DesiredError::ReadOnly { key: key.clone() });
        }
        let invalid = |reason: &str| DesiredError::InvalidValue {
            key: key.clone(),
            reason: reason.to_owned(),
        };
        match (point.kind, value) {
            (_, Value::Null) => {}
            (ValueKind::Bool, Value::Bool(_)) => {}
            (ValueKind::Bool, _) => return Err(invalid("expected true or false")),
            (ValueKind::Number, Value::Number(n)) => {
                let x = n.as_f64().ok_or_else(|| invalid("not a finite number"))?;
                let below = point.min.is_some_and(|m| x < m);
                let above = point.max.is_some_and(|m| x > m);
                if below || above {
                    let show = |o: Option<f64>| o.map_or("-".to_owned(), |v| v.to_string());
                    return Err(DesiredError::OutOfLimits {
                        key: key.clone(),
                        value: x,
                        min: show(point.min),
                        max: show(point.max),
                    });
                }
                if let Some(step) = shiki_shared::resolution::usable_resolution(point.resolution) {
                    check_step(key, x, step)?;
                }
            }
            (ValueKind::Number, _) => return Err(invalid("expected a number")),
            (ValueKind::Enum, Value::String(s)) if point.options.contains(s) => {}
            (ValueKind::Enum, _) => {
                return Err(invalid(&format!("expected one of {:?}", point.options)));
            }
            (ValueKind::Unknown, _) => return Err(invalid("point has an unknown kind")),
        }
    }
    Ok(())
}

/// `x` must be a whole number of `step`s (counted from 0, as the register holds it), within
/// a millionth of a step for the decimal's binary rounding.
fn check_step(key: &str, x: f64, step: f64) -> Result<(), DesiredError> {
    let steps = x / step;
    if (steps - steps.round()).abs() <= 1e-6 * steps.abs().max(1.0) {
        return Ok(());
    }
    let decimals = (-step.log10()).ceil().clamp(0.0, 9.0) as usize;
    let show = |v: f64| format!("{v:.decimals$}");
    Err(DesiredError::OffStep {
        key: key.to_owned(),
        value: x,
        step,
        below: show(steps.floor() * step),
        above: show(steps.ceil() * step),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Catalog {
        serde_json::from_value(json!({"points": [
            {"name": "chw_setpoint_c", "role": "setting", "kind": "number", "writable": true,
             "min": 5.0, "max": 12.0, "resolution": 0.1},
            {"name": "demand_limit_pct", "role": "setting", "kind": "number", "writable": true,
             "min": 50, "max": 100, "resolution": 1},
            {"name": "free", "role": "setting", "kind": "number", "writable": true}]}))
        .expect("catalog")
    }

    fn check(key: &str, v: Value) -> Result<(), DesiredError> {
        let settings: JsonMap = [(key.to_owned(), v)].into_iter().collect();
        validate(Some(&catalog()), &settings)
    }

    #[test]
    fn a_value_between_two_steps_is_refused_naming_the_step_and_its_neighbours() {
        let err = check("chw_setpoint_c", json!(7.55)).expect_err("off step");
        assert_eq!(err.key(), Some("chw_setpoint_c"));
        let text = err.to_string();
        assert!(
            text.contains("resolution 0.1") && text.contains("7.5 or 7.6"),
            "{text}"
        );
        assert!(check("demand_limit_pct", json!(75.5)).is_err());
        // Decimals that binary floats cannot hold exactly are whole steps all the same.
        for ok in [7.3, 7.1, 5.0, 11.9, 12.0, 8.5] {
            assert_eq!(check("chw_setpoint_c", json!(ok)), Ok(()), "{ok}");
        }
        assert_eq!(check("demand_limit_pct", json!(80)), Ok(()));
        // Without a resolution, any number within the limits.
        assert_eq!(check("free", json!(7.555_5)), Ok(()));
    }
}

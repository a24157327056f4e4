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

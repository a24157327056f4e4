//! The `[control]` config section.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[control]`: defaults of the settings and the expiry timer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// How often overrides are checked for expiry (they are also checked on every input).
    #[serde(
        default = "default_expiry_check_interval",
        with = "crate::register_map::duration"
    )]
    pub expiry_check_interval: Duration,
    /// Values used when neither an override nor the schedule sets a setting
    /// (`[control.defaults]`): writable point name → boolean, number or enum label.
    #[serde(default)]
    pub defaults: BTreeMap<String, serde_json::Value>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            expiry_check_interval: default_expiry_check_interval(),
            defaults: BTreeMap::new(),
        }
    }
}

fn default_expiry_check_interval() -> Duration {
    Duration::from_secs(1)
}

/// Why a `[control]` section is not usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ControlConfigError {
    #[error("cannot parse [control]: {0}")]
    Parse(String),
    #[error("[control.defaults] {key}: {reason}")]
    InvalidDefault { key: String, reason: String },
    #[error("[control] expiry_check_interval must be longer than 0")]
    ZeroInterval,
}

impl ControlConfig {
    /// Parse the `[control]` table out of a whole edge config file (missing = defaults).
    pub fn from_config_toml(text: &str) -> Result<Self, ControlConfigError> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| ControlConfigError::Parse(e.to_string()))?;
        match table.remove("control") {
            None => Ok(Self::default()),
            Some(v) => v
                .try_into()
                .map_err(|e: toml::de::Error| ControlConfigError::Parse(e.to_string())),
        }
    }
}

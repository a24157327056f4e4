//! Configuration loading: a TOML file, then `SHIKI_*` environment overrides, then (in the
//! binaries) command-line flags. Errors name the file and the key.
//!
//! ```
//! use std::time::Duration;
//! use serde::Deserialize;
//! use shiki_shared::config;
//!
//! #[derive(Debug, Deserialize)]
//! struct EdgeConfig { plc: Plc }
//! #[derive(Debug, Deserialize)]
//! struct Plc {
//!     #[serde(with = "config::duration")]
//!     poll_interval: Duration,
//! }
//!
//! let err = config::from_str::<EdgeConfig>("[plc]\npoll_interval = \"ten\"").unwrap_err();
//! assert!(err.to_string().starts_with(
//!     "<inline>: key `plc.poll_interval`: invalid duration \"ten\""));
//! ```
//!
//! # Environment overrides
//! `SHIKI_MQTT__URL=mqtts://broker:8883` sets `mqtt.url`: the prefix is dropped, `__`
//! separates nesting levels, names are lower-cased. A value is read as a TOML value when it
//! parses as one (`8883`, `true`, `["a","b"]`), else as a string; if a TOML-typed value does
//! not fit its key (a numeric device id for a string field), it is retried as a string.
//! [`env::RESERVED`] names (`SHIKI_LOG`, `SHIKI_CONFIG`, …) are not config keys.
//!
//! # Command-line flags
//! The binaries own clap; after loading they apply their flags with [`override_with`].

pub mod duration;
pub mod env;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::Table;

use env::EnvOverride;

/// The environment prefix the binaries use.
pub const ENV_PREFIX: &str = "SHIKI_";

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}:{line}:{column}: invalid TOML: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A key holds a value of the wrong type or shape, is missing, or is unknown.
    #[error("{}", describe(file, key, env_var.as_deref(), message))]
    Key {
        file: PathBuf,
        /// Dotted key path (`plc.poll_interval`); empty for the top level.
        key: String,
        /// The environment variable that set the key, when one did.
        env_var: Option<String>,
        message: String,
    },
    /// An environment override cannot be applied.
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    /// A value has the right type but is not acceptable (reported by [`Validate`]).
    #[error("{}", describe(file, key, None, reason))]
    Invalid {
        file: PathBuf,
        key: String,
        reason: String,
    },
}

impl ConfigError {
    /// A validation error for `key`; the loader fills in the file
    /// ([`load_validated`], or [`ConfigError::with_file`]).
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: PathBuf::new(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Sets the file of an [`ConfigError::Invalid`] that has none yet.
    #[must_use]
    pub fn with_file(self, path: &Path) -> Self {
        match self {
            ConfigError::Invalid { file, key, reason } if file.as_os_str().is_empty() => {
                ConfigError::Invalid {
                    file: path.to_owned(),
                    key,
                    reason,
                }
            }
            other => other,
        }
    }
}

fn describe(file: &Path, key: &str, env_var: Option<&str>, message: &str) -> String {
    let file = if file.as_os_str().is_empty() {
        "config".into()
    } else {
        file.display().to_string()
    };
    let from = env_var
        .map(|v| format!(" (set by {v})"))
        .unwrap_or_default();
    if key.is_empty() || key == "." {
        format!("{file}: {message}")
    } else {
        format!("{file}: key `{key}`{from}: {message}")
    }
}

/// Checks a loaded configuration beyond its types (ranges, consistency). Report problems
/// with [`ConfigError::invalid`] naming the dotted key.
pub trait Validate {
    /// # Errors
    /// The first problem found, as [`ConfigError::Invalid`].
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Loads `path` with overrides from the process environment under `env_prefix` (normally
/// [`ENV_PREFIX`]).
///
/// # Errors
/// Unreadable file, invalid TOML, an override that cannot be applied, or a key that does
/// not fit `T`; every error names the file and the key.
pub fn load<T: DeserializeOwned>(path: &Path, env_prefix: &str) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_owned(),
        source,
    })?;
    from_str_with_env(&text, path, env_prefix, process_env())
}

/// [`load`], then [`Validate::validate`], with the file filled into validation errors.
///
/// # Errors
/// As [`load`], plus the validation error.
pub fn load_validated<T: DeserializeOwned + Validate>(
    path: &Path,
    env_prefix: &str,
) -> Result<T, ConfigError> {
    let config: T = load(path, env_prefix)?;
    config.validate().map_err(|e| e.with_file(path))?;
    Ok(config)
}

/// Parses a configuration from a string with no environment overrides (for tests and
/// examples); errors name the file `<inline>`.
///
/// # Errors
/// Invalid TOML or a key that does not fit `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    from_str_with_env(text, Path::new("<inline>"), ENV_PREFIX, std::iter::empty())
}

/// Parses `text` (read from `origin`, used in errors) and applies the overrides among
/// `vars` that start with `env_prefix`. [`load`] is this with the file and the process
/// environment.
///
/// # Errors
/// As [`load`].
pub fn from_str_with_env<T: DeserializeOwned>(
    text: &str,
    origin: &Path,
    env_prefix: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut table: Table = toml::from_str(text).map_err(|e| syntax_error(text, origin, &e))?;
    let mut overrides = env::collect(env_prefix, vars);
    for ov in &overrides {
        env::apply(&mut table, ov)?;
    }
    loop {
        let error = match serde_path_to_error::deserialize(table.clone()) {
            Ok(config) => return Ok(config),
            Err(error) => error,
        };
        let key = error.path().to_string();
        let culprit = overrides.iter().position(|ov| ov.dotted() == key);
        // A typed override (say a numeric id) that does not fit: retry it as a string.
        if let Some(i) = culprit
            && !overrides[i].value.is_str()
        {
            let ov: &mut EnvOverride = &mut overrides[i];
            ov.value = toml::Value::String(ov.raw.clone());
            env::apply(&mut table, ov)?;
            continue;
        }
        return Err(ConfigError::Key {
            file: origin.to_owned(),
            key,
            env_var: culprit.map(|i| overrides[i].var.clone()),
            message: error.into_inner().message().to_owned(),
        });
    }
}

/// Replaces `slot` with the flag's value when the flag was given: the binaries' way of
/// letting command-line flags win over the file and the environment.
///
/// ```
/// let mut url = String::from("mqtt://from-file:1883");
/// shiki_shared::config::override_with(&mut url, Some("mqtt://from-flag:1883".to_owned()));
/// assert_eq!(url, "mqtt://from-flag:1883");
/// shiki_shared::config::override_with(&mut url, None);
/// assert_eq!(url, "mqtt://from-flag:1883");
/// ```
pub fn override_with<T>(slot: &mut T, flag: Option<T>) {
    if let Some(value) = flag {
        *slot = value;
    }
}

/// The process environment, skipping variables that are not valid Unicode.
fn process_env() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}

fn syntax_error(text: &str, origin: &Path, error: &toml::de::Error) -> ConfigError {
    let (line, column) = error.span().map_or((1, 1), |span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    });
    ConfigError::Syntax {
        file: origin.to_owned(),
        line,
        column,
        message: error.message().trim_end().to_owned(),
    }
}

#[cfg(test)]
mod tests;

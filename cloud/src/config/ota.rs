//! `[ota]`: the release keys OTA uploads must be signed with, and the limits of artifacts
//! and their download URLs; and the check of `api.public_url`, the base of those URLs.

use std::time::Duration;

use serde::Deserialize;
use shiki_shared::ota::TrustedKeys;

use super::ConfigError;

/// OTA updates of the edges (`[ota]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtaConfig {
    /// Release public keys (base64, as `ota.pub` holds them) an uploaded artifact must be
    /// signed with; several for key rotation. Empty: every upload is refused.
    #[serde(default)]
    pub public_keys: Vec<String>,
    /// How long a download URL handed to a gateway stays valid.
    #[serde(default = "default_url_ttl", with = "humantime_serde")]
    pub url_ttl: Duration,
    /// Largest artifact accepted, in MiB.
    #[serde(default = "default_max_artifact_mb")]
    pub max_artifact_mb: u64,
    /// How long each state of a job's execution on a device may last (`[ota.jobs]`).
    #[serde(default)]
    pub jobs: crate::ota::JobTimeouts,
}

fn default_url_ttl() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_max_artifact_mb() -> u64 {
    256
}

impl Default for OtaConfig {
    fn default() -> Self {
        Self {
            public_keys: Vec::new(),
            url_ttl: default_url_ttl(),
            max_artifact_mb: default_max_artifact_mb(),
            jobs: crate::ota::JobTimeouts::default(),
        }
    }
}

impl OtaConfig {
    /// The parsed `public_keys`; an error names the key and which entry is wrong.
    pub fn trusted_keys(&self) -> Result<TrustedKeys, ConfigError> {
        TrustedKeys::parse(&self.public_keys).map_err(|e| ConfigError::Invalid {
            key: "ota.public_keys",
            reason: format!("{e} (entries count from 0; each is the one line of an ota.pub)"),
        })
    }

    /// `max_artifact_mb` in bytes.
    pub fn max_artifact_bytes(&self) -> u64 {
        self.max_artifact_mb.saturating_mul(1024 * 1024)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.trusted_keys()?;
        if self.url_ttl < Duration::from_secs(1) {
            return Err(ConfigError::Invalid {
                key: "ota.url_ttl",
                reason: "must be at least 1s (15m is the default)".into(),
            });
        }
        if self.max_artifact_mb == 0 {
            return Err(ConfigError::Invalid {
                key: "ota.max_artifact_mb",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// Checks `api.public_url`: an `http://` or `https://` URL with a host, optionally a path
/// (a reverse proxy's prefix), without query or fragment.
pub(super) fn check_public_url(url: &str) -> Result<(), ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        key: "api.public_url",
        reason: format!("{url:?} {reason}"),
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| invalid("must start with http:// or https://".into()))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(invalid("names no host".into()));
    }
    if let Some(c) = url
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '?' || *c == '#')
    {
        return Err(invalid(format!(
            "must not contain {c:?}: give only scheme, host, port and path prefix"
        )));
    }
    Ok(())
}

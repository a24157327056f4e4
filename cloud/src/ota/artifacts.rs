//! What the jobs need of the artifact store, as a small injected interface: the signed
//! artifact of a version, and a short-lived download URL for it.

use chrono::{DateTime, Utc};

/// A stored, signed artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactInfo {
    pub version: String,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    pub size: u64,
    /// ed25519 signature (base64) over the manifest (version, sha256, size).
    pub signature: String,
}

/// The artifact store as the jobs see it.
pub trait Artifacts: Send + Sync {
    /// The artifact uploaded as `version`, if any.
    fn lookup(&self, version: &str) -> Option<ArtifactInfo>;
    /// A download URL for the artifact with this SHA-256, signed at `now`, and when it
    /// expires.
    fn signed_url(&self, sha256: &str, now: DateTime<Utc>) -> (String, DateTime<Utc>);
}

/// The catalog before an artifact store is wired in: it knows no version, so every job is
/// refused (422) naming the version it asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoArtifacts;

impl Artifacts for NoArtifacts {
    fn lookup(&self, _version: &str) -> Option<ArtifactInfo> {
        None
    }

    fn signed_url(&self, sha256: &str, now: DateTime<Utc>) -> (String, DateTime<Utc>) {
        // Unreachable in practice: no job can exist without an artifact.
        (format!("unavailable:{sha256}"), now)
    }
}

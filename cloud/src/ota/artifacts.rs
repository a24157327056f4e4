//! What the jobs need of the artifact store, as a small injected interface: the signed
//! artifact of a version, and a short-lived download URL for it.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::api::UrlSigner;
use crate::store::Store;

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
    /// The artifact uploaded as `version`, if any; `Err` says why the store could not
    /// be read (never reported as an unknown version).
    fn lookup(&self, version: &str) -> Result<Option<ArtifactInfo>, String>;
    /// A download URL for the artifact with this SHA-256, signed at `now`, and when it
    /// expires.
    fn signed_url(&self, sha256: &str, now: DateTime<Utc>) -> (String, DateTime<Utc>);
}

/// The artifact store as it runs: records from the [`Store`], URLs from the API's
/// [`UrlSigner`].
#[derive(Debug, Clone)]
pub struct StoredArtifacts {
    store: Arc<dyn Store>,
    urls: UrlSigner,
}

impl StoredArtifacts {
    pub fn new(store: Arc<dyn Store>, urls: UrlSigner) -> Self {
        Self { store, urls }
    }
}

impl Artifacts for StoredArtifacts {
    fn lookup(&self, version: &str) -> Result<Option<ArtifactInfo>, String> {
        let found = self.store.artifact(version).map_err(|e| e.to_string())?;
        Ok(found.map(|a| ArtifactInfo {
            version: a.version,
            sha256: a.sha256,
            size: a.size,
            signature: a.signature,
        }))
    }

    fn signed_url(&self, sha256: &str, now: DateTime<Utc>) -> (String, DateTime<Utc>) {
        self.urls.sign(sha256, now)
    }
}

//! OTA artifacts (edge builds): signed uploads, their files, and signed download URLs.
//!
//! - `PUT /api/v1/artifacts/{version}` (admin): the raw bytes as the body, the release
//!   key's signature in `Shiki-Signature`. The body is streamed to `tmp/` under the
//!   artifacts dir while it is hashed (never held whole in memory, at most
//!   [`ArtifactsConfig::max_bytes`]), the manifest (version, SHA-256, size) is checked
//!   against the trusted keys, then the file moves to `sha256/<hex>` (content-addressed)
//!   and the record goes to the store through [`Backend::put_artifact`](crate::Backend).
//!   201 for a new version; the same bytes again under the same version are accepted as
//!   they are (200, idempotent); other bytes under a known version are refused (409).
//! - `GET /api/v1/artifacts` (viewer): the records, newest upload first.
//! - `GET /ota/v1/artifacts/{sha256}?expires=…&sig=…` (no token: the URL is the
//!   credential, see [`url`]): the file, with `Range`/`If-Range` (206, 416) for resumed
//!   downloads; 403 for an expired or tampered URL.
//!
//! # Layout
//! - [`url`]: [`UrlSigner`], the HMAC-signed download URLs;
//! - `files`: the artifacts dir (streaming an upload to a temp file, placing it);
//! - `routes`: the handlers.

mod files;
mod routes;
pub mod url;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shiki_shared::ota::TrustedKeys;

pub(crate) use routes::{configure_api, configure_public, is_upload};
pub use url::UrlSigner;

/// Name of the header carrying an upload's signature.
pub const SIGNATURE_HEADER: &str = "Shiki-Signature";

/// An artifact as the API shows it (`GET /api/v1/artifacts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// The build's version (one version, one content).
    pub version: String,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// The release key's signature of (version, sha256, size), base64.
    pub signature: String,
    pub uploaded_at: DateTime<Utc>,
    /// Name of the token that uploaded it.
    pub uploaded_by: String,
}

/// What [`Backend::put_artifact`](crate::Backend::put_artifact) did with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactPut {
    /// A new version: the record is stored.
    Created,
    /// The version exists with the same bytes (sha256 and size): nothing changed; the
    /// record stored first.
    Unchanged(Artifact),
    /// The version exists with other bytes: refused; the record stored first.
    Conflict(Artifact),
}

impl ArtifactPut {
    /// What recording `upload` means when `stored` is the record of its version, if any:
    /// the same bytes (sha256 and size) are `Unchanged`, other bytes a `Conflict`.
    pub fn judge(stored: Option<Artifact>, upload: &Artifact) -> Self {
        match stored {
            None => ArtifactPut::Created,
            Some(s) if s.sha256 == upload.sha256 && s.size == upload.size => {
                ArtifactPut::Unchanged(s)
            }
            Some(s) => ArtifactPut::Conflict(s),
        }
    }
}

/// Where artifacts live and what an upload must satisfy (filled by the composition root
/// from `[ota]`, `api.public_url` and the data dir).
#[derive(Debug, Clone)]
pub struct ArtifactsConfig {
    /// The artifacts dir (`<data_dir>/artifacts`); holds `tmp/` and `sha256/`.
    pub dir: PathBuf,
    /// The release keys uploads must be signed with (`[ota] public_keys`).
    pub trusted_keys: TrustedKeys,
    /// Largest upload accepted, in bytes (`ota.max_artifact_mb`).
    pub max_bytes: u64,
    /// Makes and checks download URLs.
    pub urls: UrlSigner,
}

/// The artifact storage the API serves (part of [`ApiState`](crate::ApiState), shared by
/// the workers).
#[derive(Debug)]
pub struct Artifacts {
    config: ArtifactsConfig,
    files: files::ArtifactFiles,
    /// Serialises the end of uploads (placing the file, recording the version), so two
    /// uploads cannot both claim a version or remove a file the other needs.
    finishing: tokio::sync::Mutex<()>,
}

impl Artifacts {
    /// Opens the artifacts dir: creates `tmp/` and `sha256/` and removes what crashed
    /// uploads left in `tmp/`.
    pub fn open(config: ArtifactsConfig) -> std::io::Result<Self> {
        Ok(Self {
            files: files::ArtifactFiles::open(&config.dir)?,
            config,
            finishing: tokio::sync::Mutex::new(()),
        })
    }

    /// The download URL signer (also for OTA jobs).
    pub fn urls(&self) -> &UrlSigner {
        &self.config.urls
    }

    /// Where the bytes of the artifact with hash `sha256` are kept.
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        self.files.path_of(sha256)
    }
}

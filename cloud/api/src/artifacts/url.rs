//! Short-lived signed download URLs for OTA artifacts, like S3 presigned URLs: the URL
//! carries its expiry and an HMAC-SHA256 over the artifact's hash and that expiry, so
//! whoever holds it (a gateway) may download exactly that artifact until then, with no
//! bearer token.
//!
//! ```
//! use shiki_cloud_api::UrlSigner;
//! use std::time::Duration;
//!
//! let signer = UrlSigner::new([7; 32], "https://cloud.example/", Duration::from_secs(900));
//! let sha = "ab".repeat(32);
//! let now = chrono::Utc::now();
//! let (url, expires) = signer.sign(&sha, now);
//! assert!(url.starts_with(&format!("https://cloud.example/ota/v1/artifacts/{sha}?expires=")));
//! assert_eq!(expires.timestamp(), now.timestamp() + 900);
//! ```
//!
//! # Format
//! `{public_url}/ota/v1/artifacts/{sha256}?expires={unix seconds}&sig={hex}` where `sig` is
//! the lowercase hex HMAC-SHA256, under the cloud's URL key, of
//! `shiki-ota-url-v1\n{sha256}\n{expires}`. The key is 32 random bytes kept in the data dir
//! ([`URL_KEY_FILE`], mode 0600, made on first start): URLs stay valid across restarts, and
//! deleting the file invalidates every URL handed out.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Name of the URL key file inside the cloud's data dir.
pub const URL_KEY_FILE: &str = "ota-url.key";

/// The path of download URLs, before the artifact's hash.
pub const DOWNLOAD_PATH: &str = "/ota/v1/artifacts";

/// Makes and checks signed download URLs. Cheap to clone.
#[derive(Clone)]
pub struct UrlSigner {
    key: [u8; 32],
    base: String,
    ttl: Duration,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSigner")
            .field("base", &self.base)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Why a download URL was refused (both answer 403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("this download URL's signature does not match: use the URL exactly as the job gave it")]
    BadSignature,
    #[error("this download URL expired at {at}; ask for a fresh one (the job hands out a new URL)")]
    Expired { at: DateTime<Utc> },
}

/// Why the URL key file could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum UrlKeyError {
    #[error("cannot read or create the download URL key {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the download URL key {path} is not 64 hex digits ({reason}); delete it and restart to \
         make a new one (download URLs handed out so far stop working)"
    )]
    Malformed { path: PathBuf, reason: String },
}

type HmacSha256 = Hmac<Sha256>;

impl UrlSigner {
    /// A signer with `key` for URLs under `public_url` (a trailing `/` is dropped) valid for
    /// `ttl`.
    pub fn new(key: [u8; 32], public_url: &str, ttl: Duration) -> Self {
        Self {
            key,
            base: public_url.trim_end_matches('/').to_owned(),
            ttl,
        }
    }

    /// A signer with the key in `key_file`, which is created (32 random bytes as hex,
    /// mode 0600) when it does not exist yet.
    pub fn load_or_create(
        key_file: &Path,
        public_url: &str,
        ttl: Duration,
    ) -> Result<Self, UrlKeyError> {
        let key = read_or_create_key(key_file)?;
        Ok(Self::new(key, public_url, ttl))
    }

    /// How long a URL made now stays valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The base URL gateways reach (`api.public_url`), without a trailing `/`.
    pub fn public_url(&self) -> &str {
        &self.base
    }

    /// A URL to download the artifact with hash `sha256` (lowercase hex), valid from `now`
    /// for [`UrlSigner::ttl`] (whole seconds), and the instant it expires.
    pub fn sign(&self, sha256: &str, now: DateTime<Utc>) -> (String, DateTime<Utc>) {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let expires = now.timestamp().saturating_add(ttl);
        let sig = hex::encode(self.mac(sha256, expires).finalize().into_bytes());
        let url = format!(
            "{}{DOWNLOAD_PATH}/{sha256}?expires={expires}&sig={sig}",
            self.base
        );
        (url, expiry(expires))
    }

    /// Checks a URL's parts: `sig` must be the MAC of `sha256` and `expires` (so neither
    /// was changed), and `now` before `expires`.
    pub fn verify(
        &self,
        sha256: &str,
        expires: i64,
        sig: &str,
        now: DateTime<Utc>,
    ) -> Result<(), UrlRefused> {
        let tag = hex::decode(sig).map_err(|_| UrlRefused::BadSignature)?;
        self.mac(sha256, expires)
            .verify_slice(&tag)
            .map_err(|_| UrlRefused::BadSignature)?;
        if now.timestamp() >= expires {
            return Err(UrlRefused::Expired {
                at: expiry(expires),
            });
        }
        Ok(())
    }

    fn mac(&self, sha256: &str, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(format!("shiki-ota-url-v1\n{sha256}\n{expires}").as_bytes());
        mac
    }
}

fn expiry(unix: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(unix, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn read_or_create_key(path: &Path) -> Result<[u8; 32], UrlKeyError> {
    let io = |source| UrlKeyError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => parse_key(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            match write_new_secret(path, &format!("{}\n", hex::encode(key))) {
                Ok(()) => Ok(key),
                // Another process made it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    parse_key(path, &std::fs::read_to_string(path).map_err(io)?)
                }
                Err(e) => Err(io(e)),
            }
        }
        Err(e) => Err(io(e)),
    }
}

fn parse_key(path: &Path, text: &str) -> Result<[u8; 32], UrlKeyError> {
    let malformed = |reason: String| UrlKeyError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let bytes = hex::decode(text.trim()).map_err(|e| malformed(e.to_string()))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| malformed(format!("{} bytes", b.len())))
}

/// Writes `text` to a new file at `path` readable only by its owner (mode 0600), synced;
/// fails with `AlreadyExists` when the file exists.
pub fn write_new_secret(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
            .single()
            .expect("valid date")
    }

    fn signer() -> UrlSigner {
        UrlSigner::new([9; 32], "http://gw-proxy:8080/", Duration::from_secs(900))
    }

    /// The (sha256, expires, sig) of a URL `sign` made.
    fn parts(url: &str) -> (String, i64, String) {
        let (path, query) = url.split_once('?').expect("query");
        let sha = path.rsplit('/').next().expect("sha256");
        let (expires, sig) = query
            .strip_prefix("expires=")
            .and_then(|q| q.split_once("&sig="))
            .expect("expires and sig");
        (sha.into(), expires.parse().expect("unix"), sig.into())
    }

    #[test]
    fn a_signed_url_verifies_until_it_expires() {
        let s = signer();
        let sha = "0f".repeat(32);
        let (url, expires) = s.sign(&sha, now());
        assert_eq!(expires, now() + chrono::Duration::minutes(15));
        assert!(
            url.starts_with("http://gw-proxy:8080/ota/v1/artifacts/"),
            "{url}"
        );
        let (got_sha, unix, sig) = parts(&url);
        assert_eq!(
            (got_sha.as_str(), unix),
            (sha.as_str(), expires.timestamp())
        );
        assert_eq!(sig.len(), 64);
        let almost = expires - chrono::Duration::seconds(1);
        assert_eq!(s.verify(&sha, unix, &sig, now()), Ok(()));
        assert_eq!(s.verify(&sha, unix, &sig, almost), Ok(()));
        assert_eq!(
            s.verify(&sha, unix, &sig, expires),
            Err(UrlRefused::Expired { at: expires })
        );
    }

    #[test]
    fn a_tampered_signature_expiry_or_other_sha_is_refused() {
        let s = signer();
        let sha = "0f".repeat(32);
        let (url, _) = s.sign(&sha, now());
        let (_, unix, sig) = parts(&url);
        let mut flipped = sig.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        for (sha, unix, sig) in [
            (sha.as_str(), unix, flipped.as_str()),
            (sha.as_str(), unix, "not hex"),
            (sha.as_str(), unix, ""),
            (sha.as_str(), unix + 3600, sig.as_str()),
            (&"1e".repeat(32), unix, sig.as_str()),
        ] {
            assert_eq!(
                s.verify(sha, unix, sig, now()),
                Err(UrlRefused::BadSignature),
                "{sha} {unix} {sig}"
            );
        }
        let other_key = UrlSigner::new([8; 32], "http://gw-proxy:8080", s.ttl());
        assert_eq!(
            other_key.verify(&sha, unix, &sig, now()),
            Err(UrlRefused::BadSignature)
        );
    }

    #[test]
    fn the_key_file_is_made_once_private_and_reused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(URL_KEY_FILE);
        let first =
            UrlSigner::load_or_create(&path, "http://a", Duration::from_secs(60)).expect("created");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = UrlSigner::load_or_create(&path, "http://a", Duration::from_secs(60))
            .expect("read back");
        assert_eq!(first.key, again.key);
        let sha = "ab".repeat(32);
        let (url, _) = first.sign(&sha, now());
        let (_, unix, sig) = parts(&url);
        assert_eq!(again.verify(&sha, unix, &sig, now()), Ok(()));

        std::fs::write(&path, "too short\n").expect("damage");
        let err = UrlSigner::load_or_create(&path, "http://a", Duration::from_secs(60))
            .expect_err("malformed");
        assert!(err.to_string().contains("delete it"), "{err}");
    }
}

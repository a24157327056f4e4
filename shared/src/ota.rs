//! Signed OTA manifests: what a release key signs (an edge build's version, the SHA-256 of
//! its bytes and its size), and the checks both binaries make. The cloud checks an upload
//! against its own trusted keys; the edge is the authority and checks the manifest and the
//! downloaded bytes itself, whatever the cloud says.
//!
//! ```
//! use shiki_shared::ota::{Manifest, ReleaseKey, TrustedKeys};
//!
//! let key = ReleaseKey::generate();
//! let bytes = b"#!/bin/sh\necho new build\n";
//! let manifest = Manifest::for_bytes("0.2.0", bytes);
//! let signature = key.sign(&manifest);
//!
//! let trusted = TrustedKeys::parse(&[key.public_base64()]).unwrap();
//! trusted.verify(&manifest, &signature).unwrap();
//! assert!(trusted.verify(&Manifest::for_bytes("0.2.0", b"tampered"), &signature).is_err());
//! ```
//!
//! # Formats
//! - Signed bytes: `shiki-ota-v1\n{version}\n{sha256 lowercase hex}\n{size}\n` (UTF-8). A
//!   signature therefore covers exactly one version of exactly these bytes.
//! - Signature and public key: standard base64 (with padding) of the 64-byte ed25519
//!   signature and of the 32-byte public key.
//! - Release key file (`ota.key`): one line, the base64 of the 32-byte secret seed.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

/// What a release key signs for one edge build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The build's version, as `shiki-edge --version` reports it.
    pub version: String,
    /// SHA-256 of the artifact's bytes, lowercase hex.
    pub sha256: String,
    /// Size of the artifact in bytes.
    pub size: u64,
}

impl Manifest {
    /// The manifest of `bytes` as version `version`.
    pub fn for_bytes(version: impl Into<String>, bytes: &[u8]) -> Self {
        Self {
            version: version.into(),
            sha256: hex::encode(Sha256::digest(bytes)),
            size: bytes.len() as u64,
        }
    }

    /// The bytes a signature covers (see the module docs).
    pub fn signing_bytes(&self) -> Vec<u8> {
        format!(
            "shiki-ota-v1\n{}\n{}\n{}\n",
            self.version, self.sha256, self.size
        )
        .into_bytes()
    }
}

/// Why a manifest, key or signature was refused. Each says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtaError {
    #[error("public key {index} is not a base64 ed25519 public key (32 bytes): {reason}")]
    BadPublicKey { index: usize, reason: String },
    #[error("no public keys are trusted: set [ota] public_keys to the release keys' ota.pub")]
    NoTrustedKeys,
    #[error("the signature is not base64 of a 64-byte ed25519 signature: {0}")]
    MalformedSignature(String),
    #[error(
        "the signature does not verify for version {version}, sha256 {sha256}, size {size} \
         with any trusted key (wrong key, or the bytes or version changed after signing)"
    )]
    BadSignature {
        version: String,
        sha256: String,
        size: u64,
    },
    #[error("the release key file is not one line of base64 of a 32-byte seed: {0}")]
    BadSecretKey(String),
    #[error(
        "the version {0:?} cannot be signed: it must be non-empty, without spaces or line breaks"
    )]
    BadVersion(String),
}

/// The public keys a verifier trusts (several, so keys can be rotated).
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(Vec<VerifyingKey>);

impl TrustedKeys {
    /// Parses base64 public keys (as `ota.pub` holds them); an empty list trusts nothing.
    pub fn parse<S: AsRef<str>>(keys: &[S]) -> Result<Self, OtaError> {
        keys.iter()
            .enumerate()
            .map(|(index, k)| {
                let bad = |reason: String| OtaError::BadPublicKey { index, reason };
                let bytes = B64
                    .decode(k.as_ref().trim())
                    .map_err(|e| bad(e.to_string()))?;
                let bytes: [u8; 32] = bytes
                    .try_into()
                    .map_err(|b: Vec<u8>| bad(format!("{} bytes", b.len())))?;
                VerifyingKey::from_bytes(&bytes).map_err(|e| bad(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedKeys)
    }

    /// True when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks that `signature` (base64) signs `manifest` with one of the trusted keys.
    pub fn verify(&self, manifest: &Manifest, signature: &str) -> Result<(), OtaError> {
        if self.0.is_empty() {
            return Err(OtaError::NoTrustedKeys);
        }
        let raw = B64
            .decode(signature.trim())
            .map_err(|e| OtaError::MalformedSignature(e.to_string()))?;
        let raw: [u8; 64] = raw
            .try_into()
            .map_err(|b: Vec<u8>| OtaError::MalformedSignature(format!("{} bytes", b.len())))?;
        let signature = Signature::from_bytes(&raw);
        let message = manifest.signing_bytes();
        if self
            .0
            .iter()
            .any(|k| k.verify(&message, &signature).is_ok())
        {
            Ok(())
        } else {
            Err(OtaError::BadSignature {
                version: manifest.version.clone(),
                sha256: manifest.sha256.clone(),
                size: manifest.size,
            })
        }
    }
}

/// A release signing key (kept offline by whoever releases edge builds).
#[derive(Debug)]
pub struct ReleaseKey(SigningKey);

impl ReleaseKey {
    /// A new random key.
    pub fn generate() -> Self {
        let seed: [u8; 32] = rand::random();
        ReleaseKey(SigningKey::from_bytes(&seed))
    }

    /// Reads the key file's text (one line of base64 of the 32-byte seed).
    pub fn from_file_text(text: &str) -> Result<Self, OtaError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| OtaError::BadSecretKey(e.to_string()))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| OtaError::BadSecretKey(format!("{} bytes", b.len())))?;
        Ok(ReleaseKey(SigningKey::from_bytes(&seed)))
    }

    /// The key file's text: one line, base64 of the seed.
    pub fn file_text(&self) -> String {
        format!("{}\n", B64.encode(self.0.to_bytes()))
    }

    /// The public key, base64 (what `ota.pub` and `[ota] public_keys` hold).
    pub fn public_base64(&self) -> String {
        B64.encode(self.0.verifying_key().to_bytes())
    }

    /// Signs `manifest`; the signature in base64.
    pub fn sign(&self, manifest: &Manifest) -> String {
        B64.encode(self.0.sign(&manifest.signing_bytes()).to_bytes())
    }
}

/// Checks that `version` can be signed and put in a manifest.
pub fn check_version(version: &str) -> Result<(), OtaError> {
    if version.is_empty()
        || version.len() > 64
        || version.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(OtaError::BadVersion(version.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed() -> (ReleaseKey, Manifest, String) {
        let key = ReleaseKey::generate();
        let manifest = Manifest::for_bytes("1.2.3", b"edge build");
        let sig = key.sign(&manifest);
        (key, manifest, sig)
    }

    #[test]
    fn a_signature_verifies_with_any_trusted_key_and_only_for_its_manifest() {
        let (key, manifest, sig) = signed();
        let other = ReleaseKey::generate();
        let trusted =
            TrustedKeys::parse(&[other.public_base64(), key.public_base64()]).expect("keys");
        trusted
            .verify(&manifest, &sig)
            .expect("verifies with the second key");
        for changed in [
            Manifest {
                version: "1.2.4".into(),
                ..manifest.clone()
            },
            Manifest {
                size: manifest.size + 1,
                ..manifest.clone()
            },
            Manifest::for_bytes("1.2.3", b"edge bui1d"),
        ] {
            let err = trusted
                .verify(&changed, &sig)
                .expect_err("changed manifest");
            assert!(matches!(err, OtaError::BadSignature { .. }), "{err}");
        }
        let only_other = TrustedKeys::parse(&[other.public_base64()]).expect("key");
        assert!(only_other.verify(&manifest, &sig).is_err());
    }

    #[test]
    fn bad_keys_and_signatures_say_what_is_wrong() {
        let (_, manifest, sig) = signed();
        let err = TrustedKeys::parse(&["not base64!"]).expect_err("bad key");
        assert!(err.to_string().contains("public key 0"), "{err}");
        let err = TrustedKeys::parse(&[B64.encode([1u8; 16])]).expect_err("short key");
        assert!(err.to_string().contains("16 bytes"), "{err}");
        let none = TrustedKeys::default();
        assert_eq!(none.verify(&manifest, &sig), Err(OtaError::NoTrustedKeys));
        let trusted = TrustedKeys::parse(&[ReleaseKey::generate().public_base64()]).expect("key");
        assert!(matches!(
            trusted.verify(&manifest, "AAAA"),
            Err(OtaError::MalformedSignature(_))
        ));
    }

    #[test]
    fn the_key_file_round_trips_and_rejects_garbage() {
        let key = ReleaseKey::generate();
        let back = ReleaseKey::from_file_text(&key.file_text()).expect("reads back");
        assert_eq!(back.public_base64(), key.public_base64());
        assert!(ReleaseKey::from_file_text("short").is_err());
    }

    #[test]
    fn the_signed_bytes_name_version_hash_and_size() {
        let m = Manifest::for_bytes("0.2.0", b"abc");
        assert_eq!(
            String::from_utf8(m.signing_bytes()).expect("utf-8"),
            "shiki-ota-v1\n0.2.0\nba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n3\n"
        );
        assert!(check_version("0.2.0").is_ok());
        assert!(check_version("0.2 .0").is_err());
        assert!(check_version("").is_err());
    }
}

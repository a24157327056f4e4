//! Token generation and hashing.

use sha2::{Digest, Sha256};

/// Every token starts with this, so a leaked one is easy to recognise in logs and scanners.
pub const TOKEN_PREFIX: &str = "shiki_";

/// A new random token: `shiki_` + 64 lowercase hex digits (256 bits from the thread-local
/// CSPRNG, seeded from the OS).
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// Lowercase hex SHA-256 of a token, the only form in which tokens are stored. A plain
/// (unsalted) hash is enough because tokens carry 256 random bits.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

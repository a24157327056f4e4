//! Token generation, hashing and names.

use sha2::{Digest, Sha256};

/// Every token starts with this, so a leaked one is easy to recognise in logs and scanners.
pub const TOKEN_PREFIX: &str = "shiki_";

/// A new random token: `shiki_` + 64 lowercase hex digits (256 bits from the thread-local
/// CSPRNG, which is seeded from the OS).
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// Lowercase hex SHA-256 of a token, the only form in which tokens are stored. A plain
/// (unsalted, fast) hash is enough because tokens carry 256 random bits.
pub fn hash_token(token: &str) -> String {
    hex::encode(digest(token))
}

pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two digests in constant time.
pub(crate) fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Token names: `[A-Za-z0-9_.@-]{1,64}` (so they are safe in paths, logs and CSV).
pub fn valid_token_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_long_and_distinct() {
        let a = generate_token();
        let b = generate_token();
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert_ne!(a, b);
    }

    #[test]
    fn hash_is_lowercase_hex_sha256() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn digest_eq_compares_whole_digest() {
        let a = digest("one");
        let mut b = a;
        assert!(digest_eq(&a, &b));
        b[31] ^= 1;
        assert!(!digest_eq(&a, &b));
    }

    #[test]
    fn token_names_are_restricted() {
        assert!(valid_token_name("grafana-ro"));
        assert!(valid_token_name("ops@example.com"));
        assert!(!valid_token_name(""));
        assert!(!valid_token_name("a b"));
        assert!(!valid_token_name("$SHIKI_ADMIN_TOKEN"));
        assert!(!valid_token_name(&"x".repeat(65)));
    }
}

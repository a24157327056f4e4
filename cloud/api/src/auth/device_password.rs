//! Device MQTT passwords: made here (256 random bits, shown once), stored only as an
//! Argon2id hash (PHC string), checked by the embedded broker's front on each connection.
//! Argon2 rather than the plain SHA-256 of API tokens: with `mqtt.allow_unregistered` a
//! device chooses its own password on first contact, which may be weak.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

/// A new device password: 43 characters of URL-safe base64 (256 bits).
pub fn generate_device_password() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The Argon2id hash of `password` with a fresh salt, as a PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub fn hash_device_password(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("Argon2 with default parameters hashes any password")
        .to_string()
}

/// Whether `password` matches the PHC string `hash` (false for a hash that does not parse).
pub fn verify_device_password(hash: &str, password: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let pw = generate_device_password();
        assert_eq!(pw.len(), 43);
        let hash = hash_device_password(&pw);
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_device_password(&hash, &pw));
        assert!(!verify_device_password(&hash, "wrong"));
        assert!(!verify_device_password("not a hash", &pw));
        // Salted: the same password hashes differently.
        assert_ne!(hash, hash_device_password(&pw));
    }
}

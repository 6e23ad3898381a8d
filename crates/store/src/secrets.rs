//! Secrets and their hashes, shared by tokens, sessions and invitations: random secrets, the
//! SHA-256 the database keeps of them, and argon2 password hashes. Nothing here touches the
//! database or logs a secret.

use crate::{Result, StoreError};
use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::Argon2;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// SHA-256 of a token secret, hex: what the database keeps.
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// An argon2 hash of a password (PHC string), with a fresh salt.
pub(crate) fn hash_password(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
        .map(|h| h.to_string())
        .map_err(|e| {
            StoreError::Invalid(vec![hpcsera_api_types::FieldError::new(
                "password",
                e.to_string(),
            )])
        })
}

/// A random 256-bit secret, URL-safe base64 without padding (43 characters).
pub fn random_secret() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

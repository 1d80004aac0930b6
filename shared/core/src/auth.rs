//! Passwords, tokens and one-time codes.
//!
//! * Passwords: argon2id (OWASP parameters: 19 MiB, 2 passes).
//! * Tokens: 32 random bytes, shown to the client once as URL-safe base64,
//!   stored as their SHA-256.
//! * Codes: 6 digits, stored as a SHA-256 bound to user and purpose,
//!   expiring and attempt-limited by the caller's table.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

use crate::{AppError, AppResult};

fn argon2() -> Argon2<'static> {
    // m = 19 MiB, t = 2, p = 1: OWASP's argon2id baseline.
    let params = Params::new(19 * 1024, 2, 1, None).expect("static argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

/// Checks a password against a stored PHC string. A malformed hash is a
/// mismatch, not an error.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Burns the same time as a real verification, so that an unknown account
/// cannot be told from a wrong password by timing.
pub fn verify_dummy(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash_password("not-a-real-password").unwrap_or_default());
    let _ = verify_password(password, phc);
}

/// Password hashes (and verifications) one process runs at once. Each
/// takes 19 MiB and ~50 ms of a core, so a flood of sign-ups, logins or
/// resets could otherwise starve the process of memory and CPU; two fit a
/// function's one vCPU and 256 MB with room for everything else.
pub const HASH_CONCURRENCY: usize = 2;
/// How long a request waits for a hashing slot before it is told to retry
/// (503 `busy`, `Retry-After`).
pub const HASH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The hashing slots of this process (tests hold them to stand for a
/// flood).
pub fn hash_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(HASH_CONCURRENCY);
    &SLOTS
}

/// Runs `work` (argon2) on the blocking pool once a hashing slot is free:
/// at most [`HASH_CONCURRENCY`] at once per process; a caller that waited
/// [`HASH_WAIT`] gets [`AppError::Busy`].
async fn hashing<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> AppResult<T> {
    let _slot = tokio::time::timeout(HASH_WAIT, hash_slots().acquire())
        .await
        .map_err(|_| {
            tracing::warn!("password hashing at its bound; asking the client to retry");
            AppError::Busy {
                retry_after_secs: 1,
            }
        })?
        .map_err(|e| AppError::Internal(e.into()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AppError::Internal(e.into()))
}

/// [`hash_password`] off the async executor, bounded (see [`hashing`]).
pub async fn hash_password_async(password: String) -> AppResult<String> {
    hashing(move || hash_password(&password))
        .await?
        .map_err(AppError::Internal)
}

/// [`verify_password`] off the async executor, bounded (see [`hashing`]);
/// `None` as the hash burns the same time via [`verify_dummy`] and answers
/// `false`.
pub async fn verify_password_async(password: String, phc: Option<String>) -> AppResult<bool> {
    hashing(move || match phc {
        Some(h) => verify_password(&password, &h),
        None => {
            verify_dummy(&password);
            false
        }
    })
    .await
}

/// A fresh opaque token: `(shown_to_client, stored_hash)`.
pub fn new_token() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_token(&token);
    (token, hash)
}

/// The stored form of a token: SHA-256 of its text.
pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A fresh 6-digit code (leading zeros kept).
pub fn new_code() -> String {
    format!("{:06}", OsRng.gen_range(0..1_000_000u32))
}

/// The stored form of a code, bound to its user and purpose so that one
/// hash cannot be replayed for another account or use.
pub fn hash_code(user_id: i64, purpose: &str, code: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(user_id.to_be_bytes());
    h.update(purpose.as_bytes());
    h.update([0]);
    h.update(code.trim().as_bytes());
    h.finalize().to_vec()
}

/// HMAC-SHA256 of `message` under `secret`, URL-safe base64.
pub fn sign(secret: &[u8], message: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Checks a [`sign`] signature in constant time.
pub fn verify_signature(secret: &[u8], message: &str, signature: &str) -> bool {
    use hmac::{Hmac, Mac};
    let Ok(sig) = URL_SAFE_NO_PAD.decode(signature.as_bytes()) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    mac.verify_slice(&sig).is_ok()
}

/// Hex SHA-256, for keys that must not reveal what they are keyed on
/// (rate-limit keys carry no email addresses).
pub fn sha256_hex(input: &str) -> String {
    hex::encode(Sha256::digest(input.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip_and_mismatch() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "garbage"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, ha) = new_token();
        let (b, hb) = new_token();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(hash_token(&a), ha);
        assert_eq!(ha.len(), 32);
        assert!(a.len() >= 43);
    }

    #[test]
    fn signatures_verify_and_resist_tampering() {
        let s = sign(b"k", "unsubscribe:1:all");
        assert!(verify_signature(b"k", "unsubscribe:1:all", &s));
        assert!(!verify_signature(b"k", "unsubscribe:2:all", &s));
        assert!(!verify_signature(b"other", "unsubscribe:1:all", &s));
        assert!(!verify_signature(b"k", "unsubscribe:1:all", "garbage!"));
    }

    #[test]
    fn codes_are_six_digits_and_bound_to_user_and_purpose() {
        for _ in 0..100 {
            let c = new_code();
            assert_eq!(c.len(), 6);
            assert!(c.chars().all(|ch| ch.is_ascii_digit()));
        }
        assert_ne!(
            hash_code(1, "verify_email", "123456"),
            hash_code(2, "verify_email", "123456")
        );
        assert_ne!(
            hash_code(1, "verify_email", "123456"),
            hash_code(1, "reset_password", "123456")
        );
        assert_eq!(hash_code(1, "x", " 123456 "), hash_code(1, "x", "123456"));
    }
}

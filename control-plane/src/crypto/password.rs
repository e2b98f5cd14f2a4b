//! Password hashing with argon2id (PHC string format, parameters stored with each hash).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;

/// Minimum and maximum accepted password length (characters).
pub const MIN_LEN: usize = 12;
pub const MAX_LEN: usize = 256;

fn hasher() -> Argon2<'static> {
    // OWASP's argon2id recommendation: 19 MiB, 2 iterations, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn hash(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Constant-time verification against a stored PHC string; a malformed hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Runs `f` (an argon2id hash or check) on tokio's blocking pool, one at a time per process.
/// Each takes tens of milliseconds of CPU and 19 MiB of memory. On a runtime worker it held up
/// every task queued behind it (in `standalone`, the embedded node's proxied requests among
/// them); on the blocking pool without a bound, a burst of sign-ins would run as many at once
/// as it has threads (hundreds: gigabytes, and every core). Waiting callers queue in order.
async fn argon2_off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    static ONE_AT_A_TIME: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    let _permit = ONE_AT_A_TIME.acquire().await.map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())
}

/// `hash`, off the runtime's workers (see `argon2_off_runtime`).
pub async fn hash_off_runtime(password: &str) -> Result<String, String> {
    let password = password.to_string();
    argon2_off_runtime(move || hash(&password)).await?
}

/// `verify`, off the runtime's workers (see `argon2_off_runtime`); `None` as the stored hash
/// verifies against `dummy_hash`, so an unknown user takes as long, and never matches.
pub async fn verify_off_runtime(password: &str, stored: Option<&str>) -> bool {
    let password = password.to_string();
    let stored = stored.map(str::to_string);
    argon2_off_runtime(move || match stored {
        Some(h) => verify(&password, &h),
        None => {
            verify(&password, dummy_hash());
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// A hash of a random password, verified against when the user does not exist, so a login
/// for an unknown email takes as long as one for a known email.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash(&crate::crypto::tokens::random_token(24)).unwrap_or_default())
}

/// The password policy: length bounds, not the email, not all one character.
pub fn check_policy(password: &str, email: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(format!("password must be at least {MIN_LEN} characters"));
    }
    if n > MAX_LEN {
        return Err(format!("password must be at most {MAX_LEN} characters"));
    }
    let local = email.split('@').next().unwrap_or("").to_lowercase();
    if password.eq_ignore_ascii_case(email)
        || (local.len() >= 4 && password.to_lowercase().contains(&local))
    {
        return Err("password must not contain the email address".into());
    }
    let first = password.chars().next();
    if password.chars().all(|c| Some(c) == first) {
        return Err("password must not be a single repeated character".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_argon2id_and_verifies() {
        let h = hash("correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify("correct horse battery staple", &h));
        assert!(!verify("wrong", &h));
        assert!(!verify("x", "not-a-hash"));
    }

    #[tokio::test]
    async fn the_blocking_pool_versions_agree_with_hash_and_verify() {
        let h = hash_off_runtime("correct horse battery staple")
            .await
            .unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify("correct horse battery staple", &h));
        assert!(verify_off_runtime("correct horse battery staple", Some(&h)).await);
        assert!(!verify_off_runtime("wrong", Some(&h)).await);
        assert!(!verify_off_runtime("x", Some("not-a-hash")).await);
        // No stored hash (unknown user, or an invited one): never a match.
        assert!(!verify_off_runtime("correct horse battery staple", None).await);
    }

    #[test]
    fn policy() {
        assert!(check_policy("short", "a@b.c").is_err());
        assert!(check_policy("aaaaaaaaaaaaaaaa", "a@b.c").is_err());
        assert!(check_policy("alice-password-123", "alice@example.com").is_err());
        assert!(check_policy("tr0ub4dor&3-horse", "alice@example.com").is_ok());
        assert!(check_policy(&"x1".repeat(200), "a@b.c").is_err());
    }
}

//! Random tokens handed to people and machines: API keys (`aip_` + 256 bits), session ids,
//! CSRF tokens, invite tokens. Only their SHA-256 is stored.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const API_KEY_PREFIX: &str = "aip_";

/// `bytes` random bytes, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// A new API key: `aip_` followed by 32 random bytes (256 bits) in base64url.
pub fn new_api_key() -> String {
    format!("{API_KEY_PREFIX}{}", random_token(32))
}

/// Hex SHA-256 of a token: what the database and snapshots hold instead of the token. Keys carry
/// 256 bits of randomness, so a fast hash is enough (no dictionary to attack).
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn hash_token_bytes(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A recognisable but useless preview of a key: `aip_AbCd…wxyz`.
pub fn key_preview(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 16 {
        return "…".into();
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// Constant-time equality of two secrets.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_have_256_bits_and_a_prefix() {
        let k = new_api_key();
        assert!(k.starts_with("aip_"));
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&k[4..])
            .unwrap();
        assert_eq!(raw.len(), 32);
        assert_ne!(new_api_key(), k);
        assert_eq!(hash_token(&k).len(), 64);
        let p = key_preview(&k);
        assert!(p.starts_with("aip_") && p.chars().count() == 13, "{p}");
        assert!(ct_eq("abc", "abc") && !ct_eq("abc", "abd") && !ct_eq("abc", "ab"));
    }
}

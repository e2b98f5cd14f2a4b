//! Sealing of secrets carried to nodes: provider secrets inside a snapshot travel and rest
//! (in the node's last-known-good cache) encrypted with AES-256-GCM under a key derived from the
//! node token, so neither the wire without TLS nor a node's disk ever holds them in plaintext.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed value is too short")]
    TooShort,
    #[error("sealed value does not decrypt with this key (wrong node token or tampered data)")]
    Decrypt,
}

/// A symmetric key for one purpose, derived from a shared secret.
#[derive(Clone)]
pub struct SealKey {
    id: String,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealKey({})", self.id)
    }
}

/// HKDF-SHA256 (RFC 5869) with a fixed salt, one output block.
pub fn hkdf32(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let mut extract =
        <Hmac<Sha256> as Mac>::new_from_slice(salt).unwrap_or_else(|_| unreachable_hmac());
    extract.update(ikm);
    let prk = extract.finalize().into_bytes();
    let mut expand =
        <Hmac<Sha256> as Mac>::new_from_slice(&prk).unwrap_or_else(|_| unreachable_hmac());
    expand.update(info);
    expand.update(&[1u8]);
    expand.finalize().into_bytes().into()
}

// HMAC accepts keys of any length; this is never called.
fn unreachable_hmac() -> Hmac<Sha256> {
    panic!("hmac rejected a key")
}

impl SealKey {
    /// The key nodes and the control plane both derive from a node token, for `purpose`
    /// (e.g. "snapshot-secrets", "disk-cache", "spool").
    pub fn from_node_token(token: &str, purpose: &str) -> SealKey {
        let key = hkdf32(
            b"aiproxy-node-seal-v1",
            token.as_bytes(),
            purpose.as_bytes(),
        );
        SealKey::from_bytes(&key)
    }

    pub fn from_bytes(key: &[u8; 32]) -> SealKey {
        let id = hex::encode(&Sha256::digest(key)[..6]);
        SealKey {
            id,
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// A short public identifier of the key (not secret: a hash prefix).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `nonce (12 bytes) || ciphertext+tag`, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce cannot fail for in-memory buffers.
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < 12 + 16 {
            return Err(SealError::TooShort);
        }
        let (nonce, ct) = sealed.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| SealError::Decrypt)
    }
}

/// Purpose strings for keys derived from the node token.
pub const PURPOSE_SNAPSHOT: &str = "snapshot-secrets";
pub const PURPOSE_DISK_CACHE: &str = "disk-cache";
pub const PURPOSE_SPOOL: &str = "log-spool";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_binding() {
        let k = SealKey::from_node_token("node-token-1", "snapshot-secrets");
        let sealed = k.seal(b"sk-abc", b"cred-1");
        assert!(!sealed.windows(6).any(|w| w == b"sk-abc"));
        assert_eq!(k.open(&sealed, b"cred-1").unwrap(), b"sk-abc");
        assert_eq!(k.open(&sealed, b"cred-2"), Err(SealError::Decrypt));
        let other = SealKey::from_node_token("node-token-2", "snapshot-secrets");
        assert_eq!(other.open(&sealed, b"cred-1"), Err(SealError::Decrypt));
        let purpose = SealKey::from_node_token("node-token-1", "disk-cache");
        assert_ne!(purpose.id(), k.id());
        assert_eq!(k.open(&sealed[..10], b"cred-1"), Err(SealError::TooShort));
    }

    #[test]
    fn hkdf_matches_rfc5869_case_1() {
        // RFC 5869 A.1: IKM 22 x 0x0b, salt 0x00..0x0c, info 0xf0..0xf9, first 32 bytes of OKM.
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0u8..=0x0c).collect();
        let info: Vec<u8> = (0xf0u8..=0xf9).collect();
        let okm = hkdf32(&salt, &ikm, &info);
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        );
    }
}

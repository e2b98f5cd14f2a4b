//! Provider secrets at rest: AES-256-GCM envelope encryption. Each secret gets its own random
//! data key; the data key is wrapped by the master key (`AIPROXY_MASTER_KEY`). Both layers use
//! the owner row's identity as associated data, so a ciphertext copied to another row or tenant
//! does not decrypt. The master key's id travels with every ciphertext, so old keys
//! (`AIPROXY_OLD_MASTER_KEYS`) keep decrypting during a rotation.
//!
//! Format: `v1.<key id>.<base64 nonce‖wrapped data key>.<base64 nonce‖ciphertext>`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use data_plane::secret::Secret;
use rand::RngCore;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error("malformed encrypted value")]
    Malformed,
    #[error(
        "encrypted with master key {0}, which is neither AIPROXY_MASTER_KEY nor in AIPROXY_OLD_MASTER_KEYS"
    )]
    UnknownKey(String),
    #[error("encrypted value does not decrypt (wrong owner or tampered)")]
    Decrypt,
}

#[derive(Clone)]
struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

impl MasterKey {
    fn from_b64(var: &str, b64: &str) -> Result<MasterKey, String> {
        let raw = B64
            .decode(b64.trim())
            .map_err(|_| format!("{var}: not valid base64 (expected base64 of 32 random bytes, e.g. `openssl rand -base64 32`)"))?;
        let key: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| format!("{var}: decodes to {} bytes, expected 32", raw.len()))?;
        Ok(MasterKey {
            id: hex::encode(&Sha256::digest(key)[..4]),
            cipher: Aes256Gcm::new(&key.into()),
        })
    }
}

/// The current master key plus old ones still accepted for decryption.
#[derive(Clone)]
pub struct MasterKeys {
    current: MasterKey,
    old: Vec<MasterKey>,
}

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MasterKeys(current={}, old={})",
            self.current.id,
            self.old.len()
        )
    }
}

/// A fresh master key, base64 (what `rotate-master-key --generate` prints and standalone writes).
pub fn generate_master_key() -> String {
    let mut k = [0u8; 32];
    rand::rng().fill_bytes(&mut k);
    B64.encode(k)
}

fn gcm_seal(cipher: &Aes256Gcm, msg: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg, aad })
        .unwrap_or_default();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    out
}

fn gcm_open(cipher: &Aes256Gcm, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretsError> {
    if sealed.len() < 28 {
        return Err(SecretsError::Malformed);
    }
    let (nonce, ct) = sealed.split_at(12);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| SecretsError::Decrypt)
}

impl MasterKeys {
    pub fn new(current: &Secret, old: &[Secret]) -> Result<MasterKeys, String> {
        let current = MasterKey::from_b64("AIPROXY_MASTER_KEY", current.expose())?;
        let old = old
            .iter()
            .map(|k| MasterKey::from_b64("AIPROXY_OLD_MASTER_KEYS", k.expose()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MasterKeys { current, old })
    }

    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    pub fn knows(&self, key_id: &str) -> bool {
        self.current.id == key_id || self.old.iter().any(|k| k.id == key_id)
    }

    fn key(&self, id: &str) -> Result<&MasterKey, SecretsError> {
        std::iter::once(&self.current)
            .chain(self.old.iter())
            .find(|k| k.id == id)
            .ok_or_else(|| SecretsError::UnknownKey(id.to_string()))
    }

    /// Encrypts `plaintext` for the owner described by `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> String {
        let mut dek = [0u8; 32];
        rand::rng().fill_bytes(&mut dek);
        let wrapped = gcm_seal(&self.current.cipher, &dek, aad.as_bytes());
        let ct = gcm_seal(&Aes256Gcm::new(&dek.into()), plaintext, aad.as_bytes());
        format!(
            "v1.{}.{}.{}",
            self.current.id,
            B64.encode(wrapped),
            B64.encode(ct)
        )
    }

    pub fn open(&self, sealed: &str, aad: &str) -> Result<Vec<u8>, SecretsError> {
        let (kid, wrapped, ct) = parse(sealed)?;
        let dek = gcm_open(&self.key(kid)?.cipher, &wrapped, aad.as_bytes())?;
        let dek: [u8; 32] = dek
            .as_slice()
            .try_into()
            .map_err(|_| SecretsError::Malformed)?;
        gcm_open(&Aes256Gcm::new(&dek.into()), &ct, aad.as_bytes())
    }

    /// The key id a sealed value was wrapped with.
    pub fn key_id_of(sealed: &str) -> Result<&str, SecretsError> {
        parse(sealed).map(|(kid, _, _)| kid)
    }

    /// Re-wraps the data key under the current master key (the ciphertext itself is unchanged).
    pub fn rewrap(&self, sealed: &str, aad: &str) -> Result<String, SecretsError> {
        let (kid, wrapped, ct) = parse(sealed)?;
        if kid == self.current.id {
            return Ok(sealed.to_string());
        }
        let dek = gcm_open(&self.key(kid)?.cipher, &wrapped, aad.as_bytes())?;
        let rewrapped = gcm_seal(&self.current.cipher, &dek, aad.as_bytes());
        Ok(format!(
            "v1.{}.{}.{}",
            self.current.id,
            B64.encode(rewrapped),
            B64.encode(ct)
        ))
    }
}

fn parse(sealed: &str) -> Result<(&str, Vec<u8>, Vec<u8>), SecretsError> {
    let mut parts = sealed.split('.');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("v1"), Some(kid), Some(w), Some(c), None) => {
            let w = B64.decode(w).map_err(|_| SecretsError::Malformed)?;
            let c = B64.decode(c).map_err(|_| SecretsError::Malformed)?;
            Ok((kid, w, c))
        }
        _ => Err(SecretsError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(cur: &str, old: &[&str]) -> MasterKeys {
        MasterKeys::new(
            &Secret::new(cur),
            &old.iter().map(|s| Secret::new(*s)).collect::<Vec<_>>(),
        )
        .unwrap()
    }

    #[test]
    fn round_trip_and_owner_binding() {
        let k = keys(&generate_master_key(), &[]);
        let sealed = k.seal(b"sk-secret-value", "provider_credential:1:org-a");
        assert!(!sealed.contains("sk-secret"));
        assert_eq!(
            k.open(&sealed, "provider_credential:1:org-a").unwrap(),
            b"sk-secret-value"
        );
        assert_eq!(
            k.open(&sealed, "provider_credential:1:org-b"),
            Err(SecretsError::Decrypt)
        );
        assert_eq!(MasterKeys::key_id_of(&sealed).unwrap(), k.current_id());
    }

    #[test]
    fn rotation_rewraps_under_the_new_key() {
        let old_b64 = generate_master_key();
        let new_b64 = generate_master_key();
        let old = keys(&old_b64, &[]);
        let sealed = old.seal(b"v", "a");
        let rotating = keys(&new_b64, &[&old_b64]);
        assert_eq!(rotating.open(&sealed, "a").unwrap(), b"v");
        let rewrapped = rotating.rewrap(&sealed, "a").unwrap();
        assert_eq!(
            MasterKeys::key_id_of(&rewrapped).unwrap(),
            rotating.current_id()
        );
        let new_only = keys(&new_b64, &[]);
        assert_eq!(new_only.open(&rewrapped, "a").unwrap(), b"v");
        assert!(matches!(
            new_only.open(&sealed, "a"),
            Err(SecretsError::UnknownKey(_))
        ));
    }

    #[test]
    fn bad_keys_are_explained() {
        let e = MasterKeys::new(&Secret::new("not base64!!"), &[]).unwrap_err();
        assert!(e.starts_with("AIPROXY_MASTER_KEY: not valid base64"), "{e}");
        let e = MasterKeys::new(&Secret::new("c2hvcnQ="), &[]).unwrap_err();
        assert!(e.contains("expected 32"), "{e}");
        let k = keys(&generate_master_key(), &[]);
        assert_eq!(k.open("garbage", "a"), Err(SecretsError::Malformed));
    }
}

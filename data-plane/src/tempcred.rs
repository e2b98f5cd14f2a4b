//! Temporary credentials: short-lived tokens a backend mints for a browser app
//! (`POST /v1/proxy/credentials`), usable in place of an API key, limited to the model(s),
//! project and lifetime they were issued for, and never able to mint another credential.
//!
//! Format: `aipt_<base64url(claims JSON)>.<base64url(HMAC-SHA256(signing key, "aipt_"+claims))>`.
//! Signing keys are server-held, distributed in the snapshot (the newest active one signs; all
//! verify, so rotation does not invalidate live tokens), so any node verifies without a shared
//! cache. A token names its parent API key: revoking the parent revokes its tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::ProxyError;
use crate::snapshot::{ApiKey, Snapshot};

pub const PREFIX: &str = "aipt_";
pub const DEFAULT_TTL_SECS: u64 = 600;
pub const MAX_TTL_SECS: u64 = 86_400;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub v: u8,
    /// Signing key id.
    pub kid: String,
    /// The API key that issued it.
    pub sub: String,
    pub org: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prj: Option<String>,
    /// Models it may call (absent: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mdl: Option<Vec<String>>,
    /// `x-bt-parent` applied to its calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

fn mac(key: &[u8], signed: &str) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| panic!("hmac accepts any key length"));
    m.update(signed.as_bytes());
    m.finalize().into_bytes().to_vec()
}

pub fn mint(claims: &Claims, key: &[u8]) -> String {
    let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signed = format!("{PREFIX}{payload}");
    let sig = B64.encode(mac(key, &signed));
    format!("{signed}.{sig}")
}

fn invalid(msg: &str) -> ProxyError {
    ProxyError {
        code: Some("invalid_temporary_credential".into()),
        ..ProxyError::unauthorized(msg)
    }
}

/// Verifies a token against the snapshot; returns its claims and its (still valid) parent key.
pub fn verify<'s>(
    snap: &'s Snapshot,
    token: &str,
    now_s: i64,
) -> Result<(Claims, &'s ApiKey), ProxyError> {
    let rest = token
        .strip_prefix(PREFIX)
        .ok_or_else(|| invalid("Malformed temporary credential."))?;
    let (payload, sig) = rest
        .split_once('.')
        .ok_or_else(|| invalid("Malformed temporary credential."))?;
    let raw = B64
        .decode(payload)
        .map_err(|_| invalid("Malformed temporary credential."))?;
    let claims: Claims =
        serde_json::from_slice(&raw).map_err(|_| invalid("Malformed temporary credential."))?;
    let sig = B64
        .decode(sig)
        .map_err(|_| invalid("Malformed temporary credential."))?;
    let key = snap
        .signing_keys
        .iter()
        .find(|k| k.id == claims.kid)
        .ok_or_else(|| {
            invalid("This temporary credential was signed with an unknown or retired key.")
        })?;
    let expected = mac(&key.key, &format!("{PREFIX}{payload}"));
    if !bool::from(expected.ct_eq(&sig)) {
        return Err(invalid(
            "Invalid temporary credential: the signature does not match (was it modified?).",
        ));
    }
    if claims.exp <= now_s {
        return Err(ProxyError {
            code: Some("temporary_credential_expired".into()),
            ..ProxyError::unauthorized("This temporary credential has expired; request a new one.")
        });
    }
    let parent = snap
        .key_by_id(&claims.sub)
        .filter(|k| *k.org_id == *claims.org)
        .ok_or_else(|| invalid("The API key that issued this temporary credential was revoked."))?;
    Ok((claims, parent))
}

/// The body of `POST /credentials`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub logging: Option<Logging>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    #[serde(default)]
    pub parent: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tampering_is_detected() {
        let claims = Claims {
            v: 1,
            kid: "k".into(),
            sub: "key1".into(),
            org: "o".into(),
            prj: None,
            mdl: Some(vec!["gpt-4o".into()]),
            log: None,
            iat: 0,
            exp: 100,
            jti: "j".into(),
        };
        let t = mint(&claims, b"secret");
        assert!(t.starts_with("aipt_"));
        let (payload, sig) = t[5..].split_once('.').unwrap();
        let mut forged = claims.clone();
        forged.mdl = None;
        let forged_payload = B64.encode(serde_json::to_vec(&forged).unwrap());
        assert_ne!(payload, forged_payload);
        let expected = mac(b"secret", &format!("{PREFIX}{forged_payload}"));
        assert_ne!(
            B64.encode(expected),
            sig,
            "changing the claims changes the signature"
        );
    }
}

//! Caller authentication against the snapshot (never the database): `Authorization: Bearer <key>`
//! or `x-api-key: <key>`, looked up by SHA-256. The lookup is keyed by the digest of the key, so
//! its timing reveals nothing about the key's bytes; keys carry 256 bits of randomness.

use std::borrow::Cow;

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::error::ProxyError;
use crate::snapshot::{ApiKey, Snapshot};
use crate::tempcred;

/// The key the caller sent, if any.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        return match v.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                Some(token.trim()).filter(|t| !t.is_empty())
            }
            _ => None,
        };
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The authenticated caller: an API key, or a temporary credential acting for its parent key
/// (with the credential's project restriction and claims).
#[derive(Debug, Clone)]
pub struct Caller<'s> {
    pub key: Cow<'s, ApiKey>,
    pub temp: Option<tempcred::Claims>,
}

impl Caller<'_> {
    /// The models a temporary credential is limited to, if it is.
    fn model_limit(&self) -> Option<&Vec<String>> {
        self.temp.as_ref().and_then(|t| t.mdl.as_ref())
    }

    /// Whether the caller may use `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.model_limit()
            .is_none_or(|allowed| allowed.iter().any(|m| m == model))
    }

    /// `allows_model`, as the 403 a call for another model gets.
    pub fn check_model(&self, model: &str) -> Result<(), ProxyError> {
        match self.model_limit() {
            Some(allowed) if !self.allows_model(model) => Err(ProxyError::forbidden(format!(
                "This temporary credential is limited to {}.",
                allowed.join(", ")
            ))),
            _ => Ok(()),
        }
    }
}

pub fn authenticate<'s>(snap: &'s Snapshot, headers: &HeaderMap) -> Result<Caller<'s>, ProxyError> {
    let Some(token) = presented_key(headers) else {
        return Err(ProxyError::unauthorized(
            "Missing API key. Send `Authorization: Bearer <key>` or `x-api-key: <key>`.",
        ));
    };
    authenticate_token(snap, token)
}

pub fn authenticate_token<'s>(snap: &'s Snapshot, token: &str) -> Result<Caller<'s>, ProxyError> {
    if token.starts_with(tempcred::PREFIX) {
        let now = crate::record::now_ms() / 1000;
        let (claims, parent) = tempcred::verify(snap, token, now)?;
        let mut key = parent.clone();
        if claims.prj.is_some() {
            key.project_id = claims.prj.as_deref().map(Into::into);
        }
        return Ok(Caller {
            key: Cow::Owned(key),
            temp: Some(claims),
        });
    }
    let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let key = snap
        .key_by_hash(&hash)
        .ok_or_else(|| ProxyError::unauthorized("Invalid API key."))?;
    Ok(Caller {
        key: Cow::Borrowed(key),
        temp: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sources() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert("x-api-key", "aip_x".parse().unwrap());
        assert_eq!(presented_key(&h), Some("aip_x"));
        h.insert("authorization", "Bearer aip_y".parse().unwrap());
        assert_eq!(presented_key(&h), Some("aip_y"), "Authorization wins");
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(
            presented_key(&h),
            None,
            "a non-bearer Authorization is not a key"
        );
    }
}

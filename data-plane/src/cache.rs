//! The response cache.
//!
//! - **When**: `x-bt-use-cache: auto` (default) caches deterministic requests only
//!   (`temperature: 0` or a `seed`; embeddings always), `always` caches every request of a
//!   cacheable route, `never` nothing. `Cache-Control` overrides it: `no-cache` (or `max-age=0`)
//!   skips the read, `no-store` skips the write, `max-age=N` accepts entries at most N s old.
//!   `x-bt-cache-ttl` (1 s … 7 days, default 7 days) sets the lifetime of a written entry.
//! - **Key**: SHA-256 of the request body canonicalised (object keys sorted, no whitespace),
//!   plus the route, organization, project, endpoint pin and the headers that change the answer
//!   (`anthropic-beta`, `openai-beta`). Reordered JSON hits; another project misses.
//! - **Secrecy**: the stored id is a second hash of the key, and each entry is sealed with
//!   AES-256-GCM under a key derived (HKDF) from a node-token secret, the caller's scope and the
//!   request hash — readable only by a node that sees the same request in the same scope.
//! - **Where**: in memory (bounded, oldest evicted first) or, when `AIPROXY_REDIS_URL` is set,
//!   Redis shared by all nodes. A cache failure is a miss, never an error. Writes run in the
//!   background; until one has run its entry is held here and read from here, so a repeat on
//!   this node right after the answer hits.

mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use store::{CacheStore, MemoryStore, RedisStore};

use crate::error::ProxyError;
use crate::reqbody::Fields;
use crate::routing::RouteKind;
use crate::seal::{SealKey, hkdf32};

const X_BT_USE_CACHE: HeaderName = HeaderName::from_static("x-bt-use-cache");
const X_BT_CACHE_TTL: HeaderName = HeaderName::from_static("x-bt-cache-ttl");

pub const MAX_TTL_SECS: u64 = 7 * 24 * 3600;
pub const DEFAULT_TTL_SECS: u64 = MAX_TTL_SECS;
/// Largest response (or stream transcript) stored.
pub const MAX_ENTRY_BYTES: usize = 8 * 1024 * 1024;

/// What the cache may do for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub read: bool,
    pub write: bool,
    pub ttl_secs: u64,
    /// Oldest acceptable entry, from `Cache-Control: max-age`.
    pub max_age_secs: Option<u64>,
}

/// Is this request deterministic enough for `auto`?
fn deterministic(kind: RouteKind, body: &(impl Fields + ?Sized)) -> bool {
    if kind == RouteKind::Embeddings {
        return true;
    }
    let zero_temp = body.field("temperature").and_then(Value::as_f64) == Some(0.0);
    zero_temp || body.field("seed").is_some_and(|s| !s.is_null())
}

/// The cache plan for a request, or `None` when caching does not apply.
pub fn plan(
    kind: RouteKind,
    headers: &HeaderMap,
    body: &(impl Fields + ?Sized),
) -> Result<Option<Plan>, ProxyError> {
    if matches!(kind, RouteKind::Realtime) {
        return Ok(None);
    }
    let mode = crate::routing::header(headers, &X_BT_USE_CACHE)?.unwrap_or("auto");
    let applies = match mode {
        "auto" => deterministic(kind, body),
        "always" => true,
        "never" => false,
        other => {
            return Err(ProxyError::invalid_param(
                "x-bt-use-cache",
                format!(
                    "Invalid x-bt-use-cache header '{other}'. Must be one of auto, always, never."
                ),
            ));
        }
    };
    let ttl_secs = match crate::routing::header(headers, &X_BT_CACHE_TTL)? {
        None => DEFAULT_TTL_SECS,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=MAX_TTL_SECS).contains(&n) => n,
            _ => {
                return Err(ProxyError::invalid_param(
                    "x-bt-cache-ttl",
                    format!(
                        "x-bt-cache-ttl must be a number of seconds between 1 and {MAX_TTL_SECS}, got '{v}'."
                    ),
                ));
            }
        },
    };
    if !applies {
        return Ok(None);
    }
    let mut read = true;
    let mut write = true;
    let mut max_age_secs = None;
    for directive in headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let d = directive.trim().to_ascii_lowercase();
        match d.as_str() {
            "no-cache" => read = false,
            "no-store" => write = false,
            _ => {
                if let Some(n) = d.strip_prefix("max-age=") {
                    let n: u64 = n.trim().parse().map_err(|_| {
                        ProxyError::invalid_param(
                            "cache-control",
                            "Cache-Control max-age must be a number of seconds.",
                        )
                    })?;
                    if n == 0 {
                        read = false;
                    } else {
                        max_age_secs = Some(n);
                    }
                }
            }
        }
    }
    if !read && !write {
        return Ok(None);
    }
    Ok(Some(Plan {
        read,
        write,
        ttl_secs,
        max_age_secs,
    }))
}

/// Serialises a JSON value with object keys sorted and no whitespace.
pub fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                canonical(&m[*k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        // 0 and 0.0 are the same number to every provider.
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                out.push_str(&(f as i64).to_string())
            }
            _ => out.push_str(&n.to_string()),
        },
        other => out.push_str(&other.to_string()),
    }
}

/// Identity of a cache entry: the lookup id (stored) and the secret material to seal it.
#[derive(Clone)]
pub struct Key {
    pub id: String,
    request_hash: [u8; 32],
    scope: String,
}

pub fn key(
    kind: RouteKind,
    org_id: &str,
    project_id: Option<&str>,
    endpoint: Option<&str>,
    headers: &HeaderMap,
    body: &Value,
) -> Key {
    let mut c = String::with_capacity(1024);
    canonical(body, &mut c);
    let mut h = Sha256::new();
    for part in [
        kind.name(),
        org_id,
        project_id.unwrap_or(""),
        endpoint.unwrap_or(""),
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    for name in ["anthropic-beta", "openai-beta"] {
        for v in headers.get_all(name) {
            h.update(name.as_bytes());
            h.update(v.as_bytes());
            h.update([0u8]);
        }
    }
    h.update(c.as_bytes());
    let request_hash: [u8; 32] = h.finalize().into();
    let id = format!(
        "aiproxy:cache:v1:{}",
        hex::encode(Sha256::digest(
            [b"lookup".as_slice(), &request_hash].concat()
        ))
    );
    Key {
        id,
        request_hash,
        scope: format!("{org_id}/{}", project_id.unwrap_or("")),
    }
}

/// A cached response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub created_ms: i64,
    pub ttl_secs: u64,
    pub content_type: String,
    pub used_endpoint: String,
    pub provider: String,
    pub stream: bool,
    pub usage: llm::Usage,
    #[serde(with = "b64")]
    pub body: Vec<u8>,
}

impl Entry {
    /// Small enough to cache (`MAX_ENTRY_BYTES`).
    fn storable(&self) -> bool {
        self.body.len() <= MAX_ENTRY_BYTES
    }
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// The response cache of a node.
pub struct Cache {
    store: Arc<dyn CacheStore>,
    secret: [u8; 32],
    /// Entries handed to a background `put` and not yet written, by id: a request repeated on
    /// this node right after the answer finds them here, however late the write task runs.
    pending: Mutex<HashMap<String, Arc<Entry>>>,
}

impl Cache {
    pub fn new(store: Arc<dyn CacheStore>, node_token: &str) -> Cache {
        Cache {
            store,
            secret: hkdf32(
                b"aiproxy-response-cache-v1",
                node_token.as_bytes(),
                b"response-cache",
            ),
            pending: Mutex::default(),
        }
    }

    fn seal_key(&self, k: &Key) -> SealKey {
        SealKey::from_bytes(&hkdf32(k.scope.as_bytes(), &self.secret, &k.request_hash))
    }

    /// A fresh entry for this key, if any (expired, too old or undecryptable entries miss).
    pub async fn get(&self, k: &Key, now_ms: i64, max_age_secs: Option<u64>) -> Option<Entry> {
        let held = self.pending.lock().ok().and_then(|p| p.get(&k.id).cloned());
        let e = match held {
            Some(e) => Entry::clone(&e),
            None => {
                let sealed = self.store.get(&k.id).await?;
                let plain = self.seal_key(k).open(&sealed, k.id.as_bytes()).ok()?;
                serde_json::from_slice(&plain).ok()?
            }
        };
        let age = (now_ms - e.created_ms).max(0) as u64 / 1000;
        if age >= e.ttl_secs || max_age_secs.is_some_and(|m| age > m) {
            return None;
        }
        Some(e)
    }

    /// Makes `e` visible to `get` on this node now; `put`, run in the background, writes it to
    /// the store and lets go of it.
    pub fn hold(&self, k: &Key, e: &Arc<Entry>) {
        if e.storable()
            && let Ok(mut p) = self.pending.lock()
        {
            p.insert(k.id.clone(), e.clone());
        }
    }

    pub async fn put(&self, k: &Key, e: &Arc<Entry>) {
        self.write(k, e).await;
        if let Ok(mut p) = self.pending.lock()
            && p.get(&k.id).is_some_and(|held| Arc::ptr_eq(held, e))
        {
            p.remove(&k.id);
        }
    }

    async fn write(&self, k: &Key, e: &Entry) {
        if !e.storable() {
            return;
        }
        let Ok(plain) = serde_json::to_vec(e) else {
            return;
        };
        let sealed = self.seal_key(k).seal(&plain, k.id.as_bytes());
        self.store.put(&k.id, sealed, e.ttl_secs).await;
    }
}

/// Replays a cached SSE transcript event by event.
pub fn replay_events(body: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < body.len() {
        if body[i] == b'\n' && body[i + 1] == b'\n' {
            out.push(Bytes::copy_from_slice(&body[start..i + 2]));
            start = i + 2;
            i += 2;
            continue;
        }
        i += 1;
    }
    if start < body.len() {
        out.push(Bytes::copy_from_slice(&body[start..]));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use serde_json::json;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn plans() {
        let det = json!({"model": "m", "temperature": 0});
        let nondet = json!({"model": "m"});
        let p = plan(RouteKind::Chat, &h(&[]), &det).unwrap().unwrap();
        assert!(p.read && p.write && p.ttl_secs == DEFAULT_TTL_SECS);
        assert_eq!(
            plan(RouteKind::Chat, &h(&[]), &nondet).unwrap(),
            None,
            "auto skips non-deterministic requests"
        );
        assert!(
            plan(RouteKind::Chat, &h(&[]), &json!({"seed": 7}))
                .unwrap()
                .is_some()
        );
        assert!(
            plan(RouteKind::Embeddings, &h(&[]), &nondet)
                .unwrap()
                .is_some(),
            "embeddings always"
        );
        assert!(
            plan(
                RouteKind::Chat,
                &h(&[("x-bt-use-cache", "always")]),
                &nondet
            )
            .unwrap()
            .is_some()
        );
        assert_eq!(
            plan(RouteKind::Chat, &h(&[("x-bt-use-cache", "never")]), &det).unwrap(),
            None
        );
        assert!(
            plan(
                RouteKind::Chat,
                &h(&[("x-bt-use-cache", "sometimes")]),
                &det
            )
            .is_err()
        );
        let p = plan(RouteKind::Chat, &h(&[("cache-control", "no-store")]), &det)
            .unwrap()
            .unwrap();
        assert!(p.read && !p.write);
        let p = plan(RouteKind::Chat, &h(&[("cache-control", "no-cache")]), &det)
            .unwrap()
            .unwrap();
        assert!(!p.read && p.write);
        let p = plan(
            RouteKind::Chat,
            &h(&[("cache-control", "max-age=60")]),
            &det,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.max_age_secs, Some(60));
        assert_eq!(
            plan(
                RouteKind::Chat,
                &h(&[("cache-control", "no-cache, no-store")]),
                &det
            )
            .unwrap(),
            None
        );
        assert_eq!(
            plan(RouteKind::Chat, &h(&[("x-bt-cache-ttl", "30")]), &det)
                .unwrap()
                .unwrap()
                .ttl_secs,
            30
        );
        for bad in ["0", "604801", "soon"] {
            assert!(
                plan(RouteKind::Chat, &h(&[("x-bt-cache-ttl", bad)]), &det).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn keys_ignore_key_order_and_whitespace_but_not_scope() {
        let a: Value = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str("{ \"temperature\": 0.0,\n \"messages\": [ {\"content\": \"hi\", \"role\": \"user\"} ], \"model\": \"m\" }").unwrap();
        let none = HeaderMap::new();
        let ka = key(RouteKind::Chat, "o", Some("p"), None, &none, &a);
        assert_eq!(
            ka.id,
            key(RouteKind::Chat, "o", Some("p"), None, &none, &b).id
        );
        assert_ne!(
            ka.id,
            key(RouteKind::Chat, "o", Some("p2"), None, &none, &a).id,
            "projects do not share"
        );
        assert_ne!(
            ka.id,
            key(RouteKind::Chat, "o2", Some("p"), None, &none, &a).id
        );
        assert_ne!(
            ka.id,
            key(RouteKind::Chat, "o", Some("p"), Some("pinned"), &none, &a).id,
            "endpoint pins do not share"
        );
        assert_ne!(
            ka.id,
            key(
                RouteKind::Chat,
                "o",
                Some("p"),
                None,
                &h(&[("anthropic-beta", "x")]),
                &a
            )
            .id
        );
        assert_ne!(
            ka.id,
            key(RouteKind::Completions, "o", Some("p"), None, &none, &a).id
        );
    }

    struct Clock(AtomicI64);

    /// A cache in memory and the key of a chat request with this body.
    fn memory_cache(body: Value) -> (Arc<MemoryStore>, Cache, Key) {
        let store = Arc::new(MemoryStore::new(1 << 20));
        let cache = Cache::new(store.clone(), "node-token");
        let k = key(RouteKind::Chat, "o", None, None, &HeaderMap::new(), &body);
        (store, cache, k)
    }

    /// A 10-second JSON entry made at `created_ms`.
    fn entry(created_ms: i64, body: &[u8]) -> Arc<Entry> {
        Arc::new(Entry {
            created_ms,
            ttl_secs: 10,
            content_type: "application/json".into(),
            used_endpoint: "E".into(),
            provider: "openai".into(),
            stream: false,
            usage: Default::default(),
            body: body.to_vec(),
        })
    }

    #[tokio::test]
    async fn entries_expire_and_are_sealed() {
        let (store, cache, k) = memory_cache(json!({"q": 1}));
        let clock = Clock(AtomicI64::new(1_000_000));
        let e = entry(clock.0.load(Ordering::SeqCst), b"the answer text");
        cache.put(&k, &e).await;
        let raw = store.get(&k.id).await.unwrap();
        assert!(
            !raw.windows(15).any(|w| w == b"the answer text"),
            "stored sealed"
        );
        assert!(
            cache
                .get(&k, clock.0.load(Ordering::SeqCst) + 9_999, None)
                .await
                .is_some()
        );
        assert!(
            cache
                .get(&k, clock.0.load(Ordering::SeqCst) + 5_000, Some(4))
                .await
                .is_none(),
            "max-age bounds the age"
        );
        clock.0.fetch_add(10_000, Ordering::SeqCst);
        assert!(
            cache
                .get(&k, clock.0.load(Ordering::SeqCst), None)
                .await
                .is_none(),
            "expired after its TTL"
        );
        // Another node token cannot read it.
        let other = Cache::new(store, "other-token");
        assert!(other.get(&k, 1_000_000, None).await.is_none());
    }

    #[tokio::test]
    async fn held_entries_hit_before_their_write_and_are_let_go_after_it() {
        let (store, cache, k) = memory_cache(json!({"q": 2}));
        let body = |e: Option<Entry>| e.map(|e| e.body);
        let first = entry(1_000_000, b"first");
        cache.hold(&k, &first);
        assert!(store.get(&k.id).await.is_none(), "not written yet");
        assert_eq!(
            body(cache.get(&k, 1_000_001, None).await).as_deref(),
            Some(&b"first"[..])
        );
        assert!(
            cache.get(&k, 1_010_000, None).await.is_none(),
            "a held entry expires as a stored one does"
        );
        // A newer answer held while the older write runs: that write does not drop it.
        let second = entry(1_000_000, b"second");
        cache.hold(&k, &second);
        cache.put(&k, &first).await;
        assert_eq!(
            body(cache.get(&k, 1_000_001, None).await).as_deref(),
            Some(&b"second"[..])
        );
        cache.put(&k, &second).await;
        assert!(
            cache.pending.lock().unwrap().is_empty(),
            "let go once written"
        );
        assert_eq!(
            body(cache.get(&k, 1_000_001, None).await).as_deref(),
            Some(&b"second"[..]),
            "read back from the store"
        );
    }

    #[test]
    fn replay_splits_events() {
        let t = b"data: a\n\ndata: b\n\ndata: [DONE]\n\n";
        let ev = replay_events(t);
        assert_eq!(ev.len(), 3);
        assert_eq!(ev.concat(), t.to_vec());
    }
}

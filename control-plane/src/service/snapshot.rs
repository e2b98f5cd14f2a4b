//! Configuration snapshots for data-plane nodes: built from the database in one consistent read,
//! versioned by `config_state.version`, published to every watching node. The builder wakes on a
//! local change, on a Postgres NOTIFY from another replica, or on a 1 s safety-net poll, and
//! rebuilds only when the version moved. Provider secrets are decrypted here and re-sealed per
//! node token (see `data_plane::seal`), so they never cross the wire or rest on a node in clear.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use data_plane::seal::SealKey;
use prost::Message;
use proto::v1 as pb;
use tokio::sync::{Notify, watch};

use crate::db;
use crate::service::{providers, rotate};
use crate::state::AppState;

/// Per node-token key: credential id → (the secret in clear, the secret as sealed for that key).
type SealedSecrets = HashMap<String, (Arc<[u8]>, Vec<u8>)>;

/// A built snapshot with its secrets still in clear (in memory only), and its sealed encodings
/// per node-token key, computed once per key.
pub struct BuiltSnapshot {
    pub version: u64,
    base: pb::Snapshot,
    /// (credential index in `base.credentials`, sealed payload JSON in clear)
    secrets: Vec<(usize, Arc<[u8]>)>,
    signing: Vec<(usize, Vec<u8>)>,
    /// Node-token key id → the encoding for nodes holding that key. Concurrent watchers of one
    /// key share one encoding (the first computes it, off the async workers; the rest wait).
    encoded: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Bytes>>>>,
    /// Node-token key id → the sealed secrets that key's encoding used. Later builds reuse the
    /// sealed value of every credential whose secret is still the same (`carried`), so an
    /// unchanged credential's bytes stay the same from one version to the next: sealing 20,000
    /// secrets per build is avoided, and nodes recognise unchanged credentials and keep them
    /// instead of opening them again.
    sealed: Mutex<HashMap<String, Arc<SealedSecrets>>>,
    /// Per key, the newest earlier build's `sealed` (builds no node asked for are skipped).
    carried: HashMap<String, Arc<SealedSecrets>>,
    /// Credential id → (its sealed secret as stored, the associated data it was opened with,
    /// the opened secret): the next build reuses the opened secret of every credential whose
    /// sealed value and owner did not change (opening 20,000 envelopes is a quarter of a build at
    /// that size). The owner is part of the match, so a row moved to another tenant is opened
    /// again — and fails, as it must.
    opened: HashMap<String, (String, String, Arc<[u8]>)>,
}

impl std::fmt::Debug for BuiltSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BuiltSnapshot(v{})", self.version)
    }
}

impl BuiltSnapshot {
    /// The protobuf bytes for nodes holding `key`, secrets sealed under it. Computed once per
    /// key on a blocking thread; concurrent callers for the same key wait for that one result.
    pub async fn encode_for(self: &Arc<Self>, key: &SealKey) -> Bytes {
        let cell = match self.encoded.lock() {
            Ok(mut cache) => cache.entry(key.id().to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        };
        cell.get_or_init(|| {
            let (this, key) = (self.clone(), key.clone());
            async move {
                tokio::task::spawn_blocking(move || this.encode_now(&key))
                    .await
                    .unwrap_or_default()
            }
        })
        .await
        .clone()
    }

    fn encode_now(&self, key: &SealKey) -> Bytes {
        let carried = self.carried.get(key.id());
        let mut sealed = SealedSecrets::with_capacity(self.secrets.len());
        let mut snap = self.base.clone();
        for (idx, plain) in &self.secrets {
            if let Some(c) = snap.credentials.get_mut(*idx) {
                let reuse = carried
                    .and_then(|m| m.get(&c.id))
                    .filter(|(was, _)| Arc::ptr_eq(was, plain) || was == plain)
                    .map(|(_, sealed)| sealed.clone());
                c.sealed_secret = reuse.unwrap_or_else(|| key.seal(plain, c.id.as_bytes()));
                sealed.insert(c.id.clone(), (plain.clone(), c.sealed_secret.clone()));
            }
        }
        for (idx, plain) in &self.signing {
            if let Some(k) = snap.signing_keys.get_mut(*idx) {
                k.sealed_key = key.seal(plain, k.id.as_bytes());
            }
        }
        if let Ok(mut m) = self.sealed.lock() {
            m.insert(key.id().to_string(), Arc::new(sealed));
        }
        Bytes::from(snap.encode_to_vec())
    }

    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.base.orgs.len(),
            self.base.projects.len(),
            self.base.api_keys.len(),
            self.base.credentials.len(),
        )
    }
}

pub struct SnapshotHub {
    tx: watch::Sender<Option<Arc<BuiltSnapshot>>>,
    poke: Arc<Notify>,
}

impl Default for SnapshotHub {
    fn default() -> Self {
        SnapshotHub::new()
    }
}

impl SnapshotHub {
    pub fn new() -> SnapshotHub {
        SnapshotHub {
            tx: watch::channel(None).0,
            poke: Arc::new(Notify::new()),
        }
    }

    pub fn poke(&self) {
        self.poke.notify_one();
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<BuiltSnapshot>>> {
        self.tx.subscribe()
    }

    pub fn current(&self) -> Option<Arc<BuiltSnapshot>> {
        self.tx.borrow().clone()
    }

    fn publish(&self, s: BuiltSnapshot) {
        self.tx.send_replace(Some(Arc::new(s)));
    }

    /// Runs the builder until `shutdown` fires.
    pub fn spawn_builder(
        st: AppState,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let poke = st.snapshots().poke.clone();
        tokio::spawn(async move {
            loop {
                let current = st.snapshots().current().map(|s| s.version);
                match db::config_version(st.db()).await {
                    Ok(v) if Some(v as u64) != current => match timed_build(&st).await {
                        Ok((s, took)) => {
                            use std::sync::atomic::Ordering::Relaxed;
                            let m = &st.0.metrics;
                            m.snapshot_build_us.store(took.as_micros() as u64, Relaxed);
                            m.snapshot_version.store(s.version, Relaxed);
                            m.snapshot_bytes.store(s.base.encoded_len() as u64, Relaxed);
                            tracing::info!(
                                version = s.version,
                                projects = s.base.projects.len(),
                                api_keys = s.base.api_keys.len(),
                                credentials = s.base.credentials.len(),
                                build_ms = took.as_millis() as u64,
                                "built configuration snapshot"
                            );
                            st.snapshots().publish(s);
                            // At most half of the time building: under a stream of writes a
                            // large configuration would otherwise be rebuilt back to back,
                            // starving the API and the nodes applying each version. Changes
                            // made meanwhile are picked up by the next build.
                            tokio::select! {
                                _ = tokio::time::sleep(took.min(Duration::from_secs(2))) => {}
                                _ = shutdown.cancelled() => return,
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot build configuration snapshot; nodes keep the previous one")
                        }
                    },
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot read configuration version"),
                }
                tokio::select! {
                    _ = poke.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        })
    }
}

async fn timed_build(st: &AppState) -> Result<(BuiltSnapshot, Duration), db::DbError> {
    let t0 = std::time::Instant::now();
    let s = build(st).await?;
    Ok((s, t0.elapsed()))
}

/// Builds a snapshot in one read transaction (repeatable read on Postgres).
pub async fn build(st: &AppState) -> Result<BuiltSnapshot, db::DbError> {
    let t0 = std::time::Instant::now();
    let mut tx = st.db().begin_read().await?;
    if st.db().backend() == db::Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await?;
    }
    let row = sqlx::query("SELECT version FROM config_state WHERE id = 1")
        .fetch_one(&mut *tx)
        .await?;
    let version = db::i(&row, "version")? as u64;
    let b = st.db().backend();
    let orgs = db::bulk::orgs(&mut *tx, b).await?;
    let projects = db::bulk::projects(&mut *tx, b).await?;
    let keys = db::bulk::active_api_keys(&mut *tx, b).await?;
    let creds = db::bulk::credentials(&mut *tx, b).await?;
    let signing = db::providers::signing_keys(&mut *tx).await?;
    tx.commit().await?;
    let read_ms = t0.elapsed().as_millis() as u64;
    // A stable order (by id), so a part of the configuration that did not change encodes to
    // the same bytes from one version to the next: nodes take such parts over without decoding
    // them again. Table scans do not promise an order (PostgreSQL moves updated rows).
    let (mut orgs, mut projects, mut keys, mut creds) = (orgs, projects, keys, creds);
    orgs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    projects.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    creds.sort_unstable_by(|a, b| a.0.cmp(&b.0));

    let mut base = pb::Snapshot {
        version,
        created_at_ms: st.now_ms(),
        orgs: orgs
            .into_iter()
            .map(|(id, name)| pb::Org { id, name })
            .collect(),
        projects: projects
            .into_iter()
            .map(|(id, org_id, name)| pb::Project { id, org_id, name })
            .collect(),
        api_keys: keys
            .into_iter()
            .filter_map(|(id, org_id, project_id, role, key_hash, name)| {
                let hash = hex::decode(&key_hash).ok()?;
                Some(pb::ApiKey {
                    id,
                    org_id,
                    project_id: project_id.unwrap_or_default(),
                    role,
                    key_hash: hash,
                    name,
                })
            })
            .collect(),
        credentials: Vec::with_capacity(creds.len()),
        catalog_json: llm::catalog::BUILTIN_JSON.as_bytes().to_vec(),
        signing_keys: Vec::new(),
    };
    let mut secrets = Vec::with_capacity(creds.len());
    let previous = st.snapshots().current();
    let mut opened = HashMap::with_capacity(creds.len());
    for (id, org_id, project_id, name, provider_type, metadata, sealed_secret, updated_at) in creds
    {
        let aad = providers::aad(&id, &org_id, project_id.as_deref());
        let reused = previous
            .as_ref()
            .and_then(|p| p.opened.get(&id))
            .filter(|(sealed, a, _)| *sealed == sealed_secret && *a == aad)
            .map(|(_, _, plain)| plain.clone());
        let plain = match reused {
            Some(p) => p,
            None => match st.keys().open(&sealed_secret, &aad) {
                Ok(p) => Arc::<[u8]>::from(p),
                Err(e) => {
                    tracing::error!(credential_id = %id, error = %e, "cannot decrypt provider secret; left out of the snapshot");
                    continue;
                }
            },
        };
        opened.insert(id.clone(), (sealed_secret, aad, plain.clone()));
        let mut meta: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&metadata).unwrap_or_default();
        meta.remove("_sealed");
        secrets.push((base.credentials.len(), plain));
        base.credentials.push(pb::Credential {
            id,
            org_id,
            project_id: project_id.unwrap_or_default(),
            name,
            r#type: provider_type,
            metadata_json: serde_json::Value::Object(meta).to_string(),
            sealed_secret: Vec::new(),
            updated_at_ms: updated_at,
        });
    }
    let mut signing_plain = Vec::new();
    for k in signing {
        match st
            .keys()
            .open(&k.sealed_key, &rotate::signing_key_aad(&k.id))
        {
            Ok(p) => {
                signing_plain.push((base.signing_keys.len(), p));
                base.signing_keys.push(pb::SigningKey {
                    id: k.id,
                    sealed_key: Vec::new(),
                    active: k.active,
                });
            }
            Err(e) => {
                tracing::error!(signing_key_id = %k.id, error = %e, "cannot decrypt signing key")
            }
        }
    }
    tracing::debug!(
        read_ms,
        total_ms = t0.elapsed().as_millis() as u64,
        "snapshot build phases"
    );
    Ok(BuiltSnapshot {
        version,
        base,
        secrets,
        signing: signing_plain,
        encoded: Mutex::new(HashMap::new()),
        sealed: Mutex::new(HashMap::new()),
        carried: previous
            .map(|p| {
                let mut m = p.carried.clone();
                if let Ok(newest) = p.sealed.lock() {
                    m.extend(newest.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                m
            })
            .unwrap_or_default(),
        opened,
    })
}

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
    /// Where this build's read stood: the next build reads only what changed after it.
    cursor: db::bulk::Cursor,
    /// When the chain of builds this one belongs to last read every table.
    full_read_at: std::time::Instant,
    full_read: bool,
    /// How long encoding this snapshot for a node-token key took (the longest, if several);
    /// 0 until a node asked for it. Part of what each version costs the control plane.
    encode_us: std::sync::atomic::AtomicU64,
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
        let t0 = std::time::Instant::now();
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
        let out = Bytes::from(snap.encode_to_vec());
        let took = t0.elapsed();
        self.encode_us.fetch_max(
            took.as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        tracing::debug!(
            version = self.version,
            bytes = out.len(),
            encode_ms = took.as_millis() as u64,
            "snapshot encoded for a node-token key"
        );
        out
    }

    /// How this snapshot's configuration differs from `other`'s, ignoring version and creation
    /// time: one line per differing row, by id (secrets are compared, never shown). Empty when
    /// they serve the same.
    pub fn differences(&self, other: &BuiltSnapshot) -> Vec<String> {
        fn rows<T: PartialEq + std::fmt::Debug>(
            what: &str,
            a: &[T],
            b: &[T],
            id: impl Fn(&T) -> &str,
            out: &mut Vec<String>,
        ) {
            let bm: HashMap<&str, &T> = b.iter().map(|x| (id(x), x)).collect();
            let am: HashMap<&str, &T> = a.iter().map(|x| (id(x), x)).collect();
            for x in a {
                match bm.get(id(x)) {
                    None => out.push(format!("{what} {} only in this one", id(x))),
                    Some(y) if *y != x => out.push(format!("{what} {}: {x:?} vs {y:?}", id(x))),
                    Some(_) => {}
                }
            }
            for y in b {
                if !am.contains_key(id(y)) {
                    out.push(format!("{what} {} only in the other", id(y)));
                }
            }
            let ids = |v: &[T]| v.iter().map(|x| id(x).to_string()).collect::<Vec<_>>();
            if out.is_empty() && ids(a) != ids(b) {
                out.push(format!("{what}: same rows in another order"));
            }
        }
        let (a, b) = (&self.base, &other.base);
        let mut out = Vec::new();
        rows("org", &a.orgs, &b.orgs, |x| &x.id, &mut out);
        rows("project", &a.projects, &b.projects, |x| &x.id, &mut out);
        rows("api key", &a.api_keys, &b.api_keys, |x| &x.id, &mut out);
        rows(
            "credential",
            &a.credentials,
            &b.credentials,
            |x| &x.id,
            &mut out,
        );
        let secrets = |s: &BuiltSnapshot| -> HashMap<String, Arc<[u8]>> {
            s.secrets
                .iter()
                .filter_map(|(i, p)| Some((s.base.credentials.get(*i)?.id.clone(), p.clone())))
                .collect()
        };
        let (sa, sb) = (secrets(self), secrets(other));
        for (id, p) in &sa {
            if sb.get(id) != Some(p) {
                out.push(format!("credential {id}: secret differs"));
            }
        }
        if sa.len() != sb.len() {
            out.push(format!("{} secrets vs {}", sa.len(), sb.len()));
        }
        if a.signing_keys != b.signing_keys || self.signing != other.signing {
            out.push("signing keys differ".into());
        }
        out
    }

    /// Did this build read every table (rather than only what changed since the previous one)?
    pub fn read_everything(&self) -> bool {
        self.full_read
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
                            // Encoding a version for the nodes costs about what encoding the
                            // one before did (same size, give or take a change).
                            let bytes = s.base.encoded_len();
                            let encode = st.snapshots().current().map_or(0, |p| {
                                p.encode_us.load(std::sync::atomic::Ordering::Relaxed)
                            });
                            st.snapshots().publish(s);
                            // Under a stream of writes a large configuration would otherwise
                            // be rebuilt back to back: at most half of the time making versions
                            // (building, and encoding for the nodes), and at most
                            // `NODE_BYTES_PER_SEC` of snapshots for each node to decode and
                            // apply. Changes made meanwhile are picked up by the next build.
                            let pause = (took + Duration::from_micros(encode))
                                .max(Duration::from_secs_f64(bytes as f64 / NODE_BYTES_PER_SEC))
                                .min(Duration::from_secs(2));
                            tokio::select! {
                                _ = tokio::time::sleep(pause) => {}
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

/// How long a chain of builds that read only changed rows may run before one reads every table
/// again. Change records are kept for a day (`prune_changes`), so a build's previous read is
/// always far younger than the oldest record it may need; the full read also bounds how long
/// any unforeseen gap in the change records could last.
pub const FULL_READ_EVERY: Duration = Duration::from_secs(300);

/// The most snapshot bytes per second the builder publishes while changes keep coming: every
/// version is a whole snapshot that every node decodes and applies (≈40 ms for one of 13 MiB at
/// 10,000 projects on the bench machine, bench/README), so this keeps a node's share of a core
/// spent on applying versions to about a fifth under a stream of writes. A change after a quiet
/// spell is built at once.
const NODE_BYTES_PER_SEC: f64 = 64.0 * 1024.0 * 1024.0;

/// Change records older than this are deleted by housekeeping.
pub const CHANGES_KEPT_MS: i64 = 86_400_000;

/// Builds a snapshot in one read transaction (repeatable read on Postgres). With a recent
/// previous build of this process to start from, it reads only the rows changed since that
/// build's read (`config_changes`) and takes every other row over from the previous snapshot;
/// otherwise it reads every table.
pub async fn build(st: &AppState) -> Result<BuiltSnapshot, db::DbError> {
    build_on(st, st.snapshots().current()).await
}

/// A build that starts from nothing: reads every table and opens every secret (for checks that
/// what the builder publishes is what a build from scratch gives).
pub async fn build_from_scratch(st: &AppState) -> Result<BuiltSnapshot, db::DbError> {
    build_on(st, None).await
}

async fn build_on(
    st: &AppState,
    previous: Option<Arc<BuiltSnapshot>>,
) -> Result<BuiltSnapshot, db::DbError> {
    let t0 = std::time::Instant::now();
    let b = st.db().backend();
    let mut tx = st.db().begin_read().await?;
    if b == db::Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await?;
    }
    let row = sqlx::query("SELECT version FROM config_state WHERE id = 1")
        .fetch_one(&mut *tx)
        .await?;
    let version = db::i(&row, "version")?;
    let cursor = db::bulk::cursor(&mut *tx, b, version).await?;
    let base_on = previous.as_ref().filter(|p| {
        p.full_read_at.elapsed() < FULL_READ_EVERY
            && cursor.not_before(&p.cursor)
            && version as u64 >= p.version
    });
    let since = match base_on {
        Some(p) => db::bulk::Since::Changed(&p.cursor),
        None => db::bulk::Since::All,
    };
    let changes = match since {
        db::bulk::Since::Changed(c) => db::bulk::changes(&mut *tx, c).await?,
        db::bulk::Since::All => Vec::new(),
    };
    // Rows changed since the previous read, per table: each is dropped from what is taken over
    // and comes back only if the read returned it (a deleted row, a revoked key, a row moved
    // out of view stays out). A table without changes is not read at all.
    let mut changed: HashMap<&str, std::collections::HashSet<&str>> = HashMap::new();
    for (tbl, id) in &changes {
        changed.entry(tbl.as_str()).or_default().insert(id.as_str());
    }
    let read = |t: &str| matches!(since, db::bulk::Since::All) || changed.contains_key(t);
    let orgs = if read("orgs") {
        db::bulk::orgs(&mut *tx, b, since).await?
    } else {
        Vec::new()
    };
    let projects = if read("projects") {
        db::bulk::projects(&mut *tx, b, since).await?
    } else {
        Vec::new()
    };
    let keys = if read("api_keys") {
        db::bulk::active_api_keys(&mut *tx, b, since).await?
    } else {
        Vec::new()
    };
    let creds = if read("provider_credentials") {
        db::bulk::credentials(&mut *tx, b, since).await?
    } else {
        Vec::new()
    };
    let signing = db::providers::signing_keys(&mut *tx).await?;
    tx.commit().await?;
    let read_ms = t0.elapsed().as_millis() as u64;
    let rows_read = orgs.len() + projects.len() + keys.len() + creds.len();

    let empty = std::collections::HashSet::new();
    let changed_in = |t: &str| changed.get(t).unwrap_or(&empty);
    let prev_base = base_on.map(|p| &p.base);

    // A stable order (by id), so a part of the configuration that did not change encodes to
    // the same bytes from one version to the next: nodes take such parts over without decoding
    // them again. Table scans do not promise an order (PostgreSQL moves updated rows).
    let orgs = merge(
        prev_base.map_or(&[][..], |p| &p.orgs),
        changed_in("orgs"),
        orgs.into_iter()
            .map(|(id, name)| pb::Org { id, name })
            .collect(),
        |o| &o.id,
    );
    let projects = merge(
        prev_base.map_or(&[][..], |p| &p.projects),
        changed_in("projects"),
        projects
            .into_iter()
            .map(|(id, org_id, name)| pb::Project { id, org_id, name })
            .collect(),
        |p| &p.id,
    );
    let api_keys = merge(
        prev_base.map_or(&[][..], |p| &p.api_keys),
        changed_in("api_keys"),
        keys.into_iter()
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
        |k| &k.id,
    );

    // Credentials: a changed or new row's secret is opened (or the opened secret reused when
    // its sealed value and owner are unchanged); a row taken over keeps the one it had.
    let changed_creds = changed_in("provider_credentials");
    let mut opened: HashMap<String, (String, String, Arc<[u8]>)> = match base_on {
        Some(p) => p
            .opened
            .iter()
            .filter(|(id, _)| !changed_creds.contains(id.as_str()))
            .map(|(id, v)| (id.clone(), v.clone()))
            .collect(),
        None => HashMap::with_capacity(creds.len()),
    };
    let mut fresh = Vec::with_capacity(creds.len());
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
        opened.insert(id.clone(), (sealed_secret, aad, plain));
        let mut meta: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&metadata).unwrap_or_default();
        meta.remove("_sealed");
        fresh.push(pb::Credential {
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
    let mut credentials = merge(
        prev_base.map_or(&[][..], |p| &p.credentials),
        changed_creds,
        fresh,
        |c| &c.id,
    );
    // Every credential here has its opened secret: a fresh one was inserted above, and one
    // taken over was in the previous build's `opened` (which holds every credential it served).
    // Should one lack it all the same, it is left out rather than sent without its secret.
    credentials.retain(|c| opened.contains_key(&c.id));
    let secrets: Vec<(usize, Arc<[u8]>)> = credentials
        .iter()
        .enumerate()
        .filter_map(|(i, c)| opened.get(&c.id).map(|(_, _, plain)| (i, plain.clone())))
        .collect();
    let mut base = pb::Snapshot {
        version: version as u64,
        created_at_ms: st.now_ms(),
        orgs,
        projects,
        api_keys,
        credentials,
        catalog_json: llm::catalog::BUILTIN_JSON.as_bytes().to_vec(),
        signing_keys: Vec::new(),
    };
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
    let full_read = matches!(since, db::bulk::Since::All);
    tracing::debug!(
        full_read,
        rows_read,
        changes = changes.len(),
        read_ms,
        total_ms = t0.elapsed().as_millis() as u64,
        "snapshot build phases"
    );
    Ok(BuiltSnapshot {
        version: version as u64,
        full_read_at: match base_on {
            Some(p) if !full_read => p.full_read_at,
            _ => std::time::Instant::now(),
        },
        cursor,
        full_read,
        encode_us: std::sync::atomic::AtomicU64::new(0),
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

/// The rows of one table for the new snapshot, sorted by id: those of `previous` (sorted by id)
/// whose id is not in `changed`, and every row of `fresh` (the changed rows as read now).
fn merge<T: Clone>(
    previous: &[T],
    changed: &std::collections::HashSet<&str>,
    mut fresh: Vec<T>,
    id: impl Fn(&T) -> &String,
) -> Vec<T> {
    fresh.sort_unstable_by(|a, b| id(a).cmp(id(b)));
    if previous.is_empty() {
        return fresh;
    }
    let mut out = Vec::with_capacity(previous.len() + fresh.len());
    let mut fresh = fresh.into_iter().peekable();
    for p in previous {
        let pid = id(p);
        while fresh.peek().is_some_and(|f| id(f) < pid) {
            out.extend(fresh.next());
        }
        if changed.contains(pid.as_str()) || fresh.peek().is_some_and(|f| id(f) == pid) {
            continue;
        }
        out.push(p.clone());
    }
    out.extend(fresh);
    out
}

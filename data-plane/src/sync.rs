//! Keeping the node's configuration current: watch the control plane, validate and build each
//! snapshot completely, swap it in, acknowledge, and persist it (encrypted) as the
//! last-known-good, at most once a second under a stream of versions. On start the node serves
//! from its disk cache while the control plane is unreachable; reconnects back off exponentially
//! with jitter.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use proto::v1 as pb;
use proto::v1::config_service_client::ConfigServiceClient;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::config::NodeConfig;
use crate::seal::{PURPOSE_DISK_CACHE, PURPOSE_SNAPSHOT, SealKey};
use crate::snapshot::{Snapshot, SnapshotStore};

const CACHE_FILE: &str = "snapshot.bin";
const CACHE_AAD: &[u8] = b"aiproxy-node-snapshot-cache-v1";
pub const MAX_SNAPSHOT_BYTES: usize = 256 * 1024 * 1024;
/// The disk cache is written at most this often under a stream of versions (see
/// [`Syncer::write_cache_when_due`]).
const CACHE_WRITE_INTERVAL: Duration = Duration::from_secs(1);
/// How often versions that calls still held when they were replaced are looked at again, to be
/// freed off the runtime's workers (see [`release_retired_every`]).
const RETIRED_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Something that wants to know when a snapshot was applied (health state, metrics).
pub type OnApply = Arc<dyn Fn(&Snapshot) + Send + Sync>;

pub struct Syncer {
    cfg: NodeConfig,
    store: Arc<SnapshotStore>,
    snapshot_key: SealKey,
    cache_key: SealKey,
    on_apply: OnApply,
    /// JSON the node reports with each ack (per-credential health etc.).
    details: Arc<dyn Fn() -> String + Send + Sync>,
    /// Woken when a version was applied: it is due on disk.
    cache_due: tokio::sync::Notify,
    /// `CACHE_WRITE_INTERVAL` (tests set their own).
    cache_interval: Duration,
}

impl Syncer {
    pub fn new(
        cfg: NodeConfig,
        store: Arc<SnapshotStore>,
        on_apply: OnApply,
        details: Arc<dyn Fn() -> String + Send + Sync>,
    ) -> Syncer {
        let snapshot_key = SealKey::from_node_token(cfg.node_token.expose(), PURPOSE_SNAPSHOT);
        let cache_key = SealKey::from_node_token(cfg.node_token.expose(), PURPOSE_DISK_CACHE);
        Syncer {
            cfg,
            store,
            snapshot_key,
            cache_key,
            on_apply,
            details,
            cache_due: tokio::sync::Notify::new(),
            cache_interval: CACHE_WRITE_INTERVAL,
        }
    }

    fn cache_path(&self) -> PathBuf {
        self.cfg.cache_dir.join(CACHE_FILE)
    }

    /// Loads the last-known-good snapshot from disk, if there is a usable one.
    pub fn load_cache(&self) -> Option<u64> {
        let sealed = std::fs::read(self.cache_path()).ok()?;
        let bytes = match self.cache_key.open(&sealed, CACHE_AAD) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring the disk snapshot cache (written with another node token?)");
                return None;
            }
        };
        match Snapshot::build(bytes.into(), &self.snapshot_key, None) {
            Ok(s) => {
                let v = s.version;
                (self.on_apply)(&s);
                self.store.store(s);
                self.store.cache_version.store(v, Ordering::Relaxed);
                tracing::info!(
                    version = v,
                    "serving the last-known-good snapshot from disk"
                );
                Some(v)
            }
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an invalid disk snapshot cache");
                None
            }
        }
    }

    /// Writes the snapshot served to the disk cache (sealed, whole, also after a delta) unless
    /// the cache holds that version already; returns whether it tried. Blocking.
    fn save_cache(&self) -> bool {
        let Some(s) = self.store.load() else {
            return false;
        };
        if s.version == self.store.cache_version.load(Ordering::Relaxed) {
            return false;
        }
        let sealed = self.cache_key.seal(s.raw(), CACHE_AAD);
        match write_private(&self.cfg.cache_dir, &self.cache_path(), &sealed) {
            Ok(()) => self.store.cache_version.store(s.version, Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "cannot persist the snapshot cache"),
        }
        self.store.cache_writes.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Writes each version applied to the disk cache, until `stop`, then what is still due.
    /// A write seals and writes the whole snapshot (13 MB at 10,000 projects, ≈15 ms of a
    /// core), so under a stream of versions it writes at most once per
    /// `CACHE_WRITE_INTERVAL`, the newest version each time; the first version after a quiet
    /// interval is written at once. A node that crashes restarts from a version at most about
    /// that much older than the one it served, and the control plane brings it up to date.
    async fn write_cache_when_due(self: Arc<Self>, stop: CancellationToken) {
        let mut last_write: Option<tokio::time::Instant> = None;
        loop {
            let stopping = tokio::select! {
                _ = self.cache_due.notified() => false,
                _ = stop.cancelled() => true,
            };
            if !stopping && let Some(at) = last_write {
                tokio::select! {
                    _ = tokio::time::sleep_until(at + self.cache_interval) => {}
                    _ = stop.cancelled() => {}
                }
            }
            let this = self.clone();
            match tokio::task::spawn_blocking(move || this.save_cache()).await {
                Ok(true) => last_write = Some(tokio::time::Instant::now()),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "writing the snapshot cache failed"),
            }
            if stop.is_cancelled() {
                return;
            }
        }
    }

    /// Validates and applies one envelope: a whole snapshot, or a delta against the version
    /// this node holds. Older or equal versions are ignored. Blocking (a large snapshot takes
    /// tens of milliseconds to open and index): callers on the runtime use
    /// [`Syncer::apply_blocking`].
    pub fn apply(&self, env: &pb::SnapshotEnvelope) -> Result<u64, String> {
        let current = self.store.load();
        let current_version = current.as_ref().map(|s| s.version).unwrap_or(0);
        if env.version != 0 && env.version < current_version {
            return Ok(current_version);
        }
        let t0 = std::time::Instant::now();
        let (snap, received) = if env.base_version != 0 {
            let Some(base) = current.as_deref() else {
                return Err(format!(
                    "a delta against version {} arrived before any snapshot",
                    env.base_version
                ));
            };
            let s = base
                .apply_delta(&env.delta, &self.snapshot_key)
                .map_err(|e| e.to_string())?;
            (s, env.delta.len())
        } else {
            let s = Snapshot::build(env.snapshot.clone(), &self.snapshot_key, current.as_deref())
                .map_err(|e| e.to_string())?;
            (s, env.snapshot.len())
        };
        drop(current);
        if snap.version != env.version {
            return Err(format!(
                "envelope version {} does not match snapshot version {}",
                env.version, snap.version
            ));
        }
        let v = snap.version;
        (self.on_apply)(&snap);
        self.store.store(snap);
        {
            use std::sync::atomic::Ordering::Relaxed;
            self.store
                .last_apply_us
                .store(t0.elapsed().as_micros() as u64, Relaxed);
            self.store.last_apply_bytes.store(received as u64, Relaxed);
            if env.base_version != 0 {
                self.store.deltas_applied.fetch_add(1, Relaxed);
            }
        }
        Ok(v)
    }

    /// [`Syncer::apply`] on a blocking thread, so requests on this node's runtime are not held
    /// up while a large snapshot is opened and indexed. The node serves the new version as soon
    /// as it is applied, and the caller acknowledges it then; the disk cache's writer is told
    /// ([`Syncer::write_cache_when_due`]).
    async fn apply_blocking(self: &Arc<Self>, env: pb::SnapshotEnvelope) -> Result<u64, String> {
        let this = self.clone();
        let v = tokio::task::spawn_blocking(move || this.apply(&env))
            .await
            .map_err(|e| format!("applying the snapshot failed: {e}"))??;
        self.cache_due.notify_one();
        Ok(v)
    }

    async fn channel(&self) -> Result<Channel, String> {
        channel(&self.cfg).await
    }

    fn authed<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if let Ok(v) = format!("Bearer {}", self.cfg.node_token.expose()).parse() {
            req.metadata_mut().insert("authorization", v);
        }
        req
    }

    /// One watch stream, until it ends or `shutdown`. `received` is set once the stream has
    /// delivered something (the reconnect backoff starts over then).
    async fn session(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
        received: &mut bool,
    ) -> Result<(), String> {
        let channel = self.channel().await?;
        let mut client =
            ConfigServiceClient::new(channel).max_decoding_message_size(MAX_SNAPSHOT_BYTES);
        let req = self.authed(pb::WatchRequest {
            node_id: self.cfg.node_id.clone(),
            known_version: self.store.version(),
            node_build: env!("CARGO_PKG_VERSION").into(),
            hostname: std::fs::read_to_string("/etc/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            accepts_deltas: true,
        });
        let mut stream = client
            .watch(req)
            .await
            .map_err(|s| format!("watch refused: {} {}", s.code(), s.message()))?
            .into_inner();
        // Heartbeat: the node reports its version and credential health every 10 s.
        let mut heartbeat = tokio::time::interval(Duration::from_secs(10));
        heartbeat.tick().await;
        loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                _ = heartbeat.tick() => {
                    let ack = self.authed(pb::AckRequest { node_id: self.cfg.node_id.clone(), applied_version: self.store.version(), error: String::new(), details_json: (self.details)() });
                    if let Err(s) = client.ack(ack).await {
                        tracing::debug!(error = %s.message(), "heartbeat failed");
                    }
                    continue;
                }
                _ = shutdown.cancelled() => return Ok(()),
            };
            match msg {
                Ok(Some(env)) => {
                    *received = true;
                    let (env_version, delta) = (env.version, env.base_version != 0);
                    let applied = self.apply_blocking(env).await;
                    let failed = applied.is_err();
                    let (version, error) = match applied {
                        Ok(v) => {
                            tracing::info!(version = v, "applied configuration snapshot");
                            (v, String::new())
                        }
                        Err(e) => {
                            tracing::error!(version = env_version, error = %e, "rejected a configuration snapshot; keeping the previous one");
                            (env_version, e)
                        }
                    };
                    let ack = self.authed(pb::AckRequest {
                        node_id: self.cfg.node_id.clone(),
                        applied_version: version,
                        error,
                        details_json: (self.details)(),
                    });
                    if let Err(s) = client.ack(ack).await {
                        tracing::warn!(error = %s.message(), "cannot acknowledge the snapshot");
                    }
                    // Deltas follow one another on a stream: after one that did not apply, the
                    // next would not either. A new stream starts with a whole snapshot.
                    if delta && failed {
                        return Err(format!(
                            "a delta to version {env_version} did not apply; reconnecting for a whole snapshot"
                        ));
                    }
                }
                Ok(None) => return Err("the control plane closed the watch stream".into()),
                Err(s) => return Err(format!("watch stream ended: {} {}", s.code(), s.message())),
            }
        }
    }

    /// Runs until `shutdown`: watch, apply, reconnect with exponential backoff and jitter; the
    /// disk cache is written meanwhile, and once more, if a version is still due, before this
    /// returns.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let stop_tasks = CancellationToken::new();
        let writer = tokio::spawn(self.clone().write_cache_when_due(stop_tasks.clone()));
        let releaser = tokio::spawn(release_retired_every(
            self.store.clone(),
            RETIRED_CHECK_INTERVAL,
            stop_tasks.clone(),
        ));
        self.watch(&shutdown).await;
        stop_tasks.cancel();
        if let Err(e) = writer.await {
            tracing::warn!(error = %e, "the snapshot cache's writer failed");
        }
        let _ = releaser.await;
    }

    async fn watch(self: &Arc<Self>, shutdown: &CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut received = false;
            let ended = self.session(shutdown, &mut received).await;
            if shutdown.is_cancelled() {
                return;
            }
            // A stream that delivered something was healthy: its end (a control-plane restart,
            // a rejected delta) is met with a quick reconnect, not the backoff reached before.
            if received {
                backoff = Duration::from_millis(100);
            }
            if let Err(e) = ended {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "configuration stream unavailable; serving the current snapshot");
            }
            let jitter = rand::rng().random_range(0.5..1.5);
            let wait = backoff.mul_f64(jitter);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

/// The replica that answered last (index into the comma-separated URL list), tried first.
static PREFERRED_REPLICA: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A gRPC channel to the control plane (TLS / mTLS when configured). `AIPROXY_CONTROL_PLANE_URL`
/// may list several replicas, comma-separated: the one that answered last is tried first, then
/// the others in order, so a node whose replica dies moves to another on its next reconnect.
pub async fn channel(cfg: &NodeConfig) -> Result<Channel, String> {
    use std::sync::atomic::Ordering;
    let urls: Vec<&str> = cfg
        .control_plane_url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err("AIPROXY_CONTROL_PLANE_URL is empty".into());
    }
    let start = PREFERRED_REPLICA.load(Ordering::Relaxed) % urls.len();
    let mut errors = Vec::new();
    for i in 0..urls.len() {
        let idx = (start + i) % urls.len();
        match channel_to(cfg, urls[idx]).await {
            Ok(c) => {
                PREFERRED_REPLICA.store(idx, Ordering::Relaxed);
                return Ok(c);
            }
            Err(e) => errors.push(format!("{}: {e}", urls[idx])),
        }
    }
    Err(errors.join("; "))
}

async fn channel_to(cfg: &NodeConfig, url: &str) -> Result<Channel, String> {
    let mut ep = Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("AIPROXY_CONTROL_PLANE_URL: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if let Some(tls) = &cfg.grpc_tls {
        let mut t = tonic::transport::ClientTlsConfig::new().with_webpki_roots();
        if let Some(ca) = &tls.ca {
            let pem = std::fs::read(ca).map_err(|e| format!("AIPROXY_GRPC_TLS_CA: {e}"))?;
            t = t.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        if let Some(d) = &tls.domain {
            t = t.domain_name(d.clone());
        }
        if let (Some(c), Some(k)) = (&tls.client_cert, &tls.client_key) {
            let cert =
                std::fs::read(c).map_err(|e| format!("AIPROXY_GRPC_TLS_CLIENT_CERT: {e}"))?;
            let key = std::fs::read(k).map_err(|e| format!("AIPROXY_GRPC_TLS_CLIENT_KEY: {e}"))?;
            t = t.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        ep = ep.tls_config(t).map_err(|e| format!("gRPC TLS: {e}"))?;
    }
    ep.connect()
        .await
        .map_err(|e| format!("cannot reach the control plane: {e}"))
}

fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

/// Every `every` until `stop`: frees, on a blocking thread, the replaced versions that calls
/// held when they were replaced and hold no more ([`SnapshotStore::release_retired`]), so no
/// call's end frees one on a runtime worker. An apply frees what is free at that moment too.
async fn release_retired_every(
    store: Arc<SnapshotStore>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        if store.has_retired() {
            let store = store.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || store.release_retired()).await {
                tracing::warn!(error = %e, "freeing replaced snapshots failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::secret::Secret;

    fn syncer(dir: &Path) -> Arc<Syncer> {
        syncer_to(dir, "http://127.0.0.1:1")
    }

    fn syncer_to(dir: &Path, control_plane_url: &str) -> Arc<Syncer> {
        let mut cfg = NodeConfig::defaults(
            control_plane_url.into(),
            Secret::new("node-token-for-sync-tests"),
        );
        cfg.cache_dir = dir.to_path_buf();
        Arc::new(Syncer::new(
            cfg,
            Arc::new(SnapshotStore::default()),
            Arc::new(|_| {}),
            Arc::new(String::new),
        ))
    }

    fn snapshot(version: u64, orgs: &[&str]) -> pb::Snapshot {
        pb::Snapshot {
            version,
            created_at_ms: 1,
            orgs: orgs
                .iter()
                .map(|o| pb::Org {
                    id: o.to_string(),
                    name: o.to_string(),
                })
                .collect(),
            catalog_json: llm::catalog::BUILTIN_JSON.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn delta(base_version: u64, version: u64, added: &str) -> pb::SnapshotEnvelope {
        let d = pb::SnapshotDelta {
            version,
            created_at_ms: 1,
            base_version,
            orgs: vec![pb::Org {
                id: added.into(),
                name: added.into(),
            }],
            ..Default::default()
        };
        pb::SnapshotEnvelope {
            version,
            base_version,
            delta: d.encode_to_vec().into(),
            ..Default::default()
        }
    }

    /// A delta is applied to the version held, and what goes to disk is the whole snapshot it
    /// made (a restart from disk serves it); a delta against another version is refused and
    /// changes nothing.
    #[tokio::test]
    async fn deltas_apply_to_the_version_held_and_reach_the_disk_cache_whole() {
        let dir = tempfile::tempdir().unwrap();
        let s = syncer(dir.path());
        let whole = pb::SnapshotEnvelope {
            version: 10,
            snapshot: snapshot(10, &["o1"]).encode_to_vec().into(),
            ..Default::default()
        };
        // A delta before any snapshot has nothing to apply to.
        assert!(s.apply_blocking(delta(10, 11, "o2")).await.is_err());
        assert_eq!(s.apply_blocking(whole).await, Ok(10));
        assert_eq!(s.apply_blocking(delta(10, 11, "o2")).await, Ok(11));
        let held = s.store.load().unwrap();
        assert!(held.orgs.contains_key("o1") && held.orgs.contains_key("o2"));
        assert_eq!(
            held.raw().as_ref(),
            snapshot(11, &["o1", "o2"]).encode_to_vec().as_slice()
        );
        assert_eq!(
            s.store
                .deltas_applied
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        // Against a version the node does not hold: refused, the node keeps serving 11.
        let err = s.apply_blocking(delta(12, 13, "o3")).await.unwrap_err();
        assert!(err.contains("version 12"), "{err}");
        assert_eq!(s.store.version(), 11);
        // A node started on the same cache directory serves what the delta made.
        assert!(s.save_cache());
        let restarted = syncer(dir.path());
        assert_eq!(restarted.load_cache(), Some(11));
        assert!(restarted.store.load().unwrap().orgs.contains_key("o2"));
        // It holds that version on disk already: nothing to write.
        assert!(!restarted.save_cache());
    }

    /// Waits until `done`, up to 20 s: a bound on a hang, not a timing assertion.
    async fn wait_for(mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !done() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// What a node started on `dir` would serve from its disk cache.
    fn on_disk(dir: &Path) -> Option<u64> {
        syncer(dir).load_cache()
    }

    /// A syncer on `dir` whose disk cache's writer runs with `interval`, until the token.
    fn cache_writer(
        dir: &Path,
        interval: Duration,
    ) -> (Arc<Syncer>, CancellationToken, tokio::task::JoinHandle<()>) {
        let mut s = Arc::into_inner(syncer(dir)).unwrap();
        s.cache_interval = interval;
        let s = Arc::new(s);
        let stop = CancellationToken::new();
        let writer = tokio::spawn(s.clone().write_cache_when_due(stop.clone()));
        (s, stop, writer)
    }

    /// The disk cache's writer: the first version at once, then at most one write per interval
    /// (the newest version), and what is due when it stops. With an interval of an hour, what
    /// it wrote is not a matter of timing.
    #[tokio::test]
    async fn the_disk_cache_is_written_at_most_once_per_interval_and_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let (s, stop, writer) = cache_writer(dir.path(), Duration::from_secs(3600));
        let writes = || s.store.cache_writes.load(Ordering::Relaxed);
        assert_eq!(s.apply_blocking(whole(10, &["o1"])).await, Ok(10));
        wait_for(|| writes() >= 1).await;
        assert_eq!(writes(), 1);
        assert_eq!(on_disk(dir.path()), Some(10));
        // Two more versions within the interval: served and acknowledged at once, not written.
        assert_eq!(s.apply_blocking(delta(10, 11, "o2")).await, Ok(11));
        assert_eq!(s.apply_blocking(delta(11, 12, "o3")).await, Ok(12));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(writes(), 1);
        assert_eq!(on_disk(dir.path()), Some(10));
        // Stopping writes the newest once; version 11 never reached the disk.
        stop.cancel();
        writer.await.unwrap();
        assert_eq!(writes(), 2);
        assert_eq!(on_disk(dir.path()), Some(12));
    }

    /// With nothing new to write the writer waits; after its interval it writes the version
    /// that arrived meanwhile without being stopped.
    #[tokio::test]
    async fn the_disk_cache_catches_up_after_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let (s, stop, writer) = cache_writer(dir.path(), Duration::from_millis(50));
        for (env, v) in [(whole(10, &["o1"]), 10), (delta(10, 11, "o2"), 11)] {
            assert_eq!(s.apply_blocking(env).await, Ok(v));
            wait_for(|| on_disk(dir.path()) == Some(v)).await;
            assert_eq!(on_disk(dir.path()), Some(v));
        }
        assert_eq!(s.store.cache_writes.load(Ordering::Relaxed), 2);
        // Nothing is due at the stop: nothing more is written.
        stop.cancel();
        writer.await.unwrap();
        assert_eq!(s.store.cache_writes.load(Ordering::Relaxed), 2);
    }

    /// A version a call still held when it was replaced is freed by the periodic release once
    /// the call lets go, not by the call; one nobody held is freed by the apply itself.
    #[tokio::test]
    async fn replaced_versions_are_freed_by_the_periodic_release_not_by_the_last_call() {
        let dir = tempfile::tempdir().unwrap();
        let s = syncer(dir.path());
        assert_eq!(s.apply_blocking(whole(10, &["o1"])).await, Ok(10));
        let held = s.store.load().unwrap();
        let gone_10 = Arc::downgrade(&held);
        assert_eq!(s.apply_blocking(delta(10, 11, "o2")).await, Ok(11));
        let gone_11 = Arc::downgrade(&s.store.load().unwrap());
        assert_eq!(s.apply_blocking(delta(11, 12, "o3")).await, Ok(12));
        assert!(
            gone_11.upgrade().is_none(),
            "version 11, held by no call, was freed"
        );
        // The call ends: version 10 is not freed by it.
        drop(held);
        assert!(gone_10.upgrade().is_some());
        let stop = CancellationToken::new();
        let releaser = tokio::spawn(release_retired_every(
            s.store.clone(),
            Duration::from_millis(10),
            stop.clone(),
        ));
        wait_for(|| gone_10.upgrade().is_none()).await;
        assert!(gone_10.upgrade().is_none());
        assert!(!s.store.has_retired());
        assert_eq!(s.store.load().unwrap().version, 12);
        stop.cancel();
        releaser.await.unwrap();
    }

    /// A control plane that plays one script of envelopes per watch stream (the stream then
    /// stays open) and records what each watch and ack said.
    #[derive(Default)]
    struct ScriptedCp {
        scripts: std::sync::Mutex<std::collections::VecDeque<Vec<pb::SnapshotEnvelope>>>,
        watches: std::sync::Mutex<Vec<(u64, bool)>>,
        acks: std::sync::Mutex<Vec<(u64, String)>>,
    }

    /// The server's handle on it (the test keeps another).
    struct Cp(Arc<ScriptedCp>);

    type EnvStream = std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<pb::SnapshotEnvelope, tonic::Status>> + Send>,
    >;

    #[tonic::async_trait]
    impl proto::v1::config_service_server::ConfigService for Cp {
        type WatchStream = EnvStream;

        async fn watch(
            &self,
            req: tonic::Request<pb::WatchRequest>,
        ) -> Result<tonic::Response<EnvStream>, tonic::Status> {
            use futures_util::StreamExt as _;
            let w = req.into_inner();
            self.0
                .watches
                .lock()
                .unwrap()
                .push((w.known_version, w.accepts_deltas));
            let script = self
                .0
                .scripts
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_default();
            let s = futures_util::stream::iter(script.into_iter().map(Ok))
                .chain(futures_util::stream::pending());
            Ok(tonic::Response::new(Box::pin(s)))
        }

        async fn ack(
            &self,
            req: tonic::Request<pb::AckRequest>,
        ) -> Result<tonic::Response<pb::AckResponse>, tonic::Status> {
            let a = req.into_inner();
            self.0
                .acks
                .lock()
                .unwrap()
                .push((a.applied_version, a.error));
            Ok(tonic::Response::new(pb::AckResponse {}))
        }
    }

    fn whole(version: u64, orgs: &[&str]) -> pb::SnapshotEnvelope {
        pb::SnapshotEnvelope {
            version,
            snapshot: snapshot(version, orgs).encode_to_vec().into(),
            ..Default::default()
        }
    }

    /// A delta that does not apply ends the stream: the node acks the error, keeps serving what
    /// it held, reconnects (telling the version it holds) and gets a whole snapshot there. Over
    /// real gRPC, against a scripted control plane.
    #[tokio::test]
    async fn a_delta_that_does_not_apply_brings_a_reconnect_and_a_whole_snapshot() {
        let cp = Arc::new(ScriptedCp::default());
        let mut bad = delta(10, 11, "o2");
        bad.delta = bytes::Bytes::from_static(b"\xff\xff\xff not a delta");
        cp.scripts.lock().unwrap().extend([
            vec![whole(10, &["o1"]), bad],
            vec![whole(12, &["o1", "o3"])],
        ]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(proto::v1::config_service_server::ConfigServiceServer::new(
                    Cp(cp.clone()),
                ))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );

        let dir = tempfile::tempdir().unwrap();
        let s = syncer_to(dir.path(), &format!("http://{addr}"));
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(s.clone().run(shutdown.clone()));
        // The wait is a bound on a hang, not a timing assertion.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while s.store.version() != 12 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(s.store.version(), 12);
        let held = s.store.load().unwrap();
        assert!(held.orgs.contains_key("o3") && !held.orgs.contains_key("o2"));
        // Two streams, both asking for deltas; the second from the version the node kept.
        assert_eq!(*cp.watches.lock().unwrap(), vec![(0, true), (10, true)]);
        // The acks come after the applies; wait for the last one.
        while cp.acks.lock().unwrap().len() < 3 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let acks = cp.acks.lock().unwrap().clone();
        assert_eq!(acks.len(), 3, "{acks:?}");
        assert_eq!(acks[0], (10, String::new()));
        assert_eq!(acks[1].0, 11);
        assert!(
            !acks[1].1.is_empty(),
            "the failed delta is acked as an error"
        );
        assert_eq!(acks[2], (12, String::new()));
        assert_eq!(
            s.store
                .deltas_applied
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        shutdown.cancel();
        run.await.unwrap();
        server.abort();
    }
}

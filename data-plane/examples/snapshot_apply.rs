//! Opens a snapshot of the bench's scale (10,000 projects, 50,000 project API keys, 20,000
//! project credentials) the way a node does, in-process: once whole (a new node), once whole
//! with one project added (a running node, previous snapshot to reuse from), and as deltas: one
//! project added, then one project with 5 keys and 2 credentials; and the sealing of the whole
//! encoding for the disk cache that follows every version. Prints the time of each;
//! run under `valgrind --tool=callgrind` for instruction counts. `cargo run --release -p
//! data-plane --example snapshot_apply [projects]`.

use std::time::Instant;

use data_plane::seal::{PURPOSE_DISK_CACHE, PURPOSE_SNAPSHOT, SealKey};
use data_plane::snapshot::Snapshot;
use prost::Message;
use proto::v1 as pb;

// The node's allocator (src/main.rs), so allocation costs are the node's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn main() -> Result<(), data_plane::snapshot::SnapshotError> {
    let projects: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let key = SealKey::from_node_token("bench-node-token", PURPOSE_SNAPSHOT);
    let cache_key = SealKey::from_node_token("bench-node-token", PURPOSE_DISK_CACHE);
    let org = id();
    let mut s = pb::Snapshot {
        version: 1,
        created_at_ms: 1,
        orgs: vec![pb::Org {
            id: org.clone(),
            name: "bench".into(),
        }],
        catalog_json: llm::catalog::BUILTIN_JSON.as_bytes().to_vec(),
        ..Default::default()
    };
    for i in 0..projects {
        let (p, keys, credentials) = project_rows(&org, i, &format!("scale-{i}"), &key);
        s.projects.push(p);
        s.api_keys.extend(keys);
        s.credentials.extend(credentials);
    }
    // In id order, as the control plane sends every part.
    s.projects.sort_by(|a, b| a.id.cmp(&b.id));
    s.api_keys.sort_by(|a, b| a.id.cmp(&b.id));
    s.credentials.sort_by(|a, b| a.id.cmp(&b.id));
    let first = bytes::Bytes::from(s.encode_to_vec());
    s.version = 2;
    let added = pb::Project {
        id: id(),
        org_id: org.clone(),
        name: "scale-change".into(),
    };
    s.projects.push(added.clone());
    s.projects.sort_by(|a, b| a.id.cmp(&b.id));
    let second = bytes::Bytes::from(s.encode_to_vec());
    let project_delta = pb::SnapshotDelta {
        version: 2,
        base_version: 1,
        created_at_ms: 1,
        projects: vec![added],
        ..Default::default()
    }
    .encode_to_vec();
    // A project with its keys and credentials, as the bench's creations make them.
    let (p, mut api_keys, mut credentials) = project_rows(&org, projects, "scale-change-2", &key);
    api_keys.sort_by(|a, b| a.id.cmp(&b.id));
    credentials.sort_by(|a, b| a.id.cmp(&b.id));
    let full_delta = pb::SnapshotDelta {
        version: 3,
        base_version: 2,
        created_at_ms: 1,
        projects: vec![p],
        api_keys,
        credentials,
        ..Default::default()
    };
    let full_delta = full_delta.encode_to_vec();
    println!(
        "{projects} projects, {} keys, {} credentials: {:.1} MiB",
        s.api_keys.len(),
        s.credentials.len(),
        first.len() as f64 / 1048576.0
    );
    drop(s);
    for _ in 0..rounds {
        let rss0 = rss_mib();
        let t = Instant::now();
        let whole = Snapshot::build(first.clone(), &key, None)?;
        let whole_ms = t.elapsed().as_secs_f64() * 1000.0;
        let rss1 = rss_mib();
        let t = Instant::now();
        let change = Snapshot::build(second.clone(), &key, Some(&whole))?;
        let change_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let by_delta = whole.apply_delta(&project_delta, &key)?;
        let delta_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let by_full_delta = by_delta.apply_delta(&full_delta, &key)?;
        let full_delta_ms = t.elapsed().as_secs_f64() * 1000.0;
        // What a node does with every version after applying it: seal the whole encoding for
        // its disk cache (the write itself is not timed here).
        let t = Instant::now();
        let sealed = cache_key.seal(by_full_delta.raw(), b"aiproxy-node-snapshot-cache-v1");
        let seal_ms = t.elapsed().as_secs_f64() * 1000.0;
        drop(sealed);
        drop(change);
        // A version replaced by a delta is dropped while its successor, which shares its
        // unchanged parts, lives on: what the holder of its last reference pays.
        let t = Instant::now();
        drop(whole);
        let drop_base_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        drop(by_delta);
        let drop_delta_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        drop(by_full_delta);
        let drop_ms = t.elapsed().as_secs_f64() * 1000.0;
        println!(
            "whole {whole_ms:.1} ms (RSS {rss0:.1} → {rss1:.1} MiB), one change {change_ms:.1} ms, \
             delta of one project {delta_ms:.1} ms, of a project with keys and credentials \
             {full_delta_ms:.1} ms, sealing for the disk cache {seal_ms:.1} ms; dropping a \
             version replaced by a delta of one project {drop_base_ms:.1} ms, by the second delta \
             {drop_delta_ms:.1} ms, the last {drop_ms:.1} ms"
        );
    }
    Ok(())
}

/// Project `i` of `org` named `name`, with its 5 keys and 2 credentials (sealed under `key`).
fn project_rows(
    org: &str,
    i: usize,
    name: &str,
    key: &SealKey,
) -> (pb::Project, Vec<pb::ApiKey>, Vec<pb::Credential>) {
    let p = id();
    let keys = (0..5)
        .map(|k| pb::ApiKey {
            id: id(),
            org_id: org.to_string(),
            project_id: p.clone(),
            role: "proxy".into(),
            key_hash: sha2_like(i * 5 + k),
            name: format!("scale-{k}"),
        })
        .collect();
    let credentials = ["openai", "anthropic"]
        .iter()
        .enumerate()
        .map(|(k, ty)| {
            let cid = id();
            let payload = serde_json::json!({ "secret": format!("sk-scale-{i}-{k}-00000001") });
            pb::Credential {
                sealed_secret: key.seal(payload.to_string().as_bytes(), cid.as_bytes()),
                id: cid,
                org_id: org.to_string(),
                project_id: p.clone(),
                name: format!("scale-{k}"),
                r#type: ty.to_string(),
                metadata_json: r#"{"api_base":"https://api.example.com/v1"}"#.into(),
                updated_at_ms: 1,
            }
        })
        .collect();
    let project = pb::Project {
        id: p,
        org_id: org.to_string(),
        name: name.to_string(),
    };
    (project, keys, credentials)
}

/// 32 distinct bytes per index (the key hash's shape; its value does not matter here).
fn sha2_like(i: usize) -> Vec<u8> {
    let mut h = [0u8; 32];
    for (j, b) in h.iter_mut().enumerate() {
        *b = ((i >> (j % 8)) as u8) ^ (j as u8).wrapping_mul(31) ^ (i as u8);
    }
    h[..8].copy_from_slice(&(i as u64).to_le_bytes());
    h.to_vec()
}

fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / 1048576.0
}

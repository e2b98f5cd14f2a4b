//! The configuration a node serves from: an immutable, pre-indexed snapshot, built and validated
//! completely from what the control plane sent, then swapped in atomically. Requests load it once
//! and pass `&Snapshot` down; nothing on the request path touches a database.

use std::collections::HashMap;

/// The snapshot's index maps: foldhash (seeded per process) instead of SipHash — hashing was a
/// sixth of a node's snapshot apply at 10,000 projects. Keys are ids, key hashes and names
/// (tenant-chosen names only in `org_by_name` / `project_by_name`, per org), never request data.
pub type Map<K, V> = HashMap<K, V, foldhash::quality::RandomState>;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use http::{HeaderName, HeaderValue};
use llm::catalog::{Catalog, Format};
use llm::vendor::AuthStyle;
use prost::Message;
use proto::v1 as pb;
use serde::Deserialize;

use crate::eligibility::{CredentialModels, credential_format};
use crate::seal::SealKey;
use crate::secret::Secret;

mod delta;

#[derive(Debug, Clone)]
pub struct Org {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct Project {
    pub id: String,
    pub org_id: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    Proxy,
    Admin,
}

/// An API key. Its owner ids are shared with every other key of the same owner (a snapshot holds
/// tens of thousands of keys and far fewer projects).
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub org_id: Arc<str>,
    pub project_id: Option<Arc<str>>,
    pub role: KeyRole,
    pub name: String,
}

/// A provider credential, ready to use: secret unsealed, metadata parsed once.
#[derive(Debug, Clone)]
pub struct Credential {
    pub id: String,
    pub org_id: String,
    pub project_id: Option<String>,
    pub name: String,
    pub provider_type: String,
    pub format: Format,
    pub secret: Secret,
    pub session_token: Option<Secret>,
    /// Extra headers sent upstream (custom providers, attribution headers).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub api_base: Option<String>,
    pub models: CredentialModels,
    pub weight: f64,
    pub auth: AuthStyle,
    /// Azure: deployment name (default: the model), api-version.
    pub deployment: Option<String>,
    pub api_version: Option<String>,
    /// Bedrock: region and access key id (IAM), or bearer API-key auth.
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    /// Bedrock: `api_key` (bearer API key) or IAM (SigV4).
    pub auth_type: Option<String>,
    pub organization_id: Option<String>,
    pub supports_streaming: bool,
    /// Changes whenever the credential's configuration changes: health state is kept across
    /// snapshot swaps only while this stays the same.
    pub fingerprint: u64,
    /// A hash of the credential as it came over the wire (sealed secret included): the next
    /// snapshot keeps this `Credential` as it is when its wire form is the same, instead of
    /// opening and parsing it again.
    pub(crate) wire: u64,
    /// The URL and auth header of its requests, built on first use.
    pub(crate) memo: crate::upstream::RequestMemo,
}

#[derive(Debug, Default, Deserialize)]
struct Meta {
    api_base: Option<String>,
    weight: Option<f64>,
    deployment: Option<String>,
    api_version: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    auth_type: Option<String>,
    auth_format: Option<String>,
    organization_id: Option<String>,
    supports_streaming: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct SealedPayload {
    #[serde(default)]
    secret: String,
    #[serde(default)]
    session_token: Option<String>,
    #[serde(default)]
    headers: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A key for temporary credentials.
#[derive(Clone)]
pub struct SigningKey {
    pub id: String,
    pub key: Vec<u8>,
    pub active: bool,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, active={})", self.id, self.active)
    }
}

/// The configuration as the node serves it. Each part is shared (`Arc`) so that the next
/// snapshot can take over the parts whose wire bytes did not change instead of decoding and
/// indexing them again (at 10,000 projects / 50,000 keys / 20,000 credentials one change would
/// otherwise re-index all 80,000 entries on every node).
#[derive(Debug)]
pub struct Snapshot {
    pub version: u64,
    pub created_at_ms: i64,
    pub orgs: Arc<Map<String, Org>>,
    pub org_by_name: Arc<Map<String, String>>,
    pub projects: Arc<Projects>,
    /// Org id → (project name → project id); looked up without allocating
    /// (`Snapshot::project_named`).
    pub project_by_name: Arc<Map<Arc<str>, Arc<ProjectNames>>>,
    /// SHA-256 of the key → key
    pub keys: Arc<Map<[u8; 32], Arc<ApiKey>>>,
    /// Key id → key hash (temporary credentials name their parent key by id).
    pub key_ids: Arc<Map<Arc<str>, [u8; 32]>>,
    pub org_credentials: Arc<Map<Arc<str>, Credentials>>,
    pub project_credentials: Arc<Map<Arc<str>, Credentials>>,
    pub catalog: Arc<Catalog>,
    pub signing_keys: Arc<Vec<SigningKey>>,
    pub credential_count: usize,
    /// The bytes this snapshot was built from, and where each top-level field's entries lie in
    /// them (by field number): what the next snapshot compares its own sections with.
    raw: bytes::Bytes,
    sections: Sections,
    /// Per table (orgs, projects, API keys, credentials), once a delta has looked: whether its
    /// rows lie back to back in `raw` in strictly increasing id order, so that a delta can copy
    /// the runs between its changes whole (`delta.rs`).
    tables_in_order: [std::sync::OnceLock<bool>; 4],
}

/// Projects by id. The ids and the projects are shared (`Arc`), so a delta that changes one
/// project copies the map without copying the 10,000 others' strings.
pub type Projects = Map<Arc<str>, Arc<Project>>;

/// One org's projects: name → id.
pub type ProjectNames = Map<Arc<str>, Arc<str>>;

/// Indexes `p` (by id, checked once, and by name in its org); an id already there is an error.
fn add_project(
    projects: &mut Projects,
    by_name: &mut Map<Arc<str>, Arc<ProjectNames>>,
    p: pb::Project,
) -> Result<(), SnapshotError> {
    let id: Arc<str> = Arc::from(p.id.as_str());
    let names = match by_name.get_mut(p.org_id.as_str()) {
        Some(names) => names,
        None => by_name.entry(Arc::from(p.org_id.as_str())).or_default(),
    };
    Arc::make_mut(names).insert(Arc::from(p.name.as_str()), id.clone());
    let project = Project {
        id: p.id,
        org_id: p.org_id,
        name: p.name,
    };
    if let Some(was) = projects.insert(id, Arc::new(project)) {
        return Err(SnapshotError::Duplicate("project", was.id.clone()));
    }
    Ok(())
}

/// One owner's credentials, in id order. Shared, like the maps' keys and the API keys, so that
/// a delta copies a changed map without copying what it holds.
pub type Credentials = Arc<[Arc<Credential>]>;

/// Byte ranges of each length-delimited top-level field's entries, by field number.
#[derive(Debug, Default)]
struct Sections(Vec<Vec<std::ops::Range<usize>>>);

const F_ORGS: usize = 3;
const F_PROJECTS: usize = 4;
const F_KEYS: usize = 5;
const F_CREDENTIALS: usize = 6;
const F_CATALOG: usize = 7;
const F_SIGNING: usize = 8;

/// Keys plus credentials to decode from which a snapshot is opened on two threads.
const PARALLEL_ENTRIES: usize = 2_000;

/// The top-level fields of an encoded `pb::Snapshot` or `pb::SnapshotDelta`, without decoding
/// the entries.
struct Split {
    version: u64,
    created_at_ms: i64,
    /// A delta's base version (field 9; 0 in a whole snapshot).
    base_version: u64,
    sections: Sections,
}

/// Splits an encoded `pb::Snapshot` (or `pb::SnapshotDelta`, which shares its field numbers 1-8)
/// into its top-level fields without decoding the entries.
fn split(buf: &[u8]) -> Result<Split, SnapshotError> {
    use prost::encoding::decode_varint;
    let bad = |what: &str| SnapshotError::Decode(format!("snapshot does not decode: {what}"));
    let mut sections = Sections(vec![Vec::new(); delta::F_LAST + 1]);
    let (mut version, mut created, mut base) = (0u64, 0i64, 0u64);
    let mut rest = buf;
    while !rest.is_empty() {
        let key = decode_varint(&mut rest).map_err(|e| bad(&e.to_string()))?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let v = decode_varint(&mut rest).map_err(|e| bad(&e.to_string()))?;
                match field {
                    1 => version = v,
                    2 => created = v as i64,
                    9 => base = v,
                    _ => {}
                }
            }
            2 => {
                let len = decode_varint(&mut rest).map_err(|e| bad(&e.to_string()))? as usize;
                if len > rest.len() {
                    return Err(bad("a field runs past the end"));
                }
                let start = buf.len() - rest.len();
                if let Some(list) = sections.0.get_mut(field as usize) {
                    list.push(start..start + len);
                }
                rest = &rest[len..];
            }
            1 if rest.len() >= 8 => rest = &rest[8..],
            5 if rest.len() >= 4 => rest = &rest[4..],
            _ => {
                return Err(bad(&format!(
                    "unexpected wire type {wire} for field {field}"
                )));
            }
        }
    }
    Ok(Split {
        version,
        created_at_ms: created,
        base_version: base,
        sections,
    })
}

impl Snapshot {
    /// Whether field `f` has exactly the same entries, byte for byte, in `raw` / `sections`.
    fn same_section(&self, f: usize, raw: &[u8], sections: &Sections) -> bool {
        let (mine, theirs) = (&self.sections.0[f], &sections.0[f]);
        mine.len() == theirs.len()
            && mine
                .iter()
                .zip(theirs)
                .all(|(a, b)| self.raw[a.clone()] == raw[b.clone()])
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("snapshot does not decode: {0}")]
    Decode(String),
    #[error("credential {0}: secret does not unseal (node token mismatch or tampering)")]
    Unseal(String),
    #[error("credential {0}: {1}")]
    Credential(String, String),
    #[error("{0} refers to unknown {1} {2}")]
    Dangling(String, &'static str, String),
    #[error("duplicate {0} id {1}")]
    Duplicate(&'static str, String),
    #[error("model catalog: {0}")]
    Catalog(String),
    #[error("a delta against version {base} cannot be applied to version {held}")]
    Base { base: u64, held: u64 },
}

fn non_empty(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

/// A set of ids (seeded per process, like `Map`).
type Set<T> = std::collections::HashSet<T, foldhash::quality::RandomState>;

/// An owner reference (org, and project within that org) that does not resolve; `what` names
/// the referrer, for the error only.
fn unresolved(
    orgs: &Map<String, Org>,
    projects: &Projects,
    what: &dyn Fn() -> String,
    org_id: &str,
    project_id: Option<&str>,
) -> Option<SnapshotError> {
    if !orgs.contains_key(org_id) {
        return Some(SnapshotError::Dangling(what(), "org", org_id.to_string()));
    }
    match project_id {
        Some(p) if projects.get(p).is_none_or(|pr| pr.org_id != org_id) => {
            Some(SnapshotError::Dangling(what(), "project", p.to_string()))
        }
        _ => None,
    }
}

/// An encoded project, decoded and checked against its org.
fn project_row(row: &[u8], orgs: &Map<String, Org>) -> Result<pb::Project, SnapshotError> {
    let p = pb::Project::decode(row).map_err(|e| SnapshotError::Decode(e.to_string()))?;
    if !orgs.contains_key(&p.org_id) {
        return Err(SnapshotError::Dangling(
            format!("project {}", p.id),
            "org",
            p.org_id,
        ));
    }
    Ok(p)
}

/// An encoded API key, decoded and checked against its owners; `owner` gives the shared copy
/// of an owner id.
fn api_key(
    row: &[u8],
    orgs: &Map<String, Org>,
    projects: &Projects,
    owner: &mut impl FnMut(String) -> Arc<str>,
) -> Result<([u8; 32], ApiKey), SnapshotError> {
    let k = pb::ApiKey::decode(row).map_err(|e| SnapshotError::Decode(e.to_string()))?;
    let hash: [u8; 32] =
        k.key_hash.as_slice().try_into().map_err(|_| {
            SnapshotError::Decode(format!("api key {}: hash is not 32 bytes", k.id))
        })?;
    let project_id = non_empty(k.project_id);
    let what = || format!("api key {}", k.id);
    if let Some(e) = unresolved(orgs, projects, &what, &k.org_id, project_id.as_deref()) {
        return Err(e);
    }
    let role = if k.role == "admin" {
        KeyRole::Admin
    } else {
        KeyRole::Proxy
    };
    let key = ApiKey {
        id: k.id,
        org_id: owner(k.org_id),
        project_id: project_id.map(owner),
        role,
        name: k.name,
    };
    Ok((hash, key))
}

/// An encoded credential, decoded, checked against its owners and opened — or, when its wire
/// form is that of the one `known` by its id, that one. `seen` refuses an id a second time.
fn credential_row(
    row: &[u8],
    key: &SealKey,
    orgs: &Map<String, Org>,
    projects: &Projects,
    known: &Map<&str, &Arc<Credential>>,
    seen: &mut Set<String>,
) -> Result<Arc<Credential>, SnapshotError> {
    let c = pb::Credential::decode(row).map_err(|e| SnapshotError::Decode(e.to_string()))?;
    if !seen.insert(c.id.clone()) {
        return Err(SnapshotError::Duplicate("credential", c.id));
    }
    let project_id = non_empty(c.project_id.clone());
    let what = || format!("credential {}", c.id);
    if let Some(e) = unresolved(orgs, projects, &what, &c.org_id, project_id.as_deref()) {
        return Err(e);
    }
    let wire = wire_hash(&c);
    Ok(match known.get(c.id.as_str()) {
        Some(k) if k.wire == wire => Arc::clone(k),
        _ => Arc::new(credential(c, key, wire)?),
    })
}

fn catalog(json: &[u8]) -> Result<Arc<Catalog>, SnapshotError> {
    let json = std::str::from_utf8(json).map_err(|e| SnapshotError::Catalog(e.to_string()))?;
    Catalog::from_json(json)
        .map(Arc::new)
        .map_err(|e| SnapshotError::Catalog(e.to_string()))
}

fn signing_keys<'a>(
    entries: impl Iterator<Item = &'a [u8]>,
    key: &SealKey,
) -> Result<Arc<Vec<SigningKey>>, SnapshotError> {
    let mut signing_keys = Vec::new();
    for e in entries {
        let k = pb::SigningKey::decode(e).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        let plain = key
            .open(&k.sealed_key, k.id.as_bytes())
            .map_err(|_| SnapshotError::Unseal(format!("signing key {}", k.id)))?;
        signing_keys.push(SigningKey {
            id: k.id,
            key: plain,
            active: k.active,
        });
    }
    Ok(Arc::new(signing_keys))
}

impl Snapshot {
    /// Decodes, unseals and validates a snapshot. Any structural problem rejects it whole.
    /// Parts whose bytes are exactly those of `previous` (orgs, projects, keys, credentials,
    /// catalog, signing keys) are taken over from it instead of being decoded again, and their
    /// references are checked again against whichever parts did change. Within a changed
    /// credentials part, a credential whose wire form is unchanged is likewise taken over rather
    /// than opened and parsed again.
    pub fn build(
        bytes: bytes::Bytes,
        key: &SealKey,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, SnapshotError> {
        let Split {
            version,
            created_at_ms,
            sections,
            ..
        } = split(&bytes)?;
        let same = |f: usize| previous.filter(|p| p.same_section(f, &bytes, &sections));
        let entries = |f: usize| sections.0[f].iter().map(|r| &bytes[r.clone()]);
        let decode_err = |e: prost::DecodeError| SnapshotError::Decode(e.to_string());

        let catalog = match same(F_CATALOG) {
            Some(p) => p.catalog.clone(),
            None => catalog(entries(F_CATALOG).last().unwrap_or_default())?,
        };

        let orgs_same = same(F_ORGS);
        let (orgs, org_by_name) = match orgs_same {
            Some(p) => (p.orgs.clone(), p.org_by_name.clone()),
            None => {
                let n = sections.0[F_ORGS].len();
                let mut orgs = Map::with_capacity_and_hasher(n, Default::default());
                let mut org_by_name = Map::with_capacity_and_hasher(n, Default::default());
                for e in entries(F_ORGS) {
                    let o = pb::Org::decode(e).map_err(decode_err)?;
                    org_by_name.insert(o.name.clone(), o.id.clone());
                    if orgs
                        .insert(
                            o.id.clone(),
                            Org {
                                id: o.id.clone(),
                                name: o.name,
                            },
                        )
                        .is_some()
                    {
                        return Err(SnapshotError::Duplicate("org", o.id));
                    }
                }
                (Arc::new(orgs), Arc::new(org_by_name))
            }
        };

        let projects_same = same(F_PROJECTS);
        let (projects, project_by_name) = match projects_same {
            Some(p) => {
                if orgs_same.is_none()
                    && let Some(pr) = p
                        .projects
                        .values()
                        .find(|pr| !orgs.contains_key(&pr.org_id))
                {
                    return Err(SnapshotError::Dangling(
                        format!("project {}", pr.id),
                        "org",
                        pr.org_id.clone(),
                    ));
                }
                (p.projects.clone(), p.project_by_name.clone())
            }
            None => {
                let n = sections.0[F_PROJECTS].len();
                let mut projects = Map::with_capacity_and_hasher(n, Default::default());
                let mut project_by_name = Map::default();
                for e in entries(F_PROJECTS) {
                    add_project(&mut projects, &mut project_by_name, project_row(e, &orgs)?)?;
                }
                (Arc::new(projects), Arc::new(project_by_name))
            }
        };
        let owners_same = orgs_same.is_some() && projects_same.is_some();
        // An owner reference (org, and project within that org) that does not resolve; `what`
        // names the referrer, for the error only.
        let dangling = |what: &dyn Fn() -> String, org_id: &str, project_id: Option<&str>| {
            unresolved(&orgs, &projects, what, org_id, project_id)
        };

        let keys_same = same(F_KEYS);
        let keys = || -> Result<_, SnapshotError> {
            if let Some(p) = keys_same {
                if !owners_same {
                    for k in p.keys.values() {
                        let what = || format!("api key {}", k.id);
                        if let Some(e) = dangling(&what, &k.org_id, k.project_id.as_deref()) {
                            return Err(e);
                        }
                    }
                }
                return Ok((p.keys.clone(), p.key_ids.clone()));
            }
            let n = sections.0[F_KEYS].len();
            let mut keys = Map::with_capacity_and_hasher(n, Default::default());
            let mut key_ids = Map::with_capacity_and_hasher(n, Default::default());
            // One shared copy of each owner id.
            let mut owners: Map<String, Arc<str>> = Map::default();
            let mut shared = |id: String| -> Arc<str> {
                owners
                    .entry(id)
                    .or_insert_with_key(|id| Arc::from(id.as_str()))
                    .clone()
            };
            for e in entries(F_KEYS) {
                let (hash, k) = api_key(e, &orgs, &projects, &mut shared)?;
                key_ids.insert(Arc::from(k.id.as_str()), hash);
                keys.insert(hash, Arc::new(k));
            }
            Ok((Arc::new(keys), Arc::new(key_ids)))
        };

        let credentials_same = same(F_CREDENTIALS);
        let credentials = || -> Result<_, SnapshotError> {
            if let Some(p) = credentials_same {
                if !owners_same {
                    for c in p.all_credentials() {
                        let what = || format!("credential {}", c.id);
                        if let Some(e) = dangling(&what, &c.org_id, c.project_id.as_deref()) {
                            return Err(e);
                        }
                    }
                }
                return Ok((
                    p.org_credentials.clone(),
                    p.project_credentials.clone(),
                    p.credential_count,
                ));
            }
            let mut org_credentials: Map<Arc<str>, Vec<Arc<Credential>>> = Map::default();
            let mut project_credentials: Map<Arc<str>, Vec<Arc<Credential>>> = Map::default();
            let mut seen = Set::default();
            let known: Map<&str, &Arc<Credential>> = previous
                .map(|p| p.all_credentials().map(|c| (c.id.as_str(), c)).collect())
                .unwrap_or_default();
            for e in entries(F_CREDENTIALS) {
                let cred = credential_row(e, key, &orgs, &projects, &known, &mut seen)?;
                match &cred.project_id {
                    Some(p) => project_credentials
                        .entry(Arc::from(p.as_str()))
                        .or_default()
                        .push(cred),
                    None => org_credentials
                        .entry(Arc::from(cred.org_id.as_str()))
                        .or_default()
                        .push(cred),
                }
            }
            let shared = |m: Map<Arc<str>, Vec<Arc<Credential>>>| -> Map<_, Credentials> {
                m.into_iter().map(|(k, v)| (k, v.into())).collect()
            };
            Ok((
                Arc::new(shared(org_credentials)),
                Arc::new(shared(project_credentials)),
                seen.len(),
            ))
        };

        // Keys and credentials only read the owners: when both have many entries to decode (a
        // node's first snapshot at scale), the credentials are opened on a second thread while
        // this one decodes the keys. The keys' error, if any, is reported first, as in order.
        let parallel = keys_same.is_none()
            && credentials_same.is_none()
            && sections.0[F_KEYS].len() + sections.0[F_CREDENTIALS].len() >= PARALLEL_ENTRIES;
        let (keys, credentials) = if parallel {
            std::thread::scope(|scope| {
                let creds = std::thread::Builder::new()
                    .name("snapshot-credentials".into())
                    .spawn_scoped(scope, credentials);
                let keys = keys();
                let creds = match creds {
                    Ok(handle) => handle
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                    // No thread to be had: open them here instead.
                    Err(_) => credentials(),
                };
                (keys, creds)
            })
        } else {
            (keys(), credentials())
        };
        let (keys, key_ids) = keys?;
        let (org_credentials, project_credentials, credential_count) = credentials?;

        let signing_keys = match same(F_SIGNING) {
            Some(p) => p.signing_keys.clone(),
            None => signing_keys(entries(F_SIGNING), key)?,
        };
        Ok(Snapshot {
            version,
            created_at_ms,
            orgs,
            org_by_name,
            projects,
            project_by_name,
            keys,
            key_ids,
            org_credentials,
            project_credentials,
            catalog,
            signing_keys,
            credential_count,
            raw: bytes,
            sections,
            tables_in_order: Default::default(),
        })
    }

    /// The project named `name` in org `org_id`.
    pub fn project_named(&self, org_id: &str, name: &str) -> Option<&Project> {
        let id = self.project_by_name.get(org_id)?.get(name)?;
        self.projects.get(id).map(|p| &**p)
    }

    pub fn key_by_id(&self, id: &str) -> Option<&ApiKey> {
        self.key_ids.get(id).and_then(|h| self.key_by_hash(h))
    }

    pub fn key_by_hash(&self, hash: &[u8; 32]) -> Option<&ApiKey> {
        self.keys.get(hash).map(|k| &**k)
    }

    pub fn org_credentials(&self, org_id: &str) -> &[Arc<Credential>] {
        self.org_credentials.get(org_id).map_or(&[], |c| &c[..])
    }

    pub fn project_credentials(&self, project_id: &str) -> &[Arc<Credential>] {
        self.project_credentials
            .get(project_id)
            .map_or(&[], |c| &c[..])
    }

    /// Every credential (for health bookkeeping).
    pub fn all_credentials(&self) -> impl Iterator<Item = &Arc<Credential>> {
        self.org_credentials
            .values()
            .chain(self.project_credentials.values())
            .flat_map(|c| c.iter())
    }
}

/// Every field of a credential as sent (the owner included, so a credential moved to another
/// tenant is built anew).
fn wire_hash(c: &pb::Credential) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        &c.id,
        &c.org_id,
        &c.project_id,
        &c.name,
        &c.r#type,
        &c.metadata_json,
        &c.sealed_secret,
        c.updated_at_ms,
    )
        .hash(&mut h);
    h.finish()
}

fn credential(c: pb::Credential, key: &SealKey, wire: u64) -> Result<Credential, SnapshotError> {
    let plain = key
        .open(&c.sealed_secret, c.id.as_bytes())
        .map_err(|_| SnapshotError::Unseal(c.id.clone()))?;
    let payload: SealedPayload = serde_json::from_slice(&plain)
        .map_err(|e| SnapshotError::Credential(c.id.clone(), format!("sealed payload: {e}")))?;
    let meta_value: serde_json::Value =
        serde_json::from_str(&c.metadata_json).unwrap_or(serde_json::Value::Null);
    // Lenient on purpose: a field the node does not understand must not break the snapshot.
    let meta: Meta = serde_json::from_value(meta_value.clone()).unwrap_or_default();
    let models = CredentialModels::from_metadata(&meta_value);
    let format = credential_format(&c.r#type, &models);
    let preset = llm::vendor::preset(&c.r#type);
    let auth = match (
        c.r#type.as_str(),
        meta.auth_type.as_deref(),
        meta.auth_format.as_deref(),
    ) {
        ("custom", _, Some(f)) => AuthStyle::parse_custom(f).unwrap_or(AuthStyle::Bearer),
        ("custom", _, None) => match format {
            Format::Anthropic => AuthStyle::XApiKey,
            Format::Google => AuthStyle::GoogApiKey,
            Format::Bedrock => AuthStyle::Aws,
            Format::Openai => AuthStyle::Bearer,
        },
        ("azure" | "anthropic", Some("bearer"), _) => AuthStyle::Bearer,
        _ => preset.map(|p| p.auth).unwrap_or(AuthStyle::Bearer),
    };
    let mut headers = Vec::new();
    for (k, v) in payload.headers.unwrap_or_default() {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
            SnapshotError::Credential(c.id.clone(), format!("invalid header name {k:?}"))
        })?;
        let value = v
            .as_str()
            .and_then(|s| HeaderValue::from_str(s).ok())
            .ok_or_else(|| {
                SnapshotError::Credential(c.id.clone(), format!("invalid value for header {k:?}"))
            })?;
        headers.push((name, value));
    }
    let fingerprint = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (c.updated_at_ms, &c.metadata_json, &c.r#type, &c.name).hash(&mut h);
        plain.hash(&mut h);
        h.finish()
    };
    Ok(Credential {
        id: c.id,
        org_id: c.org_id,
        project_id: non_empty(c.project_id),
        name: c.name,
        format,
        secret: Secret::new(payload.secret),
        session_token: payload.session_token.map(Secret::new),
        headers,
        api_base: meta.api_base.map(|s| s.trim_end_matches('/').to_string()),
        models,
        weight: meta
            .weight
            .filter(|w| w.is_finite() && *w > 0.0)
            .unwrap_or(1.0),
        auth,
        deployment: meta.deployment,
        api_version: meta.api_version,
        region: meta.region,
        access_key_id: meta.access_key_id,
        auth_type: meta.auth_type.clone(),
        organization_id: meta.organization_id,
        supports_streaming: meta.supports_streaming.unwrap_or(true),
        provider_type: c.r#type,
        fingerprint,
        wire,
        memo: Default::default(),
    })
}

/// The current snapshot, swapped atomically; readers never block writers or each other.
#[derive(Default)]
pub struct SnapshotStore {
    current: ArcSwapOption<Snapshot>,
    /// The last apply: how long decoding, validating and indexing took (µs), and the
    /// snapshot's encoded size (bytes). For `/metrics`.
    pub last_apply_us: std::sync::atomic::AtomicU64,
    pub last_apply_bytes: std::sync::atomic::AtomicU64,
    /// Deltas applied since the node started (the rest of its applies were whole snapshots).
    pub deltas_applied: std::sync::atomic::AtomicU64,
    /// Writes of the disk cache since the node started (`sync::Syncer`), and the version the
    /// cache holds (0: none written or loaded).
    pub cache_writes: std::sync::atomic::AtomicU64,
    pub cache_version: std::sync::atomic::AtomicU64,
    /// Versions replaced while calls in flight still held them (`store`), freed by
    /// `release_retired` once none does, rather than by whichever call let go last.
    retired: std::sync::Mutex<Vec<Arc<Snapshot>>>,
}

impl SnapshotStore {
    pub fn load(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    pub fn version(&self) -> u64 {
        self.current.load().as_ref().map(|s| s.version).unwrap_or(0)
    }

    /// Serves `s` from now on. The version it replaces is freed here if no call holds it, and
    /// otherwise kept until `release_retired` finds it free: a call ending on a runtime worker
    /// would otherwise free it there, between requests. Freeing a version takes ≈0.3–2 ms at
    /// 10,000 projects after a delta (its copied maps) and ≈20 ms when nothing is shared
    /// (`examples/snapshot_apply.rs`). Blocking, like the apply that calls it.
    pub fn store(&self, s: Snapshot) {
        if let Some(old) = self.current.swap(Some(Arc::new(s))) {
            self.retired_list().push(old);
        }
        self.release_retired();
    }

    fn retired_list(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Snapshot>>> {
        // A panic while the list was locked left it whole (only push and retain touch it).
        self.retired.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Frees the replaced versions that no call holds any more (outside the lock) and returns
    /// how many are still held. Blocking: run off the runtime's workers.
    pub fn release_retired(&self) -> usize {
        let (free, held) = {
            let mut retired = self.retired_list();
            // Only this list holds a version whose count is 1: the store no longer hands it out.
            let free: Vec<_> = retired
                .extract_if(.., |s| Arc::strong_count(s) == 1)
                .collect();
            (free, retired.len())
        };
        drop(free);
        held
    }

    /// Whether replaced versions wait to be freed (`release_retired`).
    pub fn has_retired(&self) -> bool {
        !self.retired_list().is_empty()
    }

    /// Prometheus lines for the last apply.
    pub fn render_metrics(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        format!(
            "# HELP aiproxy_config_apply_seconds Time the last configuration update (a whole snapshot or a delta) took to decode, validate and index.\n# TYPE aiproxy_config_apply_seconds gauge\naiproxy_config_apply_seconds {}\n\
             # HELP aiproxy_config_snapshot_bytes Size of the last configuration update received (a whole snapshot or a delta).\n# TYPE aiproxy_config_snapshot_bytes gauge\naiproxy_config_snapshot_bytes {}\n\
             # HELP aiproxy_config_deltas_applied_total Configuration deltas applied (the other updates were whole snapshots).\n# TYPE aiproxy_config_deltas_applied_total counter\naiproxy_config_deltas_applied_total {}\n\
             # HELP aiproxy_config_cache_writes_total Writes of the last-known-good snapshot to the disk cache (at most one a second under a stream of versions).\n# TYPE aiproxy_config_cache_writes_total counter\naiproxy_config_cache_writes_total {}\n\
             # HELP aiproxy_config_cache_version Configuration version the disk cache holds (what a restart would serve until the control plane is reached; 0: none).\n# TYPE aiproxy_config_cache_version gauge\naiproxy_config_cache_version {}\n",
            self.last_apply_us.load(Relaxed) as f64 / 1e6,
            self.last_apply_bytes.load(Relaxed),
            self.deltas_applied.load(Relaxed),
            self.cache_writes.load(Relaxed),
            self.cache_version.load(Relaxed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every credential of a snapshot is one of these, most never called on a given node: what
    /// is built on first use stays out of line (`upstream::RequestMemo`), so a new node's
    /// apply at 20,000 credentials does not touch memory for it.
    #[test]
    fn a_credential_keeps_its_request_memo_out_of_line() {
        assert_eq!(
            std::mem::size_of::<crate::upstream::RequestMemo>(),
            std::mem::size_of::<usize>() * 2
        );
        assert!(std::mem::size_of::<Credential>() < 600);
    }

    fn key() -> SealKey {
        SealKey::from_node_token("node-token-for-tests", crate::seal::PURPOSE_SNAPSHOT)
    }

    /// A replaced version that a call still holds is kept by the store, and freed by
    /// `release_retired` once the call lets go (not by the call's drop); one nobody holds is
    /// freed as it is replaced.
    #[test]
    fn the_store_frees_replaced_versions_itself() {
        let k = key();
        let build = |v: u64| Snapshot::build(snap(v, vec![]).encode_to_vec().into(), &k, None);
        let store = SnapshotStore::default();
        store.store(build(1).unwrap());
        let held = store.load().unwrap();
        let v1 = Arc::downgrade(&held);
        store.store(build(2).unwrap());
        assert!(store.has_retired());
        assert_eq!(store.release_retired(), 1, "still held by the call");
        drop(held);
        assert!(v1.upgrade().is_some(), "the call's end does not free it");
        assert_eq!(store.release_retired(), 0);
        assert!(v1.upgrade().is_none());
        assert!(!store.has_retired());
        let v2 = Arc::downgrade(&store.load().unwrap());
        store.store(build(3).unwrap());
        assert!(v2.upgrade().is_none());
        assert!(!store.has_retired());
        assert_eq!(store.version(), 3);
    }

    fn cred(id: &str, org: &str, project: &str, secret: &str, key: &SealKey) -> pb::Credential {
        let payload = serde_json::json!({ "secret": secret }).to_string();
        pb::Credential {
            id: id.into(),
            org_id: org.into(),
            project_id: project.into(),
            name: id.into(),
            r#type: "openai".into(),
            metadata_json: "{}".into(),
            sealed_secret: key.seal(payload.as_bytes(), id.as_bytes()),
            updated_at_ms: 1,
        }
    }

    fn snap(version: u64, credentials: Vec<pb::Credential>) -> pb::Snapshot {
        pb::Snapshot {
            version,
            created_at_ms: 0,
            orgs: ["o1", "o2"]
                .map(|o| pb::Org {
                    id: o.into(),
                    name: o.into(),
                })
                .into(),
            projects: vec![pb::Project {
                id: "p1".into(),
                org_id: "o1".into(),
                name: "default".into(),
            }],
            api_keys: vec![pb::ApiKey {
                id: "k1".into(),
                org_id: "o1".into(),
                project_id: "p1".into(),
                role: "proxy".into(),
                key_hash: vec![7; 32],
                name: "k1".into(),
            }],
            credentials,
            catalog_json: llm::catalog::BUILTIN_JSON.as_bytes().to_vec(),
            signing_keys: vec![],
        }
    }

    fn find<'a>(s: &'a Snapshot, id: &str) -> &'a Arc<Credential> {
        s.all_credentials().find(|c| c.id == id).unwrap()
    }

    #[test]
    fn unchanged_credentials_are_kept_and_changed_ones_opened_again() {
        let k = key();
        let c1 = cred("c1", "o1", "p1", "sk-one", &k);
        let c2 = cred("c2", "o1", "", "sk-two", &k);
        let first = Snapshot::build(
            snap(1, vec![c1.clone(), c2.clone()]).encode_to_vec().into(),
            &k,
            None,
        )
        .unwrap();
        // The same wire bytes: both credentials are the previous snapshot's.
        let same = Snapshot::build(
            snap(2, vec![c1.clone(), c2.clone()]).encode_to_vec().into(),
            &k,
            Some(&first),
        )
        .unwrap();
        assert!(Arc::ptr_eq(find(&first, "c1"), find(&same, "c1")));
        assert!(Arc::ptr_eq(find(&first, "c2"), find(&same, "c2")));
        // c1's secret rotated: opened again, the new secret served; c2 still kept.
        let rotated = cred("c1", "o1", "p1", "sk-one-rotated", &k);
        let next = Snapshot::build(
            snap(3, vec![rotated, c2.clone()]).encode_to_vec().into(),
            &k,
            Some(&same),
        )
        .unwrap();
        assert!(!Arc::ptr_eq(find(&same, "c1"), find(&next, "c1")));
        assert_eq!(find(&next, "c1").secret.expose(), "sk-one-rotated");
        assert_eq!(find(&first, "c1").secret.expose(), "sk-one");
        assert!(Arc::ptr_eq(find(&same, "c2"), find(&next, "c2")));
        // The same sealed bytes under another owner are a new credential, filed under it.
        let moved = pb::Credential {
            org_id: "o2".into(),
            ..c2.clone()
        };
        let after_move = Snapshot::build(
            snap(4, vec![c1.clone(), moved]).encode_to_vec().into(),
            &k,
            Some(&next),
        )
        .unwrap();
        let m = find(&after_move, "c2");
        assert!(!Arc::ptr_eq(find(&next, "c2"), m));
        assert_eq!(m.org_id, "o2");
        assert_eq!(after_move.org_credentials("o2").len(), 1);
        assert!(after_move.org_credentials("o1").is_empty());
    }

    #[test]
    fn a_kept_credential_is_still_checked_against_the_new_snapshot() {
        let k = key();
        let c1 = cred("c1", "o1", "p1", "sk-one", &k);
        let first =
            Snapshot::build(snap(1, vec![c1.clone()]).encode_to_vec().into(), &k, None).unwrap();
        // Its project is gone: the whole snapshot is refused, reuse or not.
        let mut without_project = snap(2, vec![c1.clone()]);
        without_project.projects.clear();
        assert!(matches!(
            Snapshot::build(without_project.encode_to_vec().into(), &k, Some(&first)),
            Err(SnapshotError::Dangling(..))
        ));
        // Tampered sealed bytes are never matched to the kept credential: they must open.
        let mut tampered = c1.clone();
        let last = tampered.sealed_secret.len() - 1;
        tampered.sealed_secret[last] ^= 1;
        assert_eq!(
            Snapshot::build(
                snap(3, vec![tampered]).encode_to_vec().into(),
                &k,
                Some(&first)
            )
            .unwrap_err(),
            SnapshotError::Unseal("c1".into())
        );
        // A snapshot sealed for another node token does not open, previous snapshot or not.
        let other = SealKey::from_node_token("another-token", crate::seal::PURPOSE_SNAPSHOT);
        let foreign = cred("c1", "o1", "p1", "sk-one", &other);
        assert_eq!(
            Snapshot::build(
                snap(4, vec![foreign]).encode_to_vec().into(),
                &k,
                Some(&first)
            )
            .unwrap_err(),
            SnapshotError::Unseal("c1".into())
        );
    }

    #[test]
    fn unchanged_parts_are_taken_over_and_still_checked() {
        let k = key();
        let c1 = cred("c1", "o1", "p1", "sk-one", &k);
        let first =
            Snapshot::build(snap(1, vec![c1.clone()]).encode_to_vec().into(), &k, None).unwrap();
        let same = Snapshot::build(
            snap(2, vec![c1.clone()]).encode_to_vec().into(),
            &k,
            Some(&first),
        )
        .unwrap();
        assert_eq!(same.version, 2);
        assert!(Arc::ptr_eq(&first.orgs, &same.orgs));
        assert!(Arc::ptr_eq(&first.projects, &same.projects));
        assert!(Arc::ptr_eq(&first.keys, &same.keys));
        assert!(Arc::ptr_eq(
            &first.project_credentials,
            &same.project_credentials
        ));
        assert!(Arc::ptr_eq(&first.catalog, &same.catalog));
        // A new project: projects decoded again, keys and credentials taken over (and checked).
        let mut more = snap(3, vec![c1.clone()]);
        more.projects.push(pb::Project {
            id: "p2".into(),
            org_id: "o2".into(),
            name: "other".into(),
        });
        let grown = Snapshot::build(more.encode_to_vec().into(), &k, Some(&same)).unwrap();
        assert!(!Arc::ptr_eq(&same.projects, &grown.projects));
        assert_eq!(grown.projects.len(), 2);
        assert!(Arc::ptr_eq(&same.keys, &grown.keys));
        assert!(grown.key_by_id("k1").is_some());
        // The org the key and credential belong to is gone: refused, though neither changed.
        let mut orphaned = snap(4, vec![c1.clone()]);
        orphaned.orgs.retain(|o| o.id != "o1");
        orphaned.projects.clear();
        assert!(matches!(
            Snapshot::build(orphaned.encode_to_vec().into(), &k, Some(&grown)),
            Err(SnapshotError::Dangling(..))
        ));
        // Moving the project to another org leaves the key pointing across tenants: refused.
        let mut moved = snap(5, vec![c1]);
        moved.projects[0].org_id = "o2".into();
        assert!(matches!(
            Snapshot::build(moved.encode_to_vec().into(), &k, Some(&grown)),
            Err(SnapshotError::Dangling(..))
        ));
        // Truncated bytes are refused, not half-applied.
        let bytes = snap(6, vec![]).encode_to_vec();
        assert!(matches!(
            Snapshot::build(bytes[..bytes.len() - 3].to_vec().into(), &k, Some(&grown)),
            Err(SnapshotError::Decode(_))
        ));
    }

    /// A first snapshot with many keys and credentials is opened on two threads: everything is
    /// indexed as in order, and a broken entry on either side still rejects it whole, the keys'
    /// error first.
    #[test]
    fn a_large_snapshot_is_opened_in_parallel_with_the_same_result() {
        let k = key();
        let n = PARALLEL_ENTRIES;
        let creds: Vec<_> = (0..n / 2)
            .map(|i| cred(&format!("c{i}"), "o1", "p1", &format!("sk-{i}"), &k))
            .collect();
        let mut big = snap(1, creds);
        big.api_keys = (0..n)
            .map(|i| pb::ApiKey {
                id: format!("k{i}"),
                org_id: "o1".into(),
                project_id: "p1".into(),
                role: "proxy".into(),
                key_hash: {
                    let mut h = vec![0u8; 32];
                    h[..8].copy_from_slice(&(i as u64).to_le_bytes());
                    h
                },
                name: format!("k{i}"),
            })
            .collect();
        let s = Snapshot::build(big.encode_to_vec().into(), &k, None).unwrap();
        assert_eq!(s.keys.len(), n);
        assert_eq!(s.key_ids.len(), n);
        assert_eq!(s.credential_count, n / 2);
        assert_eq!(s.project_credentials("p1").len(), n / 2);
        assert_eq!(find(&s, "c7").secret.expose(), "sk-7");
        assert_eq!(s.key_by_id("k11").map(|a| a.name.as_str()), Some("k11"));

        // A credential that does not unseal, alone: its error.
        let mut bad_cred = big.clone();
        let last = bad_cred.credentials.len() - 1;
        bad_cred.credentials[last].sealed_secret[20] ^= 1;
        let want = SnapshotError::Unseal(format!("c{}", n / 2 - 1));
        assert_eq!(
            Snapshot::build(bad_cred.encode_to_vec().into(), &k, None).unwrap_err(),
            want
        );
        // With a dangling key as well: the key's error, whichever thread finishes first.
        let mut both = bad_cred;
        both.api_keys[n - 1].project_id = "p-gone".into();
        assert_eq!(
            Snapshot::build(both.encode_to_vec().into(), &k, None).unwrap_err(),
            SnapshotError::Dangling(format!("api key k{}", n - 1), "project", "p-gone".into())
        );
    }
}

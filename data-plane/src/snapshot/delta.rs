//! Applying a `pb::SnapshotDelta`: the rows that changed since the version the node holds, and
//! the ids of those gone. The result is the snapshot a whole encoding of the new version would
//! give — the same maps, and the same bytes (`raw`), which the node persists and compares the
//! next whole snapshot with — but only the changed rows are decoded, and the parts with no
//! change are taken over as they are.

use prost::encoding::{WireType, encode_key, encode_varint};

use super::*;

pub(super) const F_LAST: usize = 13;
/// Fields of the removed ids, in the order of the tables' fields (`F_ORGS`..`F_CREDENTIALS`).
const F_REMOVED: [usize; 4] = [10, 11, 12, 13];
const TABLES: [usize; 4] = [F_ORGS, F_PROJECTS, F_KEYS, F_CREDENTIALS];

/// The id (field 1) of an encoded org, project, key or credential; empty when it has none.
fn row_id(row: &[u8]) -> Result<&[u8], SnapshotError> {
    use prost::encoding::decode_varint;
    let bad = |what: String| SnapshotError::Decode(format!("delta does not decode: {what}"));
    let mut rest = row;
    while !rest.is_empty() {
        let key = decode_varint(&mut rest).map_err(|e| bad(e.to_string()))?;
        let skip = match key & 7 {
            0 => {
                decode_varint(&mut rest).map_err(|e| bad(e.to_string()))?;
                0
            }
            2 => {
                let len = decode_varint(&mut rest).map_err(|e| bad(e.to_string()))? as usize;
                if len > rest.len() {
                    return Err(bad("a row's field runs past its end".into()));
                }
                if key >> 3 == 1 {
                    return Ok(&rest[..len]);
                }
                len
            }
            1 => 8,
            5 => 4,
            w => return Err(bad(format!("unexpected wire type {w} in a row"))),
        };
        rest = rest
            .get(skip..)
            .ok_or_else(|| bad("a row's field runs past its end".into()))?;
    }
    Ok(b"")
}

/// Owner → its credentials, for the owners a delta changes.
type Lists = Map<Arc<str>, Vec<Arc<Credential>>>;

fn text(id: &[u8]) -> Result<&str, SnapshotError> {
    std::str::from_utf8(id)
        .map_err(|_| SnapshotError::Decode("delta does not decode: an id is not UTF-8".into()))
}

/// Writes the key and length that come before an entry of `len` bytes in field `field`.
fn put_prefix(field: usize, len: usize, out: &mut Vec<u8>) {
    encode_key(field as u32, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

/// Writes `bytes` as field `field` (length-delimited); returns where they lie in `out`.
fn put(field: usize, bytes: &[u8], out: &mut Vec<u8>) -> std::ops::Range<usize> {
    put_prefix(field, bytes.len(), out);
    let start = out.len();
    out.extend_from_slice(bytes);
    start..out.len()
}

/// The bytes `put` writes before an entry of `len` bytes in field `field`.
fn prefix_len(field: usize, len: usize) -> usize {
    prost::encoding::key_len(field as u32) + prost::encoding::encoded_len_varint(len as u64)
}

impl Snapshot {
    /// The snapshot `delta` (an encoded `pb::SnapshotDelta` against this snapshot's version)
    /// makes of this one. Checked like a whole snapshot: a changed row must decode (and a
    /// credential open), every owner reference must resolve — those of rows taken over too,
    /// when orgs or projects changed — and an id may come only once; any failure refuses the
    /// delta whole and leaves this snapshot as it is.
    pub fn apply_delta(&self, delta: &[u8], key: &SealKey) -> Result<Snapshot, SnapshotError> {
        let d = split(delta)?;
        if d.base_version != self.version {
            return Err(SnapshotError::Base {
                base: d.base_version,
                held: self.version,
            });
        }
        if d.version <= self.version {
            return Err(SnapshotError::Decode(format!(
                "delta to version {} is not newer than its base {}",
                d.version, self.version
            )));
        }
        let rows = |f: usize| d.sections.0[f].iter().map(|r| &delta[r.clone()]);
        // Per table: the changed rows (id, bytes) as sent, and every id to drop from the base
        // (those removed and those replaced).
        let mut fresh: Vec<Vec<(&[u8], &[u8])>> = Vec::with_capacity(4);
        let mut gone: Vec<Set<&str>> = Vec::with_capacity(4);
        for (t, f) in TABLES.into_iter().enumerate() {
            let mut ids = Set::default();
            for id in rows(F_REMOVED[t]) {
                ids.insert(text(id)?);
            }
            let mut changed = Vec::with_capacity(d.sections.0[f].len());
            for row in rows(f) {
                let id = row_id(row)?;
                ids.insert(text(id)?);
                changed.push((id, row));
            }
            fresh.push(changed);
            gone.push(ids);
        }

        let (raw, sections, tables_in_order) = self.patched(&d, delta, &fresh, &gone)?;
        let decode_err = |e: prost::DecodeError| SnapshotError::Decode(e.to_string());

        let (orgs, org_by_name) = if gone[0].is_empty() {
            (self.orgs.clone(), self.org_by_name.clone())
        } else {
            let (mut orgs, mut by_name) = ((*self.orgs).clone(), (*self.org_by_name).clone());
            for id in &gone[0] {
                if let Some(o) = orgs.remove(*id)
                    && by_name.get(&o.name) == Some(&o.id)
                {
                    by_name.remove(&o.name);
                }
            }
            for (_, row) in &fresh[0] {
                let o = pb::Org::decode(*row).map_err(decode_err)?;
                by_name.insert(o.name.clone(), o.id.clone());
                let org = Org {
                    id: o.id.clone(),
                    name: o.name,
                };
                if orgs.insert(o.id.clone(), org).is_some() {
                    return Err(SnapshotError::Duplicate("org", o.id));
                }
            }
            (Arc::new(orgs), Arc::new(by_name))
        };

        let (projects, project_by_name) = if gone[1].is_empty() {
            (self.projects.clone(), self.project_by_name.clone())
        } else {
            // Shared ids and projects: the copies are of pointers. An org's names are copied
            // only when one of its projects changes.
            let (mut projects, mut by_name) =
                ((*self.projects).clone(), (*self.project_by_name).clone());
            for id in &gone[1] {
                if let Some(p) = projects.remove(*id)
                    && let Some(names) = by_name.get_mut(p.org_id.as_str())
                    && names.get(p.name.as_str()).is_some_and(|n| **n == *p.id)
                {
                    Arc::make_mut(names).remove(p.name.as_str());
                    if names.is_empty() {
                        by_name.remove(p.org_id.as_str());
                    }
                }
            }
            for (_, row) in &fresh[1] {
                add_project(&mut projects, &mut by_name, project_row(row, &orgs)?)?;
            }
            (Arc::new(projects), Arc::new(by_name))
        };
        // Rows taken over can only lose their owner when an org or project they may name was
        // removed or replaced (added ones change nothing for them): then every one is checked
        // again, as in a whole snapshot.
        let orgs_replaced = gone[0].iter().any(|id| self.orgs.contains_key(*id));
        let owners_replaced =
            orgs_replaced || gone[1].iter().any(|id| self.projects.contains_key(*id));
        if orgs_replaced && let Some(p) = projects.values().find(|p| !orgs.contains_key(&p.org_id))
        {
            return Err(SnapshotError::Dangling(
                format!("project {}", p.id),
                "org",
                p.org_id.clone(),
            ));
        }
        let dangling = |what: &dyn Fn() -> String, org_id: &str, project_id: Option<&str>| {
            unresolved(&orgs, &projects, what, org_id, project_id)
        };

        let (keys, key_ids) = if gone[2].is_empty() {
            (self.keys.clone(), self.key_ids.clone())
        } else {
            let (mut keys, mut key_ids) = ((*self.keys).clone(), (*self.key_ids).clone());
            for id in &gone[2] {
                if let Some(hash) = key_ids.remove(*id) {
                    keys.remove(&hash);
                }
            }
            let mut owner = |id: String| -> Arc<str> { Arc::from(id) };
            for (_, row) in &fresh[2] {
                let (hash, k) = api_key(row, &orgs, &projects, &mut owner)?;
                if key_ids.insert(Arc::from(k.id.as_str()), hash).is_some() {
                    return Err(SnapshotError::Duplicate("api key", k.id));
                }
                keys.insert(hash, Arc::new(k));
            }
            (Arc::new(keys), Arc::new(key_ids))
        };
        if owners_replaced {
            for k in keys.values() {
                let what = || format!("api key {}", k.id);
                if let Some(e) = dangling(&what, &k.org_id, k.project_id.as_deref()) {
                    return Err(e);
                }
            }
        }

        let (org_credentials, project_credentials, credential_count) = if gone[3].is_empty() {
            (
                self.org_credentials.clone(),
                self.project_credentials.clone(),
                self.credential_count,
            )
        } else {
            let mut by_org = (*self.org_credentials).clone();
            let mut by_project = (*self.project_credentials).clone();
            let mut count = self.credential_count;
            // The credentials dropped, by id (a changed one whose wire form is the same is
            // taken over), and the new lists of the owners whose lists change.
            let mut known: Map<&str, &Arc<Credential>> = Map::default();
            let mut org_lists: Lists = Map::default();
            let mut project_lists: Lists = Map::default();
            // The list an owner will have: what it had less the credentials gone.
            let list =
                |lists: &mut Lists, current: &Map<Arc<str>, Credentials>, owner: &str| -> usize {
                    if lists.contains_key(owner) {
                        return 0;
                    }
                    let had = current.get(owner).map_or(&[][..], |c| &c[..]);
                    let kept: Vec<_> = had
                        .iter()
                        .filter(|c| !gone[3].contains(c.id.as_str()))
                        .cloned()
                        .collect();
                    let dropped = had.len() - kept.len();
                    lists.insert(Arc::from(owner), kept);
                    dropped
                };
            for c in self.all_credentials() {
                if gone[3].contains(c.id.as_str()) {
                    known.insert(c.id.as_str(), c);
                    count -= match &c.project_id {
                        Some(p) => list(&mut project_lists, &by_project, p),
                        None => list(&mut org_lists, &by_org, &c.org_id),
                    };
                }
            }
            let mut seen = Set::default();
            for (_, row) in &fresh[3] {
                let cred = credential_row(row, key, &orgs, &projects, &known, &mut seen)?;
                count += 1;
                let (lists, current, owner) = match &cred.project_id {
                    Some(p) => (&mut project_lists, &by_project, p.as_str()),
                    None => (&mut org_lists, &by_org, cred.org_id.as_str()),
                };
                list(lists, current, owner);
                if let Some(l) = lists.get_mut(owner) {
                    l.push(cred);
                }
            }
            // Each changed owner's list in id order, as a whole snapshot (sorted by id) gives it.
            for (lists, map) in [(org_lists, &mut by_org), (project_lists, &mut by_project)] {
                for (owner, mut l) in lists {
                    if l.is_empty() {
                        map.remove(&owner);
                    } else {
                        l.sort_by(|a, b| a.id.cmp(&b.id));
                        map.insert(owner, l.into());
                    }
                }
            }
            (Arc::new(by_org), Arc::new(by_project), count)
        };
        if owners_replaced {
            for c in org_credentials
                .values()
                .chain(project_credentials.values())
                .flat_map(|c| c.iter())
            {
                let what = || format!("credential {}", c.id);
                if let Some(e) = dangling(&what, &c.org_id, c.project_id.as_deref()) {
                    return Err(e);
                }
            }
        }

        let catalog = match rows(F_CATALOG).next_back() {
            Some(json) => catalog(json)?,
            None => self.catalog.clone(),
        };
        let signing_keys = signing_keys(rows(F_SIGNING), key)?;
        Ok(Snapshot {
            version: d.version,
            created_at_ms: d.created_at_ms,
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
            raw: raw.into(),
            sections,
            tables_in_order,
        })
    }

    /// The new version's whole encoding: this snapshot's rows less those `gone`, merged in id
    /// order with the `fresh` ones, the delta's catalog (or this one's) and signing keys — the
    /// bytes the control plane's whole encoding of that version has, field for field — with
    /// where each field's entries lie in it, and which tables are known to be in order there.
    #[allow(clippy::type_complexity)]
    fn patched(
        &self,
        d: &Split,
        delta: &[u8],
        fresh: &[Vec<(&[u8], &[u8])>],
        gone: &[Set<&str>],
    ) -> Result<(Vec<u8>, Sections, [std::sync::OnceLock<bool>; 4]), SnapshotError> {
        let mut out = Vec::with_capacity(self.raw.len() + delta.len());
        let mut sections = Sections(vec![Vec::new(); F_LAST + 1]);
        let in_order: [std::sync::OnceLock<bool>; 4] = Default::default();
        if d.version != 0 {
            prost::encoding::uint64::encode(1, &d.version, &mut out);
        }
        if d.created_at_ms != 0 {
            prost::encoding::int64::encode(2, &d.created_at_ms, &mut out);
        }
        for (t, f) in TABLES.into_iter().enumerate() {
            let ranges = &mut sections.0[f];
            if self.put_table_by_runs(t, &fresh[t], &gone[t], &mut out, ranges)? {
                // Merged in order from rows in order: so is the result.
                let _ = in_order[t].set(true);
                continue;
            }
            let mut new = fresh[t].iter().peekable();
            for r in &self.sections.0[f] {
                let row = &self.raw[r.clone()];
                let id = row_id(row)?;
                while let Some((_, n)) = new.next_if(|(nid, _)| *nid < id) {
                    ranges.push(put(f, n, &mut out));
                }
                if !gone[t].contains(text(id)?) {
                    ranges.push(put(f, row, &mut out));
                }
            }
            for (_, n) in new {
                ranges.push(put(f, n, &mut out));
            }
        }
        let catalog = match d.sections.0[F_CATALOG].last() {
            Some(r) => &delta[r.clone()],
            None => self.sections.0[F_CATALOG]
                .last()
                .map_or(&[][..], |r| &self.raw[r.clone()]),
        };
        if !catalog.is_empty() {
            sections.0[F_CATALOG].push(put(F_CATALOG, catalog, &mut out));
        }
        for r in &d.sections.0[F_SIGNING] {
            sections.0[F_SIGNING].push(put(F_SIGNING, &delta[r.clone()], &mut out));
        }
        Ok((out, sections, in_order))
    }

    /// Table `t` as `patched` writes it, but with the runs of this snapshot's rows between the
    /// delta's changes copied whole rather than row by row (at 10,000 projects, writing the
    /// 80,000 rows one at a time — each one's id read, looked up among those gone, and copied —
    /// was most of a delta's apply). The changes are placed by binary search on the ids, so
    /// this needs the table's rows back to back and in strictly increasing id order (checked
    /// once per snapshot, `tables_in_order`) and `fresh` in strictly increasing id order;
    /// otherwise it writes nothing and returns false, and `patched` goes row by row. The bytes
    /// are the same either way.
    fn put_table_by_runs(
        &self,
        t: usize,
        fresh: &[(&[u8], &[u8])],
        gone: &Set<&str>,
        out: &mut Vec<u8>,
        ranges: &mut Vec<std::ops::Range<usize>>,
    ) -> Result<bool, SnapshotError> {
        let f = TABLES[t];
        let base = &self.sections.0[f];
        let raw = &self.raw[..];
        let id_at = |i: usize| row_id(&raw[base[i].clone()]);
        if !*self.tables_in_order[t].get_or_init(|| self.table_in_order(f)) {
            return Ok(false);
        }
        if fresh.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Ok(false);
        }
        // The first row whose id is not below `id`.
        let lower_bound = |id: &[u8]| -> Result<usize, SnapshotError> {
            let (mut lo, mut hi) = (0, base.len());
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if id_at(mid)? < id {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            Ok(lo)
        };
        // Rows dropped (removed or replaced), by position; new rows with the position they go
        // before (in `fresh`'s order, which is id order).
        let mut drops = Vec::with_capacity(gone.len());
        for id in gone {
            let i = lower_bound(id.as_bytes())?;
            if i < base.len() && id_at(i)? == id.as_bytes() {
                drops.push(i);
            }
        }
        drops.sort_unstable();
        let mut inserts = Vec::with_capacity(fresh.len());
        for (id, row) in fresh {
            inserts.push((lower_bound(id)?, *row));
        }
        // Rows `a..b` of this snapshot, with their prefixes, as one slice.
        let copy_run = |a: usize, b: usize, out: &mut Vec<u8>, ranges: &mut Vec<_>| {
            if a < b {
                let from = base[a].start - prefix_len(f, base[a].len());
                let at = out.len();
                out.extend_from_slice(&raw[from..base[b - 1].end]);
                ranges.extend(
                    base[a..b]
                        .iter()
                        .map(|r| r.start - from + at..r.end - from + at),
                );
            }
        };
        let (mut next, mut drops, mut inserts) = (0, drops.into_iter().peekable(), inserts.iter());
        let mut pending = inserts.next();
        loop {
            let stop = match (drops.peek(), pending) {
                (Some(&d), Some(&(i, _))) => d.min(i),
                (Some(&d), None) => d,
                (None, Some(&(i, _))) => i,
                (None, None) => break,
            };
            copy_run(next, stop, out, ranges);
            next = stop;
            // New rows placed here go before the row here (which, if its id is theirs, is
            // dropped: `gone` holds every id in `fresh`).
            while let Some(&(_, row)) = pending.filter(|(i, _)| *i == stop) {
                let r = put(f, row, out);
                ranges.push(r);
                pending = inserts.next();
            }
            if drops.next_if_eq(&stop).is_some() {
                next = stop + 1;
            }
        }
        copy_run(next, base.len(), out, ranges);
        Ok(true)
    }

    /// Whether table field `f`'s rows lie back to back in `raw` (each right after the one
    /// before and its own prefix) with strictly increasing ids, as the control plane writes
    /// them and `patched` keeps them.
    fn table_in_order(&self, f: usize) -> bool {
        let base = &self.sections.0[f];
        let raw = &self.raw[..];
        // The first row's prefix as `put` writes it (the shortest encoding): the runs are
        // copied from there. After it, back to back leaves room for no other prefix.
        if let Some(r) = base.first() {
            let mut prefix = Vec::with_capacity(16);
            put_prefix(f, r.len(), &mut prefix);
            if r.start < prefix.len() || raw[r.start - prefix.len()..r.start] != prefix[..] {
                return false;
            }
        }
        let mut prev: Option<&[u8]> = None;
        for (i, r) in base.iter().enumerate() {
            if i > 0 && r.start != base[i - 1].end + prefix_len(f, r.len()) {
                return false;
            }
            let Ok(id) = row_id(&raw[r.clone()]) else {
                return false;
            };
            if prev.is_some_and(|p| p >= id) {
                return false;
            }
            prev = Some(id);
        }
        true
    }

    /// The whole encoding this snapshot was built from (what the node persists).
    pub fn raw(&self) -> &bytes::Bytes {
        &self.raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealKey {
        SealKey::from_node_token("node-token-for-tests", crate::seal::PURPOSE_SNAPSHOT)
    }

    fn cred(id: &str, org: &str, project: &str, secret: &str) -> pb::Credential {
        let payload = serde_json::json!({ "secret": secret }).to_string();
        pb::Credential {
            id: id.into(),
            org_id: org.into(),
            project_id: project.into(),
            name: id.into(),
            r#type: "openai".into(),
            metadata_json: "{}".into(),
            sealed_secret: key().seal(payload.as_bytes(), id.as_bytes()),
            updated_at_ms: 1,
        }
    }

    fn api_key(id: &str, org: &str, project: &str, n: u8) -> pb::ApiKey {
        pb::ApiKey {
            id: id.into(),
            org_id: org.into(),
            project_id: project.into(),
            role: "proxy".into(),
            key_hash: vec![n; 32],
            name: id.into(),
        }
    }

    fn project(id: &str, org: &str) -> pb::Project {
        pb::Project {
            id: id.into(),
            org_id: org.into(),
            name: format!("name-of-{id}"),
        }
    }

    fn org(id: &str) -> pb::Org {
        pb::Org {
            id: id.into(),
            name: format!("name-of-{id}"),
        }
    }

    fn signing(id: &str) -> pb::SigningKey {
        pb::SigningKey {
            id: id.into(),
            sealed_key: key().seal(&[9; 32], id.as_bytes()),
            active: true,
        }
    }

    fn base() -> pb::Snapshot {
        pb::Snapshot {
            version: 10,
            created_at_ms: 1_000,
            orgs: vec![org("o1"), org("o2")],
            projects: vec![project("p1", "o1"), project("p2", "o2")],
            api_keys: vec![api_key("k1", "o1", "p1", 1), api_key("k2", "o2", "", 2)],
            credentials: vec![
                cred("c1", "o1", "p1", "sk-1"),
                cred("c2", "o1", "", "sk-2"),
                cred("c3", "o2", "p2", "sk-3"),
            ],
            catalog_json: llm::catalog::BUILTIN_JSON.as_bytes().to_vec(),
            signing_keys: vec![signing("s1")],
        }
    }

    /// What the control plane sends for `a` → `b`: rows of `b` not equal in `a`, ids of `a`
    /// not in `b`, the whole signing key list, no catalog (unchanged).
    fn delta(a: &pb::Snapshot, b: &pb::Snapshot) -> pb::SnapshotDelta {
        fn diff<T: PartialEq + Clone>(
            a: &[T],
            b: &[T],
            id: impl Fn(&T) -> &String,
        ) -> (Vec<T>, Vec<String>) {
            let changed = b.iter().filter(|x| !a.contains(x)).cloned().collect();
            let removed = a
                .iter()
                .filter(|x| !b.iter().any(|y| id(y) == id(x)))
                .map(|x| id(x).clone())
                .collect();
            (changed, removed)
        }
        let (orgs, removed_orgs) = diff(&a.orgs, &b.orgs, |x| &x.id);
        let (projects, removed_projects) = diff(&a.projects, &b.projects, |x| &x.id);
        let (api_keys, removed_api_keys) = diff(&a.api_keys, &b.api_keys, |x| &x.id);
        let (credentials, removed_credentials) = diff(&a.credentials, &b.credentials, |x| &x.id);
        pb::SnapshotDelta {
            version: b.version,
            created_at_ms: b.created_at_ms,
            orgs,
            projects,
            api_keys,
            credentials,
            catalog_json: Vec::new(),
            signing_keys: b.signing_keys.clone(),
            base_version: a.version,
            removed_orgs,
            removed_projects,
            removed_api_keys,
            removed_credentials,
        }
    }

    /// Everything a node serves from, in a stable order (secrets included: equal, not shown).
    fn content(s: &Snapshot) -> Vec<String> {
        let mut out = vec![format!("v{} at {}", s.version, s.created_at_ms)];
        let mut part = |mut v: Vec<String>| {
            v.sort();
            out.extend(v)
        };
        part(s.orgs.values().map(|o| format!("org {o:?}")).collect());
        part(
            s.org_by_name
                .iter()
                .map(|(n, id)| format!("org name {n} {id}"))
                .collect(),
        );
        part(
            s.projects
                .values()
                .map(|p| format!("project {p:?}"))
                .collect(),
        );
        part(
            s.project_by_name
                .iter()
                .flat_map(|(org, names)| {
                    names
                        .iter()
                        .map(move |(n, id)| format!("project name {:?} {id}", (org, n)))
                })
                .collect(),
        );
        part(
            s.keys
                .iter()
                .map(|(h, k)| format!("key {h:?} {k:?}"))
                .collect(),
        );
        part(
            s.key_ids
                .iter()
                .map(|(id, h)| format!("key id {id} {h:?}"))
                .collect(),
        );
        for (what, lists) in [
            ("org", &s.org_credentials),
            ("project", &s.project_credentials),
        ] {
            part(
                lists
                    .iter()
                    .map(|(owner, list)| {
                        let creds: Vec<_> = list
                            .iter()
                            .map(|c| format!("{} {} {}", c.id, c.secret.expose(), c.fingerprint))
                            .collect();
                        format!("{what} {owner}: {creds:?}")
                    })
                    .collect(),
            );
        }
        out.push(format!("{} credentials", s.credential_count));
        out.push(format!("{:?}", s.signing_keys));
        out
    }

    fn whole(p: &pb::Snapshot) -> Snapshot {
        Snapshot::build(p.encode_to_vec().into(), &key(), None).unwrap()
    }

    fn apply(s: &Snapshot, d: &pb::SnapshotDelta) -> Result<Snapshot, SnapshotError> {
        s.apply_delta(&d.encode_to_vec(), &key())
    }

    #[test]
    fn a_delta_gives_what_the_whole_snapshot_gives() {
        let a = base();
        let mut b = a.clone();
        b.version = 12;
        b.created_at_ms = 2_000;
        b.orgs.push(org("o3"));
        b.projects.push(project("p3", "o3"));
        b.api_keys[0].name = "renamed".into();
        b.api_keys.remove(1);
        b.api_keys.push(api_key("k3", "o3", "p3", 3));
        b.credentials[0] = cred("c1", "o1", "p1", "sk-1-rotated");
        b.credentials.remove(1);
        b.credentials.insert(0, cred("c0", "o1", "p1", "sk-0"));
        b.credentials.push(cred("c4", "o3", "", "sk-4"));
        b.credentials.push(cred("c5", "o3", "p3", "sk-5"));
        b.signing_keys.push(signing("s2"));
        let sa = whole(&a);
        let d = delta(&a, &b);
        let sd = apply(&sa, &d).unwrap();
        assert_eq!(sd.raw().as_ref(), b.encode_to_vec().as_slice());
        assert_eq!(content(&sd), content(&whole(&b)));
        // In id order within their owner, as from a whole snapshot.
        let p1: Vec<_> = sd
            .project_credentials("p1")
            .iter()
            .map(|c| c.secret.expose())
            .collect();
        assert_eq!(p1, ["sk-0", "sk-1-rotated"]);
        assert!(sd.org_credentials("o1").is_empty());
        // The unchanged credential is the same one, not opened again.
        assert!(Arc::ptr_eq(
            &sa.project_credentials("p2")[0],
            &sd.project_credentials("p2")[0]
        ));
        // The delta is the changed rows, not the whole snapshot (the catalog alone is most of it).
        assert!(d.encode_to_vec().len() * 2 < b.encode_to_vec().len());

        // Only a key changes: every other part is taken over as it is.
        let mut c = b.clone();
        c.version = 13;
        c.api_keys.push(api_key("k4", "o1", "", 4));
        let sc = apply(&sd, &delta(&b, &c)).unwrap();
        // A credential joins an owner ahead of the ones it had (ids sort before theirs).
        let mut c2 = c.clone();
        c2.version = 14;
        c2.credentials.insert(0, cred("b9", "o1", "p1", "sk-b9"));
        let sc2 = apply(&sc, &delta(&c, &c2)).unwrap();
        assert_eq!(content(&sc2), content(&whole(&c2)));
        assert_eq!(sc2.raw().as_ref(), c2.encode_to_vec().as_slice());
        assert_eq!(content(&sc), content(&whole(&c)));
        assert_eq!(sc.raw().as_ref(), c.encode_to_vec().as_slice());
        assert!(Arc::ptr_eq(&sd.orgs, &sc.orgs));
        assert!(Arc::ptr_eq(&sd.projects, &sc.projects));
        assert!(Arc::ptr_eq(
            &sd.project_credentials,
            &sc.project_credentials
        ));
        assert!(Arc::ptr_eq(&sd.catalog, &sc.catalog));

        // A whole org goes (its project, key and credentials with it), and the next whole
        // snapshot still takes over what the delta-made one holds, byte for byte.
        let mut e = c.clone();
        e.version = 20;
        e.orgs.retain(|o| o.id != "o3");
        e.projects.retain(|p| p.org_id != "o3");
        e.api_keys.retain(|k| k.org_id != "o3");
        e.credentials.retain(|x| x.org_id != "o3");
        let se = apply(&sc, &delta(&c, &e)).unwrap();
        assert_eq!(content(&se), content(&whole(&e)));
        assert_eq!(se.credential_count, 3);
        let mut f = e.clone();
        f.version = 21;
        let sf = Snapshot::build(f.encode_to_vec().into(), &key(), Some(&se)).unwrap();
        assert!(Arc::ptr_eq(&se.keys, &sf.keys));
        assert!(Arc::ptr_eq(
            &se.project_credentials,
            &sf.project_credentials
        ));
    }

    /// Where each field's entries lie, as splitting the snapshot's bytes again finds them.
    fn sections_match_raw(s: &Snapshot) {
        assert_eq!(s.sections.0, split(&s.raw).unwrap().sections.0);
    }

    /// Up to `max - 1` random changes to `rows`: an id among `0..ids` (`prefix` and three
    /// digits) is removed or changed (`change`) if there, added (`add`) if not. The rows are
    /// then in id order, as the control plane sends every part.
    #[allow(clippy::too_many_arguments)]
    fn change_some<T>(
        rng: &mut rand::rngs::StdRng,
        rows: &mut Vec<T>,
        max: u32,
        ids: usize,
        prefix: char,
        id: impl Fn(&T) -> &String,
        change: impl Fn(&mut T, usize),
        add: impl Fn(&str, usize) -> T,
    ) {
        use rand::Rng;
        for _ in 0..rng.random_range(0..max) {
            let i = rng.random_range(0..ids);
            let name = format!("{prefix}{i:03}");
            match rows.iter().position(|r| *id(r) == name) {
                Some(at) if rng.random_bool(0.5) => {
                    rows.remove(at);
                }
                Some(at) => change(&mut rows[at], i),
                None => rows.push(add(&name, i)),
            }
        }
        rows.sort_by(|x, y| id(x).cmp(id(y)));
    }

    /// Random changes to tables of a few dozen rows, one delta after another: applied from a
    /// snapshot whose tables are in order (runs copied whole) and from the same snapshot
    /// marked as not known to be (row by row), the result is the same — bytes, sections and
    /// what is served — and equals the whole encoding of that version. Removals and
    /// replacements fall at the tables' first and last rows too.
    #[test]
    fn runs_copied_whole_give_the_bytes_row_by_row_gives() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let mut a = base();
        a.orgs = vec![org("o1")];
        a.projects = (0..40)
            .step_by(2)
            .map(|i| project(&format!("p{i:03}"), "o1"))
            .collect();
        a.api_keys = (0..200)
            .step_by(4)
            .map(|i| api_key(&format!("k{i:03}"), "o1", "", i as u8))
            .collect();
        a.credentials = (0..60)
            .step_by(3)
            .map(|i| cred(&format!("c{i:03}"), "o1", "", &format!("sk-{i}")))
            .collect();
        let mut held = whole(&a);
        for round in 0..40 {
            let mut b = a.clone();
            b.version += 1;
            change_some(
                &mut rng,
                &mut b.projects,
                4,
                40,
                'p',
                |p| &p.id,
                |p, i| {
                    // Names stay unique in their org, as the control plane keeps them.
                    p.name = format!("renamed-{round}-{i}")
                },
                |id, _| project(id, "o1"),
            );
            change_some(
                &mut rng,
                &mut b.api_keys,
                6,
                200,
                'k',
                |k| &k.id,
                |k, _| k.name = format!("renamed-{round}"),
                |id, i| api_key(id, "o1", "", i as u8),
            );
            change_some(
                &mut rng,
                &mut b.credentials,
                3,
                60,
                'c',
                |c| &c.id,
                |c, _| *c = cred(&c.id.clone(), "o1", "", &format!("sk-{round}")),
                |id, _| cred(id, "o1", "", "sk-new"),
            );
            let d = delta(&a, &b);
            let by_runs = apply(&held, &d).unwrap();
            let row_by_row_base = whole(&a);
            for known in &row_by_row_base.tables_in_order {
                known.set(false).unwrap();
            }
            let by_rows = apply(&row_by_row_base, &d).unwrap();
            assert_eq!(by_runs.raw(), by_rows.raw(), "round {round}");
            assert_eq!(by_runs.raw().as_ref(), b.encode_to_vec().as_slice());
            sections_match_raw(&by_runs);
            sections_match_raw(&by_rows);
            assert_eq!(content(&by_runs), content(&whole(&b)), "round {round}");
            for p in &b.projects {
                let found = by_runs.project_named(&p.org_id, &p.name).map(|x| &x.id);
                assert_eq!(found, Some(&p.id));
            }
            assert!(by_runs.project_named("o1", "no-such-project").is_none());
            assert!(by_runs.project_named("o9", &b.projects[0].name).is_none());
            // The runs were taken (the tables were in order and stay so).
            assert!(
                by_runs
                    .tables_in_order
                    .iter()
                    .all(|t| t.get() == Some(&true))
            );
            (a, held) = (b, by_runs);
        }
    }

    /// Rows out of id order (no control plane sends them so, but a snapshot may hold anything
    /// that decodes): the delta is applied row by row, as before, with the same result.
    #[test]
    fn a_table_out_of_order_is_patched_row_by_row() {
        let mut a = base();
        a.credentials.reverse();
        let sa = whole(&a);
        let mut b = a.clone();
        b.version = 11;
        b.credentials.push(cred("c9", "o1", "", "sk-9"));
        let sb = apply(&sa, &delta(&a, &b)).unwrap();
        assert_eq!(sa.tables_in_order[3].get(), Some(&false));
        assert_eq!(sb.raw().as_ref(), b.encode_to_vec().as_slice());
        sections_match_raw(&sb);
        assert_eq!(content(&sb), content(&whole(&b)));
    }

    #[test]
    fn a_delta_that_does_not_fit_is_refused_whole() {
        let a = base();
        let sa = whole(&a);
        let next = |change: &dyn Fn(&mut pb::Snapshot)| {
            let mut b = a.clone();
            b.version = 11;
            change(&mut b);
            delta(&a, &b)
        };
        // Against another version than the one held.
        let mut d = next(&|_| {});
        d.base_version = 9;
        assert_eq!(
            apply(&sa, &d).unwrap_err(),
            SnapshotError::Base { base: 9, held: 10 }
        );
        // Not newer than its base.
        let mut d = next(&|_| {});
        d.version = 10;
        assert!(matches!(apply(&sa, &d), Err(SnapshotError::Decode(_))));
        // An org removed while its project, key and credential stay: the rows taken over are
        // checked against it.
        let mut d = next(&|_| {});
        d.removed_orgs.push("o2".into());
        assert!(matches!(apply(&sa, &d), Err(SnapshotError::Dangling(..))));
        // A new project in an org that is not there (no org changed: the check is the new
        // row's own).
        let d = next(&|b| b.projects.push(project("p9", "o-gone")));
        assert_eq!(
            apply(&sa, &d).unwrap_err(),
            SnapshotError::Dangling("project p9".into(), "org", "o-gone".into())
        );
        // A new key in a project that is not there.
        let d = next(&|b| b.api_keys.push(api_key("k9", "o1", "p-gone", 9)));
        assert_eq!(
            apply(&sa, &d).unwrap_err(),
            SnapshotError::Dangling("api key k9".into(), "project", "p-gone".into())
        );
        // The same key twice.
        let mut d = next(&|b| b.api_keys.push(api_key("k9", "o1", "p1", 9)));
        d.api_keys.push(d.api_keys[0].clone());
        assert_eq!(
            apply(&sa, &d).unwrap_err(),
            SnapshotError::Duplicate("api key", "k9".into())
        );
        // A credential that does not open under this node's key.
        let mut d = next(&|b| b.credentials.push(cred("c9", "o1", "p1", "sk-9")));
        let last = d.credentials[0].sealed_secret.len() - 1;
        d.credentials[0].sealed_secret[last] ^= 1;
        assert_eq!(
            apply(&sa, &d).unwrap_err(),
            SnapshotError::Unseal("c9".into())
        );
        // Cut short (into the signing key, the last field before the base version).
        let bytes = next(&|b| b.orgs.push(org("o9"))).encode_to_vec();
        assert!(matches!(
            sa.apply_delta(&bytes[..bytes.len() - 5], &key()),
            Err(SnapshotError::Decode(_))
        ));
        // The snapshot held is untouched by all of this.
        assert_eq!(content(&sa), content(&whole(&a)));
    }
}

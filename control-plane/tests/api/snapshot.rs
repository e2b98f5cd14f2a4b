//! The snapshot builder reads only the rows changed since its previous build (`config_changes`,
//! filled by triggers). Whatever the sequence of changes — creations, renames, revocations,
//! secret changes, deletions that cascade, whole organizations going, concurrent writers — the
//! snapshot it publishes must serve exactly what a build from scratch serves: a change it
//! missed would leave a revoked key working or a deleted credential in use.

use std::time::Duration;

use std::sync::Arc;

use control_plane::service::snapshot::{
    BuiltSnapshot, build_from_scratch, build_reading_everything_on,
};
use data_plane::seal::{PURPOSE_SNAPSHOT, SealKey};
use data_plane::snapshot::Snapshot;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::TestApp;

/// A node following the published snapshots the way a real one does: a whole snapshot first,
/// then the delta from the version it holds.
struct Node {
    key: SealKey,
    /// The version it holds, and the build it came from.
    held: Option<(Snapshot, Arc<BuiltSnapshot>)>,
    deltas: u32,
}

impl Node {
    fn new(app: &TestApp) -> Node {
        let token = app.config.node_token.as_ref().unwrap().expose();
        Node {
            key: SealKey::from_node_token(token, PURPOSE_SNAPSHOT),
            held: None,
            deltas: 0,
        }
    }

    /// Moves to `to` by the delta from the version held (or the whole snapshot, when `to` has
    /// none from it) and checks that the result is, byte for byte, `to`'s whole encoding.
    async fn follow(&mut self, to: &Arc<BuiltSnapshot>, round: &str) {
        let whole = to.encode_for(&self.key).await;
        let next = match self.held.take() {
            Some((held, _)) if held.version == to.version => held,
            Some((held, built)) => match to.delta_for(&self.key, built.mark()).await {
                Some(d) => {
                    let next = held.apply_delta(&d, &self.key).unwrap_or_else(|e| {
                        panic!(
                            "{round}: the delta from v{} does not apply: {e}",
                            held.version
                        )
                    });
                    assert!(
                        next.raw() == &whole,
                        "{round}: the delta from v{} does not give the whole snapshot of v{} \
                         ({} bytes against {})",
                        held.version,
                        to.version,
                        next.raw().len(),
                        whole.len()
                    );
                    self.deltas += 1;
                    next
                }
                None => Snapshot::build(whole, &self.key, None).unwrap(),
            },
            None => Snapshot::build(whole, &self.key, None).unwrap(),
        };
        self.held = Some((next, to.clone()));
    }
}

/// Waits until the builder has published the database's current version, then checks it
/// against a build from scratch, and that `node` gets to it by a delta (and that a build
/// reading every table, as the periodic full read does, gives a delta from the node's version
/// too). Returns whether the published build read only changes.
async fn published_matches_scratch(app: &TestApp, node: &mut Node, round: &str) -> bool {
    let st = &app.running.as_ref().unwrap().state;
    for _ in 0..1000 {
        let want = control_plane::db::config_version(st.db()).await.unwrap() as u64;
        if let Some(s) = st.snapshots().current().filter(|s| s.version == want) {
            let scratch = build_from_scratch(st).await.unwrap();
            assert_eq!(
                scratch.version, s.version,
                "{round}: a write happened meanwhile"
            );
            let diff = s.differences(&scratch);
            assert!(
                diff.is_empty(),
                "{round}: the published snapshot differs from a build from scratch:\n{}",
                diff.join("\n")
            );
            assert_eq!(
                s.encoded_bytes(),
                scratch.encoded_bytes(),
                "{round}: the size worked out build by build differs from a build from scratch's"
            );
            if let Some((held, built)) = &node.held {
                let everything = build_reading_everything_on(st, built.clone())
                    .await
                    .unwrap();
                assert_eq!(
                    everything.version, s.version,
                    "{round}: a write happened meanwhile"
                );
                let mut other = Node {
                    key: node.key.clone(),
                    held: Some((
                        Snapshot::build(held.raw().clone(), &node.key, None).unwrap(),
                        built.clone(),
                    )),
                    deltas: 0,
                };
                other
                    .follow(&Arc::new(everything), &format!("{round} (read everything)"))
                    .await;
                assert_eq!(
                    other.deltas, 1,
                    "{round}: no delta after reading everything"
                );
            }
            node.follow(&s, round).await;
            return !s.read_everything();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{round}: the snapshot builder did not catch up");
}

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

async fn created(app: &TestApp, path: &str, body: Value) -> String {
    let (s, v) = app.post(path, body).await;
    assert_eq!(s, StatusCode::CREATED, "POST {path}: {v}");
    id(&v)
}

async fn gone(app: &TestApp, path: &str) {
    let (s, v) = app.delete(path).await;
    assert!(s.is_success(), "DELETE {path}: {s} {v}");
}

async fn project_with_keys_and_credentials(app: &TestApp, org: &str, name: &str) -> String {
    let p = created(
        app,
        &format!("/api/v1/orgs/{org}/projects"),
        json!({"name": name}),
    )
    .await;
    for k in 0..3 {
        created(
            app,
            &format!("/api/v1/orgs/{org}/api-keys"),
            json!({"name": format!("{name}-{k}"), "role": "proxy", "project_id": p}),
        )
        .await;
    }
    for ty in ["openai", "anthropic"] {
        created(
            app,
            &format!("/api/v1/projects/{p}/providers"),
            json!({"type": ty, "name": format!("{name}-{ty}"), "secret": format!("sk-{name}-{ty}-1"),
                "metadata": {"api_base": "https://api.example.com/v1"}}),
        )
        .await;
    }
    p
}

#[tokio::test]
async fn the_published_snapshot_always_equals_a_build_from_scratch() {
    let app = TestApp::spawn().await;
    let org = app.org_id.clone();
    let mut incremental = 0;
    let mut node = Node::new(&app);
    published_matches_scratch(&app, &mut node, "start").await;

    // Projects with keys and credentials.
    let mut projects = Vec::new();
    for i in 0..4 {
        projects.push(project_with_keys_and_credentials(&app, &org, &format!("p{i}")).await);
        incremental +=
            published_matches_scratch(&app, &mut node, &format!("project {i}")).await as u32;
    }

    // An org-level key and credential, then a rename of a project.
    let org_key = created(
        &app,
        &format!("/api/v1/orgs/{org}/api-keys"),
        json!({"name": "org-wide", "role": "proxy"}),
    )
    .await;
    let org_cred = created(
        &app,
        &format!("/api/v1/orgs/{org}/providers"),
        json!({"type": "openai", "name": "org-openai", "secret": "sk-org-1"}),
    )
    .await;
    let (s, v) = app
        .patch(
            &format!("/api/v1/projects/{}", projects[0]),
            json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    incremental += published_matches_scratch(&app, &mut node, "rename").await as u32;

    // A revoked key leaves; a credential's secret and metadata change; a credential goes.
    gone(&app, &format!("/api/v1/api-keys/{org_key}")).await;
    incremental += published_matches_scratch(&app, &mut node, "revoke").await as u32;
    let (s, v) = app
        .patch(
            &format!("/api/v1/providers/{org_cred}"),
            json!({"secret": "sk-org-2", "metadata": {"api_base": "https://other.example.com/v1"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    incremental += published_matches_scratch(&app, &mut node, "secret change").await as u32;
    let (_, creds) = app
        .get(&format!("/api/v1/projects/{}/providers", projects[1]))
        .await;
    let cred = creds
        .as_array()
        .and_then(|a| a.iter().find(|c| c["project_id"] == json!(projects[1])))
        .map(id)
        .unwrap_or_else(|| panic!("no project credential in {creds}"));
    gone(&app, &format!("/api/v1/providers/{cred}")).await;
    incremental += published_matches_scratch(&app, &mut node, "credential deleted").await as u32;

    // A project's deletion takes its keys and credentials with it (cascade).
    gone(&app, &format!("/api/v1/projects/{}", projects[2])).await;
    incremental += published_matches_scratch(&app, &mut node, "project deleted").await as u32;

    // A whole organization: created with a project, then deleted.
    let (other, other_key) = app.other_org("other").await;
    let (s, v) = app
        .send(
            Method::POST,
            &format!("/api/v1/orgs/{other}/projects"),
            Some(&other_key),
            Some(json!({"name": "theirs"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let p = id(&v);
    let (s, v) = app
        .send(
            Method::POST,
            &format!("/api/v1/projects/{p}/providers"),
            Some(&other_key),
            Some(json!({"type": "openai", "name": "theirs", "secret": "sk-theirs"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    incremental += published_matches_scratch(&app, &mut node, "other org").await as u32;
    let admin = app.login_admin().await;
    let (s, v) = admin
        .send(Method::DELETE, &format!("/api/v1/orgs/{other}"), None)
        .await;
    assert!(s.is_success(), "deleting the org: {s} {v}");
    incremental += published_matches_scratch(&app, &mut node, "org deleted").await as u32;

    // Concurrent writers: transactions commit in whatever order they get to.
    let writers = (0..6).map(|t| {
        let (app, org, project) = (&app, &org, &projects[3]);
        async move {
            for i in 0..8 {
                let k = created(
                    app,
                    &format!("/api/v1/orgs/{org}/api-keys"),
                    json!({"name": format!("c{t}-{i}"), "role": "proxy", "project_id": project}),
                )
                .await;
                if i % 3 == 0 {
                    gone(app, &format!("/api/v1/api-keys/{k}")).await;
                }
            }
        }
    });
    futures_util::future::join_all(writers).await;
    incremental += published_matches_scratch(&app, &mut node, "concurrent writers").await as u32;

    // The builder did read only changes for most of these (each check waits for it, so every
    // round's build follows a recent one); were it always reading everything, this test would
    // not be testing the incremental path.
    assert!(
        incremental >= 8,
        "only {incremental} of 12 published builds read only the changes"
    );
    // And the node followed them by deltas (all but a round whose builds were more than
    // `STEPS_KEPT` apart).
    assert!(
        node.deltas >= 11,
        "only {} of 12 rounds by a delta",
        node.deltas
    );
}

/// The check itself can fail: two builds of different configurations differ.
#[tokio::test]
async fn differences_names_what_a_snapshot_lacks() {
    let app = TestApp::spawn().await;
    let st = &app.running.as_ref().unwrap().state;
    let before: BuiltSnapshot = build_from_scratch(st).await.unwrap();
    created(
        &app,
        &format!("/api/v1/orgs/{}/api-keys", app.org_id),
        json!({"name": "new", "role": "proxy"}),
    )
    .await;
    let after = build_from_scratch(st).await.unwrap();
    let diff = before.differences(&after);
    assert_eq!(diff.len(), 1, "{diff:?}");
    assert!(diff[0].starts_with("api key ") && diff[0].ends_with("only in the other"));
}

/// A delta is made only from the very build a stream sent, not from another build of the same
/// version (after a database restore lowered the version, a new chain of builds reuses the
/// numbers of an older one, whose content a node may still hold).
#[tokio::test]
async fn a_delta_starts_only_from_the_build_that_was_sent() {
    let app = TestApp::spawn().await;
    let st = &app.running.as_ref().unwrap().state;
    let node = Node::new(&app);
    let sent = Arc::new(build_from_scratch(st).await.unwrap());
    let same_version = build_from_scratch(st).await.unwrap();
    assert_eq!(sent.version, same_version.version);
    created(
        &app,
        &format!("/api/v1/orgs/{}/api-keys", app.org_id),
        json!({"name": "new", "role": "proxy"}),
    )
    .await;
    let next = Arc::new(build_reading_everything_on(st, sent.clone()).await.unwrap());
    assert!(next.version > sent.version);
    assert!(next.delta_for(&node.key, sent.mark()).await.is_some());
    assert!(
        next.delta_for(&node.key, same_version.mark())
            .await
            .is_none()
    );
}

/// Housekeeping deletes change records older than a day and keeps the recent ones.
#[tokio::test]
async fn old_change_records_are_pruned_and_recent_ones_kept() {
    let app = TestApp::spawn().await;
    let st = &app.running.as_ref().unwrap().state;
    let pool = st.db().pool();
    let count = || async {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM config_changes")
            .fetch_one(pool)
            .await
            .unwrap();
        sqlx::Row::try_get::<i64, _>(&row, "n").unwrap()
    };
    let recent = count().await;
    assert!(
        recent > 0,
        "bootstrap's org, project and key left change records"
    );
    sqlx::query(
        "INSERT INTO config_changes (tbl, row_id, stamp, at) VALUES ('orgs', 'old', 0, 1000)",
    )
    .execute(pool)
    .await
    .unwrap();
    assert_eq!(count().await, recent + 1);
    control_plane::service::housekeeping::prune_config_changes(st).await;
    assert_eq!(count().await, recent, "only the day-old record went");
}

/// `aiproxy_snapshot_bytes` is the published snapshot's encoded size (without its sealed
/// secrets), which each build works out from the previous one's, and follows the configuration
/// as it grows.
#[tokio::test]
async fn the_snapshot_size_metric_follows_the_published_snapshot() {
    let app = TestApp::spawn().await;
    let st = &app.running.as_ref().unwrap().state;
    let node = Node::new(&app);
    let scraped = || async {
        let (s, m) = app.send(Method::GET, "/metrics", None, None).await;
        assert_eq!(s, StatusCode::OK);
        let m = m.as_str().unwrap_or_default().to_string();
        m.lines()
            .find_map(|l| l.strip_prefix("aiproxy_snapshot_bytes "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no aiproxy_snapshot_bytes in {m}"))
    };
    let published = |want: u64| async move {
        for _ in 0..1000 {
            if let Some(s) = st.snapshots().current()
                && s.version >= want
            {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the builder did not publish version {want}");
    };
    let version = control_plane::db::config_version(st.db()).await.unwrap() as u64;
    let first = published(version).await;
    let before = scraped().await;
    assert_eq!(before, first.encoded_bytes() as u64);
    let whole = first.encode_for(&node.key).await;
    assert!(
        before > 0 && before <= whole.len() as u64,
        "{before} of {}",
        whole.len()
    );

    project_with_keys_and_credentials(&app, &app.org_id, "grown").await;
    let version = control_plane::db::config_version(st.db()).await.unwrap() as u64;
    let grown = published(version).await;
    let after = scraped().await;
    assert_eq!(after, grown.encoded_bytes() as u64);
    assert!(after > before, "{after} after growing, {before} before");
}

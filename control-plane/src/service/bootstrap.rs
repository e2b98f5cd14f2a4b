//! First start on an empty database: organization `default` with project `default`, an instance
//! admin, the bootstrap API key and a temporary-credential signing key. Restarts on the same
//! database create nothing twice.

use crate::crypto::{password, tokens};
use crate::db::{self, api_keys::ApiKeyRow, orgs::OrgRow, projects::ProjectRow, users::UserRow};
use crate::domain::{ApiKeyId, OrgId, ProjectId, UserId};
use crate::state::AppState;

/// What bootstrap generated and must be shown once (standalone prints it).
#[derive(Debug, Default)]
pub struct Generated {
    pub admin_email: Option<String>,
    pub admin_password: Option<String>,
    pub api_key: Option<String>,
}

/// How to treat a missing bootstrap admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Generate an admin password and an admin API key, to print once.
    Standalone,
    /// Only what the configuration asks for.
    Serve,
}

pub async fn run(st: &AppState, mode: Mode) -> Result<Generated, String> {
    let db = st.db();
    let orgs = db::orgs::count(db.pool())
        .await
        .map_err(|e| e.to_string())?;
    let users = db::users::count(db.pool())
        .await
        .map_err(|e| e.to_string())?;
    let mut generated = Generated::default();
    if orgs > 0 || users > 0 {
        return Ok(generated);
    }
    let cfg = st.config();
    let now = st.now_ms();
    let mut tx = db.begin().await.map_err(|e| e.to_string())?;
    let org = OrgRow {
        id: OrgId::generate().0,
        name: "default".into(),
        created_at: now,
        updated_at: now,
    };
    db::orgs::insert(&mut *tx, &org)
        .await
        .map_err(|e| e.to_string())?;
    db::projects::insert(
        &mut *tx,
        &ProjectRow {
            id: ProjectId::generate().0,
            org_id: org.id.clone(),
            name: "default".into(),
            created_at: now,
            updated_at: now,
        },
    )
    .await
    .map_err(|e| e.to_string())?;

    let admin = match (&cfg.bootstrap_admin_email, &cfg.bootstrap_admin_password) {
        (Some(email), Some(pw)) => {
            let email = crate::domain::names::email(email)
                .map_err(|e| format!("AIPROXY_BOOTSTRAP_ADMIN_EMAIL: {}", e.message))?;
            password::check_policy(pw.expose(), &email)
                .map_err(|e| format!("AIPROXY_BOOTSTRAP_ADMIN_PASSWORD: {e}"))?;
            Some((email, pw.expose().to_string(), false))
        }
        (Some(_), None) => return Err(
            "AIPROXY_BOOTSTRAP_ADMIN_PASSWORD: required when AIPROXY_BOOTSTRAP_ADMIN_EMAIL is set"
                .into(),
        ),
        (None, Some(_)) => return Err(
            "AIPROXY_BOOTSTRAP_ADMIN_EMAIL: required when AIPROXY_BOOTSTRAP_ADMIN_PASSWORD is set"
                .into(),
        ),
        (None, None) if mode == Mode::Standalone => Some((
            "admin@localhost".to_string(),
            tokens::random_token(18),
            true,
        )),
        (None, None) => None,
    };
    if let Some((email, pw, was_generated)) = admin {
        let hash = password::hash(&pw)?;
        let user = UserRow {
            id: UserId::generate().0,
            email: email.clone(),
            password_hash: Some(hash),
            instance_admin: true,
            failed_logins: 0,
            locked_until: 0,
            created_at: now,
        };
        db::users::insert(&mut *tx, &user, None)
            .await
            .map_err(|e| e.to_string())?;
        db::users::add_member(&mut *tx, &org.id, &user.id, "owner", now)
            .await
            .map_err(|e| e.to_string())?;
        generated.admin_email = Some(email);
        if was_generated {
            generated.admin_password = Some(pw);
        }
    }

    let api_key = match &cfg.bootstrap_api_key {
        Some(k) => Some((k.expose().to_string(), false)),
        None if mode == Mode::Standalone => Some((tokens::new_api_key(), true)),
        None => None,
    };
    if let Some((key, was_generated)) = api_key {
        let row = ApiKeyRow {
            id: ApiKeyId::generate().0,
            org_id: org.id.clone(),
            project_id: None,
            name: "bootstrap".into(),
            role: "admin".into(),
            key_hash: tokens::hash_token(&key),
            preview: tokens::key_preview(&key),
            created_by: None,
            created_at: now,
            revoked_at: None,
        };
        db::api_keys::insert(&mut *tx, &row)
            .await
            .map_err(|e| e.to_string())?;
        if was_generated {
            generated.api_key = Some(key);
        }
    }
    crate::service::rotate::insert_signing_key(st, &mut tx)
        .await
        .map_err(|e| e.to_string())?;
    db::bump_config_version(&mut tx)
        .await
        .map_err(|e| e.to_string())?;
    if let Err(e) = tx.commit().await {
        // Another replica bootstrapped the same empty database at the same moment.
        if db::DbError::from(e).is_unique() {
            return Ok(Generated::default());
        }
        return Err("bootstrap failed to commit".into());
    }
    tracing::info!(org_id = %org.id, "bootstrapped an empty database: org and project 'default'");
    Ok(generated)
}

/// Creates (or resets the password of) an instance admin: the `create-admin` command.
pub async fn create_admin(st: &AppState, email: &str, pw: &str) -> Result<String, String> {
    let email = crate::domain::names::email(email).map_err(|e| e.message)?;
    password::check_policy(pw, &email)?;
    let hash = password::hash(pw)?;
    let now = st.now_ms();
    let db = st.db();
    match db::users::get_by_email(db.pool(), &email)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(u) => {
            db::users::set_password(db.pool(), &u.id, &hash, now)
                .await
                .map_err(|e| e.to_string())?;
            db::users::set_instance_admin(db.pool(), &u.id, true, now)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("updated {email}: instance admin, password reset"))
        }
        None => {
            let user = UserRow {
                id: UserId::generate().0,
                email: email.clone(),
                password_hash: Some(hash),
                instance_admin: true,
                failed_logins: 0,
                locked_until: 0,
                created_at: now,
            };
            db::users::insert(db.pool(), &user, None)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("created instance admin {email}"))
        }
    }
}

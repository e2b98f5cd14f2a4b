//! Provider credentials ("AI providers"), org-level and project-level, and the precedence rule:
//! in project P, every project credential of P is a candidate, plus each org credential that no
//! project credential shadows (same `type`; for `custom`, same `name`, case-sensitive).
//!
//! Secrets (and sensitive metadata: extra headers, Bedrock session tokens) are sealed under the
//! master key, bound to the row's identity; reads show only a preview.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::db::{self, providers::CredentialRow};
use crate::domain::provider::{self as rules, SealedPayload, SplitMetadata};
use crate::domain::{CredentialId, OrgId, ProjectId, names};
use crate::error::{ApiError, ApiResult};
use crate::service::{Principal, audit, auth, commit_config_rows};
use crate::state::AppState;

/// Shown in place of sealed metadata values; sending it back in a PATCH keeps the stored value.
pub const HIDDEN: &str = "[hidden]";
/// Keys older than this get a warning in reads and in the web admin.
pub const STALE_AFTER_MS: i64 = 180 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Provider {
    pub id: String,
    pub org_id: String,
    pub project_id: Option<String>,
    pub name: String,
    #[serde(rename = "type")]
    pub provider_type: String,
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// At most the first 3 and last 4 characters of the secret.
    pub preview_secret: String,
    /// `org` or `project`.
    pub scope: String,
    /// In a project listing: this org-level credential is shadowed by a project credential.
    pub overridden: bool,
    /// The secret was last set more than six months ago.
    pub stale: bool,
    #[serde(serialize_with = "crate::service::ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(serialize_with = "crate::service::ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
    pub updated_by: String,
    #[serde(serialize_with = "crate::service::ser_time")]
    #[schema(value_type = String, format = DateTime)]
    pub secret_updated_at: i64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProvider {
    /// Defaults to the type's conventional name, e.g. `OPENAI_API_KEY`.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub provider_type: String,
    /// Write-only.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProvider {
    #[serde(default)]
    pub name: Option<String>,
    /// Absent: the stored secret is kept.
    #[serde(default)]
    pub secret: Option<String>,
    /// Replaces the metadata. Sealed fields (`headers`, `session_token`) not mentioned keep
    /// their stored values; `"[hidden]"` values also keep them; `null` clears them.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// Where a new credential lives.
#[derive(Debug, Clone)]
pub enum Scope {
    Org(OrgId),
    Project(ProjectId),
}

pub fn aad(id: &str, org_id: &str, project_id: Option<&str>) -> String {
    format!(
        "provider_credential:{id}:{org_id}:{}",
        project_id.unwrap_or("")
    )
}

fn to_api(st: &AppState, r: &CredentialRow, sealed_fields: &[&str], overridden: bool) -> Provider {
    let mut metadata: Map<String, Value> = serde_json::from_str(&r.metadata).unwrap_or_default();
    for f in sealed_fields {
        metadata.insert((*f).to_string(), Value::String(HIDDEN.into()));
    }
    Provider {
        id: r.id.clone(),
        org_id: r.org_id.clone(),
        project_id: r.project_id.clone(),
        name: r.name.clone(),
        provider_type: r.provider_type.clone(),
        metadata: Value::Object(metadata),
        preview_secret: r.preview_secret.clone(),
        scope: if r.project_id.is_some() {
            "project"
        } else {
            "org"
        }
        .into(),
        overridden,
        stale: st.now_ms() - r.secret_updated_at > STALE_AFTER_MS,
        created_at: r.created_at,
        updated_at: r.updated_at,
        updated_by: r.updated_by.clone(),
        secret_updated_at: r.secret_updated_at,
    }
}

/// Which sealed metadata fields a credential has, without decrypting the secret itself: the
/// names are recorded (not the values) in a `_sealed` list kept in the readable metadata.
fn sealed_fields(r: &CredentialRow) -> Vec<&'static str> {
    let meta: Map<String, Value> = serde_json::from_str(&r.metadata).unwrap_or_default();
    let list = meta
        .get("_sealed")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    ["headers", "session_token"]
        .into_iter()
        .filter(|f| list.iter().any(|v| v == f))
        .collect()
}

fn present(st: &AppState, r: &CredentialRow, overridden: bool) -> Provider {
    let mut p = to_api(st, r, &sealed_fields(r), overridden);
    if let Some(m) = p.metadata.as_object_mut() {
        m.remove("_sealed");
    }
    p
}

/// Does project credential `p` shadow org credential `o`?
pub fn shadows(p_type: &str, p_name: &str, o_type: &str, o_name: &str) -> bool {
    p_type == o_type && (o_type != "custom" || p_name == o_name)
}

pub async fn list_org(st: &AppState, who: &Principal, org_id: &OrgId) -> ApiResult<Vec<Provider>> {
    let a = auth::org_access(st, who, org_id).await?;
    a.require_read()?;
    let rows = db::providers::list_org(st.db().pool(), org_id.as_str()).await?;
    Ok(rows.iter().map(|r| present(st, r, false)).collect())
}

/// The effective set for a project: its own credentials, then the org's with `overridden`.
pub async fn list_project(
    st: &AppState,
    who: &Principal,
    project_id: &ProjectId,
) -> ApiResult<Vec<Provider>> {
    let (p, a) = auth::project_access(st, who, project_id).await?;
    a.require_read()?;
    let own = db::providers::list_project(st.db().pool(), &p.id).await?;
    let org = db::providers::list_org(st.db().pool(), &p.org_id).await?;
    let mut out: Vec<Provider> = own.iter().map(|r| present(st, r, false)).collect();
    for o in &org {
        let overridden = own
            .iter()
            .any(|r| shadows(&r.provider_type, &r.name, &o.provider_type, &o.name));
        out.push(present(st, o, overridden));
    }
    Ok(out)
}

fn seal_payload(st: &AppState, payload: &SealedPayload, aad: &str) -> ApiResult<String> {
    let json = serde_json::to_vec(payload).map_err(|_| ApiError::internal())?;
    Ok(st.keys().seal(&json, aad))
}

pub fn open_payload(st: &AppState, r: &CredentialRow) -> ApiResult<SealedPayload> {
    let plain = st
        .keys()
        .open(
            &r.sealed_secret,
            &aad(&r.id, &r.org_id, r.project_id.as_deref()),
        )
        .map_err(|e| {
            tracing::error!(credential_id = %r.id, error = %e, "cannot decrypt provider secret");
            ApiError::internal()
        })?;
    serde_json::from_slice(&plain).map_err(|_| ApiError::internal())
}

fn public_metadata(split: &SplitMetadata, payload: &SealedPayload) -> String {
    let mut m = split.public.clone();
    let mut sealed = Vec::new();
    if payload.headers.is_some() {
        sealed.push(Value::String("headers".into()));
    }
    if payload.session_token.is_some() {
        sealed.push(Value::String("session_token".into()));
    }
    if !sealed.is_empty() {
        m.insert("_sealed".into(), Value::Array(sealed));
    }
    Value::Object(m).to_string()
}

fn dup(e: db::DbError, name: &str) -> ApiError {
    match e {
        db::DbError::Unique(_) => ApiError::conflict(format!(
            "a provider named {name:?} already exists at this level"
        )),
        other => other.into(),
    }
}

pub async fn create(
    st: &AppState,
    who: &Principal,
    scope: Scope,
    input: CreateProvider,
) -> ApiResult<Provider> {
    let (org_id, project_id) = match &scope {
        Scope::Org(org_id) => {
            let a = auth::org_access(st, who, org_id).await?;
            a.require_manage()?;
            (org_id.0.clone(), None)
        }
        Scope::Project(pid) => {
            let (p, a) = auth::project_access(st, who, pid).await?;
            a.require_manage_project(&p.id)?;
            (p.org_id, Some(p.id))
        }
    };
    rules::check_type(&input.provider_type)?;
    let name = match &input.name {
        Some(n) => names::credential_name(n)?,
        None => llm::vendor::preset(&input.provider_type)
            .map(|p| p.default_key_name.to_string())
            .unwrap_or_default(),
    };
    let meta = input.metadata.unwrap_or(Value::Null);
    let split = rules::validate_metadata(&input.provider_type, &meta, &st.0.upstream_policy)?;
    rules::check_secret(&input.provider_type, input.secret.as_deref(), &split.public)?;
    let secret = input.secret.unwrap_or_default();
    let id = CredentialId::generate().0;
    let payload = SealedPayload {
        secret: secret.clone(),
        session_token: split.session_token.clone(),
        headers: split.headers.clone(),
    };
    let sealed = seal_payload(st, &payload, &aad(&id, &org_id, project_id.as_deref()))?;
    let now = st.now_ms();
    let row = CredentialRow {
        id: id.clone(),
        org_id: org_id.clone(),
        project_id: project_id.clone(),
        name: name.clone(),
        provider_type: input.provider_type.clone(),
        metadata: public_metadata(&split, &payload),
        sealed_secret: sealed,
        key_id: st.keys().current_id().to_string(),
        preview_secret: rules::preview_secret(&secret),
        created_at: now,
        updated_at: now,
        updated_by: who.actor(),
        secret_updated_at: now,
    };
    let mut tx = st.db().begin().await?;
    db::providers::insert(&mut *tx, &row)
        .await
        .map_err(|e| dup(e, &name))?;
    audit::record(&mut tx, st, who, Some(&org_id), "provider.create", ("provider", &id),
        serde_json::json!({"name": name, "type": input.provider_type, "project_id": project_id, "metadata": split.public}),
    )
    .await?;
    commit_config_rows(st, tx).await?;
    Ok(present(st, &row, false))
}

/// Loads a credential the caller may see; `manage` additionally requires the right to change it.
async fn load(
    st: &AppState,
    who: &Principal,
    id: &CredentialId,
    manage: bool,
) -> ApiResult<CredentialRow> {
    let row = db::providers::get(st.db().pool(), id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("provider"))?;
    let a = auth::org_access(st, who, &OrgId(row.org_id.clone()))
        .await
        .map_err(|e| {
            if e.code == crate::error::ErrorCode::NotFound {
                ApiError::not_found("provider")
            } else {
                e
            }
        })?;
    match &row.project_id {
        Some(p) => {
            if !a.sees_project(p) {
                return Err(ApiError::not_found("provider"));
            }
            if manage {
                a.require_manage_project(p)?
            } else {
                a.require_read()?
            }
        }
        None => {
            if manage {
                a.require_manage()?
            } else {
                a.require_read()?
            }
        }
    }
    Ok(row)
}

pub async fn get(st: &AppState, who: &Principal, id: &CredentialId) -> ApiResult<Provider> {
    let row = load(st, who, id, false).await?;
    Ok(present(st, &row, false))
}

pub async fn update(
    st: &AppState,
    who: &Principal,
    id: &CredentialId,
    input: UpdateProvider,
) -> ApiResult<Provider> {
    let mut row = load(st, who, id, true).await?;
    let mut payload = open_payload(st, &row)?;
    let mut changes = serde_json::Map::new();
    let now = st.now_ms();
    if let Some(n) = &input.name {
        let name = names::credential_name(n)?;
        if name != row.name {
            changes.insert(
                "name".into(),
                serde_json::json!({"from": row.name, "to": name}),
            );
            row.name = name;
        }
    }
    let mut public: Map<String, Value> = serde_json::from_str(&row.metadata).unwrap_or_default();
    public.remove("_sealed");
    if let Some(meta) = input.metadata {
        let mut meta = match meta {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            _ => return Err(ApiError::validation("metadata", "must be an object")),
        };
        // Sealed fields: absent or "[hidden]" keep the stored value, null clears it.
        let mut keep_headers = true;
        let mut keep_token = true;
        match meta.remove("headers") {
            Some(Value::Null) => {
                payload.headers = None;
                keep_headers = false;
            }
            Some(Value::String(s)) if s == HIDDEN => {}
            Some(v) => {
                meta.insert("headers".into(), v);
                keep_headers = false;
            }
            None => {}
        }
        match meta.remove("session_token") {
            Some(Value::Null) => {
                payload.session_token = None;
                keep_token = false;
            }
            Some(Value::String(s)) if s == HIDDEN => {}
            Some(v) => {
                meta.insert("session_token".into(), v);
                keep_token = false;
            }
            None => {}
        }
        let split = rules::validate_metadata(
            &row.provider_type,
            &Value::Object(meta),
            &st.0.upstream_policy,
        )?;
        if !keep_headers && split.headers.is_some() {
            payload.headers = split.headers.clone();
        }
        if !keep_token && split.session_token.is_some() {
            payload.session_token = split.session_token.clone();
        }
        changes.insert("metadata".into(), Value::Object(split.public.clone()));
        public = split.public;
    }
    if let Some(secret) = &input.secret {
        rules::check_secret(&row.provider_type, Some(secret), &public)?;
        payload.secret = secret.clone();
        row.preview_secret = rules::preview_secret(secret);
        row.secret_updated_at = now;
        changes.insert("secret".into(), Value::String("replaced".into()));
    } else if rules::secret_required(&row.provider_type, &public) && payload.secret.is_empty() {
        return Err(ApiError::validation(
            "secret",
            format!("required for a {} provider", row.provider_type),
        ));
    }
    let split = SplitMetadata {
        public,
        session_token: payload.session_token.clone(),
        headers: payload.headers.clone(),
    };
    row.metadata = public_metadata(&split, &payload);
    row.sealed_secret = seal_payload(
        st,
        &payload,
        &aad(&row.id, &row.org_id, row.project_id.as_deref()),
    )?;
    row.key_id = st.keys().current_id().to_string();
    row.updated_at = now;
    row.updated_by = who.actor();
    let mut tx = st.db().begin().await?;
    db::providers::update(&mut *tx, &row)
        .await
        .map_err(|e| dup(e, &row.name))?;
    audit::record(
        &mut tx,
        st,
        who,
        Some(&row.org_id),
        "provider.update",
        ("provider", &row.id),
        Value::Object(changes),
    )
    .await?;
    commit_config_rows(st, tx).await?;
    Ok(present(st, &row, false))
}

pub async fn delete(st: &AppState, who: &Principal, id: &CredentialId) -> ApiResult<()> {
    let row = load(st, who, id, true).await?;
    let mut tx = st.db().begin().await?;
    db::providers::delete(&mut *tx, &row.id).await?;
    audit::record(&mut tx, st, who, Some(&row.org_id), "provider.delete", ("provider", &row.id), serde_json::json!({"name": row.name, "type": row.provider_type, "project_id": row.project_id}))
        .await?;
    commit_config_rows(st, tx).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_rule() {
        assert!(
            shadows("openai", "A", "openai", "B"),
            "same type shadows whatever the names"
        );
        assert!(!shadows("anthropic", "A", "openai", "A"));
        assert!(shadows("custom", "mine", "custom", "mine"));
        assert!(
            !shadows("custom", "mine", "custom", "Mine"),
            "custom shadows by exact name"
        );
        assert!(!shadows("custom", "a", "custom", "b"));
    }
}

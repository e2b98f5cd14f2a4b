//! Organization pages: projects, API keys, settings (deployment URLs and snippets), members,
//! audit log.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{
    Errors, Form, FormError, Layout, Viewer, api_error_page, fmt_time, layout, notice, render,
    see_other,
};
use crate::domain::{ApiKeyId, OrgId, ProjectId, UserId};
use crate::service::{api_keys, audit, members, projects, settings};
use crate::state::AppState;

type Page = Result<Response, Response>;

#[derive(Debug, Default, Deserialize)]
pub struct Done {
    #[serde(default)]
    pub done: String,
}

fn org_id(s: &str) -> Result<OrgId, Response> {
    OrgId::parse("org_id", s).map_err(api_error_page)
}

// ---- projects ----

#[derive(Template)]
#[template(path = "projects.html")]
struct ProjectsPage {
    l: Layout,
    e: Errors,
    rows: Vec<ProjectRow>,
}

struct ProjectRow {
    id: String,
    name: String,
    created: String,
}

async fn projects_page(st: &AppState, v: &Viewer, org: &OrgId, done: &str, e: Errors) -> Page {
    let mut l = layout(st, v, org, None, "projects", "Projects")
        .await
        .map_err(api_error_page)?;
    l.notice = notice(done).into();
    let rows = l
        .projects
        .iter()
        .map(|p| ProjectRow {
            id: p.id.clone(),
            name: p.name.clone(),
            created: fmt_time(p.created_at),
        })
        .collect();
    Ok(render(e.status(), &ProjectsPage { l, e, rows }))
}

pub async fn projects(
    State(st): State<AppState>,
    v: Viewer,
    Path(org): Path<String>,
    Query(q): Query<Done>,
) -> Page {
    projects_page(&st, &v, &org_id(&org)?, &q.done, Errors::default()).await
}

pub async fn create_project(
    State(st): State<AppState>,
    v: Viewer,
    Path(org): Path<String>,
    form: Form,
) -> Page {
    v.check_csrf(&form)?;
    let org = org_id(&org)?;
    let input = projects::CreateProject {
        name: form.get("name").to_string(),
    };
    match projects::create(&st, &v.who, &org, input).await {
        Ok(_) => Ok(see_other(&format!(
            "/ui/orgs/{org}/projects?done=project-created"
        ))),
        Err(e) => {
            projects_page(
                &st,
                &v,
                &org,
                "",
                Errors(Some(FormError::from_api("create", &e))),
            )
            .await
        }
    }
}

/// `action=rename` (with `name`) or `action=delete` (with `confirm` = the project's name).
pub async fn project_action(
    State(st): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    form: Form,
) -> Page {
    v.check_csrf(&form)?;
    let pid = ProjectId::parse("project_id", &id).map_err(api_error_page)?;
    let p = projects::get(&st, &v.who, &pid)
        .await
        .map_err(api_error_page)?;
    let org = OrgId(p.org_id.clone());
    let form_name = format!("project-{}", p.id);
    let result = match form.get("action") {
        "rename" => projects::update(
            &st,
            &v.who,
            &pid,
            projects::UpdateProject {
                name: Some(form.get("name").to_string()),
            },
        )
        .await
        .map(|_| "project-renamed"),
        "delete" => {
            if form.get("confirm") != p.name {
                let e = FormError::field(
                    &form_name,
                    "confirm",
                    format!("Type the project name ({}) to confirm.", p.name),
                );
                return projects_page(&st, &v, &org, "", Errors(Some(e))).await;
            }
            projects::delete(&st, &v.who, &pid)
                .await
                .map(|_| "project-deleted")
        }
        _ => {
            return Err(super::error_page(
                StatusCode::BAD_REQUEST,
                "Unknown action",
                "Expected rename or delete.",
            ));
        }
    };
    match result {
        Ok(done) => Ok(see_other(&format!("/ui/orgs/{org}/projects?done={done}"))),
        Err(e) => {
            projects_page(
                &st,
                &v,
                &org,
                "",
                Errors(Some(FormError::from_api(&form_name, &e))),
            )
            .await
        }
    }
}

// ---- API keys ----

#[derive(Template)]
#[template(path = "api_keys.html")]
struct ApiKeysPage {
    l: Layout,
    e: Errors,
    keys: Vec<KeyRow>,
    /// Set once, right after creation.
    new_key: String,
    new_key_name: String,
}

struct KeyRow {
    id: String,
    name: String,
    preview: String,
    role: &'static str,
    project: String,
    created: String,
    created_by: String,
    revoked: String,
}

async fn keys_page(
    st: &AppState,
    v: &Viewer,
    org: &OrgId,
    done: &str,
    e: Errors,
    new_key: Option<(String, String)>,
) -> Page {
    let mut l = layout(st, v, org, None, "api-keys", "API keys")
        .await
        .map_err(api_error_page)?;
    l.notice = notice(done).into();
    let list = api_keys::list(st, &v.who, org)
        .await
        .map_err(api_error_page)?;
    let project_name = |id: &Option<String>| match id {
        None => "all projects".to_string(),
        Some(id) => l
            .projects
            .iter()
            .find(|p| &p.id == id)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| id.clone()),
    };
    let keys = list
        .iter()
        .map(|k| KeyRow {
            id: k.id.clone(),
            name: k.name.clone(),
            preview: k.preview.clone(),
            role: k.role.as_str(),
            project: project_name(&k.project_id),
            created: fmt_time(k.created_at),
            created_by: k.created_by.clone().unwrap_or_default(),
            revoked: k.revoked_at.map(fmt_time).unwrap_or_default(),
        })
        .collect();
    let (new_key, new_key_name) = new_key.unwrap_or_default();
    Ok(render(
        e.status(),
        &ApiKeysPage {
            l,
            e,
            keys,
            new_key,
            new_key_name,
        },
    ))
}

pub async fn api_keys(
    State(st): State<AppState>,
    v: Viewer,
    Path(org): Path<String>,
    Query(q): Query<Done>,
) -> Page {
    keys_page(&st, &v, &org_id(&org)?, &q.done, Errors::default(), None).await
}

pub async fn create_key(
    State(st): State<AppState>,
    v: Viewer,
    Path(org): Path<String>,
    form: Form,
) -> Page {
    v.check_csrf(&form)?;
    let org = org_id(&org)?;
    let input = api_keys::CreateApiKey {
        name: form.get("name").to_string(),
        role: form.get("role").to_string(),
        project_id: Some(form.get("project_id").to_string()).filter(|s| !s.is_empty()),
    };
    match api_keys::create(&st, &v.who, &org, input).await {
        // Rendered, not redirected: the key is shown this once and never stored in plaintext.
        Ok(k) => {
            keys_page(
                &st,
                &v,
                &org,
                "",
                Errors::default(),
                Some((k.key.unwrap_or_default(), k.name)),
            )
            .await
        }
        Err(e) => {
            keys_page(
                &st,
                &v,
                &org,
                "",
                Errors(Some(FormError::from_api("create", &e))),
                None,
            )
            .await
        }
    }
}

pub async fn revoke_key(
    State(st): State<AppState>,
    v: Viewer,
    Path(id): Path<String>,
    form: Form,
) -> Page {
    v.check_csrf(&form)?;
    let id = ApiKeyId::parse("id", &id).map_err(api_error_page)?;
    let org = org_id(form.get("org_id"))?;
    match api_keys::revoke(&st, &v.who, &id).await {
        Ok(()) => Ok(see_other(&format!(
            "/ui/orgs/{org}/api-keys?done=key-revoked"
        ))),
        Err(e) => {
            keys_page(
                &st,
                &v,
                &org,
                "",
                Errors(Some(FormError::from_api("revoke", &e))),
                None,
            )
            .await
        }
    }
}

// ---- settings ----

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    l: Layout,
    e: Errors,
    /// (field, label, value) of the three URLs.
    urls: Vec<(&'static str, &'static str, String)>,
    results: Vec<settings::UrlCheck>,
    tested: bool,
    proxy_url: String,
}

async fn settings_page(
    st: &AppState,
    v: &Viewer,
    org: &OrgId,
    done: &str,
    e: Errors,
    entered: Option<settings::Settings>,
    results: Option<Vec<settings::UrlCheck>>,
) -> Page {
    let mut l = layout(st, v, org, None, "settings", "Settings · API URL")
        .await
        .map_err(api_error_page)?;
    l.notice = notice(done).into();
    let s = match entered {
        Some(s) => s,
        None => settings::get(st, &v.who, org)
            .await
            .map_err(api_error_page)?,
    };
    let proxy_url = if s.proxy_url.is_empty() {
        "http://127.0.0.1:8080/v1/proxy".to_string()
    } else {
        s.proxy_url.clone()
    };
    Ok(render(
        e.status(),
        &SettingsPage {
            l,
            e,
            urls: vec![
                ("api_url", "API URL", s.api_url),
                ("proxy_url", "Proxy URL", s.proxy_url),
                ("realtime_url", "Realtime URL", s.realtime_url),
            ],
            tested: results.is_some(),
            results: results.unwrap_or_default(),
            proxy_url,
        },
    ))
}

pub async fn settings(
    State(st): State<AppState>,
    v: Viewer,
    Path(org): Path<String>,
    Query(q): Query<Done>,
) -> Page {
    settings_page(
        &st,
        &v,
        &org_id(&org)?,
        &q.done,
        Errors::default(),
        None,
        None,
    )
    .await
}

pub async fn save_settings(
    State(st): State<AppState>,
    v: Viewer,
    Path(org): Path<String>,
    form: Form,
) -> Page {
    v.check_csrf(&form)?;
    let org = org_id(&org)?;
    let input = settings::PutSettings {
        api_url: form.get("api_url").trim().to_string(),
        proxy_url: form.get("proxy_url").trim().to_string(),
        realtime_url: form.get("realtime_url").trim().to_string(),
    };
    let entered = settings::Settings {
        org_id: org.0.clone(),
        api_url: input.api_url.clone(),
        proxy_url: input.proxy_url.clone(),
        realtime_url: input.realtime_url.clone(),
        updated_at: None,
        updated_by: None,
    };
    match settings::put(&st, &v.who, &org, input).await {
        Ok(_) => Ok(see_other(&format!(
            "/ui/orgs/{org}/settings?done=settings-saved"
        ))),
        Err(e) => {
            let e = Errors(Some(FormError::from_api("urls", &e)));
            settings_page(&st, &v, &org, "", e, Some(entered), None).await
        }
    }
}

pub async fn test_settings(
    State(st): State<AppState>,
    v: Viewer,
    Path(org): Path<String>,
    form: Form,
) -> Page {
    v.check_csrf(&form)?;
    let org = org_id(&org)?;
    match settings::test(&st, &v.who, &org).await {
        Ok(r) => settings_page(&st, &v, &org, "", Errors::default(), None, Some(r.results)).await,
        Err(e) => {
            let e = Errors(Some(FormError::from_api("test", &e)));
            settings_page(&st, &v, &org, "", e, None, None).await
        }
    }
}

// ---- members ----

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    l: Layout,
    e: Errors,
    rows: Vec<MemberRow>,
    invite_link: String,
    invite_email: String,
}

struct MemberRow {
    user_id: String,
    email: String,
    role: &'static str,
    joined: String,
}

async fn members_page(
    st: &AppState,
    v: &Viewer,
    org: &OrgId,
    done: &str,
    e: Errors,
    invite: Option<(String, String)>,
) -> Page {
    let mut l = layout(st, v, org, None, "members", "Members")
        .await
        .map_err(api_error_page)?;
    l.notice = notice(done).into();
    let list = members::list(st, &v.who, org)
        .await
        .map_err(api_error_page)?;
    let rows = list
        .iter()
        .map(|m| MemberRow {
            user_id: m.user_id.clone(),
            email: m.email.clone(),
            role: m.role.as_str(),
            joined: fmt_time(m.created_at),
        })
        .collect();
    let (invite_email, invite_link) = invite.unwrap_or_default();
    Ok(render(
        e.status(),
        &MembersPage {
            l,
            e,
            rows,
            invite_link,
            invite_email,
        },
    ))
}

pub async fn members(
    State(st): State<AppState>,
    v: Viewer,
    Path(org): Path<String>,
    Query(q): Query<Done>,
) -> Page {
    members_page(&st, &v, &org_id(&org)?, &q.done, Errors::default(), None).await
}

pub async fn add_member(
    State(st): State<AppState>,
    v: Viewer,
    Path(org): Path<String>,
    headers: axum::http::HeaderMap,
    form: Form,
) -> Page {
    v.check_csrf(&form)?;
    let org = org_id(&org)?;
    let input = members::AddMember {
        email: form.get("email").to_string(),
        role: form.get("role").to_string(),
        password: None,
    };
    match members::add(&st, &v.who, &org, input).await {
        Ok(m) => {
            let link = match m.invite_token {
                Some(t) => {
                    let base = settings::get(&st, &v.who, &org)
                        .await
                        .ok()
                        .map(|s| s.api_url)
                        .filter(|u| !u.is_empty())
                        .unwrap_or_else(|| {
                            let host = headers
                                .get(axum::http::header::HOST)
                                .and_then(|h| h.to_str().ok())
                                .unwrap_or("127.0.0.1:8000");
                            format!("http://{host}")
                        });
                    format!("{}/ui/invite/{t}", base.trim_end_matches('/'))
                }
                None => String::new(),
            };
            members_page(&st, &v, &org, "", Errors::default(), Some((m.email, link))).await
        }
        Err(e) => {
            members_page(
                &st,
                &v,
                &org,
                "",
                Errors(Some(FormError::from_api("invite", &e))),
                None,
            )
            .await
        }
    }
}

/// `action=role` (with `role`) or `action=remove`.
pub async fn member_action(
    State(st): State<AppState>,
    v: Viewer,
    Path((org, user)): Path<(String, String)>,
    form: Form,
) -> Page {
    v.check_csrf(&form)?;
    let org = org_id(&org)?;
    let uid = UserId::parse("user_id", &user).map_err(api_error_page)?;
    let form_name = format!("member-{}", uid.0);
    let result = match form.get("action") {
        "role" => members::update(
            &st,
            &v.who,
            &org,
            &uid,
            members::UpdateMember {
                role: form.get("role").to_string(),
            },
        )
        .await
        .map(|_| "member-updated"),
        "remove" => members::remove(&st, &v.who, &org, &uid)
            .await
            .map(|_| "member-removed"),
        _ => {
            return Err(super::error_page(
                StatusCode::BAD_REQUEST,
                "Unknown action",
                "Expected role or remove.",
            ));
        }
    };
    match result {
        Ok(done) => Ok(see_other(&format!("/ui/orgs/{org}/members?done={done}"))),
        Err(e) => {
            members_page(
                &st,
                &v,
                &org,
                "",
                Errors(Some(FormError::from_api(&form_name, &e))),
                None,
            )
            .await
        }
    }
}

// ---- audit log ----

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    l: Layout,
    rows: Vec<AuditRow>,
    next: String,
}

struct AuditRow {
    time: String,
    actor: String,
    action: String,
    target: String,
    details: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    before: String,
}

pub async fn audit(
    State(st): State<AppState>,
    v: Viewer,
    Path(org): Path<String>,
    Query(q): Query<AuditQuery>,
) -> Page {
    let org = org_id(&org)?;
    let l = layout(&st, &v, &org, None, "audit", "Audit log")
        .await
        .map_err(api_error_page)?;
    let before = Some(q.before.as_str()).filter(|s| !s.is_empty());
    let page = audit::list(&st, &v.who, &org, before, Some(50))
        .await
        .map_err(api_error_page)?;
    let rows = page
        .entries
        .iter()
        .map(|a| AuditRow {
            time: fmt_time(a.created_at),
            actor: a.actor.clone(),
            action: a.action.clone(),
            target: format!("{} {}", a.target_type, a.target_id),
            details: a.details.to_string(),
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &AuditPage {
            l,
            rows,
            next: page.next_cursor.unwrap_or_default(),
        },
    ))
}

//! AdminService: the admin API over gRPC for automation. Same service layer as REST — the same
//! rules, the same errors (mapped through `ErrorCode::grpc_code`). Authenticated with an admin
//! API key in `authorization: Bearer aip_…` metadata.

use proto::v1 as pb;
use proto::v1::admin_service_server::AdminService;
use tonic::{Request, Response, Status};

use crate::domain::{ApiKeyId, CredentialId, OrgId, ProjectId, UserId};
use crate::error::ApiError;
use crate::service::{self, Principal};
use crate::state::AppState;

pub struct AdminSvc {
    pub st: AppState,
}

type R<T> = Result<Response<T>, Status>;

async fn caller<T>(st: &AppState, req: &Request<T>) -> Result<Principal, Status> {
    let token = req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Status::unauthenticated("send `authorization: Bearer <admin API key>` metadata")
        })?;
    Ok(service::auth::authenticate_api_key(st, token).await?)
}

fn json<T: serde::Serialize>(v: &T) -> Result<Response<pb::JsonReply>, Status> {
    serde_json::to_string(v)
        .map(|json| Response::new(pb::JsonReply { json }))
        .map_err(|_| Status::internal("cannot encode the reply"))
}

fn t(ms: i64) -> String {
    crate::domain::time::rfc3339(ms)
}

fn opt(s: &str) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(s.to_string())
    }
}

fn org(o: service::orgs::Org) -> pb::OrgInfo {
    pb::OrgInfo {
        id: o.id,
        name: o.name,
        created_at: t(o.created_at),
        updated_at: t(o.updated_at),
    }
}

fn member(m: service::members::Member) -> pb::MemberInfo {
    pb::MemberInfo {
        user_id: m.user_id,
        email: m.email,
        role: m.role.as_str().into(),
        created_at: t(m.created_at),
    }
}

fn project(p: service::projects::Project) -> pb::ProjectInfo {
    pb::ProjectInfo {
        id: p.id,
        org_id: p.org_id,
        name: p.name,
        created_at: t(p.created_at),
        updated_at: t(p.updated_at),
    }
}

fn api_key(k: service::api_keys::ApiKey) -> pb::ApiKeyInfo {
    pb::ApiKeyInfo {
        id: k.id,
        org_id: k.org_id,
        project_id: k.project_id.unwrap_or_default(),
        name: k.name,
        role: k.role.as_str().into(),
        preview: k.preview,
        created_at: t(k.created_at),
        revoked_at: k.revoked_at.map(t).unwrap_or_default(),
        key: k.key.unwrap_or_default(),
    }
}

fn provider(p: service::providers::Provider) -> pb::ProviderInfo {
    pb::ProviderInfo {
        id: p.id,
        org_id: p.org_id,
        project_id: p.project_id.unwrap_or_default(),
        name: p.name,
        r#type: p.provider_type,
        metadata_json: p.metadata.to_string(),
        preview_secret: p.preview_secret,
        scope: p.scope,
        overridden: p.overridden,
        created_at: t(p.created_at),
        updated_at: t(p.updated_at),
        updated_by: p.updated_by,
    }
}

fn settings(s: service::settings::Settings) -> pb::Settings {
    pb::Settings {
        org_id: s.org_id,
        api_url: s.api_url,
        proxy_url: s.proxy_url,
        realtime_url: s.realtime_url,
        updated_at: s.updated_at.map(t).unwrap_or_default(),
    }
}

fn metadata(field: &str, s: &str) -> Result<Option<serde_json::Value>, Status> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(s)
        .map(Some)
        .map_err(|e| Status::from(ApiError::validation(field, format!("not valid JSON: {e}"))))
}

/// Parses a REST-style query string into a query struct, with REST's errors.
fn query<T: serde::de::DeserializeOwned>(q: &str) -> Result<T, Status> {
    serde_urlencoded::from_str(q).map_err(|e| Status::invalid_argument(format!("query: {e}")))
}

#[tonic::async_trait]
impl AdminService for AdminSvc {
    async fn get_me(&self, req: Request<pb::Empty>) -> R<pb::Me> {
        let who = caller(&self.st, &req).await?;
        let me = crate::http::auth::me_of(&who, None);
        Ok(Response::new(pb::Me {
            kind: me.kind,
            user_id: me.user_id.unwrap_or_default(),
            email: me.email.unwrap_or_default(),
            instance_admin: me.instance_admin,
            api_key_id: me.api_key_id.unwrap_or_default(),
            org_id: me.org_id.unwrap_or_default(),
            project_id: me.project_id.unwrap_or_default(),
        }))
    }

    async fn list_orgs(&self, req: Request<pb::Empty>) -> R<pb::OrgList> {
        let who = caller(&self.st, &req).await?;
        let orgs = service::orgs::list(&self.st, &who).await?;
        Ok(Response::new(pb::OrgList {
            orgs: orgs.into_iter().map(org).collect(),
        }))
    }

    async fn create_org(&self, req: Request<pb::CreateOrgRequest>) -> R<pb::OrgInfo> {
        let who = caller(&self.st, &req).await?;
        let r = req.into_inner();
        Ok(Response::new(org(service::orgs::create(
            &self.st,
            &who,
            service::orgs::CreateOrg {
                name: r.name,
                owner_email: None,
            },
        )
        .await?)))
    }

    async fn get_org(&self, req: Request<pb::IdRequest>) -> R<pb::OrgInfo> {
        let who = caller(&self.st, &req).await?;
        let id = OrgId::parse("id", &req.get_ref().id)?;
        Ok(Response::new(org(
            service::orgs::get(&self.st, &who, &id).await?
        )))
    }

    async fn update_org(&self, req: Request<pb::UpdateOrgRequest>) -> R<pb::OrgInfo> {
        let who = caller(&self.st, &req).await?;
        let r = req.into_inner();
        let id = OrgId::parse("id", &r.id)?;
        Ok(Response::new(org(service::orgs::update(
            &self.st,
            &who,
            &id,
            service::orgs::UpdateOrg { name: opt(&r.name) },
        )
        .await?)))
    }

    async fn delete_org(&self, req: Request<pb::IdRequest>) -> R<pb::Empty> {
        let who = caller(&self.st, &req).await?;
        let id = OrgId::parse("id", &req.get_ref().id)?;
        service::orgs::delete(&self.st, &who, &id).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn list_members(&self, req: Request<pb::IdRequest>) -> R<pb::MemberList> {
        let who = caller(&self.st, &req).await?;
        let id = OrgId::parse("id", &req.get_ref().id)?;
        let ms = service::members::list(&self.st, &who, &id).await?;
        Ok(Response::new(pb::MemberList {
            members: ms.into_iter().map(member).collect(),
        }))
    }

    async fn add_member(&self, req: Request<pb::AddMemberRequest>) -> R<pb::MemberInfo> {
        let who = caller(&self.st, &req).await?;
        let r = req.into_inner();
        let id = OrgId::parse("org_id", &r.org_id)?;
        Ok(Response::new(member(
            service::members::add(
                &self.st,
                &who,
                &id,
                service::members::AddMember {
                    email: r.email,
                    role: r.role,
                    password: None,
                },
            )
            .await?,
        )))
    }

    async fn update_member(&self, req: Request<pb::UpdateMemberRequest>) -> R<pb::MemberInfo> {
        let who = caller(&self.st, &req).await?;
        let r = req.into_inner();
        let org_id = OrgId::parse("org_id", &r.org_id)?;
        let user = UserId::parse("user_id", &r.user_id)?;
        Ok(Response::new(member(
            service::members::update(
                &self.st,
                &who,
                &org_id,
                &user,
                service::members::UpdateMember { role: r.role },
            )
            .await?,
        )))
    }

    async fn remove_member(&self, req: Request<pb::MemberRef>) -> R<pb::Empty> {
        let who = caller(&self.st, &req).await?;
        let r = req.into_inner();
        let org_id = OrgId::parse("org_id", &r.org_id)?;
        let user = UserId::parse("user_id", &r.user_id)?;
        service::members::remove(&self.st, &who, &org_id, &user).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn list_projects(&self, req: Request<pb::IdRequest>) -> R<pb::ProjectList> {
        let who = caller(&self.st, &req).await?;
        let id = OrgId::parse("id", &req.get_ref().id)?;
        let ps = service::projects::list(&self.st, &who, &id).await?;
        Ok(Response::new(pb::ProjectList {
            projects: ps.into_iter().map(project).collect(),
        }))
    }

    async fn create_project(&self, req: Request<pb::CreateProjectRequest>) -> R<pb::ProjectInfo> {
        let who = caller(&self.st, &req).await?;
        let r = req.into_inner();
        let id = OrgId::parse("org_id", &r.org_id)?;
        Ok(Response::new(project(
            service::projects::create(
                &self.st,
                &who,
                &id,
                service::projects::CreateProject { name: r.name },
            )
            .await?,
        )))
    }

    async fn get_project(&self, req: Request<pb::IdRequest>) -> R<pb::ProjectInfo> {
        let who = caller(&self.st, &req).await?;
        let id = ProjectId::parse("id", &req.get_ref().id)?;
        Ok(Response::new(project(
            service::projects::get(&self.st, &who, &id).await?,
        )))
    }

    async fn update_project(&self, req: Request<pb::UpdateProjectRequest>) -> R<pb::ProjectInfo> {
        let who = caller(&self.st, &req).await?;
        let r = req.into_inner();
        let id = ProjectId::parse("id", &r.id)?;
        Ok(Response::new(project(
            service::projects::update(
                &self.st,
                &who,
                &id,
                service::projects::UpdateProject { name: opt(&r.name) },
            )
            .await?,
        )))
    }

    async fn delete_project(&self, req: Request<pb::IdRequest>) -> R<pb::Empty> {
        let who = caller(&self.st, &req).await?;
        let id = ProjectId::parse("id", &req.get_ref().id)?;
        service::projects::delete(&self.st, &who, &id).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn list_api_keys(&self, req: Request<pb::IdRequest>) -> R<pb::ApiKeyList> {
        let who = caller(&self.st, &req).await?;
        let id = OrgId::parse("id", &req.get_ref().id)?;
        let ks = service::api_keys::list(&self.st, &who, &id).await?;
        Ok(Response::new(pb::ApiKeyList {
            api_keys: ks.into_iter().map(api_key).collect(),
        }))
    }

    async fn create_api_key(&self, req: Request<pb::CreateApiKeyRequest>) -> R<pb::ApiKeyInfo> {
        let who = caller(&self.st, &req).await?;
        let r = req.into_inner();
        let id = OrgId::parse("org_id", &r.org_id)?;
        let input = service::api_keys::CreateApiKey {
            name: r.name,
            role: r.role,
            project_id: opt(&r.project_id),
        };
        Ok(Response::new(api_key(
            service::api_keys::create(&self.st, &who, &id, input).await?,
        )))
    }

    async fn revoke_api_key(&self, req: Request<pb::IdRequest>) -> R<pb::Empty> {
        let who = caller(&self.st, &req).await?;
        let id = ApiKeyId::parse("id", &req.get_ref().id)?;
        service::api_keys::revoke(&self.st, &who, &id).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn list_org_providers(&self, req: Request<pb::IdRequest>) -> R<pb::ProviderList> {
        let who = caller(&self.st, &req).await?;
        let id = OrgId::parse("id", &req.get_ref().id)?;
        let ps = service::providers::list_org(&self.st, &who, &id).await?;
        Ok(Response::new(pb::ProviderList {
            providers: ps.into_iter().map(provider).collect(),
        }))
    }

    async fn list_project_providers(&self, req: Request<pb::IdRequest>) -> R<pb::ProviderList> {
        let who = caller(&self.st, &req).await?;
        let id = ProjectId::parse("id", &req.get_ref().id)?;
        let ps = service::providers::list_project(&self.st, &who, &id).await?;
        Ok(Response::new(pb::ProviderList {
            providers: ps.into_iter().map(provider).collect(),
        }))
    }

    async fn create_provider(
        &self,
        req: Request<pb::CreateProviderRequest>,
    ) -> R<pb::ProviderInfo> {
        let who = caller(&self.st, &req).await?;
        let r = req.into_inner();
        let scope = match (r.org_id.is_empty(), r.project_id.is_empty()) {
            (false, true) => service::providers::Scope::Org(OrgId::parse("org_id", &r.org_id)?),
            (true, false) => {
                service::providers::Scope::Project(ProjectId::parse("project_id", &r.project_id)?)
            }
            _ => {
                return Err(Status::invalid_argument(
                    "set exactly one of org_id (org-level) or project_id (project-level)",
                ));
            }
        };
        let input = service::providers::CreateProvider {
            name: opt(&r.name),
            provider_type: r.r#type,
            secret: opt(&r.secret),
            metadata: metadata("metadata_json", &r.metadata_json)?,
        };
        Ok(Response::new(provider(
            service::providers::create(&self.st, &who, scope, input).await?,
        )))
    }

    async fn get_provider(&self, req: Request<pb::IdRequest>) -> R<pb::ProviderInfo> {
        let who = caller(&self.st, &req).await?;
        let id = CredentialId::parse("id", &req.get_ref().id)?;
        Ok(Response::new(provider(
            service::providers::get(&self.st, &who, &id).await?,
        )))
    }

    async fn update_provider(
        &self,
        req: Request<pb::UpdateProviderRequest>,
    ) -> R<pb::ProviderInfo> {
        let who = caller(&self.st, &req).await?;
        let r = req.into_inner();
        let id = CredentialId::parse("id", &r.id)?;
        let meta = match &r.metadata_json {
            Some(m) => metadata("metadata_json", m)?.or(Some(serde_json::Value::Null)),
            None => None,
        };
        let input = service::providers::UpdateProvider {
            name: r.name,
            secret: r.secret,
            metadata: meta,
        };
        Ok(Response::new(provider(
            service::providers::update(&self.st, &who, &id, input).await?,
        )))
    }

    async fn delete_provider(&self, req: Request<pb::IdRequest>) -> R<pb::Empty> {
        let who = caller(&self.st, &req).await?;
        let id = CredentialId::parse("id", &req.get_ref().id)?;
        service::providers::delete(&self.st, &who, &id).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn get_settings(&self, req: Request<pb::IdRequest>) -> R<pb::Settings> {
        let who = caller(&self.st, &req).await?;
        let id = OrgId::parse("id", &req.get_ref().id)?;
        Ok(Response::new(settings(
            service::settings::get(&self.st, &who, &id).await?,
        )))
    }

    async fn put_settings(&self, req: Request<pb::PutSettingsRequest>) -> R<pb::Settings> {
        let who = caller(&self.st, &req).await?;
        let r = req.into_inner();
        let id = OrgId::parse("org_id", &r.org_id)?;
        let input = service::settings::PutSettings {
            api_url: r.api_url,
            proxy_url: r.proxy_url,
            realtime_url: r.realtime_url,
        };
        Ok(Response::new(settings(
            service::settings::put(&self.st, &who, &id, input).await?,
        )))
    }

    async fn test_settings(&self, req: Request<pb::IdRequest>) -> R<pb::JsonReply> {
        let who = caller(&self.st, &req).await?;
        let id = OrgId::parse("id", &req.get_ref().id)?;
        json(&service::settings::test(&self.st, &who, &id).await?)
    }

    async fn list_models(&self, req: Request<pb::IdRequest>) -> R<pb::JsonReply> {
        let who = caller(&self.st, &req).await?;
        let id = OrgId::parse("id", &req.get_ref().id)?;
        json(&service::models::list(&self.st, &who, &id, None, false).await?)
    }

    async fn list_logs(&self, req: Request<pb::ListLogsRequest>) -> R<pb::JsonReply> {
        let who = caller(&self.st, &req).await?;
        let r = req.into_inner();
        let id = ProjectId::parse("project_id", &r.project_id)?;
        let q: service::logs::LogQuery = query(&r.query)?;
        json(&service::logs::list(&self.st, &who, &id, q).await?)
    }

    async fn get_log(&self, req: Request<pb::LogRef>) -> R<pb::JsonReply> {
        let who = caller(&self.st, &req).await?;
        let r = req.into_inner();
        let pid = ProjectId::parse("project_id", &r.project_id)?;
        let lid = crate::domain::LogId::parse("log_id", &r.log_id)?;
        json(&service::logs::get(&self.st, &who, &pid, &lid).await?)
    }

    async fn get_usage(&self, req: Request<pb::UsageRequest>) -> R<pb::JsonReply> {
        let who = caller(&self.st, &req).await?;
        let r = req.into_inner();
        let id = OrgId::parse("org_id", &r.org_id)?;
        let q: service::usage::UsageQuery = query(&r.query)?;
        json(&service::usage::query(&self.st, &who, &id, q).await?)
    }

    async fn list_audit_log(&self, req: Request<pb::IdRequest>) -> R<pb::JsonReply> {
        let who = caller(&self.st, &req).await?;
        let id = OrgId::parse("id", &req.get_ref().id)?;
        json(&service::audit::list(&self.st, &who, &id, None, None).await?)
    }

    async fn list_nodes(&self, req: Request<pb::Empty>) -> R<pb::JsonReply> {
        let who = caller(&self.st, &req).await?;
        json(&service::nodes::list(&self.st, &who).await?)
    }
}

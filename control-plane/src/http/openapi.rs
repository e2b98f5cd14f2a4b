//! The OpenAPI document, generated from the handlers' annotations (`/api/v1/openapi.json`).

use axum::Json;
use serde::Serialize;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::http;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: crate::error::ErrorCode,
    pub message: String,
    pub field: Option<String>,
}

/// `{"error": {"code", "message"}}`
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let comps = doc.components.get_or_insert_with(Default::default);
        comps.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("aip_…")
                    .build(),
            ),
        );
        comps.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                http::extract::SESSION_COOKIE,
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "AI Proxy admin API", description = "Organizations, projects, members, API keys, provider credentials, settings, logs and usage."),
    paths(
        http::auth::login, http::auth::logout, http::auth::me,
        http::orgs::list, http::orgs::create, http::orgs::get, http::orgs::update, http::orgs::delete,
        http::members::list, http::members::add, http::members::update, http::members::remove,
        http::projects::list, http::projects::create, http::projects::get, http::projects::update, http::projects::delete,
        http::api_keys::list, http::api_keys::create, http::api_keys::revoke,
        http::providers::list_org, http::providers::create_org, http::providers::list_project, http::providers::create_project,
        http::providers::get, http::providers::update, http::providers::delete,
        http::settings::get, http::settings::put, http::settings::test,
        http::models::list, http::logs::list, http::logs::get, http::logs::usage, http::audit::list, http::nodes::list,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&Security),
    security(("bearer" = []), ("session" = [])),
)]
pub struct ApiDoc;

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented() {
        let doc = ApiDoc::openapi();
        for (method, path) in http::ROUTES {
            let item = doc
                .paths
                .paths
                .get(*path)
                .unwrap_or_else(|| panic!("{path} missing from the OpenAPI document"));
            let op = match *method {
                "get" => &item.get,
                "post" => &item.post,
                "put" => &item.put,
                "patch" => &item.patch,
                "delete" => &item.delete,
                other => panic!("unexpected method {other}"),
            };
            assert!(
                op.is_some(),
                "{method} {path} missing from the OpenAPI document"
            );
        }
        let documented: usize = doc
            .paths
            .paths
            .values()
            .map(|i| {
                [&i.get, &i.post, &i.put, &i.patch, &i.delete]
                    .iter()
                    .filter(|o| o.is_some())
                    .count()
            })
            .sum();
        assert_eq!(
            documented,
            http::ROUTES.len(),
            "the document has operations the router does not serve"
        );
    }
}

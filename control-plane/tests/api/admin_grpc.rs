//! gRPC AdminService: the same operations and rules as REST, over real gRPC.

use proto::v1 as pb;
use proto::v1::admin_service_client::AdminServiceClient;
use tonic::Code;

use crate::harness::TestApp;

fn req<T>(key: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    r
}

#[tokio::test]
async fn admin_service_mirrors_rest() {
    let app = TestApp::spawn().await;
    let addr = app.running.as_ref().unwrap().grpc_addr;
    let mut c = AdminServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let k = app.admin_key.clone();
    let me = c.get_me(req(&k, pb::Empty {})).await.unwrap().into_inner();
    assert_eq!(
        (me.kind.as_str(), me.org_id.as_str()),
        ("api_key", app.org_id.as_str())
    );
    let orgs = c
        .list_orgs(req(&k, pb::Empty {}))
        .await
        .unwrap()
        .into_inner()
        .orgs;
    assert_eq!(orgs.len(), 1);
    let p = c
        .create_project(req(
            &k,
            pb::CreateProjectRequest {
                org_id: app.org_id.clone(),
                name: "grpc-made".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.name, "grpc-made");
    let dup = c
        .create_project(req(
            &k,
            pb::CreateProjectRequest {
                org_id: app.org_id.clone(),
                name: "grpc-made".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    let prov = c
        .create_provider(req(
            &k,
            pb::CreateProviderRequest {
                project_id: p.id.clone(),
                r#type: "openai".into(),
                secret: "sk-grpc-secret-000011112222".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (prov.scope.as_str(), prov.preview_secret.as_str()),
        ("project", "sk-…2222")
    );
    let bad = c
        .create_provider(req(
            &k,
            pb::CreateProviderRequest {
                org_id: app.org_id.clone(),
                r#type: "azure".into(),
                secret: "x".repeat(20),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().contains("metadata.api_base"),
        "{}",
        bad.message()
    );
    let both = c
        .create_provider(req(
            &k,
            pb::CreateProviderRequest {
                r#type: "openai".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(both.code(), Code::InvalidArgument);
    let upd = c
        .update_provider(req(
            &k,
            pb::UpdateProviderRequest {
                id: prov.id.clone(),
                name: Some("renamed".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (upd.name.as_str(), upd.preview_secret.as_str()),
        ("renamed", "sk-…2222"),
        "no secret given: kept"
    );
    let list = c
        .list_project_providers(req(&k, pb::IdRequest { id: p.id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .providers;
    assert_eq!(list.len(), 1);
    let key = c
        .create_api_key(req(
            &k,
            pb::CreateApiKeyRequest {
                org_id: app.org_id.clone(),
                name: "g".into(),
                role: "proxy".into(),
                project_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(key.key.starts_with("aip_"));
    let denied = c
        .list_org_providers(req(
            &key.key,
            pb::IdRequest {
                id: app.org_id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        denied.code(),
        Code::PermissionDenied,
        "a proxy key is refused"
    );
    let usage = c
        .get_usage(req(
            &k,
            pb::UsageRequest {
                org_id: app.org_id.clone(),
                query: "group_by=model".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let v: serde_json::Value = serde_json::from_str(&usage.json).unwrap();
    assert_eq!(v["group_by"], "model");
    let bad_q = c
        .get_usage(req(
            &k,
            pb::UsageRequest {
                org_id: app.org_id.clone(),
                query: "group_by=color".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_q.code(), Code::InvalidArgument);
    let audit = c
        .list_audit_log(req(
            &k,
            pb::IdRequest {
                id: app.org_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(audit.json.contains("provider.update"));
    let nf = c
        .get_project(req(
            &k,
            pb::IdRequest {
                id: uuid::Uuid::now_v7().to_string(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(nf.code(), Code::NotFound);
    let unauth = c
        .list_orgs(tonic::Request::new(pb::Empty {}))
        .await
        .unwrap_err();
    assert_eq!(unauth.code(), Code::Unauthenticated);
    let wrong = c
        .list_orgs(req("aip_wrong", pb::Empty {}))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    c.delete_project(req(&k, pb::IdRequest { id: p.id.clone() }))
        .await
        .unwrap();
}

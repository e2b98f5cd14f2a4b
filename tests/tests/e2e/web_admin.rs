//! The web admin in a real browser (headless Chromium over WebDriver) against the real control
//! plane, a real data-plane node and fake providers: sign in, configure providers at org and
//! project level, add a custom provider, create an API key, send traffic through the node with
//! it, and find that traffic on the Logs page and in the dashboard. Screenshots of each page land
//! in `<target>/ui-screenshots/`.

use std::time::Duration;

use reqwest::StatusCode;
use tests::browser::Browser;
use tests::fake::openai::FakeOpenAi;
use tests::stack::{ControlPlane, Node};

#[tokio::test]
async fn web_admin_end_to_end_in_a_browser() {
    let cp = ControlPlane::start().await;
    let node = Node::start(&cp).await;
    let org_fake = FakeOpenAi::start("sk-org-web-0000000000001").await;
    let project_fake = FakeOpenAi::start("sk-proj-web-000000000002").await;
    let custom_fake = FakeOpenAi::start("sk-custom-web-0000000003").await;
    let ui = format!("http://{}/ui", cp.http_addr);
    let b = Browser::start(1280, 1800).await;

    // Signing in: a wrong password is refused on the form, the right one lands on Projects.
    b.goto(&format!("{ui}/login")).await;
    b.fill("#email", control_plane::testing::TEST_ADMIN_EMAIL)
        .await;
    b.fill("#password", "not-the-password").await;
    b.click("form button[type=submit]").await;
    b.wait_text("Wrong email or password.").await;
    b.screenshot("01-login-error").await;
    b.fill("#password", control_plane::testing::TEST_ADMIN_PASSWORD)
        .await;
    b.click("form button[type=submit]").await;
    b.wait_text("New project").await;
    assert!(b.url().await.ends_with("/projects"), "{}", b.url().await);

    // A project, created through its form.
    b.fill("#new-project", "web-e2e").await;
    b.click("form.row button[type=submit]").await;
    b.wait_text("Project created.").await;
    let (_, projects) = cp
        .api("GET", &format!("/api/v1/orgs/{}/projects", cp.org_id), None)
        .await;
    let project_id = projects
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "web-e2e")
        .expect("project created through the UI")["id"]
        .as_str()
        .unwrap()
        .to_string();
    b.screenshot("02-projects").await;

    // Org-level OpenAI key; a refused base URL (cloud metadata address) is reported next to
    // the field, then fixed.
    b.goto(&format!("{ui}/orgs/{}/providers", cp.org_id)).await;
    b.click("#provider-openai details > summary").await;
    b.fill("[id='openai-secret']", "sk-org-web-0000000000001")
        .await;
    b.fill(
        "[id='openai-metadata.api_base']",
        "http://169.254.169.254/v1",
    )
    .await;
    b.click("#provider-openai form.stack button[type=submit]")
        .await;
    let page = b.wait_text("Not saved").await;
    assert!(page.contains("api_base"), "{page}");
    assert_eq!(
        b.count("[id='openai-metadata.api_base'][aria-invalid='true']")
            .await,
        1,
        "the failing field is marked"
    );
    b.fill("[id='openai-secret']", "sk-org-web-0000000000001")
        .await;
    b.fill("[id='openai-metadata.api_base']", &org_fake.base())
        .await;
    b.click("#provider-openai form.stack button[type=submit]")
        .await;
    let page = b.wait_text("Key saved.").await;
    assert!(page.contains("sk-…0001"), "masked preview shown: {page}");
    assert!(
        !page.contains("sk-org-web-0000000000001"),
        "never the secret"
    );
    b.screenshot("03-providers-org").await;

    // Project-level OpenAI key: the org key is then marked Overridden on the project page.
    b.goto(&format!("{ui}/projects/{project_id}/providers"))
        .await;
    let page = b.wait_text("Inherited").await;
    assert!(
        page.contains("Inherited"),
        "org key inherited before: {page}"
    );
    b.click("#provider-openai details:last-of-type > summary")
        .await;
    b.fill("[id='openai-secret']", "sk-proj-web-000000000002")
        .await;
    b.fill("[id='openai-metadata.api_base']", &project_fake.base())
        .await;
    b.click("#provider-openai form.stack button[type=submit]")
        .await;
    b.wait_text("Key saved.").await;
    let row = b.text("#provider-openai table").await;
    assert!(row.contains("Overridden"), "{row}");
    assert!(row.contains("Project key"), "{row}");
    b.screenshot("04-providers-project").await;

    // A custom provider with one model in its table.
    b.goto(&format!("{ui}/orgs/{}/custom-providers", cp.org_id))
        .await;
    b.fill("#new-name", "house").await;
    b.fill("#new-base", &custom_fake.base()).await;
    b.fill("#new-secret", "sk-custom-web-0000000003").await;
    b.fill("input[name='model.name']", "house-model").await;
    b.fill("input[name='model.input_cost']", "1.5").await;
    b.fill("input[name='model.output_cost']", "3").await;
    b.click("section:last-of-type form button[type=submit]")
        .await;
    let page = b.wait_text("Custom provider saved.").await;
    assert!(
        page.contains("house") && page.contains("1 model(s)"),
        "{page}"
    );
    b.screenshot("05-custom-providers").await;

    // An API key, shown once.
    b.goto(&format!("{ui}/orgs/{}/api-keys", cp.org_id)).await;
    b.fill("#key-name", "web-key").await;
    b.click("form.row button[type=submit]").await;
    b.wait_text("shown only once").await;
    let key = b.text("#new-key").await;
    assert!(key.starts_with("aip_"), "{key}");
    b.screenshot("06-api-keys").await;
    b.goto(&format!("{ui}/orgs/{}/api-keys", cp.org_id)).await;
    let page = b.wait_text("web-key").await;
    assert!(!page.contains(&key), "the key is not shown again");

    // Traffic through the node with that key, logged to the project.
    let v = cp.current_version().await;
    node.wait_version(v).await;
    let parent = format!("project_id:{project_id}");
    let (s, _, body) = node
        .chat(&key, "gpt-4o", &[("x-bt-parent", parent.as_str())])
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(project_fake.count(), 1, "the project key served it");
    assert_eq!(org_fake.count(), 0, "the overridden org key did not");
    let (s, _, body) = node
        .chat(&key, "house-model", &[("x-bt-parent", parent.as_str())])
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(custom_fake.count(), 1);
    cp.wait_requests(2, Duration::from_secs(15)).await;

    // The Logs page lists both; the detail view shows input, output and timings.
    b.goto(&format!("{ui}/projects/{project_id}/logs")).await;
    let page = b.wait_text("house-model").await;
    assert!(page.contains("gpt-4o") && page.contains("200"), "{page}");
    b.screenshot("07-logs").await;
    b.click("#logs tbody tr:last-child a").await;
    let page = b.wait_text("Input").await;
    assert!(
        page.contains("Latency") && page.contains("Output"),
        "{page}"
    );
    assert!(b.text("#log-input").await.contains("Hi"), "{page}");
    b.screenshot("08-log-detail").await;

    // The dashboard counts them, by model and by key.
    b.goto(&format!("{ui}/orgs/{}/dashboard?range=24h", cp.org_id))
        .await;
    let totals = b.text("#totals").await;
    assert!(totals.contains("Requests\n2"), "{totals}");
    let page = b.text("body").await;
    assert!(
        page.contains("house-model") && page.contains("web-key"),
        "{page}"
    );
    assert!(
        b.count("svg.chart rect.bar").await >= 24,
        "hourly bars drawn"
    );
    b.screenshot("09-dashboard").await;

    // Settings: URLs saved, connectivity tested, snippets use the proxy URL.
    b.goto(&format!("{ui}/orgs/{}/settings", cp.org_id)).await;
    let proxy_url = node.url("/v1/proxy");
    b.fill("#proxy_url", &proxy_url).await;
    b.fill("#api_url", &format!("http://{}", cp.http_addr))
        .await;
    b.click("form.stack button[type=submit]").await;
    b.wait_text("Settings saved.").await;
    let snippet = b.text("#snip-python").await;
    assert!(snippet.contains(&proxy_url), "{proxy_url} not in {snippet}");
    b.click("#test-form button").await;
    b.wait_text("Connectivity").await;
    let results = b.text("#connectivity").await;
    assert!(results.contains("reachable"), "{results}");
    b.screenshot("10-settings").await;

    // Members: an invitation yields a one-time link; the audit log shows the changes.
    b.goto(&format!("{ui}/orgs/{}/members", cp.org_id)).await;
    b.fill("#invite-email", "new.member@example.com").await;
    b.click("form.row button[type=submit]").await;
    b.wait_text("new.member@example.com added").await;
    assert!(b.text("#invite-link").await.contains("/ui/invite/"));
    b.screenshot("11-members").await;
    b.goto(&format!("{ui}/orgs/{}/audit", cp.org_id)).await;
    let page = b.wait_text("provider.create").await;
    assert!(
        page.contains("api_key.create") && page.contains("member.add"),
        "{page}"
    );
    assert!(
        !page.contains("sk-org-web-0000000000001"),
        "no secret in the audit log"
    );
    b.screenshot("12-audit").await;

    // A narrow screen: the same page still works (navigation wraps above the content).
    b.set_size(390, 1400).await;
    b.goto(&format!("{ui}/projects/{project_id}/providers"))
        .await;
    b.wait_text("Overridden").await;
    b.screenshot("13-narrow-providers").await;

    // Signing out ends the session: pages redirect to sign-in again.
    b.set_size(1280, 900).await;
    b.goto(&format!("{ui}/orgs/{}/projects", cp.org_id)).await;
    b.click("header form button").await;
    b.wait_text("You are signed out.").await;
    b.goto(&format!("{ui}/orgs/{}/projects", cp.org_id)).await;
    b.wait_text("Sign in").await;
    assert!(b.url().await.ends_with("/ui/login"), "{}", b.url().await);
    b.quit().await;
}

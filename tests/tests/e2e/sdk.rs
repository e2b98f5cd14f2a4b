//! The official `openai` Python SDK against the proxy (installed by the test set-up).

use serde_json::json;
use tests::fake::openai::FakeOpenAi;
use tests::stack::{ControlPlane, Node};

#[tokio::test]
async fn openai_python_sdk_chat_and_stream() {
    let cp = ControlPlane::start().await;
    let fake = FakeOpenAi::start("sk-sdk-000000001").await;
    cp.org_provider(json!({"type": "openai", "secret": "sk-sdk-000000001", "metadata": {"api_base": fake.base()}})).await;
    let node = Node::start(&cp).await;
    let key = cp.key("proxy", None).await;
    node.wait_version(cp.current_version().await).await;
    let script = r#"
import json, os, openai
c = openai.OpenAI(base_url=os.environ["BASE"], api_key=os.environ["KEY"], max_retries=0)
r = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
out = {"content": r.choices[0].message.content, "prompt_tokens": r.usage.prompt_tokens}
s = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], stream=True, stream_options={"include_usage": True})
parts, usage = [], None
for ch in s:
    if ch.choices and ch.choices[0].delta.content:
        parts.append(ch.choices[0].delta.content)
    if ch.usage:
        usage = ch.usage.total_tokens
out["streamed"] = "".join(parts)
out["stream_usage"] = usage
e = c.embeddings.create(model="text-embedding-3-small", input="hello")
out["embedding_dims"] = len(e.data[0].embedding)
try:
    c.chat.completions.create(model="gpt-unknown", messages=[])
except openai.NotFoundError as err:
    out["not_found"] = err.status_code
print(json.dumps(out))
"#;
    let (ok, stdout, stderr) =
        tests::python::run(script, &[("BASE", node.url("/v1/proxy")), ("KEY", key)]).await;
    assert!(
        ok,
        "python failed: {stderr}\nfake saw {} requests: {:?}\nnode logs:\n{}",
        fake.count(),
        fake.requests()
            .iter()
            .map(|r| (&r.path, &r.headers))
            .collect::<Vec<_>>(),
        node.logs.text()
    );
    let out: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(out["content"], "Hello from the fake!");
    assert_eq!(out["prompt_tokens"], 11);
    assert_eq!(out["streamed"], "Hello from the fake!");
    assert_eq!(out["stream_usage"], 18);
    assert_eq!(
        out["embedding_dims"], 3,
        "base64 embeddings decode to the right size (edge case 21)"
    );
    assert_eq!(out["not_found"], 404);
}

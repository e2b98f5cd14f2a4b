//! Translation end to end: OpenAI-format clients reaching Anthropic, Gemini and Bedrock fakes
//! (plain, streamed, tool calls, errors), and Anthropic-format clients (the official
//! `anthropic` Python SDK) reaching any chat model through `/v1/proxy/anthropic`.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::fake::openai::FakeOpenAi;
use tests::fake::providers::{FakeProvider, Reply};
use tests::sse;
use tests::stack::{ControlPlane, Node};

async fn stack(provider: Value) -> (ControlPlane, Node, String) {
    let cp = ControlPlane::start().await;
    cp.org_provider(provider).await;
    let node = Node::start(&cp).await;
    let key = cp.key("proxy", None).await;
    node.wait_version(cp.current_version().await).await;
    (cp, node, key)
}

async fn post_raw(node: &Node, path: &str, key: &str, body: Value) -> (StatusCode, String) {
    let r = reqwest::Client::new()
        .post(node.url(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status();
    (s, r.text().await.unwrap())
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}}}])
}

/// The tool calls of a chat stream, reassembled per index: (id, name, arguments).
fn streamed_tool_calls(body: &str) -> Vec<(String, String, String)> {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for c in sse::chunks(body) {
        for tc in c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = tc["index"].as_u64().unwrap() as usize;
            if calls.len() <= i {
                calls.resize(i + 1, Default::default());
            }
            if let Some(id) = tc["id"].as_str() {
                calls[i].0 = id.into();
            }
            if let Some(n) = tc["function"]["name"].as_str() {
                calls[i].1.push_str(n);
            }
            if let Some(a) = tc["function"]["arguments"].as_str() {
                calls[i].2.push_str(a);
            }
        }
    }
    calls
}

fn finish_reason(body: &str) -> Option<String> {
    sse::chunks(body)
        .iter()
        .filter_map(|c| {
            c["choices"][0]["finish_reason"]
                .as_str()
                .map(str::to_string)
        })
        .next_back()
}

fn usage(body: &str) -> Value {
    sse::chunks(body)
        .iter()
        .rev()
        .find(|c| c["usage"].is_object())
        .map(|c| c["usage"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn openai_clients_reach_anthropic() {
    let fake = FakeProvider::anthropic("sk-ant-fake-0000000001").await;
    let (cp, node, key) = stack(json!({"type": "anthropic", "secret": "sk-ant-fake-0000000001", "metadata": {"api_base": fake.base()}})).await;
    let chat = "/v1/proxy/chat/completions";

    // Plain answer: system hoisted to the top level, max_tokens filled in, usage mapped.
    let (s, _, b) = node
        .post(chat, &key, json!({"model": "claude-sonnet-4-5", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "developer", "content": "No emoji."}, {"role": "user", "content": "there"}]}), &[])
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["object"], "chat.completion");
    assert_eq!(b["model"], "claude-sonnet-4-5");
    assert_eq!(
        b["choices"][0]["message"]["content"],
        "Hello from the fake!"
    );
    assert_eq!(b["choices"][0]["finish_reason"], "stop");
    assert_eq!(b["usage"]["prompt_tokens"], 21);
    assert_eq!(b["usage"]["completion_tokens"], 9);
    let r = fake.last().unwrap();
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some("sk-ant-fake-0000000001"));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert!(
        r.header("authorization").is_none(),
        "the caller's key never goes upstream"
    );
    assert_eq!(r.body["system"][0]["text"], "Be brief.", "{}", r.body);
    assert_eq!(
        r.body["system"][1]["text"], "No emoji.",
        "every system/developer message is kept"
    );
    assert!(r.body["max_tokens"].as_u64().unwrap() > 0);
    assert_eq!(r.body["messages"].as_array().unwrap().len(), 1);

    // Streaming with usage.
    let (s, text) = post_raw(&node, chat, &key, json!({"model": "claude-sonnet-4-5", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "Hi"}]})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(sse::content(&text), "Hello from the fake!", "{text}");
    assert_eq!(finish_reason(&text).as_deref(), Some("stop"));
    assert_eq!(usage(&text)["prompt_tokens"], 21, "{text}");
    assert_eq!(
        sse::data_events(&text).last().map(String::as_str),
        Some("[DONE]")
    );

    // Tool calls, non-streamed and streamed: arguments are JSON strings, finish is tool_calls.
    let tools = Reply::Tools(vec![
        ("get_weather".into(), json!({"city": "Paris"})),
        ("get_time".into(), json!({})),
    ]);
    fake.push(tools.clone());
    let (s, _, b) = node
        .post(chat, &key, json!({"model": "claude-sonnet-4-5", "tools": weather_tool(), "messages": [{"role": "user", "content": "Weather?"}]}), &[])
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let calls = b["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    assert_eq!(b["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        fake.last().unwrap().body["tools"][0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );
    fake.push(tools);
    let (s, text) = post_raw(&node, chat, &key, json!({"model": "claude-sonnet-4-5", "stream": true, "tools": weather_tool(), "messages": [{"role": "user", "content": "Weather?"}]})).await;
    assert_eq!(s, StatusCode::OK);
    let calls = streamed_tool_calls(&text);
    assert_eq!(calls.len(), 2, "{text}");
    assert_eq!(calls[0].1, "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(&calls[0].2).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(calls[1].1, "get_time");
    assert_eq!(finish_reason(&text).as_deref(), Some("tool_calls"));

    // The tool loop continues: the assistant's call and the tool's result go back as
    // tool_use / tool_result blocks the fake accepts (it rejects unanswered tool_use).
    let (s, _, b) = node
        .post(chat, &key, json!({"model": "claude-sonnet-4-5", "tools": weather_tool(), "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "21C"}]}), &[])
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let sent = fake.last().unwrap().body;
    assert_eq!(sent["messages"][1]["content"][0]["type"], "tool_use");
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");

    // Overloaded (529) reaches OpenAI clients as a retryable 503 in OpenAI's error shape.
    fake.push(Reply::Error(529));
    let (s, _, b) = node.chat(&key, "claude-sonnet-4-5", &[]).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    assert!(b["error"]["message"].is_string(), "{b}");
    assert!(
        !b.to_string().contains("sk-ant-fake"),
        "no secret in errors: {b}"
    );

    // A 200 that is not JSON is a 502 the client can retry, carrying the call's own headers
    // (request id, attempts, log id, the credential used) like any other answer.
    fake.push(Reply::Malformed);
    let (s, h, b) = node
        .chat(
            &key,
            "claude-sonnet-4-5",
            &[("x-request-id", "req-malformed")],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    assert_eq!(b["error"]["code"], "upstream_bad_response", "{b}");
    assert_eq!(h["x-request-id"], "req-malformed");
    assert_eq!(h["x-bt-attempts"], "1");
    assert!(h.contains_key("x-bt-log-id"), "{h:?}");
    assert!(h.contains_key("x-bt-used-endpoint"), "{h:?}");

    // A mid-stream error event becomes an OpenAI error event; no [DONE] after it.
    fake.push(Reply::StreamError);
    let (s, text) = post_raw(&node, chat, &key, json!({"model": "claude-sonnet-4-5", "stream": true, "messages": [{"role": "user", "content": "Hi"}]})).await;
    assert_eq!(s, StatusCode::OK);
    let events = sse::data_events(&text);
    assert!(events.iter().any(|e| e.contains("\"error\"")), "{text}");
    assert_ne!(events.last().map(String::as_str), Some("[DONE]"), "{text}");

    // A custom provider of format `anthropic` uses the same translator (and x-api-key auth).
    let proj = cp.project("custom-claude").await;
    cp.project_provider(&proj, json!({"type": "custom", "name": "house-claude", "secret": "sk-ant-fake-0000000001",
        "metadata": {"api_base": fake.base(), "format": "anthropic", "custom_models": {"house-model": {"flavor": "chat"}}}})).await;
    let pkey = cp.key("proxy", Some(&proj)).await;
    node.wait_version(cp.current_version().await).await;
    let (s, h, b) = node.chat(&pkey, "house-model", &[]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["choices"][0]["message"]["content"],
        "Hello from the fake!"
    );
    assert_eq!(h["x-bt-used-endpoint"], "house-claude");
    let r = fake.last().unwrap();
    assert_eq!(r.body["model"], "house-model");
    assert_eq!(r.header("x-api-key"), Some("sk-ant-fake-0000000001"));
}

#[tokio::test]
async fn openai_sdk_reaches_gemini() {
    let fake = FakeProvider::gemini("AIza-fake-gemini-000001").await;
    let (_cp, node, key) = stack(json!({"type": "google", "secret": "AIza-fake-gemini-000001", "metadata": {"api_base": fake.base()}})).await;
    fake.push(Reply::Text("Hello from the fake!".into()));
    fake.push(Reply::Text("Hello from the fake!".into()));
    fake.push(Reply::Tools(vec![
        ("get_weather".into(), json!({"city": "Paris"})),
        ("get_weather".into(), json!({"city": "Rome"})),
    ]));
    let script = r#"
import json, os, openai
c = openai.OpenAI(base_url=os.environ["BASE"], api_key=os.environ["KEY"], max_retries=0)
out = {}
r = c.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
out["content"] = r.choices[0].message.content
out["usage"] = [r.usage.prompt_tokens, r.usage.completion_tokens]
s = c.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "Hi"}], stream=True, stream_options={"include_usage": True})
parts, usage = [], None
for ch in s:
    if ch.choices and ch.choices[0].delta.content:
        parts.append(ch.choices[0].delta.content)
    if ch.usage:
        usage = ch.usage.total_tokens
out["streamed"] = "".join(parts)
out["stream_usage"] = usage
tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "title": "W", "properties": {"city": {"type": "string", "default": "Paris"}}, "additionalProperties": False}}}]
s = c.chat.completions.create(model="gemini-2.5-flash", messages=[{"role": "user", "content": "Weather in Paris and Rome?"}], tools=tools, stream=True)
calls, finish = {}, None
for ch in s:
    if not ch.choices:
        continue
    for tc in ch.choices[0].delta.tool_calls or []:
        d = calls.setdefault(tc.index, {"id": None, "name": "", "args": ""})
        d["id"] = tc.id or d["id"]
        d["name"] += tc.function.name or ""
        d["args"] += tc.function.arguments or ""
    finish = ch.choices[0].finish_reason or finish
out["calls"] = [calls[i] for i in sorted(calls)]
out["finish"] = finish
print(json.dumps(out))
"#;
    let (ok, stdout, stderr) = tests::python::run(
        script,
        &[("BASE", node.url("/v1/proxy")), ("KEY", key.clone())],
    )
    .await;
    assert!(
        ok,
        "python failed: {stderr}\nnode logs:\n{}",
        node.logs.text()
    );
    let out: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(out["content"], "Hello from the fake!");
    assert_eq!(out["usage"], json!([13, 5]));
    assert_eq!(out["streamed"], "Hello from the fake!");
    assert_eq!(out["stream_usage"], 18);
    let calls = out["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{out}");
    assert_ne!(
        calls[0]["id"], calls[1]["id"],
        "each parallel call has its own id and index"
    );
    assert_eq!(
        serde_json::from_str::<Value>(calls[1]["args"].as_str().unwrap()).unwrap(),
        json!({"city": "Rome"})
    );
    assert_eq!(
        out["finish"], "tool_calls",
        "a function-call answer ends with tool_calls, not stop"
    );

    let reqs = fake.requests();
    assert_eq!(
        reqs[0].path,
        "/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(
        reqs[0].header("x-goog-api-key"),
        Some("AIza-fake-gemini-000001")
    );
    assert_eq!(
        reqs[0].body["systemInstruction"]["parts"][0]["text"],
        "Be brief."
    );
    assert_eq!(
        reqs[1].path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    );
    assert!(reqs[1].query.contains("alt=sse"));
    // The fake rejects unknown schema keywords: the proxy sanitized them.
    assert!(reqs[2].body["tools"][0]["functionDeclarations"][0].is_object());

    // A blocked prompt is the client's problem: 400 naming the reason, never a 500.
    fake.push(Reply::Blocked);
    let (s, _, b) = node.chat(&key, "gemini-2.5-flash", &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("SAFETY"),
        "{b}"
    );
    // Gemini's 429 (RESOURCE_EXHAUSTED with RetryInfo) is read as a rate limit: the proxy
    // waits out the 1 s delay and retries instead of failing the call.
    fake.push(Reply::Error(429));
    let (s, h, b) = node.chat(&key, "gemini-2.5-flash", &[]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(h["x-bt-attempts"], "2");
}

#[tokio::test]
async fn openai_clients_reach_bedrock_with_sigv4_and_api_keys() {
    let fake = FakeProvider::bedrock("AKIDFAKEEXAMPLE", "fake/secret+key0000000001").await;
    let (cp, node, key) = stack(json!({"type": "bedrock", "secret": "fake/secret+key0000000001",
        "metadata": {"api_base": fake.base(), "region": "us-west-2", "access_key_id": "AKIDFAKEEXAMPLE"}})).await;
    let model = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
    let chat = "/v1/proxy/chat/completions";
    // Consecutive user messages and an empty one: the fake rejects both unless merged/dropped.
    let (s, _, b) = node
        .post(chat, &key, json!({"model": model, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "user", "content": ""}, {"role": "user", "content": "there"}]}), &[])
        .await;
    assert_eq!(s, StatusCode::OK, "{b}\n{}", node.logs.text());
    assert_eq!(
        b["choices"][0]["message"]["content"],
        "Hello from the fake!"
    );
    assert_eq!(b["usage"]["total_tokens"], 23);
    let r = fake.last().unwrap();
    assert_eq!(
        r.path,
        "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
    );
    assert!(
        r.header("authorization")
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256 Credential=AKIDFAKEEXAMPLE/")
    );
    assert!(
        r.header("authorization")
            .unwrap()
            .contains("/us-west-2/bedrock/aws4_request")
    );
    assert_eq!(r.body["system"][0]["text"], "Be brief.");

    // Streamed: binary event-stream frames split at arbitrary points, usage after messageStop.
    let (s, text) = post_raw(&node, chat, &key, json!({"model": model, "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "Hi"}]})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(sse::content(&text), "Hello from the fake!", "{text}");
    assert_eq!(usage(&text)["total_tokens"], 23, "{text}");
    assert_eq!(
        sse::data_events(&text).last().map(String::as_str),
        Some("[DONE]")
    );

    // Streamed tool calls.
    fake.push(Reply::Tools(vec![(
        "get_weather".into(),
        json!({"city": "Paris"}),
    )]));
    let (s, text) = post_raw(&node, chat, &key, json!({"model": model, "stream": true, "tools": weather_tool(), "messages": [{"role": "user", "content": "Weather?"}]})).await;
    assert_eq!(s, StatusCode::OK);
    let calls = streamed_tool_calls(&text);
    assert_eq!(calls.len(), 1, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&calls[0].2).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(finish_reason(&text).as_deref(), Some("tool_calls"));

    // An in-stream exception ends the stream with an error event.
    fake.push(Reply::StreamError);
    let (s, text) = post_raw(
        &node,
        chat,
        &key,
        json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        sse::data_events(&text)
            .iter()
            .any(|e| e.contains("\"error\"")),
        "{text}"
    );

    // ThrottlingException is read as a rate limit: waited out and retried.
    fake.push(Reply::Error(429));
    let (s, h, b) = node.chat(&key, model, &[]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(h["x-bt-attempts"], "2");

    // A Bedrock API key (auth_type api_key) goes as a Bearer token; a wrong one is the
    // provider rejecting the credential (502), never the caller's 401.
    let proj = cp.project("bedrock-key").await;
    cp.project_provider(&proj, json!({"type": "bedrock", "secret": "fake/secret+key0000000001", "metadata": {"api_base": fake.base(), "region": "us-east-1", "auth_type": "api_key"}})).await;
    let pkey = cp.key("proxy", Some(&proj)).await;
    node.wait_version(cp.current_version().await).await;
    let (s, _, b) = node.chat(&pkey, model, &[]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        fake.last().unwrap().header("authorization"),
        Some("Bearer fake/secret+key0000000001")
    );
    let proj2 = cp.project("bedrock-bad").await;
    cp.project_provider(&proj2, json!({"type": "bedrock", "secret": "wrong-secret-000000001", "metadata": {"api_base": fake.base(), "region": "us-east-1", "access_key_id": "AKIDFAKEEXAMPLE"}})).await;
    let bkey = cp.key("proxy", Some(&proj2)).await;
    node.wait_version(cp.current_version().await).await;
    let (s, _, b) = node.chat(&bkey, model, &[]).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
    assert!(!b.to_string().contains("wrong-secret"), "{b}");
}

#[tokio::test]
async fn anthropic_sdk_reaches_openai_and_anthropic_models() {
    let cp = ControlPlane::start().await;
    let oai = FakeOpenAi::start("sk-oai-fake-000000001").await;
    let ant = FakeProvider::anthropic("sk-ant-fake-0000000002").await;
    cp.org_provider(json!({"type": "openai", "secret": "sk-oai-fake-000000001", "metadata": {"api_base": oai.base()}})).await;
    cp.org_provider(json!({"type": "anthropic", "secret": "sk-ant-fake-0000000002", "metadata": {"api_base": format!("{}/v1", ant.base())}})).await;
    let node = Node::start(&cp).await;
    let key = cp.key("proxy", None).await;
    node.wait_version(cp.current_version().await).await;
    let script = r#"
import json, os, anthropic
c = anthropic.Anthropic(base_url=os.environ["BASE"], api_key=os.environ["KEY"], max_retries=0)
out = {}
for model in ["gpt-4o", "claude-sonnet-4-5"]:
    r = c.messages.create(model=model, max_tokens=100, system="Be brief.", messages=[{"role": "user", "content": "Hi"}])
    text = ""
    with c.messages.stream(model=model, max_tokens=100, messages=[{"role": "user", "content": "Hi"}]) as s:
        for t in s.text_stream:
            text += t
        final = s.get_final_message()
    out[model] = {"type": r.type, "role": r.role, "text": r.content[0].text, "stop": r.stop_reason,
                  "input_tokens": r.usage.input_tokens, "streamed": text, "stream_stop": final.stop_reason,
                  "stream_output_tokens": final.usage.output_tokens}
try:
    c.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "Hi"}])
except anthropic.NotFoundError as e:
    out["not_found"] = [e.status_code, e.body["error"]["type"]]
try:
    c.messages.create(model="gpt-4o", max_tokens=10, messages=[{"role": "tool", "content": "Hi"}])
except anthropic.BadRequestError as e:
    out["bad_request"] = [e.status_code, e.body["type"], e.body["error"]["type"]]
print(json.dumps(out))
"#;
    let (ok, stdout, stderr) = tests::python::run(
        script,
        &[
            ("BASE", node.url("/v1/proxy/anthropic")),
            ("KEY", key.clone()),
        ],
    )
    .await;
    assert!(
        ok,
        "python failed: {stderr}\nnode logs:\n{}",
        node.logs.text()
    );
    let out: Value = serde_json::from_str(stdout.trim()).unwrap();
    for model in ["gpt-4o", "claude-sonnet-4-5"] {
        let m = &out[model];
        assert_eq!(m["type"], "message", "{model}: {out}");
        assert_eq!(m["role"], "assistant");
        assert_eq!(m["text"], "Hello from the fake!", "{model}");
        assert_eq!(m["stop"], "end_turn", "{model}");
        assert!(m["input_tokens"].as_u64().unwrap() > 0, "{model}: {m}");
        assert_eq!(m["streamed"], "Hello from the fake!", "{model}");
        assert_eq!(m["stream_stop"], "end_turn", "{model}");
        assert!(
            m["stream_output_tokens"].as_u64().unwrap() > 0,
            "{model}: {m}"
        );
    }
    assert_eq!(out["not_found"], json!([404, "not_found_error"]));
    assert_eq!(
        out["bad_request"],
        json!([400, "error", "invalid_request_error"])
    );
    // To OpenAI the request went as a chat completion with the system message first.
    let r = oai.requests().into_iter().next().unwrap();
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.body["messages"][0]["role"], "system");
    // To Anthropic it went natively (the client's body, model and auth rewritten).
    let r = ant.requests().into_iter().next().unwrap();
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.body["system"], "Be brief.");
    assert_eq!(r.body["max_tokens"], 100);
    assert_eq!(r.header("x-api-key"), Some("sk-ant-fake-0000000002"));
    assert!(
        !r.headers
            .values()
            .any(|v| v.to_str().unwrap_or("").contains(&key))
    );
}

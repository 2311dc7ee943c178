//! Interoperability with MCP implementations we did not write, through the real binary:
//! the TypeScript SDK's reference server (`@modelcontextprotocol/server-everything`) as an
//! upstream next to the rmcp fixture, the Python `mcp` SDK as the downstream client, and a
//! hand-written stdio server whose results no SDK would write as they are.
//!
//! The peers are installed by `scripts/test` (see `peers.rs`); a missing peer fails the
//! test. Everything runs over stdio pipes, so no network is involved at all.

#![allow(deprecated)]

use std::time::Duration;

use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams, Tool};
use serde_json::{Value, json};

use crate::{peers, support::*};

/// server-everything behind the bridge next to a fixture upstream named `fix`.
///
/// `startupTimeout` is raised so a slow Node start on a loaded machine is still inside
/// the first `tools/list`; [`start_everything`] also waits for the tools explicitly.
fn everything_config() -> Value {
    json!({
        "mcpServers": {
            "everything": peers::everything_stdio(),
            "fix": fixture("fix", &[]),
        },
        "bridge": { "startupTimeout": 60 },
    })
}

/// Start the bridge with [`everything_config`] and wait until both upstreams' tools are
/// listed. server-everything registers its sampling, elicitation and roots triggers only
/// after `initialized` (and only because the bridge declares those capabilities upstream),
/// so the wait includes one of them.
async fn start_everything(env: &TestEnv) -> (Session, Vec<Tool>) {
    env.write_config(&everything_config());
    let session = Session::start(env).await;
    let tools = wait_for_tools(
        env,
        &session,
        &["fix__echo", "everything__echo", "everything__trigger-sampling-request"],
        String::new,
    )
    .await;
    (session, tools)
}

// ---------------------------------------------------------------------------------------
// server-everything (TypeScript SDK) as an upstream, driven by the rmcp test client.

#[tokio::test]
async fn everything_tools_are_listed_with_its_prefix_next_to_the_fixture() {
    let env = TestEnv::new();
    let (session, tools) = start_everything(&env).await;
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    for expected in [
        "everything__echo",
        "everything__get-sum",
        "everything__get-structured-content",
        "everything__trigger-long-running-operation",
        "everything__trigger-sampling-request",
        "everything__trigger-elicitation-request",
        "everything__get-roots-list",
        "fix__echo",
        "fix__slow",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    for name in &names {
        assert!(name.starts_with("everything__") || name.starts_with("fix__"), "unprefixed tool {name}");
    }
    assert!(!names.contains(&"echo"), "upstream names are never exposed bare: {names:?}");

    // Metadata written by the TypeScript SDK passes through unchanged.
    let echo = tools.iter().find(|tool| tool.name == "everything__echo").expect("everything__echo");
    assert_eq!(echo.title.as_deref(), Some("Echo Tool"));
    assert_eq!(echo.description.as_deref(), Some("Echoes back the input string"));
    assert_eq!(echo.annotations.as_ref().and_then(|annotations| annotations.read_only_hint), Some(true));
    let schema = Value::Object((*echo.input_schema).clone());
    assert_eq!(schema["properties"]["message"]["type"], "string", "{schema}");
    let structured = tools
        .iter()
        .find(|tool| tool.name == "everything__get-structured-content")
        .expect("everything__get-structured-content");
    assert!(structured.output_schema.is_some(), "outputSchema passes through");
    session.close().await;
}

#[tokio::test]
async fn everything_echo_and_fixture_echo_both_answer() {
    let env = TestEnv::new();
    let (session, _) = start_everything(&env).await;
    let echoed = peer_call(&session, "everything__echo", json!({"message": "through the bridge"})).await;
    assert_eq!(text_of(&echoed), "Echo: through the bridge");
    assert_ne!(echoed.is_error, Some(true));

    let sum = peer_call(&session, "everything__get-sum", json!({"a": 2, "b": 40})).await;
    assert!(text_of(&sum).contains("42"), "{}", text_of(&sum));

    let fixture = peer_call(&session, "fix__echo", json!({"message": "next door"})).await;
    assert_eq!(text_of(&fixture), "fix: next door");
    session.close().await;
}

#[tokio::test]
async fn everything_structured_content_passes_through() {
    let env = TestEnv::new();
    let (session, _) = start_everything(&env).await;
    let result =
        peer_call(&session, "everything__get-structured-content", json!({"location": "New York"})).await;
    let structured = result.structured_content.clone().expect("structuredContent");
    assert!(structured.get("temperature").is_some_and(Value::is_number), "{structured}");
    assert!(structured.get("conditions").is_some_and(Value::is_string), "{structured}");
    // The backward-compatible text block carries the same object as JSON.
    let text: Value = serde_json::from_str(&text_of(&result)).expect("text content is JSON");
    assert_eq!(text, structured);
    session.close().await;
}

#[tokio::test]
async fn everything_long_running_operation_reports_progress() {
    let env = TestEnv::new();
    let (session, _) = start_everything(&env).await;
    // `duration` is in seconds, split evenly over `steps`.
    let result =
        peer_call(&session, "everything__trigger-long-running-operation", json!({"duration": 1, "steps": 4}))
            .await;
    assert_eq!(text_of(&result), "Long running operation completed. Duration: 1 seconds, Steps: 4.");
    let progress: Vec<(f64, Option<f64>)> =
        session.client.seen().progress.iter().map(|progress| (progress.progress, progress.total)).collect();
    assert_eq!(
        progress,
        vec![(1.0, Some(4.0)), (2.0, Some(4.0)), (3.0, Some(4.0)), (4.0, Some(4.0))],
        "every progress notification, in order, before the result"
    );
    session.close().await;
}

#[tokio::test]
async fn everything_resources_and_templates_are_read() {
    let env = TestEnv::new();
    let (session, _) = start_everything(&env).await;

    let resources = session.service.list_all_resources().await.expect("resources/list");
    let uris: Vec<&str> = resources.iter().map(|resource| resource.uri.as_str()).collect();
    let features = "demo://resource/static/document/features.md";
    assert!(uris.contains(&features), "{uris:?}");
    assert!(uris.contains(&"fixture://fix/static"), "the fixture's resources are listed too: {uris:?}");

    let read = session
        .service
        .read_resource(ReadResourceRequestParams::new(features))
        .await
        .expect("resources/read");
    let (uri, text) = text_contents(&read.contents[0]);
    assert_eq!(uri, features);
    assert_eq!(text, peers::read_text(&peers::server_everything_docs().join("features.md")));

    let templates = session.service.list_all_resource_templates().await.expect("resources/templates/list");
    let patterns: Vec<&str> = templates.iter().map(|template| template.uri_template.as_str()).collect();
    assert!(patterns.contains(&"demo://resource/dynamic/text/{resourceId}"), "{patterns:?}");
    let dynamic = session
        .service
        .read_resource(ReadResourceRequestParams::new("demo://resource/dynamic/text/7"))
        .await
        .expect("resources/read of a template URI");
    let (uri, text) = text_contents(&dynamic.contents[0]);
    assert_eq!(uri, "demo://resource/dynamic/text/7");
    assert!(text.starts_with("Resource 7: This is a plaintext resource created at"), "{text}");
    session.close().await;
}

#[tokio::test]
async fn everything_prompts_and_completions_pass_through() {
    let env = TestEnv::new();
    let (session, _) = start_everything(&env).await;
    let prompts = session.service.list_all_prompts().await.expect("prompts/list");
    let names: Vec<&str> = prompts.iter().map(|prompt| prompt.name.as_str()).collect();
    for expected in [
        "everything__simple-prompt",
        "everything__args-prompt",
        "everything__completable-prompt",
        "fix__greet",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }

    let arguments =
        json!({"city": "Lisbon", "state": "Estremadura"}).as_object().cloned().unwrap_or_default();
    let prompt = session
        .service
        .get_prompt(GetPromptRequestParams::new("everything__args-prompt").with_arguments(arguments))
        .await
        .expect("prompts/get");
    let messages = serde_json::to_value(&prompt.messages).expect("encode messages");
    assert_eq!(
        messages,
        json!([{"role": "user", "content": {"type": "text", "text": "What's weather in Lisbon, Estremadura?"}}])
    );

    let completion = session
        .service
        .complete_prompt_simple("everything__completable-prompt", "department", "Eng")
        .await
        .expect("completion/complete");
    assert_eq!(completion, vec!["Engineering".to_owned()]);
    session.close().await;
}

#[tokio::test]
async fn everything_sampling_is_answered_by_the_client() {
    let env = TestEnv::new();
    let (session, _) = start_everything(&env).await;
    let result = peer_call(
        &session,
        "everything__trigger-sampling-request",
        json!({"prompt": "write a haiku", "maxTokens": 17}),
    )
    .await;
    let text = text_of(&result);
    assert_ne!(result.is_error, Some(true), "{text}");
    assert!(text.starts_with("LLM sampling result:"), "{text}");
    // The upstream prints the client's whole CreateMessageResult as JSON.
    let reply: Value = serde_json::from_str(text.trim_start_matches("LLM sampling result:").trim())
        .unwrap_or_else(|error| panic!("sampling result is not JSON ({error}): {text}"));
    assert_eq!(reply["content"]["text"], "sampled-by-test-client", "{reply}");
    assert_eq!(reply["model"], "test-model", "{reply}");

    let requests = session.client.seen().sampling_requests.clone();
    assert_eq!(requests.len(), 1, "one sampling request reached the client");
    let request = &requests[0];
    assert_eq!(request.max_tokens, 17);
    assert_eq!(request.system_prompt.as_deref(), Some("You are a helpful test server."));
    let messages = serde_json::to_value(&request.messages).expect("encode messages");
    assert_eq!(
        messages[0]["content"]["text"], "Resource trigger-sampling-request context: write a haiku",
        "{messages}"
    );
    session.close().await;
}

#[tokio::test]
async fn everything_elicitation_is_answered_by_the_client() {
    let env = TestEnv::new();
    let (session, _) = start_everything(&env).await;
    let result = peer_call(&session, "everything__trigger-elicitation-request", json!({})).await;
    let text = text_of(&result);
    assert_ne!(result.is_error, Some(true), "{text}");
    assert!(text.contains("User provided the requested information!"), "{text}");
    // The upstream appends the raw ElicitResult it received: the client's answer.
    let raw = text.split("Raw result:").nth(1).unwrap_or_else(|| panic!("no raw result in {text}"));
    let raw: Value =
        serde_json::from_str(raw.trim()).unwrap_or_else(|error| panic!("raw result ({error}): {text}"));
    assert_eq!(raw, json!({"action": "accept", "content": {"answer": "42"}}));
    assert_eq!(session.client.seen().elicitations, 1);
    session.close().await;
}

#[tokio::test]
async fn everything_roots_come_from_the_client() {
    let env = TestEnv::new();
    let (session, _) = start_everything(&env).await;
    let result = peer_call(&session, "everything__get-roots-list", json!({})).await;
    let text = text_of(&result);
    assert_ne!(result.is_error, Some(true), "{text}");
    assert!(text.contains("Current MCP Roots (2 total)"), "{text}");
    assert!(text.contains("URI: file:///tmp/root-a"), "{text}");
    assert!(text.contains("URI: file:///tmp/root-b"), "{text}");
    assert!(session.client.seen().roots_requests >= 1, "the roots came from the client");
    session.close().await;
}

// ---------------------------------------------------------------------------------------
// The Python `mcp` SDK as the client of `foxxy-bridge stdio`.

#[tokio::test]
async fn python_sdk_client_drives_the_bridge() {
    let env = TestEnv::new();
    let config = env.write_config(&json!({ "mcpServers": { "fix": fixture("fix", &[]) } }));
    let mut command = tokio::process::Command::new(peers::python());
    command
        .arg(peers::peer_script("python_client.py"))
        .arg(bridge_bin())
        .arg(&config)
        .env("FOXXY_BRIDGE_HOME", env.home())
        .env_remove("FOXXY_BRIDGE_CONFIG")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("python client finished within 120 s")
        .expect("run python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python client failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    let summary: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|error| panic!("summary is not JSON ({error}): {stdout}\nstderr: {stderr}"));

    assert_eq!(summary["server_name"], "foxxy-bridge", "{summary}");
    assert_eq!(summary["protocol_version"], "2025-11-25", "{summary}");
    let tools: Vec<&str> =
        summary["tools"].as_array().expect("tools").iter().filter_map(Value::as_str).collect();
    for expected in ["fix__echo", "fix__slow", "fix__sample"] {
        assert!(tools.contains(&expected), "{expected} missing from {tools:?}");
    }
    assert_eq!(summary["echo"], json!({"is_error": false, "text": "fix: from python"}), "{summary}");
    assert_eq!(summary["slow"], json!({"is_error": false, "text": "fix: done 3 steps"}), "{summary}");
    assert_eq!(
        summary["progress"],
        json!([
            {"progress": 1.0, "total": 3.0, "message": "step 0"},
            {"progress": 2.0, "total": 3.0, "message": "step 1"},
            {"progress": 3.0, "total": 3.0, "message": "step 2"},
        ]),
        "progress reached the Python client in order: {summary}"
    );
    assert_eq!(
        summary["sample"],
        json!({"is_error": false, "text": "fix: sampled: sampled-by-python-client"}),
        "{summary}"
    );
    assert_eq!(summary["sampling_requests"], json!([["hello from python"]]), "{summary}");
    assert_eq!(
        summary["resource"],
        json!([{"uri": "fixture://fix/static", "text": "static resource of fix"}]),
        "{summary}"
    );
    assert_eq!(summary["prompt"], json!(["Hello Py from fix"]), "{summary}");
    let resources = summary["resources"].as_array().expect("resources");
    assert!(resources.contains(&json!("fixture://fix/static")), "{summary}");
}

// ---------------------------------------------------------------------------------------
// A stdio server written by hand (`tests/peers/results_server.py`), whose results no SDK
// would produce as they are.

#[tokio::test]
async fn a_hand_written_servers_results_reach_a_pre_2026_client_in_its_shape() {
    let env = TestEnv::new();
    let server = json!({ "command": peers::python(), "args": [peers::peer_script("results_server.py")] });
    env.write_config(&json!({ "mcpServers": { "res": server } }));
    let mut raw = RawSession::start(&env).await;
    raw.initialize().await;
    raw.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
    let listed = raw.response(&json!(1)).await;
    assert_eq!(listed["result"]["tools"].as_array().map(Vec::len), Some(7), "{listed}");
    let mut call = async |id: i64, tool: &str| {
        raw.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": format!("res__{tool}"), "arguments": {"n": [1, {"deep": "\u{e9}"}]}}}))
            .await;
        raw.response(&json!(id)).await
    };

    // In shape already: relayed as the server wrote it, fields and a content type rmcp
    // does not know included (decoding would have dropped the first and failed on the second).
    let verbatim = call(2, "verbatim").await;
    assert_eq!(
        verbatim["result"],
        json!({
            "content": [
                {"type": "text", "text": "caf\u{e9} \u{2603}", "x-block-extra": 1},
                {"type": "hologram", "frames": 3},
            ],
            "isError": false,
            "_meta": {"k": "v"},
            "x-result-extra": [1, {"a": null}],
        }),
        "{verbatim}"
    );
    // 2026-07-28 shapes are turned into what a 2025-06-18 client expects.
    assert_eq!(call(3, "complete").await["result"], json!({"content": [{"type": "text", "text": "c"}]}));
    assert_eq!(call(4, "listed").await["result"], json!({"content": [{"type": "text", "text": "[1,2]"}]}));
    assert_eq!(call(5, "bare").await["result"], json!({"content": [], "isError": true}));
    // An error answer passes through unchanged.
    let failed = call(6, "fails").await;
    assert_eq!(
        failed["error"],
        json!({"code": -32001, "message": "it failed", "data": {"why": "asked to"}}),
        "{failed}"
    );

    // What the server receives: its own tool name, the arguments and `_meta` entries as
    // the client wrote them (escapes included), and the bridge's own id and progress
    // token in place of the client's; a token that is not one is dropped.
    let forwarded = async |raw: &mut RawSession, id: i64, meta: &str| {
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"res__params","arguments":{{"s":"\u00e9\"\n","n":[1.5,{{"k":null}}]}},"_meta":{meta}}}}}"#
        );
        raw.send_line(&line).await;
        let answer = raw.response(&json!(id)).await;
        let text = answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{answer}"));
        serde_json::from_str::<Value>(text).unwrap()
    };
    let seen = forwarded(&mut raw, 10, r#"{"trace\u0041":"t","progressToken":"p10","x":{"y":[true]}}"#).await;
    let upstream_id = seen["id"].as_i64().expect("a numeric id");
    assert!(upstream_id >= 1_000_000_000, "the bridge's own id: {seen}");
    assert_eq!(
        seen["params"],
        json!({
            "name": "params",
            "arguments": {"s": "\u{e9}\"\n", "n": [1.5, {"k": null}]},
            "_meta": {"progressToken": upstream_id, "traceA": "t", "x": {"y": [true]}},
        }),
        "{seen}"
    );
    let seen = forwarded(&mut raw, 11, r#"{"progressToken":[1],"k":1}"#).await;
    assert_eq!(seen["params"]["_meta"], json!({"k": 1}), "{seen}");
    let seen = forwarded(&mut raw, 12, r#"{}"#).await;
    assert_eq!(seen["params"].get("_meta"), None, "{seen}");

    // Progress written together with the result still reaches the client first, under
    // the client's token.
    raw.send(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "res__burst", "_meta": {"progressToken": "b7"}}}))
        .await;
    let mut seen = Vec::new();
    loop {
        let message = raw.recv().await;
        if message["id"] == json!(7) {
            assert_eq!(message["result"]["content"][0]["text"], "burst", "{message}");
            break;
        }
        assert_eq!(message["method"], "notifications/progress", "{message}");
        assert_eq!(message["params"]["progressToken"], "b7", "{message}");
        seen.push(message["params"]["progress"].as_f64().unwrap_or_default());
    }
    assert_eq!(seen, [1.0, 2.0, 3.0], "every progress notification, in order, before the result");
}

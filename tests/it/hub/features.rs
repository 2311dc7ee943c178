//! A shared upstream offers each bridge what it would offer unshared: the same tools,
//! prompts, resources, completions, instructions and answers to tool calls, a request to
//! a client that did not
//! declare the capability refused, a list change announced to every bridge, and the cause
//! when it cannot start. Per-bridge options apply: a bridge whose `--servers` leave the
//! shared upstream out neither lists it nor starts a hub, and one in search mode finds
//! and calls its tools.

use std::{process::Stdio, time::Duration};

use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams};
use serde_json::{Value, json};

use super::*;

/// Everything a session lists, as JSON (tools, prompts, resources, templates).
async fn surface(session: &Session) -> Value {
    let service = &session.service;
    json!({
        "tools": service.list_all_tools().await.expect("tools/list"),
        "prompts": service.list_all_prompts().await.expect("prompts/list"),
        "resources": service.list_all_resources().await.expect("resources/list"),
        "templates": service.list_all_resource_templates().await.expect("resources/templates/list"),
    })
}

#[tokio::test]
async fn a_shared_fixture_offers_what_it_offers_unshared() {
    let unshared_env = TestEnv::new();
    unshared_env.write_config(&json!({ "mcpServers": { "fx": counted(&unshared_env, "fx", false, &[]) } }));
    let unshared = Session::start(&unshared_env).await;
    let expected = surface(&unshared).await;
    unshared.close().await;

    let env = HubEnv::new();
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &[]) }), 2);
    let session = Session::start(&env).await;
    assert_eq!(surface(&session).await, expected, "the same lists as unshared");
    let upstream = starts(&env, "fx");
    assert!(descendants(env.one_hub().await).contains(&upstream[0]), "the hub runs it: {upstream:?}");
    let service = &session.service;
    let completion =
        service.complete_prompt_simple("fx__greet", "who", "al").await.expect("completion/complete");
    assert_eq!(completion, ["alice", "albert"]);
    let read =
        service.read_resource(ReadResourceRequestParams::new("fixture://fx/items/7")).await.expect("read");
    assert_eq!(text_contents(&read.contents[0]), ("fixture://fx/items/7", "item 7 of fx"));
    let arguments = json!({"who": "Ada"}).as_object().cloned().unwrap_or_default();
    let prompt = service
        .get_prompt(GetPromptRequestParams::new("fx__greet").with_arguments(arguments))
        .await
        .expect("prompts/get");
    let rendered = serde_json::to_string(&prompt.messages).expect("encode");
    assert!(rendered.contains("Hello Ada from fx"), "{rendered}");
    session.close().await;
    env.finish().await;
}

#[tokio::test]
async fn sampling_for_a_client_that_did_not_declare_it_is_refused() {
    let env = HubEnv::new();
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &[]) }), 2);
    // The first bridge's client declares sampling, so the upstream is initialized with it.
    let declaring = Session::start(&env).await;
    assert_eq!(call_text(&declaring, "fx__echo", json!({"message": "up"})).await, "fx: up");
    let silent =
        Session::start_with(&env, TestClient { declare_sampling: false, ..TestClient::default() }).await;
    let sampled = tokio::time::timeout(
        Duration::from_secs(30),
        silent.service.call_tool(call("fx__sample", json!({"prompt": "hello"}))),
    )
    .await
    .expect("answered within 30 s")
    .expect("call");
    assert_eq!(sampled.is_error, Some(true), "{sampled:?}");
    let text = text_of(&sampled);
    assert!(text.contains("did not declare the `sampling` capability"), "{text}");
    assert!(declaring.client.seen().sampling_requests.is_empty(), "the other bridge's client was not asked");
    assert_eq!(starts(&env, "fx").len(), 1, "one upstream, initialized with sampling, served both");
    silent.close().await;
    declaring.close().await;
    env.finish().await;
}

#[tokio::test]
async fn a_bridge_whose_servers_leave_out_the_shared_upstream_starts_no_hub() {
    let env = HubEnv::new();
    env.write_servers(
        json!({ "fx": counted(&env, "fx", true, &[]), "own": counted(&env, "own", false, &["--tools", "echo"]) }),
        2,
    );
    let mut narrowed = env
        .command()
        .args(["stdio", "--servers", "own"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn foxxy-bridge stdio --servers own");
    let (stdin, stdout) = (narrowed.stdin.take().expect("stdin"), narrowed.stdout.take().expect("stdout"));
    let mut narrowed = RawSession::over(narrowed, stdin, stdout);
    narrowed.initialize().await;
    narrowed.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
    let listed = until_response(&mut narrowed, &json!(1), Duration::from_secs(20)).await;
    let names: Vec<&str> = listed.last().expect("the response")["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|tool| tool["name"].as_str())
        .collect();
    assert_eq!(names, ["own__echo"]);
    assert!(env.hub_pids().is_empty() && env.sockets().is_empty(), "no hub for a bridge that needs none");
    assert!(starts(&env, "fx").is_empty());

    // A bridge with every server uses the hub; the narrowed one still sees none of it.
    let full = Session::start(&env).await;
    assert!(tool_names(&full).await.contains(&"fx__echo".to_owned()));
    env.one_hub().await;
    narrowed.send(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).await;
    let listed = until_response(&mut narrowed, &json!(2), Duration::from_secs(20)).await;
    assert_eq!(listed.last().expect("the response")["result"]["tools"].as_array().map(Vec::len), Some(1));
    full.close().await;
    drop(narrowed);
    env.finish().await;
}

#[tokio::test]
async fn a_list_change_of_a_shared_upstream_reaches_every_bridge() {
    let env = HubEnv::new();
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &[]) }), 2);
    let first = Session::start(&env).await;
    let second = Session::start(&env).await;
    for session in [&first, &second] {
        assert!(!tool_names(session).await.contains(&"fx__dynamic_tool".to_owned()));
    }
    let baseline = second.client.seen().tools_changed;
    assert_eq!(call_text(&first, "fx__change_tools", json!({})).await, "changed");
    second.wait_seen(Duration::from_secs(5), |seen| seen.tools_changed > baseline).await;
    for session in [&first, &second] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !tool_names(session).await.contains(&"fx__dynamic_tool".to_owned()) {
            assert!(tokio::time::Instant::now() < deadline, "fx__dynamic_tool never listed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(call_text(&second, "fx__dynamic_tool", json!({"message": "new"})).await, "fx: new");
    assert_eq!(starts(&env, "fx").len(), 1, "one upstream changed for both");
    first.close().await;
    second.close().await;
    env.finish().await;
}

#[tokio::test]
async fn a_shared_upstream_that_cannot_start_reports_its_cause() {
    let env = HubEnv::new();
    env.write_servers(
        json!({ "fx": counted(&env, "fx", true, &["--exit-immediately"]), "own": counted(&env, "own", false, &[]) }),
        2,
    );
    let output = env.run(&["tools", "--json"]).await;
    assert_eq!(output.code, Some(1), "not every upstream is ready: {output:?}");
    let listed: Value = serde_json::from_str(&output.stdout).expect("tools --json is JSON");
    let upstreams = listed["upstreams"].as_array().expect("upstreams");
    let fx = upstreams.iter().find(|upstream| upstream["name"] == "fx").expect("fx listed");
    assert_eq!(fx["transport"], "shared", "{fx}");
    assert_ne!(fx["status"], "ready", "{fx}");
    let error = fx["error"].as_str().unwrap_or_default();
    assert!(error.contains("fixture crashing on purpose"), "the cause, from the hub: {fx}");
    let own = upstreams.iter().find(|upstream| upstream["name"] == "own").expect("own listed");
    assert_eq!(own["status"], "ready", "the others serve on: {own}");
    env.finish().await;
}

#[tokio::test]
async fn a_bridge_in_search_mode_finds_and_calls_a_shared_tool() {
    let env = HubEnv::new();
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &[]) }), 2);
    let listing = Session::start(&env).await;
    let upstream = pid_of(&listing, "fx").await;
    let searching = Session::start_args(&env, &["--tool-mode", "search"], TestClient::default()).await;
    assert_eq!(tool_names(&searching).await, ["foxxy__call_tool", "foxxy__search_tools"]);
    let found = call_text(&searching, "foxxy__search_tools", json!({"query": "echo a message"})).await;
    assert!(found.contains("fx__echo"), "{found}");
    let echoed = call_text(
        &searching,
        "foxxy__call_tool",
        json!({"name": "fx__echo", "arguments": {"message": "found"}}),
    )
    .await;
    assert_eq!(echoed, "fx: found");
    let pid = call_text(&searching, "foxxy__call_tool", json!({"name": "fx__pid", "arguments": {}})).await;
    assert_eq!(pid, upstream.to_string(), "the same shared upstream");
    listing.close().await;
    searching.close().await;
    env.finish().await;
}

/// The `instructions` a fresh bridge of `env` answers `initialize` with, waiting for
/// the upstreams (`bridge.instructionsWait`).
async fn instructions(env: &TestEnv) -> Value {
    let mut raw = RawSession::start(env).await;
    raw.send(&json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
    }))
    .await;
    let answer =
        until_response(&mut raw, &json!(0), Duration::from_secs(20)).await.pop().expect("the answer");
    answer["result"]["instructions"].clone()
}

#[tokio::test]
async fn a_shared_upstreams_instructions_reach_the_client_as_unshared() {
    let bridge = json!({ "instructionsWait": 5000, "hub": { "idleTimeout": 2 } });
    let unshared_env = TestEnv::new();
    unshared_env.write_config(
        &json!({ "mcpServers": { "fx": counted(&unshared_env, "fx", false, &[]) }, "bridge": bridge }),
    );
    let expected = instructions(&unshared_env).await;
    assert!(expected.as_str().is_some_and(|text| text.contains("Test fixture server fx.")), "{expected}");

    let env = HubEnv::new();
    env.write_config(&json!({ "mcpServers": { "fx": counted(&env, "fx", true, &[]) }, "bridge": bridge }));
    assert_eq!(instructions(&env).await, expected, "the first bridge, which starts the hub");
    assert_eq!(instructions(&env).await, expected, "a bridge attaching to it");
    assert_eq!(starts(&env, "fx").len(), 1, "one shared upstream");
    env.one_hub().await;
    env.finish().await;
}

/// The answers a client gets to tool calls of the fixture `fx`: results of several
/// shapes, a tool's own failure, the server's error for bad arguments, with number and
/// string request ids.
async fn tool_answers(env: &TestEnv) -> Vec<Value> {
    let mut raw = RawSession::start(env).await;
    raw.initialize().await;
    let calls = [
        (json!(1), "fx__echo", json!({"message": "é \"quoted\"\n\\"})),
        (json!("call-2"), "fx__add", json!({"a": 2, "b": 3})),
        (json!(3), "fx__fail", json!({"message": "on purpose"})),
        (json!("call \"4\""), "fx__add", json!({"a": "two"})),
    ];
    let mut answers = Vec::new();
    for (id, tool, arguments) in calls {
        let mut request = tool_call(0, tool, arguments);
        request["id"] = id.clone();
        raw.send(&request).await;
        answers.push(raw.response(&id).await);
    }
    raw.close_stdin();
    let _ = tokio::time::timeout(Duration::from_secs(10), raw.child.wait()).await;
    answers
}

#[tokio::test]
async fn a_shared_upstreams_tool_answers_reach_the_client_as_unshared() {
    let unshared_env = TestEnv::new();
    unshared_env.write_config(&json!({ "mcpServers": { "fx": counted(&unshared_env, "fx", false, &[]) } }));
    let expected = tool_answers(&unshared_env).await;
    assert!(expected[3].get("error").is_some(), "bad arguments get the server's error: {}", expected[3]);

    let env = HubEnv::new();
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &[]) }), 2);
    // The hub relays each answer line as the server wrote it, with the bridge's id; the
    // bridge reads it as it reads an unshared server's.
    assert_eq!(tool_answers(&env).await, expected, "the same answers as unshared");
    env.finish().await;
}

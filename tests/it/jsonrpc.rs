//! Malformed and hostile client input on stdin: every bad line gets the JSON-RPC error
//! the spec asks for, and the session carries on.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

async fn session() -> (TestEnv, RawSession) {
    let env = TestEnv::new();
    env.write_config(
        &json!({ "mcpServers": { "fix": fixture("fix", &[]) }, "bridge": { "maxMessageBytes": 65536 } }),
    );
    let mut raw = RawSession::start(&env).await;
    raw.initialize().await;
    (env, raw)
}

/// The session still answers a well-formed request.
async fn still_alive(raw: &mut RawSession, id: i64) {
    raw.send(&json!({"jsonrpc": "2.0", "id": id, "method": "ping"})).await;
    let pong = raw.response(&json!(id)).await;
    assert_eq!(pong["result"], json!({}), "{pong}");
}

fn error_code(reply: &Value) -> i64 {
    reply["error"]["code"].as_i64().unwrap_or_else(|| panic!("not an error reply: {reply}"))
}

#[tokio::test]
async fn parse_errors_get_minus_32700_with_null_id() {
    let (_env, mut raw) = session().await;
    raw.send_line("{this is not json").await;
    let reply = raw.reply().await;
    assert_eq!(error_code(&reply), -32700);
    assert_eq!(reply["id"], Value::Null);
    assert!(reply.as_object().unwrap().contains_key("id"), "id is present and null: {reply}");
    still_alive(&mut raw, 10).await;
}

#[tokio::test]
async fn invalid_requests_get_minus_32600() {
    let (_env, mut raw) = session().await;
    for line in [
        r#"[1, 2]"#,
        r#""a string""#,
        r#"{"jsonrpc": "2.0", "id": 5}"#,
        r#"{"jsonrpc": "1.0", "id": 6, "method": "ping"}"#,
    ] {
        raw.send_line(line).await;
        let reply = raw.reply().await;
        assert_eq!(error_code(&reply), -32600, "for {line}: {reply}");
    }
    still_alive(&mut raw, 11).await;
}

#[tokio::test]
async fn the_id_of_an_invalid_request_is_echoed() {
    let (_env, mut raw) = session().await;
    raw.send_line(r#"{"jsonrpc": "1.0", "id": "abc", "method": "ping"}"#).await;
    let reply = raw.reply().await;
    assert_eq!(error_code(&reply), -32600);
    assert_eq!(reply["id"], "abc");
}

#[tokio::test]
async fn unknown_methods_get_minus_32601() {
    let (_env, mut raw) = session().await;
    raw.send(&json!({"jsonrpc": "2.0", "id": 3, "method": "no/such/method", "params": {}})).await;
    let reply = raw.response(&json!(3)).await;
    assert_eq!(error_code(&reply), -32601, "{reply}");
    still_alive(&mut raw, 12).await;
}

#[tokio::test]
async fn wrong_param_types_get_minus_32602_with_the_id() {
    let (_env, mut raw) = session().await;
    raw.send(&json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": 42}})).await;
    let reply = raw.response(&json!(4)).await;
    assert_eq!(error_code(&reply), -32602, "{reply}");
    raw.send(&json!({"jsonrpc": "2.0", "id": 5, "method": "resources/read", "params": "nope"})).await;
    let reply = raw.response(&json!(5)).await;
    assert_eq!(error_code(&reply), -32602, "{reply}");
    still_alive(&mut raw, 13).await;
}

#[tokio::test]
async fn unknown_tools_resources_and_prompts_are_errors() {
    let (_env, mut raw) = session().await;
    raw.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "fix__nope", "arguments": {}}})).await;
    assert_eq!(error_code(&raw.response(&json!(1)).await), -32602);
    raw.send(&json!({"jsonrpc": "2.0", "id": 2, "method": "prompts/get", "params": {"name": "nope"}})).await;
    assert_eq!(error_code(&raw.response(&json!(2)).await), -32602);
    raw.send(&json!({"jsonrpc": "2.0", "id": 3, "method": "resources/read", "params": {"uri": "fixture://fix/none"}})).await;
    assert_eq!(error_code(&raw.response(&json!(3)).await), -32002);
    still_alive(&mut raw, 14).await;
}

#[tokio::test]
async fn a_reused_id_in_flight_is_rejected_without_stealing_the_other_result() {
    let (_env, mut raw) = session().await;
    let slow = json!({"jsonrpc": "2.0", "id": 77, "method": "tools/call", "params": {"name": "fix__sleep", "arguments": {"ms": 500}}});
    raw.send(&slow).await;
    raw.send(&json!({"jsonrpc": "2.0", "id": 77, "method": "ping"})).await;
    let first = raw.response(&json!(77)).await;
    assert_eq!(error_code(&first), -32600, "the duplicate is rejected first: {first}");
    let second = raw.response(&json!(77)).await;
    assert_eq!(
        second["result"]["content"][0]["text"], "slept",
        "the original request keeps its own result: {second}"
    );
    // Once answered, the id may be used again.
    raw.send(&json!({"jsonrpc": "2.0", "id": 77, "method": "ping"})).await;
    assert_eq!(raw.response(&json!(77)).await["result"], json!({}));
}

#[tokio::test]
async fn a_cancelled_call_is_cancelled_upstream_gets_no_answer_and_frees_its_id_even_after_a_duplicate() {
    for served in Served::BOTH {
        cancelled_call(served).await;
    }
}

async fn cancelled_call(served: Served) {
    let env = TestEnv::new();
    let events = env.path("fix.events");
    let mut args = vec!["--events-file", events.to_str().unwrap()];
    args.extend(served.fixture_args());
    env.write_config(&json!({ "mcpServers": { "fix": fixture("fix", &args) } }));
    let mut raw = RawSession::start(&env).await;
    raw.initialize().await;
    if served == Served::Lane {
        raw.send(&json!({"jsonrpc": "2.0", "id": 80, "method": "tools/list"})).await;
        assert!(raw.response(&json!(80)).await["result"]["tools"].is_array(), "{served:?}");
    }
    raw.send(&json!({"jsonrpc": "2.0", "id": 81, "method": "tools/call", "params": {
        "name": "fix__slow", "arguments": {"steps": 100, "step_ms": 100}, "_meta": {"progressToken": "p81"}
    }}))
    .await;
    loop {
        let message = raw.recv().await;
        if message["method"] == "notifications/progress" {
            assert_eq!(message["params"]["progressToken"], "p81", "{message}");
            break;
        }
    }
    // A second request with the same id is refused, and must not take the first one's place.
    raw.send(&json!({"jsonrpc": "2.0", "id": 81, "method": "tools/call", "params": {"name": "fix__echo", "arguments": {"message": "dup"}}})).await;
    let refused = raw.response(&json!(81)).await;
    assert_eq!(error_code(&refused), -32600, "{refused}");
    raw.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 81, "reason": "test"}})).await;
    wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&events).is_ok_and(|e| e.contains("cancelled slow"))
    })
    .await;
    // The id is free again at once, and the first answer with it is the new call's.
    raw.send(&json!({"jsonrpc": "2.0", "id": 81, "method": "tools/call", "params": {"name": "fix__sleep", "arguments": {"ms": 1}}})).await;
    let reply = raw.response(&json!(81)).await;
    assert_eq!(
        reply["result"]["content"][0]["text"], "slept",
        "{served:?}: no answer for the cancelled call: {reply}"
    );
    still_alive(&mut raw, 82).await;
}

#[tokio::test]
async fn an_oversized_line_gets_an_error_and_the_session_continues() {
    let (_env, mut raw) = session().await;
    let big = "x".repeat(200_000);
    raw.send(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "fix__echo", "arguments": {"message": big}}})).await;
    let reply = raw.reply().await;
    assert_eq!(error_code(&reply), -32600, "{reply}");
    assert_eq!(reply["id"], Value::Null);
    assert!(reply["error"]["message"].as_str().unwrap().contains("maxMessageBytes"));
    still_alive(&mut raw, 15).await;
}

#[tokio::test]
async fn notifications_with_bad_params_are_ignored_quietly() {
    let (_env, mut raw) = session().await;
    raw.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": 5})).await;
    raw.send(&json!({"jsonrpc": "2.0", "method": "notifications/whatever"})).await;
    still_alive(&mut raw, 16).await;
}

#[tokio::test]
async fn every_client_protocol_version_is_served() {
    let env = TestEnv::new();
    env.write_config(&json!({ "mcpServers": { "fix": fixture("fix", &[]) } }));
    for (asked, agreed) in [
        ("2024-11-05", "2024-11-05"),
        ("2025-03-26", "2025-03-26"),
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("2026-07-28", "2025-11-25"),
    ] {
        let mut raw = RawSession::start(&env).await;
        raw.send(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": asked, "capabilities": {}, "clientInfo": {"name": "v", "version": "1"}}
        }))
        .await;
        let reply = raw.response(&json!(1)).await;
        assert_eq!(reply["result"]["protocolVersion"], agreed, "client asked for {asked}: {reply}");
        raw.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        raw.send(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "fix__echo", "arguments": {"message": asked}}})).await;
        let reply = raw.response(&json!(2)).await;
        assert_eq!(reply["result"]["content"][0]["text"], format!("fix: {asked}"), "{reply}");
    }
}

#[tokio::test]
async fn sixteen_megabyte_messages_pass_both_ways() {
    let env = TestEnv::new();
    env.write_config(&json!({ "mcpServers": { "fix": fixture("fix", &["--tools", "echo"]) } }));
    let mut raw = RawSession::start(&env).await;
    raw.initialize().await;
    let message = "m".repeat(16 * 1024 * 1024);
    raw.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "fix__echo", "arguments": {"message": message}}})).await;
    let reply = raw.response(&json!(1)).await;
    let text = reply["result"]["content"][0]["text"].as_str().expect("a text result");
    assert_eq!(text.len(), "fix: ".len() + message.len(), "a 16 MB request and a 16 MB result passed");
}

#[tokio::test]
async fn notifications_and_responses_before_initialize_do_not_end_the_session() {
    let env = TestEnv::new();
    env.write_config(&json!({ "mcpServers": { "fix": fixture("fix", &[]) } }));
    let mut raw = RawSession::start(&env).await;
    raw.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    raw.send(&json!({"jsonrpc": "2.0", "id": 77, "result": {}})).await;
    raw.send(&json!({"jsonrpc": "2.0", "id": 78, "error": {"code": -1, "message": "stray"}})).await;
    raw.initialize().await;
    still_alive(&mut raw, 13).await;
}

#[tokio::test]
async fn a_second_initialize_is_refused_and_the_session_keeps_its_version() {
    let (_env, mut raw) = session().await;
    raw.send(&json!({"jsonrpc": "2.0", "id": 21, "method": "initialize", "params": {
        "protocolVersion": "2026-07-28", "capabilities": {},
        "clientInfo": {"name": "again", "version": "1"},
    }}))
    .await;
    let reply = raw.response(&json!(21)).await;
    assert_eq!(error_code(&reply), -32600, "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("already initialized"), "{reply}");
    // Still a 2025 session: `ping` is known.
    still_alive(&mut raw, 14).await;
}

#[tokio::test]
async fn ids_the_bridge_cannot_take_get_minus_32600_with_null_id() {
    let (_env, mut raw) = session().await;
    for id in [json!(1.5), json!(18446744073709551615u64)] {
        raw.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": 42}})).await;
        let reply = raw.reply().await;
        assert_eq!(error_code(&reply), -32600, "{reply}");
        assert_eq!(reply["id"], Value::Null, "{reply}");
        assert!(reply["error"]["message"].as_str().unwrap().contains("is not supported"), "{reply}");
    }
    // An integral float is an ordinary id.
    raw.send(&json!({"jsonrpc": "2.0", "id": 9.0, "method": "tools/call", "params": {"name": 42}})).await;
    let reply = raw.reply().await;
    assert_eq!(error_code(&reply), -32602, "{reply}");
    still_alive(&mut raw, 15).await;
}

//! Resilience through the real binary: config hot reload, health checks and failover,
//! request timeouts, misbehaving upstreams, startup under load.

use std::time::Duration;

use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

use crate::support::*;

fn call(name: &str, arguments: Value) -> CallToolRequestParams {
    let mut params = CallToolRequestParams::new(name.to_owned());
    params.arguments = arguments.as_object().cloned();
    params
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    result.content.iter().filter_map(|content| content.as_text()).map(|text| text.text.clone()).collect()
}

async fn tool_names(session: &Session) -> Vec<String> {
    let mut names: Vec<String> = session
        .service
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|tool| tool.name.to_string())
        .collect();
    names.sort();
    names
}

/// Wait until the listed tools satisfy `condition`.
async fn wait_tools(session: &Session, condition: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let names = tool_names(session).await;
        if condition(&names) {
            return names;
        }
        assert!(tokio::time::Instant::now() < deadline, "tools never matched; last: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn config_edits_are_applied_while_a_client_is_connected() {
    let env = TestEnv::new();
    let alpha = fixture("alpha", &["--tools", "echo,slow"]);
    let bridge = json!({ "configReload": { "debounceMs": 100 } });
    env.write_config(&json!({ "mcpServers": { "alpha": alpha }, "bridge": bridge }));
    let session = Session::start(&env).await;
    assert_eq!(tool_names(&session).await, ["alpha__echo", "alpha__slow"]);
    let alpha_pid_before =
        session.service.call_tool(call("alpha__echo", json!({"message": "x"}))).await.expect("call");
    assert_eq!(text_of(&alpha_pid_before), "alpha: x");

    // A long call to alpha is in flight while beta is added: it is not disturbed.
    let service = session.service.peer().clone();
    let in_flight = tokio::spawn(async move {
        service.call_tool(call("alpha__slow", json!({"steps": 10, "step_ms": 100}))).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let baseline = session.client.seen().tools_changed;
    env.write_config(&json!({
        "mcpServers": { "alpha": alpha, "beta": fixture("beta", &["--tools", "echo"]) },
        "bridge": bridge
    }));
    session.wait_seen(Duration::from_secs(10), |seen| seen.tools_changed > baseline).await;
    wait_tools(&session, |names| names.iter().any(|name| name == "beta__echo")).await;
    let slow = in_flight.await.expect("join").expect("the in-flight call completes");
    assert_eq!(text_of(&slow), "alpha: done 10 steps");

    // An invalid edit is rejected with its position, and the running config stays.
    std::fs::write(env.config_path(), "{\n  \"mcpServers\": {\n    \"alpha\": { \"command\": \n")
        .expect("write");
    let log = env.wait_log("config change rejected").await;
    assert!(log.contains("config.json5:"), "the problem names file:line:col:\n{log}");
    let echo =
        session.service.call_tool(call("beta__echo", json!({"message": "still"}))).await.expect("call");
    assert_eq!(text_of(&echo), "beta: still");

    // A changed upstream is restarted with its new settings; a removed one is stopped.
    env.write_config(&json!({
        "mcpServers": { "beta": fixture("beta", &["--tools", "echo,add"]) },
        "bridge": bridge
    }));
    let names = wait_tools(&session, |names| names.iter().any(|name| name == "beta__add")).await;
    assert_eq!(names, ["beta__add", "beta__echo"], "alpha is gone, beta has its new tool");
    let sum = session.service.call_tool(call("beta__add", json!({"a": 2, "b": 2}))).await.expect("call");
    assert_eq!(sum.structured_content, Some(json!({"sum": 4})));
    session.close().await;
}

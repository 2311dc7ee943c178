//! Exposed names: namespaces, clash resolution, names clients would reject, filters.

use serde_json::{Value, json};

use crate::support::*;

fn clashing(policy: &str, alpha_priority: i64, beta_priority: i64) -> Value {
    let mut alpha = fixture("alpha", &["--tools", "echo,add"]);
    alpha["priority"] = json!(alpha_priority);
    let mut beta = fixture("beta", &["--tools", "echo,fail"]);
    beta["priority"] = json!(beta_priority);
    json!({
        "mcpServers": { "alpha": alpha, "beta": beta },
        "bridge": { "defaultNamespace": false, "conflictResolution": policy }
    })
}

#[tokio::test]
async fn namespace_policy_prefixes_only_clashing_names() {
    let env = TestEnv::new();
    env.write_config(&clashing("namespace", 100, 100));
    let session = Session::start(&env).await;
    assert_eq!(tool_names(&session).await, ["add", "alpha__echo", "beta__echo", "fail"]);
    let echo = session.service.call_tool(call("beta__echo", json!({"message": "m"}))).await.expect("call");
    assert_eq!(text_of(&echo), "beta: m");
    session.close().await;
}

#[tokio::test]
async fn priority_policy_lets_the_lowest_priority_value_win() {
    let env = TestEnv::new();
    env.write_config(&clashing("priority", 100, 1));
    let session = Session::start(&env).await;
    assert_eq!(tool_names(&session).await, ["add", "echo", "fail"]);
    let echo = session.service.call_tool(call("echo", json!({"message": "m"}))).await.expect("call");
    assert_eq!(text_of(&echo), "beta: m");
    session.close().await;
}

#[tokio::test]
async fn first_policy_lets_the_first_configured_upstream_win() {
    let env = TestEnv::new();
    env.write_config(&clashing("first", 100, 1));
    let session = Session::start(&env).await;
    assert_eq!(tool_names(&session).await, ["add", "echo", "fail"]);
    let echo = session.service.call_tool(call("echo", json!({"message": "m"}))).await.expect("call");
    assert_eq!(text_of(&echo), "alpha: m");
    session.close().await;
}

#[tokio::test]
async fn error_policy_names_the_clash() {
    let env = TestEnv::new();
    env.write_config(&clashing("error", 100, 100));
    let session = Session::start(&env).await;
    let error = session.service.list_all_tools().await.expect_err("a clash is an error");
    let message = error.to_string();
    assert!(
        message.contains("`echo`") && message.contains("`alpha`") && message.contains("`beta`"),
        "{message}"
    );
    session.close().await;

    let output = env.run(&["tools"]).await;
    assert_eq!(output.code, Some(1));
    assert!(output.stderr.contains("tool name clash: `echo`"), "{}", output.stderr);
}

#[tokio::test]
async fn long_and_odd_names_become_valid_unique_and_callable() {
    let long = format!("very_{}_long", "x".repeat(95));
    let env = TestEnv::new();
    env.write_config(&json!({
        "mcpServers": {
            "fix": fixture("fix", &["--tools", "echo", "--extra-tool", &long]),
            "odd": fixture("odd", &["--tools", "echo", "--extra-tool", "weird.name/with:chars and spaces"]),
            "twin": fixture("twin", &["--tools", "echo", "--extra-tool", &format!("{long}2")]),
        }
    }));
    let session = Session::start(&env).await;
    let names = tool_names(&session).await;
    let pattern = |name: &str| {
        !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    assert!(names.iter().all(|name| pattern(name)), "{names:?}");
    let shortened: Vec<&String> = names.iter().filter(|name| name.len() == 64).collect();
    assert_eq!(shortened.len(), 2, "both long names are shortened: {names:?}");
    assert_ne!(shortened[0], shortened[1]);
    let fix_long = names.iter().find(|name| name.starts_with("fix__very_")).expect("fix's long tool");
    let called = session.service.call_tool(call(fix_long, json!({}))).await.expect("call");
    assert_eq!(text_of(&called), format!("fix: called {long}"));
    assert!(names.contains(&"odd__weird_name_with_chars_and_spaces".to_owned()), "{names:?}");
    let called = session
        .service
        .call_tool(call("odd__weird_name_with_chars_and_spaces", json!({})))
        .await
        .expect("call");
    assert_eq!(text_of(&called), "odd: called weird.name/with:chars and spaces");
    session.close().await;

    // The mapping is deterministic: a second bridge exposes the same names.
    let session = Session::start(&env).await;
    assert_eq!(tool_names(&session).await, names);
    session.close().await;
}

#[tokio::test]
async fn tool_filters_hide_and_block_tools() {
    let env = TestEnv::new();
    let mut filtered = fixture("fix", &[]);
    filtered["toolFilter"] = json!({ "allow": ["e*", "fail", "add"], "deny": ["fail"] });
    env.write_config(&json!({ "mcpServers": { "fix": filtered } }));
    let session = Session::start(&env).await;
    assert_eq!(tool_names(&session).await, ["fix__add", "fix__echo", "fix__elicit"]);
    let blocked = session.service.call_tool(call("fix__fail", json!({}))).await;
    assert!(blocked.is_err(), "a filtered tool cannot be called");
    session.close().await;
}

#[tokio::test]
async fn configured_namespaces_and_disabled_aggregation_apply() {
    let env = TestEnv::new();
    let mut fix = fixture("fix", &["--tools", "echo"]);
    fix["toolNamespace"] = json!("tools-ns");
    fix["promptNamespace"] = json!("p");
    fix["resourceNamespace"] = json!("res");
    let mut off = fixture("off", &[]);
    off["enabled"] = json!(false);
    env.write_config(&json!({ "mcpServers": { "fix": fix, "off": off } }));
    let session = Session::start(&env).await;
    assert_eq!(tool_names(&session).await, ["tools-ns__echo"]);
    let prompts = session.service.list_all_prompts().await.expect("prompts/list");
    assert!(prompts.iter().all(|prompt| prompt.name.starts_with("p__")), "{prompts:?}");
    let resources = session.service.list_all_resources().await.expect("resources/list");
    assert!(resources.iter().all(|resource| resource.uri.starts_with("foxxy://res/")), "{resources:?}");
    session.close().await;

    env.write_config(&json!({
        "mcpServers": { "fix": fixture("fix", &[]) },
        "bridge": { "aggregation": { "prompts": false, "resources": false } }
    }));
    let session = Session::start(&env).await;
    let info = session.service.peer_info().expect("server info");
    assert!(info.capabilities.prompts.is_none() && info.capabilities.resources.is_none());
    assert!(!tool_names(&session).await.is_empty());
    session.close().await;
}

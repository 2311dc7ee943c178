//! The tool budget: `--servers`/`--tags` on `stdio` and `tools`, search mode
//! (`foxxy__search_tools`, `foxxy__call_tool`, `pinnedTools`), and the order of
//! `tools/list`.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use rmcp::{
    ServiceExt,
    model::{CallToolRequest, CallToolResult, ClientRequest, Tool},
    service::PeerRequestOptions,
    transport::TokioChildProcess,
};
use serde_json::{Value, json};

use crate::support::{Session, TestClient, TestEnv, call, fixture, text_of, tool_names, wait_until};

/// `foxxy-bridge stdio ARGS…` driven by the test client.
async fn start(env: &TestEnv, args: &[&str]) -> Session {
    let mut command = env.command();
    command.arg("stdio").args(args);
    let client = TestClient::default();
    let (process, _stderr) =
        TokioChildProcess::builder(command).stderr(Stdio::null()).spawn().expect("spawn foxxy-bridge stdio");
    let pid = process.id().expect("bridge pid");
    let service = tokio::time::timeout(Duration::from_secs(10), client.clone().serve(process))
        .await
        .expect("initialize within 10 s")
        .expect("initialize succeeds");
    Session { client, service, pid, stderr: Arc::new(Mutex::new(String::new())) }
}

/// Three fixtures: `alpha` and `gamma` tagged `web`, `beta` tagged `db`; each writes
/// its pid to `<name>.pid` when it starts.
fn three_fixtures(env: &TestEnv, bridge: Value) -> Value {
    let upstream = |name: &str, tag: &str| {
        let pid = env.path(&format!("{name}.pid"));
        let mut entry = fixture(name, &["--pid-file", pid.to_str().unwrap()]);
        entry["tags"] = json!([tag]);
        entry
    };
    let config = json!({
        "mcpServers": { "alpha": upstream("alpha", "web"), "beta": upstream("beta", "db"), "gamma": upstream("gamma", "web") },
        "bridge": bridge,
    });
    env.write_config(&config);
    config
}

fn upstreams_of(names: &[String]) -> Vec<String> {
    let mut upstreams: Vec<String> =
        names.iter().filter_map(|name| name.split("__").next()).map(str::to_owned).collect();
    upstreams.dedup();
    upstreams
}

#[tokio::test]
async fn servers_and_tags_narrow_stdio_and_unselected_upstreams_never_start() {
    let env = TestEnv::new();
    three_fixtures(&env, json!({}));
    let session = start(&env, &["--servers", "beta"]).await;
    assert_eq!(upstreams_of(&tool_names(&session).await), ["beta"]);
    assert!(env.path("beta.pid").exists());
    assert!(
        !env.path("alpha.pid").exists() && !env.path("gamma.pid").exists(),
        "unselected upstreams started"
    );
    session.close().await;

    let session = start(&env, &["--tags", "web"]).await;
    assert_eq!(upstreams_of(&tool_names(&session).await), ["alpha", "gamma"]);
    session.close().await;

    // Both: the upstreams named or tagged.
    let session = start(&env, &["--tags", "db", "--servers", "gamma"]).await;
    assert_eq!(upstreams_of(&tool_names(&session).await), ["beta", "gamma"]);
    session.close().await;
}

#[tokio::test]
async fn servers_and_tags_narrow_tools_and_unknown_names_are_usage_errors() {
    let env = TestEnv::new();
    three_fixtures(&env, json!({}));
    let output = env.run(&["tools", "--json", "--servers", "alpha,gamma"]).await;
    assert_eq!(output.code, Some(0), "{output:?}");
    let listed: Value = serde_json::from_str(&output.stdout).expect("JSON");
    let upstreams: Vec<&str> =
        listed["upstreams"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(upstreams, ["alpha", "gamma"]);
    let output = env.run(&["tools", "--json", "--tags", "db"]).await;
    let listed: Value = serde_json::from_str(&output.stdout).expect("JSON");
    assert!(listed["tools"].as_array().unwrap().iter().all(|tool| tool["upstream"] == "beta"), "{listed}");

    for args in [
        &["tools", "--servers", "alpha,nope"][..],
        &["tools", "--tags", "nope"],
        &["stdio", "--servers", "nope"],
        &["stdio", "--tags", "nope"],
    ] {
        let output = env.run(args).await;
        assert_eq!(output.code, Some(2), "{args:?}: {output:?}");
        assert!(output.stderr.contains("`nope`"), "{args:?}: {}", output.stderr);
        assert!(output.stdout.is_empty(), "{args:?}: {}", output.stdout);
    }
}

#[tokio::test]
async fn search_mode_lists_the_pinned_tools_and_the_meta_tools() {
    let env = TestEnv::new();
    three_fixtures(&env, json!({ "toolMode": "search", "pinnedTools": ["beta__echo", "*__pid"] }));
    let session = start(&env, &[]).await;
    let listed: Vec<String> =
        session.service.list_all_tools().await.unwrap().iter().map(|tool| tool.name.to_string()).collect();
    assert_eq!(
        listed,
        ["foxxy__search_tools", "foxxy__call_tool", "alpha__pid", "beta__echo", "beta__pid", "gamma__pid"]
    );
    session.close().await;

    // The command line overrides the config, both ways.
    let session = start(&env, &["--tool-mode", "all"]).await;
    assert!(tool_names(&session).await.len() > 30);
    session.close().await;
    three_fixtures(&env, json!({}));
    let session = start(&env, &["--tool-mode", "search"]).await;
    assert_eq!(tool_names(&session).await, ["foxxy__call_tool", "foxxy__search_tools"]);
    session.close().await;
}

async fn search(session: &Session, arguments: Value) -> Vec<Value> {
    let result = session.service.call_tool(call("foxxy__search_tools", arguments)).await.expect("search");
    assert_ne!(result.is_error, Some(true), "{result:?}");
    let structured = result.structured_content.clone().expect("structuredContent");
    let text: Value = serde_json::from_str(&text_of(&result)).expect("the text is JSON");
    assert_eq!(text, structured, "the text is the same JSON");
    structured["tools"].as_array().expect("tools").clone()
}

fn names(found: &[Value]) -> Vec<&str> {
    found.iter().map(|tool| tool["name"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn search_results_carry_the_real_schema_and_honour_limit_and_upstream() {
    let env = TestEnv::new();
    three_fixtures(&env, json!({ "toolMode": "search" }));
    let all = start(&env, &["--tool-mode", "all"]).await;
    let catalog: Vec<Tool> = all.service.list_all_tools().await.unwrap();
    all.close().await;
    let session = start(&env, &[]).await;

    let found = search(&session, json!({"query": "add two numbers"})).await;
    assert_eq!(names(&found)[..3], ["alpha__add", "beta__add", "gamma__add"], "ties keep catalog order");
    let add = catalog.iter().find(|tool| tool.name == "alpha__add").unwrap();
    assert_eq!(found[0]["inputSchema"], Value::Object((*add.input_schema).clone()));
    assert_eq!(found[0]["title"], "Add numbers");
    assert_eq!(found[0]["upstream"], "alpha");
    assert_eq!(found[0]["annotations"], serde_json::to_value(&add.annotations).unwrap());

    let found = search(&session, json!({"query": "echo a message back"})).await;
    assert_eq!(found.len(), 8, "the default limit");
    assert_eq!(found[0]["name"], "alpha__echo");
    let found = search(&session, json!({"query": "echo a message back", "limit": 2})).await;
    assert_eq!(found.len(), 2);
    let found = search(&session, json!({"query": "echo a message back", "limit": 500})).await;
    assert!(found.len() > 8 && found.len() <= 50, "{}", found.len());
    let found = search(&session, json!({"query": "echo a message back", "upstream": "gamma"})).await;
    assert!(!found.is_empty() && found.iter().all(|tool| tool["upstream"] == "gamma"), "{found:?}");
    assert_eq!(found[0]["name"], "gamma__echo");

    // Same query, same catalog: same order, in this session and in another one.
    let query = json!({"query": "sleep for a while then report progress", "limit": 50});
    let first = search(&session, query.clone()).await;
    assert_eq!(search(&session, query.clone()).await, first);
    session.close().await;
    let again = start(&env, &[]).await;
    assert_eq!(search(&again, query).await, first);

    let bad =
        again.service.call_tool(call("foxxy__search_tools", json!({"query": "x", "upstream": "nope"}))).await;
    let bad = bad.expect("a tool result");
    assert_eq!(bad.is_error, Some(true));
    assert!(text_of(&bad).contains("alpha, beta, gamma"), "{}", text_of(&bad));
    let bad =
        again.service.call_tool(call("foxxy__search_tools", json!({"limit": 3}))).await.expect("a result");
    assert_eq!(bad.is_error, Some(true), "a missing query");
    again.close().await;
}

/// Everything but the bits a result may legitimately not carry the same way.
fn essence(result: &CallToolResult) -> Value {
    json!({
        "content": result.content,
        "isError": result.is_error,
        "structuredContent": result.structured_content,
    })
}

#[tokio::test]
async fn call_tool_answers_as_a_direct_call_does() {
    let env = TestEnv::new();
    three_fixtures(&env, json!({ "toolMode": "search" }));
    let session = start(&env, &[]).await;
    tool_names(&session).await;
    for (name, arguments) in [
        ("alpha__echo", json!({"message": "hi"})),
        ("beta__add", json!({"a": 2, "b": 3})),
        ("gamma__fail", json!({"message": "boom"})),
        ("alpha__roots", json!({})),
    ] {
        let direct = session.service.call_tool(call(name, arguments.clone())).await.expect("direct call");
        let wrapped = session
            .service
            .call_tool(call("foxxy__call_tool", json!({"name": name, "arguments": arguments})))
            .await
            .expect("call through foxxy__call_tool");
        assert_eq!(essence(&wrapped), essence(&direct), "{name}");
    }
    // An upstream's JSON-RPC error stays one, the same both ways.
    let direct = session.service.call_tool(call("alpha__add", json!({"a": "x"}))).await.unwrap_err();
    let wrapped = session
        .service
        .call_tool(call("foxxy__call_tool", json!({"name": "alpha__add", "arguments": {"a": "x"}})))
        .await
        .unwrap_err();
    assert_eq!(wrapped.to_string(), direct.to_string());

    let unknown = session
        .service
        .call_tool(call("foxxy__call_tool", json!({"name": "alpha__ecko", "arguments": {}})))
        .await
        .expect("a tool result");
    assert_eq!(unknown.is_error, Some(true));
    let text = text_of(&unknown);
    assert!(text.contains("unknown tool `alpha__ecko`") && text.contains("alpha__echo"), "{text}");
    session.close().await;
}

#[tokio::test]
async fn progress_and_cancellation_pass_through_call_tool() {
    let env = TestEnv::new();
    let events = env.path("alpha.events");
    env.write_config(&json!({
        "mcpServers": { "alpha": fixture("alpha", &["--events-file", events.to_str().unwrap()]) },
        "bridge": { "toolMode": "search" },
    }));
    let session = start(&env, &[]).await;
    let result = session
        .service
        .call_tool(call(
            "foxxy__call_tool",
            json!({"name": "alpha__slow", "arguments": {"steps": 3, "step_ms": 10}}),
        ))
        .await
        .expect("call");
    assert_eq!(text_of(&result), "alpha: done 3 steps");
    let progress: Vec<f64> = session.client.seen().progress.iter().map(|p| p.progress).collect();
    assert_eq!(progress, [1.0, 2.0, 3.0], "progress with the client's token, before the result");

    let request = ClientRequest::CallToolRequest(CallToolRequest::new(call(
        "foxxy__call_tool",
        json!({"name": "alpha__slow", "arguments": {"steps": 100, "step_ms": 100}}),
    )));
    let handle = session
        .service
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .expect("send");
    session.wait_seen(Duration::from_secs(5), |seen| seen.progress.len() > 3).await;
    handle.cancel(Some("test cancels".into())).await.expect("cancel");
    wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&events).unwrap_or_default().contains("cancelled slow")
    })
    .await;
    session.close().await;
}

#[tokio::test]
async fn a_new_upstream_tool_is_found_without_a_list_change_unless_pinned() {
    for pinned in [false, true] {
        let env = TestEnv::new();
        let pins = if pinned { json!(["alpha__dynamic_*"]) } else { json!([]) };
        env.write_config(&json!({
            "mcpServers": { "alpha": fixture("alpha", &[]) },
            "bridge": { "toolMode": "search", "pinnedTools": pins },
        }));
        let session = start(&env, &[]).await;
        tool_names(&session).await;
        let query = json!({"query": "dynamic tool"});
        assert!(!names(&search(&session, query.clone()).await).contains(&"alpha__dynamic_tool"));
        let changed = session
            .service
            .call_tool(call("foxxy__call_tool", json!({"name": "alpha__change_tools"})))
            .await
            .expect("change_tools");
        assert_eq!(text_of(&changed), "changed");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !names(&search(&session, query.clone()).await).contains(&"alpha__dynamic_tool") {
            assert!(tokio::time::Instant::now() < deadline, "the new tool is never found");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let found = session
            .service
            .call_tool(call(
                "foxxy__call_tool",
                json!({"name": "alpha__dynamic_tool", "arguments": {"message": "new"}}),
            ))
            .await
            .expect("call the new tool");
        assert_eq!(text_of(&found), "alpha: new");
        if pinned {
            session.wait_seen(Duration::from_secs(5), |seen| seen.tools_changed > 0).await;
            assert!(tool_names(&session).await.contains(&"alpha__dynamic_tool".to_owned()));
        } else {
            // A ping round trip: any notification sent before it has arrived.
            tool_names(&session).await;
            assert_eq!(session.client.seen().tools_changed, 0, "no list_changed for an unlisted tool");
        }
        session.close().await;
    }
}

#[tokio::test]
async fn all_mode_lists_tools_in_config_order_the_same_every_run() {
    let env = TestEnv::new();
    // The first upstream is the last to be ready: the order must not follow readiness.
    // Written by hand, since `json!` would sort the servers by name.
    let servers = [
        ("zeta", fixture("zeta", &["--start-delay-ms", "400", "--many-tools", "5"])),
        ("alpha", fixture("alpha", &["--many-tools", "5"])),
        ("mid", fixture("mid", &["--start-delay-ms", "200"])),
    ];
    let entries: Vec<String> = servers.iter().map(|(name, entry)| format!("{name:?}: {entry}")).collect();
    std::fs::write(env.config_path(), format!("{{\"mcpServers\": {{{}}}}}", entries.join(", "))).unwrap();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let session = start(&env, &[]).await;
        let tools = session.service.list_all_tools().await.expect("tools/list");
        runs.push(serde_json::to_string(&tools).expect("encode"));
        let names: Vec<String> = tools.iter().map(|tool| tool.name.to_string()).collect();
        assert_eq!(upstreams_of(&names), ["zeta", "alpha", "mid"], "config order");
        let zeta: Vec<&str> = names.iter().filter_map(|name| name.strip_prefix("zeta__")).collect();
        assert_eq!(zeta.first(), Some(&"echo"), "the upstream's own order");
        assert_eq!(zeta.last(), Some(&"bulk_4"), "the upstream's own order");
        session.close().await;
    }
    assert_eq!(runs[0], runs[1], "byte for byte");
}

#[tokio::test]
async fn call_tool_times_out_as_a_direct_call_does() {
    let env = TestEnv::new();
    let mut alpha = fixture("alpha", &[]);
    alpha["requestTimeout"] = json!(1);
    env.write_config(&json!({ "mcpServers": { "alpha": alpha }, "bridge": { "toolMode": "search" } }));
    let session = start(&env, &[]).await;
    tool_names(&session).await;
    let arguments = json!({"ms": 5000});
    let direct = session.service.call_tool(call("alpha__sleep", arguments.clone())).await;
    let wrapped = session
        .service
        .call_tool(call("foxxy__call_tool", json!({"name": "alpha__sleep", "arguments": arguments})))
        .await;
    let shape = |outcome: &Result<CallToolResult, rmcp::ServiceError>| match outcome {
        Ok(result) => essence(result),
        Err(error) => json!({ "error": error.to_string() }),
    };
    assert_eq!(shape(&wrapped), shape(&direct));
    assert!(shape(&direct).to_string().contains("did not answer within 1 s"), "{}", shape(&direct));
    session.close().await;
}

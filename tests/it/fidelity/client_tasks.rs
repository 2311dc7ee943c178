//! Requests an upstream sends the client, through the bridge as directly: tasks the
//! client runs for the upstream (task-augmented sampling and elicitation, then the
//! upstream's `tasks/get` and `tasks/result`), the client's progress on a request, and
//! `tasks/list` when an upstream fails it.

use serde_json::{Value, json};

use super::{
    ALL_CAPABILITIES, HTTP_MODES, LineClient, PREFIX, bridge_to_everything_over_http,
    bridge_tools_settling_on, canned_result, everything_env, recorded, recording,
};
use crate::support::TestEnv;

/// A client's `capabilities.tasks` with everything a client may declare.
pub(super) fn all() -> Value {
    json!({"list": {}, "cancel": {}, "requests": {"sampling": {"createMessage": {}}, "elicitation": {"create": {}}}})
}

/// Whether the test client answers `request` as a task-capable client: a request with
/// `params.task`, or `tasks/*`.
pub(super) fn is_task_request(request: &Value) -> bool {
    request["params"].get("task").is_some_and(Value::is_object)
        || request["method"].as_str().is_some_and(|method| method.starts_with("tasks/"))
}

/// The test client's answer to a task request: a task-augmented request creates task
/// `task-<method>` (still working), which `tasks/get` then finds completed and whose
/// `tasks/result` is the method's usual answer. The same every time, so that direct
/// and bridged runs compare.
pub(super) fn answer(request: &Value) -> Value {
    let times = json!({"createdAt": "2026-01-01T00:00:00Z", "lastUpdatedAt": "2026-01-01T00:00:00Z"});
    let task = |task_id: &Value, status: &str| {
        let mut task = times.clone();
        task["taskId"] = task_id.clone();
        task["status"] = json!(status);
        task["ttl"] = Value::Null;
        task
    };
    let method = request["method"].as_str().unwrap_or_default();
    let task_id = &request["params"]["taskId"];
    match method {
        "tasks/get" => task(task_id, "completed"),
        "tasks/result" => {
            let own = task_id.as_str().and_then(|id| id.strip_prefix("task-")).unwrap_or_default();
            let mut result = canned_result(own);
            result["_meta"] = json!({"io.modelcontextprotocol/related-task": {"taskId": task_id}});
            result
        }
        "tasks/list" => json!({"tasks": []}),
        _ => {
            let mut created = task(&json!(format!("task-{method}")), "working");
            created["ttl"] = request["params"]["task"]["ttl"].clone();
            created["pollInterval"] = json!(100);
            json!({"task": created})
        }
    }
}

/// Call each of server-everything's client-task tools; their results, and the
/// requests the client was asked meanwhile.
async fn run_client_tasks(client: &mut LineClient, prefix: &str) -> (Vec<Value>, Vec<Value>) {
    let mut results = Vec::new();
    for (tool, arguments) in [
        ("trigger-sampling-request-async", json!({"prompt": "otters", "maxTokens": 10})),
        ("trigger-elicitation-request-async", json!({})),
    ] {
        let params = json!({"name": format!("{prefix}{tool}"), "arguments": arguments});
        let response = client.request("tools/call", params).await;
        results.push(response["result"].clone());
    }
    (results, client.asked.clone())
}

#[tokio::test]
async fn an_upstreams_sampling_and_elicitation_run_as_client_tasks_as_directly() {
    let mut capabilities = ALL_CAPABILITIES();
    capabilities["tasks"] = all();
    let mut direct = LineClient::everything();
    direct.initialize(capabilities.clone()).await;
    let expected_tools = direct.tools().await;
    let names: Vec<&Value> = expected_tools.iter().map(|tool| &tool["name"]).collect();
    assert!(names.contains(&&json!("trigger-sampling-request-async")), "{names:?}");
    let (expected, direct_asked) = run_client_tasks(&mut direct, "").await;
    for result in &expected {
        let text = result.to_string();
        assert!(
            text.contains("Task created: task-") && text.contains("Poll 1: completed"),
            "ran as a task: {result}"
        );
    }

    let check = |transport: &str, results: Vec<Value>, asked: Vec<Value>| {
        assert_eq!(results, expected, "the tools' results through the bridge over {transport}");
        let methods =
            |asked: &[Value]| asked.iter().map(|request| request["method"].clone()).collect::<Vec<_>>();
        assert_eq!(methods(&asked), methods(&direct_asked), "over {transport}");
        for (relayed, own) in asked.iter().zip(&direct_asked) {
            assert_eq!(
                relayed["params"], own["params"],
                "relayed as the upstream wrote it, over {transport}"
            );
        }
    };
    let env = everything_env();
    let mut bridge = LineClient::bridge(&env);
    bridge.initialize(capabilities.clone()).await;
    let tools = bridge_tools_settling_on(&mut bridge, &expected_tools).await;
    assert_eq!(tools, expected_tools, "the client-task tools are offered as directly");
    let (results, asked) = run_client_tasks(&mut bridge, PREFIX).await;
    check("stdio", results, asked);

    for mode in HTTP_MODES {
        let (_server, _env, mut bridge) = bridge_to_everything_over_http(mode, capabilities.clone()).await;
        let tools = bridge_tools_settling_on(&mut bridge, &expected_tools).await;
        assert_eq!(tools, expected_tools, "the client-task tools are offered over {mode}");
        let (results, asked) = run_client_tasks(&mut bridge, PREFIX).await;
        check(mode, results, asked);
    }
}

#[tokio::test]
async fn the_clients_progress_on_an_upstreams_request_goes_back_under_its_token() {
    let env = TestEnv::new();
    let log = env.path("received.jsonl");
    let ask = json!({"method": "sampling/createMessage", "params": {
        "messages": [], "maxTokens": 5, "_meta": {"progressToken": "up-1", "vendor/x": 1},
    }});
    let tool = json!({"name": "work", "inputSchema": {"type": "object"}});
    env.write_config(
        &json!({"mcpServers": {"rec": recording(&log, &json!({"tools": [tool], "ask_client": ask}))}}),
    );
    let mut bridge = LineClient::bridge(&env);
    bridge.initialize(json!({"sampling": {}})).await;
    assert_eq!(bridge.tools().await.len(), 1);
    bridge
        .raw
        .send(&json!({"jsonrpc": "2.0", "id": 90, "method": "tools/call", "params": {"name": "rec__work"}}))
        .await;
    let request = loop {
        let message = bridge.raw.recv().await;
        if message["method"] == "sampling/createMessage" {
            break message;
        }
    };
    let meta = &request["params"]["_meta"];
    assert_eq!(meta["vendor/x"], 1, "the rest of `_meta` as written: {request}");
    let token = meta["progressToken"].clone();
    assert!(token.is_string() || token.is_number(), "the request carries a token: {request}");
    let progress = json!({"progressToken": token, "progress": 1, "total": 2, "message": "half"});
    bridge.raw.send(&json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": progress})).await;
    let result = json!({"role": "assistant", "content": {"type": "text", "text": "ok"}, "model": "m"});
    bridge.raw.send(&json!({"jsonrpc": "2.0", "id": request["id"], "result": result})).await;
    let answered = loop {
        let message = bridge.raw.recv().await;
        if message["id"] == 90 {
            break message;
        }
    };
    assert!(
        answered["result"]["content"][0]["text"].as_str().is_some_and(|text| text.contains("\"ok\"")),
        "{answered}"
    );
    let forwarded: Vec<Value> = recorded_soon(&log, "notifications/progress")
        .await
        .iter()
        .map(|message| message["params"].clone())
        .collect();
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    assert_eq!(forwarded[0]["progressToken"], "up-1", "under the upstream's own token: {forwarded:?}");
    assert_eq!(forwarded[0]["progress"].as_f64(), Some(1.0));
    assert_eq!(forwarded[0]["total"].as_f64(), Some(2.0));
    assert_eq!(forwarded[0]["message"], "half");
}

/// The messages `method` a recording upstream received, once there is one (at most
/// 10 s).
async fn recorded_soon(log: &std::path::Path, method: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let found: Vec<Value> =
            recorded(log).into_iter().filter(|message| message["method"] == method).collect();
        if !found.is_empty() || tokio::time::Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_client_task_belongs_to_the_upstream_that_created_it() {
    let env = TestEnv::new();
    let (log_a, log_b) = (env.path("a.jsonl"), env.path("b.jsonl"));
    let create = json!({"method": "sampling/createMessage", "params": {"messages": [], "maxTokens": 5, "task": {"ttl": 1000}}});
    let get = json!({"method": "tasks/get", "params": {"taskId": "t-a"}});
    let tools = json!([{"name": "work", "inputSchema": {"type": "object"}}]);
    let a = json!({"tools": tools, "ask_client": [create, get]});
    let b = json!({"tools": tools, "ask_client": get});
    env.write_config(&json!({"mcpServers": {"a": recording(&log_a, &a), "b": recording(&log_b, &b)}}));
    let mut bridge = LineClient::bridge(&env);
    bridge
        .initialize(json!({"sampling": {}, "tasks": {"requests": {"sampling": {"createMessage": {}}}}}))
        .await;
    assert_eq!(bridge.tools().await.len(), 2);
    bridge
        .raw
        .send(&json!({"jsonrpc": "2.0", "id": 90, "method": "tools/call", "params": {"name": "a__work"}}))
        .await;
    let request = loop {
        let message = bridge.raw.recv().await;
        if message["method"] == "sampling/createMessage" {
            break message;
        }
    };
    assert_eq!(request["params"]["task"], json!({"ttl": 1000}), "{request}");
    let task = json!({"taskId": "t-a", "status": "working", "createdAt": "2026-01-01T00:00:00Z",
        "lastUpdatedAt": "2026-01-01T00:00:00Z", "ttl": 1000});
    bridge.raw.send(&json!({"jsonrpc": "2.0", "id": request["id"], "result": {"task": task}})).await;
    let answered = loop {
        let message = bridge.raw.recv().await;
        if message["id"] == 90 {
            break message;
        }
    };
    let text = answered["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert_eq!(serde_json::from_str::<Value>(text).ok(), Some(json!({"task": task})), "{answered}");
    let mut status = task.clone();
    status["status"] = json!("completed");
    bridge
        .raw
        .send(&json!({"jsonrpc": "2.0", "method": "notifications/tasks/status", "params": status}))
        .await;
    let notified = recorded_soon(&log_a, "notifications/tasks/status").await;
    assert_eq!(notified.first().map(|message| &message["params"]), Some(&status), "{notified:?}");
    bridge.request("ping", json!({})).await;
    let elsewhere =
        recorded(&log_b).into_iter().filter(|message| message["method"] == "notifications/tasks/status");
    assert_eq!(elsewhere.count(), 0, "only the upstream that created the task hears of it");

    // Another upstream cannot ask about it; its creator can.
    let refused = bridge.request("tools/call", json!({"name": "b__work"})).await;
    assert_eq!(refused["result"]["content"][0]["text"], "error: unknown task `t-a`", "{refused}");
    assert!(!bridge.asked.iter().any(|request| request["method"] == "tasks/get"), "{:?}", bridge.asked);
    let got = bridge.request("tools/call", json!({"name": "a__work"})).await;
    let text = got["result"]["content"][0]["text"].as_str().unwrap_or_default();
    let task = serde_json::from_str::<Value>(text).unwrap_or_default();
    assert_eq!((&task["taskId"], &task["status"]), (&json!("t-a"), &json!("completed")), "{got}");
    assert!(bridge.asked.iter().any(|request| request["method"] == "tasks/get"), "{:?}", bridge.asked);
}

#[tokio::test]
async fn tasks_list_names_the_upstream_that_failed_it() {
    let env = TestEnv::new();
    let (log_good, log_bad, log_plain) =
        (env.path("good.jsonl"), env.path("bad.jsonl"), env.path("plain.jsonl"));
    let tasked = json!({
        "capabilities": {"tools": {}, "tasks": {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}},
        "tools": [{"name": "work", "inputSchema": {"type": "object"}, "execution": {"taskSupport": "optional"}}],
    });
    let mut failing = tasked.clone();
    failing["failing"] = json!(["tasks/list"]);
    let servers = json!({
        "bad": recording(&log_bad, &failing),
        "good": recording(&log_good, &tasked),
        "plain": recording(&log_plain, &json!({})),
    });
    env.write_config(&json!({"mcpServers": servers}));
    let mut bridge = LineClient::bridge(&env);
    bridge.initialize(json!({})).await;
    bridge.tools().await;
    let asked = |log: &std::path::Path| {
        recorded(log).iter().filter(|message| message["method"] == "tasks/list").count()
    };
    let created = bridge.request("tools/call", json!({"name": "good__work", "task": {"ttl": 1000}})).await;
    assert_eq!(created["result"]["task"]["taskId"], "good:task-1", "{created}");
    let listed = bridge.request("tasks/list", json!({})).await;
    assert_eq!(asked(&log_bad), 1, "{listed}");
    assert_eq!(listed["error"]["code"], -32603, "{listed}");
    let message = listed["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("upstream `bad`") && message.contains("tasks/list failed on purpose"),
        "{listed}"
    );
    assert_eq!(asked(&log_plain), 0, "an upstream without `tasks.list` is not asked");
}

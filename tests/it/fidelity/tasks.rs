//! Tasks through the bridge, compared with the same requests sent to the upstream
//! directly: server-everything's task tool, and recording upstreams whose task ids
//! collide.

use std::time::Duration;

use serde_json::{Value, json};

use super::{LineClient, everything_env, recorded, recording};
use crate::support::TestEnv;

/// Run server-everything's `simulate-research-query` as a task under `name`: the
/// `CreateTaskResult`, a `tasks/get` of it, and its `tasks/result`.
async fn research_task(client: &mut LineClient, name: &str) -> (Value, Value, Value) {
    let params = json!({"name": name, "arguments": {"topic": "otters"}, "task": {"ttl": 60000}});
    let created = client.request("tools/call", params).await;
    let task_id = created["result"]["task"]["taskId"].clone();
    assert!(task_id.is_string(), "a task was created: {created}");
    let got = client.request("tasks/get", json!({"taskId": task_id})).await;
    let result = client.request("tasks/result", json!({"taskId": task_id})).await;
    (created, got, result)
}

#[tokio::test]
async fn a_task_runs_through_the_bridge_as_it_runs_directly() {
    let mut direct = LineClient::everything();
    let direct_init = direct.initialize(json!({})).await;
    assert!(direct_init["capabilities"]["tasks"]["requests"]["tools"]["call"].is_object(), "{direct_init}");
    let env = everything_env();
    let mut bridge = LineClient::bridge(&env);
    let init = bridge.initialize(json!({})).await;
    assert_eq!(
        init["capabilities"]["tasks"],
        json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}})
    );
    bridge.tools().await;

    let (direct_created, direct_got, direct_result) =
        research_task(&mut direct, "simulate-research-query").await;
    let (created, got, result) = research_task(&mut bridge, "ev__simulate-research-query").await;
    let own_id = direct_created["result"]["task"]["taskId"].as_str().expect("an id").to_owned();
    let task_id = created["result"]["task"]["taskId"].as_str().expect("an id").to_owned();
    assert!(task_id.starts_with("ev:"), "the bridge's id names the upstream: {task_id}");
    let shape = |value: &Value| {
        let mut keys: Vec<String> =
            value.as_object().map(|object| object.keys().cloned().collect()).unwrap_or_default();
        keys.sort();
        keys
    };
    assert_eq!(
        shape(&created["result"]["task"]),
        shape(&direct_created["result"]["task"]),
        "{created} vs {direct_created}"
    );
    assert_eq!(created["result"]["task"]["status"], direct_created["result"]["task"]["status"]);
    assert_eq!(shape(&got["result"]), shape(&direct_got["result"]), "{got} vs {direct_got}");
    assert_eq!(got["result"]["taskId"], json!(task_id));
    assert_eq!(result["result"]["content"], direct_result["result"]["content"], "{result}");
    let related = "io.modelcontextprotocol/related-task";
    assert_eq!(direct_result["result"]["_meta"][related]["taskId"], json!(own_id));
    assert_eq!(result["result"]["_meta"][related]["taskId"], json!(task_id), "{result}");

    // Listed under the bridge's id; a second task can be cancelled.
    let listed = bridge.request("tasks/list", json!({})).await;
    let ids: Vec<&Value> =
        listed["result"]["tasks"].as_array().expect("tasks").iter().map(|task| &task["taskId"]).collect();
    assert!(ids.contains(&&json!(task_id)), "{listed}");
    let direct_listed = direct.request("tasks/list", json!({})).await;
    assert_eq!(shape(&listed["result"]), shape(&direct_listed["result"]), "{listed} vs {direct_listed}");
    let params = json!({"name": "ev__simulate-research-query", "arguments": {"topic": "eels"}, "task": {}});
    let second = bridge.request("tools/call", params).await;
    let second_id = second["result"]["task"]["taskId"].clone();
    let cancelled = bridge.request("tasks/cancel", json!({"taskId": second_id})).await;
    assert_eq!(cancelled["result"]["status"], "cancelled", "{cancelled}");
    let unknown = bridge.request("tasks/get", json!({"taskId": "nobody:1"})).await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
}

#[tokio::test]
async fn tasks_of_two_upstreams_never_collide_and_reach_their_owner() {
    let env = TestEnv::new();
    let (log_a, log_b, log_c) = (env.path("a.jsonl"), env.path("b.jsonl"), env.path("c.jsonl"));
    let tasked = json!({
        "capabilities": {"tools": {}, "tasks": {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}},
        "tools": [{"name": "work", "inputSchema": {"type": "object"}, "execution": {"taskSupport": "optional"}}],
    });
    let mut leaving = tasked.clone();
    leaving["exit_after_task"] = json!(true);
    let servers = json!({"a": recording(&log_a, &tasked), "b": recording(&log_b, &tasked), "c": recording(&log_c, &leaving)});
    env.write_config(&json!({"mcpServers": servers}));
    let mut bridge = LineClient::bridge(&env);
    bridge.initialize(json!({})).await;
    assert_eq!(bridge.tools().await.len(), 3);
    let task = json!({"ttl": 60000});
    let a = bridge.request("tools/call", json!({"name": "a__work", "task": task})).await;
    let b = bridge.request("tools/call", json!({"name": "b__work", "task": task})).await;
    assert_eq!(a["result"]["task"]["taskId"], "a:task-1", "{a}");
    assert_eq!(b["result"]["task"]["taskId"], "b:task-1", "{b}");

    let got = bridge.request("tasks/get", json!({"taskId": "b:task-1"})).await;
    assert_eq!(got["result"]["taskId"], "b:task-1", "{got}");
    let asked = |log: &std::path::Path| {
        recorded(log).into_iter().filter(|message| message["method"] == "tasks/get").count()
    };
    assert_eq!((asked(&log_a), asked(&log_b)), (0, 1), "tasks/get reached its owner only");
    let result = bridge.request("tasks/result", json!({"taskId": "a:task-1"})).await;
    assert_eq!(result["result"]["content"][0]["text"], "result of task-1", "{result}");
    assert_eq!(result["result"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"], "a:task-1");

    // Every upstream's tasks, page by page.
    let mut ids = Vec::new();
    let mut cursor = Value::Null;
    for _ in 0..10 {
        let params = if cursor.is_null() { json!({}) } else { json!({"cursor": cursor}) };
        let page = bridge.request("tasks/list", params).await;
        ids.extend(
            page["result"]["tasks"].as_array().expect("tasks").iter().map(|task| task["taskId"].clone()),
        );
        cursor = page["result"]["nextCursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(ids, [json!("a:task-1"), json!("b:task-1")]);

    // Status notifications carry the client's ids.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let statuses = |client: &LineClient| -> Vec<Value> {
        let mut ids: Vec<Value> = (client.notified.iter())
            .filter(|message| message["method"] == "notifications/tasks/status")
            .map(|message| message["params"]["taskId"].clone())
            .collect();
        ids.sort_by_key(Value::to_string);
        ids
    };
    while statuses(&bridge).len() < 2 {
        let message =
            tokio::time::timeout_at(deadline, bridge.raw.recv()).await.expect("status notifications");
        bridge.notified.push(message);
    }
    assert_eq!(statuses(&bridge), [json!("a:task-1"), json!("b:task-1")]);

    // The owner of a task went away: an error, not a hang.
    let c = bridge.request("tools/call", json!({"name": "c__work", "task": task})).await;
    assert_eq!(c["result"]["task"]["taskId"], "c:task-1", "{c}");
    let lost = tokio::time::timeout(
        Duration::from_secs(20),
        bridge.request("tasks/result", json!({"taskId": "c:task-1"})),
    )
    .await
    .expect("an answer, not a hang");
    assert!(lost.get("error").is_some(), "{lost}");
}

#[tokio::test]
async fn a_task_result_may_take_longer_than_the_request_timeout() {
    let env = TestEnv::new();
    let log = env.path("received.jsonl");
    let slow = json!({
        "capabilities": {"tools": {}, "tasks": {"requests": {"tools": {"call": {}}}}},
        "tools": [{"name": "work", "inputSchema": {"type": "object"}}],
        "result_delay_ms": 2500,
    });
    let mut server = recording(&log, &slow);
    server["requestTimeout"] = json!(1);
    env.write_config(&json!({"mcpServers": {"rec": server}}));
    let mut bridge = LineClient::bridge(&env);
    bridge.initialize(json!({})).await;
    bridge.tools().await;
    let created = bridge.request("tools/call", json!({"name": "rec__work", "task": {}})).await;
    assert_eq!(created["result"]["task"]["taskId"], "rec:task-1", "{created}");
    let result = bridge.request("tasks/result", json!({"taskId": "rec:task-1"})).await;
    assert_eq!(result["result"]["content"][0]["text"], "result of task-1", "{result}");
}

#[tokio::test]
async fn the_declared_tasks_capability_is_the_union_of_the_upstreams_own() {
    let everything_tasks = {
        let mut direct = LineClient::everything();
        direct.initialize(json!({})).await["capabilities"]["tasks"].clone()
    };
    let env = TestEnv::new();
    let described = |tasks: Value| json!({"capabilities": {"tools": {}, "tasks": tasks}});
    let plain = json!({"capabilities": {"tools": {}}});
    let wait = json!({"instructionsWait": 10000});
    let cases = [
        (json!({"ev": crate::peers::everything_stdio()}), Some(everything_tasks)),
        (
            json!({
                "a": recording(&env.path("a.jsonl"), &described(json!({"requests": {"tools": {"call": {}}}}))),
                "b": recording(&env.path("b.jsonl"), &described(json!({"list": {}}))),
                "c": recording(&env.path("c.jsonl"), &plain),
            }),
            Some(json!({"list": {}, "requests": {"tools": {"call": {}}}})),
        ),
        (json!({"c": recording(&env.path("c.jsonl"), &plain)}), None),
    ];
    for (servers, expected) in cases {
        env.write_config(&json!({"mcpServers": servers, "bridge": wait}));
        let mut bridge = LineClient::bridge(&env);
        let result = bridge.initialize(json!({})).await;
        assert_eq!(result["capabilities"].get("tasks"), expected.as_ref(), "{servers}");
    }
}

#[tokio::test]
async fn a_shared_upstreams_task_ids_are_those_it_has_unshared() {
    let env = crate::hub::HubEnv::new();
    let log = env.path("a.jsonl");
    let tasked = json!({
        "capabilities": {"tools": {}, "tasks": {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}},
        "tools": [{"name": "work", "inputSchema": {"type": "object"}, "execution": {"taskSupport": "optional"}}],
    });
    let mut shared = recording(&log, &tasked);
    shared["shared"] = json!(true);
    env.write_servers(json!({"a": shared}), 2);
    let mut bridge = LineClient::bridge(&env);
    bridge.initialize(json!({})).await;
    assert_eq!(bridge.tools().await.len(), 1);
    let created = bridge.request("tools/call", json!({"name": "a__work", "task": {"ttl": 60000}})).await;
    assert_eq!(created["result"]["task"]["taskId"], "a:task-1", "{created}");
    let got = bridge.request("tasks/get", json!({"taskId": "a:task-1"})).await;
    assert_eq!(got["result"]["taskId"], "a:task-1", "{got}");
    let result = bridge.request("tasks/result", json!({"taskId": "a:task-1"})).await;
    assert_eq!(result["result"]["content"][0]["text"], "result of task-1", "{result}");
    assert_eq!(result["result"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"], "a:task-1");
    let listed = bridge.request("tasks/list", json!({})).await;
    let ids: Vec<&Value> =
        listed["result"]["tasks"].as_array().expect("tasks").iter().map(|task| &task["taskId"]).collect();
    assert_eq!(ids, [&json!("a:task-1")], "{listed}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) =
            bridge.notified.iter().find(|message| message["method"] == "notifications/tasks/status")
        {
            break status["params"]["taskId"].clone();
        }
        let message =
            tokio::time::timeout_at(deadline, bridge.raw.recv()).await.expect("a status notification");
        bridge.notified.push(message);
    };
    assert_eq!(status, "a:task-1");
    drop(bridge);
    env.finish().await;
}

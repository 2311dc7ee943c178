//! Protocol fidelity: what a client gets through the bridge equals what it gets from the
//! upstream directly. Each test sends the same requests to server-everything (or the
//! fixture) directly and through `foxxy-bridge stdio`, line by line, and compares.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

mod client_tasks;
mod http_json;
mod instructions;
mod stdout_noise;
mod tasks;

use super::{
    peers,
    support::{RawSession, TestEnv},
};

/// The tool prefix of server-everything behind the bridge.
const PREFIX: &str = "ev__";

/// A line-level MCP client that answers the server's requests the way a client that
/// declared `capabilities` would, and records what it was asked.
struct LineClient {
    raw: RawSession,
    next_id: i64,
    /// Requests the server sent us, in order.
    asked: Vec<Value>,
    /// Notifications the server sent us, in order.
    notified: Vec<Value>,
}

impl LineClient {
    fn spawn(mut command: Command) -> LineClient {
        command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn the server");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        LineClient {
            raw: RawSession::over(child, stdin, stdout),
            next_id: 1,
            asked: Vec::new(),
            notified: Vec::new(),
        }
    }

    /// server-everything over stdio, directly.
    fn everything() -> LineClient {
        let mut command = Command::new("node");
        command.arg(peers::server_everything_js()).arg("stdio");
        LineClient::spawn(command)
    }

    /// `foxxy-bridge stdio` with `env`'s config.
    fn bridge(env: &TestEnv) -> LineClient {
        let mut command = env.command();
        command.arg("stdio");
        LineClient::spawn(command)
    }

    /// `initialize` declaring `capabilities`, then `notifications/initialized`; the result.
    async fn initialize(&mut self, capabilities: Value) -> Value {
        let params = json!({
            "protocolVersion": "2025-11-25", "capabilities": capabilities,
            "clientInfo": {"name": "fidelity", "version": "1"},
        });
        let result = self.request("initialize", params).await;
        self.raw.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        result["result"].clone()
    }

    /// Send a request and return its response (result or error), answering the
    /// server's own requests meanwhile.
    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.raw.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await;
        loop {
            let message = self.raw.recv().await;
            if message.get("method").is_some() {
                if message.get("id").is_some() {
                    self.answer(message).await;
                } else {
                    self.notified.push(message);
                }
                continue;
            }
            if message["id"] == json!(id) {
                return message;
            }
        }
    }

    async fn answer(&mut self, request: Value) {
        let result = match request["method"].as_str() {
            _ if client_tasks::is_task_request(&request) => client_tasks::answer(&request),
            Some(method) => canned_result(method),
            None => Value::Null,
        };
        let reply = if result.is_null() {
            json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": "not supported"}})
        } else {
            json!({"jsonrpc": "2.0", "id": request["id"], "result": result})
        };
        self.asked.push(request);
        self.raw.send(&reply).await;
    }

    /// The tool objects of `tools/list`.
    async fn tools(&mut self) -> Vec<Value> {
        let response = self.request("tools/list", json!({})).await;
        response["result"]["tools"].as_array().unwrap_or_else(|| panic!("a tool list: {response}")).clone()
    }
}

/// What the test client answers to request `method`; `null` for "not supported".
fn canned_result(method: &str) -> Value {
    match method {
        "roots/list" => json!({"roots": [{"uri": "file:///tmp", "name": "tmp"}]}),
        "ping" => json!({}),
        "sampling/createMessage" => json!({
            "role": "assistant", "content": {"type": "text", "text": "sampled"}, "model": "test",
        }),
        "elicitation/create" => json!({"action": "decline"}),
        _ => Value::Null,
    }
}

/// `tools` with `prefix` taken off each name (tools without it are dropped).
fn unprefixed(tools: &[Value], prefix: &str) -> Vec<Value> {
    tools
        .iter()
        .filter_map(|tool| {
            let name = tool["name"].as_str()?.strip_prefix(prefix)?.to_owned();
            let mut tool = tool.clone();
            tool["name"] = json!(name);
            Some(tool)
        })
        .collect()
}

/// A config with server-everything over stdio as `ev`.
fn everything_env() -> TestEnv {
    let env = TestEnv::new();
    env.write_config(&json!({"mcpServers": {"ev": peers::everything_stdio()}}));
    env
}

/// The bridge's tools of server-everything once they equal `expected`, or what it
/// lists at the deadline (the bridge re-lists after the upstream's `list_changed`).
async fn bridge_tools_settling_on(bridge: &mut LineClient, expected: &[Value]) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let tools = unprefixed(&bridge.tools().await, PREFIX);
        if tools == expected || tokio::time::Instant::now() >= deadline {
            return tools;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const ALL_CAPABILITIES: fn() -> Value =
    || json!({"sampling": {}, "elicitation": {"form": {}, "url": {}}, "roots": {}});

/// server-everything serving `mode` on a loopback port: the process (killed on drop)
/// and its port.
async fn everything_http(mode: &str) -> (tokio::process::Child, u16) {
    let mut child = peers::everything_http(mode)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn server-everything");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let port = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(port) = line.strip_prefix("FOXXY_LISTENING ") {
                return port.trim().parse::<u16>().expect("a port");
            }
        }
        panic!("server-everything {mode} exited before listening");
    })
    .await
    .expect("server-everything announces its port");
    // Keep draining stderr so that the server never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, port)
}

/// The modes server-everything serves HTTP in (its `mode` argument).
const HTTP_MODES: [&str; 2] = ["streamableHttp", "sse"];

/// A bridge, initialized with `capabilities`, whose one upstream `ev` is server-everything
/// served over HTTP in `mode`; the server and the environment live as long as the tuple.
async fn bridge_to_everything_over_http(
    mode: &str,
    capabilities: Value,
) -> (tokio::process::Child, TestEnv, LineClient) {
    let (server, port) = everything_http(mode).await;
    let (path, transport) = if mode == "sse" { ("/sse", "sse") } else { ("/mcp", "streamablehttp") };
    let env = TestEnv::new();
    let url = format!("http://127.0.0.1:{port}{path}");
    env.write_config(&json!({"mcpServers": {"ev": {"url": url, "transport": transport}}}));
    let mut bridge = LineClient::bridge(&env);
    bridge.initialize(capabilities).await;
    (server, env, bridge)
}

/// server-everything's own tool objects, for a client that declared every capability.
async fn direct_tools() -> Vec<Value> {
    let mut direct = LineClient::everything();
    direct.initialize(ALL_CAPABILITIES()).await;
    let expected = direct.tools().await;
    assert!(
        expected.iter().any(|tool| tool.get("execution").is_some()),
        "server-everything's tools carry `execution`: {expected:?}"
    );
    expected
}

#[tokio::test]
async fn tool_objects_are_the_upstreams_own_but_for_the_name() {
    let expected = direct_tools().await;
    let env = everything_env();
    let mut bridge = LineClient::bridge(&env);
    bridge.initialize(ALL_CAPABILITIES()).await;
    let tools = bridge_tools_settling_on(&mut bridge, &expected).await;
    assert_eq!(tools, expected, "tool objects through the bridge, name prefix removed");
}

#[tokio::test]
async fn tool_objects_over_streamable_http_and_sse_are_the_upstreams_own() {
    let expected = direct_tools().await;
    for mode in HTTP_MODES {
        let (_server, _env, mut bridge) = bridge_to_everything_over_http(mode, ALL_CAPABILITIES()).await;
        let tools = bridge_tools_settling_on(&mut bridge, &expected).await;
        assert_eq!(tools, expected, "tool objects over {mode}, name prefix removed");
    }
}

impl LineClient {
    /// Read (answering the server's requests) until the server has asked `method`;
    /// that request as received.
    async fn wait_asked(&mut self, method: &str) -> Value {
        loop {
            if let Some(request) = self.asked.iter().find(|request| request["method"] == method) {
                return request.clone();
            }
            let message = self.raw.recv().await;
            if message.get("method").is_some() && message.get("id").is_some() {
                self.answer(message).await;
            }
        }
    }
}

/// An upstream that records every message it receives into `log` and answers from
/// `description` (`tests/peers/recording_server.py`).
fn recording(log: &std::path::Path, description: &Value) -> Value {
    json!({
        "command": peers::python(),
        "args": [peers::peer_script("recording_server.py"), log, description.to_string()],
    })
}

/// The messages a recording upstream received so far.
fn recorded(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a recorded message"))
        .collect()
}

fn progress_token(request: &Value) -> Option<&Value> {
    request["params"].get("_meta").and_then(|meta| meta.get("progressToken"))
}

#[tokio::test]
async fn upstream_requests_carry_a_progress_token_only_when_the_clients_did() {
    let env = TestEnv::new();
    let log = env.path("received.jsonl");
    let tool = json!({"name": "work", "inputSchema": {"type": "object"}, "x-vendor": {"cost": 3}});
    env.write_config(&json!({"mcpServers": {"rec": recording(&log, &json!({"tools": [tool]}))}}));
    let mut bridge = LineClient::bridge(&env);
    bridge.initialize(json!({})).await;
    let mut renamed = tool.clone();
    renamed["name"] = json!("rec__work");
    assert_eq!(bridge.tools().await, [renamed], "an unknown field is kept");
    let with =
        bridge.request("tools/call", json!({"name": "rec__work", "_meta": {"progressToken": "p1"}})).await;
    assert_eq!(with["result"]["content"][0]["text"], "called work", "{with}");
    let without = bridge.request("tools/call", json!({"name": "rec__work", "arguments": {}})).await;
    assert_eq!(without["result"]["content"][0]["text"], "called work", "{without}");
    bridge.request("prompts/list", json!({})).await;
    let received = recorded(&log);
    let requests: Vec<&Value> = received.iter().filter(|message| message.get("id").is_some()).collect();
    let calls: Vec<&&Value> = requests.iter().filter(|request| request["method"] == "tools/call").collect();
    assert_eq!(calls.len(), 2, "{received:?}");
    assert!(progress_token(calls[0]).is_some(), "the client's token is mapped: {}", calls[0]);
    for request in requests.iter().filter(|request| **request != *calls[0]) {
        assert_eq!(progress_token(request), None, "no token the client did not give: {request}");
    }
}

#[tokio::test]
async fn roots_requests_reach_the_client_as_the_upstream_wrote_them() {
    let capabilities = json!({"roots": {}});
    let mut direct = LineClient::everything();
    direct.initialize(capabilities.clone()).await;
    let expected = direct.wait_asked("roots/list").await;
    let env = everything_env();
    let mut bridge = LineClient::bridge(&env);
    bridge.initialize(capabilities).await;
    let relayed = bridge.wait_asked("roots/list").await;
    assert_eq!(progress_token(&relayed), progress_token(&expected), "direct {expected}, bridged {relayed}");
    assert_eq!(relayed.get("params").and_then(|params| params.get("_meta")), None, "{relayed}");
}

#[tokio::test]
async fn instructions_of_one_and_two_upstreams_are_merged_under_their_names() {
    let mut direct = LineClient::everything();
    let own = direct.initialize(ALL_CAPABILITIES()).await;
    let own = own["instructions"].as_str().expect("server-everything has instructions").trim().to_owned();
    let everything = format!("## ev (tools `ev__*`)\n\n{own}");

    // By default `initialize` is answered at once, before any upstream is connected.
    let env = everything_env();
    let mut bridge = LineClient::bridge(&env);
    let started = std::time::Instant::now();
    let result = bridge.initialize(json!({})).await;
    assert!(started.elapsed() < Duration::from_millis(250), "took {:?}", started.elapsed());
    assert_eq!(result.get("instructions"), None, "no upstream was connected yet: {result}");

    // With a wait, the instructions of the upstreams connected within it.
    let env = TestEnv::new();
    let bridge_settings = json!({"instructionsWait": 10000});
    env.write_config(&json!({"mcpServers": {"ev": peers::everything_stdio()}, "bridge": bridge_settings}));
    let mut bridge = LineClient::bridge(&env);
    let result = bridge.initialize(ALL_CAPABILITIES()).await;
    assert_eq!(result["instructions"].as_str(), Some(everything.as_str()));

    let log = env.path("received.jsonl");
    let described = json!({"instructions": "Call rec__work first."});
    let servers = json!({"ev": peers::everything_stdio(), "rec": recording(&log, &described)});
    env.write_config(&json!({"mcpServers": servers, "bridge": bridge_settings}));
    let mut bridge = LineClient::bridge(&env);
    let result = bridge.initialize(ALL_CAPABILITIES()).await;
    let expected = format!("{everything}\n\n## rec (tools `rec__*`)\n\nCall rec__work first.");
    assert_eq!(result["instructions"].as_str(), Some(expected.as_str()));
}

/// server-everything's tool list for a client that declared `capabilities`, directly
/// and through the bridge (names unprefixed).
async fn tools_both_ways(capabilities: Value) -> (Vec<Value>, Vec<Value>) {
    let mut direct = LineClient::everything();
    direct.initialize(capabilities.clone()).await;
    let expected = direct.tools().await;
    let env = everything_env();
    let mut bridge = LineClient::bridge(&env);
    bridge.initialize(capabilities).await;
    let tools = bridge_tools_settling_on(&mut bridge, &expected).await;
    (expected, tools)
}

#[tokio::test]
async fn tool_lists_match_the_direct_ones_under_every_client_capability() {
    let mut combinations = Vec::new();
    for sampling in [false, true] {
        for roots in [false, true] {
            for elicitation in [None, Some(json!({})), Some(json!({"form": {}})), Some(json!({"url": {}}))] {
                let mut capabilities = json!({});
                if sampling {
                    capabilities["sampling"] = json!({});
                }
                if roots {
                    capabilities["roots"] = json!({"listChanged": true});
                }
                if let Some(elicitation) = elicitation {
                    capabilities["elicitation"] = elicitation;
                }
                combinations.push(capabilities);
            }
        }
    }
    // Tools that need the client to run tasks: `tasks.requests` with and without the
    // capability the request itself needs.
    let sampling_tasks = json!({"requests": {"sampling": {"createMessage": {}}}});
    let elicitation_tasks = json!({"list": {}, "requests": {"elicitation": {"create": {}}}});
    combinations.extend([
        json!({"sampling": {}, "tasks": sampling_tasks}),
        json!({"elicitation": {}, "tasks": elicitation_tasks}),
        json!({"sampling": {}, "elicitation": {"form": {}}, "roots": {}, "tasks": client_tasks::all()}),
        json!({"tasks": client_tasks::all()}),
    ]);
    let mut counts = std::collections::BTreeSet::new();
    for chunk in combinations.chunks(4) {
        let runs = chunk.iter().map(|capabilities| tools_both_ways(capabilities.clone()));
        for ((expected, tools), capabilities) in futures::future::join_all(runs).await.into_iter().zip(chunk)
        {
            let names = |tools: &[Value]| tools.iter().map(|tool| tool["name"].clone()).collect::<Vec<_>>();
            assert_eq!(names(&tools), names(&expected), "tool names for a client declaring {capabilities}");
            assert_eq!(tools, expected, "tool objects for a client declaring {capabilities}");
            counts.insert(expected.len());
        }
    }
    assert!(counts.len() > 2, "the capabilities change server-everything's list: {counts:?}");
}

#[tokio::test]
async fn tools_from_a_shell_declares_no_client_capability() {
    let mut direct = LineClient::everything();
    direct.initialize(json!({})).await;
    let expected: Vec<Value> = direct.tools().await.iter().map(|tool| tool["name"].clone()).collect();
    let env = everything_env();
    let output = env.run(&["tools", "--json"]).await;
    assert_eq!(output.code, Some(0), "{output:?}");
    let listed: Value = serde_json::from_str(&output.stdout).expect("JSON");
    let names: Vec<Value> = unprefixed(listed["tools"].as_array().expect("tools"), PREFIX)
        .iter()
        .map(|tool| tool["name"].clone())
        .collect();
    assert_eq!(names, expected, "`tools` lists what a client without capabilities gets");
}

#[tokio::test]
async fn config_errors_say_why_and_suggest_the_field_meant() {
    let env = TestEnv::new();
    env.write_config(&json!({"mcpServers": {"a": {"command": "x", "arsg": []}}}));
    let output = env.run(&["config", "validate"]).await;
    assert_eq!(output.code, Some(1), "{output:?}");
    assert!(output.stderr.contains("unknown field `arsg`; did you mean `args`?"), "{}", output.stderr);
    assert!(!output.stderr.contains("expected one of"), "{}", output.stderr);

    let directory = env.path("config-dir");
    std::fs::create_dir_all(&directory).expect("a directory");
    let output = env.run(&["config", "validate", "--config", directory.to_str().expect("utf-8")]).await;
    assert_eq!(output.code, Some(1), "{output:?}");
    assert!(output.stderr.contains("Is a directory"), "the OS reason: {}", output.stderr);
}

#[tokio::test]
async fn errors_name_the_tool_meant_and_who_does_not_support_what() {
    let env = TestEnv::new();
    let log = env.path("received.jsonl");
    let described = json!({
        "capabilities": {"tools": {}, "prompts": {}, "resources": {}},
        "tools": [{"name": "echo", "inputSchema": {"type": "object"}}],
        "prompts": [{"name": "greet"}],
        "resources": [{"uri": "rec://one", "name": "one"}],
    });
    env.write_config(&json!({"mcpServers": {"rec": recording(&log, &described)}}));
    let mut bridge = LineClient::bridge(&env);
    bridge.initialize(json!({})).await;
    assert_eq!(bridge.tools().await.len(), 1);
    let message = |response: &Value| response["error"]["message"].as_str().unwrap_or_default().to_owned();

    let unknown = bridge.request("tools/call", json!({"name": "echo", "arguments": {}})).await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    assert_eq!(message(&unknown), "unknown tool `echo`; did you mean `rec__echo`?");
    let misspelt = bridge.request("tools/call", json!({"name": "rec__ecoh", "arguments": {}})).await;
    assert_eq!(message(&misspelt), "unknown tool `rec__ecoh`; did you mean `rec__echo`?");

    let custom = bridge.request("vendor/thing", json!({})).await;
    assert_eq!(custom["error"]["code"], -32601, "{custom}");
    assert_eq!(message(&custom), "foxxy-bridge does not support `vendor/thing`");
    let prompt = bridge.request("prompts/get", json!({"name": "rec__greet"})).await;
    assert_eq!(prompt["error"]["code"], -32601, "{prompt}");
    assert!(message(&prompt).starts_with("upstream `rec` does not support `prompts/get`: "), "{prompt}");

    // The upstream did not declare subscriptions: an error, as it would answer itself.
    let subscribed = bridge.request("resources/subscribe", json!({"uri": "rec://one"})).await;
    assert_eq!(subscribed["error"]["code"], -32601, "{subscribed}");
    assert!(
        message(&subscribed).contains("upstream `rec` does not support resource subscriptions"),
        "{subscribed}"
    );
    assert!(
        !recorded(&log).iter().any(|message| message["method"] == "resources/subscribe"),
        "nothing was sent upstream"
    );
}

#[tokio::test]
async fn tools_shows_why_a_local_upstream_failed_and_where_the_log_is() {
    let env = TestEnv::new();
    let crashy = super::support::fixture("crashy", &["--exit-immediately"]);
    let noisy =
        json!({"command": "sh", "args": ["-c", "echo 'hello from a banner'; sleep 30"], "timeout": 2});
    env.write_config(&json!({"mcpServers": {"crashy": crashy, "noisy": noisy}}));
    let output = env.run(&["tools"]).await;
    assert_eq!(output.code, Some(1), "{output:?}");
    assert!(
        output.stdout.contains("fixture crashing on purpose"),
        "the cause from its stderr:\n{}",
        output.stdout
    );
    let noisy_row = output.stdout.lines().find(|line| line.contains("noisy")).unwrap_or_default();
    assert!(!noisy_row.contains("connecting"), "{}", output.stdout);
    assert!(noisy_row.contains("it wrote `hello from a banner` on stdout"), "{}", output.stdout);
    let log = env.home().join("logs").join("foxxy-bridge.log");
    assert_eq!(
        output.stdout.lines().last(),
        Some(format!("log: {}", log.display()).as_str()),
        "{}",
        output.stdout
    );
}

/// `request`'s params without `_meta`, which carries the progress token the bridge maps.
fn params_without_meta(request: &Value) -> Value {
    let mut params = request["params"].clone();
    if let Some(params) = params.as_object_mut() {
        params.remove("_meta");
    }
    params
}

#[tokio::test]
async fn sampling_and_elicitation_requests_reach_the_client_as_the_upstream_wrote_them() {
    let capabilities = json!({"sampling": {}, "elicitation": {}});
    let calls = [
        ("sampling/createMessage", "trigger-sampling-request", json!({"prompt": "hi", "maxTokens": 10})),
        ("elicitation/create", "trigger-elicitation-request", json!({})),
    ];
    let mut direct = LineClient::everything();
    direct.initialize(capabilities.clone()).await;
    let env = everything_env();
    let mut bridge = LineClient::bridge(&env);
    bridge.initialize(capabilities).await;
    bridge.tools().await;
    for (method, tool, arguments) in calls {
        direct.request("tools/call", json!({"name": tool, "arguments": arguments})).await;
        let exposed = format!("ev__{tool}");
        bridge.request("tools/call", json!({"name": exposed, "arguments": arguments})).await;
        let expected = direct.wait_asked(method).await;
        let relayed = bridge.wait_asked(method).await;
        // Numbers as written (a `temperature` of 0.7 stays 0.7), no member added or lost.
        assert_eq!(params_without_meta(&relayed), params_without_meta(&expected), "{method}");
    }
}

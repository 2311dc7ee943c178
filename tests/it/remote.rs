//! Remote upstreams over HTTP with the rmcp fixture: pass-through, recovery after a
//! server restart and after a lost session, and actionable errors for broken servers.

use std::{process::Stdio, time::Duration};

use rmcp::{
    model::{CallToolRequest, ClientRequest, ReadResourceRequestParams, ResourceContents},
    service::PeerRequestOptions,
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::support::*;

/// A fixture serving HTTP on 127.0.0.1; killed when dropped.
pub struct HttpFixture {
    pub child: Child,
    pub addr: String,
}

impl HttpFixture {
    /// Start `fixture-server --http 127.0.0.1:PORT` (0 = any free port) with `args`.
    pub async fn start(port: u16, args: &[&str]) -> HttpFixture {
        let mut child = Command::new(fixture_bin())
            .args(["--http", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn http fixture");
        let stdout = child.stdout.take().expect("stdout");
        let line = tokio::time::timeout(Duration::from_secs(10), BufReader::new(stdout).lines().next_line())
            .await
            .expect("fixture announces its address")
            .expect("read")
            .expect("a line");
        let addr = line.strip_prefix("listening on ").expect("listening line").to_owned();
        HttpFixture { child, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().and_then(|port| port.parse().ok()).expect("port")
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }
}

async fn upstream_report(env: &TestEnv) -> Vec<Value> {
    let output = env.run(&["tools", "--json"]).await;
    let report: Value =
        serde_json::from_str(&output.stdout).unwrap_or_else(|_| panic!("tools --json: {output:?}"));
    report["upstreams"].as_array().expect("upstreams").clone()
}

#[tokio::test]
async fn streamable_http_passes_everything_through() {
    let web = HttpFixture::start(0, &["--name", "web"]).await;
    let env = TestEnv::new();
    env.write_config(&json!({ "mcpServers": { "web": { "url": web.url() }, "local": fixture("local", &["--tools", "echo"]) } }));
    let session = Session::start(&env).await;
    let tools = session.service.list_all_tools().await.expect("tools/list");
    assert!(
        tools.iter().any(|tool| tool.name == "web__echo")
            && tools.iter().any(|tool| tool.name == "local__echo")
    );

    let echo =
        session.service.call_tool(call("web__echo", json!({"message": "over http"}))).await.expect("call");
    assert_eq!(text_of(&echo), "web: over http");
    let slow =
        session.service.call_tool(call("web__slow", json!({"steps": 3, "step_ms": 20}))).await.expect("call");
    assert_eq!(text_of(&slow), "web: done 3 steps");
    let progress: Vec<f64> = session.client.seen().progress.iter().map(|p| p.progress).collect();
    assert_eq!(progress, vec![1.0, 2.0, 3.0]);
    let sampled =
        session.service.call_tool(call("web__sample", json!({"prompt": "hi"}))).await.expect("call");
    assert_eq!(text_of(&sampled), "web: sampled: sampled-by-test-client");
    let read = session
        .service
        .read_resource(ReadResourceRequestParams::new("fixture://web/static"))
        .await
        .expect("resources/read");
    assert!(
        matches!(&read.contents[0], ResourceContents::TextResourceContents { text, .. } if text == "static resource of web")
    );
    let prompt = session
        .service
        .get_prompt(rmcp::model::GetPromptRequestParams::new("web__plain"))
        .await
        .expect("prompts/get");
    assert!(serde_json::to_string(&prompt.messages).unwrap().contains("plain prompt of web"));
    session.close().await;
    web.stop().await;
}

/// A `tools/call` over streamable HTTP whose answer has not begun (the bridge reads the
/// first events of its stream itself, `response_reader.rs`) is still cancelled upstream, by the
/// client or by `requestTimeout`, and the session goes on.
#[tokio::test]
async fn an_http_call_waiting_for_its_answer_is_cancelled_and_timed_out_upstream() {
    let env = TestEnv::new();
    let events = env.path("web.events");
    let web = HttpFixture::start(
        0,
        &["--name", "web", "--tools", "sleep,echo", "--events-file", events.to_str().unwrap()],
    )
    .await;
    env.write_config(&json!({ "mcpServers": { "web": { "url": web.url(), "requestTimeout": 2 } } }));
    let session = Session::start(&env).await;
    let count = |line: &str| {
        std::fs::read_to_string(&events).unwrap_or_default().lines().filter(|seen| *seen == line).count()
    };

    let request =
        ClientRequest::CallToolRequest(CallToolRequest::new(call("web__sleep", json!({"ms": 30000}))));
    let handle = session
        .service
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .expect("send");
    wait_until(Duration::from_secs(5), || count("sleeping") == 1).await;
    handle.cancel(Some("test cancels".into())).await.expect("cancel");
    wait_until(Duration::from_secs(5), || count("cancelled sleep") == 1).await;

    let started = std::time::Instant::now();
    let answered = tokio::time::timeout(
        Duration::from_secs(10),
        session.service.call_tool(call("web__sleep", json!({"ms": 8000}))),
    );
    let result = answered.await.expect("an answer within 10 s").expect("call");
    assert!(started.elapsed() < Duration::from_secs(6), "timed out after ~2 s: {:?}", started.elapsed());
    assert_eq!(result.is_error, Some(true));
    assert!(text_of(&result).contains("2 s"), "{}", text_of(&result));
    wait_until(Duration::from_secs(5), || count("cancelled sleep") == 2).await;

    let echo = session.service.call_tool(call("web__echo", json!({"message": "after"}))).await.expect("call");
    assert_eq!(text_of(&echo), "web: after");
    session.close().await;
    web.stop().await;
}

#[tokio::test]
async fn auto_detection_picks_streamable_http_for_a_streamable_server() {
    let web = HttpFixture::start(0, &["--name", "web"]).await;
    let env = TestEnv::new();
    env.write_config(&json!({ "mcpServers": { "web": { "url": web.url() } } }));
    let upstreams = upstream_report(&env).await;
    assert_eq!(upstreams[0]["status"], "ready", "{upstreams:?}");
    assert_eq!(upstreams[0]["transport"], "streamable-http");
    assert!(env.log().contains("connected over streamable HTTP"));
    web.stop().await;
}

#[tokio::test]
async fn a_restarted_server_is_reconnected_and_calls_while_down_fail_fast() {
    let web = HttpFixture::start(0, &["--name", "web"]).await;
    let port = web.port();
    let env = TestEnv::new();
    env.write_config(&json!({
        "mcpServers": { "web": { "url": web.url(), "retryDelay": 200, "retryAttempts": 100 } }
    }));
    let session = Session::start(&env).await;
    let echo =
        session.service.call_tool(call("web__echo", json!({"message": "before"}))).await.expect("call");
    assert_eq!(text_of(&echo), "web: before");

    web.stop().await;
    let started = std::time::Instant::now();
    let down = session.service.call_tool(call("web__echo", json!({"message": "down"}))).await.expect("call");
    assert!(started.elapsed() < Duration::from_secs(8), "fails fast: {:?}", started.elapsed());
    assert_eq!(down.is_error, Some(true));
    let message = text_of(&down);
    // A new connection is refused; a kept-alive one the server dropped is "closed".
    assert!(
        message.contains("upstream `web`")
            && (message.contains("connection refused") || message.contains("closed the connection")),
        "{message}"
    );
    assert!(!message.contains("Transport ["), "no Rust type names: {message}");

    let _restarted = HttpFixture::start(port, &["--name", "web"]).await;
    let mut result = None;
    for _ in 0..50 {
        let echo =
            session.service.call_tool(call("web__echo", json!({"message": "after"}))).await.expect("call");
        if echo.is_error != Some(true) {
            result = Some(echo);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let echo = result.expect("the upstream is back without restarting the bridge");
    assert_eq!(text_of(&echo), "web: after");
    session.close().await;
}

#[tokio::test]
async fn a_lost_session_is_recovered_transparently() {
    let web = HttpFixture::start(0, &["--name", "web"]).await;
    let env = TestEnv::new();
    env.write_config(&json!({ "mcpServers": { "web": { "url": web.url() } } }));
    let session = Session::start(&env).await;
    let echo = session.service.call_tool(call("web__echo", json!({"message": "one"}))).await.expect("call");
    assert_eq!(text_of(&echo), "web: one");
    let forgot = reqwest_post(&format!("http://{}/forget-sessions", web.addr)).await;
    assert_eq!(forgot, "forgot 1", "the server dropped the bridge's session");
    let echo = session.service.call_tool(call("web__echo", json!({"message": "two"}))).await.expect("call");
    assert_eq!(text_of(&echo), "web: two", "the 404 was answered by re-initializing and resending");
    session.close().await;
    web.stop().await;
}

/// A bare HTTP/1.1 POST with an empty body to `http://host:port/path`; returns the body.
async fn reqwest_post(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http url");
    let (authority, path) = rest.split_once('/').expect("path");
    let mut stream = tokio::net::TcpStream::connect(authority).await.expect("connect");
    let request = format!(
        "POST /{path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

async fn error_for(upstream: Value) -> String {
    let env = TestEnv::new();
    let mut upstream = upstream;
    upstream["retryAttempts"] = json!(1);
    env.write_config(&json!({ "mcpServers": { "broken": upstream } }));
    let upstreams = upstream_report(&env).await;
    assert_eq!(upstreams[0]["status"], "failed", "{upstreams:?}");
    let error = upstreams[0]["error"].as_str().expect("an error").to_owned();
    // The same cause reaches a client calling one of its tools.
    error
}

#[tokio::test]
async fn broken_servers_get_errors_users_can_act_on() {
    let html = HttpFixture::start(0, &["--http-misbehave", "html"]).await;
    let error = error_for(json!({ "url": html.url() })).await;
    assert!(error.contains("text/html") && error.contains("login page"), "{error}");

    let gateway = HttpFixture::start(0, &["--http-misbehave", "502"]).await;
    let error = error_for(json!({ "url": gateway.url() })).await;
    assert!(error.contains("HTTP 502"), "{error}");

    let auth = HttpFixture::start(0, &["--http-misbehave", "401"]).await;
    let error = error_for(json!({ "url": auth.url(), "oauth": { "enabled": false } })).await;
    assert!(error.contains("HTTP 401") && error.contains("oauth"), "{error}");

    let missing = HttpFixture::start(0, &["--http-misbehave", "404"]).await;
    let error = error_for(json!({ "url": missing.url(), "transport": "streamablehttp" })).await;
    assert!(error.contains("404"), "{error}");

    // A port nobody listens on: take a free one and release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let error = error_for(json!({ "url": format!("http://127.0.0.1:{port}/mcp") })).await;
    assert!(error.contains("connection refused"), "{error}");
}

#[tokio::test]
async fn a_tool_call_to_a_broken_server_names_it_and_the_cause() {
    let gateway = HttpFixture::start(0, &["--http-misbehave", "502"]).await;
    let env = TestEnv::new();
    env.write_config(&json!({
        "mcpServers": { "gw": { "url": gateway.url(), "retryAttempts": 1 }, "ok": fixture("ok", &["--tools", "echo"]) }
    }));
    let session = Session::start(&env).await;
    let tools = session.service.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().all(|tool| !tool.name.starts_with("gw__")));
    let output = env.run(&["tools"]).await;
    assert!(output.stdout.contains("gw") && output.stdout.contains("HTTP 502"), "{}", output.stdout);
    let log = env.wait_log("upstream failed to start: HTTP 502").await;
    assert!(log.contains("upstream=gw"));
    session.close().await;
}

#[tokio::test]
async fn dns_failures_are_reported_without_leaving_loopback() {
    // In a network namespace with only `lo`, name resolution fails at once and no
    // packet leaves the machine.
    let env = TestEnv::new();
    env.write_config(
        &json!({ "mcpServers": { "far": { "url": "http://mcp.example.invalid/mcp", "retryAttempts": 1 } } }),
    );
    let script = format!("ip link set lo up && exec '{}' tools --json", bridge_bin().display());
    let output = env.command_in_netns(&script).output().await.expect("unshare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{output:?}"));
    let error = report["upstreams"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("cannot resolve the host name `mcp.example.invalid`"), "{error}");
}

#[tokio::test]
async fn a_2026_07_28_only_upstream_is_reached_over_stdio_and_http() {
    let web = HttpFixture::start(0, &["--name", "modern-web", "--only-2026"]).await;
    let env = TestEnv::new();
    env.write_config(&json!({
        "mcpServers": {
            "modern": fixture("modern", &["--only-2026"]),
            "web": { "url": web.url() },
            "classic": fixture("classic", &["--tools", "echo"]),
        }
    }));
    let session = Session::start(&env).await;
    for (tool, expected) in
        [("modern__echo", "modern: era"), ("web__echo", "modern-web: era"), ("classic__echo", "classic: era")]
    {
        let result = session.service.call_tool(call(tool, json!({"message": "era"}))).await.expect("call");
        assert_eq!(text_of(&result), expected, "{tool}");
    }
    // The client keeps speaking its own version.
    let info = session.service.peer_info().expect("server info");
    assert_eq!(info.protocol_version.as_str(), "2025-06-18");
    let log = env.log();
    assert!(log.contains("initialize was refused; trying protocol 2026-07-28"), "{log}");
    session.close().await;
    web.stop().await;
}

//! Interoperability over HTTP with MCP servers we did not write, as remote upstreams of
//! the real binary: the TypeScript SDK's reference server
//! (`@modelcontextprotocol/server-everything`) and a Python `mcp` SDK server
//! (`tests/peers/python_server.py`), each over streamable HTTP and over legacy SSE,
//! driven through `foxxy-bridge stdio` by the rmcp test client. Also transport
//! auto-detection against both, and HTTPS with a self-signed certificate.
//!
//! Every server listens on 127.0.0.1 on a port the kernel picked: server-everything
//! binds all interfaces by itself, so it runs under `tests/peers/loopback.cjs`, and
//! each peer is checked to listen on loopback only. Peers announce their port with a
//! `FOXXY_LISTENING <port>` line on stderr. A missing peer fails the test (see
//! `peers.rs`); the servers are killed when the test ends (`kill_on_drop`).

#![allow(deprecated)]

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
};

use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStderr, Command},
};

use crate::{peers, support::*};

/// A third-party server listening on 127.0.0.1, killed when dropped.
struct HttpPeer {
    /// What runs it; held only so that `kill_on_drop` ends the server with the test.
    _child: Child,
    port: u16,
    /// Everything the server printed on stderr so far, for failure messages. A task
    /// keeps draining the pipe (a full pipe would block the server) and appends here.
    stderr: Arc<Mutex<String>>,
}

impl HttpPeer {
    /// Spawn `command` (`what` names it in failures), wait for its `FOXXY_LISTENING`
    /// line and check that it listens on loopback only.
    async fn start(what: &str, mut command: Command) -> HttpPeer {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {what}: {error}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let announced = tokio::time::timeout(PEER_DEADLINE, listening_port(&mut lines, &stderr)).await;
        let output = || stderr.lock().expect("stderr lock").clone();
        let port = match announced {
            Ok(Some(port)) => port,
            Ok(None) => panic!("{what} exited before listening; stderr:\n{}", output()),
            Err(_) => {
                panic!("{what} did not announce its port within {PEER_DEADLINE:?}; stderr:\n{}", output())
            }
        };
        tokio::spawn(drain(lines, stderr.clone()));
        assert_listens_on_loopback_only(port, what);
        HttpPeer { _child: child, port, stderr }
    }

    /// server-everything over `mode` (`streamableHttp` or `sse`).
    async fn everything(mode: &str) -> HttpPeer {
        Self::start(&format!("server-everything {mode}"), peers::everything_http(mode)).await
    }

    /// The Python SDK server over `transport` (`streamable-http` or `sse`), plain HTTP.
    async fn python(transport: &str) -> HttpPeer {
        Self::start(&format!("python_server.py {transport}"), peers::python_server(transport)).await
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }
}

/// Read stderr lines (keeping them) until `FOXXY_LISTENING <port>`; `None` at EOF.
async fn listening_port(lines: &mut Lines<BufReader<ChildStderr>>, into: &Mutex<String>) -> Option<u16> {
    while let Ok(Some(line)) = lines.next_line().await {
        append(into, &line);
        if let Some(port) = line.strip_prefix("FOXXY_LISTENING ") {
            return Some(port.trim().parse().unwrap_or_else(|_| panic!("bad port line {line:?}")));
        }
    }
    None
}

async fn drain(mut lines: Lines<BufReader<ChildStderr>>, into: Arc<Mutex<String>>) {
    while let Ok(Some(line)) = lines.next_line().await {
        append(&into, &line);
    }
}

fn append(into: &Mutex<String>, line: &str) {
    let mut text = into.lock().expect("stderr lock");
    text.push_str(line);
    text.push('\n');
}

/// Every listening TCP socket on `port` is bound to 127.0.0.1: none on another IPv4
/// address or the wildcard, none on IPv6 (the sockets `ss -ltn` lists, read from
/// `/proc/net/tcp{,6}`).
fn assert_listens_on_loopback_only(port: u16, what: &str) {
    let listening = |table: &str| -> Vec<String> {
        let text = std::fs::read_to_string(table).unwrap_or_else(|error| panic!("read {table}: {error}"));
        text.lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (address, local_port) = fields.get(1)?.split_once(':')?;
                // State 0A is LISTEN; the port is big-endian hex.
                let listens = fields.get(3) == Some(&"0A");
                (listens && u16::from_str_radix(local_port, 16).ok() == Some(port))
                    .then(|| address.to_owned())
            })
            .collect()
    };
    let ipv4: Vec<Ipv4Addr> = listening("/proc/net/tcp")
        .iter()
        .map(|hex| {
            // The kernel prints the address's four bytes as one host-order word.
            let word = u32::from_str_radix(hex, 16).expect("hex IPv4 address");
            Ipv4Addr::from(word.to_ne_bytes())
        })
        .collect();
    assert_eq!(ipv4, vec![Ipv4Addr::LOCALHOST], "{what} must listen on 127.0.0.1:{port} only");
    let ipv6 = listening("/proc/net/tcp6");
    assert!(ipv6.is_empty(), "{what} must not listen on IPv6 port {port}: {ipv6:?}");
}

/// A config with one remote upstream `name` at `url` over `transport` (as configured:
/// `streamablehttp` or `sse`).
fn remote_config(name: &str, url: &str, transport: &str) -> Value {
    json!({
        "mcpServers": { name: { "url": url, "transport": transport } },
        // A slow peer on a loaded machine is still inside the first `tools/list`.
        "bridge": { "startupTimeout": 60 },
    })
}

/// The peer's stderr, for a failure message.
fn peer_stderr(peer: &HttpPeer) -> String {
    format!("\npeer stderr:\n{}", peer.stderr())
}

/// Progress notifications the client has seen, as (progress, total, message).
fn progress_seen(session: &Session) -> Vec<(f64, Option<f64>, Option<String>)> {
    session
        .client
        .seen()
        .progress
        .iter()
        .map(|progress| (progress.progress, progress.total, progress.message.clone()))
        .collect()
}

/// `foxxy-bridge tools --json`'s `upstreams`, for a config already written to `env`.
async fn upstream_report(env: &TestEnv) -> (CommandOutput, Vec<Value>) {
    let output = tokio::time::timeout(PEER_DEADLINE * 2, env.run(&["tools", "--json"]))
        .await
        .expect("tools --json finished");
    let report: Value =
        serde_json::from_str(&output.stdout).unwrap_or_else(|_| panic!("tools --json: {output:?}"));
    let upstreams = report["upstreams"].as_array().expect("upstreams").clone();
    (output, upstreams)
}

/// Whether the bridge logged `message` for the upstream `name`.
fn logged_for(log: &str, message: &str, name: &str) -> bool {
    log.lines().any(|line| line.contains(message) && line.contains(&format!("upstream={name}")))
}

// ---------------------------------------------------------------------------------------
// server-everything (TypeScript SDK) as a remote upstream.

/// server-everything in `mode` behind the bridge with `"transport": transport`: every
/// feature kind passes through with its real content.
async fn everything_passes_through(mode: &str, path: &str, transport: &str, connected: &str) {
    let peer = HttpPeer::everything(mode).await;
    let env = TestEnv::new();
    env.write_config(&remote_config("everything", &peer.url(path), transport));
    let session = Session::start(&env).await;
    // The sampling trigger is registered only after `initialized`, and only because the
    // bridge declares sampling upstream: waiting for it waits for the whole catalog.
    let tools = wait_for_tools(
        &env,
        &session,
        &[
            "everything__echo",
            "everything__trigger-long-running-operation",
            "everything__trigger-sampling-request",
        ],
        || peer_stderr(&peer),
    )
    .await;
    assert!(logged_for(&env.wait_log(connected).await, connected, "everything"), "{}", env.log());

    // Tools: listed with the prefix, metadata intact.
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    for expected in
        ["everything__get-sum", "everything__get-structured-content", "everything__get-roots-list"]
    {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    assert!(names.iter().all(|name| name.starts_with("everything__")), "unprefixed tool in {names:?}");
    let echo = tools.iter().find(|tool| tool.name == "everything__echo").expect("everything__echo");
    assert_eq!(echo.description.as_deref(), Some("Echoes back the input string"));

    // A tool call.
    let echoed =
        peer_call(&session, "everything__echo", json!({"message": format!("over {transport}")})).await;
    assert_ne!(echoed.is_error, Some(true), "{}", text_of(&echoed));
    assert_eq!(text_of(&echoed), format!("Echo: over {transport}"));

    // Progress of the long-running tool (`duration` in seconds, split over `steps`).
    let result =
        peer_call(&session, "everything__trigger-long-running-operation", json!({"duration": 1, "steps": 4}))
            .await;
    assert_eq!(text_of(&result), "Long running operation completed. Duration: 1 seconds, Steps: 4.");
    session.wait_seen(PEER_DEADLINE, |seen| seen.progress.len() >= 4).await;
    let progress: Vec<(f64, Option<f64>)> =
        progress_seen(&session).into_iter().map(|(progress, total, _)| (progress, total)).collect();
    assert_eq!(progress, vec![(1.0, Some(4.0)), (2.0, Some(4.0)), (3.0, Some(4.0)), (4.0, Some(4.0))]);

    // A resource: the file server-everything serves, byte for byte.
    let features = "demo://resource/static/document/features.md";
    let read = session
        .service
        .read_resource(ReadResourceRequestParams::new(features))
        .await
        .expect("resources/read");
    let (uri, text) = text_contents(&read.contents[0]);
    assert_eq!(uri, features);
    assert_eq!(text, peers::read_text(&peers::server_everything_docs().join("features.md")));

    // A prompt with arguments.
    let arguments =
        json!({"city": "Lisbon", "state": "Estremadura"}).as_object().cloned().unwrap_or_default();
    let prompt = session
        .service
        .get_prompt(GetPromptRequestParams::new("everything__args-prompt").with_arguments(arguments))
        .await
        .expect("prompts/get");
    assert_eq!(
        serde_json::to_value(&prompt.messages).expect("encode messages"),
        json!([{"role": "user", "content": {"type": "text", "text": "What's weather in Lisbon, Estremadura?"}}])
    );

    // Sampling: the upstream's request reaches the test client, its answer goes back.
    let sampled = peer_call(
        &session,
        "everything__trigger-sampling-request",
        json!({"prompt": "write a haiku", "maxTokens": 17}),
    )
    .await;
    let text = text_of(&sampled);
    assert_ne!(sampled.is_error, Some(true), "{text}");
    let reply: Value = serde_json::from_str(
        text.strip_prefix("LLM sampling result:")
            .unwrap_or_else(|| panic!("not a sampling result: {text}"))
            .trim(),
    )
    .unwrap_or_else(|error| panic!("sampling result is not JSON ({error}): {text}"));
    assert_eq!(reply["content"]["text"], "sampled-by-test-client", "{reply}");
    assert_eq!(reply["model"], "test-model", "{reply}");
    let requests = session.client.seen().sampling_requests.clone();
    assert_eq!(requests.len(), 1, "one sampling request reached the client");
    assert_eq!(requests[0].max_tokens, 17);
    let messages = serde_json::to_value(&requests[0].messages).expect("encode messages");
    assert_eq!(
        messages[0]["content"]["text"], "Resource trigger-sampling-request context: write a haiku",
        "{messages}"
    );
    session.close().await;
}

#[tokio::test]
async fn everything_over_streamable_http_passes_tools_progress_resources_prompts_and_sampling() {
    everything_passes_through("streamableHttp", "/mcp", "streamablehttp", "connected over streamable HTTP")
        .await;
}

#[tokio::test]
async fn everything_over_legacy_sse_passes_tools_progress_resources_prompts_and_sampling() {
    everything_passes_through("sse", "/sse", "sse", "connected over legacy SSE").await;
}

// ---------------------------------------------------------------------------------------
// The Python `mcp` SDK's MCPServer as a remote upstream.

/// The Python server `peer` behind the bridge with `"transport": transport`.
async fn python_passes_through(peer: &HttpPeer, path: &str, transport: &str, connected: &str) {
    let env = TestEnv::new();
    env.write_config(&remote_config("py", &peer.url(path), transport));
    let session = Session::start(&env).await;
    let tools =
        wait_for_tools(&env, &session, &["py__echo", "py__slow", "py__sample"], || peer_stderr(peer)).await;
    assert!(logged_for(&env.wait_log(connected).await, connected, "py"), "{}", env.log());
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    assert_eq!(names.len(), 3, "exactly the Python server's tools: {names:?}");
    let echo = tools.iter().find(|tool| tool.name == "py__echo").expect("py__echo");
    assert_eq!(echo.description.as_deref(), Some("Echo the message back, prefixed with `py: `."));
    let schema = Value::Object((*echo.input_schema).clone());
    assert_eq!(schema["properties"]["message"]["type"], "string", "{schema}");

    let echoed = peer_call(&session, "py__echo", json!({"message": "hello python"})).await;
    assert_ne!(echoed.is_error, Some(true), "{}", text_of(&echoed));
    assert_eq!(text_of(&echoed), "py: hello python");

    let slow = peer_call(&session, "py__slow", json!({"steps": 3})).await;
    assert_eq!(text_of(&slow), "py: done 3 steps");
    session.wait_seen(PEER_DEADLINE, |seen| seen.progress.len() >= 3).await;
    assert_eq!(
        progress_seen(&session),
        vec![
            (1.0, Some(3.0), Some("py step 1".to_owned())),
            (2.0, Some(3.0), Some("py step 2".to_owned())),
            (3.0, Some(3.0), Some("py step 3".to_owned())),
        ],
        "every progress notification, in order"
    );

    let read = session
        .service
        .read_resource(ReadResourceRequestParams::new("py://static"))
        .await
        .expect("resources/read");
    assert_eq!(text_contents(&read.contents[0]), ("py://static", "static resource of py"));

    let arguments = json!({"who": "Ada"}).as_object().cloned().unwrap_or_default();
    let prompt = session
        .service
        .get_prompt(GetPromptRequestParams::new("py__greet").with_arguments(arguments))
        .await
        .expect("prompts/get");
    assert_eq!(
        serde_json::to_value(&prompt.messages).expect("encode messages"),
        json!([{"role": "user", "content": {"type": "text", "text": "Hello Ada from py"}}])
    );

    let sampled = peer_call(&session, "py__sample", json!({"prompt": "a question from python"})).await;
    assert_ne!(sampled.is_error, Some(true), "{}", text_of(&sampled));
    assert_eq!(text_of(&sampled), "py: sampled: sampled-by-test-client");
    let requests = session.client.seen().sampling_requests.clone();
    assert_eq!(requests.len(), 1, "one sampling request reached the client");
    assert_eq!(requests[0].max_tokens, 32);
    assert_eq!(requests[0].system_prompt.as_deref(), Some("You are the Python test peer."));
    let messages = serde_json::to_value(&requests[0].messages).expect("encode messages");
    assert_eq!(messages[0]["content"]["text"], "a question from python", "{messages}");
    session.close().await;
}

#[tokio::test]
async fn python_sdk_server_over_streamable_http_passes_tools_progress_resources_prompts_and_sampling() {
    let peer = HttpPeer::python("streamable-http").await;
    python_passes_through(&peer, "/mcp", "streamablehttp", "connected over streamable HTTP").await;
}

#[tokio::test]
async fn python_sdk_server_over_legacy_sse_passes_tools_progress_resources_prompts_and_sampling() {
    let peer = HttpPeer::python("sse").await;
    python_passes_through(&peer, "/sse", "sse", "connected over legacy SSE").await;
}

// ---------------------------------------------------------------------------------------
// Auto-detection: no `transport` in the config.

/// Both third-party servers, serving the same transport at `path`, behind one bridge
/// with no `transport` set: each connects with `expected` (as `tools --json` names it)
/// and the log says how.
async fn auto_detection_picks(
    everything: HttpPeer,
    python: HttpPeer,
    path: &str,
    expected: &str,
    connected: &str,
) {
    let env = TestEnv::new();
    env.write_config(&json!({
        "mcpServers": {
            "everything": { "url": everything.url(path) },
            "python": { "url": python.url(path) },
        },
        "bridge": { "startupTimeout": 60 },
    }));
    let (output, upstreams) = upstream_report(&env).await;
    assert_eq!(output.code, Some(0), "every upstream connected: {output:?}\nlog:\n{}", env.log());
    let mut seen: Vec<(String, String, String)> = upstreams
        .iter()
        .map(|upstream| {
            let field = |key: &str| upstream[key].as_str().unwrap_or_default().to_owned();
            (field("name"), field("transport"), field("status"))
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("everything".to_owned(), expected.to_owned(), "ready".to_owned()),
            ("python".to_owned(), expected.to_owned(), "ready".to_owned()),
        ],
        "{upstreams:?}"
    );
    // Streamable HTTP is always tried first; SSE only after the server refused it.
    let fell_back = expected == "sse";
    let log = env.log();
    for name in ["everything", "python"] {
        assert!(logged_for(&log, connected, name), "no `{connected}` for {name}:\n{log}");
        let tried_sse = logged_for(&log, "trying the legacy SSE transport", name);
        assert_eq!(tried_sse, fell_back, "fallback to SSE for {name}:\n{log}");
    }
    let tools: Value = serde_json::from_str(&output.stdout).expect("tools --json");
    let names: Vec<&str> =
        tools["tools"].as_array().expect("tools").iter().filter_map(|tool| tool["name"].as_str()).collect();
    assert!(names.contains(&"everything__echo") && names.contains(&"python__echo"), "{names:?}");
}

#[tokio::test]
async fn auto_detection_picks_streamable_http_for_streamable_servers() {
    let (everything, python) =
        tokio::join!(HttpPeer::everything("streamableHttp"), HttpPeer::python("streamable-http"));
    auto_detection_picks(everything, python, "/mcp", "streamable-http", "connected over streamable HTTP")
        .await;
}

#[tokio::test]
async fn auto_detection_falls_back_to_legacy_sse_for_sse_only_servers() {
    let (everything, python) = tokio::join!(HttpPeer::everything("sse"), HttpPeer::python("sse"));
    auto_detection_picks(everything, python, "/sse", "sse", "connected over legacy SSE").await;
}

// ---------------------------------------------------------------------------------------
// HTTPS with a self-signed certificate.

/// A self-signed certificate for `IP:127.0.0.1` and its key, in a temporary directory.
struct SelfSigned {
    dir: tempfile::TempDir,
}

impl SelfSigned {
    fn generate() -> SelfSigned {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1", "-days", "1"])
            .arg("-keyout")
            .arg(dir.path().join("key.pem"))
            .arg("-out")
            .arg(dir.path().join("cert.pem"))
            .output()
            .expect("run openssl (needed to make a test certificate)");
        assert!(output.status.success(), "openssl failed: {}", String::from_utf8_lossy(&output.stderr));
        SelfSigned { dir }
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }
}

/// The Python server over streamable HTTP, serving HTTPS with `certificate`.
async fn python_https(certificate: &SelfSigned) -> HttpPeer {
    let mut command = peers::python_server("streamable-http");
    command.arg("--certfile").arg(certificate.cert()).arg("--keyfile").arg(certificate.key());
    HttpPeer::start("python_server.py streamable-http over HTTPS", command).await
}

#[tokio::test]
async fn a_self_signed_certificate_fails_with_a_tls_error_and_the_verify_ssl_hint() {
    let certificate = SelfSigned::generate();
    let peer = python_https(&certificate).await;
    let env = TestEnv::new();
    let url = format!("https://127.0.0.1:{}/mcp", peer.port);
    env.write_config(&json!({
        "mcpServers": { "tls": { "url": url, "retryAttempts": 1 } },
        "bridge": { "startupTimeout": 60 },
    }));
    let (output, upstreams) = upstream_report(&env).await;
    assert_eq!(output.code, Some(1), "an upstream failed: {output:?}");
    assert_eq!(upstreams[0]["status"], "failed", "{upstreams:?}");
    let error = upstreams[0]["error"].as_str().unwrap_or_default();
    let lower = error.to_lowercase();
    assert!(lower.contains("tls") || lower.contains("certificate"), "names the TLS failure: {error}");
    assert!(error.contains("verify_ssl"), "hints at `verify_ssl`: {error}");
}

#[tokio::test]
async fn verify_ssl_false_accepts_a_self_signed_certificate_and_warns() {
    let certificate = SelfSigned::generate();
    let peer = python_https(&certificate).await;
    let env = TestEnv::new();
    let url = format!("https://127.0.0.1:{}/mcp", peer.port);
    env.write_config(&json!({
        "mcpServers": { "tls": { "url": url, "verify_ssl": false } },
        "bridge": { "startupTimeout": 60 },
    }));
    let output = tokio::time::timeout(
        PEER_DEADLINE * 2,
        env.run(&["call", "tls__echo", r#"{"message": "over https"}"#]),
    )
    .await
    .expect("call finished");
    assert_eq!(output.code, Some(0), "{output:?}\nlog:\n{}\npeer stderr:\n{}", env.log(), peer.stderr());
    assert_eq!(output.stdout.trim(), "py: over https");
    let log = env.log();
    assert!(
        logged_for(&log, "TLS certificate verification is OFF", "tls"),
        "the log warns that verification is off:\n{log}"
    );
    assert!(logged_for(&log, "connected over streamable HTTP", "tls"), "{log}");
}

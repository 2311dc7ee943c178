//! Shared test harness: a temporary state directory and config, the built binaries,
//! an rmcp test client that drives `foxxy-bridge stdio` over pipes like a real MCP
//! client, and a raw line-level driver for malformed input.
//!
//! `TestEnv` is a temporary state root and config file. `Session` is `foxxy-bridge stdio`
//! driven by an rmcp `TestClient` that answers sampling, elicitation and roots and records
//! notifications. `RawSession` is a line-level driver for malformed input and stdout
//! purity. There are also helpers for processes (`descendants`, `alive`), the log, and
//! commands run in a private network namespace.

#![allow(dead_code, deprecated)]

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use rmcp::{
    ClientHandler, ErrorData, RoleClient, ServiceExt,
    model::{
        ClientCapabilities, ClientInfo, CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams,
        ElicitResult, ElicitationAction, ElicitationCapability, FormElicitationCapability, Implementation,
        ListRootsResult, LoggingMessageNotificationParam, ProgressNotificationParam, ProtocolVersion,
        ResourceUpdatedNotificationParam, Root, SamplingMessage,
    },
    service::{NotificationContext, RequestContext, RunningService},
    transport::TokioChildProcess,
};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    process::{Child, ChildStderr, Command},
    sync::Notify,
};

/// The bridge binary under test.
pub fn bridge_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_foxxy-bridge"))
}

/// The rmcp fixture server, an example target. A plain `cargo test` builds it, but
/// `cargo test --test it` does not, so the first use makes sure it is up to date.
pub fn fixture_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let bridge = bridge_bin();
            let fixture =
                bridge.parent().expect("binary has a parent directory").join("examples/fixture-server");
            if is_fresh(&fixture) {
                return fixture;
            }
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = std::process::Command::new(cargo)
                .args(["build", "--quiet", "--example", "fixture-server"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo to build the fixture server");
            assert!(status.success(), "building the fixture server failed");
            assert!(fixture.exists(), "fixture server not found at {}", fixture.display());
            fixture
        })
        .clone()
}

/// Whether `binary` exists and is newer than every source file of the fixture.
fn is_fresh(binary: &Path) -> bool {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|meta| meta.modified()).ok();
    let Some(built) = modified(binary) else { return false };
    let sources = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixture");
    std::fs::read_dir(sources)
        .map(|entries| {
            entries.flatten().all(|entry| modified(&entry.path()).is_some_and(|time| time <= built))
        })
        .unwrap_or(false)
}

/// A temporary state root (`FOXXY_BRIDGE_HOME`) plus a config file in it.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("create temp dir") }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.json5")
    }

    pub fn write_config(&self, config: &Value) -> PathBuf {
        let path = self.config_path();
        std::fs::write(&path, serde_json::to_vec_pretty(config).expect("encode config"))
            .expect("write config");
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The bridge's log so far (all files, concatenated).
    pub fn log(&self) -> String {
        let dir = self.home().join("logs");
        let mut text = String::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut paths: Vec<_> = entries.flatten().map(|entry| entry.path()).collect();
            paths.sort();
            for path in paths {
                if path.file_name().is_some_and(|name| name != "foxxy-bridge.log") {
                    text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
                }
            }
        }
        text
    }

    /// Wait until the log contains `needle` (the log writer is asynchronous).
    pub async fn wait_log(&self, needle: &str) -> String {
        wait_until(Duration::from_secs(10), || self.log().contains(needle)).await;
        self.log()
    }

    /// A `foxxy-bridge` command with this env's state root and config.
    pub fn command(&self) -> Command {
        let mut command = Command::new(bridge_bin());
        command
            .env("FOXXY_BRIDGE_HOME", self.home())
            .env("FOXXY_BRIDGE_CONFIG", self.config_path())
            .env_remove("FOXXY_BRIDGE_LOG")
            .kill_on_drop(true);
        command
    }

    /// `sh -c script` in a fresh network namespace with only loopback (nothing can
    /// leave the machine), with this env's state root and config.
    pub fn command_in_netns(&self, script: &str) -> Command {
        let mut command = Command::new("unshare");
        command
            .args(["--net", "sh", "-c", script])
            .env("FOXXY_BRIDGE_HOME", self.home())
            .env("FOXXY_BRIDGE_CONFIG", self.config_path())
            .env_remove("FOXXY_BRIDGE_LOG")
            .kill_on_drop(true);
        command
    }

    /// Run a CLI command to completion.
    pub async fn run(&self, args: &[&str]) -> CommandOutput {
        let output = self.command().args(args).output().await.expect("run foxxy-bridge");
        CommandOutput {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

#[derive(Debug)]
pub struct CommandOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// A fixture upstream entry for a config.
pub fn fixture(name: &str, extra_args: &[&str]) -> Value {
    let mut args = vec!["--name".to_owned(), name.to_owned()];
    args.extend(extra_args.iter().map(|arg| (*arg).to_owned()));
    serde_json::json!({ "command": fixture_bin(), "args": args })
}

/// The two ways the bridge serves a client's `tools/call` to a stdio upstream; tests of
/// timeouts, cancellation and progress run on both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    /// The upstream is up when the call arrives: the call goes straight to its lane and
    /// no task waits for it (`proxy/stdio/calls.rs`, `upstream/stdio/lane.rs`).
    Lane,
    /// The upstream is still starting: a task waits for it, then for the answer.
    Task,
}

impl Served {
    pub const BOTH: [Served; 2] = [Served::Lane, Served::Task];

    /// Extra fixture arguments for this way: a start delay makes calls wait.
    pub fn fixture_args(self) -> &'static [&'static str] {
        match self {
            Served::Lane => &[],
            Served::Task => &["--start-delay-ms", "700"],
        }
    }

    /// Get the session ready for this way: a complete `tools/list` waits until the
    /// upstreams are up.
    pub async fn prepare(self, session: &Session) {
        if self == Served::Lane {
            tool_names(session).await;
        }
    }
}

/// Poll `condition` until it holds or `limit` passes; panics on timeout.
pub async fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "condition not met within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the test client saw from the bridge, besides responses.
#[derive(Default)]
pub struct Seen {
    pub progress: Vec<ProgressNotificationParam>,
    pub logs: Vec<LoggingMessageNotificationParam>,
    pub updated: Vec<String>,
    pub tools_changed: usize,
    pub prompts_changed: usize,
    pub resources_changed: usize,
    pub sampling_requests: Vec<CreateMessageRequestParams>,
    pub sampling_cancelled: usize,
    pub elicitations: usize,
    pub roots_requests: usize,
}

/// The test's MCP client: answers sampling, elicitation and roots, records notifications.
#[derive(Clone)]
pub struct TestClient {
    pub seen: Arc<Mutex<Seen>>,
    pub changed: Arc<Notify>,
    pub declare_sampling: bool,
    /// Delay before answering sampling, to test cancellation of a forwarded request.
    pub sampling_delay: Duration,
    /// The text of every sampling answer.
    pub sampling_reply: String,
    /// The URIs `roots/list` answers with.
    pub roots: Vec<String>,
}

impl Default for TestClient {
    fn default() -> Self {
        Self {
            seen: Arc::default(),
            changed: Arc::new(Notify::new()),
            declare_sampling: true,
            sampling_delay: Duration::ZERO,
            sampling_reply: "sampled-by-test-client".to_owned(),
            roots: vec!["file:///tmp/root-a".to_owned(), "file:///tmp/root-b".to_owned()],
        }
    }
}

impl TestClient {
    pub fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().expect("seen lock")
    }

    fn record(&self, change: impl FnOnce(&mut Seen)) {
        change(&mut self.seen());
        self.changed.notify_waiters();
    }
}

impl ClientHandler for TestClient {
    fn get_info(&self) -> ClientInfo {
        let mut capabilities = ClientCapabilities::builder()
            .enable_roots()
            .enable_roots_list_changed()
            .enable_elicitation_with(
                ElicitationCapability::new().with_form(FormElicitationCapability::default()),
            )
            .build();
        if self.declare_sampling {
            capabilities.sampling = Some(Default::default());
        }
        ClientInfo::new(capabilities, Implementation::new("foxxy-test-client", "1.0"))
            .with_protocol_version(ProtocolVersion::V_2025_06_18)
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.record(|seen| seen.sampling_requests.push(params.clone()));
        if !self.sampling_delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(self.sampling_delay) => {}
                () = context.ct.cancelled() => {
                    self.record(|seen| seen.sampling_cancelled += 1);
                    return Err(ErrorData::internal_error("cancelled", None));
                }
            }
        }
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(self.sampling_reply.clone()),
            "test-model".to_owned(),
        ))
    }

    async fn create_elicitation(
        &self,
        _params: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        self.record(|seen| seen.elicitations += 1);
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(serde_json::json!({"answer": "42"})))
    }

    async fn list_roots(&self, _context: RequestContext<RoleClient>) -> Result<ListRootsResult, ErrorData> {
        self.record(|seen| seen.roots_requests += 1);
        Ok(ListRootsResult::new(self.roots.iter().map(|uri| Root::new(uri.clone())).collect()))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.record(|seen| seen.progress.push(params));
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.record(|seen| seen.logs.push(params));
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.record(|seen| seen.updated.push(params.uri));
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.record(|seen| seen.tools_changed += 1);
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.record(|seen| seen.prompts_changed += 1);
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.record(|seen| seen.resources_changed += 1);
    }
}

/// `foxxy-bridge stdio` driven by [`TestClient`] over its stdin/stdout.
pub struct Session {
    pub client: TestClient,
    pub service: RunningService<RoleClient, TestClient>,
    pub pid: u32,
    pub stderr: Arc<Mutex<String>>,
}

impl Session {
    /// Start the bridge for `env` and complete `initialize`.
    pub async fn start(env: &TestEnv) -> Session {
        Self::start_with(env, TestClient::default()).await
    }

    pub async fn start_with(env: &TestEnv, client: TestClient) -> Session {
        Self::start_command(env.command(), client).await
    }

    /// Start `command stdio` (a `foxxy-bridge` command prepared by the caller).
    pub async fn start_command(mut command: Command, client: TestClient) -> Session {
        command.arg("stdio");
        Self::start_prepared(command, client).await
    }

    /// Start `foxxy-bridge stdio ARGS` for `env`.
    pub async fn start_args(env: &TestEnv, args: &[&str], client: TestClient) -> Session {
        let mut command = env.command();
        command.arg("stdio").args(args);
        Self::start_prepared(command, client).await
    }

    /// Start `command` as it is (a `foxxy-bridge ... stdio ...` command).
    async fn start_prepared(command: Command, client: TestClient) -> Session {
        let (process, stderr) = TokioChildProcess::builder(command)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn foxxy-bridge stdio");
        let pid = process.id().expect("bridge pid");
        let stderr_text = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = stderr {
            tokio::spawn(collect(stderr, stderr_text.clone()));
        }
        let service = tokio::time::timeout(Duration::from_secs(10), client.clone().serve(process))
            .await
            .expect("initialize within 10 s")
            .expect("initialize succeeds");
        Session { client, service, pid, stderr: stderr_text }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Wait until the client has seen something matching `condition`.
    pub async fn wait_seen(&self, limit: Duration, condition: impl Fn(&Seen) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.client.changed.notified();
            if condition(&self.client.seen()) {
                return;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "expected notification not seen within {limit:?}");
            let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), notified).await;
        }
    }

    /// Close stdin (what a client does when it quits) and wait for the bridge to exit.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.service.cancel()).await;
    }
}

async fn collect(mut stderr: ChildStderr, into: Arc<Mutex<String>>) {
    let mut buffer = String::new();
    let _ = stderr.read_to_string(&mut buffer).await;
    into.lock().expect("stderr lock").push_str(&buffer);
}

/// The bridge driven line by line, for malformed-input tests and stdout checks.
pub struct RawSession {
    pub child: Child,
    stdin: Option<Box<dyn AsyncWrite + Unpin + Send>>,
    stdout: tokio::io::Lines<BufReader<Box<dyn AsyncRead + Unpin + Send>>>,
}

impl RawSession {
    pub async fn start(env: &TestEnv) -> RawSession {
        let mut child = env
            .command()
            .arg("stdio")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn foxxy-bridge stdio");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        RawSession::over(child, stdin, stdout)
    }

    /// A session over streams the caller connected to the child's stdin and stdout
    /// (a socket pair, a terminal, ...).
    pub fn over(
        child: Child,
        stdin: impl AsyncWrite + Unpin + Send + 'static,
        stdout: impl AsyncRead + Unpin + Send + 'static,
    ) -> RawSession {
        let stdout: Box<dyn AsyncRead + Unpin + Send> = Box::new(stdout);
        RawSession { child, stdin: Some(Box::new(stdin)), stdout: BufReader::new(stdout).lines() }
    }

    pub async fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).await.expect("write");
        stdin.write_all(b"\n").await.expect("write newline");
        stdin.flush().await.expect("flush");
    }

    pub async fn send(&mut self, message: &Value) {
        self.send_line(&message.to_string()).await;
    }

    /// Next stdout line as JSON; panics if a line is not JSON (stdout must be pure).
    pub async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), self.stdout.next_line())
            .await
            .expect("a line within 60 s")
            .expect("read stdout")
            .expect("stdout open");
        serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("stdout line is not JSON ({error}): {line:?}"))
    }

    /// The next response or error, skipping notifications and requests.
    pub async fn reply(&mut self) -> Value {
        loop {
            let message = self.recv().await;
            if message.get("method").is_none() {
                return message;
            }
        }
    }

    /// Skip notifications until the response with `id`.
    pub async fn response(&mut self, id: &Value) -> Value {
        loop {
            let message = self.recv().await;
            if message.get("id") == Some(id) && message.get("method").is_none() {
                return message;
            }
        }
    }

    pub async fn initialize(&mut self) {
        self.send(&serde_json::json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
        }))
        .await;
        let reply = self.response(&serde_json::json!(0)).await;
        assert!(reply.get("result").is_some(), "initialize failed: {reply}");
        self.send(&serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }
}

/// Pids of processes whose parent is `pid`, recursively (from /proc).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = std::collections::HashMap::<u32, Vec<u32>>::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(parent) = parent_of(child) {
                parents.entry(parent).or_default().push(child);
            }
        }
    }
    let mut found = Vec::new();
    let mut stack = vec![pid];
    while let Some(current) = stack.pop() {
        for &child in parents.get(&current).into_iter().flatten() {
            found.push(child);
            stack.push(child);
        }
    }
    found
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is parenthesised and may contain spaces: skip past it.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rfind(')').and_then(|end| stat[end + 2..].chars().next()) != Some('Z'),
        Err(_) => false,
    }
}

pub fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path).expect("pid file").trim().parse().expect("pid")
}

/// `tools/call` parameters for `name` with JSON `arguments`.
pub fn call(name: &str, arguments: Value) -> rmcp::model::CallToolRequestParams {
    let mut params = rmcp::model::CallToolRequestParams::new(name.to_owned());
    params.arguments = arguments.as_object().cloned();
    params
}

/// The text content of a tool result, concatenated.
pub fn text_of(result: &rmcp::model::CallToolResult) -> String {
    result.content.iter().filter_map(|content| content.as_text()).map(|text| text.text.clone()).collect()
}

/// The exposed tool names the client sees, sorted.
pub async fn tool_names(session: &Session) -> Vec<String> {
    let tools = session.service.list_all_tools().await.expect("tools/list");
    let mut names: Vec<String> = tools.into_iter().map(|tool| tool.name.to_string()).collect();
    names.sort();
    names
}

/// How long a third-party peer (server-everything, the Python SDK) may take to do
/// something that should be quick. Generous on purpose: CI has two cores shared by every
/// test running in parallel, and Node and Python start slowly.
pub const PEER_DEADLINE: Duration = Duration::from_secs(60);

/// Poll `tools/list` until every name in `names` is there (list_changed may lag); on
/// failure the message has the bridge log and `more()` (e.g. the peer's stderr).
pub async fn wait_for_tools(
    env: &TestEnv,
    session: &Session,
    names: &[&str],
    more: impl Fn() -> String,
) -> Vec<rmcp::model::Tool> {
    let deadline = tokio::time::Instant::now() + PEER_DEADLINE;
    loop {
        let tools = session.service.list_all_tools().await.expect("tools/list");
        if names.iter().all(|name| tools.iter().any(|tool| tool.name == *name)) {
            return tools;
        }
        let listed: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
        assert!(
            tokio::time::Instant::now() < deadline,
            "tools {names:?} not all listed within {PEER_DEADLINE:?}; listed: {listed:?}\nbridge log:\n{}{}",
            env.log(),
            more()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Call tool `name` with `arguments`, failing the test if it errors or takes longer than
/// [`PEER_DEADLINE`].
pub async fn peer_call(session: &Session, name: &str, arguments: Value) -> rmcp::model::CallToolResult {
    let mut params = rmcp::model::CallToolRequestParams::new(name.to_owned());
    params.arguments = arguments.as_object().cloned();
    tokio::time::timeout(PEER_DEADLINE, session.service.call_tool(params))
        .await
        .unwrap_or_else(|_| panic!("{name} did not answer within {PEER_DEADLINE:?}"))
        .unwrap_or_else(|error| panic!("{name} failed: {error}"))
}

/// The URI and text of text resource contents.
pub fn text_contents(contents: &rmcp::model::ResourceContents) -> (&str, &str) {
    match contents {
        rmcp::model::ResourceContents::TextResourceContents { uri, text, .. } => (uri, text),
        other => panic!("expected text contents, got {other:?}"),
    }
}

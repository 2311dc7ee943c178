//! The two subjects of every measurement, and the processes behind them: a DIRECT rmcp
//! client session with an upstream (a stdio child, or streamable HTTP), and the same
//! upstream behind `foxxy-bridge stdio` (a child with a temporary state root and a
//! config naming that upstream). Also where the measured binaries are.
//!
//! Does not own: what is measured (`scenarios.rs`) or how it is printed (`report.rs`).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use rmcp::{
    ClientHandler, RoleClient, ServiceExt,
    model::{
        CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion, object,
    },
    service::{Peer, RunningService},
    transport::{StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig},
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// How long any one session may take to start; far above anything measured, it only
/// keeps a broken build from hanging the run.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long a closed session's process may take to exit before it is killed (a bridge
/// under callgrind needs seconds to write its profile).
const EXIT_LIMIT: Duration = Duration::from_secs(30);

/// The binaries under test and the third-party peer.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub bridge: PathBuf,
    pub fixture: PathBuf,
    /// `server-everything`'s `dist/index.js`, if the test peers are installed.
    pub everything: Option<PathBuf>,
    /// The npm test peers' directory (`tests/peers`, or `FOXXY_TEST_PEERS_DIR`).
    pub peers: PathBuf,
}

impl Binaries {
    /// The binaries next to this harness: `target/bench/` (where `scripts/bench` copies
    /// them) holds all three; from `target/bench-tools/examples/` the bridge is the
    /// release build, `target/release/foxxy-bridge`. `bridge` names another bridge binary.
    pub fn locate(bridge: Option<PathBuf>) -> anyhow::Result<Binaries> {
        let exe = std::env::current_exe().context("cannot find the harness's own path")?;
        let dir = exe.parent().context("the harness has no directory")?;
        let bridge = bridge.unwrap_or_else(|| {
            let sibling = dir.join("foxxy-bridge");
            if sibling.exists() { sibling } else { dir.join("../../release/foxxy-bridge") }
        });
        let fixture = dir.join("fixture-server");
        for (what, path) in [("foxxy-bridge", &bridge), ("fixture-server", &fixture)] {
            if !path.exists() {
                bail!("{what} not found at `{}`; hint: run `scripts/bench`, which builds it", path.display());
            }
        }
        let peers = std::env::var_os("FOXXY_TEST_PEERS_DIR")
            .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("peers"), PathBuf::from);
        let everything = peers.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
        Ok(Binaries { bridge, fixture, everything: everything.exists().then_some(everything), peers })
    }

    /// `dist/index.js` of the npm test peer `@modelcontextprotocol/<package>`, if installed.
    pub fn peer_script(&self, package: &str) -> Option<PathBuf> {
        let script =
            self.peers.join("node_modules/@modelcontextprotocol").join(package).join("dist/index.js");
        script.exists().then_some(script)
    }

    /// `fixture-server --name NAME EXTRA…` (stdio).
    pub fn fixture_command(&self, name: &str, extra: &[&str]) -> Command {
        let mut command = Command::new(&self.fixture);
        command.args(["--name", name]).args(extra);
        command
    }

    /// The config entry that makes the bridge run the same command.
    pub fn fixture_entry(&self, name: &str, extra: &[&str]) -> Value {
        let mut args = vec!["--name", name];
        args.extend_from_slice(extra);
        json!({ "command": self.fixture, "args": args })
    }

    /// `node …/server-everything/dist/index.js stdio`.
    pub fn everything_command(&self) -> Option<Command> {
        let script = self.everything.as_ref()?;
        let mut command = Command::new("node");
        command.arg(script).arg("stdio");
        Some(command)
    }

    pub fn everything_entry(&self) -> Option<Value> {
        let script = self.everything.as_ref()?;
        Some(json!({ "command": "node", "args": [script, "stdio"] }))
    }
}

/// The benchmark's MCP client: declares protocol 2025-11-25 (the newest the bridge
/// serves) and nothing else; it ignores notifications.
#[derive(Debug, Clone, Copy, Default)]
pub struct BenchClient;

impl ClientHandler for BenchClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("foxxy-bench", "1.0"))
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }
}

/// One live client session, with the process it started (if any).
pub struct Session {
    pub service: RunningService<RoleClient, BenchClient>,
    /// The server process this session spawned: the upstream itself (direct) or the
    /// bridge. `None` for a direct HTTP session. Ended by [`Session::close`]; killed on
    /// drop as a backstop.
    pub process: Option<Child>,
    /// When the process was spawned (or the HTTP connection started).
    pub started: Instant,
    /// Spawn → `initialize` answered (and `initialized` sent).
    pub ready: Duration,
}

impl Session {
    pub fn peer(&self) -> &Peer<RoleClient> {
        self.service.peer()
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(Child::id)
    }

    /// Spawn `command` as a stdio MCP server and complete `initialize` with it.
    /// `stderr` receives the process's stderr (the fixture's is not interesting; the
    /// bridge's holds its startup errors).
    pub async fn spawn(mut command: Command, stderr: Stdio) -> anyhow::Result<Session> {
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(stderr).kill_on_drop(true);
        let started = Instant::now();
        let mut child = command.spawn().with_context(|| format!("cannot spawn {command:?}"))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let stdin = child.stdin.take().context("child stdin")?;
        let service = tokio::time::timeout(START_LIMIT, BenchClient.serve((stdout, stdin)))
            .await
            .with_context(|| format!("no initialize answer within {START_LIMIT:?} from {command:?}"))?
            .with_context(|| format!("initialize failed with {command:?}"))?;
        let ready = started.elapsed();
        Ok(Session { service, process: Some(child), started, ready })
    }

    /// A direct streamable HTTP session with `url`, with rmcp's default reqwest client
    /// (which keeps no idle connection: one TCP connection per request), or, if
    /// `pooled`, with a plain `reqwest::Client` that keeps connections alive as the
    /// bridge's does.
    pub async fn http(url: &str, pooled: bool) -> anyhow::Result<Session> {
        foxxy_bridge::http_client::install_crypto_provider();
        let started = Instant::now();
        let transport = if pooled {
            StreamableHttpClientTransport::with_client(
                reqwest::Client::new(),
                StreamableHttpClientTransportConfig::with_uri(url.to_owned()),
            )
        } else {
            StreamableHttpClientTransport::from_uri(url.to_owned())
        };
        let service = tokio::time::timeout(START_LIMIT, BenchClient.serve(transport))
            .await
            .with_context(|| format!("no initialize answer from {url}"))?
            .with_context(|| format!("initialize failed with {url}"))?;
        Ok(Session { service, process: None, started, ready: started.elapsed() })
    }

    /// Close the session (stdin EOF for a child) and wait for the process to exit;
    /// kill it if it does not. Returns whether it exited by itself.
    pub async fn close(self) -> bool {
        let Session { service, process, .. } = self;
        let _ = tokio::time::timeout(EXIT_LIMIT, service.cancel()).await;
        let Some(mut child) = process else { return true };
        match tokio::time::timeout(EXIT_LIMIT, child.wait()).await {
            Ok(_) => true,
            Err(_) => {
                let _ = child.kill().await;
                false
            }
        }
    }
}

/// A temporary state root (`FOXXY_BRIDGE_HOME`) with a config, for bridge runs.
pub struct BridgeEnv {
    dir: tempfile::TempDir,
    bridge: PathBuf,
}

impl BridgeEnv {
    /// `servers` is the `mcpServers` object.
    pub fn new(binaries: &Binaries, servers: Value) -> anyhow::Result<BridgeEnv> {
        BridgeEnv::with_config(binaries, json!({ "mcpServers": servers }))
    }

    /// `config` is the whole config file.
    pub fn with_config(binaries: &Binaries, config: Value) -> anyhow::Result<BridgeEnv> {
        let dir = tempfile::Builder::new().prefix("foxxy-bench-").tempdir().context("create a temp dir")?;
        std::fs::write(dir.path().join("config.json5"), serde_json::to_vec_pretty(&config)?)
            .context("write the bridge config")?;
        Ok(BridgeEnv { dir, bridge: binaries.bridge.clone() })
    }

    /// Where a bridge of this env looks for its hub.
    pub fn hub_socket(&self) -> PathBuf {
        let paths = foxxy_bridge::paths::StatePaths::new(self.dir.path().join("home"));
        foxxy_bridge::hub_socket::HubAddress::for_config(&paths, &self.dir.path().join("config.json5")).socket
    }

    /// `foxxy-bridge ARGS…` (not `stdio`) in this env, e.g. `hub status --json`.
    pub fn command_line(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(&self.bridge);
        command
            .args(args)
            .env("FOXXY_BRIDGE_HOME", self.dir.path().join("home"))
            .env("FOXXY_BRIDGE_CONFIG", self.dir.path().join("config.json5"))
            .env_remove("FOXXY_BRIDGE_LOG");
        command
    }

    /// `foxxy-bridge stdio` for this env, run under `wrapper` (a profiler) if not empty.
    pub fn command(&self, wrapper: &[String]) -> Command {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&self.bridge);
                command
            }
            None => Command::new(&self.bridge),
        };
        command
            .arg("stdio")
            .env("FOXXY_BRIDGE_HOME", self.dir.path().join("home"))
            .env("FOXXY_BRIDGE_CONFIG", self.dir.path().join("config.json5"))
            .env_remove("FOXXY_BRIDGE_LOG");
        command
    }

    /// Start the bridge (wrapped or not) and complete `initialize`.
    pub async fn start(&self, wrapper: &[String]) -> anyhow::Result<Session> {
        let stderr_path = self.dir.path().join("bridge-stderr.txt");
        let stderr = std::fs::File::create(&stderr_path).context("create the bridge's stderr file")?;
        Session::spawn(self.command(wrapper), stderr.into()).await.with_context(|| {
            format!("bridge stderr: {}", std::fs::read_to_string(&stderr_path).unwrap_or_default().trim())
        })
    }
}

/// A `fixture-server --http 127.0.0.1:0` process; killed when dropped.
pub struct HttpFixture {
    _child: Child,
    pub url: String,
}

impl HttpFixture {
    pub async fn start(binaries: &Binaries, name: &str) -> anyhow::Result<HttpFixture> {
        let mut child = binaries
            .fixture_command(name, &["--http", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawn the HTTP fixture")?;
        let stdout = child.stdout.take().context("fixture stdout")?;
        let line = tokio::time::timeout(START_LIMIT, BufReader::new(stdout).lines().next_line())
            .await
            .context("the HTTP fixture did not announce its address")??
            .context("the HTTP fixture closed stdout")?;
        let addr = line.strip_prefix("listening on ").context("unexpected first line of the HTTP fixture")?;
        Ok(HttpFixture { url: format!("http://{addr}/mcp"), _child: child })
    }
}

/// A `tools/call` of `name` with `{"message": "bench"}` (both `echo` tools take it).
pub fn echo_call(name: &str) -> CallToolRequestParams {
    CallToolRequestParams::new(name.to_owned()).with_arguments(object(json!({ "message": "bench" })))
}

/// The resident memory of process `pid`, from `/proc/PID/status` (Linux only).
pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let pss_kib = rollup
        .lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    Some(Memory {
        pss_kib,
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        anon_kib: field("RssAnon:")?,
        file_kib: field("RssFile:")?,
        threads: field("Threads:")?,
    })
}

/// Memory figures of one process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the peak of `VmRSS` over the process's life.
    pub hwm_kib: u64,
    /// `RssAnon`: the resident heap, stacks and other private memory.
    pub anon_kib: u64,
    /// `RssFile`: resident pages of mapped files, mostly the executable's own code.
    /// Shared by every process that maps the same file.
    pub file_kib: u64,
    /// Proportional set size (`/proc/PID/smaps_rollup`): RSS with shared pages divided
    /// among the processes that map them; 0 if unreadable.
    pub pss_kib: u64,
    pub threads: u64,
}

/// CPU time and context switches of every live thread of process `pid` so far, from
/// `/proc/PID/task/*/{schedstat,status}` (Linux only).
pub fn cpu_usage(pid: u32) -> Option<CpuUsage> {
    let threads = thread_cpu_usage(pid)?;
    Some(threads.iter().fold(CpuUsage::default(), |sum, (_, usage)| sum.plus(usage)))
}

/// [`cpu_usage`] of each live thread of process `pid`, by thread id.
pub fn thread_cpu_usage(pid: u32) -> Option<Vec<(u32, CpuUsage)>> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        let on_cpu: u64 = schedstat.split_whitespace().next().and_then(|ns| ns.parse().ok()).unwrap_or(0);
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let switches = status
            .lines()
            .filter(|line| line.contains("ctxt_switches:"))
            .filter_map(|line| line.split_whitespace().nth(1)?.parse::<f64>().ok())
            .sum::<f64>();
        threads.push((tid, CpuUsage { on_cpu: Duration::from_nanos(on_cpu), switches }));
    }
    Some(threads)
}

/// See [`cpu_usage`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUsage {
    pub on_cpu: Duration,
    /// Voluntary and involuntary context switches.
    pub switches: f64,
}

impl CpuUsage {
    pub fn plus(&self, other: &CpuUsage) -> CpuUsage {
        CpuUsage { on_cpu: self.on_cpu + other.on_cpu, switches: self.switches + other.switches }
    }

    /// The usage between `earlier` and `self`, per one of `count` operations.
    pub fn per(&self, earlier: &CpuUsage, count: usize) -> CpuUsage {
        let count = count.max(1);
        CpuUsage {
            on_cpu: self.on_cpu.saturating_sub(earlier.on_cpu) / count as u32,
            switches: (self.switches - earlier.switches) / count as f64,
        }
    }
}

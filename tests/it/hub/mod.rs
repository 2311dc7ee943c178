//! Shared upstreams (`"shared": true`) through the real binary: every `foxxy-bridge stdio`
//! of one config uses the one instance of a shared upstream that the hub
//! (`foxxy-bridge hub serve`, started by the first bridge) runs.
//!
//! `sharing.rs`: one upstream process for many bridges, racing bridges, server-everything
//! and a remote upstream shared. `features.rs`: what a bridge sees is what it would see
//! unshared. `routing.rs`: progress, cancellation and server→client requests reach only
//! their bridge. `limits.rs`: `requestTimeout` and `maxMessageBytes` through the hub.
//! `departures.rs`: an upstream crash, a killed bridge, `hub stop`. `lifetime.rs`: a
//! killed hub, idle exit, another uid refused. `serve.rs`: `hub serve` by hand.
//! `config.rs`: a hub per config file, config edits. `oauth.rs`: one sign-in for all.
//!
//! The hub outlives the bridges by design, so every test here ends with no hub of its
//! state root left: [`HubEnv::finish`] stops them, and dropping a [`HubEnv`] (also when a
//! test panics) kills whatever is left of them and of their upstreams.

mod config;
mod departures;
mod exposed_names;
mod features;
mod isolation;
mod lifetime;
mod limits;
mod oauth;
mod oauth_sign_in;
mod routing;
mod serve;
mod sharing;

use std::{
    ops::Deref,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::{Value, json};

use crate::support::*;

/// A [`TestEnv`] whose hubs are ended with it.
pub struct HubEnv {
    pub env: TestEnv,
}

impl Deref for HubEnv {
    type Target = TestEnv;

    fn deref(&self) -> &TestEnv {
        &self.env
    }
}

impl HubEnv {
    pub fn new() -> Self {
        Self { env: TestEnv::new() }
    }

    /// Write a config of `servers` whose hub exits `idle_seconds` after its last bridge.
    pub fn write_servers(&self, servers: Value, idle_seconds: u64) {
        self.env.write_config(&json!({
            "mcpServers": servers,
            "bridge": { "hub": { "idleTimeout": idle_seconds } },
        }));
    }

    /// The live `hub serve` processes of this state root, found in /proc by their
    /// command line and their `FOXXY_BRIDGE_HOME` (or config file).
    pub fn hub_pids(&self) -> Vec<u32> {
        let home = format!("FOXXY_BRIDGE_HOME={}", self.home().display());
        let config = self.config_path().display().to_string();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
                continue;
            };
            let args = proc_strings(pid, "cmdline");
            let serves = args.windows(2).any(|pair| pair[0] == "hub" && pair[1] == "serve");
            let ours = proc_strings(pid, "environ").contains(&home) || args.contains(&config);
            if serves && ours && alive(pid) {
                found.push(pid);
            }
        }
        found
    }

    /// Wait until exactly one hub of this state root runs; its pid.
    pub async fn one_hub(&self) -> u32 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let hubs = self.hub_pids();
            if hubs.len() == 1 {
                return hubs[0];
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "one hub process, found {hubs:?}\nlog:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `hub status --json`: one object per running hub.
    pub async fn status(&self) -> Vec<Value> {
        let output = self.run(&["hub", "status", "--json"]).await;
        assert_eq!(output.code, Some(0), "hub status --json: {output:?}");
        match serde_json::from_str(&output.stdout) {
            Ok(Value::Array(hubs)) => hubs,
            other => panic!("hub status --json is not an array ({other:?}): {output:?}"),
        }
    }

    /// The hub sockets in `<root>/run/`.
    pub fn sockets(&self) -> Vec<PathBuf> {
        let run = self.home().join("run");
        let mut sockets: Vec<PathBuf> = std::fs::read_dir(run)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with("hub-") && name.ends_with(".sock"))
            })
            .collect();
        sockets.sort();
        sockets
    }

    /// End the test with no hub left: `hub stop`, then kill what did not stop.
    pub async fn finish(&self) {
        let stop = tokio::time::timeout(Duration::from_secs(10), self.run(&["hub", "stop"])).await;
        if matches!(stop, Ok(CommandOutput { code: Some(0), .. })) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while !self.hub_pids().is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.kill_hubs();
    }

    /// SIGKILL every hub of this state root and every process below it.
    fn kill_hubs(&self) {
        for hub in self.hub_pids() {
            let mut family = descendants(hub);
            family.push(hub);
            for pid in family {
                kill(pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for HubEnv {
    fn drop(&mut self) {
        self.kill_hubs();
    }
}

/// The NUL-separated strings of `/proc/<pid>/<file>` (`cmdline`, `environ`).
fn proc_strings(pid: u32, file: &str) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/{file}"))
        .map(|bytes| {
            bytes
                .split(|&byte| byte == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The processes below a bridge that are not the hub's: the first bridge starts the
/// hub (in a session of its own), so the hub may be its child.
pub fn bridge_processes(bridge: u32, hub: u32) -> Vec<u32> {
    let hubs = descendants(hub);
    descendants(bridge).into_iter().filter(|pid| *pid != hub && !hubs.contains(pid)).collect()
}

/// The command line of `pid`, arguments joined by spaces.
pub fn command_line(pid: u32) -> String {
    proc_strings(pid, "cmdline").join(" ")
}

pub fn kill(pid: u32, signal: libc::c_int) {
    // SAFETY: signalling a process this test started (a hub or one of its upstreams).
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// A fixture upstream named `name` that appends its pid to `<name>.starts` when it
/// starts, so a test can count the processes started; marked shared if `shared`.
pub fn counted(env: &TestEnv, name: &str, shared: bool, extra_args: &[&str]) -> Value {
    let starts = env.path(&format!("{name}.starts"));
    let mut script =
        format!("echo $$ >> '{}'; exec '{}' --name {name}", starts.display(), fixture_bin().display());
    for arg in extra_args {
        script.push_str(&format!(" '{arg}'"));
    }
    json!({ "command": "sh", "args": ["-c", script], "shared": shared, "retryDelay": 100 })
}

/// The pids the upstream `name` of [`counted`] was started with, in order.
pub fn starts(env: &TestEnv, name: &str) -> Vec<u32> {
    std::fs::read_to_string(env.path(&format!("{name}.starts")))
        .unwrap_or_default()
        .lines()
        .map(|line| line.trim().parse().expect("a pid per line"))
        .collect()
}

/// Call `tool` with `arguments` and return the text of its successful result.
pub async fn call_text(session: &Session, tool: &str, arguments: Value) -> String {
    let result =
        tokio::time::timeout(Duration::from_secs(30), session.service.call_tool(call(tool, arguments)))
            .await
            .unwrap_or_else(|_| panic!("{tool} did not answer within 30 s"))
            .unwrap_or_else(|error| panic!("{tool} failed: {error}"));
    assert_ne!(result.is_error, Some(true), "{tool}: {result:?}");
    text_of(&result)
}

/// The pid a session's `<upstream>__pid` answers.
pub async fn pid_of(session: &Session, upstream: &str) -> u32 {
    let text = call_text(session, &format!("{upstream}__pid"), json!({})).await;
    text.parse().unwrap_or_else(|_| panic!("{upstream}__pid answered {text:?}"))
}

/// The next line of a raw session within `limit`, or `None`.
pub async fn recv_within(raw: &mut RawSession, limit: Duration) -> Option<Value> {
    tokio::time::timeout(limit, raw.recv()).await.ok()
}

/// Every message of a raw session up to and including the response with `id`, read
/// within `limit`.
pub async fn until_response(raw: &mut RawSession, id: &Value, limit: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut messages = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let message = recv_within(raw, left)
            .await
            .unwrap_or_else(|| panic!("no response to {id} within {limit:?}; before it: {messages:?}"));
        let done = message.get("id") == Some(id) && message.get("method").is_none();
        messages.push(message);
        if done {
            return messages;
        }
    }
}

/// A `tools/call` request line.
pub fn tool_call(id: u64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})
}

/// Where a test needs a path as a `&str` argument.
pub fn text_path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

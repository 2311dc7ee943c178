//! Upstream life cycle through the real binary: slow starts, failures, restarts, and
//! shutdown that leaves no process behind.

use std::{os::unix::fs::PermissionsExt, time::Duration};

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn a_slow_upstream_is_in_the_first_tools_list() {
    let env = TestEnv::new();
    env.write_config(&json!({
        "mcpServers": {
            "fast": fixture("fast", &[]),
            "slow": fixture("slow", &["--start-delay-ms", "1000"]),
        }
    }));
    let session = Session::start(&env).await;
    let tools = session.service.list_all_tools().await.expect("tools/list");
    assert!(
        tools.iter().any(|tool| tool.name == "slow__echo"),
        "the slow upstream's tools are in the first list"
    );
    assert!(tools.iter().any(|tool| tool.name == "fast__echo"));
    session.close().await;
}

#[tokio::test]
async fn an_upstream_that_never_starts_does_not_block_past_the_deadline() {
    let env = TestEnv::new();
    env.write_config(&json!({
        "mcpServers": {
            "fast": fixture("fast", &[]),
            "stuck": fixture("stuck", &["--start-delay-ms", "60000"]),
        },
        "bridge": { "startupTimeout": 2 }
    }));
    let session = Session::start(&env).await;
    let started = std::time::Instant::now();
    let tools = session.service.list_all_tools().await.expect("tools/list");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "first list waited {waited:?}, deadline is 2 s");
    assert!(tools.iter().any(|tool| tool.name == "fast__echo"));
    assert!(!tools.iter().any(|tool| tool.name.starts_with("stuck__")));
    session.close().await;
}

#[tokio::test]
async fn a_missing_command_is_reported_and_the_others_serve() {
    let env = TestEnv::new();
    env.write_config(&json!({
        "mcpServers": {
            "good": fixture("good", &[]),
            "ghost": { "command": "/definitely/not/here/mcp-server" },
        }
    }));
    let session = Session::start(&env).await;
    let echo = session.service.call_tool(call("good__echo", json!({"message": "ok"}))).await.expect("call");
    assert_eq!(text_of(&echo), "good: ok");
    let log = env.wait_log("command `/definitely/not/here/mcp-server` not found").await;
    assert!(log.contains("upstream=ghost"), "the log names the upstream:\n{log}");
    session.close().await;

    let output = env.run(&["tools", "--json"]).await;
    assert_eq!(output.code, Some(1), "tools exits 1 when an upstream did not connect");
    let report: Value = serde_json::from_str(&output.stdout).expect("tools --json");
    let ghost =
        report["upstreams"].as_array().unwrap().iter().find(|u| u["name"] == "ghost").cloned().unwrap();
    assert!(ghost["error"].as_str().unwrap().contains("not found"), "{ghost}");
    assert_eq!(
        report["upstreams"].as_array().unwrap().iter().find(|u| u["name"] == "good").unwrap()["status"],
        "ready"
    );
}

#[tokio::test]
async fn an_upstream_that_exits_at_once_is_reported_with_its_exit_status() {
    let env = TestEnv::new();
    env.write_config(&json!({
        "mcpServers": { "crashy": fixture("crashy", &["--exit-immediately"]) }
    }));
    let output = env.run(&["tools", "--json"]).await;
    assert_eq!(output.code, Some(1));
    let report: Value = serde_json::from_str(&output.stdout).expect("tools --json");
    let error = report["upstreams"][0]["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("exited with status 3"), "{error}");
    assert!(env.log().contains("fixture crashing on purpose"), "child stderr is in the log");
}

/// A wrapper that runs the fixture (dying after `exit_after_ms`) only while `gate`
/// does not exist; otherwise it fails at once, like a server that cannot come back.
fn gated_upstream(env: &TestEnv, name: &str, exit_after_ms: u64) -> (Value, std::path::PathBuf) {
    let gate = env.path(&format!("{name}.down"));
    let script = env.path(&format!("{name}.sh"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ -e '{gate}' ]; then echo 'server unavailable' >&2; exit 7; fi\nexec '{fixture}' --name {name} --exit-after-ms {exit_after_ms}\n",
            gate = gate.display(),
            fixture = fixture_bin().display(),
        ),
    )
    .expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (json!({ "command": script, "retryAttempts": 50, "retryDelay": 200 }), gate)
}

#[tokio::test]
async fn a_dead_upstream_fails_fast_with_its_name_and_comes_back_announced() {
    let env = TestEnv::new();
    let (flaky, gate) = gated_upstream(&env, "flaky", 1500);
    env.write_config(&json!({ "mcpServers": { "steady": fixture("steady", &[]), "flaky": flaky } }));
    let session = Session::start(&env).await;
    let echo = session.service.call_tool(call("flaky__echo", json!({"message": "one"}))).await.expect("call");
    assert_eq!(text_of(&echo), "flaky: one");

    // From now on it cannot restart.
    std::fs::write(&gate, "").expect("close the gate");
    env.wait_log("upstream disconnected").await;
    let started = std::time::Instant::now();
    let failed =
        session.service.call_tool(call("flaky__echo", json!({"message": "two"}))).await.expect("call");
    assert!(started.elapsed() < Duration::from_secs(8), "a call to a dead upstream fails fast");
    assert_eq!(failed.is_error, Some(true));
    let message = text_of(&failed);
    assert!(message.contains("upstream `flaky`"), "the error names the upstream: {message}");
    assert!(message.contains("status 7"), "the error gives the cause: {message}");
    let steady =
        session.service.call_tool(call("steady__echo", json!({"message": "fine"}))).await.expect("call");
    assert_eq!(text_of(&steady), "steady: fine", "the healthy upstream is unaffected");
    session.wait_seen(Duration::from_secs(5), |seen| seen.tools_changed > 0).await;
    let tools = session.service.list_all_tools().await.expect("tools/list");
    assert!(
        !tools.iter().any(|tool| tool.name.starts_with("flaky__")),
        "a dead upstream's tools are withdrawn"
    );

    // Let it come back: it is restarted and announced.
    let baseline = session.client.seen().tools_changed;
    std::fs::remove_file(&gate).expect("open the gate");
    session.wait_seen(Duration::from_secs(10), |seen| seen.tools_changed > baseline).await;
    let tools = session.service.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|tool| tool.name == "flaky__echo"), "its tools are back");
    let echo =
        session.service.call_tool(call("flaky__echo", json!({"message": "three"}))).await.expect("call");
    assert_eq!(text_of(&echo), "flaky: three");
    session.close().await;
}

async fn grandchild_pid(env: &TestEnv) -> u32 {
    let log = env.wait_log("grandchild ").await;
    let line = log.lines().find(|line| line.contains("grandchild ")).expect("grandchild line");
    let after = &line[line.find("grandchild ").unwrap() + "grandchild ".len()..];
    after.split_whitespace().next().unwrap().parse().expect("grandchild pid")
}

#[tokio::test]
async fn closing_stdin_ends_the_bridge_and_every_descendant() {
    let env = TestEnv::new();
    let pid_file = env.path("stubborn.pid");
    env.write_config(&json!({
        "mcpServers": {
            "stubborn": fixture("stubborn", &["--ignore-sigterm", "--spawn-grandchild", "--pid-file", pid_file.to_str().unwrap()]),
            "plain": fixture("plain", &[]),
        }
    }));
    let mut raw = RawSession::start(&env).await;
    raw.initialize().await;
    raw.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
    let listed = raw.response(&json!(1)).await;
    assert!(listed["result"]["tools"].as_array().is_some_and(|tools| !tools.is_empty()));
    let bridge_pid = raw.child.id().expect("bridge pid");
    let upstream = read_pid(&pid_file);
    let grandchild = grandchild_pid(&env).await;
    assert!(alive(upstream) && alive(grandchild));
    let family = descendants(bridge_pid);
    assert!(family.contains(&upstream) && family.contains(&grandchild), "{family:?}");

    let closed_at = std::time::Instant::now();
    raw.close_stdin();
    let status = tokio::time::timeout(Duration::from_secs(5), raw.child.wait())
        .await
        .expect("bridge exits")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    wait_until(Duration::from_secs(3), || family.iter().all(|pid| !alive(*pid))).await;
    let elapsed = closed_at.elapsed();
    assert!(elapsed < Duration::from_secs(2), "everything gone {elapsed:?} after stdin closed");
}

#[tokio::test]
async fn sigterm_ends_the_bridge_and_every_descendant() {
    let env = TestEnv::new();
    let pid_file = env.path("stubborn.pid");
    env.write_config(&json!({
        "mcpServers": {
            "stubborn": fixture("stubborn", &["--ignore-sigterm", "--spawn-grandchild", "--pid-file", pid_file.to_str().unwrap()]),
        }
    }));
    let mut raw = RawSession::start(&env).await;
    raw.initialize().await;
    raw.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
    raw.response(&json!(1)).await;
    let bridge_pid = raw.child.id().expect("bridge pid");
    let grandchild = grandchild_pid(&env).await;
    let family = descendants(bridge_pid);
    assert!(family.contains(&grandchild));
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(bridge_pid as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(5), raw.child.wait())
        .await
        .expect("bridge exits")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    wait_until(Duration::from_secs(2), || family.iter().all(|pid| !alive(*pid))).await;
}

#[tokio::test]
async fn stdout_carries_only_json_rpc_and_stderr_stays_silent() {
    let env = TestEnv::new();
    env.write_config(&json!({
        "mcpServers": { "chatty": fixture("chatty", &["--stderr-lines", "5"]) }
    }));
    let session = Session::start(&env).await;
    session.service.list_all_tools().await.expect("tools/list");
    session.service.call_tool(call("chatty__echo", json!({"message": "x"}))).await.expect("call");
    let stderr = session.stderr.clone();
    session.close().await;
    assert_eq!(stderr.lock().unwrap().as_str(), "", "stderr is empty in normal operation");
    let log = env.wait_log("fixture chatty stderr line 4").await;
    assert!(log.contains("upstream=chatty"), "upstream stderr lines are logged with its name");
    assert!(env.home().join("logs").join("foxxy-bridge.log").exists(), "the log file is where the docs say");

    // Line by line: everything on stdout parses as JSON-RPC.
    let mut raw = RawSession::start(&env).await;
    raw.initialize().await;
    raw.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
    let reply = raw.response(&json!(1)).await;
    assert_eq!(reply["jsonrpc"], "2.0");
}

//! A local server that writes something other than JSON-RPC on stdout: it keeps its
//! whole `timeout` to answer `initialize` (many print a banner and then work), the line
//! shows on its `connecting` status meanwhile, and it is the cause given when the start
//! times out.

use serde_json::{Value, json};

use crate::support::{TestEnv, fixture_bin};

/// A server that prints `banner` on stdout, then runs `then` (a shell command).
fn banner_then(banner: &str, then: &str) -> Value {
    json!({"command": "sh", "args": ["-c", format!("echo '{banner}'; {then}")]})
}

#[tokio::test]
async fn a_server_that_prints_a_banner_keeps_its_whole_timeout() {
    let env = TestEnv::new();
    let slow =
        banner_then("starting up", &format!("sleep 3; exec '{}' --name slow", fixture_bin().display()));
    let mut quick_timeout = banner_then("hello from a banner", "sleep 30");
    quick_timeout["timeout"] = json!(1);
    // One attempt: it is then failed, not back to `connecting` in a retry.
    quick_timeout["retryAttempts"] = json!(1);
    env.write_config(&json!({
        "mcpServers": {
            "slow": slow,
            "silent": banner_then("hello from a banner", "sleep 30"),
            "short": quick_timeout,
        },
        "bridge": {"startupTimeout": 8},
    }));
    let output = env.run(&["tools", "--json"]).await;
    assert_eq!(output.code, Some(1), "not every server is up: {output:?}");
    let listed: Value = serde_json::from_str(&output.stdout).expect("JSON");
    let upstream = |name: &str| {
        listed["upstreams"].as_array().expect("upstreams").iter().find(|row| row["name"] == name).cloned()
    };
    let slow = upstream("slow").expect("slow");
    assert_eq!(slow["status"], "ready", "a banner and a slow start are fine: {listed}");
    assert!(listed["tools"].as_array().expect("tools").iter().any(|tool| tool["name"] == "slow__echo"));

    let silent = upstream("silent").expect("silent");
    assert_eq!(silent["status"], "connecting", "its timeout (60 s) has not passed: {listed}");
    let note = silent["error"].as_str().unwrap_or_default();
    assert!(note.contains("it wrote `hello from a banner` on stdout, which is not JSON-RPC"), "{listed}");

    let short = upstream("short").expect("short");
    assert_eq!(short["status"], "failed", "{listed}");
    let cause = short["error"].as_str().unwrap_or_default();
    assert!(
        cause.contains("did not finish initialize within 1 s; it wrote `hello from a banner` on stdout"),
        "{listed}"
    );
}

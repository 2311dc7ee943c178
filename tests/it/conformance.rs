//! The official MCP conformance runner (`@modelcontextprotocol/conformance`) with
//! foxxy-bridge as the client under test. The runner's mock servers bind every
//! interface, so each run happens in a private network namespace with only loopback.

use std::path::PathBuf;

use tokio::process::Command;

use crate::{peers, support::bridge_bin};

fn repo(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Run one client scenario; returns the runner's output, panics unless it passed.
async fn run_client_scenario(scenario: &str) -> String {
    let script = format!(
        "ip link set lo up && exec '{node}' '{runner}' client --command '{client}' --scenario {scenario} --expected-failures '{expected}'",
        node = peers::node22().display(),
        runner = peers::conformance_js().display(),
        client = repo("tests/conformance/client.sh").display(),
        expected = repo("tests/conformance/expected-failures.yml").display(),
    );
    let output = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .env("FOXXY_BRIDGE_BIN", bridge_bin())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run the conformance runner");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "conformance scenario `{scenario}` failed:\n{text}");
    assert!(text.contains("OVERALL: PASSED"), "scenario `{scenario}` did not report a pass:\n{text}");
    text
}

#[tokio::test]
async fn conformance_initialize() {
    run_client_scenario("initialize").await;
}

#[tokio::test]
async fn conformance_tools_call() {
    let output = run_client_scenario("tools_call").await;
    assert!(output.contains("tool-add-numbers"), "{output}");
}

#[tokio::test]
async fn conformance_sse_retry() {
    let output = run_client_scenario("sse-retry").await;
    assert!(output.contains("client-sse-last-event-id"), "{output}");
}

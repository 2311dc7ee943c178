//! The official MCP conformance runner (`@modelcontextprotocol/conformance`) with
//! foxxy-bridge as the client under test. The runner's mock servers bind every
//! interface, so each run happens in a private network namespace with only loopback.

use std::path::PathBuf;

use tokio::process::Command;

use crate::{
    peers,
    support::{bridge_bin, fixture_bin},
};

fn repo(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Run one client scenario (`--scenario X`) or suite (`--suite X`); returns the
/// runner's output, panics unless everything passed.
async fn run_client_scenario(selection: &str) -> String {
    let script = format!(
        "ip link set lo up && exec '{node}' '{runner}' client --command '{client}' {selection} --expected-failures '{expected}'",
        node = peers::node22().display(),
        runner = peers::conformance_js().display(),
        client = repo("tests/conformance/client.sh").display(),
        expected = repo("tests/conformance/expected-failures.yml").display(),
    );
    let output = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .env("FOXXY_BRIDGE_BIN", bridge_bin())
        .env("FOXXY_FIXTURE_BIN", fixture_bin())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run the conformance runner");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "conformance `{selection}` failed:\n{text}");
    text
}

#[tokio::test]
async fn conformance_initialize() {
    let output = run_client_scenario("--scenario initialize").await;
    assert!(output.contains("OVERALL: PASSED"), "{output}");
}

#[tokio::test]
async fn conformance_tools_call() {
    let output = run_client_scenario("--scenario tools_call").await;
    assert!(output.contains("OVERALL: PASSED") && output.contains("tool-add-numbers"), "{output}");
}

#[tokio::test]
async fn conformance_sse_retry() {
    let output = run_client_scenario("--scenario sse-retry").await;
    assert!(output.contains("OVERALL: PASSED") && output.contains("client-sse-last-event-id"), "{output}");
}

#[tokio::test]
async fn conformance_auth_suite() {
    let output = run_client_scenario("--suite auth").await;
    let total = output.lines().find(|line| line.starts_with("Total:")).unwrap_or_default();
    assert!(total.contains(" 0 failed, 0 warnings"), "{total}\n{output}");
    for scenario in [
        "auth/metadata-var3",
        "auth/basic-cimd",
        "auth/scope-step-up",
        "auth/scope-retry-limit",
        "auth/pre-registration",
    ] {
        assert!(output.contains(&format!("✓ {scenario}:")), "{scenario} did not pass:\n{output}");
    }
}

//! Tool objects from a streamable HTTP upstream that answers each POST with one
//! `application/json` body instead of an SSE stream: the Python SDK's low-level server
//! (`tests/peers/json_tools_server.py`), compared with the same server over stdio.

use std::time::Duration;

use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

use super::{ALL_CAPABILITIES, LineClient, unprefixed};
use crate::{peers, support::TestEnv};

/// `json_tools_server.py` over `transport`.
fn json_tools_server(transport: &str) -> Command {
    let mut command = Command::new(peers::python());
    command.arg(peers::peer_script("json_tools_server.py")).arg(transport);
    command
}

/// The server answering streamable HTTP with JSON bodies on a loopback port: the
/// process (killed on drop) and its port.
async fn json_tools_http() -> (tokio::process::Child, u16) {
    let mut child = json_tools_server("streamable-http-json")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn json_tools_server.py");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let port = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(port) = line.strip_prefix("FOXXY_LISTENING ") {
                return port.trim().parse::<u16>().expect("a port");
            }
        }
        panic!("json_tools_server.py exited before listening");
    })
    .await
    .expect("json_tools_server.py announces its port");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, port)
}

#[tokio::test]
async fn tool_objects_answered_as_one_json_body_are_the_upstreams_own() {
    let mut direct = LineClient::spawn(json_tools_server("stdio"));
    direct.initialize(ALL_CAPABILITIES()).await;
    let expected = direct.tools().await;
    assert!(
        expected.iter().any(|tool| tool.get("execution").is_some()),
        "the peer's tools carry `execution`: {expected:?}"
    );

    let (_server, port) = json_tools_http().await;
    let env = TestEnv::new();
    let url = format!("http://127.0.0.1:{port}/mcp");
    env.write_config(&json!({"mcpServers": {"js": {"url": url, "transport": "streamablehttp"}}}));
    let mut bridge = LineClient::bridge(&env);
    bridge.initialize(ALL_CAPABILITIES()).await;
    // The upstream connects in the background: wait (bounded) until its tools are listed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let tools = loop {
        let tools = unprefixed(&bridge.tools().await, "js__");
        if tools.len() == expected.len() || tokio::time::Instant::now() >= deadline {
            break tools;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(tools, expected, "tool objects over streamable HTTP with JSON answers, name prefix removed");
}

//! A sign-in made from a shell while the hub waits for one brings the shared upstream to
//! every bridge, as it does to a bridge whose own upstream waits for one, however long
//! the user takes to sign in.

use std::time::Duration;

use serde_json::json;

use super::{
    oauth::{bridge, shell_login},
    *,
};
use crate::remote::HttpFixture;

/// Two bridges wait for a sign-in to `sec` (shared or not) longer than their retry
/// budget; a shell login then brings `sec__echo` to both within a bounded wait.
async fn login_reaches_waiting_bridges(shared: bool) {
    let server = HttpFixture::start(0, &["--name", "sec", "--oauth"]).await;
    let env = HubEnv::new();
    env.write_config(&json!({
        "mcpServers": { "sec": { "url": server.url(), "shared": shared, "retryAttempts": 1, "retryDelay": 100 } },
        "bridge": { "oauth_port": 0, "signInTimeout": 1, "hub": { "idleTimeout": 30 } },
    }));
    let sessions = vec![bridge(&env).await, bridge(&env).await];
    for session in &sessions {
        let names = tool_names(session).await;
        assert!(!names.contains(&"sec__echo".to_owned()), "shared {shared}: not signed in yet: {names:?}");
    }
    // The user signs in a while later, after every retry a bridge would make.
    env.wait_log("upstream is waiting for a sign-in").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    shell_login(&env).await;
    for (index, session) in sessions.iter().enumerate() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let names = tool_names(session).await;
            if names.contains(&"sec__echo".to_owned()) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "shared {shared}, bridge {index}: sec__echo never listed after the login: {names:?}\nlog:\n{}",
                env.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(call_text(session, "sec__echo", json!({"message": "in"})).await, "sec: in");
    }
    for session in sessions {
        session.close().await;
    }
    env.finish().await;
    server.stop().await;
}

#[tokio::test]
async fn a_shell_login_reaches_bridges_waiting_for_a_shared_upstream() {
    // Unshared first: the behaviour a shared upstream must match.
    login_reaches_waiting_bridges(false).await;
    login_reaches_waiting_bridges(true).await;
}

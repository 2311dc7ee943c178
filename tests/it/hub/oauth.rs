//! A shared upstream behind OAuth: the hub uses the tokens of the shared token cache, so
//! one sign-in serves every bridge.

use serde_json::{Value, json};

use super::*;
use crate::{
    oauth::{http, output_of},
    remote::HttpFixture,
};

/// A protected fixture `sec` and a config that shares it.
pub(super) async fn protected(env: &HubEnv, bridge: Value) -> HttpFixture {
    let server = HttpFixture::start(0, &["--name", "sec", "--oauth"]).await;
    let mut settings = json!({ "oauth_port": 0, "hub": { "idleTimeout": 2 } });
    if let (Some(settings), Some(extra)) = (settings.as_object_mut(), bridge.as_object()) {
        settings.extend(extra.clone());
    }
    env.write_config(&json!({
        "mcpServers": { "sec": { "url": server.url(), "shared": true } },
        "bridge": settings,
    }));
    server
}

/// `oauth login sec` from a shell, with the fixture's scripted browser.
pub(super) async fn shell_login(env: &HubEnv) {
    let browser = format!(
        "'{}' --browse-log '{}' --browse",
        fixture_bin().display(),
        env.path("browser.log").display()
    );
    let mut command = env.command();
    command.env("FOXXY_BRIDGE_BROWSER", browser).args(["oauth", "login", "sec"]);
    let login = output_of(command).await;
    assert_eq!(login.code, Some(0), "{login:?}");
}

/// A bridge that cannot open a browser.
pub(super) async fn bridge(env: &HubEnv) -> Session {
    let mut command = env.command();
    command.env("FOXXY_BRIDGE_BROWSER", "none");
    Session::start_command(command, TestClient::default()).await
}

#[tokio::test]
async fn one_stored_sign_in_serves_every_bridge_through_the_hub() {
    let env = HubEnv::new();
    let server = protected(&env, json!({})).await;
    shell_login(&env).await;
    let sessions = vec![bridge(&env).await, bridge(&env).await];
    for (index, session) in sessions.iter().enumerate() {
        let message = format!("bridge {index}");
        assert_eq!(
            call_text(session, "sec__echo", json!({ "message": message })).await,
            format!("sec: {message}")
        );
    }
    let stats = http(&server.addr, "GET", "/stats").await;
    assert_eq!(stats["token_code"], 1, "one sign-in: {stats}");
    let status = env.status().await;
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(status[0]["bridges"], 2, "{status:?}");
    assert_eq!(
        status[0]["upstreams"],
        json!([{ "name": "sec", "status": "ready", "pid": null }]),
        "{status:?}"
    );
    for session in sessions {
        session.close().await;
    }
    env.finish().await;
    server.stop().await;
}

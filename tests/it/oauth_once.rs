//! Sign-ins that must not surprise the user or multiply across bridge processes: a denied
//! sign-in is remembered, a step-up is shared, `oauth logout` is remembered and revokes,
//! and a refresh that fails for now never opens a browser.

use std::time::Duration;

use serde_json::json;

use crate::{
    oauth::{World, output_of},
    support::*,
};

#[tokio::test]
async fn a_denied_sign_in_is_remembered_by_the_bridges_waiting_for_it() {
    let world = World::start(&["--deny"], Some(json!({})), json!({})).await;
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let command = world.command(&["call", "sec__echo", &format!(r#"{{"message": "bridge {i}"}}"#)]);
            tokio::spawn(output_of(command))
        })
        .collect();
    for call in calls {
        let output = call.await.expect("join");
        assert_eq!(output.code, Some(1), "{output:?}");
    }
    assert_eq!(world.opens(), 1, "one browser tab for four bridges");
    assert_eq!(world.stats().await["authorize"], 1, "one authorization request");
    // A sign-in the user starts always runs.
    let login = world.run(&["oauth", "login", "sec"]).await;
    assert_eq!(login.code, Some(1), "{login:?}");
    assert!(login.stderr.contains("access_denied"), "{}", login.stderr);
    assert_eq!(world.opens(), 2);
}

#[tokio::test]
async fn three_bridges_stepping_up_sign_in_once() {
    let world = World::start(&["--scope-for", "add=admin"], Some(json!({})), json!({})).await;
    let calls: Vec<_> = (0..3)
        .map(|_| tokio::spawn(output_of(world.command(&["call", "sec__add", r#"{"a": 1, "b": 2}"#]))))
        .collect();
    for call in calls {
        let output = call.await.expect("join");
        assert_eq!(output.stdout, "sec: sum 3\n", "{output:?}");
    }
    assert_eq!(world.opens(), 2, "one sign-in, one step-up, for three bridges");
}

#[tokio::test]
async fn logout_revokes_and_a_running_bridge_does_not_sign_in_again() {
    let world = World::start(&[], Some(json!({})), json!({})).await;
    assert_eq!(world.run(&["oauth", "login", "sec"]).await.code, Some(0));
    let session = Session::start_command(world.command(&[]), TestClient::default()).await;
    let tools = session.service.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|tool| tool.name == "sec__echo"));
    assert_eq!(text_of(&peer_call(&session, "sec__echo", json!({ "message": "in" })).await), "sec: in");

    let logout = world.run(&["oauth", "logout", "sec"]).await;
    assert_eq!(logout.code, Some(0), "{logout:?}");
    assert!(logout.stdout.contains("revoked the tokens of `sec`"), "{}", logout.stdout);
    assert_eq!(world.stats().await["revoke"], 1);

    let mut params = rmcp::model::CallToolRequestParams::new("sec__echo".to_owned());
    params.arguments = json!({ "message": "out" }).as_object().cloned();
    let after = tokio::time::timeout(Duration::from_secs(30), session.service.call_tool(params))
        .await
        .expect("the call is answered");
    let failed = match &after {
        Ok(result) => result.is_error == Some(true),
        Err(_) => true,
    };
    assert!(failed, "signed out: {after:?}");
    assert_eq!(world.opens(), 1, "no browser after logout");
    session.close().await;
}

#[tokio::test]
async fn a_503_from_the_token_endpoint_never_opens_a_browser() {
    let world = World::start(&[], Some(json!({})), json!({})).await;
    assert_eq!(world.run(&["oauth", "login", "sec"]).await.code, Some(0));
    let session = Session::start_command(world.command(&[]), TestClient::default()).await;
    let tools = session.service.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|tool| tool.name == "sec__echo"));

    world.admin("/admin/token-failure?code=503").await;
    // The server stops accepting the access token; its refresh fails for now.
    world.admin("/admin/expire-access-tokens").await;
    let mut params = rmcp::model::CallToolRequestParams::new("sec__echo".to_owned());
    params.arguments = json!({ "message": "busy" }).as_object().cloned();
    let during = tokio::time::timeout(Duration::from_secs(30), session.service.call_tool(params))
        .await
        .expect("the call is answered");
    let failed = match &during {
        Ok(result) => result.is_error == Some(true),
        Err(_) => true,
    };
    assert!(failed, "{during:?}");
    let answer = format!("{during:?}");
    assert!(answer.contains("temporarily_unavailable"), "the cause is named: {answer}");
    assert_eq!(world.opens(), 1, "no browser for a transient failure");
    // Refreshes back off: a second call right away does not ask the token endpoint again.
    let refreshes = world.stats().await["token_refresh"].clone();
    let mut params = rmcp::model::CallToolRequestParams::new("sec__echo".to_owned());
    params.arguments = json!({ "message": "again" }).as_object().cloned();
    let again = tokio::time::timeout(Duration::from_secs(30), session.service.call_tool(params))
        .await
        .expect("the call is answered");
    assert!(again.as_ref().map_or(true, |result| result.is_error == Some(true)), "{again:?}");
    assert_eq!(world.stats().await["token_refresh"], refreshes, "backed off");
    assert_eq!(world.opens(), 1);
    assert!(world.token_entry().get("refresh_token").is_some(), "the refresh token is kept");

    world.admin("/admin/token-failure?code=0").await;
    let refreshes = world.stats().await["token_refresh"].as_u64().unwrap_or_default();
    let call = world.run(&["call", "sec__echo", r#"{"message": "later"}"#]).await;
    assert_eq!(call.stdout, "sec: later\n", "{call:?}");
    let stats = world.stats().await;
    assert_eq!(
        stats["token_refresh"].as_u64().unwrap_or_default(),
        refreshes + 1,
        "exactly one refresh: {stats}"
    );
    assert_eq!(world.opens(), 1);
    session.close().await;
}

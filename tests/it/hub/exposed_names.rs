//! Errors about a call to a shared upstream name the tool as the client knows it
//! (`fx__sleep`), as they do unshared, also when the hub wrote them.

use std::time::Duration;

use serde_json::json;

use super::*;

#[tokio::test]
async fn a_call_cut_by_an_upstream_crash_in_the_hub_is_named_as_the_client_knows_it() {
    let env = HubEnv::new();
    let events = env.path("fx.events");
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &["--events-file", text_path(&events)]) }), 2);
    let session = Session::start(&env).await;
    let upstream = pid_of(&session, "fx").await;
    let peer = session.service.peer().clone();
    let in_flight =
        tokio::spawn(async move { peer.call_tool(call("fx__sleep", json!({"ms": 60_000}))).await });
    wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&events).unwrap_or_default().contains("sleeping")
    })
    .await;
    kill(upstream, libc::SIGKILL);
    let answer =
        tokio::time::timeout(Duration::from_secs(10), in_flight).await.expect("answered").expect("join");
    let message = match answer {
        Err(error) => error.to_string(),
        Ok(result) => text_of(&result),
    };
    assert!(message.contains("`fx__sleep`"), "{message}\nlog:\n{}", env.log());
    session.close().await;
    env.finish().await;
}

/// The names a shared upstream's tools are exposed under, and what calling the long
/// one answers.
async fn names_and_long_call(env: &HubEnv, shared: bool, long: &str) -> (Vec<String>, String) {
    let odd = "weird.name/with:chars and spaces";
    let long_name = format!("{}_{long}", "y".repeat(10));
    env.write_servers(
        json!({
            "fx": counted(env, "fx", shared, &["--tools", "echo", "--extra-tool", long]),
            "odd": counted(env, "odd", shared, &["--tools", "echo", "--extra-tool", odd]),
            format!("server_with_a_long_name_{}", "z".repeat(20)): counted(env, "long", shared, &["--tools", "echo", "--extra-tool", &long_name]),
        }),
        2,
    );
    let session = Session::start(env).await;
    let names = tool_names(&session).await;
    let exposed = names.iter().find(|name| name.starts_with("fx__very_")).expect("fx's long tool").clone();
    let called = call_text(&session, &exposed, json!({})).await;
    session.close().await;
    (names, called)
}

#[tokio::test]
async fn long_and_odd_names_of_a_shared_upstream_are_exposed_as_unshared() {
    let long = format!("very_{}_long", "x".repeat(95));
    let env = HubEnv::new();
    let (unshared, unshared_call) = names_and_long_call(&env, false, &long).await;
    let (shared, shared_call) = names_and_long_call(&env, true, &long).await;
    assert_eq!(shared, unshared, "log:\n{}", env.log());
    assert_eq!(shared_call, format!("fx: called {long}"));
    assert_eq!(shared_call, unshared_call);
    env.finish().await;
}

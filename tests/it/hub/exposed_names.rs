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

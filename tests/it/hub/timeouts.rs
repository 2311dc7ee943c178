//! A shared upstream's `requestTimeout` works as unshared: a call that takes too long
//! gets an error naming the tool and the upstream and is cancelled in the upstream, and
//! progress keeps a long call alive, in the bridge and in the hub alike.

use std::time::Duration;

use serde_json::json;

use super::*;

#[tokio::test]
async fn a_request_timeout_cancels_through_the_hub_while_progress_extends_it() {
    let env = HubEnv::new();
    let events = env.path("fx.events");
    let mut entry = counted(&env, "fx", true, &["--events-file", text_path(&events)]);
    entry["requestTimeout"] = json!(1);
    env.write_servers(json!({ "fx": entry }), 2);
    let session = Session::start(&env).await;
    let other = Session::start(&env).await;
    assert_eq!(pid_of(&session, "fx").await, pid_of(&other, "fx").await, "one shared upstream");

    let started = std::time::Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        session.service.call_tool(call("fx__sleep", json!({"ms": 5000}))),
    )
    .await
    .expect("answered")
    .expect("call");
    assert!(started.elapsed() < Duration::from_secs(4), "timed out after ~1 s: {:?}", started.elapsed());
    assert_eq!(result.is_error, Some(true), "{result:?}");
    let message = text_of(&result);
    assert!(message.contains("upstream `fx`") && message.contains("1 s"), "{message}");
    wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&events).unwrap_or_default().contains("cancelled sleep")
    })
    .await;

    // Progress every 600 ms keeps a 3 s call alive under a 1 s timeout.
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        session.service.call_tool(call("fx__slow", json!({"steps": 5, "step_ms": 600}))),
    )
    .await
    .expect("answered")
    .expect("call");
    assert_eq!(text_of(&result), "fx: done 5 steps", "{result:?}\nlog:\n{}", env.log());
    session.close().await;
    other.close().await;
    env.finish().await;
}

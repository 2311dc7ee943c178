//! What one bridge starts in a shared upstream stays its own: its resource
//! subscriptions survive another bridge's unsubscribe and their updates reach only the
//! bridges that subscribed, and its call is cancelled upstream when the bridge dies.

// `resources/subscribe` is what the fixture's protocol version (2025-11-25) has.
#![allow(deprecated)]

use std::time::Duration;

use rmcp::model::{CallToolRequest, ClientRequest, SubscribeRequestParams, UnsubscribeRequestParams};
use rmcp::service::PeerRequestOptions;
use serde_json::json;

use super::*;

/// Two bridges of a config with a shared fixture that records its events.
async fn two_bridges(env: &HubEnv) -> (Session, Session) {
    let events = env.path("fx.events");
    env.write_servers(json!({ "fx": counted(env, "fx", true, &["--events-file", text_path(&events)]) }), 2);
    (Session::start(env).await, Session::start(env).await)
}

/// Touch `uri` through `session` and wait (bounded) until `watcher`'s client heard of
/// some update; what it heard.
async fn touch(env: &HubEnv, session: &Session, uri: &str, watcher: &Session) -> Vec<String> {
    call_text(session, "fx__touch_resource", json!({"uri": uri})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while watcher.client.seen().updated.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let updated = watcher.client.seen().updated.clone();
    let events = std::fs::read_to_string(env.path("fx.events")).unwrap_or_default();
    assert!(
        !updated.is_empty(),
        "no update of {uri} reached the subscriber; the upstream's events:\n{events}"
    );
    updated
}

#[tokio::test]
async fn one_bridges_unsubscribe_leaves_anothers_subscription() {
    let env = HubEnv::new();
    let (first, second) = two_bridges(&env).await;
    let uri = "fixture://fx/static";
    first.service.subscribe(SubscribeRequestParams::new(uri)).await.expect("subscribe");
    second.service.subscribe(SubscribeRequestParams::new(uri)).await.expect("subscribe");
    second.service.unsubscribe(UnsubscribeRequestParams::new(uri)).await.expect("unsubscribe");
    assert_eq!(touch(&env, &second, uri, &first).await, [uri], "the first bridge is still subscribed");
    first.close().await;
    second.close().await;
    env.finish().await;
}

#[tokio::test]
async fn resource_updates_reach_only_the_bridges_that_subscribed() {
    let env = HubEnv::new();
    let (first, second) = two_bridges(&env).await;
    let (first_uri, second_uri) = ("fixture://fx/static", "fixture://fx/items/1");
    first.service.subscribe(SubscribeRequestParams::new(first_uri)).await.expect("subscribe");
    second.service.subscribe(SubscribeRequestParams::new(second_uri)).await.expect("subscribe");
    // Each touches the other's resource, then a round trip lets anything stray arrive.
    assert_eq!(touch(&env, &second, first_uri, &first).await, [first_uri]);
    assert_eq!(touch(&env, &first, second_uri, &second).await, [second_uri]);
    call_text(&first, "fx__echo", json!({"message": "round trip"})).await;
    call_text(&second, "fx__echo", json!({"message": "round trip"})).await;
    assert_eq!(first.client.seen().updated, [first_uri], "not the second bridge's resource");
    assert_eq!(second.client.seen().updated, [second_uri], "not the first bridge's resource");
    first.close().await;
    second.close().await;
    env.finish().await;
}

#[tokio::test]
async fn a_killed_bridges_call_is_cancelled_upstream() {
    let env = HubEnv::new();
    let events = env.path("fx.events");
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &["--events-file", text_path(&events)]) }), 2);
    let other = Session::start(&env).await;
    let upstream = pid_of(&other, "fx").await;
    let caller = Session::start(&env).await;
    let slow = ClientRequest::CallToolRequest(CallToolRequest::new(call(
        "fx__slow",
        json!({"steps": 100, "step_ms": 100}),
    )));
    let _handle =
        caller.service.send_cancellable_request(slow, PeerRequestOptions::no_options()).await.expect("send");
    caller.wait_seen(Duration::from_secs(10), |seen| !seen.progress.is_empty()).await;
    kill(caller.pid, libc::SIGKILL);

    // Its call does not run on in the shared upstream for nobody, as it would not
    // unshared (its upstream would end with it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let cancelled = || std::fs::read_to_string(&events).unwrap_or_default().contains("cancelled slow");
    while !cancelled() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let upstream_events = std::fs::read_to_string(&events).unwrap_or_default();
    assert!(cancelled(), "the upstream's events:\n{upstream_events}\nlog:\n{}", env.log());
    assert_eq!(pid_of(&other, "fx").await, upstream);
    other.close().await;
    drop(caller);
    env.finish().await;
}

/// The log messages `session`'s client heard, as text.
fn heard_logs(session: &Session) -> Vec<String> {
    session.client.seen().logs.iter().map(|log| log.data.as_str().unwrap_or_default().to_owned()).collect()
}

#[tokio::test]
async fn each_bridge_hears_log_messages_at_the_level_it_set() {
    use rmcp::model::{LoggingLevel, SetLevelRequestParams};
    let env = HubEnv::new();
    let (quiet, verbose) = two_bridges(&env).await;
    call_text(&quiet, "fx__echo", json!({"message": "up"})).await;
    call_text(&verbose, "fx__echo", json!({"message": "up"})).await;
    quiet.service.set_level(SetLevelRequestParams::new(LoggingLevel::Warning)).await.expect("setLevel");
    verbose.service.set_level(SetLevelRequestParams::new(LoggingLevel::Debug)).await.expect("setLevel");
    call_text(&verbose, "fx__log", json!({"level": "info", "message": "detail"})).await;
    call_text(&quiet, "fx__log", json!({"level": "error", "message": "trouble"})).await;
    // The upstream's messages reach the hub in order: once `trouble` is heard, `detail`
    // would have been heard before it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !(heard_logs(&quiet).contains(&"trouble".to_owned()) && heard_logs(&verbose).len() == 2)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(heard_logs(&quiet), ["trouble"], "the bridge that set `warning` hears no `info`");
    assert_eq!(heard_logs(&verbose), ["detail", "trouble"], "the bridge that set `debug` hears both");
    quiet.close().await;
    verbose.close().await;
    env.finish().await;
}

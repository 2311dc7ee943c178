//! Processes that go away under a running hub: a shared upstream that crashes fails the
//! calls in flight on it and is restarted once for every bridge, by the same hub, and
//! one that freezes is found by the hub's health checks and replaced once; a
//! bridge killed mid-call, even the one that started the hub, leaves the hub serving
//! the others; a hub stopped by `hub stop` fails the calls in flight, ends its upstreams,
//! and the bridges start a new one.

use std::time::Duration;

use rmcp::model::{CallToolRequest, ClientRequest};
use rmcp::service::PeerRequestOptions;
use serde_json::json;

use super::*;

/// Call `fx__pid` until it succeeds (bounded): the upstream may be restarting.
async fn pid_when_back(env: &HubEnv, session: &Session) -> u32 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let result = session.service.call_tool(call("fx__pid", json!({}))).await;
        match result {
            Ok(result) if result.is_error != Some(true) => {
                return text_of(&result).parse().expect("a pid");
            }
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "fx__pid still fails 20 s on: {other:?}\nlog:\n{}",
                env.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_crashed_shared_upstream_is_restarted_once_for_every_bridge() {
    let env = HubEnv::new();
    let events = env.path("fx.events");
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &["--events-file", text_path(&events)]) }), 2);
    let sessions = vec![Session::start(&env).await, Session::start(&env).await];
    let first_upstream = pid_of(&sessions[0], "fx").await;
    assert_eq!(pid_of(&sessions[1], "fx").await, first_upstream);
    let hub = env.one_hub().await;

    let in_flight: Vec<_> = sessions
        .iter()
        .map(|session| {
            let peer = session.service.peer().clone();
            tokio::spawn(async move { peer.call_tool(call("fx__sleep", json!({"ms": 60_000}))).await })
        })
        .collect();
    let sleeping = || std::fs::read_to_string(&events).unwrap_or_default().matches("sleeping").count();
    wait_until(Duration::from_secs(10), || sleeping() == 2).await;
    kill(first_upstream, libc::SIGKILL);
    for (bridge, call) in in_flight.into_iter().enumerate() {
        let answer = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .unwrap_or_else(|_| panic!("bridge {bridge}: the in-flight call hangs after the crash"))
            .expect("join");
        let text = match answer {
            Err(error) => error.to_string(),
            Ok(result) => {
                assert_eq!(result.is_error, Some(true), "bridge {bridge}: {result:?}");
                text_of(&result)
            }
        };
        assert!(text.contains("`fx`"), "bridge {bridge}: the error names the upstream: {text}");
    }

    let restarted = pid_when_back(&env, &sessions[0]).await;
    assert_eq!(pid_when_back(&env, &sessions[1]).await, restarted, "one restarted upstream for both");
    assert_eq!(starts(&env, "fx"), vec![first_upstream, restarted], "restarted once, not per bridge");
    assert_eq!(env.one_hub().await, hub, "by the same hub");
    for session in sessions {
        session.close().await;
    }
    env.finish().await;
}

#[tokio::test]
async fn a_bridge_killed_mid_call_leaves_the_hub_serving_the_others() {
    let env = HubEnv::new();
    let events = env.path("fx.events");
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &["--events-file", text_path(&events)]) }), 2);
    // The first bridge starts the hub, the second attaches to it.
    let starter = Session::start(&env).await;
    let upstream = pid_of(&starter, "fx").await;
    let hub = env.one_hub().await;
    let other = Session::start(&env).await;
    assert_eq!(pid_of(&other, "fx").await, upstream);

    let slow = ClientRequest::CallToolRequest(CallToolRequest::new(call(
        "fx__slow",
        json!({"steps": 100, "step_ms": 100}),
    )));
    let _handle =
        starter.service.send_cancellable_request(slow, PeerRequestOptions::no_options()).await.expect("send");
    starter.wait_seen(Duration::from_secs(10), |seen| !seen.progress.is_empty()).await;
    kill(starter.pid, libc::SIGKILL);

    assert_eq!(env.one_hub().await, hub, "the hub outlives the bridge that started it");
    assert!(alive(upstream), "and so does its upstream");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = env.status().await;
        if status.len() == 1 && status[0]["bridges"] == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the killed bridge is still counted: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(call_text(&other, "fx__echo", json!({"message": "still"})).await, "fx: still");
    assert_eq!(pid_of(&other, "fx").await, upstream);
    other.close().await;
    drop(starter);
    env.finish().await;
}

#[tokio::test]
async fn hub_stop_fails_calls_in_flight_and_the_bridges_start_a_new_hub() {
    let env = HubEnv::new();
    let events = env.path("fx.events");
    let args = ["--events-file", text_path(&events), "--spawn-grandchild"];
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &args) }), 2);
    let sessions = vec![Session::start(&env).await, Session::start(&env).await];
    let upstream = pid_of(&sessions[0], "fx").await;
    assert_eq!(pid_of(&sessions[1], "fx").await, upstream);
    let hub = env.one_hub().await;
    let family = descendants(hub);
    let socket = env.sockets().pop().expect("the hub's socket");

    let peer = sessions[0].service.peer().clone();
    let in_flight =
        tokio::spawn(async move { peer.call_tool(call("fx__sleep", json!({"ms": 60_000}))).await });
    wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&events).unwrap_or_default().contains("sleeping")
    })
    .await;
    let stopped = env.run(&["hub", "stop"]).await;
    assert_eq!(stopped.code, Some(0), "{stopped:?}");
    let answer = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the in-flight call is answered once the hub stops")
        .expect("join");
    let text = match answer {
        Err(error) => error.to_string(),
        Ok(result) => {
            assert_eq!(result.is_error, Some(true), "{result:?}");
            text_of(&result)
        }
    };
    assert!(text.contains("`fx`"), "the error names the upstream: {text}");
    wait_until(Duration::from_secs(10), || {
        !alive(hub) && family.iter().all(|&pid| !alive(pid)) && !socket.exists()
    })
    .await;

    let restarted = pid_when_back(&env, &sessions[0]).await;
    assert_eq!(pid_when_back(&env, &sessions[1]).await, restarted);
    assert_ne!(restarted, upstream);
    assert_ne!(env.one_hub().await, hub, "a new hub");
    for session in sessions {
        session.close().await;
    }
    env.finish().await;
}

#[tokio::test]
async fn a_frozen_shared_upstream_is_replaced_by_the_hubs_health_checks() {
    let env = HubEnv::new();
    // The first process freezes after 1.5 s; the ones after it do not.
    let marker = env.path("fx.frozen-once");
    let script = format!(
        "echo $$ >> '{starts}'; if [ -e '{marker}' ]; then exec '{fixture}' --name fx; fi; \
         touch '{marker}'; exec '{fixture}' --name fx --hang-after-ms 1500",
        starts = env.path("fx.starts").display(),
        marker = marker.display(),
        fixture = fixture_bin().display(),
    );
    env.write_config(&json!({
        "mcpServers": { "fx": {
            "command": "sh", "args": ["-c", script], "shared": true, "retryDelay": 100,
            "healthCheck": { "enabled": true, "interval": 200, "timeout": 200 },
        } },
        "bridge": { "hub": { "idleTimeout": 2 }, "failover": { "maxFailures": 2 } },
    }));
    let sessions = vec![Session::start(&env).await, Session::start(&env).await];
    let frozen = pid_of(&sessions[0], "fx").await;
    assert_eq!(pid_of(&sessions[1], "fx").await, frozen);
    let hub = env.one_hub().await;

    // The hub's pings time out; it ends the frozen process and starts another, which
    // both bridges then use.
    let log = env.wait_log("health checks in a row failed").await;
    assert!(
        log.lines().any(|line| line.contains("health checks in a row failed") && line.contains("hub]")),
        "{log}"
    );
    wait_until(Duration::from_secs(10), || !alive(frozen)).await;
    let replaced = pid_when_back(&env, &sessions[0]).await;
    assert_ne!(replaced, frozen);
    assert_eq!(pid_when_back(&env, &sessions[1]).await, replaced, "one replacement for both");
    assert_eq!(starts(&env, "fx"), vec![frozen, replaced], "replaced once, by the hub");
    assert_eq!(env.one_hub().await, hub);
    for session in sessions {
        session.close().await;
    }
    env.finish().await;
}

//! A shared upstream's limits work as unshared: a call over its `requestTimeout` gets an
//! error naming the upstream and is cancelled in the upstream, progress keeps a long call
//! alive in the bridge and in the hub alike, an answer over `bridge.maxMessageBytes`
//! fails only its own call while large answers under it pass whole, and an answer cut off
//! after its id (which the hub passes on without reading further) ends its call with the
//! timeout, as unshared.

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

    times_out_after_a_second(&session, "fx", "fx__sleep", json!({"ms": 5000})).await;
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

#[tokio::test]
async fn large_answers_pass_the_hub_and_one_over_the_limit_fails_only_its_call() {
    const LIMIT: u64 = 100_000;
    let env = HubEnv::new();
    let mut entry = counted(&env, "fx", true, &[]);
    entry["requestTimeout"] = json!(60);
    env.write_config(&json!({
        "mcpServers": { "fx": entry },
        "bridge": { "hub": { "idleTimeout": 2 }, "maxMessageBytes": LIMIT },
    }));
    let session = Session::start(&env).await;
    let other = Session::start(&env).await;
    let large = call_text(&session, "fx__big", json!({"bytes": LIMIT - 1000})).await;
    assert_eq!(large.len() as u64, LIMIT - 1000, "a large answer under the limit passes whole");

    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(30),
        session.service.call_tool(call("fx__big", json!({"bytes": 2 * LIMIT}))),
    )
    .await
    .expect("answered");
    let text = match answer {
        Ok(result) => text_of(&result),
        Err(error) => error.to_string(),
    };
    assert!(started.elapsed() < Duration::from_secs(10), "failed at once: {:?}", started.elapsed());
    assert!(text.contains("`bridge.maxMessageBytes`") && text.contains("`fx`"), "{text}");
    for session in [&session, &other] {
        assert_eq!(call_text(session, "fx__echo", json!({"message": "after"})).await, "fx: after");
    }
    assert_eq!(starts(&env, "fx").len(), 1, "one shared upstream served both, and it lives on");
    session.close().await;
    other.close().await;
    env.finish().await;
}

#[tokio::test]
async fn an_answer_cut_off_after_its_id_times_its_call_out_as_unshared() {
    let env = HubEnv::new();
    let mut servers = serde_json::Map::new();
    for (name, shared) in [("fx", true), ("own", false)] {
        let mut entry = counted(&env, name, shared, &["--garbled-tool", "garbled"]);
        entry["requestTimeout"] = json!(1);
        servers.insert(name.to_owned(), entry);
    }
    env.write_servers(serde_json::Value::Object(servers), 2);
    let session = Session::start(&env).await;
    for name in ["fx", "own"] {
        times_out_after_a_second(&session, name, &format!("{name}__garbled"), json!({})).await;
        let after = call_text(&session, &format!("{name}__echo"), json!({"message": "after"})).await;
        assert_eq!(after, format!("{name}: after"), "the next call of {name} is answered");
    }
    session.close().await;
    env.finish().await;
}

/// Call `tool` of `upstream` (whose `requestTimeout` is 1 s) and check that it ends, in
/// well under 4 s, with the error that names the upstream and the timeout.
async fn times_out_after_a_second(
    session: &Session,
    upstream: &str,
    tool: &str,
    arguments: serde_json::Value,
) {
    let started = std::time::Instant::now();
    let result =
        tokio::time::timeout(Duration::from_secs(10), session.service.call_tool(call(tool, arguments)))
            .await
            .expect("answered")
            .expect("call");
    assert!(started.elapsed() < Duration::from_secs(4), "{tool}: timed out after {:?}", started.elapsed());
    assert_eq!(result.is_error, Some(true), "{tool}: {result:?}");
    let message = text_of(&result);
    assert!(message.contains(&format!("upstream `{upstream}`")) && message.contains("1 s"), "{message}");
}

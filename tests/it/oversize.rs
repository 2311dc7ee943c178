//! A message over `bridge.maxMessageBytes` from a stdio upstream is dropped unread, and
//! the request it answered gets an error naming the limit at once, instead of waiting
//! for the request timeout.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

const LIMIT: u64 = 100_000;

fn describe(result: Result<rmcp::model::CallToolResult, rmcp::ServiceError>) -> String {
    match result {
        Ok(result) => format!("result: {}", text_of(&result)),
        Err(error) => format!("error: {error}"),
    }
}

#[tokio::test]
async fn an_answer_over_the_limit_fails_its_call_at_once() {
    for served in Served::BOTH {
        let env = TestEnv::new();
        let mut big = fixture("big", served.fixture_args());
        big["requestTimeout"] = json!(60);
        env.write_config(&json!({ "mcpServers": { "big": big }, "bridge": { "maxMessageBytes": LIMIT } }));
        let session = Session::start(&env).await;
        served.prepare(&session).await;
        let started = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            session.service.call_tool(call("big__big", json!({"bytes": 2 * LIMIT}))),
        )
        .await
        .unwrap_or_else(|_| panic!("{served:?}: no answer"));
        let answer = describe(answer);
        assert!(started.elapsed() < Duration::from_secs(10), "{served:?}: {:?}", started.elapsed());
        assert!(
            answer.starts_with("result: "),
            "{served:?}: a tool error result, not a JSON-RPC error: {answer}"
        );
        assert!(answer.contains("upstream `big`"), "{served:?}: {answer}");
        assert!(answer.contains("`bridge.maxMessageBytes` (100000 bytes)"), "{served:?}: {answer}");
        // The session goes on.
        let echo = session.service.call_tool(call("big__echo", json!({"message": "after"}))).await;
        assert_eq!(describe(echo), "result: big: after", "{served:?}");
        session.close().await;
    }
}

/// A line over the limit whose request cannot be told fails every call in flight on
/// that upstream, and the session restarts.
#[tokio::test]
async fn a_line_over_the_limit_without_an_id_fails_the_calls_in_flight() {
    let env = TestEnv::new();
    let noise = (2 * LIMIT).to_string();
    let mut noisy = fixture("noisy", &["--noise-every-ms", "1500", "--noise-bytes", &noise]);
    noisy["requestTimeout"] = json!(60);
    env.write_config(&json!({ "mcpServers": { "noisy": noisy }, "bridge": { "maxMessageBytes": LIMIT } }));
    let session = Session::start(&env).await;
    assert!(tool_names(&session).await.contains(&"noisy__sleep".to_owned()));
    let started = Instant::now();
    let sleeping = session.service.call_tool(call("noisy__sleep", json!({"ms": 30_000})));
    let answer = tokio::time::timeout(Duration::from_secs(20), sleeping).await.expect("an answer");
    let answer = describe(answer);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(answer.contains("`bridge.maxMessageBytes`"), "{answer}");
    env.wait_log("upstream disconnected").await;
    session.close().await;
}

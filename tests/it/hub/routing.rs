//! What a shared upstream sends back reaches only the bridge it belongs to: progress of
//! a call goes to its caller even when two bridges use the same progress token and
//! request id, a cancellation ends only the caller's call, and sampling, roots and
//! elicitation requests are answered by the client of the bridge whose call is in flight.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;

/// A `tools/call` of `fx__slow` with progress token `tok` and request id 7.
fn slow_call(steps: u64) -> Value {
    json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "fx__slow", "arguments": {"steps": steps, "step_ms": 100}, "_meta": {"progressToken": "tok"}}
    })
}

fn is_progress(message: &Value) -> bool {
    message["method"] == "notifications/progress"
}

/// Read until the first progress notification; every message read.
async fn until_progress(raw: &mut RawSession, limit: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut messages = Vec::new();
    while !messages.iter().any(is_progress) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let message = recv_within(raw, left)
            .await
            .unwrap_or_else(|| panic!("no progress within {limit:?}: {messages:?}"));
        messages.push(message);
    }
    messages
}

#[tokio::test]
async fn progress_and_cancellation_reach_only_the_caller() {
    let env = HubEnv::new();
    let events = env.path("fx.events");
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &["--events-file", text_path(&events)]) }), 2);
    let mut first = RawSession::start(&env).await;
    let mut second = RawSession::start(&env).await;
    first.initialize().await;
    second.initialize().await;

    // Same request id, same progress token, on two bridges.
    first.send(&slow_call(100)).await;
    let mut seen_first = until_progress(&mut first, Duration::from_secs(30)).await;
    second.send(&slow_call(10)).await;
    let mut seen_second = until_progress(&mut second, Duration::from_secs(10)).await;
    first
        .send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7, "reason": "test"}}))
        .await;
    seen_second.extend(until_response(&mut second, &json!(7), Duration::from_secs(10)).await);
    let answer = seen_second.last().expect("the response");
    assert_eq!(answer["result"]["content"][0]["text"], "fx: done 10 steps", "{answer}");
    wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&events).unwrap_or_default().contains("cancelled slow")
    })
    .await;

    // The second bridge saw its own ten steps and nothing of the first's call.
    let progress: Vec<(Value, Option<f64>, Option<f64>)> = seen_second
        .iter()
        .filter(|message| is_progress(message))
        .map(|message| {
            let params = &message["params"];
            (params["progressToken"].clone(), params["progress"].as_f64(), params["total"].as_f64())
        })
        .collect();
    let expected: Vec<(Value, Option<f64>, Option<f64>)> =
        (1..=10).map(|step| (json!("tok"), Some(f64::from(step)), Some(10.0))).collect();
    assert_eq!(progress, expected, "{seen_second:?}");

    // The first bridge: its progress only, no answer to the cancelled call, and the
    // session goes on.
    first.send(&tool_call(8, "fx__echo", json!({"message": "after"}))).await;
    seen_first.extend(until_response(&mut first, &json!(8), Duration::from_secs(10)).await);
    let echoed = seen_first.last().expect("the response");
    assert_eq!(echoed["result"]["content"][0]["text"], "fx: after", "{echoed}");
    for message in &seen_first {
        if is_progress(message) {
            assert_eq!(message["params"]["progressToken"], "tok", "{message}");
            assert_eq!(
                message["params"]["total"].as_f64(),
                Some(100.0),
                "only its own call's progress: {message}"
            );
        }
        assert_ne!(message.get("id"), Some(&json!(7)), "no answer to a cancelled call: {message}");
    }
    assert_eq!(starts(&env, "fx").len(), 1, "one upstream served both");
    drop((first, second));
    env.finish().await;
}

fn client(tag: &str) -> TestClient {
    TestClient {
        sampling_reply: format!("sampled-by-{tag}"),
        roots: vec![format!("file:///{tag}/root")],
        ..TestClient::default()
    }
}

fn asked(session: &Session) -> (usize, usize) {
    let seen = session.client.seen();
    (seen.sampling_requests.len(), seen.roots_requests)
}

#[tokio::test]
async fn sampling_and_roots_go_to_the_callers_client() {
    let env = HubEnv::new();
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &[]) }), 2);
    let first = Session::start_with(&env, client("first")).await;
    let second = Session::start_with(&env, client("second")).await;
    assert_eq!(pid_of(&first, "fx").await, pid_of(&second, "fx").await, "one shared upstream");

    // Each client is asked only for its own bridge's calls, whichever bridge attached last.
    let asked_before = (asked(&first), asked(&second));
    let sampled = call_text(&first, "fx__sample", json!({"prompt": "hello"})).await;
    assert_eq!(sampled, "fx: sampled: sampled-by-first");
    assert_eq!(asked(&first).0, asked_before.0.0 + 1, "the first client sampled");
    assert_eq!(asked(&second).0, asked_before.1.0, "the second client was not asked");

    let roots = call_text(&second, "fx__roots", json!({})).await;
    assert_eq!(roots, "fx: roots: file:///second/root");
    assert_eq!(asked(&first).1, asked_before.0.1, "the first client was not asked for roots");

    let roots = call_text(&first, "fx__roots", json!({})).await;
    assert_eq!(roots, "fx: roots: file:///first/root");
    let sampled = call_text(&second, "fx__sample", json!({"prompt": "hello"})).await;
    assert_eq!(sampled, "fx: sampled: sampled-by-second");
    assert_eq!(asked(&first).0, asked_before.0.0 + 1, "the first client sampled only once");

    let elicitations = |session: &Session| session.client.seen().elicitations;
    let elicited_before = (elicitations(&first), elicitations(&second));
    let elicited = call_text(&second, "fx__elicit", json!({"message": "answer?"})).await;
    assert_eq!(elicited, r#"fx: elicited: accept {"answer":"42"}"#);
    assert_eq!((elicitations(&first), elicitations(&second)), (elicited_before.0, elicited_before.1 + 1));
    first.close().await;
    second.close().await;
    env.finish().await;
}

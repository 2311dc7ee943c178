//! The core bridge against rmcp fixture upstreams: aggregation, routing, and every
//! protocol feature passing through in both directions.

#![allow(deprecated)]

use std::time::Duration;

use rmcp::model::{
    CallToolRequest, ClientRequest, GetPromptRequestParams, LoggingLevel, ReadResourceRequestParams,
    Reference, ResourceContents, ServerResult, SetLevelRequestParams, SubscribeRequestParams,
};
use rmcp::service::PeerRequestOptions;
use serde_json::{Value, json};

use crate::support::*;

fn two_fixtures(env: &TestEnv) -> Value {
    json!({
        "mcpServers": {
            "alpha": fixture("alpha", &["--events-file", env.path("alpha.events").to_str().unwrap()]),
            "beta": fixture("beta", &[]),
        }
    })
}

#[tokio::test]
async fn tools_of_both_upstreams_are_listed_with_prefixes() {
    let env = TestEnv::new();
    env.write_config(&two_fixtures(&env));
    let session = Session::start(&env).await;
    let tools = session.service.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    for expected in ["alpha__echo", "alpha__add", "beta__echo", "beta__slow"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    let add = tools.iter().find(|tool| tool.name == "alpha__add").expect("alpha__add");
    assert_eq!(add.title.as_deref(), Some("Add numbers"));
    assert!(add.output_schema.is_some(), "outputSchema passes through");
    assert_eq!(add.annotations.as_ref().and_then(|a| a.read_only_hint), Some(true));
    session.close().await;
}

#[tokio::test]
async fn calls_reach_the_right_upstream_with_errors_and_structured_results() {
    let env = TestEnv::new();
    env.write_config(&two_fixtures(&env));
    let session = Session::start(&env).await;
    let alpha = session.service.call_tool(call("alpha__echo", json!({"message": "hi"}))).await.expect("call");
    assert_eq!(text_of(&alpha), "alpha: hi");
    let beta = session.service.call_tool(call("beta__echo", json!({"message": "hi"}))).await.expect("call");
    assert_eq!(text_of(&beta), "beta: hi");

    let failed =
        session.service.call_tool(call("beta__fail", json!({"message": "boom"}))).await.expect("call");
    assert_eq!(failed.is_error, Some(true));
    assert_eq!(text_of(&failed), "beta: failed: boom");

    let sum = session.service.call_tool(call("alpha__add", json!({"a": 2, "b": 3}))).await.expect("call");
    assert_eq!(sum.structured_content, Some(json!({"sum": 5})));

    let unknown = session.service.call_tool(call("nope__echo", json!({}))).await;
    let error = unknown.expect_err("unknown tool is an error");
    assert!(error.to_string().contains("unknown tool `nope__echo`"), "{error}");
    session.close().await;
}

#[tokio::test]
async fn resources_prompts_and_completions_pass_through() {
    let env = TestEnv::new();
    env.write_config(&two_fixtures(&env));
    let session = Session::start(&env).await;

    let resources = session.service.list_all_resources().await.expect("resources/list");
    let uris: Vec<&str> = resources.iter().map(|resource| resource.uri.as_str()).collect();
    assert!(uris.contains(&"fixture://alpha/static"), "{uris:?}");
    // Both fixtures list `fixture://shared/readme`: each gets a namespaced URI.
    assert!(uris.contains(&"foxxy://alpha/fixture://shared/readme"), "{uris:?}");
    assert!(uris.contains(&"foxxy://beta/fixture://shared/readme"), "{uris:?}");

    let read = |uri: &str| {
        let uri = uri.to_owned();
        let service = &session.service;
        async move { service.read_resource(ReadResourceRequestParams::new(uri)).await.expect("resources/read") }
    };
    let text = |result: rmcp::model::ReadResourceResult| match &result.contents[0] {
        ResourceContents::TextResourceContents { text, uri, .. } => (text.clone(), uri.clone()),
        other => panic!("unexpected contents {other:?}"),
    };
    assert_eq!(text(read("fixture://alpha/static").await).0, "static resource of alpha");
    let (shared_text, shared_uri) = text(read("foxxy://beta/fixture://shared/readme").await);
    assert_eq!(shared_text, "readme of beta");
    assert_eq!(shared_uri, "foxxy://beta/fixture://shared/readme", "contents carry the exposed URI");
    assert_eq!(text(read("fixture://beta/items/7").await).0, "item 7 of beta", "template URIs route too");

    let prompts = session.service.list_all_prompts().await.expect("prompts/list");
    assert!(prompts.iter().any(|prompt| prompt.name == "alpha__greet"));
    let prompt = session
        .service
        .get_prompt(
            GetPromptRequestParams::new("alpha__greet")
                .with_arguments(json!({"who": "Ada"}).as_object().cloned().unwrap_or_default()),
        )
        .await
        .expect("prompts/get");
    let rendered = serde_json::to_string(&prompt.messages).expect("encode");
    assert!(rendered.contains("Hello Ada from alpha"), "{rendered}");

    let completion = session
        .service
        .complete_prompt_simple("alpha__greet", "who", "al")
        .await
        .expect("completion/complete");
    assert_eq!(completion, vec!["alice".to_owned(), "albert".to_owned()]);
    let _ = Reference::for_prompt("unused");
    session.close().await;
}

#[tokio::test]
async fn progress_arrives_in_order_before_the_result() {
    for served in Served::BOTH {
        let env = TestEnv::new();
        env.write_config(&json!({ "mcpServers": { "alpha": fixture("alpha", served.fixture_args()) } }));
        let session = Session::start(&env).await;
        served.prepare(&session).await;
        // Paced, and then all at once: the last progress and the result reach the bridge
        // together, and the result must still wait for the progress ahead of it.
        for (step_ms, seen) in [(20, 4), (0, 8)] {
            let result = session
                .service
                .call_tool(call("alpha__slow", json!({"steps": 4, "step_ms": step_ms})))
                .await
                .expect("call");
            assert_eq!(text_of(&result), "alpha: done 4 steps", "{served:?}");
            let progress: Vec<f64> = session.client.seen().progress.iter().map(|p| p.progress).collect();
            let expected: Vec<f64> = [1.0, 2.0, 3.0, 4.0].repeat(seen / 4);
            assert_eq!(progress, expected, "{served:?}: all progress, in order, before the result");
        }
        session.close().await;
    }
}

#[tokio::test]
async fn cancellation_reaches_the_upstream() {
    for served in Served::BOTH {
        let env = TestEnv::new();
        let events = env.path("alpha.events");
        let mut args = vec!["--events-file", events.to_str().unwrap()];
        args.extend(served.fixture_args());
        env.write_config(&json!({ "mcpServers": { "alpha": fixture("alpha", &args) } }));
        let session = Session::start(&env).await;
        served.prepare(&session).await;
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(call(
            "alpha__slow",
            json!({"steps": 100, "step_ms": 100}),
        )));
        let handle = session
            .service
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await
            .expect("send");
        session.wait_seen(Duration::from_secs(5), |seen| !seen.progress.is_empty()).await;
        handle.cancel(Some("test cancels".into())).await.expect("cancel");
        wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&events).unwrap_or_default().contains("cancelled slow")
        })
        .await;
        // The session is still usable after a cancellation.
        let echo =
            session.service.call_tool(call("alpha__echo", json!({"message": "after"}))).await.expect("call");
        assert_eq!(text_of(&echo), "alpha: after", "{served:?}");
        session.close().await;
    }
}

#[tokio::test]
async fn sampling_elicitation_and_roots_are_answered_by_the_client() {
    let env = TestEnv::new();
    env.write_config(&two_fixtures(&env));
    let session = Session::start(&env).await;
    let sampled =
        session.service.call_tool(call("alpha__sample", json!({"prompt": "hello"}))).await.expect("call");
    assert_eq!(text_of(&sampled), "alpha: sampled: sampled-by-test-client");
    assert_eq!(session.client.seen().sampling_requests.len(), 1);

    let elicited =
        session.service.call_tool(call("beta__elicit", json!({"message": "answer?"}))).await.expect("call");
    assert_eq!(text_of(&elicited), r#"beta: elicited: accept {"answer":"42"}"#);

    let roots = session.service.call_tool(call("alpha__roots", json!({}))).await.expect("call");
    assert_eq!(text_of(&roots), "alpha: roots: file:///tmp/root-a,file:///tmp/root-b");
    session.close().await;
}

#[tokio::test]
async fn an_upstream_cancelling_its_sampling_request_reaches_the_client() {
    let env = TestEnv::new();
    env.write_config(&two_fixtures(&env));
    let client = TestClient { sampling_delay: Duration::from_secs(10), ..TestClient::default() };
    let session = Session::start_with(&env, client).await;
    let started = std::time::Instant::now();
    let sampled = session
        .service
        .call_tool(call("alpha__sample", json!({"prompt": "slowly", "timeout_ms": 300})))
        .await
        .expect("call");
    assert_eq!(sampled.is_error, Some(true), "the upstream gave up: {sampled:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    session.wait_seen(Duration::from_secs(5), |seen| seen.sampling_cancelled == 1).await;
    session.close().await;
}

#[tokio::test]
async fn sampling_is_refused_when_the_client_did_not_declare_it() {
    let env = TestEnv::new();
    env.write_config(&two_fixtures(&env));
    let client = TestClient { declare_sampling: false, ..TestClient::default() };
    let session = Session::start_with(&env, client).await;
    let sampled =
        session.service.call_tool(call("alpha__sample", json!({"prompt": "hello"}))).await.expect("call");
    assert_eq!(sampled.is_error, Some(true));
    let text = text_of(&sampled);
    // The upstream is initialized without sampling, so it refuses by itself; a server
    // that tries anyway gets the bridge's refusal.
    let refused = ["client does not support sampling", "did not declare the `sampling` capability"];
    assert!(refused.iter().any(|reason| text.contains(reason)), "{text}");
    session.close().await;
}

#[tokio::test]
async fn log_messages_follow_set_level() {
    let env = TestEnv::new();
    env.write_config(&two_fixtures(&env));
    let session = Session::start(&env).await;
    session.service.set_level(SetLevelRequestParams::new(LoggingLevel::Warning)).await.expect("setLevel");
    let events = env.path("alpha.events");
    wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&events).unwrap_or_default().contains("set_level warning")
    })
    .await;
    session
        .service
        .call_tool(call("alpha__log", json!({"level": "info", "message": "quiet"})))
        .await
        .expect("call");
    session
        .service
        .call_tool(call("alpha__log", json!({"level": "error", "message": "loud"})))
        .await
        .expect("call");
    session.wait_seen(Duration::from_secs(5), |seen| !seen.logs.is_empty()).await;
    let logs: Vec<(String, Value)> = session
        .client
        .seen()
        .logs
        .iter()
        .map(|log| (log.logger.clone().unwrap_or_default(), log.data.clone()))
        .collect();
    assert_eq!(logs, vec![("alpha/alpha".to_owned(), json!("loud"))]);
    session.close().await;
}

#[tokio::test]
async fn upstream_list_changed_reaches_the_client() {
    let env = TestEnv::new();
    env.write_config(&two_fixtures(&env));
    let session = Session::start(&env).await;
    let before = session.service.list_all_tools().await.expect("tools/list");
    assert!(!before.iter().any(|tool| tool.name == "beta__dynamic_tool"));
    // Let the announcements of the upstreams' own arrival pass before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = session.client.seen().tools_changed;
    session.service.call_tool(call("beta__change_tools", json!({}))).await.expect("call");
    session.wait_seen(Duration::from_secs(5), |seen| seen.tools_changed > baseline).await;
    let after = session.service.list_all_tools().await.expect("tools/list");
    assert!(after.iter().any(|tool| tool.name == "beta__dynamic_tool"), "the new tool is listed");
    let dynamic =
        session.service.call_tool(call("beta__dynamic_tool", json!({"message": "new"}))).await.expect("call");
    assert_eq!(text_of(&dynamic), "beta: new");
    session.close().await;
}

#[tokio::test]
async fn resource_subscriptions_and_updates_use_exposed_uris() {
    let env = TestEnv::new();
    env.write_config(&two_fixtures(&env));
    let session = Session::start(&env).await;
    let uri = "foxxy://alpha/fixture://shared/readme";
    session.service.subscribe(SubscribeRequestParams::new(uri)).await.expect("subscribe");
    let events = env.path("alpha.events");
    wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&events).unwrap_or_default().contains("subscribed fixture://shared/readme")
    })
    .await;
    session
        .service
        .call_tool(call("alpha__touch_resource", json!({"uri": "fixture://shared/readme"})))
        .await
        .expect("call");
    session.wait_seen(Duration::from_secs(5), |seen| !seen.updated.is_empty()).await;
    assert_eq!(session.client.seen().updated, vec![uri.to_owned()]);
    session.close().await;
}

#[tokio::test]
async fn ping_is_answered() {
    let env = TestEnv::new();
    env.write_config(&two_fixtures(&env));
    let session = Session::start(&env).await;
    let pong =
        session.service.send_request(ClientRequest::PingRequest(Default::default())).await.expect("ping");
    assert!(matches!(pong, ServerResult::EmptyResult(_)), "{pong:?}");
    session.close().await;
}

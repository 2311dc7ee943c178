//! Tests of `LineTransport`: the fast path for tool results, noise, oversized lines and
//! the lane.

use rmcp::model::{
    CallToolRequestParams, ClientJsonRpcMessage, NumberOrString, ProgressToken, ServerJsonRpcMessage,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

use tokio_util::sync::CancellationToken;

use super::{super::lane::LaneTicket, *};
use crate::{
    upstream::{
        UpstreamError,
        in_flight::{self, AnswerSink, InFlightContext, UpstreamCanceller, progress::ProgressRoutes},
        tap::{self, TapReceiver},
    },
    wire::{ToolAnswer, ToolCall, ToolCallRef},
};

fn call_request(id: i64) -> TxJsonRpcMessage<RoleClient> {
    ClientJsonRpcMessage::request(
        ClientRequest::CallToolRequest(rmcp::model::Request::new(CallToolRequestParams::new("echo"))),
        RequestId::Number(id),
    )
}

/// A transport whose upstream side is driven by the test.
fn pair(max: usize) -> (LineTransport<tokio::io::DuplexStream>, Upstream) {
    let (ours_read, theirs_write) = duplex(1 << 20);
    let (theirs_read, ours_write) = duplex(1 << 20);
    (LineTransport::new(ours_read, ours_write, max), Upstream { write: theirs_write, read: theirs_read })
}

struct Upstream {
    write: tokio::io::DuplexStream,
    read: tokio::io::DuplexStream,
}

impl Upstream {
    async fn say(&mut self, text: &str) {
        self.write.write_all(text.as_bytes()).await.unwrap();
    }

    async fn heard(&mut self) -> serde_json::Value {
        let mut bytes = Vec::new();
        loop {
            let byte = self.read.read_u8().await.unwrap();
            if byte == b'\n' {
                return serde_json::from_slice(&bytes).unwrap();
            }
            bytes.push(byte);
        }
    }
}

#[tokio::test]
async fn tool_results_take_the_fast_path_and_match_the_general_decoder() {
    let (mut transport, mut upstream) = pair(1 << 16);
    transport.send(call_request(7)).await.unwrap();
    assert_eq!(upstream.heard().await["method"], "tools/call");
    let line = json!({"jsonrpc": "2.0", "id": 7, "result": {
        "content": [{"type": "text", "text": "hi"}], "structuredContent": {"a": 1}, "isError": false
    }});
    let general: ServerJsonRpcMessage = serde_json::from_value(line.clone()).unwrap();
    let other = json!({"jsonrpc": "2.0", "id": 70, "result": {"content": []}});
    assert!(transport.decode_tool_result(other.to_string().as_bytes()).is_none(), "70 is no tools/call");
    let fast = transport.decode_tool_result(line.to_string().as_bytes()).expect("fast path");
    assert_eq!(serde_json::to_value(&fast).unwrap(), serde_json::to_value(&general).unwrap());
    assert!(transport.tool_calls.is_empty(), "answered ids are forgotten");

    // Over the wire, with noise, a BOM, CRLF and an oversized line in between.
    transport.tool_calls.insert(RequestId::Number(8));
    upstream.say("not json at all\n\u{feff}").await;
    upstream
        .say(&format!("{}\r\n", json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})))
        .await;
    let big =
        json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "x".repeat(70_000)}});
    upstream.say(&format!("{big}\n")).await;
    upstream
        .say(&format!("{}\n", json!({"jsonrpc": "2.0", "id": 8, "error": {"code": -1, "message": "no"}})))
        .await;
    upstream.say(&format!("{}\n", json!({"jsonrpc": "2.0", "id": 9, "result": {}}))).await;
    let mut received = Vec::new();
    for _ in 0..3 {
        received.push(serde_json::to_value(transport.receive().await.unwrap()).unwrap());
    }
    assert_eq!(received[0]["method"], "notifications/tools/list_changed");
    assert_eq!(received[1]["error"]["message"], "no");
    assert_eq!(received[2], json!({"jsonrpc": "2.0", "id": 9, "result": {}}));
    assert!(transport.tool_calls.is_empty(), "an error answer forgets the id too");
}

/// An answer over the limit is dropped unread, and the request it answered gets an
/// error naming the limit at once; a server request over it gets an error answer.
#[tokio::test]
async fn an_oversized_answer_fails_its_request_at_once() {
    let (transport, mut upstream) = pair(1 << 16);
    let mut transport = transport.for_upstream(Arc::from("big"));
    transport.send(call_request(4)).await.unwrap();
    upstream.heard().await;
    let huge = "x".repeat(70_000);
    upstream
        .say(&format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "id": 4, "result": {"content": [{"type": "text", "text": huge}]}})
        ))
        .await;
    let answer = serde_json::to_value(transport.receive().await.unwrap()).unwrap();
    assert_eq!(answer["id"], 4);
    assert_eq!(answer["result"]["isError"], true, "a tool call gets a tool error: {answer}");
    let message = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        message.contains("upstream `big`") && message.contains("`bridge.maxMessageBytes` (65536 bytes)"),
        "{message}"
    );
    assert!(transport.in_flight.is_empty() && transport.tool_calls.is_empty());

    upstream
        .say(&format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "id": 0, "method": "sampling/createMessage", "params": {"x": huge}})
        ))
        .await;
    upstream.say(&format!("{}\n", json!({"jsonrpc": "2.0", "id": 5, "result": {}}))).await;
    let next = serde_json::to_value(transport.receive().await.unwrap()).unwrap();
    assert_eq!(next["id"], 5, "reading goes on");
    let reply = upstream.heard().await;
    assert_eq!(reply["id"], 0);
    assert_eq!(reply["error"]["code"], -32600);
}

/// These tests send nothing through rmcp that the engine would cancel.
struct NoRmcp;

impl UpstreamCanceller for NoRmcp {
    fn cancel_upstream(&self, _id: RequestId, _reason: &str) {}
}

/// Bring a lane's session up, as `Connection` does, with request timeout `timeout`:
/// returns its progress routes, its `broken` token and the tap queue's receiver.
fn attach(
    lane: &Arc<Lane>,
    timeout: std::time::Duration,
) -> (Arc<ProgressRoutes>, CancellationToken, TapReceiver) {
    let routes = Arc::new(ProgressRoutes::default());
    let (tapped, forwarder) = tap::queue();
    let broken = CancellationToken::new();
    lane.attach(
        InFlightContext {
            name: "up".into(),
            routes: routes.clone(),
            tapped,
            timeout,
            broken: broken.clone(),
        },
        Box::new(NoRmcp),
    );
    (routes, broken, forwarder)
}

/// Send `call` on the lane with a oneshot sink, as a caller on a task does.
fn send_waited(
    lane: &Arc<Lane>,
    call: &ToolCall,
) -> (LaneTicket, tokio::sync::oneshot::Receiver<Result<ToolAnswer, UpstreamError>>) {
    let ticket = lane.ticket().expect("an open lane");
    let (sink, outcome) = tokio::sync::oneshot::channel();
    ticket.send_owned(call, None, None, None, Box::new(sink));
    (ticket, outcome)
}

/// The JSON text of a tool call's answer.
fn answer_json(answer: &ToolAnswer) -> String {
    match answer {
        ToolAnswer::Raw(raw) => String::from_utf8_lossy(raw.json()).into_owned(),
        ToolAnswer::Decoded(result) => serde_json::to_string(result).unwrap(),
    }
}

/// When the dropped line's request cannot be told, every request in flight (through
/// rmcp and on the lane) gets the error, and the transport ends.
#[tokio::test]
async fn an_oversized_line_without_an_id_fails_every_request_and_ends() {
    let (transport, mut upstream) = pair(1 << 16);
    let mut transport = transport.for_upstream(Arc::from("big"));
    let lane = transport.lane();
    transport.send(call_request(1)).await.unwrap();
    let ping = ClientJsonRpcMessage::request(
        ClientRequest::PingRequest(rmcp::model::PingRequest::default()),
        RequestId::Number(2),
    );
    transport.send(ping).await.unwrap();
    let _session = attach(&lane, std::time::Duration::from_secs(60));
    let echo = ToolCall { name: "echo".to_owned(), arguments: None, meta: None };
    let (_ticket, call) = send_waited(&lane, &echo);
    upstream.say(&format!("{}\n", "x".repeat(70_000))).await;
    let mut failed = Vec::new();
    for _ in 0..2 {
        let message = serde_json::to_value(transport.receive().await.unwrap()).unwrap();
        // The tool call gets a tool error, the ping a JSON-RPC error.
        let text = match message["id"].as_i64() {
            Some(1) => &message["result"]["content"][0]["text"],
            _ => &message["error"]["message"],
        };
        assert!(text.as_str().unwrap().contains("`bridge.maxMessageBytes`"), "{message}");
        failed.push(message["id"].as_i64().unwrap());
    }
    failed.sort();
    assert_eq!(failed, [1, 2]);
    assert!(transport.receive().await.is_none(), "the transport ends");
    let answer = call.await.expect("the lane call got the error").expect("a tool error result");
    assert!(answer_json(&answer).contains("`bridge.maxMessageBytes`"));
}

#[tokio::test]
async fn an_undecodable_request_is_answered_and_reading_goes_on() {
    let (mut transport, mut upstream) = pair(1 << 16);
    upstream.say("{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"sampling/createMessage\",\"params\":7}\n").await;
    upstream
        .say(
            "{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"}\n",
        )
        .await;
    // An unknown notification reaches rmcp (as a custom one), which ignores it.
    let next = serde_json::to_value(transport.receive().await.unwrap()).unwrap();
    assert_eq!(next["method"], "ping");
    let next = serde_json::to_value(transport.receive().await.unwrap()).unwrap();
    assert_eq!(next, json!({"jsonrpc": "2.0", "id": 4, "method": "ping"}));
    let reply = upstream.heard().await;
    assert_eq!((reply["id"].clone(), reply["error"]["code"].clone()), (json!(3), json!(-32600)), "{reply}");
    drop(upstream);
    assert!(transport.receive().await.is_none(), "end of input ends the transport");
}

#[tokio::test]
async fn answers_to_lane_calls_go_to_their_caller_and_the_rest_to_rmcp() {
    let (mut transport, mut upstream) = pair(1 << 16);
    let lane = transport.lane();
    let (_routes, broken, _forwarder) = attach(&lane, std::time::Duration::from_secs(60));
    let echo = ToolCall { name: "echo".to_owned(), arguments: None, meta: None };
    let (ticket, call) = send_waited(&lane, &echo);
    assert_eq!(ticket.id(), in_flight::FIRST_ID);
    let request = upstream.heard().await;
    assert_eq!(
        (request["id"].clone(), request["method"].clone(), request["params"]["name"].clone()),
        (json!(in_flight::FIRST_ID), json!("tools/call"), json!("echo"))
    );
    // A request from the upstream with the same id, and an answer to someone else,
    // are rmcp's; the answer to the call is not.
    let ours = json!({"jsonrpc": "2.0", "id": in_flight::FIRST_ID, "result": {"content": []}});
    upstream
        .say(&format!("{}\n", json!({"jsonrpc": "2.0", "id": in_flight::FIRST_ID, "method": "ping"})))
        .await;
    upstream.say(&format!("{}\n{ours}\n", json!({"jsonrpc": "2.0", "id": 3, "result": {}}))).await;
    upstream.say(&format!("{}\n", json!({"jsonrpc": "2.0", "id": 4, "result": {}}))).await;
    let first = serde_json::to_value(transport.receive().await.unwrap()).unwrap();
    assert_eq!(first["method"], "ping");
    assert_eq!(serde_json::to_value(transport.receive().await.unwrap()).unwrap()["id"], 3);
    assert_eq!(serde_json::to_value(transport.receive().await.unwrap()).unwrap()["id"], 4);
    let answer = call.await.unwrap().expect("the answer");
    assert!(matches!(answer, ToolAnswer::Raw(_)), "relayed as written");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&answer_json(&answer)).unwrap(), ours["result"]);

    // A call given up on is forgotten: its late answer goes to rmcp.
    let (given_up, _outcome) = send_waited(&lane, &echo);
    upstream.heard().await;
    let late = given_up.id();
    given_up.forget();
    upstream.say(&format!("{}\n", json!({"jsonrpc": "2.0", "id": late, "result": {}}))).await;
    assert_eq!(serde_json::to_value(transport.receive().await.unwrap()).unwrap()["id"], late);

    // The end of the session fails the calls still waiting, and refuses new ones.
    let (_waiting, outcome) = send_waited(&lane, &echo);
    upstream.heard().await;
    drop(upstream);
    assert!(transport.receive().await.is_none());
    let outcome = outcome.await.expect("an outcome");
    assert!(
        matches!(outcome, Err(UpstreamError::NotConnected { .. })),
        "a waiting call learns the session ended"
    );
    assert!(broken.is_cancelled());
    assert!(lane.ticket().is_none(), "a closed lane takes no calls");
}

/// Records what a call without a waiting task ends with.
struct Capture(tokio::sync::mpsc::UnboundedSender<Result<ToolAnswer, UpstreamError>>);

impl AnswerSink for Capture {
    fn deliver(self: Box<Self>, outcome: Result<ToolAnswer, UpstreamError>) {
        let _ = self.0.send(outcome);
    }
}

#[tokio::test]
async fn calls_without_a_waiting_task_end_once_answered_timed_out_cancelled_or_closed() {
    let (mut transport, mut upstream) = pair(1 << 16);
    let lane = transport.lane();
    assert!(lane.ticket().is_none(), "no direct calls before the session is up");
    let routes = Arc::new(ProgressRoutes::default());
    let (tapped, _forwarder) = tap::queue();
    let broken = tokio_util::sync::CancellationToken::new();
    lane.attach(
        InFlightContext {
            name: "up".into(),
            routes: routes.clone(),
            tapped,
            timeout: std::time::Duration::from_millis(200),
            broken: broken.clone(),
        },
        Box::new(NoRmcp),
    );
    let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    let sink = || Box::new(Capture(tx.clone()));
    let no_params = || ToolCallRef { name: "tool".into(), arguments: None, meta: None };
    // Reads the upstream's lines (claiming the lane's answers) until a call ends.
    macro_rules! next_outcome {
        () => {
            tokio::select! {
                outcome = outcomes.recv() => outcome.expect("an outcome"),
                message = transport.receive() => panic!("nothing for rmcp expected: {:?}", message.map(|m| serde_json::to_value(m).unwrap())),
            }
        };
    }

    // Answered: the result as the upstream wrote it; progress routed under the id.
    let ticket = lane.ticket().expect("a ticket");
    let params = r#"{"name":"tool","arguments":{"n":1},"_meta":{"progressToken":"p1","trace":"t"}}"#;
    let call: ToolCallRef<'_> = serde_json::from_str(params).unwrap();
    ticket.send("echo", &call, sink());
    let request = upstream.heard().await;
    let id = request["id"].as_i64().expect("a numeric id");
    assert_eq!(
        request["params"],
        json!({"name": "echo", "arguments": {"n": 1}, "_meta": {"progressToken": id, "trace": "t"}}),
        "{request}"
    );
    let upstream_token = ProgressToken(NumberOrString::Number(id));
    let client_token = ProgressToken(NumberOrString::String("p1".into()));
    assert_eq!(
        lane.requests().lane_progress(&upstream_token),
        Some(client_token),
        "progress is routed while the call runs"
    );
    upstream
        .say(&format!("{}\n", json!({"jsonrpc": "2.0", "id": id, "result": {"content": [], "x": 1}})))
        .await;
    match next_outcome!() {
        Ok(ToolAnswer::Raw(raw)) => assert_eq!(raw.json(), br#"{"content":[],"x":1}"#),
        _ => panic!("expected the raw result"),
    }
    assert_eq!(lane.requests().lane_progress(&upstream_token), None, "the route goes with the call");

    // Quiet for the timeout: the upstream is told, the caller gets the timeout.
    let ticket = lane.ticket().unwrap();
    ticket.send("sleep", &no_params(), sink());
    let id = upstream.heard().await["id"].clone();
    assert!(matches!(next_outcome!(), Err(UpstreamError::Timeout { .. })));
    let cancelled = upstream.heard().await;
    assert_eq!(cancelled["method"], "notifications/cancelled");
    assert_eq!(cancelled["params"], json!({"requestId": id, "reason": "request timeout"}));

    // Cancelled by the client: the upstream is told, nobody is answered, and a late
    // answer goes to rmcp.
    let ticket = lane.ticket().unwrap();
    ticket.send("sleep", &no_params(), sink());
    let id = upstream.heard().await["id"].clone();
    ticket.cancel();
    let cancelled = upstream.heard().await;
    assert_eq!(cancelled["params"], json!({"requestId": id, "reason": "cancelled by the client"}));
    upstream.say(&format!("{}\n", json!({"jsonrpc": "2.0", "id": id, "result": {"content": []}}))).await;
    assert_eq!(serde_json::to_value(transport.receive().await.unwrap()).unwrap()["id"], id);
    assert!(outcomes.try_recv().is_err(), "a cancelled call is not answered");

    // The session ends: the call fails as not connected, the session is marked broken.
    let ticket = lane.ticket().unwrap();
    ticket.send("sleep", &no_params(), sink());
    upstream.heard().await;
    drop(upstream);
    assert!(transport.receive().await.is_none());
    assert!(matches!(outcomes.recv().await, Some(Err(UpstreamError::NotConnected { .. }))));
    assert!(broken.is_cancelled());
    assert!(lane.ticket().is_none(), "a closed lane takes no calls");
}

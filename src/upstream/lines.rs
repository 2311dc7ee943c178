//! The transport to a stdio upstream: newline-delimited JSON-RPC over the child's pipes.
//!
//! It replaces rmcp's `AsyncRwTransport` for one reason: speed on the call path. rmcp
//! decodes every response as its untagged `ServerResult`, trying one result type after
//! another until one fits; for a `tools/call` result that is sixteen failed attempts,
//! each building and dropping a `serde_json::Error`, about a quarter of the bridge's
//! whole cost per proxied call. This transport remembers which of its outgoing requests
//! are `tools/call` and decodes their responses as `CallToolResult` directly. Every
//! other line, and a tool response that does not decode that way, goes through the
//! general decoder, so what reaches rmcp is what it would have decoded itself.
//!
//! It also carries the session's direct lane (`lane.rs`): an answer to a call sent on
//! the lane is handed to its caller before any decoding for rmcp.
//!
//! Lines longer than `maxMessageBytes` are dropped without being held in memory, and
//! lines that are not JSON-RPC are skipped; both are logged (the session's span names
//! the upstream). A request the upstream sends that cannot be decoded is answered with
//! "invalid request", as rmcp does.

use std::{collections::HashSet, future::Future, sync::Arc};

use rmcp::{
    RoleClient,
    model::{
        CallToolResult, ClientRequest, ErrorData, JsonRpcMessage, JsonRpcResponse, JsonRpcVersion2_0,
        RequestId, ServerResult,
    },
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};
use serde::{Deserialize, de::IgnoredAny};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};

use super::{child_output::StdoutNoise, lane::Lane, listing::RawResults, outlet::Outlet};

/// Outstanding `tools/call` ids beyond this are forgotten (answers that never came);
/// forgetting one only sends its answer down the general decoder.
const MAX_TRACKED_CALLS: usize = 4096;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

pub struct LineTransport<R> {
    reader: BufReader<R>,
    /// Our side of the child's stdin, shared with the lane.
    outlet: Arc<Outlet>,
    /// The direct `tools/call` path of this session; see `lane.rs`.
    lane: Arc<Lane>,
    /// The line being read; kept across cancelled `receive` calls.
    line: Vec<u8>,
    /// The line under way is over the limit and being skipped.
    oversized: bool,
    max_bytes: usize,
    /// Ids of our `tools/call` requests that have not been answered. `send` and
    /// `receive` both take `&mut self`, so no lock is needed.
    tool_calls: HashSet<RequestId>,
    /// Whether a non-JSON line was already logged at `warn` (the rest go to `debug`).
    warned_noise: bool,
    /// Offered every line, to keep marked answers (`tools/list`, tasks) as written (`listing.rs`).
    raw_results: Option<Arc<RawResults>>,
    /// Told the first line that is not JSON (`child_output.rs`).
    noise: Option<Arc<StdoutNoise>>,
}

impl<R: AsyncRead + Unpin> LineTransport<R> {
    pub fn new(read: R, write: impl AsyncWrite + Send + 'static, max_bytes: usize) -> Self {
        let outlet = Arc::new(Outlet::new(write));
        Self {
            reader: BufReader::with_capacity(64 * 1024, read),
            lane: Arc::new(Lane::new(outlet.clone())),
            outlet,
            line: Vec::new(),
            oversized: false,
            max_bytes,
            tool_calls: HashSet::new(),
            warned_noise: false,
            raw_results: None,
            noise: None,
        }
    }

    /// Tell `noise` the first line that is not JSON.
    pub fn with_noise(mut self, noise: Arc<StdoutNoise>) -> Self {
        self.noise = Some(noise);
        self
    }

    /// Offer every incoming line to `raw_results`.
    pub fn with_raw_results(mut self, raw_results: Arc<RawResults>) -> Self {
        self.raw_results = Some(raw_results);
        self
    }

    /// The session's direct lane for `tools/call`.
    pub fn lane(&self) -> Arc<Lane> {
        self.lane.clone()
    }

    /// Reads up to the next newline. `None` at end of input or on a read error. Safe to
    /// cancel: a partial line stays in `self.line`.
    async fn next_line(&mut self) -> Option<()> {
        loop {
            let buffer = match self.reader.fill_buf().await {
                Ok([]) => return None,
                Ok(buffer) => buffer,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    tracing::warn!("reading the upstream's stdout failed: {error}");
                    return None;
                }
            };
            let (chunk, complete) = match buffer.iter().position(|&byte| byte == b'\n') {
                Some(end) => (&buffer[..end], true),
                None => (buffer, false),
            };
            if self.line.len() + chunk.len() > self.max_bytes {
                if !self.oversized {
                    tracing::error!(
                        max_bytes = self.max_bytes,
                        "a message from the upstream exceeded the maximum line length (`bridge.maxMessageBytes`); it is dropped"
                    );
                }
                self.oversized = true;
                self.line = Vec::new();
            } else if !self.oversized {
                self.line.extend_from_slice(chunk);
            }
            let used = chunk.len() + usize::from(complete);
            self.reader.consume(used);
            if complete {
                if std::mem::take(&mut self.oversized) {
                    continue;
                }
                return Some(());
            }
        }
    }

    /// Decodes one line; `Err` carries what to do about a line that is not a message.
    fn decode(&mut self, line: &[u8]) -> Result<RxJsonRpcMessage<RoleClient>, Undecodable> {
        if let Some(message) = self.decode_tool_result(line) {
            return Ok(message);
        }
        match serde_json::from_slice::<RxJsonRpcMessage<RoleClient>>(line) {
            Ok(message) => {
                if let JsonRpcMessage::Response(response) = &message {
                    self.tool_calls.remove(&response.id);
                } else if let JsonRpcMessage::Error(error) = &message
                    && let Some(id) = &error.id
                {
                    self.tool_calls.remove(id);
                }
                Ok(message)
            }
            Err(error) => Err(Undecodable::classify(line, error)),
        }
    }

    /// The fast path: a response to one of our `tools/call` requests.
    fn decode_tool_result(&mut self, line: &[u8]) -> Option<RxJsonRpcMessage<RoleClient>> {
        if self.tool_calls.is_empty() {
            return None;
        }
        tool_response(line, |id| self.tool_calls.remove(id))
    }

    fn log_noise(&mut self, error: &serde_json::Error) {
        if std::mem::replace(&mut self.warned_noise, true) {
            tracing::debug!("skipped an unparsable line from the upstream's stdout: {error}");
        } else {
            tracing::warn!(
                "skipped an unparsable line from the upstream's stdout (a server must print only JSON-RPC there; further ones are logged at debug level): {error}"
            );
        }
    }
}

/// `line` decoded as the response to a `tools/call` request whose id `is_call` claims,
/// its result read as `CallToolResult` directly rather than tried against every result
/// type; `None` for any other message, or a result that does not decode that way (the
/// general decoder then decides). Shared with the streamable HTTP client (`answers.rs`).
pub(super) fn tool_response(
    line: &[u8],
    is_call: impl FnOnce(&RequestId) -> bool,
) -> Option<RxJsonRpcMessage<RoleClient>> {
    #[derive(Deserialize)]
    struct ToolResponse {
        id: RequestId,
        result: CallToolResult,
    }
    let head: Head = serde_json::from_slice(line).ok()?;
    let id = head.id.filter(|_| head.method.is_none() && head.result.is_some())?;
    if !is_call(&id) {
        return None;
    }
    let response: ToolResponse = serde_json::from_slice(line).ok()?;
    Some(JsonRpcMessage::Response(JsonRpcResponse {
        jsonrpc: JsonRpcVersion2_0,
        id: response.id,
        result: ServerResult::from(response.result),
    }))
}

/// The envelope of a JSON-RPC line: what kind of message it is, and its id.
#[derive(Deserialize)]
struct Head {
    id: Option<RequestId>,
    method: Option<IgnoredAny>,
    result: Option<IgnoredAny>,
}

/// Why a line was not a message, and what that calls for.
enum Undecodable {
    /// Not JSON: skipped.
    Noise(serde_json::Error),
    /// JSON, but no message we know: a request (its id here) gets an error, anything
    /// else is skipped.
    Unknown { request_id: Option<RequestId>, error: serde_json::Error },
}

impl Undecodable {
    fn classify(line: &[u8], error: serde_json::Error) -> Self {
        use serde_json::error::Category;
        match error.classify() {
            Category::Syntax | Category::Eof => Undecodable::Noise(error),
            Category::Data | Category::Io => {
                // A notification (no id) is skipped; a request is answered.
                let request_id = serde_json::from_slice::<Head>(line)
                    .ok()
                    .filter(|head| head.method.is_some())
                    .and_then(|head| head.id);
                Undecodable::Unknown { request_id, error }
            }
        }
    }
}

impl<R> Transport<RoleClient> for LineTransport<R>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        if let JsonRpcMessage::Request(request) = &item
            && matches!(request.request, ClientRequest::CallToolRequest(_))
        {
            if self.tool_calls.len() >= MAX_TRACKED_CALLS {
                self.tool_calls.clear();
            }
            self.tool_calls.insert(request.id.clone());
        }
        // Encoded now, so messages are queued in the order rmcp sends them.
        let bytes = serde_json::to_vec(&item).map(|mut bytes| {
            bytes.push(b'\n');
            bytes
        });
        let send = bytes.map(|bytes| self.outlet.send_later(bytes));
        async move { send?.await }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        loop {
            if self.next_line().await.is_none() {
                self.lane.close();
                return None;
            }
            let line = std::mem::take(&mut self.line);
            let text = line.strip_prefix(UTF8_BOM).unwrap_or(&line);
            let text = text.strip_suffix(b"\r").unwrap_or(text).trim_ascii();
            if text.is_empty() || self.lane.claim(text) {
                self.line = reuse(line);
                continue;
            }
            if let Some(raw_results) = &self.raw_results {
                raw_results.offer(text);
            }
            let decoded = self.decode(text);
            if let (Err(Undecodable::Noise(_)), Some(noise)) = (&decoded, &self.noise) {
                noise.record(text);
            }
            self.line = reuse(line);
            match decoded {
                Ok(message) => return Some(message),
                Err(Undecodable::Noise(error)) => self.log_noise(&error),
                Err(Undecodable::Unknown { request_id: Some(id), error }) => {
                    tracing::debug!("the upstream sent a request the bridge cannot decode: {error}");
                    let reply = TxJsonRpcMessage::<RoleClient>::error(
                        ErrorData::invalid_request(format!("invalid request: {error}"), None),
                        Some(id),
                    );
                    if self.send(reply).await.is_err() {
                        return None;
                    }
                }
                Err(Undecodable::Unknown { request_id: None, error }) => {
                    tracing::debug!("skipped a message from the upstream that is not MCP: {error}");
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.lane.close();
        // The child's stdin closes once what is queued is written.
        self.outlet.close();
        Ok(())
    }
}

impl<R> Drop for LineTransport<R> {
    fn drop(&mut self) {
        // However the session ends, calls waiting on the lane must not wait forever.
        self.lane.close();
    }
}

/// An emptied line buffer, keeping its allocation unless a huge line made it large.
fn reuse(mut line: Vec<u8>) -> Vec<u8> {
    line.clear();
    if line.capacity() > 1024 * 1024 {
        line = Vec::new();
    }
    line
}

#[cfg(test)]
mod tests {
    use rmcp::model::{CallToolRequestParams, ClientJsonRpcMessage, ServerJsonRpcMessage};
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::{
        super::{
            ToolAnswer, UpstreamError, lane,
            relay::{ToolCall, ToolCallRef},
        },
        *,
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
        upstream.say(&format!("{}\n", "x".repeat(70_000))).await;
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

    #[tokio::test]
    async fn an_undecodable_request_is_answered_and_reading_goes_on() {
        let (mut transport, mut upstream) = pair(1 << 16);
        upstream
            .say("{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"sampling/createMessage\",\"params\":7}\n")
            .await;
        upstream.say("{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"}\n").await;
        // An unknown notification reaches rmcp (as a custom one), which ignores it.
        let next = serde_json::to_value(transport.receive().await.unwrap()).unwrap();
        assert_eq!(next["method"], "ping");
        let next = serde_json::to_value(transport.receive().await.unwrap()).unwrap();
        assert_eq!(next, json!({"jsonrpc": "2.0", "id": 4, "method": "ping"}));
        let reply = upstream.heard().await;
        assert_eq!(
            (reply["id"].clone(), reply["error"]["code"].clone()),
            (json!(3), json!(-32600)),
            "{reply}"
        );
        drop(upstream);
        assert!(transport.receive().await.is_none(), "end of input ends the transport");
    }

    #[tokio::test]
    async fn answers_to_lane_calls_go_to_their_caller_and_the_rest_to_rmcp() {
        let (mut transport, mut upstream) = pair(1 << 16);
        let lane = transport.lane();
        let mut call = lane.reserve().expect("an open lane");
        assert_eq!(call.id, lane::FIRST_ID);
        let echo = ToolCall { name: "echo".to_owned(), arguments: None, meta: None };
        lane.send(&call, &echo).await.unwrap();
        let request = upstream.heard().await;
        assert_eq!(
            (request["id"].clone(), request["method"].clone(), request["params"]["name"].clone()),
            (json!(lane::FIRST_ID), json!("tools/call"), json!("echo"))
        );
        // A request from the upstream with the same id, and an answer to someone else,
        // are rmcp's; the answer to the call is not.
        let ours = json!({"jsonrpc": "2.0", "id": lane::FIRST_ID, "result": {"content": []}});
        upstream
            .say(&format!("{}\n", json!({"jsonrpc": "2.0", "id": lane::FIRST_ID, "method": "ping"})))
            .await;
        upstream.say(&format!("{}\n{ours}\n", json!({"jsonrpc": "2.0", "id": 3, "result": {}}))).await;
        upstream.say(&format!("{}\n", json!({"jsonrpc": "2.0", "id": 4, "result": {}}))).await;
        let first = serde_json::to_value(transport.receive().await.unwrap()).unwrap();
        assert_eq!(first["method"], "ping");
        assert_eq!(serde_json::to_value(transport.receive().await.unwrap()).unwrap()["id"], 3);
        assert_eq!(serde_json::to_value(transport.receive().await.unwrap()).unwrap()["id"], 4);
        let answer = (&mut call.answer).await.unwrap();
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&answer.line).unwrap(), ours);
        let result = answer.result.expect("where the result is");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&answer.line[result]).unwrap(),
            ours["result"]
        );

        // A call given up on is forgotten: its late answer goes to rmcp.
        let given_up = lane.reserve().unwrap();
        let late = given_up.id;
        drop(given_up);
        upstream.say(&format!("{}\n", json!({"jsonrpc": "2.0", "id": late, "result": {}}))).await;
        assert_eq!(serde_json::to_value(transport.receive().await.unwrap()).unwrap()["id"], late);

        // The end of the session fails the calls still waiting, and refuses new ones.
        let mut waiting = lane.reserve().unwrap();
        drop(upstream);
        assert!(transport.receive().await.is_none());
        assert!((&mut waiting.answer).await.is_err(), "a waiting call learns the session ended");
        assert!(lane.reserve().is_none(), "a closed lane takes no calls");
    }

    /// Records what a call without a waiting task ends with.
    struct Capture(tokio::sync::mpsc::UnboundedSender<Result<ToolAnswer, UpstreamError>>);

    impl lane::AnswerSink for Capture {
        fn deliver(self: Box<Self>, outcome: Result<ToolAnswer, UpstreamError>) {
            let _ = self.0.send(outcome);
        }
    }

    #[tokio::test]
    async fn calls_without_a_waiting_task_end_once_answered_timed_out_cancelled_or_closed() {
        use super::super::{connection::ProgressRoutes, tap};
        let (mut transport, mut upstream) = pair(1 << 16);
        let lane = transport.lane();
        assert!(lane.ticket().is_none(), "no direct calls before the session is up");
        let routes = Arc::new(ProgressRoutes::default());
        let (tapped, _forwarder) = tap::queue();
        let broken = tokio_util::sync::CancellationToken::new();
        lane.attach(lane::Context {
            name: "up".into(),
            routes: routes.clone(),
            tapped,
            timeout: std::time::Duration::from_millis(200),
            broken: broken.clone(),
        });
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
        assert_eq!(routes.lock().await.len(), 1, "progress is routed while the call runs");
        upstream
            .say(&format!("{}\n", json!({"jsonrpc": "2.0", "id": id, "result": {"content": [], "x": 1}})))
            .await;
        match next_outcome!() {
            Ok(ToolAnswer::Raw(raw)) => assert_eq!(raw.json(), br#"{"content":[],"x":1}"#),
            _ => panic!("expected the raw result"),
        }
        assert!(routes.lock().await.is_empty(), "the route goes with the call");

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
}

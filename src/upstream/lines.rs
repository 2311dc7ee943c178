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
//! the upstream). A dropped line's first bytes say what it was (`oversize.rs`): the
//! request it answered gets an error naming the limit at once; a server request gets an
//! error answer; and when that cannot be told, every request in flight gets the error
//! and the transport ends, so the session restarts and nothing waits for an answer that
//! was dropped. A request the upstream sends that cannot be decoded is answered with
//! "invalid request", as rmcp does.

use std::{
    collections::{HashSet, VecDeque},
    future::Future,
    sync::Arc,
};

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

use super::{
    lane::Lane,
    outlet::Outlet,
    oversize::{self, Oversized},
};

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
    /// The first bytes of the line being skipped, to tell what it was.
    oversized_head: Vec<u8>,
    max_bytes: usize,
    /// The upstream's name, for the error of a dropped answer.
    name: Arc<str>,
    /// Ids of every request sent through rmcp that has not been answered, so a dropped
    /// line whose id cannot be read can fail them all.
    in_flight: HashSet<RequestId>,
    /// Lines made here (errors standing in for dropped answers), handled before the
    /// next line is read.
    stand_ins: VecDeque<Vec<u8>>,
    /// After the stand-ins, end the transport (a dropped line could not be told).
    ending: bool,
    /// Ids of our `tools/call` requests that have not been answered. `send` and
    /// `receive` both take `&mut self`, so no lock is needed.
    tool_calls: HashSet<RequestId>,
    /// Whether a non-JSON line was already logged at `warn` (the rest go to `debug`).
    warned_noise: bool,
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
            oversized_head: Vec::new(),
            max_bytes,
            name: Arc::from("upstream"),
            in_flight: HashSet::new(),
            stand_ins: VecDeque::new(),
            ending: false,
            tool_calls: HashSet::new(),
            warned_noise: false,
        }
    }

    /// Name the upstream in the errors this transport makes.
    pub fn for_upstream(mut self, name: Arc<str>) -> Self {
        self.name = name;
        self
    }

    /// The session's direct lane for `tools/call`.
    pub fn lane(&self) -> Arc<Lane> {
        self.lane.clone()
    }

    /// Reads up to the next newline: `Some(true)` for a line in `self.line`,
    /// `Some(false)` for a line over the limit (its start in `oversized_head`). `None` at
    /// end of input or on a read error. Safe to cancel: a partial line stays in
    /// `self.line`.
    async fn next_line(&mut self) -> Option<bool> {
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
                    let mut head = std::mem::take(&mut self.line);
                    head.truncate(oversize::HEAD_BYTES);
                    let room = oversize::HEAD_BYTES - head.len();
                    head.extend_from_slice(&chunk[..room.min(chunk.len())]);
                    head.shrink_to_fit();
                    self.oversized_head = head;
                }
                self.oversized = true;
                self.line = Vec::new();
            } else if !self.oversized {
                self.line.extend_from_slice(chunk);
            }
            let used = chunk.len() + usize::from(complete);
            self.reader.consume(used);
            if complete {
                return Some(!std::mem::take(&mut self.oversized));
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
                    self.in_flight.remove(&response.id);
                } else if let JsonRpcMessage::Error(error) = &message
                    && let Some(id) = &error.id
                {
                    self.tool_calls.remove(id);
                    self.in_flight.remove(id);
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
        let (tool_calls, in_flight) = (&mut self.tool_calls, &mut self.in_flight);
        tool_response(line, |id| {
            in_flight.remove(id);
            tool_calls.remove(id)
        })
    }

    /// A line over the limit was dropped: make the errors that stand in for what it
    /// answered, or the answer to the server's request it was. Returns that answer.
    fn dropped(&mut self) -> Option<TxJsonRpcMessage<RoleClient>> {
        let head = std::mem::take(&mut self.oversized_head);
        let message = format!(
            "upstream `{}` sent a message larger than `bridge.maxMessageBytes` ({} bytes), which was dropped; hint: raise `bridge.maxMessageBytes` in the config",
            self.name, self.max_bytes
        );
        match oversize::classify(&head) {
            Oversized::Answer(id) => self.stand_ins.push_back(oversize::error_line(id, &message)),
            Oversized::ServerMessage(Some(id)) => {
                return Some(TxJsonRpcMessage::<RoleClient>::error(
                    ErrorData::invalid_request(
                        format!("the message is larger than the client's limit of {} bytes", self.max_bytes),
                        None,
                    ),
                    Some(id),
                ));
            }
            Oversized::ServerMessage(None) => {}
            Oversized::Unknown => {
                tracing::error!(
                    "the dropped message's request could not be told; every request in flight fails and the session restarts"
                );
                let lane_ids = self.lane.waiting_ids().into_iter().map(RequestId::Number);
                let ids: Vec<RequestId> = lane_ids.chain(self.in_flight.iter().cloned()).collect();
                self.stand_ins.extend(ids.into_iter().map(|id| oversize::error_line(id, &message)));
                self.ending = true;
            }
        }
        None
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
        if let JsonRpcMessage::Request(request) = &item {
            if self.in_flight.len() >= MAX_TRACKED_CALLS {
                self.in_flight.clear();
            }
            self.in_flight.insert(request.id.clone());
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
            // Stand-in lines are handled like read ones; they never hold a partial line.
            let (line, read) = match self.stand_ins.pop_front() {
                Some(line) => (line, false),
                None if self.ending => {
                    self.lane.close();
                    return None;
                }
                None => match self.next_line().await {
                    None => {
                        self.lane.close();
                        return None;
                    }
                    Some(false) => {
                        if let Some(reply) = self.dropped()
                            && self.send(reply).await.is_err()
                        {
                            return None;
                        }
                        continue;
                    }
                    Some(true) => (std::mem::take(&mut self.line), true),
                },
            };
            let text = line.strip_prefix(UTF8_BOM).unwrap_or(&line);
            let text = text.strip_suffix(b"\r").unwrap_or(text).trim_ascii();
            if text.is_empty() || self.lane.claim(text) {
                if read {
                    self.line = reuse(line);
                }
                continue;
            }
            let decoded = self.decode(text);
            if read {
                self.line = reuse(line);
            }
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
        let big = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "x".repeat(70_000)}});
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
        let message = answer["error"]["message"].as_str().unwrap();
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
        let mut call = lane.reserve().expect("a lane call");
        upstream.say(&format!("{}\n", "x".repeat(70_000))).await;
        let mut failed = Vec::new();
        for _ in 0..2 {
            let message = serde_json::to_value(transport.receive().await.unwrap()).unwrap();
            assert!(
                message["error"]["message"].as_str().unwrap().contains("`bridge.maxMessageBytes`"),
                "{message}"
            );
            failed.push(message["id"].as_i64().unwrap());
        }
        failed.sort();
        assert_eq!(failed, [1, 2]);
        assert!(transport.receive().await.is_none(), "the transport ends");
        let answer = (&mut call.answer).await.expect("the lane call got the error");
        assert!(answer.result.is_none());
        assert!(String::from_utf8_lossy(&answer.line).contains("`bridge.maxMessageBytes`"));
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

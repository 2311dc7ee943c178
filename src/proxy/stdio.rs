//! The downstream stdio transport: newline-delimited JSON-RPC on stdin/stdout, with
//! the error handling a client is owed.
//!
//! rmcp's own stdio transport drops unparsable lines silently and answers malformed
//! requests without their id. This one answers every bad line as JSON-RPC 2.0 says:
//! `-32700` (parse error, `id: null`), `-32600` (invalid request; also a line over
//! `maxMessageBytes`, and a request whose id is still in flight), `-32602` (a known
//! method with parameters of the wrong shape, with the request's id). rmcp then sees
//! only well-formed messages.
//!
//! Once the session is initialized, a client's `tools/call` does not go to rmcp at all:
//! `calls.rs` serves it from here, through the same routing, to keep rmcp's session task
//! off the hot path.
//!
//! It also keeps the session's lifecycle in one piece: notifications and responses that
//! arrive before `initialize` are dropped (rmcp would end the session on them), and a
//! second `initialize` is refused instead of renegotiating a running session.
//!
//! I/O: when stdin and stdout are pipes or sockets (as a client spawns us), they are
//! switched to non-blocking mode and driven by the async runtime itself, so a message
//! costs no extra thread wake-up on its way in or out. Anything else (a terminal, a
//! file) goes through tokio's blocking stdin/stdout. Outgoing messages are serialized
//! when rmcp hands them over, so they leave in the order rmcp sends them; the writer
//! task batches whatever is queued into one write.

use std::{
    collections::hash_map::Entry,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rmcp::{
    model::{
        ClientJsonRpcMessage, ClientNotification, ClientRequest, JsonRpcMessage, RequestId,
        ServerJsonRpcMessage, ServerResult,
    },
    service::{RoleServer, RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    sync::{mpsc, oneshot},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

mod calls;
mod pipes;
mod tasks;

pub use pipes::RestoreOnDrop;

use super::Bridge;
use crate::{upstream::LaneTicket, wire::number_or_string};

/// Messages queued for stdout before senders wait.
const OUTBOX_CAPACITY: usize = 1024;
/// Read buffer for stdin, and the usual capacity of the stdout batch.
const READ_BUFFER: usize = 64 * 1024;
/// A stdout batch is written once it reaches this size, even with more queued.
const BATCH_LIMIT: usize = 1024 * 1024;
/// How long output must be quiet before freed memory is returned to the system.
const QUIET: Duration = Duration::from_millis(500);
/// How long closing the transport waits for queued output to be written.
const FLUSH_LIMIT: Duration = Duration::from_secs(1);

enum Outgoing {
    Line(Vec<u8>),
    Flush(oneshot::Sender<()>),
}

/// Who is serving a client request that has not been answered yet.
enum Pending {
    /// rmcp's session.
    Rmcp,
    /// A task of `calls.rs`, stopped by this token.
    Task(CancellationToken),
    /// An upstream's direct lane; no task waits for it (`calls.rs`).
    Lane(LaneTicket),
}

/// Shared by the transport (rmcp's side) and the stdin reader.
struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    /// Client requests that have not been answered yet, and who serves them.
    in_flight: Mutex<foldhash::HashMap<RequestId, Pending>>,
    /// Whether an `initialize` request has been passed to rmcp.
    initialized: AtomicBool,
    max_bytes: usize,
    /// Serves `tools/call` without rmcp's session task (`calls.rs`); `None` in tests of
    /// the transport alone.
    bridge: Option<Arc<Bridge>>,
}

impl Outbox {
    fn in_flight(&self) -> std::sync::MutexGuard<'_, foldhash::HashMap<RequestId, Pending>> {
        self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Record `id` as in flight, served by rmcp; `false` when it already is. The
    /// request already in flight keeps its entry.
    fn enter(&self, id: &RequestId) -> bool {
        match self.in_flight().entry(id.clone()) {
            Entry::Vacant(vacant) => {
                vacant.insert(Pending::Rmcp);
                true
            }
            Entry::Occupied(_) => false,
        }
    }

    /// Queue `line` for stdout from code that cannot wait: when the queue is full, a
    /// task of its own waits for room.
    fn queue(&self, line: Vec<u8>) {
        if let Err(mpsc::error::TrySendError::Full(item)) = self.tx.try_send(Outgoing::Line(line))
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let tx = self.tx.clone();
            runtime.spawn(async move {
                // A closed outbox means the client is gone; nobody is left to answer.
                let _ = tx.send(item).await;
            });
        }
    }

    /// The line for `item`, its id no longer in flight; an answer over `maxMessageBytes`
    /// becomes an error that says so.
    fn encode(&self, item: &ServerJsonRpcMessage) -> Option<Vec<u8>> {
        let id = match item {
            JsonRpcMessage::Response(response) => Some(&response.id),
            JsonRpcMessage::Error(error) => error.id.as_ref(),
            _ => None,
        };
        match serde_json::to_vec(item) {
            Ok(line) => self.finish(id, line),
            Err(error) => {
                tracing::error!("cannot encode a message for the client: {error}");
                if let Some(id) = id {
                    self.in_flight().remove(id);
                }
                None
            }
        }
    }

    /// The answer to request `id` whose result is the JSON text `result`, as [`Outbox::encode`]
    /// would write it for a decoded result.
    fn encode_result(&self, id: RequestId, result: &[u8]) -> Option<Vec<u8>> {
        const HEAD: &[u8] = br#"{"jsonrpc":"2.0","id":"#;
        let mut line = Vec::with_capacity(HEAD.len() + 32 + result.len());
        line.extend_from_slice(HEAD);
        // A number or a string: cannot fail.
        serde_json::to_writer(&mut line, &id).ok()?;
        line.extend_from_slice(br#","result":"#);
        line.extend_from_slice(result);
        line.push(b'}');
        self.finish(Some(&id), line)
    }

    /// The encoded `line`, with request `id` (if it answers one) no longer in flight.
    fn finish(&self, id: Option<&RequestId>, mut line: Vec<u8>) -> Option<Vec<u8>> {
        if let Some(id) = id {
            self.in_flight().remove(id);
        }
        if line.len() > self.max_bytes {
            tracing::warn!(bytes = line.len(), "a message for the client is over `maxMessageBytes`");
            let id = id.cloned()?;
            line = json!({"jsonrpc": "2.0", "id": id, "error": {
                "code": -32603,
                "message": format!("the result is larger than the {} byte limit (`bridge.maxMessageBytes`)", self.max_bytes),
            }})
            .to_string()
            .into_bytes();
        }
        line.push(b'\n');
        Some(line)
    }
}

/// What the reader does with one line from the client.
#[allow(
    clippy::large_enum_variant,
    reason = "returned and moved straight into the channel; boxing costs an allocation per message"
)]
enum Verdict {
    /// A well-formed message for rmcp.
    Pass(ClientJsonRpcMessage),
    /// Answered by the transport itself: this error reply goes to stdout.
    Reply(Vec<u8>),
    /// Nothing to answer (a notification or response that cannot be used).
    Drop,
    /// A `tools/call` served here (`calls.rs`).
    Call(calls::Call),
    /// A task request served here (`tasks.rs`).
    TaskRequest(tasks::TaskRequest),
}

/// An error reply to a client message rmcp will not see.
fn error_reply(id: Value, code: i32, message: String) -> Verdict {
    let reply = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    tracing::debug!(code, "rejected a client message: {message}");
    let mut line = reply.to_string().into_bytes();
    line.push(b'\n');
    Verdict::Reply(line)
}

/// The transport rmcp serves the client over.
pub struct StdioTransport {
    incoming: mpsc::Receiver<ClientJsonRpcMessage>,
    outbox: Arc<Outbox>,
}

/// Start reading stdin and writing stdout. `stdin_closed` fires when the client closes
/// stdin (or it fails), so the caller can shut down without waiting for rmcp. `bridge`
/// serves `tools/call` directly once the session is initialized. Must be called inside
/// the runtime.
pub fn stdio(
    max_bytes: usize,
    stdin_closed: CancellationToken,
    bridge: Option<Arc<Bridge>>,
) -> StdioTransport {
    let (out_tx, out_rx) = mpsc::channel(OUTBOX_CAPACITY);
    let outbox = Arc::new(Outbox {
        tx: out_tx,
        in_flight: Mutex::new(foldhash::HashMap::default()),
        initialized: AtomicBool::new(false),
        max_bytes,
        bridge,
    });
    let (in_tx, incoming) = mpsc::channel(64);
    let reader_outbox = outbox.clone();
    let input = pipes::stdin();
    tokio::spawn(async move {
        read_stdin(input, &reader_outbox, &in_tx).await;
        stdin_closed.cancel();
    });
    tokio::spawn(write_stdout(pipes::stdout(), out_rx));
    StdioTransport { incoming, outbox }
}

/// Read newline-delimited messages until EOF, never holding more than `max_bytes` of
/// one line in memory.
async fn read_stdin(
    input: impl AsyncRead + Unpin,
    outbox: &Arc<Outbox>,
    incoming: &mpsc::Sender<ClientJsonRpcMessage>,
) {
    let mut input = BufReader::with_capacity(READ_BUFFER, input);
    let mut line = Vec::new();
    let mut oversized = false;
    loop {
        let buffer = match input.fill_buf().await {
            Ok([]) => break,
            Ok(buffer) => buffer,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => {
                tracing::warn!("reading stdin failed: {error}");
                break;
            }
        };
        let (chunk, complete) = match buffer.iter().position(|&byte| byte == b'\n') {
            Some(end) => (&buffer[..end], true),
            None => (buffer, false),
        };
        if line.len() + chunk.len() > outbox.max_bytes {
            oversized = true;
            line.clear();
        } else if !oversized {
            line.extend_from_slice(chunk);
        }
        let used = chunk.len() + usize::from(complete);
        input.consume(used);
        if complete {
            let verdict = if oversized {
                oversized = false;
                let message = format!(
                    "message larger than the {} byte limit (`bridge.maxMessageBytes`)",
                    outbox.max_bytes
                );
                error_reply(Value::Null, -32600, message)
            } else {
                parse_line(&line, outbox)
            };
            line.clear();
            if !deliver(verdict, outbox, incoming).await {
                return;
            }
        }
    }
    if !line.is_empty() && !oversized {
        deliver(parse_line(&line, outbox), outbox, incoming).await;
    }
}

/// Hand a parsed line on; `false` once the session is gone.
async fn deliver(
    verdict: Verdict,
    outbox: &Arc<Outbox>,
    incoming: &mpsc::Sender<ClientJsonRpcMessage>,
) -> bool {
    match verdict {
        Verdict::Pass(message) => incoming.send(message).await.is_ok(),
        Verdict::Reply(line) => outbox.tx.send(Outgoing::Line(line)).await.is_ok(),
        Verdict::Drop => true,
        Verdict::Call(call) => {
            call.spawn(outbox.clone());
            true
        }
        Verdict::TaskRequest(request) => {
            request.spawn(outbox.clone());
            true
        }
    }
}

/// Parse one line and decide what becomes of it: passed to rmcp, answered with an
/// error here, or dropped.
fn parse_line(line: &[u8], outbox: &Arc<Outbox>) -> Verdict {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Verdict::Drop;
    }
    if let Some(bridge) = &outbox.bridge
        && outbox.initialized.load(Ordering::Acquire)
        && let Some((id, params)) = calls::decode(line)
        && let Some(verdict) = calls::serve(outbox, bridge, id, params)
    {
        return verdict;
    }
    if let Some(bridge) = &outbox.bridge
        && outbox.initialized.load(Ordering::Acquire)
        && bridge.aggregation.tools
        && let Some((id, method, params)) = tasks::decode(line)
        && let Some(verdict) = tasks::serve(outbox, bridge, id, method, params)
    {
        return verdict;
    }
    match serde_json::from_slice::<ClientJsonRpcMessage>(line) {
        Ok(JsonRpcMessage::Request(request)) => {
            let id = || serde_json::to_value(&request.id).unwrap_or(Value::Null);
            if let ClientRequest::CustomRequest(custom) = &request.request
                && let Some(problem) = standard_params_problem(&custom.method, custom.params.as_ref())
            {
                // A standard method whose params did not fit: rmcp would call it unknown.
                return error_reply(
                    id(),
                    -32602,
                    format!("invalid params for `{}`: {problem}", custom.method),
                );
            }
            let initialize = matches!(request.request, ClientRequest::InitializeRequest(_));
            if initialize && outbox.initialized.load(Ordering::Acquire) {
                return error_reply(id(), -32600, "the session is already initialized".to_owned());
            }
            if !outbox.enter(&request.id) {
                let message = format!("request id `{}` is already used by a request in flight", request.id);
                return error_reply(id(), -32600, message);
            }
            // Only an `initialize` that goes on to rmcp starts the session: one refused
            // for its id must leave the next one free to (this reader is the only writer).
            if initialize {
                outbox.initialized.store(true, Ordering::Release);
            }
            Verdict::Pass(JsonRpcMessage::Request(request))
        }
        Ok(_) if !outbox.initialized.load(Ordering::Acquire) => {
            // rmcp ends a session whose first message is not a request; nothing before
            // `initialize` can refer to anything, so these are dropped.
            tracing::debug!("dropped a notification or response sent before `initialize`");
            Verdict::Drop
        }
        Ok(JsonRpcMessage::Notification(notification)) => {
            if let ClientNotification::CancelledNotification(cancelled) = &notification.notification
                && let Some(id) = &cancelled.params.request_id
            {
                // A cancelled request gets no response, so its id is free again.
                let pending = outbox.in_flight().remove(id);
                // Served here, not by rmcp: cancel it here.
                match pending {
                    Some(Pending::Task(call)) => {
                        call.cancel();
                        return Verdict::Drop;
                    }
                    Some(Pending::Lane(ticket)) => {
                        ticket.cancel();
                        return Verdict::Drop;
                    }
                    Some(Pending::Rmcp) | None => {}
                }
            }
            Verdict::Pass(JsonRpcMessage::Notification(notification))
        }
        Ok(message) => Verdict::Pass(message),
        Err(error) => reject(line, &error),
    }
}

/// For a standard MCP method, why `params` do not fit it (rmcp then decodes the request
/// as a custom one). `None` for methods rmcp does not know.
fn standard_params_problem(method: &str, params: Option<&Value>) -> Option<String> {
    fn check<T: serde::de::DeserializeOwned>(params: Option<&Value>) -> Option<String> {
        let params = params.cloned().unwrap_or(Value::Object(Default::default()));
        serde_json::from_value::<T>(params).err().map(|error| error.to_string())
    }
    use rmcp::model::*;
    match method {
        "initialize" => check::<InitializeRequestParams>(params),
        "tools/call" => check::<CallToolRequestParams>(params),
        "prompts/get" => check::<GetPromptRequestParams>(params),
        "resources/read" => check::<ReadResourceRequestParams>(params),
        "resources/subscribe" => check::<SubscribeRequestParams>(params),
        "resources/unsubscribe" => check::<UnsubscribeRequestParams>(params),
        "completion/complete" => check::<CompleteRequestParams>(params),
        #[allow(deprecated)]
        "logging/setLevel" => check::<SetLevelRequestParams>(params),
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
            check::<Option<PaginatedRequestParams>>(params)
        }
        "ping" => Some("`ping` takes no params".to_owned()),
        _ => None,
    }
    .or_else(|| {
        matches!(method, "tools/call" | "prompts/get" | "resources/read" | "initialize")
            .then(|| "params do not match the method".to_owned())
    })
}

/// Work out why `line` is not a valid client message and how to answer it.
fn reject(line: &[u8], error: &serde_json::Error) -> Verdict {
    let value = match serde_json::from_slice::<Value>(line) {
        Ok(value) => value,
        Err(parse_error) => return error_reply(Value::Null, -32700, format!("parse error: {parse_error}")),
    };
    let Value::Object(object) = &value else {
        let message = if value.is_array() {
            "batch requests are not supported".to_owned()
        } else {
            "a JSON-RPC message must be an object".to_owned()
        };
        return error_reply(Value::Null, -32600, message);
    };
    let raw_id = object.get("id");
    let id = raw_id.filter(|id| id.is_string() || is_integral(id)).cloned();
    let method = object.get("method").and_then(Value::as_str);
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return error_reply(id.unwrap_or(Value::Null), -32600, "`jsonrpc` must be \"2.0\"".to_owned());
    }
    if let Some(unusable) = raw_id.filter(|id| id.is_number() && !is_integral(id)) {
        // An id that cannot be a request id is answered with `null`, as JSON-RPC asks
        // when the id cannot be told.
        let message = format!(
            "request id {unusable} is not supported: use a string or an integer between -2^63 and 2^63-1"
        );
        return error_reply(Value::Null, -32600, message);
    }
    match (method, id) {
        (Some(method), Some(id)) => {
            error_reply(id, -32602, format!("invalid params for `{method}`: {error}"))
        }
        (Some(method), None) if !object.contains_key("id") => {
            tracing::warn!("dropped notification `{method}` with invalid params: {error}");
            Verdict::Drop
        }
        (None, Some(_)) if object.contains_key("result") || object.contains_key("error") => {
            tracing::warn!("dropped a malformed response from the client: {error}");
            Verdict::Drop
        }
        (_, id) => error_reply(id.unwrap_or(Value::Null), -32600, format!("invalid request: {error}")),
    }
}

/// Whether a JSON number is an integer that rmcp takes as a request id (`7`, or `7.0`):
/// the rules of [`number_or_string`], which the `tools/call` decoder reads ids with.
fn is_integral(number: &Value) -> bool {
    matches!(number_or_string(number), Ok(rmcp::model::NumberOrString::Number(_)))
}

/// Write queued lines to stdout, everything queued at the time in one write. Once output
/// has been quiet for [`QUIET`] after some traffic, freed heap memory is handed back to
/// the system (a burst of calls leaves the allocator holding pages it no longer needs).
async fn write_stdout(mut out: impl AsyncWrite + Unpin, mut queue: mpsc::Receiver<Outgoing>) {
    let mut batch = Vec::with_capacity(READ_BUFFER);
    let mut flushed = Vec::new();
    let quiet = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(quiet);
    let mut last_write: Option<Instant> = None;
    loop {
        let item = tokio::select! {
            item = queue.recv() => item,
            () = &mut quiet, if last_write.is_some() => {
                let due = last_write.map_or_else(Instant::now, |at| at + QUIET);
                if Instant::now() >= due {
                    crate::memory::release_free_heap();
                    last_write = None;
                } else {
                    quiet.as_mut().reset(due);
                }
                continue;
            }
        };
        let Some(item) = item else { return };
        let mut next = Some(item);
        while let Some(item) = next.take() {
            match item {
                Outgoing::Line(line) if batch.is_empty() && line.len() >= READ_BUFFER => batch = line,
                Outgoing::Line(line) => batch.extend_from_slice(&line),
                Outgoing::Flush(done) => flushed.push(done),
            }
            if batch.len() >= BATCH_LIMIT {
                break;
            }
            next = queue.try_recv().ok();
        }
        if out.write_all(&batch).await.is_err() || out.flush().await.is_err() {
            return;
        }
        batch.clear();
        if batch.capacity() > BATCH_LIMIT {
            batch.shrink_to(READ_BUFFER);
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
        let now = Instant::now();
        if last_write.is_none() {
            quiet.as_mut().reset(now + QUIET);
        }
        last_write = Some(now);
    }
}

impl StdioTransport {
    /// The line answering `initialize`, with `capabilities.tasks`
    /// (`Bridge::tasks_capability`), which rmcp's capability type does not have.
    fn initialize_line(&self, id: RequestId, result: &ServerResult) -> Option<Vec<u8>> {
        let mut result = serde_json::to_value(result).ok()?;
        let tasks = self.outbox.bridge.as_ref().and_then(|bridge| bridge.tasks_capability());
        if let (Some(capabilities), Some(tasks)) =
            (result.get_mut("capabilities").and_then(Value::as_object_mut), tasks)
        {
            capabilities.insert("tasks".to_owned(), tasks);
        }
        self.outbox.encode_result(id, &serde_json::to_vec(&result).ok()?)
    }
}

impl Transport<RoleServer> for StdioTransport {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let mut item = item;
        if let JsonRpcMessage::Request(request) = &mut item {
            // rmcp gives every request a progress token. The upstream's request this
            // one relays (roots, sampling, elicitation) is answered without progress,
            // so the client gets none it would have to report on.
            crate::upstream::drop_progress_token(&mut request.request);
        }
        let line = match &item {
            JsonRpcMessage::Response(response)
                if matches!(response.result, ServerResult::InitializeResult(_))
                    && self.outbox.bridge.as_ref().is_some_and(|bridge| bridge.aggregation.tools) =>
            {
                self.initialize_line(response.id.clone(), &response.result)
            }
            _ => self.outbox.encode(&item),
        };
        let tx = self.outbox.tx.clone();
        // Queue now, while rmcp's loop holds the message order; wait only when full.
        let pending = match line.map(|line| tx.try_send(Outgoing::Line(line))) {
            None | Some(Ok(())) => None,
            Some(Err(mpsc::error::TrySendError::Full(item))) => Some(item),
            Some(Err(mpsc::error::TrySendError::Closed(_))) => {
                return futures::future::Either::Left(std::future::ready(Err(closed())));
            }
        };
        futures::future::Either::Right(async move {
            if let Some(item) = pending {
                tx.send(item).await.map_err(|_| closed())?;
            }
            Ok(())
        })
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        self.incoming.recv().await
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        let (done, flushed) = oneshot::channel();
        if self.outbox.tx.send(Outgoing::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(FLUSH_LIMIT, flushed).await;
        }
        Ok(())
    }
}

fn closed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stdout is closed")
}

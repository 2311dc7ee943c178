//! The direct lane for `tools/call` on a stdio upstream.
//!
//! rmcp's client sends a request through its session task: the request is queued to
//! that task, serialized through a generic value, written, and its answer travels back
//! through the task's responder table. For the one method a bridge relays thousands of
//! times, that machinery is most of the bridge's cost per call. The lane skips it: the
//! caller ([`crate::upstream::connection::Connection`]) writes the request line itself, and the
//! transport ([`super::transport::LineTransport`]) hands the answer line straight back to
//! the waiting caller instead of decoding it for rmcp.
//!
//! A call can also go without any task waiting for it ([`Ticket`]): the client's
//! transport sends it from its reader, and the answer is handed to an [`AnswerSink`]
//! by the upstream's reader, which writes the client's answer line on the spot. The
//! lane then does what the waiting task would: one sweeper task per lane times calls
//! out (it sleeps until the earliest deadline; progress pushes a call's deadline back),
//! a client's cancellation takes the call out and tells the upstream, progress queued
//! before the answer is flushed to the client first, and the end of the session fails
//! every call. Per call, that saves a task, its timer, its wake-ups and its channels.
//!
//! Everything else (other requests, notifications, the upstream's own requests) still
//! goes through rmcp. The lane's request ids are numbers from [`FIRST_ID`] up, far
//! above rmcp's counters (which start at 0), and within 32 bits for servers that read
//! ids as `int`. The lane is used only on sessions that speak a protocol before
//! 2026-07-28; see `session.rs`.

use std::{
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::Duration,
};

use rmcp::model::{
    CancelledNotification, CancelledNotificationParam, ClientJsonRpcMessage, ClientNotification,
    JsonRpcVersion2_0, NumberOrString, ProgressToken, RequestId,
};
use serde::{Deserialize, Serialize, de::IgnoredAny};
use serde_json::value::RawValue;
use tokio::{
    sync::{Notify, oneshot},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::write_queue::{Queued, WriteQueue};
use crate::{
    upstream::{
        UpstreamError,
        connection::{ProgressRoute, ProgressRoutes},
        tap::TapQueue,
    },
    wire::{self, MetaRef, ResponseLine, ToolAnswer, ToolCall, ToolCallRef},
};

/// The first request id of the lane; ids wrap back to it after `i32::MAX`.
pub const FIRST_ID: i64 = 1_000_000_000;

pub struct Lane {
    write_queue: Arc<WriteQueue>,
    /// Calls waiting for their answer. Entries are added by [`Lane::reserve`] and
    /// [`Ticket::send`], removed by the transport when the answer arrives, by the
    /// [`Call`] when dropped, or by a [`Ticket`]'s cancellation or timeout, and all
    /// dropped when the transport ends (their callers then see the session closed).
    waiting: Mutex<Waiting>,
    /// What calls without a waiting task need from the session; set once it is up.
    context: OnceLock<Context>,
    /// Wakes the deadline sweeper (`sweep`) when it has nothing to watch.
    sweeper: Notify,
}

/// The session's side of calls answered without a waiting task ([`Ticket::send`]).
pub struct Context {
    pub name: Arc<str>,
    pub routes: Arc<ProgressRoutes>,
    pub tapped: TapQueue,
    pub timeout: Duration,
    /// Cancelled when a call finds the session dead (see `Connection`).
    pub broken: CancellationToken,
}

impl Context {
    /// The error of a call whose session ended.
    fn closed(&self) -> UpstreamError {
        UpstreamError::NotConnected { name: self.name.to_string(), cause: "the connection closed".to_owned() }
    }
}

struct Waiting {
    next_id: i64,
    answers: foldhash::HashMap<i64, Waiter>,
    closed: bool,
    /// The sweeper is waiting for a direct call to watch, and needs a wake-up.
    sweeper_idle: bool,
}

/// Who gets the answer to one call.
enum Waiter {
    /// A task waiting on the other end ([`Call`]).
    Task(oneshot::Sender<ResponseLine>),
    /// Nobody waits: the answer is handed to the sink by whoever ends the call.
    Direct(Direct),
}

struct Direct {
    sink: Box<dyn AnswerSink>,
    /// When the call times out; progress pushes it back ([`Lane::touch`]).
    deadline: Instant,
    /// Whether progress is routed under the call's id.
    routed: bool,
}

/// Where the outcome of a call sent with [`Ticket::send`] goes. Called exactly once,
/// unless the caller cancels the call first ([`Ticket::cancel`]), from the task that
/// ends it (the upstream's reader, the deadline sweeper), never with a lock held.
pub trait AnswerSink: Send + 'static {
    fn deliver(self: Box<Self>, outcome: Result<ToolAnswer, UpstreamError>);
}

/// One call on the lane, from its id's reservation until its answer or its end.
pub struct Call<'a> {
    lane: &'a Lane,
    pub id: i64,
    /// Fires with the upstream's answer; fails when the session ended first.
    pub answer: oneshot::Receiver<ResponseLine>,
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        // Answered calls are already gone; this forgets one given up on (cancelled,
        // timed out), so its late answer goes to rmcp, which logs and drops it.
        self.lane.waiting().answers.remove(&self.id);
    }
}

/// An id reserved on a lane for a call that no task waits for: [`Ticket::send`] it,
/// and its outcome goes to an [`AnswerSink`]. The lane itself enforces the request
/// timeout, forwards progress and restarts the timeout on it, and fails the call when
/// the session ends.
#[derive(Clone)]
pub struct Ticket {
    lane: Arc<Lane>,
    id: i64,
}

impl Lane {
    pub fn new(write_queue: Arc<WriteQueue>) -> Self {
        Self {
            write_queue,
            waiting: Mutex::new(Waiting {
                next_id: FIRST_ID,
                answers: foldhash::HashMap::default(),
                closed: false,
                sweeper_idle: false,
            }),
            context: OnceLock::new(),
            sweeper: Notify::new(),
        }
    }

    fn waiting(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Give the lane what calls without a waiting task need, and start the task that
    /// times them out. Once per session; must be called inside the runtime.
    pub fn attach(self: &Arc<Self>, context: Context) {
        if self.context.set(context).is_ok() {
            tokio::spawn(sweep(self.clone()));
        }
    }

    fn next_id(waiting: &mut Waiting) -> i64 {
        let id = waiting.next_id;
        waiting.next_id = if id >= i64::from(i32::MAX) { FIRST_ID } else { id + 1 };
        id
    }

    /// A fresh id whose answer will be routed back; `None` once the session ended.
    pub fn reserve(&self) -> Option<Call<'_>> {
        let mut waiting = self.waiting();
        if waiting.closed {
            return None;
        }
        let id = Self::next_id(&mut waiting);
        let (tx, answer) = oneshot::channel();
        waiting.answers.insert(id, Waiter::Task(tx));
        Some(Call { lane: self, id, answer })
    }

    /// A fresh id for a call no task will wait for; `None` once the session ended, or
    /// before it is up ([`Lane::attach`]).
    pub fn ticket(self: &Arc<Self>) -> Option<Ticket> {
        self.context.get()?;
        let mut waiting = self.waiting();
        if waiting.closed {
            return None;
        }
        let id = Self::next_id(&mut waiting);
        Some(Ticket { lane: self.clone(), id })
    }

    /// Write the `tools/call` request of `call`.
    pub async fn send(&self, call: &Call<'_>, params: &ToolCall) -> std::io::Result<()> {
        self.write_queue.send(request_line(call.id, params)?).await
    }

    /// If `line` answers a call waiting on the lane, hand it over and return `true`;
    /// otherwise the line is for rmcp. Cheap when nothing is waiting.
    pub fn claim(&self, line: &[u8]) -> bool {
        // One pass finds the id and where the result is, so the caller need not scan
        // the line again to relay the result.
        #[derive(Deserialize)]
        struct Head<'a> {
            #[serde(default, deserialize_with = "number_id")]
            id: Option<i64>,
            method: Option<IgnoredAny>,
            #[serde(borrow)]
            result: Option<&'a RawValue>,
        }
        let mut waiting = self.waiting();
        if waiting.answers.is_empty() {
            return false;
        }
        let Ok(Head { id: Some(id), method: None, result }) = serde_json::from_slice(line) else {
            return false;
        };
        let Some(waiter) = waiting.answers.remove(&id) else {
            return false;
        };
        drop(waiting);
        let result = result.map(|result| {
            // `result` borrows from `line`, so its offset is where its text starts.
            let start = result.get().as_ptr() as usize - line.as_ptr() as usize;
            start..start + result.get().len()
        });
        let answer = ResponseLine { line: line.to_vec(), result };
        match waiter {
            // The caller may have given up this instant; then the answer has no one to go to.
            Waiter::Task(tx) => {
                let _ = tx.send(answer);
            }
            Waiter::Direct(direct) => {
                self.end(id, direct, wire::tool_answer(answer).map_err(UpstreamError::Mcp));
            }
        }
        true
    }

    /// The ids of the calls waiting for their answer.
    pub fn waiting_ids(&self) -> Vec<i64> {
        self.waiting().answers.keys().copied().collect()
    }

    /// Progress arrived for call `id`: its timeout starts again.
    pub fn touch(&self, id: i64) {
        let Some(context) = self.context.get() else { return };
        if let Some(Waiter::Direct(direct)) = self.waiting().answers.get_mut(&id) {
            direct.deadline = Instant::now() + context.timeout;
        }
    }

    /// The session ended: fail every waiting call and refuse new ones.
    pub fn close(&self) {
        let answers = {
            let mut waiting = self.waiting();
            waiting.closed = true;
            std::mem::take(&mut waiting.answers)
        };
        self.sweeper.notify_one();
        for (id, waiter) in answers {
            if let (Waiter::Direct(direct), Some(context)) = (waiter, self.context.get()) {
                context.broken.cancel();
                self.end(id, direct, Err(context.closed()));
            }
        }
    }

    /// Hand `outcome` (the answer, or why the call failed) to the sink of direct call
    /// `id`, already out of the waiting list, and forget its progress route. Progress
    /// queued before the outcome reaches the client first, as on the task path.
    fn end(&self, id: i64, direct: Direct, outcome: Result<ToolAnswer, UpstreamError>) {
        let Some(context) = self.context.get() else { return };
        if !direct.routed {
            direct.sink.deliver(outcome);
        } else if context.tapped.is_drained() {
            unroute_later(&context.routes, id);
            direct.sink.deliver(outcome);
        } else {
            let (routes, tapped) = (context.routes.clone(), context.tapped.clone());
            spawn_detached(async move {
                tapped.flush().await;
                routes.lock().await.remove(&lane_token(id));
                direct.sink.deliver(outcome);
            });
        }
    }

    /// Take direct call `id` out of the waiting list, if it is still there.
    fn take_direct(&self, id: i64) -> Option<Direct> {
        let mut waiting = self.waiting();
        match waiting.answers.remove(&id)? {
            Waiter::Direct(direct) => Some(direct),
            task => {
                waiting.answers.insert(id, task);
                None
            }
        }
    }

    /// Queue `line` for the upstream; a full queue is waited for on a task of its own.
    /// If the session's stdin is closed, direct call `call` (the line's, if it is a
    /// request) fails.
    fn write(self: &Arc<Self>, line: Vec<u8>, call: Option<i64>) {
        match self.write_queue.try_queue(line) {
            Queued::Yes => {}
            Queued::Closed => {
                if let Some(id) = call {
                    self.fail(id, "the transport is closed".to_owned());
                }
            }
            Queued::Full(full) => {
                let lane = self.clone();
                spawn_detached(async move {
                    if let (Err(error), Some(id)) = (full.wait().await, call) {
                        lane.fail(id, error.to_string());
                    }
                });
            }
        }
    }

    /// Direct call `id` could not be written: the session is broken.
    fn fail(&self, id: i64, cause: String) {
        let (Some(context), Some(direct)) = (self.context.get(), self.take_direct(id)) else { return };
        context.broken.cancel();
        self.end(id, direct, Err(UpstreamError::Transport { name: context.name.to_string(), cause }));
    }

    /// Tell the upstream to stop working on call `id`. Nothing waits for it: a failure
    /// only means the session is ending anyway.
    fn cancel_upstream(self: &Arc<Self>, id: i64, reason: &str) {
        let notification = CancelledNotification::new(CancelledNotificationParam::new(
            Some(RequestId::Number(id)),
            Some(reason.to_owned()),
        ));
        let message =
            ClientJsonRpcMessage::notification(ClientNotification::CancelledNotification(notification));
        if let Ok(mut line) = serde_json::to_vec(&message) {
            line.push(b'\n');
            self.write(line, None);
        }
    }
}

impl Ticket {
    /// Write `call` with the ticket's id, as a call of the upstream's tool `name`. Its
    /// outcome goes to `sink`: the upstream's answer, or the error of a timeout or of
    /// the session ending. Progress the client asked for (its token in `call`'s
    /// `_meta`) is forwarded under the client's token.
    pub fn send(&self, name: &str, call: &ToolCallRef<'_>, sink: Box<dyn AnswerSink>) {
        let (lane, id) = (&self.lane, self.id);
        let Some(context) = lane.context.get() else { return };
        // As for any request: the client's progress token is replaced by the call's own
        // (its id), the rest of `_meta` is forwarded.
        let route = call
            .meta
            .as_ref()
            .and_then(MetaRef::token)
            .map(|client_token| ProgressRoute::for_lane(client_token, Arc::downgrade(lane)));
        let line = call_line(id, name, call, route.is_some());
        {
            let mut waiting = lane.waiting();
            if waiting.closed {
                drop(waiting);
                return sink.deliver(Err(context.closed()));
            }
            let deadline = Instant::now() + context.timeout;
            let direct = Direct { sink, deadline, routed: route.is_some() };
            waiting.answers.insert(id, Waiter::Direct(direct));
            if std::mem::take(&mut waiting.sweeper_idle) {
                lane.sweeper.notify_one();
            }
        }
        // The route goes in before the request leaves, so no progress can miss it.
        match route {
            None => lane.write(line, Some(id)),
            Some(route) => match context.routes.try_lock() {
                Ok(mut routes) => {
                    routes.insert(lane_token(id), route);
                    drop(routes);
                    lane.write(line, Some(id));
                }
                Err(_) => {
                    let (lane, routes) = (lane.clone(), context.routes.clone());
                    spawn_detached(async move {
                        let mut routes = routes.lock().await;
                        // Unless it was cancelled or timed out meanwhile.
                        if lane.waiting().answers.contains_key(&id) {
                            routes.insert(lane_token(id), route);
                            drop(routes);
                            lane.write(line, Some(id));
                        }
                    });
                }
            },
        }
    }

    /// The client cancelled the call: it is forgotten (its sink is dropped unused) and
    /// the upstream is told. Nothing happens if it has already ended.
    pub fn cancel(&self) {
        let Some(direct) = self.lane.take_direct(self.id) else { return };
        self.lane.cancel_upstream(self.id, "cancelled by the client");
        if let (true, Some(context)) = (direct.routed, self.lane.context.get()) {
            unroute_later(&context.routes, self.id);
        }
    }

    /// Identifies the call among every lane's, for a sink that must tell whether a
    /// ticket it finds is its own.
    pub fn key(&self) -> (usize, i64) {
        (Arc::as_ptr(&self.lane) as usize, self.id)
    }
}

/// The `tools/call` request line of lane call `id` to the upstream's tool `name`: the
/// client's `arguments` and `_meta` entries as it wrote them, with the call's own
/// progress token (its id) when `routed`. The rest of the line is the bridge's own, so
/// only the name and the `_meta` keys need escaping.
fn call_line(id: i64, name: &str, call: &ToolCallRef<'_>, routed: bool) -> Vec<u8> {
    fn string(line: &mut Vec<u8>, text: &str) {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *line, text);
    }
    let mut line = Vec::with_capacity(128 + call.arguments.map_or(0, |arguments| arguments.get().len()));
    line.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    line.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    line.extend_from_slice(br#","method":"tools/call","params":{"name":"#);
    string(&mut line, name);
    if let Some(arguments) = call.arguments {
        line.extend_from_slice(br#","arguments":"#);
        line.extend_from_slice(arguments.get().as_bytes());
    }
    let rest = call.meta.as_ref().map_or(&[][..], |meta| &meta.rest[..]);
    if routed || !rest.is_empty() {
        line.extend_from_slice(br#","_meta":{"#);
        if routed {
            line.extend_from_slice(br#""progressToken":"#);
            line.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
        }
        for (index, (key, value)) in rest.iter().enumerate() {
            if routed || index > 0 {
                line.push(b',');
            }
            string(&mut line, key);
            line.push(b':');
            line.extend_from_slice(value.get().as_bytes());
        }
        line.push(b'}');
    }
    line.extend_from_slice(b"}}\n");
    line
}

/// The `tools/call` request line for call `id`, whose caller waits for it ([`Lane::send`]).
fn request_line(id: i64, params: &ToolCall) -> std::io::Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Line<'a> {
        jsonrpc: JsonRpcVersion2_0,
        id: i64,
        method: &'static str,
        params: &'a ToolCall,
    }
    let line = Line { jsonrpc: JsonRpcVersion2_0, id, method: "tools/call", params };
    let mut bytes = Vec::with_capacity(256);
    serde_json::to_writer(&mut bytes, &line)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// A JSON-RPC id that is a number (lane ids are), as rmcp reads one; `None` for a
/// string.
fn number_id<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    Ok(match wire::number_or_string(deserializer)? {
        NumberOrString::Number(id) => Some(id),
        NumberOrString::String(_) => None,
    })
}

/// The upstream progress token of lane call `id`.
fn lane_token(id: i64) -> ProgressToken {
    ProgressToken(NumberOrString::Number(id))
}

/// Forget the progress route of lane call `id`: now if the routes are free, else as
/// soon as they are.
fn unroute_later(routes: &Arc<ProgressRoutes>, id: i64) {
    if let Ok(mut routes) = routes.try_lock() {
        routes.remove(&lane_token(id));
        return;
    }
    let routes = routes.clone();
    spawn_detached(async move {
        routes.lock().await.remove(&lane_token(id));
    });
}

/// Run `task` on the runtime, if there is one (a lane closed while the runtime shuts
/// down has nothing left to do).
fn spawn_detached(task: impl Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(task);
    }
}

/// Time out direct calls that have been quiet for the request timeout, until the
/// session ends. It sleeps until the earliest deadline, or, with no direct call in
/// flight, until one is sent.
async fn sweep(lane: Arc<Lane>) {
    let Some(context) = lane.context.get() else { return };
    loop {
        let (expired, next) = {
            let mut waiting = lane.waiting();
            if waiting.closed {
                return;
            }
            let now = Instant::now();
            let expired: Vec<_> = waiting
                .answers
                .extract_if(|_, waiter| matches!(waiter, Waiter::Direct(direct) if direct.deadline <= now))
                .filter_map(|(id, waiter)| match waiter {
                    Waiter::Direct(direct) => Some((id, direct)),
                    Waiter::Task(_) => None,
                })
                .collect();
            let next = waiting
                .answers
                .values()
                .filter_map(|waiter| match waiter {
                    Waiter::Direct(direct) => Some(direct.deadline),
                    Waiter::Task(_) => None,
                })
                .min();
            waiting.sweeper_idle = next.is_none();
            (expired, next)
        };
        for (id, direct) in expired {
            lane.cancel_upstream(id, "request timeout");
            let seconds = context.timeout.as_secs();
            lane.end(id, direct, Err(UpstreamError::Timeout { name: context.name.to_string(), seconds }));
        }
        // A close wakes it too, so it lets go of the lane at once.
        match next {
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    () = lane.sweeper.notified() => {}
                }
            }
            None => lane.sweeper.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn a_lane_call_line_is_the_clients_call_with_the_lanes_id_name_and_token() {
        let id = FIRST_ID + 7;
        for (params, routed, expected) in [
            (json!({"name": "x"}), false, json!({"name": "echo"})),
            (
                json!({"name": "x", "arguments": {"s": "\u{e9}\n\"", "n": [1, {"k": null}]}}),
                false,
                json!({"name": "echo", "arguments": {"s": "\u{e9}\n\"", "n": [1, {"k": null}]}}),
            ),
            (
                json!({"name": "x", "_meta": {"progressToken": 3}}),
                true,
                json!({"name": "echo", "_meta": {"progressToken": id}}),
            ),
            (
                json!({"name": "x", "_meta": {"progressToken": "p", "k\"é": {"a": 1}, "z": null}}),
                true,
                json!({"name": "echo", "_meta": {"progressToken": id, "k\"é": {"a": 1}, "z": null}}),
            ),
            // An unusable token is dropped; other entries are kept.
            (
                json!({"name": "x", "_meta": {"progressToken": true, "k": 1}}),
                false,
                json!({"name": "echo", "_meta": {"k": 1}}),
            ),
            (json!({"name": "x", "_meta": {}}), false, json!({"name": "echo"})),
        ] {
            let text = params.to_string();
            let call: ToolCallRef<'_> = serde_json::from_str(&text).unwrap();
            assert_eq!(call.meta.as_ref().and_then(MetaRef::token).is_some(), routed, "{text}");
            let line = call_line(id, "echo", &call, routed);
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(line.iter().filter(|&&byte| byte == b'\n').count(), 1, "one line");
            let line: Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(
                line,
                json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": expected}),
                "{text}"
            );
        }
        // The name is escaped as JSON needs.
        let call: ToolCallRef<'_> = serde_json::from_str(r#"{"name":"x"}"#).unwrap();
        let line: Value = serde_json::from_slice(&call_line(id, "a\"b\\\n", &call, false)).unwrap();
        assert_eq!(line["params"]["name"], "a\"b\\\n");
    }
}

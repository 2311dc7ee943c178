//! The direct lane for `tools/call` on a stdio upstream.
//!
//! rmcp's client sends a request through its session task: the request is queued to
//! that task, serialized through a generic value, written, and its answer travels back
//! through the task's responder table. For the one method a bridge relays thousands of
//! times, that machinery is most of the bridge's cost per call. The lane skips it: a
//! call is written as one line by [`call_line`], the transport
//! ([`super::transport::LineTransport`]) hands the answer line straight to the call
//! ([`Lane::claim`]) instead of decoding it for rmcp, and the session's engine for
//! requests in flight ([`InFlight`], `upstream/in_flight/`) does the rest: the
//! request timeout (progress restarts it), the client's cancellation, the progress
//! route, the end of the session.
//!
//! Every lane call is a [`LaneTicket`] (an id reserved on the lane) whose outcome goes
//! to an [`AnswerSink`]. A call from the client's stdio transport needs no task: the
//! client's reader sends it ([`LaneTicket::send`]), and the upstream's reader answers
//! the client on the spot through its sink. A call made on a task (`Connection`'s
//! `call_tool`, e.g. a call the client made through rmcp's session) sends the owned
//! call ([`LaneTicket::send_owned`]) with a oneshot sender as its sink and awaits the
//! receiver: the same completion, with the same timeout, cancellation and progress.
//! Per call, the task-free way saves a task, its timer, its wake-ups and its channels.
//!
//! Everything else (other requests, notifications, the upstream's own requests) still
//! goes through rmcp. The lane's request ids are the engine's (numbers from
//! [`crate::upstream::in_flight::FIRST_ID`] up, far above rmcp's counters). The lane is
//! used only on sessions that speak a protocol before 2026-07-28; see `session.rs`.

use std::{borrow::Cow, sync::Arc, time::Duration};

use rmcp::model::{
    CancelledNotification, CancelledNotificationParam, ClientJsonRpcMessage, ClientNotification, JsonObject,
    NumberOrString, ProgressToken, RequestId, RequestMetaObject,
};
use serde::{Deserialize, de::IgnoredAny};
use serde_json::value::RawValue;

use super::write_queue::{Queued, WriteQueue};
use crate::{
    upstream::{
        UpstreamError,
        in_flight::{AnswerSink, InFlight, InFlightContext, NotTracked, UpstreamCanceller, spawn_detached},
    },
    wire::{self, MetaRef, ResponseLine, ToolCall, ToolCallRef},
};

/// The direct `tools/call` path of one stdio session: the write side of its calls and
/// the claim of their answers, over the session's engine for requests in flight.
pub struct Lane {
    write_queue: Arc<WriteQueue>,
    /// The calls sent on the lane and not yet ended.
    requests: Arc<InFlight>,
    /// How far the answers to its calls are read before they are handed over.
    reading: AnswerReading,
}

/// How far a lane reads an answer line before it hands the line to its call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerReading {
    /// All of it, noting where its result is: this process relays or decodes the result.
    Whole,
    /// Only up to its id and its `result` or `error` (`wire::response_id`), noting where
    /// the id is: the line goes on as written, with another id, to a client that reads
    /// and checks all of it (the bridges a hub serves).
    UpToId,
}

/// An id reserved on a lane for one call: send it ([`LaneTicket::send`],
/// [`LaneTicket::send_owned`]), and its outcome goes to an [`AnswerSink`]. The
/// session's engine enforces the request timeout, forwards progress and restarts the
/// timeout on it, and fails the call when the session ends.
#[derive(Clone)]
pub struct LaneTicket {
    lane: Arc<Lane>,
    id: i64,
    /// For whom the call is made, when that is not this process's client.
    origin: Option<Arc<dyn LaneCallOrigin>>,
}

/// For whom a lane call is made when that is not this process's one client: the hub's
/// connection of one bridge. It may give the upstream another progress token, and hears
/// of the call's end.
pub trait LaneCallOrigin: Send + Sync + 'static {
    /// The call of `ticket`, with the client's progress token `client_token`, is about to
    /// be sent: the token progress is to be forwarded under, and what hears of its end.
    fn begin(
        self: Arc<Self>,
        ticket: &LaneTicket,
        client_token: Option<ProgressToken>,
    ) -> (Option<ProgressToken>, Box<dyn LaneCallEnd>);
}

/// Told of one lane call's end ([`LaneCallOrigin::begin`]); dropped unused when the call
/// is forgotten without an outcome (cancelled).
pub trait LaneCallEnd: Send + 'static {
    /// The call ended, answered by the upstream or with `error`, just before its sink
    /// gets the outcome.
    fn ended(self: Box<Self>, error: Option<&UpstreamError>);
}

/// A sink that tells the call's origin of the outcome first.
struct SinkWithEnd {
    sink: Box<dyn AnswerSink>,
    end: Box<dyn LaneCallEnd>,
}

impl AnswerSink for SinkWithEnd {
    fn deliver(self: Box<Self>, outcome: Result<wire::ToolAnswer, UpstreamError>) {
        let SinkWithEnd { sink, end } = *self;
        end.ended(outcome.as_ref().err());
        sink.deliver(outcome);
    }

    fn deliver_line(self: Box<Self>, answer: ResponseLine) {
        let SinkWithEnd { sink, end } = *self;
        end.ended(None);
        sink.deliver_line(answer);
    }
}

impl Lane {
    pub fn new(write_queue: Arc<WriteQueue>, reading: AnswerReading) -> Self {
        Self { write_queue, requests: Arc::default(), reading }
    }

    /// Give the lane's engine, which the session's requests through rmcp (cancelled by
    /// `rmcp`) share, what ending requests needs, and start the task that times them
    /// out. Once per session; must be called inside the runtime.
    pub fn attach(self: &Arc<Self>, context: InFlightContext, rmcp: Box<dyn UpstreamCanceller>) {
        // Coerced here: the engine tells this lane's upstream about calls it ends early.
        let lane: std::sync::Weak<dyn UpstreamCanceller> = Arc::downgrade(self) as _;
        self.requests.attach(context, Some(lane), rmcp);
    }

    /// The session's engine for requests in flight.
    pub fn requests(&self) -> &Arc<InFlight> {
        &self.requests
    }

    /// A fresh id for a call; `None` once the session ended, or before it is up
    /// ([`Lane::attach`]).
    pub fn ticket(self: &Arc<Self>) -> Option<LaneTicket> {
        let id = self.requests.next_id()?;
        Some(LaneTicket { lane: self.clone(), id, origin: None })
    }

    /// If `line` answers a call on the lane, hand it over and return `true`; otherwise
    /// the line is for rmcp. Cheap when no call is in flight.
    pub fn claim(&self, line: &[u8]) -> bool {
        match self.reading {
            AnswerReading::Whole => {
                let read = || read_whole(line);
                self.requests.complete(read, |result| ResponseLine {
                    line: line.to_vec(),
                    result,
                    id_at: None,
                })
            }
            AnswerReading::UpToId => {
                let read = || wire::response_id(line);
                self.requests.complete(read, |id_at| ResponseLine {
                    line: line.to_vec(),
                    result: None,
                    id_at: Some(id_at),
                })
            }
        }
    }

    /// The ids of the calls waiting for their answer.
    pub fn waiting_ids(&self) -> Vec<i64> {
        self.requests.lane_ids()
    }

    /// The session ended: fail every waiting call and refuse new ones.
    pub fn close(&self) {
        self.requests.close();
    }

    /// Queue `line` for the upstream; a full queue is waited for on a task of its own.
    /// If the session's stdin is closed, call `call` (the line's, if it is a request)
    /// fails.
    fn write(self: &Arc<Self>, line: Vec<u8>, call: Option<i64>) {
        match self.write_queue.try_queue(line) {
            Queued::Yes => {}
            Queued::Closed => {
                if let Some(id) = call {
                    self.requests.fail(id, "the transport is closed".to_owned());
                }
            }
            Queued::Full(full) => {
                let lane = self.clone();
                spawn_detached(async move {
                    if let (Err(error), Some(id)) = (full.wait().await, call) {
                        lane.requests.fail(id, error.to_string());
                    }
                });
            }
        }
    }
}

impl UpstreamCanceller for Lane {
    fn cancel_upstream(&self, id: RequestId, reason: &str) {
        let notification =
            CancelledNotification::new(CancelledNotificationParam::new(Some(id), Some(reason.to_owned())));
        let message =
            ClientJsonRpcMessage::notification(ClientNotification::CancelledNotification(notification));
        if let Ok(mut line) = serde_json::to_vec(&message) {
            line.push(b'\n');
            // Not through `write`: a cancellation that cannot be written fails no call.
            match self.write_queue.try_queue(line) {
                Queued::Yes | Queued::Closed => {}
                Queued::Full(full) => spawn_detached(async move {
                    let _ = full.wait().await;
                }),
            }
        }
    }
}

impl LaneTicket {
    /// Write `call` with the ticket's id, as a call of the upstream's tool `name`. Its
    /// outcome goes to `sink`: the upstream's answer, or the error of a timeout or of
    /// the session ending. Progress the client asked for (its token in `call`'s
    /// `_meta`) is forwarded under the client's token.
    pub fn send(&self, name: &str, call: &ToolCallRef<'_>, sink: Box<dyn AnswerSink>) {
        // As for any request: the client's progress token is replaced by the call's own
        // (its id), the rest of `_meta` is forwarded.
        let client_token = call.meta.as_ref().and_then(MetaRef::token);
        let (client_token, sink) = self.for_origin(client_token, sink);
        let rest = call.meta.as_ref().map_or(&[][..], |meta| &meta.rest[..]);
        let line =
            call_line(self.id, name, call.arguments, MetaEntries::Written(rest), client_token.is_some());
        self.dispatch(line, client_token, None, sink);
    }

    /// [`LaneTicket::send`] for a call already owned and routed (`call.name` is the
    /// upstream's): `forwarded` joins its `_meta`, progress goes to `client_token`, and
    /// it may be quiet for `timeout` (else the request timeout).
    pub fn send_owned(
        &self,
        call: &ToolCall,
        forwarded: Option<RequestMetaObject>,
        client_token: Option<ProgressToken>,
        timeout: Option<Duration>,
        sink: Box<dyn AnswerSink>,
    ) {
        let (client_token, sink) = self.for_origin(client_token, sink);
        let joined;
        let meta = match (&call.meta, forwarded) {
            (meta, None) => meta.as_ref().map(|meta| &meta.0.0),
            (meta, Some(forwarded)) => {
                let mut meta = meta.clone().unwrap_or_default();
                meta.0.0.extend(forwarded.0.0);
                joined = meta;
                Some(&joined.0.0)
            }
        };
        let empty = JsonObject::new();
        let meta = MetaEntries::Decoded(meta.unwrap_or(&empty));
        let line = call_line(self.id, &call.name, call.arguments.as_deref(), meta, client_token.is_some());
        self.dispatch(line, client_token, timeout, sink);
    }

    /// The ticket for a call made for `origin` ([`LaneCallOrigin`]).
    pub fn with_origin(mut self, origin: Arc<dyn LaneCallOrigin>) -> Self {
        self.origin = Some(origin);
        self
    }

    /// The progress token and sink of a call, as its origin (if any) has them.
    fn for_origin(
        &self,
        client_token: Option<ProgressToken>,
        sink: Box<dyn AnswerSink>,
    ) -> (Option<ProgressToken>, Box<dyn AnswerSink>) {
        match &self.origin {
            None => (client_token, sink),
            Some(origin) => {
                let (client_token, end) = origin.clone().begin(self, client_token);
                (client_token, Box::new(SinkWithEnd { sink, end }))
            }
        }
    }

    /// Track the call whose request is `line` and write it; see [`InFlight::insert`].
    /// Its progress route (to `client_token`) is in its entry before the request
    /// leaves, so no progress can miss it.
    fn dispatch(
        &self,
        line: Vec<u8>,
        client_token: Option<ProgressToken>,
        timeout: Option<Duration>,
        sink: Box<dyn AnswerSink>,
    ) {
        let (lane, id) = (&self.lane, self.id);
        match lane.requests.insert(id, sink, timeout, client_token) {
            Ok(_) => lane.write(line, Some(id)),
            Err(NotTracked::Closed(sink, error)) => sink.deliver(Err(error)),
            Err(NotTracked::Detached) => {}
        }
    }

    /// The client cancelled the call: it is forgotten (its sink is dropped unused) and
    /// the upstream is told. Nothing happens if it has already ended.
    pub fn cancel(&self) {
        self.lane.requests.cancel(self.id);
    }

    /// The task waiting for the call gave it up with `error`: the upstream is told, and
    /// the sink gets `error` after the call's queued progress. Nothing happens if it has
    /// already ended.
    pub fn abort(&self, error: crate::upstream::UpstreamError) {
        self.lane.requests.abort(self.id, error);
    }

    /// Forget the call without telling the upstream (its caller is gone); its late
    /// answer goes to rmcp, which logs and drops it.
    pub fn forget(&self) {
        self.lane.requests.forget(self.id);
    }

    /// The call's request id upstream.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Identifies the call among every lane's, for a sink that must tell whether a
    /// ticket it finds is its own.
    pub fn key(&self) -> (usize, i64) {
        (Arc::as_ptr(&self.lane) as usize, self.id)
    }
}

/// A response line's number id and where its result is, read in one pass (so that a
/// relay of the result need not scan the line again); `None` for a line that is not a
/// response with a number id.
fn read_whole(line: &[u8]) -> Option<(i64, Option<std::ops::Range<usize>>)> {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(default, deserialize_with = "number_id")]
        id: Option<i64>,
        method: Option<IgnoredAny>,
        #[serde(borrow)]
        result: Option<&'a RawValue>,
    }
    let Ok(Head { id: Some(id), method: None, result }) = serde_json::from_slice(line) else {
        return None;
    };
    let result = result.map(|result| {
        // `result` borrows from `line`, so its offset is where its text starts.
        let start = result.get().as_ptr() as usize - line.as_ptr() as usize;
        start..start + result.get().len()
    });
    Some((id, result))
}

/// The `_meta` entries of a call other than the client's progress token.
enum MetaEntries<'a> {
    /// As the client wrote them ([`MetaRef::rest`]).
    Written(&'a [(Cow<'a, str>, &'a RawValue)]),
    /// Decoded; a `progressToken` among them is kept only when the call is not routed.
    Decoded(&'a JsonObject),
}

/// The `tools/call` request line of lane call `id` to the upstream's tool `name`: the
/// `arguments` and `meta` entries (as the client wrote them, or encoded once), with the
/// call's own progress token (its id) when `routed`. The rest of the line is the
/// bridge's own, so only the name and the `_meta` keys need escaping.
fn call_line(
    id: i64,
    name: &str,
    arguments: Option<&RawValue>,
    meta: MetaEntries<'_>,
    routed: bool,
) -> Vec<u8> {
    fn string(line: &mut Vec<u8>, text: &str) {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *line, text);
    }
    let kept = |key: &str| !routed || key != "progressToken";
    let mut line = Vec::with_capacity(128 + arguments.map_or(0, |arguments| arguments.get().len()));
    line.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    line.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    line.extend_from_slice(br#","method":"tools/call","params":{"name":"#);
    string(&mut line, name);
    if let Some(arguments) = arguments {
        line.extend_from_slice(br#","arguments":"#);
        line.extend_from_slice(arguments.get().as_bytes());
    }
    let any_entry = match meta {
        MetaEntries::Written(rest) => !rest.is_empty(),
        MetaEntries::Decoded(map) => map.keys().any(|key| kept(key)),
    };
    if routed || any_entry {
        line.extend_from_slice(br#","_meta":{"#);
        let mut first = true;
        if routed {
            line.extend_from_slice(br#""progressToken":"#);
            line.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
            first = false;
        }
        let mut key = |line: &mut Vec<u8>, key: &str| {
            if !std::mem::take(&mut first) {
                line.push(b',');
            }
            string(line, key);
            line.push(b':');
        };
        match meta {
            MetaEntries::Written(rest) => {
                for (name, value) in rest {
                    key(&mut line, name);
                    line.extend_from_slice(value.get().as_bytes());
                }
            }
            MetaEntries::Decoded(map) => {
                for (name, value) in map.iter().filter(|(name, _)| kept(name)) {
                    key(&mut line, name);
                    // Writing a decoded value to a Vec cannot fail.
                    let _ = serde_json::to_writer(&mut line, value);
                }
            }
        }
        line.push(b'}');
    }
    line.extend_from_slice(b"}}\n");
    line
}

/// A JSON-RPC id that is a number (lane ids are), as rmcp reads one; `None` for a
/// string.
fn number_id<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    Ok(match wire::number_or_string(deserializer)? {
        NumberOrString::Number(id) => Some(id),
        NumberOrString::String(_) => None,
    })
}

#[cfg(test)]
mod tests;

//! The one engine for a request in flight on an upstream session: its id, its deadline,
//! its cancellation and its progress route, from the moment it is sent until its
//! outcome is handed over.
//!
//! [`InFlight`] is one session's table of such requests, keyed by an id the table hands
//! out ([`InFlight::next_id`], numbers from [`FIRST_ID`] up, far above rmcp's own
//! counters, which start at 0, and within 32 bits for servers that read ids as `int`).
//! A request's outcome goes to an [`AnswerSink`], exactly once, from whoever ends it:
//!
//! - **the answer**: the transport's reader finds the answer line and hands it over
//!   ([`InFlight::complete`]);
//! - **the deadline**: one sweeper task per session ([`deadlines::sweep`]) sleeps until
//!   the earliest deadline and times out a request that has been quiet for its
//!   timeout; the upstream is told (`notifications/cancelled`, through the
//!   [`UpstreamCanceller`]), the sink gets [`UpstreamError::Timeout`];
//! - **progress**: the request's route forwards the upstream's progress under the
//!   client's token and pushes the deadline back; progress queued before the outcome
//!   reaches the client first, then the route is forgotten. A lane request keeps its
//!   route in its own entry ([`InFlight::lane_progress`]; one that ends with progress
//!   still queued keeps it until that progress is forwarded); a request through rmcp
//!   has a [`progress::ProgressRoute`] (and [`InFlight::touch`]);
//! - **cancellation**: the client gives the request up ([`InFlight::cancel`]: the sink
//!   is dropped unused) or its waiting caller does ([`InFlight::abort`]: the sink gets
//!   the caller's error after the queued progress); the upstream is told either way;
//! - **the end of the session**: every request fails as not connected and the session
//!   is marked broken ([`InFlight::close`]); a request the transport could not write
//!   fails with the transport's error and marks it broken too ([`InFlight::fail`]).
//!
//! Every request a session sends is tracked here, whichever way it goes:
//!
//! - **on the direct lane** of a stdio session (`stdio/lane.rs`, [`InFlight::insert`]):
//!   the engine's id is the request's id upstream, its progress token too (the
//!   client's token is kept in its entry), and the answer line comes back to the
//!   engine. A caller that waits on a task gives a oneshot sender as the sink (it
//!   implements [`AnswerSink`]), so a call with a waiting task and one without take
//!   the same path;
//! - **through rmcp's session** (every other request, and every call on other
//!   sessions; [`InFlight::insert_rmcp`]): rmcp picks the request's id and progress
//!   token and delivers the answer to the waiting caller (`Connection`), which ends
//!   the request in the engine then; the engine keeps its deadline, the route's
//!   timeout restarts, and the cancellation, which it queues through rmcp behind the
//!   request ([`UpstreamCanceller`]). Its sink gets only a timeout or the session's
//!   end.

mod deadlines;
pub mod progress;

use std::{
    sync::{Arc, Mutex, MutexGuard, OnceLock, Weak},
    time::Duration,
};

use rmcp::model::{NumberOrString, ProgressToken, RequestId};
use tokio::{
    sync::{Notify, oneshot},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use self::progress::ProgressRoutes;
use super::{ToolAnswer, UpstreamError, tap::TapQueue};
use crate::{
    locks::Unpoisoned,
    wire::{self, ResponseLine},
};

/// The first request id the engine hands out; ids wrap back to it after `i32::MAX`.
pub const FIRST_ID: i64 = 1_000_000_000;

/// The requests in flight on one upstream session; see the module doc.
pub struct InFlight {
    /// Requests waiting for their outcome. Entries are added by [`InFlight::insert`],
    /// removed by whoever ends the request, and all failed when the session ends.
    table: Mutex<InFlightTable>,
    /// What ending a request needs from the session; set once it is up.
    attached: OnceLock<AttachedSession>,
    /// Wakes the deadline sweeper ([`deadlines::sweep`]) when it has nothing to watch.
    sweeper: Notify,
}

/// The session's side of the requests in flight, given once it is up
/// ([`InFlight::attach`]).
pub struct InFlightContext {
    pub name: Arc<str>,
    pub routes: Arc<ProgressRoutes>,
    pub tapped: TapQueue,
    /// How long a request may be quiet, unless it was sent with its own timeout.
    pub timeout: Duration,
    /// Cancelled when a request finds the session dead (see `Connection`).
    pub broken: CancellationToken,
}

impl InFlightContext {
    /// The error of a request whose session ended.
    pub fn closed(&self) -> UpstreamError {
        UpstreamError::NotConnected { name: self.name.to_string(), cause: "the connection closed".to_owned() }
    }
}

/// How the engine tells the upstream to stop working on a request it ends early: the
/// side of the engine that sent the request (the lane, or rmcp's session).
pub trait UpstreamCanceller: Send + Sync + 'static {
    /// Send `notifications/cancelled` for request `id` (its id upstream) with `reason`.
    /// Nothing waits for it: a failure only means the session is ending anyway.
    fn cancel_upstream(&self, id: RequestId, reason: &str);
}

/// Which way a request went to the upstream, so its cancellation follows it.
enum SentThrough {
    /// The direct lane, under the request's own id, which is also its progress token
    /// upstream; with the client's progress token if the client asked for progress.
    Lane(Option<ProgressToken>),
    /// rmcp's session, under rmcp's id for it (its cancellation is queued behind it).
    Rmcp(RequestId),
}

struct AttachedSession {
    context: InFlightContext,
    /// The engine itself, for the tasks that end a request later.
    engine: Weak<InFlight>,
    /// The session's direct lane, if it has one.
    lane: Option<Weak<dyn UpstreamCanceller>>,
    /// rmcp's session.
    rmcp: Box<dyn UpstreamCanceller>,
}

struct InFlightTable {
    next_id: i64,
    requests: foldhash::HashMap<i64, InFlightRequest>,
    /// The client's progress tokens of lane requests that ended while progress was
    /// still queued for the client: that progress is forwarded before the outcome is
    /// handed over, and the route is forgotten then ([`InFlight::end`]).
    ending: foldhash::HashMap<i64, ProgressToken>,
    closed: bool,
    /// The sweeper is waiting for a request to watch, and needs a wake-up.
    sweeper_idle: bool,
}

/// One request in flight.
struct InFlightRequest {
    sink: Box<dyn AnswerSink>,
    /// When the request times out; progress pushes it back ([`InFlight::touch`]).
    deadline: Instant,
    /// How long it may be quiet.
    timeout: Duration,
    sent_through: SentThrough,
}

impl InFlightRequest {
    /// The client's progress token, for a lane request whose progress is routed here.
    fn client_token(&self) -> Option<&ProgressToken> {
        match &self.sent_through {
            SentThrough::Lane(client_token) => client_token.as_ref(),
            SentThrough::Rmcp(_) => None,
        }
    }
}

/// Where the outcome of a request goes. Called exactly once, unless the client cancels
/// the request first (`InFlight::cancel`), from the task that ends it (the upstream's
/// reader, the deadline sweeper, a caller giving up), never with a lock held.
pub trait AnswerSink: Send + 'static {
    fn deliver(self: Box<Self>, outcome: Result<ToolAnswer, UpstreamError>);

    /// The upstream answered with `answer`, a response line as it wrote it. By default
    /// it is read as the answer to a `tools/call` (`wire::tool_answer`) and delivered; a
    /// sink that hands the line to a peer that reads it itself may take it as it is.
    fn deliver_line(self: Box<Self>, answer: ResponseLine) {
        self.deliver(wire::tool_answer(answer).map_err(UpstreamError::Mcp));
    }
}

/// How a request ended, for its sink.
#[allow(
    clippy::large_enum_variant,
    reason = "made once per request and moved straight to its sink; boxing costs an allocation"
)]
enum Outcome {
    /// The upstream's answer line.
    Line(ResponseLine),
    /// An outcome made here: the error of a timeout, of the session ending, of the
    /// waiting caller giving up.
    Made(Result<ToolAnswer, UpstreamError>),
}

impl Outcome {
    fn deliver_to(self, sink: Box<dyn AnswerSink>) {
        match self {
            Outcome::Line(answer) => sink.deliver_line(answer),
            Outcome::Made(outcome) => sink.deliver(outcome),
        }
    }
}

/// A caller that waits for the outcome on a task: the outcome completes its receiver.
impl AnswerSink for oneshot::Sender<Result<ToolAnswer, UpstreamError>> {
    fn deliver(self: Box<Self>, outcome: Result<ToolAnswer, UpstreamError>) {
        // The caller may have given up this instant; then the outcome has no one to go to.
        let _ = self.send(outcome);
    }
}

/// Why [`InFlight::insert`] took no request.
pub enum NotTracked {
    /// The session ended: the sink is handed back with its error.
    Closed(Box<dyn AnswerSink>, UpstreamError),
    /// The session is not up yet ([`InFlight::attach`]).
    Detached,
}

impl Default for InFlight {
    fn default() -> Self {
        Self {
            table: Mutex::new(InFlightTable {
                next_id: FIRST_ID,
                requests: foldhash::HashMap::default(),
                ending: foldhash::HashMap::default(),
                closed: false,
                sweeper_idle: false,
            }),
            attached: OnceLock::new(),
            sweeper: Notify::new(),
        }
    }
}

impl InFlight {
    fn table(&self) -> MutexGuard<'_, InFlightTable> {
        self.table.lock_unpoisoned()
    }

    /// Give the engine what ending requests needs (with the two ways a request goes
    /// upstream: the session's `lane`, if it has one, and `rmcp`'s session), and start
    /// the task that times them out. Once per session; must be called inside the
    /// runtime.
    pub fn attach(
        self: &Arc<Self>,
        context: InFlightContext,
        lane: Option<Weak<dyn UpstreamCanceller>>,
        rmcp: Box<dyn UpstreamCanceller>,
    ) {
        let engine = Arc::downgrade(self);
        if lane.is_some() {
            // The lane's requests keep their progress routes here.
            context.routes.route_lane_progress(engine.clone());
        }
        if self.attached.set(AttachedSession { context, engine, lane, rmcp }).is_ok() {
            tokio::spawn(deadlines::sweep(self.clone()));
        }
    }

    /// The session's side, once it is up.
    pub fn context(&self) -> Option<&InFlightContext> {
        self.attached.get().map(|attached| &attached.context)
    }

    /// A fresh request id; `None` once the session ended, or before it is up
    /// ([`InFlight::attach`]).
    pub fn next_id(&self) -> Option<i64> {
        self.attached.get()?;
        let mut table = self.table();
        if table.closed {
            return None;
        }
        let id = table.next_id;
        table.next_id = if id >= i64::from(i32::MAX) { FIRST_ID } else { id + 1 };
        Some(id)
    }

    /// Track lane request `id` (from [`InFlight::next_id`]), about to be sent, until its
    /// outcome goes to `sink`. It times out after `timeout` of quiet (the session's
    /// request timeout if `None`). With `client_token`, the upstream's progress under
    /// the request's id (its progress token upstream) goes to that token
    /// ([`InFlight::lane_progress`]).
    pub fn insert(
        &self,
        id: i64,
        sink: Box<dyn AnswerSink>,
        timeout: Option<Duration>,
        client_token: Option<ProgressToken>,
    ) -> Result<&InFlightContext, NotTracked> {
        self.track(id, sink, timeout, SentThrough::Lane(client_token))
    }

    /// Track request `id` (from [`InFlight::next_id`]), just sent through rmcp under
    /// rmcp's id `sent_as`: its deadline and cancellation, not its answer, which rmcp
    /// delivers to the caller. `sink` gets only the error of a timeout or of the
    /// session ending; the caller ends the request when the answer comes
    /// ([`InFlight::forget`]) or when it gives up ([`InFlight::cancel`]), and forgets
    /// its progress route itself (rmcp picked its token).
    pub fn insert_rmcp(
        &self,
        id: i64,
        sent_as: RequestId,
        sink: Box<dyn AnswerSink>,
        timeout: Option<Duration>,
    ) -> Result<&InFlightContext, NotTracked> {
        self.track(id, sink, timeout, SentThrough::Rmcp(sent_as))
    }

    fn track(
        &self,
        id: i64,
        sink: Box<dyn AnswerSink>,
        timeout: Option<Duration>,
        sent_through: SentThrough,
    ) -> Result<&InFlightContext, NotTracked> {
        let Some(context) = self.context() else { return Err(NotTracked::Detached) };
        let mut table = self.table();
        if table.closed {
            drop(table);
            return Err(NotTracked::Closed(sink, context.closed()));
        }
        let timeout = timeout.unwrap_or(context.timeout);
        let request = InFlightRequest { sink, deadline: Instant::now() + timeout, timeout, sent_through };
        table.requests.insert(id, request);
        if std::mem::take(&mut table.sweeper_idle) {
            self.sweeper.notify_one();
        }
        Ok(context)
    }

    /// If `read` finds the id of a request in flight (it runs under the table's lock,
    /// only when some request is in flight), end that request with the answer line
    /// `answer` makes of what `read` found, and return `true`.
    pub fn complete<T>(
        &self,
        read: impl FnOnce() -> Option<(i64, T)>,
        answer: impl FnOnce(T) -> ResponseLine,
    ) -> bool {
        let Some(context) = self.context() else { return false };
        let mut table = self.table();
        if table.requests.is_empty() {
            return false;
        }
        let Some((id, found)) = read() else { return false };
        let Some(request) = table.requests.remove(&id) else { return false };
        if let SentThrough::Rmcp(_) = request.sent_through {
            // Not a lane call: rmcp answers it under its own id; this line is rmcp's.
            table.requests.insert(id, request);
            return false;
        }
        let ending = table.ending(id, request, context);
        drop(table);
        self.end(ending, Outcome::Line(answer(found)));
        true
    }

    /// The upstream sent progress under `token`: if that is the id of a lane request
    /// whose progress the client asked for, the client's token, and the request's
    /// timeout starts again. A request that ended with progress still queued for the
    /// client keeps its route until that progress is forwarded.
    pub fn lane_progress(&self, token: &ProgressToken) -> Option<ProgressToken> {
        let NumberOrString::Number(id) = token.0 else { return None };
        let mut table = self.table();
        if let Some(request) = table.requests.get_mut(&id) {
            let client_token = request.client_token()?.clone();
            request.deadline = Instant::now() + request.timeout;
            return Some(client_token);
        }
        table.ending.get(&id).cloned()
    }

    /// The ids of the lane requests in flight (rmcp knows its own).
    pub fn lane_ids(&self) -> Vec<i64> {
        let table = self.table();
        let lane =
            table.requests.iter().filter(|(_, request)| matches!(request.sent_through, SentThrough::Lane(_)));
        lane.map(|(id, _)| *id).collect()
    }

    /// Progress arrived for request `id`: its timeout starts again.
    pub fn touch(&self, id: i64) {
        if let Some(request) = self.table().requests.get_mut(&id) {
            request.deadline = Instant::now() + request.timeout;
        }
    }

    /// The session ended: fail every request in flight and refuse new ones.
    pub fn close(&self) {
        let Some(context) = self.context() else {
            self.table().closed = true;
            self.sweeper.notify_one();
            return;
        };
        let ending: Vec<_> = {
            let mut table = self.table();
            table.closed = true;
            let requests = std::mem::take(&mut table.requests);
            requests.into_iter().map(|(id, request)| table.ending(id, request, context)).collect()
        };
        self.sweeper.notify_one();
        for ending in ending {
            context.broken.cancel();
            self.end(ending, Outcome::Made(Err(context.closed())));
        }
    }

    /// Request `id` could not be written: the session is broken.
    pub fn fail(&self, id: i64, cause: String) {
        let Some(context) = self.context() else { return };
        let Some(ending) = self.take_ending(id, context) else { return };
        context.broken.cancel();
        self.end(
            ending,
            Outcome::Made(Err(UpstreamError::Transport { name: context.name.to_string(), cause })),
        );
    }

    /// The client cancelled request `id`: it is forgotten (its sink is dropped unused,
    /// its progress route with it) and the upstream is told. Nothing happens if it has
    /// already ended.
    pub fn cancel(&self, id: i64) {
        let Some(request) = self.take(id) else { return };
        self.cancel_upstream(id, &request, "cancelled by the client");
    }

    /// The caller waiting for request `id` gave it up with `error` (the client
    /// cancelled it): the upstream is told, and the sink gets `error` once the progress
    /// queued before it has reached the client. Nothing happens if it has already ended.
    pub fn abort(&self, id: i64, error: UpstreamError) {
        let Some(context) = self.context() else { return };
        let Some(ending) = self.take_ending(id, context) else { return };
        self.cancel_upstream(id, &ending.request, "cancelled by the client");
        self.end(ending, Outcome::Made(Err(error)));
    }

    /// Forget request `id` without telling anyone: its caller is gone, and its late
    /// answer goes to rmcp, which logs and drops it.
    pub fn forget(&self, id: i64) {
        self.take(id);
    }

    /// Take request `id` out of the table, if it is still there.
    fn take(&self, id: i64) -> Option<InFlightRequest> {
        self.table().requests.remove(&id)
    }

    /// Take request `id` out of the table to hand its outcome over, if it is still
    /// there ([`InFlightTable::ending`]).
    fn take_ending(&self, id: i64, context: &InFlightContext) -> Option<Ending> {
        let mut table = self.table();
        let request = table.requests.remove(&id)?;
        Some(table.ending(id, request, context))
    }

    /// Tell the upstream to stop working on `request` (id `id`), the way it was sent.
    fn cancel_upstream(&self, id: i64, request: &InFlightRequest, reason: &str) {
        let Some(attached) = self.attached.get() else { return };
        match &request.sent_through {
            SentThrough::Lane(_) => {
                if let Some(lane) = attached.lane.as_ref().and_then(Weak::upgrade) {
                    lane.cancel_upstream(RequestId::Number(id), reason);
                }
            }
            SentThrough::Rmcp(sent_as) => attached.rmcp.cancel_upstream(sent_as.clone(), reason),
        }
    }

    /// Hand `outcome` (the answer, or why the request failed) to the sink of a request
    /// taken out of the table. Progress queued before the outcome reaches the client
    /// first; then the request's route is forgotten.
    fn end(&self, ending: Ending, outcome: Outcome) {
        let Ending { id, request, after_progress } = ending;
        if !after_progress {
            return outcome.deliver_to(request.sink);
        }
        let Some(attached) = self.attached.get() else { return };
        let (engine, tapped) = (attached.engine.clone(), attached.context.tapped.clone());
        spawn_detached(async move {
            tapped.flush().await;
            if let Some(engine) = engine.upgrade() {
                engine.table().ending.remove(&id);
            }
            outcome.deliver_to(request.sink);
        });
    }
}

/// A request taken out of the table, to be ended with an outcome ([`InFlight::end`]).
struct Ending {
    id: i64,
    request: InFlightRequest,
    /// Progress routed to the client is still queued: the outcome waits for it, and
    /// the route stays in [`InFlightTable::ending`] until then.
    after_progress: bool,
}

impl InFlightTable {
    /// `request` (id `id`) was just taken out of the table to be ended with an
    /// outcome. Decided under the table's lock, which the progress forwarder takes to
    /// find a route ([`InFlight::lane_progress`]): if progress is still queued for the
    /// client, the route stays until that progress is forwarded. Every notification
    /// the upstream sent before the answer is queued by then, since the session's one
    /// reader queues them in order.
    fn ending(&mut self, id: i64, request: InFlightRequest, context: &InFlightContext) -> Ending {
        let mut after_progress = false;
        if let Some(client_token) = request.client_token()
            && !context.tapped.is_drained()
        {
            self.ending.insert(id, client_token.clone());
            after_progress = true;
        }
        Ending { id, request, after_progress }
    }
}

/// Run `task` on the runtime, if there is one (a session closed while the runtime
/// shuts down has nothing left to do).
pub fn spawn_detached(task: impl Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(task);
    }
}

#[cfg(test)]
mod tests;

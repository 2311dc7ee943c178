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
//! - **the deadline**: one sweeper task per session ([`sweep`]) sleeps until the
//!   earliest deadline and times out a request that has been quiet for its timeout;
//!   the upstream is told (`notifications/cancelled`, through the
//!   [`UpstreamCanceller`]), the sink gets [`UpstreamError::Timeout`];
//! - **progress**: the request's route ([`progress::ProgressRoute`]) forwards the
//!   upstream's progress under the client's token and pushes the deadline back
//!   ([`InFlight::touch`]); progress queued before the outcome reaches the client
//!   first, then the route is forgotten;
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
//!   the engine's id is the request's id upstream, its progress token too, and the
//!   answer line comes back to the engine. A caller that waits on a task gives a
//!   oneshot sender as the sink (it implements [`AnswerSink`]), so a call with a
//!   waiting task and one without take the same path;
//! - **through rmcp's session** (every other request, and every call on other
//!   sessions; [`InFlight::insert_rmcp`]): rmcp picks the request's id and progress
//!   token and delivers the answer to the waiting caller (`Connection`), which ends
//!   the request in the engine then; the engine keeps its deadline, the route's
//!   timeout restarts, and the cancellation, which it queues through rmcp behind the
//!   request ([`UpstreamCanceller`]). Its sink gets only a timeout or the session's
//!   end.

pub mod progress;

use std::{
    sync::{Arc, Mutex, MutexGuard, OnceLock, Weak},
    time::Duration,
};

use rmcp::model::RequestId;
use tokio::{
    sync::{Notify, oneshot},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use self::progress::ProgressRoutes;
use super::{ToolAnswer, UpstreamError, tap::TapQueue};
use crate::locks::Unpoisoned;

/// The first request id the engine hands out; ids wrap back to it after `i32::MAX`.
pub const FIRST_ID: i64 = 1_000_000_000;

/// The requests in flight on one upstream session; see the module doc.
pub struct InFlight {
    /// Requests waiting for their outcome. Entries are added by [`InFlight::insert`],
    /// removed by whoever ends the request, and all failed when the session ends.
    table: Mutex<InFlightTable>,
    /// What ending a request needs from the session; set once it is up.
    attached: OnceLock<AttachedSession>,
    /// Wakes the deadline sweeper ([`sweep`]) when it has nothing to watch.
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
    /// The direct lane, under the request's own id.
    Lane,
    /// rmcp's session, under rmcp's id for it (its cancellation is queued behind it).
    Rmcp(RequestId),
}

struct AttachedSession {
    context: InFlightContext,
    /// The session's direct lane, if it has one.
    lane: Option<Weak<dyn UpstreamCanceller>>,
    /// rmcp's session.
    rmcp: Box<dyn UpstreamCanceller>,
}

struct InFlightTable {
    next_id: i64,
    requests: foldhash::HashMap<i64, InFlightRequest>,
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
    /// Whether progress is routed under the request's id; the engine then forgets the
    /// route when the request ends.
    routed: bool,
    sent_through: SentThrough,
}

/// Where the outcome of a request goes. Called exactly once, unless the client cancels
/// the request first (`InFlight::cancel`), from the task that ends it (the upstream's
/// reader, the deadline sweeper, a caller giving up), never with a lock held.
pub trait AnswerSink: Send + 'static {
    fn deliver(self: Box<Self>, outcome: Result<ToolAnswer, UpstreamError>);
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
        if self.attached.set(AttachedSession { context, lane, rmcp }).is_ok() {
            tokio::spawn(sweep(self.clone()));
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
    /// request timeout if `None`); `routed` says its progress is routed under its id
    /// ([`progress::request_token`]). Returns the request's context.
    pub fn insert(
        &self,
        id: i64,
        sink: Box<dyn AnswerSink>,
        timeout: Option<Duration>,
        routed: bool,
    ) -> Result<&InFlightContext, NotTracked> {
        self.track(id, sink, timeout, routed, SentThrough::Lane)
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
        self.track(id, sink, timeout, false, SentThrough::Rmcp(sent_as))
    }

    fn track(
        &self,
        id: i64,
        sink: Box<dyn AnswerSink>,
        timeout: Option<Duration>,
        routed: bool,
        sent_through: SentThrough,
    ) -> Result<&InFlightContext, NotTracked> {
        let Some(context) = self.context() else { return Err(NotTracked::Detached) };
        let mut table = self.table();
        if table.closed {
            drop(table);
            return Err(NotTracked::Closed(sink, context.closed()));
        }
        let timeout = timeout.unwrap_or(context.timeout);
        let request =
            InFlightRequest { sink, deadline: Instant::now() + timeout, timeout, routed, sent_through };
        table.requests.insert(id, request);
        if std::mem::take(&mut table.sweeper_idle) {
            self.sweeper.notify_one();
        }
        Ok(context)
    }

    /// Whether request `id` is still in flight.
    pub fn contains(&self, id: i64) -> bool {
        self.table().requests.contains_key(&id)
    }

    /// If `read` finds the id of a request in flight (it runs under the table's lock,
    /// only when some request is in flight), end that request with the outcome `answer`
    /// makes of what `read` found, and return `true`.
    pub fn complete<T>(
        &self,
        read: impl FnOnce() -> Option<(i64, T)>,
        answer: impl FnOnce(T) -> Result<ToolAnswer, UpstreamError>,
    ) -> bool {
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
        drop(table);
        self.end(id, request, answer(found));
        true
    }

    /// The ids of the lane requests in flight (rmcp knows its own).
    pub fn lane_ids(&self) -> Vec<i64> {
        let table = self.table();
        let lane =
            table.requests.iter().filter(|(_, request)| matches!(request.sent_through, SentThrough::Lane));
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
        let requests = {
            let mut table = self.table();
            table.closed = true;
            std::mem::take(&mut table.requests)
        };
        self.sweeper.notify_one();
        let Some(context) = self.context() else { return };
        for (id, request) in requests {
            context.broken.cancel();
            self.end(id, request, Err(context.closed()));
        }
    }

    /// Request `id` could not be written: the session is broken.
    pub fn fail(&self, id: i64, cause: String) {
        let (Some(context), Some(request)) = (self.context(), self.take(id)) else { return };
        context.broken.cancel();
        self.end(id, request, Err(UpstreamError::Transport { name: context.name.to_string(), cause }));
    }

    /// The client cancelled request `id`: it is forgotten (its sink is dropped unused)
    /// and the upstream is told. Nothing happens if it has already ended.
    pub fn cancel(&self, id: i64) {
        let Some(request) = self.take(id) else { return };
        self.cancel_upstream(id, &request, "cancelled by the client");
        self.unroute(id, request.routed);
    }

    /// The caller waiting for request `id` gave it up with `error` (the client
    /// cancelled it): the upstream is told, and the sink gets `error` once the progress
    /// queued before it has reached the client. Nothing happens if it has already ended.
    pub fn abort(&self, id: i64, error: UpstreamError) {
        let Some(request) = self.take(id) else { return };
        self.cancel_upstream(id, &request, "cancelled by the client");
        self.end(id, request, Err(error));
    }

    /// Forget request `id` without telling anyone: its caller is gone, and its late
    /// answer goes to rmcp, which logs and drops it.
    pub fn forget(&self, id: i64) {
        if let Some(request) = self.take(id) {
            self.unroute(id, request.routed);
        }
    }

    /// Take request `id` out of the table, if it is still there.
    fn take(&self, id: i64) -> Option<InFlightRequest> {
        self.table().requests.remove(&id)
    }

    /// Tell the upstream to stop working on `request` (id `id`), the way it was sent.
    fn cancel_upstream(&self, id: i64, request: &InFlightRequest, reason: &str) {
        let Some(attached) = self.attached.get() else { return };
        match &request.sent_through {
            SentThrough::Lane => {
                if let Some(lane) = attached.lane.as_ref().and_then(Weak::upgrade) {
                    lane.cancel_upstream(RequestId::Number(id), reason);
                }
            }
            SentThrough::Rmcp(sent_as) => attached.rmcp.cancel_upstream(sent_as.clone(), reason),
        }
    }

    /// Forget the progress route of request `id` (if `routed`): now if the routes are
    /// free, else as soon as they are.
    fn unroute(&self, id: i64, routed: bool) {
        let Some(context) = self.context().filter(|_| routed) else { return };
        if let Ok(mut routes) = context.routes.try_lock() {
            routes.remove(&progress::request_token(id));
            return;
        }
        let routes = context.routes.clone();
        spawn_detached(async move {
            routes.lock().await.remove(&progress::request_token(id));
        });
    }

    /// Hand `outcome` (the answer, or why the request failed) to the sink of request
    /// `id`, already out of the table, and forget its progress route. Progress queued
    /// before the outcome reaches the client first.
    fn end(&self, id: i64, request: InFlightRequest, outcome: Result<ToolAnswer, UpstreamError>) {
        let Some(context) = self.context() else { return };
        if !request.routed {
            request.sink.deliver(outcome);
        } else if context.tapped.is_drained() {
            self.unroute(id, true);
            request.sink.deliver(outcome);
        } else {
            let (routes, tapped) = (context.routes.clone(), context.tapped.clone());
            spawn_detached(async move {
                tapped.flush().await;
                routes.lock().await.remove(&progress::request_token(id));
                request.sink.deliver(outcome);
            });
        }
    }
}

/// Run `task` on the runtime, if there is one (a session closed while the runtime
/// shuts down has nothing left to do).
pub fn spawn_detached(task: impl Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(task);
    }
}

/// Time out requests that have been quiet for their timeout, until the session ends.
/// It sleeps until the earliest deadline, or, with no request in flight, until one is
/// sent.
async fn sweep(engine: Arc<InFlight>) {
    let Some(context) = engine.context() else { return };
    loop {
        let (expired, next) = {
            let mut table = engine.table();
            if table.closed {
                return;
            }
            let now = Instant::now();
            let expired: Vec<_> = table.requests.extract_if(|_, request| request.deadline <= now).collect();
            let next = table.requests.values().map(|request| request.deadline).min();
            table.sweeper_idle = next.is_none();
            (expired, next)
        };
        for (id, request) in expired {
            engine.cancel_upstream(id, &request, "request timeout");
            let seconds = request.timeout.as_secs();
            engine.end(id, request, Err(UpstreamError::Timeout { name: context.name.to_string(), seconds }));
        }
        // A close wakes it too, so it lets go of the engine at once.
        match next {
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    () = engine.sweeper.notified() => {}
                }
            }
            None => engine.sweeper.notified().await,
        }
    }
}

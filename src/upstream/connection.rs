//! The request side of one live MCP session with an upstream ([`Connection`]): every
//! request the bridge sends it, with progress routing, cancellation and timeouts, and
//! the pieces a new session is built from ([`session_parts`]).
//!
//! The path of a request, from [`Connection::call_tool`] or [`Connection::request`]:
//!
//! 1. **The way out.** A `tools/call` on a stdio session before protocol 2026-07-28
//!    takes the session's direct lane (`stdio/lane.rs`, `Connection::call_on_lane`): a
//!    [`LaneTicket`] reserves an id (the engine's, far above rmcp's), and
//!    `LaneTicket::send_owned` writes the request line itself (the arguments as the
//!    client wrote them; with a client progress token, the call's own token, the same
//!    number, in `_meta`, its route put in first) onto the session's write queue. Any
//!    other request, and every request on a remote or 2026-07-28 session, goes through
//!    rmcp's `Peer::send_request_with_option`, which picks the id and the progress
//!    token; with a client token, the route table stays locked from before the send
//!    until the route is in, so no progress can miss it.
//! 2. **In flight.** Either way the session's engine for requests in flight
//!    (`in_flight/`) tracks the request: it times out a request that has been quiet for
//!    the request timeout (or `RequestOptions::timeout`) and tells the upstream
//!    (`notifications/cancelled`), cancels it when the client does, restarts its
//!    deadline on progress, and fails it when the session ends. A lane call's outcome
//!    comes through a oneshot sink the task awaits; an rmcp request's answer comes from
//!    rmcp, and only a timeout or the session's end through the sink.
//! 3. **The answer.** On a stdio session `LineTransport` offers each line to the lane
//!    first (`Lane::claim`): the answer to a lane call completes it in the engine, as
//!    `wire::tool_answer` makes it (the result's text as written when it already has
//!    the shape a client before 2026-07-28 expects, else decoded). Other answers go on
//!    to rmcp, which completes the request's handle.
//! 4. **Progress and order.** The session's forwarder
//!    (`in_flight::progress::forward_tapped`) maps each progress notification back to
//!    the client's token and restarts the request's deadline. Before a request with a
//!    route returns, a barrier on the tap queue lets the progress queued before its
//!    answer reach the client first; then the route is removed.
//!
//! A request that finds the connection dead cancels the session's `broken` token, so
//! the supervisor reconnects at once.

use std::{sync::Arc, time::Duration};

use futures::future::{BoxFuture, FutureExt};
use rmcp::{
    Peer, RoleClient,
    model::{
        CancelledNotification, CancelledNotificationParam, ClientNotification, ClientRequest, CustomRequest,
        GetExtensions, ProgressToken, RequestId, ServerResult,
    },
    service::{PeerRequestOptions, ServiceError},
};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use super::{
    ClientLink, RequestOptions, UpstreamError,
    client_handler::UpstreamHandler,
    in_flight::{
        InFlight, InFlightContext, NotTracked, UpstreamCanceller,
        progress::{ProgressRoute, ProgressRoutes},
        spawn_detached,
    },
    raw_results::{RawResultWanted, RawResults},
    stdio::lane::{Lane, LaneTicket},
    tap::{ProgressWanted, TapQueue, TapReceiver},
};
use crate::wire::{ToolAnswer, ToolCall};

/// The request side of a live upstream session, shared by every caller.
pub struct Connection {
    name: Arc<str>,
    peer: Peer<RoleClient>,
    routes: Arc<ProgressRoutes>,
    /// Producer side of the ordered queue, used to post flush barriers.
    tapped: TapQueue,
    /// Cancelled when a request finds the connection dead, so the supervisor
    /// reconnects instead of waiting for the transport to notice.
    broken: CancellationToken,
    /// The direct path for `tools/call` (`lane.rs`); stdio sessions before 2026-07-28.
    lane: Option<Arc<Lane>>,
    /// The session's requests in flight, on the lane or through rmcp (`in_flight/`).
    requests: Arc<InFlight>,
    /// The session's `tools/list` answers as written (`raw_results.rs`).
    raw_results: Arc<RawResults>,
}

impl Connection {
    pub fn peer(&self) -> &Peer<RoleClient> {
        &self.peer
    }

    /// Whether a request found this session dead; its supervisor then ends it.
    pub fn is_broken(&self) -> bool {
        self.broken.is_cancelled()
    }

    /// The session's `tools/list` answers as the upstream wrote them.
    pub fn raw_results(&self) -> &RawResults {
        &self.raw_results
    }

    /// An id on the session's direct lane for a `tools/call` no task will wait for
    /// ([`LaneTicket`]); `None` for sessions without a lane, or once it closed.
    pub fn ticket(&self) -> Option<LaneTicket> {
        self.lane.as_ref()?.ticket()
    }

    /// Send `request` through rmcp and wait for its result; see
    /// [`super::Upstreams::request`]. Tool calls take [`Connection::call_tool`].
    pub fn request(
        &self,
        request: ClientRequest,
        options: RequestOptions,
    ) -> BoxFuture<'_, Result<ServerResult, UpstreamError>> {
        self.request_via_rmcp(request, options).boxed()
    }

    /// Call a tool; see [`super::Upstreams::call_tool`].
    ///
    /// A boxed future of either path, not an async fn holding both: the caller's future
    /// (boxed and so copied whole) then holds a pointer instead of the larger path's state.
    pub fn call_tool(
        &self,
        call: ToolCall,
        options: RequestOptions,
    ) -> BoxFuture<'_, Result<ToolAnswer, UpstreamError>> {
        match &self.lane {
            Some(lane) => self.call_on_lane(lane, call, options).boxed(),
            None => self
                .request_via_rmcp(call.into_request(), options)
                .map(|result| result.map(ToolAnswer::Decoded))
                .boxed(),
        }
    }

    /// Send a request by method name and return its result as the upstream wrote it
    /// (`raw_results.rs`); the result rmcp decoded, encoded again, when the transport could
    /// not keep the text. For what rmcp does not model (tasks).
    pub async fn request_raw(
        &self,
        method: String,
        params: serde_json::Map<String, serde_json::Value>,
        options: RequestOptions,
    ) -> Result<serde_json::Value, UpstreamError> {
        let mut request = ClientRequest::CustomRequest(CustomRequest::new(method, Some(params.into())));
        request.extensions_mut().insert(RawResultWanted);
        let id = Arc::new(std::sync::OnceLock::new());
        let result = self.request_with_id(request, options, Some(&id)).await;
        let written = id.get().and_then(|id| self.raw_results.take(id));
        let result = result?;
        Ok(match written {
            Some(written) => written,
            None => serde_json::to_value(result).unwrap_or_default(),
        })
    }

    async fn request_via_rmcp(
        &self,
        request: ClientRequest,
        options: RequestOptions,
    ) -> Result<ServerResult, UpstreamError> {
        self.request_with_id(request, options, None).await
    }

    /// [`Connection::request_via_rmcp`], telling `sent_as` the id rmcp gave the request.
    async fn request_with_id(
        &self,
        mut request: ClientRequest,
        options: RequestOptions,
        sent_as: Option<&std::sync::OnceLock<RequestId>>,
    ) -> Result<ServerResult, UpstreamError> {
        if options.progress_token.is_some() {
            request.extensions_mut().insert(ProgressWanted);
        }
        let mut peer_options = PeerRequestOptions::no_options();
        if let Some(meta) = options.meta {
            peer_options = peer_options.with_meta(meta);
        }
        // The engine tracks the request under an id of its own: its deadline, the
        // client's cancellation, and what its progress restarts.
        let Some(key) = self.requests.next_id() else {
            self.broken.cancel();
            return Err(self.closed());
        };
        // With a progress token, the routes stay locked from before the request leaves
        // until its route is in place, so no progress notification can miss it. (One
        // `send` for both cases: each await of it would add its state to this future.)
        let routing = match options.progress_token {
            Some(client_token) => Some((self.routes.lock().await, client_token)),
            None => None,
        };
        let handle = self.send(request, peer_options).await?;
        let routed_token = routing.map(|(mut routes, client_token)| {
            let token = handle.progress_token.clone();
            routes
                .insert(token.clone(), ProgressRoute::new(client_token, Arc::downgrade(&self.requests), key));
            token
        });
        if let Some(sent_as) = sent_as {
            let _ = sent_as.set(handle.id.clone());
        }
        let (sink, ended) = oneshot::channel();
        let result = match self.requests.insert_rmcp(key, handle.id.clone(), Box::new(sink), options.timeout)
        {
            Ok(_) => {
                tokio::select! {
                    response = handle.await_response() => {
                        self.requests.forget(key);
                        response.map_err(|error| self.failed(error))
                    }
                    // The engine timed it out (and told the upstream), or the session ended.
                    ended = ended => Err(match ended {
                        Ok(Err(error)) => error,
                        Ok(Ok(_)) | Err(_) => self.closed(),
                    }),
                    () = options.cancel.cancelled() => {
                        self.requests.cancel(key);
                        Err(UpstreamError::Cancelled)
                    }
                }
            }
            Err(NotTracked::Closed(_, error)) => {
                self.broken.cancel();
                Err(error)
            }
            Err(NotTracked::Detached) => Err(self.closed()),
        };
        self.unroute(routed_token).await;
        result
    }

    /// A `tools/call` on the session's direct lane (`lane.rs`): the same contract as
    /// [`Connection::request`], without rmcp's session task in the path. The call is a
    /// [`LaneTicket`] like a call that no task waits for; its sink is a oneshot sender
    /// whose receiver this task awaits, so the session's engine for requests in flight
    /// (`in_flight/`) times it out, routes its progress and fails it when the session
    /// ends, as for every lane call.
    async fn call_on_lane(
        &self,
        lane: &Arc<Lane>,
        params: ToolCall,
        options: RequestOptions,
    ) -> Result<ToolAnswer, UpstreamError> {
        let Some(ticket) = lane.ticket() else {
            self.broken.cancel();
            return Err(self.closed());
        };
        let (sink, outcome) = oneshot::channel();
        ticket.send_owned(&params, options.meta, options.progress_token, options.timeout, Box::new(sink));
        drop(params);
        // If this future is dropped before the outcome, the call is forgotten.
        let _forget = ForgetOnDrop(&ticket);
        tokio::pin!(outcome);
        tokio::select! {
            outcome = &mut outcome => return self.lane_outcome(outcome),
            () = options.cancel.cancelled() => {}
        }
        // The outcome follows the call's queued progress, unless the answer won the race.
        ticket.abort(UpstreamError::Cancelled);
        self.lane_outcome(outcome.await)
    }

    /// What a lane call's oneshot sink delivered; a sink dropped unused means the
    /// session ended.
    fn lane_outcome(
        &self,
        outcome: Result<Result<ToolAnswer, UpstreamError>, oneshot::error::RecvError>,
    ) -> Result<ToolAnswer, UpstreamError> {
        outcome.unwrap_or_else(|_| {
            self.broken.cancel();
            Err(self.closed())
        })
    }

    /// After a request with a progress route: let its queued progress reach the client
    /// first, then forget the route.
    async fn unroute(&self, token: Option<ProgressToken>) {
        if let Some(token) = token {
            // Boxed, like the cancellations: only calls with a progress token get here.
            Box::pin(async {
                self.tapped.flush().await;
                self.routes.lock().await.remove(&token);
            })
            .await;
        }
    }

    fn closed(&self) -> UpstreamError {
        UpstreamError::NotConnected { name: self.name.to_string(), cause: "the connection closed".to_owned() }
    }

    async fn send(
        &self,
        request: ClientRequest,
        options: PeerRequestOptions,
    ) -> Result<rmcp::service::RequestHandle<RoleClient>, UpstreamError> {
        // `send_request_with_option` rather than `send_cancellable_request`, which only
        // wraps it: each async layer keeps its own copy of the request in the future.
        self.peer.send_request_with_option(request, options).await.map_err(|error| self.failed(error))
    }

    /// Map a failed request to an [`UpstreamError`]; a dead connection also marks the
    /// session broken.
    fn failed(&self, error: ServiceError) -> UpstreamError {
        let error = self.service_error(error);
        if matches!(error, UpstreamError::NotConnected { .. } | UpstreamError::Transport { .. }) {
            self.broken.cancel();
        }
        error
    }

    fn service_error(&self, error: ServiceError) -> UpstreamError {
        match error {
            ServiceError::McpError(error) => UpstreamError::Mcp(error),
            ServiceError::Cancelled { .. } => UpstreamError::Cancelled,
            ServiceError::TransportClosed => self.closed(),
            other => UpstreamError::Transport {
                name: self.name.to_string(),
                cause: crate::http_client::describe_http_error(&other),
            },
        }
    }
}

/// Cancels requests sent through rmcp's session, behind the requests it queued: the
/// engine's way to reach the upstream for them.
struct RmcpCanceller(Peer<RoleClient>);

impl UpstreamCanceller for RmcpCanceller {
    fn cancel_upstream(&self, id: RequestId, reason: &str) {
        let notification =
            CancelledNotification::new(CancelledNotificationParam::new(Some(id), Some(reason.to_owned())));
        let peer = self.0.clone();
        spawn_detached(async move {
            let _ = peer.send_notification(ClientNotification::CancelledNotification(notification)).await;
        });
    }
}

/// The pieces a new session is made of; see [`start`].
pub struct SessionParts {
    pub handler: UpstreamHandler,
    pub connection_parts: ConnectionParts,
    pub tapped_rx: TapReceiver,
    pub tapped_tx: TapQueue,
}

pub struct ConnectionParts {
    name: Arc<str>,
    pub routes: Arc<ProgressRoutes>,
    request_timeout: Duration,
    /// Shared with the session's tap and transport, which fill it.
    pub raw_results: Arc<RawResults>,
}

impl ConnectionParts {
    /// Finish the connection once rmcp has initialized the session.
    pub fn into_connection(
        self,
        peer: Peer<RoleClient>,
        tapped: TapQueue,
        broken: CancellationToken,
        lane: Option<Arc<Lane>>,
    ) -> Connection {
        let context = InFlightContext {
            name: self.name.clone(),
            routes: self.routes.clone(),
            tapped: tapped.clone(),
            timeout: self.request_timeout,
            broken: broken.clone(),
        };
        let rmcp = Box::new(RmcpCanceller(peer.clone()));
        let requests = match &lane {
            Some(lane) => {
                lane.attach(context, rmcp);
                lane.requests().clone()
            }
            None => {
                let requests = Arc::new(InFlight::default());
                requests.attach(context, None, rmcp);
                requests
            }
        };
        Connection {
            name: self.name,
            peer,
            routes: self.routes,
            tapped,
            broken,
            lane,
            requests,
            raw_results: self.raw_results,
        }
    }
}

/// Build the handler and queues for a new session of upstream `name`.
pub fn session_parts(
    name: Arc<str>,
    link: Arc<dyn ClientLink>,
    lists_changed: Arc<Notify>,
    request_timeout: Duration,
) -> SessionParts {
    let (tapped_tx, tapped_rx) = super::tap::queue();
    let routes = Arc::new(ProgressRoutes::default());
    SessionParts {
        handler: UpstreamHandler::new(name.clone(), link, lists_changed),
        connection_parts: ConnectionParts { name, routes, request_timeout, raw_results: Arc::default() },
        tapped_rx,
        tapped_tx,
    }
}

impl Drop for Connection {
    /// The session is over: its engine's deadline task ends (a lane's transport may
    /// have ended it already).
    fn drop(&mut self) {
        self.requests.close();
    }
}

/// Forgets a lane call whose waiting task went away ([`LaneTicket::forget`]); after its
/// outcome, there is nothing left to forget.
struct ForgetOnDrop<'a>(&'a LaneTicket);

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.forget();
    }
}

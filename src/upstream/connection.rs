//! One live MCP session with an upstream: the rmcp client handler that answers the
//! upstream's requests by asking the client, the ordered notification forwarder, and
//! the request path with progress routing, cancellation and timeouts.

use std::{
    future::Future,
    sync::{Arc, Weak},
    time::Duration,
};

use futures::future::{BoxFuture, FutureExt};
use rmcp::{
    ClientHandler, ErrorData, Peer, RoleClient,
    model::{
        CancelledNotification, CancelledNotificationParam, ClientCapabilities, ClientInfo,
        ClientNotification, ClientRequest, ClientResult, CreateMessageRequest, CreateMessageRequestParams,
        CreateMessageResult, CustomNotification, CustomRequest, CustomResult, ElicitRequest,
        ElicitRequestParams, ElicitResult, GetExtensions, Implementation, ListRootsRequest, ListRootsResult,
        LoggingMessageNotification, NumberOrString, ProgressNotification, ProgressToken, ProtocolVersion,
        RequestId, ResourceUpdatedNotification, ResourceUpdatedNotificationParam, ServerNotification,
        ServerRequest, ServerResult,
    },
    service::{NotificationContext, PeerRequestOptions, RequestContext, ServiceError},
};
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use super::{
    ClientLink, RequestOptions, UpstreamError,
    raw_results::{RawResultWanted, RawResults},
    stdio::lane::{self, Call, Lane, Ticket},
    tap::{ProgressWanted, TapQueue, TapReceiver, Tapped},
};
use crate::wire::{self, ToolAnswer, ToolCall};

/// Where progress for one in-flight request goes.
pub struct ProgressRoute {
    client_token: ProgressToken,
    /// Told of each progress notification; restarts the request timeout.
    activity: Activity,
}

/// Who restarts a request's timeout when progress arrives.
enum Activity {
    /// The task waiting for the request ([`Connection::wait`]).
    Waiter(Arc<Notify>),
    /// The lane the call was sent on without a waiting task (`lane::Ticket`).
    Lane(Weak<Lane>),
}

impl ProgressRoute {
    /// The route of a lane call that no task waits for.
    pub fn for_lane(client_token: ProgressToken, lane: Weak<Lane>) -> Self {
        Self { client_token, activity: Activity::Lane(lane) }
    }

    fn waiter(client_token: ProgressToken, activity: &Arc<Notify>) -> Self {
        Self { client_token, activity: Activity::Waiter(activity.clone()) }
    }

    /// Progress arrived under upstream token `token`.
    fn touch(&self, token: &ProgressToken) {
        match &self.activity {
            Activity::Waiter(activity) => activity.notify_one(),
            Activity::Lane(lane) => {
                if let (Some(lane), NumberOrString::Number(id)) = (lane.upgrade(), &token.0) {
                    lane.touch(*id);
                }
            }
        }
    }
}

/// Upstream progress token → route. A request through rmcp (which picks the token) locks
/// it from before its message is queued until its route is in; a lane call knows its
/// token and puts the route in before writing. The forwarder locks it per progress
/// notification. Either way a fast upstream's first progress can never miss its route.
pub type ProgressRoutes = Mutex<foldhash::HashMap<ProgressToken, ProgressRoute>>;

/// The request side of a live upstream session, shared by every caller.
pub struct Connection {
    name: Arc<str>,
    peer: Peer<RoleClient>,
    routes: Arc<ProgressRoutes>,
    /// Producer side of the ordered queue, used to post flush barriers.
    tapped: TapQueue,
    request_timeout: Duration,
    /// Cancelled when a request finds the connection dead, so the supervisor
    /// reconnects instead of waiting for the transport to notice.
    broken: CancellationToken,
    /// The direct path for `tools/call` (`lane.rs`); stdio sessions before 2026-07-28.
    lane: Option<Arc<Lane>>,
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
    /// (`lane::Ticket`); `None` for sessions without a lane, or once it closed.
    pub fn ticket(&self) -> Option<Ticket> {
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
        let activity = Arc::new(Notify::new());
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
            routes.insert(token.clone(), ProgressRoute::waiter(client_token, &activity));
            token
        });
        let id = handle.id.clone();
        if let Some(sent_as) = sent_as {
            let _ = sent_as.set(id.clone());
        }
        let response = async { handle.await_response().await.map_err(|error| self.failed(error)) };
        let result = self.wait(response, id, &options.cancel, options.timeout, &activity).await;
        self.unroute(routed_token).await;
        result
    }

    /// A `tools/call` on the session's direct lane (`lane.rs`): the same contract as
    /// [`Connection::request`], without rmcp's session task in the path.
    async fn call_on_lane(
        &self,
        lane: &Lane,
        mut params: ToolCall,
        options: RequestOptions,
    ) -> Result<ToolAnswer, UpstreamError> {
        let Some(mut call) = lane.reserve() else {
            self.broken.cancel();
            return Err(self.closed());
        };
        let mut meta = params.meta.take().unwrap_or_default();
        if let Some(forwarded) = options.meta {
            meta.0.0.extend(forwarded.0.0);
        }
        let activity = Arc::new(Notify::new());
        // The lane knows the upstream's progress token (the call's id) before the request
        // leaves, so the route goes in first and no lock is held while it is written.
        let routed_token = match options.progress_token {
            Some(client_token) => {
                let token = ProgressToken(NumberOrString::Number(call.id));
                meta.set_progress_token(token.clone());
                let route = ProgressRoute::waiter(client_token, &activity);
                self.routes.lock().await.insert(token.clone(), route);
                Some(token)
            }
            None => None,
        };
        params.meta = (!meta.0.0.is_empty()).then_some(meta);
        if let Err(error) = lane.send(&call, &params).await {
            self.unroute(routed_token).await;
            self.broken.cancel();
            return Err(UpstreamError::Transport { name: self.name.to_string(), cause: error.to_string() });
        }
        let id = RequestId::Number(call.id);
        let Call { answer, .. } = &mut call;
        let response = async {
            match answer.await {
                Ok(answer) => wire::tool_answer(answer).map_err(UpstreamError::Mcp),
                Err(_) => {
                    self.broken.cancel();
                    Err(self.closed())
                }
            }
        };
        let result = self.wait(response, id, &options.cancel, options.timeout, &activity).await;
        self.unroute(routed_token).await;
        result
    }

    /// Wait for `response`, or give up on the request (id `id` upstream) when the client
    /// cancels it or it has been quiet for `timeout` (else the request timeout). Progress
    /// (`activity`) restarts the timeout.
    async fn wait<T>(
        &self,
        response: impl Future<Output = Result<T, UpstreamError>>,
        id: RequestId,
        cancel: &CancellationToken,
        timeout: Option<Duration>,
        activity: &Notify,
    ) -> Result<T, UpstreamError> {
        tokio::pin!(response);
        let timeout = timeout.unwrap_or(self.request_timeout);
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                result = &mut response => return result,
                () = cancel.cancelled() => {
                    // Boxed: the rare paths should not make every request's future larger.
                    Box::pin(cancel_upstream(&self.peer, id, "cancelled by the client")).await;
                    return Err(UpstreamError::Cancelled);
                }
                () = &mut deadline => {
                    Box::pin(cancel_upstream(&self.peer, id, "request timeout")).await;
                    return Err(UpstreamError::Timeout { name: self.name.to_string(), seconds: timeout.as_secs() });
                }
                () = activity.notified() => {
                    deadline.as_mut().reset(tokio::time::Instant::now() + timeout);
                }
            }
        }
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
            other => {
                UpstreamError::Transport { name: self.name.to_string(), cause: super::http::describe(&other) }
            }
        }
    }
}

async fn cancel_upstream(peer: &Peer<RoleClient>, id: rmcp::model::RequestId, reason: &str) {
    let notification =
        CancelledNotification::new(CancelledNotificationParam::new(Some(id), Some(reason.to_owned())));
    let _ = peer.send_notification(ClientNotification::CancelledNotification(notification)).await;
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
        if let Some(lane) = &lane {
            lane.attach(lane::Context {
                name: self.name.clone(),
                routes: self.routes.clone(),
                tapped: tapped.clone(),
                timeout: self.request_timeout,
                broken: broken.clone(),
            });
        }
        Connection {
            name: self.name,
            peer,
            routes: self.routes,
            tapped,
            request_timeout: self.request_timeout,
            broken,
            lane,
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
        handler: UpstreamHandler { name: name.clone(), link, lists_changed },
        connection_parts: ConnectionParts { name, routes, request_timeout, raw_results: Arc::default() },
        tapped_rx,
        tapped_tx,
    }
}

/// Drain the ordered notification queue of one session until it closes: progress goes
/// to the request that asked for it, log messages to the client, barriers are acked.
pub async fn forward_tapped(
    name: Arc<str>,
    link: Arc<dyn ClientLink>,
    routes: Arc<ProgressRoutes>,
    mut tapped: TapReceiver,
) {
    while let Some(item) = tapped.recv().await {
        forward_one(&name, &link, &routes, item).await;
        tapped.done();
    }
}

/// Forward one queued item; see [`forward_tapped`].
async fn forward_one(name: &str, link: &Arc<dyn ClientLink>, routes: &ProgressRoutes, item: Tapped) {
    match item {
        Tapped::Progress(mut progress) => {
            let routes_guard = routes.lock().await;
            let Some(route) = routes_guard.get(&progress.progress_token) else {
                tracing::debug!(upstream = %name, "progress for an unknown or finished request dropped");
                return;
            };
            route.touch(&progress.progress_token);
            progress.progress_token = route.client_token.clone();
            drop(routes_guard);
            let notification = ProgressNotification::new(progress);
            link.notify(name, ServerNotification::ProgressNotification(notification)).await;
        }
        Tapped::Log(log) => {
            let notification = LoggingMessageNotification::new(log);
            link.notify(name, ServerNotification::LoggingMessageNotification(notification)).await;
        }
        Tapped::Barrier(done) => {
            let _ = done.send(());
        }
    }
}

/// The rmcp client handler of one upstream session.
pub struct UpstreamHandler {
    name: Arc<str>,
    link: Arc<dyn ClientLink>,
    /// Signalled when the upstream says one of its lists changed; the supervisor re-lists.
    lists_changed: Arc<Notify>,
}

impl UpstreamHandler {
    async fn ask_client(
        &self,
        request: ServerRequest,
        context: RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        let result = self.link.request(&self.name, request, context.ct).await;
        if let Err(error) = &result {
            tracing::info!(upstream = %self.name, "answered a request of the upstream with an error: {}", error.message);
        }
        result
    }
}

fn unexpected(method: &str) -> ErrorData {
    ErrorData::internal_error(format!("the client answered `{method}` with an unexpected result"), None)
}

impl ClientHandler for UpstreamHandler {
    fn get_info(&self) -> ClientInfo {
        // What the client declared, no more: a server that sees sampling, elicitation or
        // roots may offer tools that need them, and those would always fail.
        let declared = self.link.client_capabilities();
        let mut capabilities = ClientCapabilities::default();
        capabilities.roots = declared.roots;
        capabilities.sampling = declared.sampling;
        capabilities.elicitation = declared.elicitation;
        ClientInfo::new(capabilities, Implementation::new("foxxy-bridge", env!("CARGO_PKG_VERSION")))
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let request = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
        match self.ask_client(request, context).await? {
            ClientResult::CreateMessageResult(result) => Ok(*result),
            _ => Err(unexpected("sampling/createMessage")),
        }
    }

    async fn list_roots(&self, context: RequestContext<RoleClient>) -> Result<ListRootsResult, ErrorData> {
        let request = ServerRequest::ListRootsRequest(ListRootsRequest::default());
        match self.ask_client(request, context).await? {
            ClientResult::ListRootsResult(result) => Ok(result),
            _ => Err(unexpected("roots/list")),
        }
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
        match self.ask_client(request, context).await? {
            ClientResult::ElicitResult(result) => Ok(result),
            _ => Err(unexpected("elicitation/create")),
        }
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleClient>,
    ) -> Result<CustomResult, ErrorData> {
        match self.ask_client(ServerRequest::CustomRequest(request), context).await? {
            ClientResult::CustomResult(result) => Ok(result),
            other => serde_json::to_value(other)
                .map(CustomResult)
                .map_err(|error| ErrorData::internal_error(error.to_string(), None)),
        }
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let notification = ResourceUpdatedNotification::new(params);
        self.link.notify(&self.name, ServerNotification::ResourceUpdatedNotification(notification)).await;
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.lists_changed.notify_one();
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.lists_changed.notify_one();
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.lists_changed.notify_one();
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _context: NotificationContext<RoleClient>,
    ) {
        self.link.notify(&self.name, ServerNotification::CustomNotification(notification)).await;
    }
}

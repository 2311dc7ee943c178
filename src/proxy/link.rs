//! The way back from upstreams to the client: [`DownstreamLink`] implements
//! [`ClientLink`] on top of the client's rmcp peer.
//!
//! It forwards server→client requests only when the client declared the capability
//! they need, maps resource URIs in notifications to their exposed form, and relays
//! cancellation of those requests in both directions.
//!
//! A request for a capability the client did not declare is refused with `-32601` naming
//! the capability. Toward the client it also maps task ids in `notifications/tasks/status`
//! to their exposed form and prefixes a log message's `logger` with the upstream's name
//! (neither when the bridge serves one upstream as that server itself).
//! `client_capabilities` is what upstreams are initialized with: the sampling, elicitation
//! and roots capabilities the client declared (none from a shell).
//! A custom request (a task the upstream asks the client to run, its `tasks/*`) goes to
//! the client as the upstream wrote it and is answered with the client's result as
//! written; progress tokens and client task ids are kept in `upstream_requests.rs`.

use std::sync::{Arc, OnceLock};

use futures::future::{BoxFuture, FutureExt};
use rmcp::{
    ErrorData, Peer, RoleServer,
    model::{
        CancelledNotification, CancelledNotificationParam, ClientCapabilities, ClientResult, CustomResult,
        ErrorCode, GetExtensions, ServerNotification, ServerRequest,
    },
    service::{PeerRequestOptions, ServiceError},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use serde_json::Value;

use super::{
    catalog::Catalog,
    upstream_requests::{KeepProgressToken, RawAnswerWanted, UpstreamRequests},
};
use crate::upstream::ClientLink;

/// Holds the client's peer once it has sent `initialize`.
pub struct DownstreamLink {
    /// Set once, by the `initialize` handler; read by every upstream request.
    peer: OnceLock<Peer<RoleServer>>,
    catalog: watch::Receiver<Arc<Catalog>>,
    requests: UpstreamRequests,
    /// Whether the bridge serves one upstream as that server itself
    /// (`Bridge::for_one_upstream`): log messages keep their `logger` and task status
    /// notifications their task ids (the bridge on the other side names the upstream
    /// and exposes the ids).
    as_upstream: bool,
}

impl DownstreamLink {
    /// The link of a bridge whose catalog is `catalog`; `as_upstream` for one that
    /// serves one upstream as that server itself.
    pub fn new(catalog: watch::Receiver<Arc<Catalog>>, as_upstream: bool) -> Self {
        Self { peer: OnceLock::new(), catalog, requests: UpstreamRequests::default(), as_upstream }
    }

    pub fn set_peer(&self, peer: Peer<RoleServer>) {
        let _ = self.peer.set(peer);
    }

    pub fn peer(&self) -> Option<&Peer<RoleServer>> {
        self.peer.get()
    }

    /// The client's side of upstreams' requests (`upstream_requests.rs`).
    pub fn upstream_requests(&self) -> &UpstreamRequests {
        &self.requests
    }

    async fn forward(
        &self,
        from: &str,
        mut request: ServerRequest,
        cancel: CancellationToken,
    ) -> Result<ClientResult, ErrorData> {
        let method = method_of(&request);
        let Some(peer) = self.peer.get() else {
            return Err(ErrorData::internal_error(
                format!(
                    "`{method}` from upstream `{from}` cannot be answered: no MCP client is connected to the bridge"
                ),
                None,
            ));
        };
        let capabilities = peer.peer_info().map(|info| info.capabilities.clone()).unwrap_or_default();
        let missing = missing_capability(&request, &capabilities).or_else(|| match &request {
            ServerRequest::CustomRequest(custom) => {
                self.requests.missing(&custom.method, custom.params.as_ref())
            }
            _ => None,
        });
        if let Some(capability) = missing {
            return Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!(
                    "upstream `{from}` sent `{method}`, but the MCP client did not declare the `{capability}` capability"
                ),
                None,
            ));
        }
        let origin = crate::upstream::origin_of(&request);
        let raw = self.ready_raw(from, &mut request)?;
        if origin.as_ref().is_some_and(|origin| origin.progress_token.is_some()) {
            request.extensions_mut().insert(KeepProgressToken);
        }
        let handle = peer
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await
            .map_err(|error| client_error(&method, error))?;
        let (id, token) = (handle.id.clone(), handle.progress_token.clone());
        if let Some(origin) = origin.clone().filter(|origin| origin.progress_token.is_some()) {
            self.requests.route_progress(token.clone(), origin);
        }
        let response = handle.await_response();
        let result = tokio::select! {
            result = response => result.map_err(|error| client_error(&method, error)),
            () = cancel.cancelled() => {
                let notification = CancelledNotification::new(CancelledNotificationParam::new(
                    Some(id.clone()),
                    Some(format!("cancelled by upstream `{from}`")),
                ));
                let _ = peer.send_notification(ServerNotification::CancelledNotification(notification)).await;
                Err(ErrorData::internal_error("request cancelled", None))
            }
        };
        self.requests.unroute_progress(&token);
        let written = self.requests.take(&id);
        let result = result?;
        let Some(raw) = raw else { return Ok(result) };
        let mut written = written.unwrap_or_else(|| serde_json::to_value(&result).unwrap_or_default());
        match raw {
            Raw::Tasked => {
                if let Some(origin) = &origin {
                    self.requests.created(origin, &written);
                }
            }
            Raw::TaskList => written = self.requests.keep_own(from, written),
            Raw::Other => {}
        }
        Ok(ClientResult::CustomResult(CustomResult(written)))
    }

    /// Mark a custom request (relayed as written) for its answer as written, and refuse a
    /// question about a task of the client that another upstream created.
    fn ready_raw(&self, from: &str, request: &mut ServerRequest) -> Result<Option<Raw>, ErrorData> {
        let ServerRequest::CustomRequest(custom) = request else { return Ok(None) };
        let params = custom.params.as_ref();
        let raw = match custom.method.as_str() {
            "tasks/list" => Raw::TaskList,
            "tasks/get" | "tasks/result" | "tasks/cancel" => {
                let task_id = params.and_then(|params| params.get("taskId")).and_then(Value::as_str);
                if let Some(task_id) = task_id
                    && !self.requests.visible_to(task_id, from)
                {
                    return Err(ErrorData::invalid_params(format!("unknown task `{task_id}`"), None));
                }
                Raw::Other
            }
            _ if params.and_then(|params| params.get("task")).is_some() => Raw::Tasked,
            _ => Raw::Other,
        };
        custom.extensions.insert(RawAnswerWanted);
        Ok(Some(raw))
    }
}

/// What the bridge does with a custom request's answer as written.
enum Raw {
    /// A task-augmented request: the task it creates belongs to the upstream.
    Tasked,
    /// `tasks/list`: only the upstream's own tasks.
    TaskList,
    Other,
}

fn method_of(request: &ServerRequest) -> String {
    match request {
        ServerRequest::CreateMessageRequest(_) => "sampling/createMessage".to_owned(),
        ServerRequest::ListRootsRequest(_) => "roots/list".to_owned(),
        ServerRequest::ElicitRequest(_) => "elicitation/create".to_owned(),
        ServerRequest::PingRequest(_) => "ping".to_owned(),
        ServerRequest::CustomRequest(request) => request.method.clone(),
        _ => "request".to_owned(),
    }
}

/// The client capability `request` needs, if the client did not declare it.
#[allow(deprecated)] // sampling and roots are live in the protocol versions we serve
fn missing_capability(request: &ServerRequest, capabilities: &ClientCapabilities) -> Option<&'static str> {
    match request {
        ServerRequest::CreateMessageRequest(_) if capabilities.sampling.is_none() => Some("sampling"),
        ServerRequest::ListRootsRequest(_) if capabilities.roots.is_none() => Some("roots"),
        ServerRequest::ElicitRequest(_) if capabilities.elicitation.is_none() => Some("elicitation"),
        ServerRequest::CustomRequest(custom) => match custom.method.as_str() {
            "sampling/createMessage" if capabilities.sampling.is_none() => Some("sampling"),
            "elicitation/create" if capabilities.elicitation.is_none() => Some("elicitation"),
            _ => None,
        },
        _ => None,
    }
}

fn client_error(method: &str, error: ServiceError) -> ErrorData {
    match error {
        ServiceError::McpError(error) => error,
        other => {
            ErrorData::internal_error(format!("the MCP client did not answer `{method}`: {other}"), None)
        }
    }
}

impl ClientLink for DownstreamLink {
    fn request(
        &self,
        from: &str,
        request: ServerRequest,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<ClientResult, ErrorData>> {
        let from = from.to_owned();
        async move { self.forward(&from, request, cancel).await }.boxed()
    }

    fn client_capabilities(&self) -> ClientCapabilities {
        self.peer
            .get()
            .and_then(|peer| peer.peer_info())
            .map(|info| info.capabilities.clone())
            .unwrap_or_default()
    }

    fn client_tasks(&self) -> Option<Value> {
        self.requests.relayable()
    }

    fn notify(&self, from: &str, mut notification: ServerNotification) -> BoxFuture<'_, ()> {
        let Some(peer) = self.peer.get() else {
            return async {}.boxed();
        };
        match &mut notification {
            ServerNotification::ResourceUpdatedNotification(updated) => {
                updated.params.uri = self.catalog.borrow().expose_uri(from, &updated.params.uri);
            }
            ServerNotification::CustomNotification(custom)
                if custom.method == "notifications/tasks/status" && !self.as_upstream =>
            {
                if let Some(task) = custom.params.as_mut() {
                    super::tasks::expose_ids(from, task);
                }
            }
            #[allow(deprecated)]
            ServerNotification::LoggingMessageNotification(log) if !self.as_upstream => {
                log.params.logger = Some(match log.params.logger.take() {
                    Some(logger) => format!("{from}/{logger}"),
                    None => from.to_owned(),
                });
            }
            _ => {}
        }
        async move {
            if let Err(error) = peer.send_notification(notification).await {
                tracing::debug!("could not forward a notification to the client: {error}");
            }
        }
        .boxed()
    }
}

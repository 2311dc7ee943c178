//! The way back from upstreams to the client: [`DownstreamLink`] implements
//! [`ClientLink`] on top of the client's rmcp peer.
//!
//! It forwards server→client requests only when the client declared the capability
//! they need, maps resource URIs in notifications to their exposed form, and relays
//! cancellation of those requests in both directions.
//!
//! A request for a capability the client did not declare is refused with `-32601` naming
//! the capability. Toward the client it also maps task ids in `notifications/tasks/status`
//! to their exposed form and prefixes a log message's `logger` with the upstream's name.
//! `client_capabilities` is what upstreams are initialized with: the sampling, elicitation
//! and roots capabilities the client declared (none from a shell).

use std::sync::{Arc, OnceLock};

use futures::future::{BoxFuture, FutureExt};
use rmcp::{
    ErrorData, Peer, RoleServer,
    model::{
        CancelledNotification, CancelledNotificationParam, ClientCapabilities, ClientResult, ErrorCode,
        ServerNotification, ServerRequest,
    },
    service::{PeerRequestOptions, ServiceError},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::catalog::Catalog;
use crate::upstream::ClientLink;

/// Holds the client's peer once it has sent `initialize`.
pub struct DownstreamLink {
    /// Set once, by the `initialize` handler; read by every upstream request.
    peer: OnceLock<Peer<RoleServer>>,
    catalog: watch::Receiver<Arc<Catalog>>,
}

impl DownstreamLink {
    pub fn new(catalog: watch::Receiver<Arc<Catalog>>) -> Self {
        Self { peer: OnceLock::new(), catalog }
    }

    pub fn set_peer(&self, peer: Peer<RoleServer>) {
        let _ = self.peer.set(peer);
    }

    pub fn peer(&self) -> Option<&Peer<RoleServer>> {
        self.peer.get()
    }

    async fn forward(
        &self,
        from: &str,
        request: ServerRequest,
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
        if let Some(capability) = missing_capability(&request, &capabilities) {
            return Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!(
                    "upstream `{from}` sent `{method}`, but the MCP client did not declare the `{capability}` capability"
                ),
                None,
            ));
        }
        let handle = peer
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await
            .map_err(|error| client_error(&method, error))?;
        let id = handle.id.clone();
        let response = handle.await_response();
        tokio::select! {
            result = response => result.map_err(|error| client_error(&method, error)),
            () = cancel.cancelled() => {
                let notification = CancelledNotification::new(CancelledNotificationParam::new(
                    Some(id),
                    Some(format!("cancelled by upstream `{from}`")),
                ));
                let _ = peer.send_notification(ServerNotification::CancelledNotification(notification)).await;
                Err(ErrorData::internal_error("request cancelled", None))
            }
        }
    }
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

    fn notify(&self, from: &str, mut notification: ServerNotification) -> BoxFuture<'_, ()> {
        let Some(peer) = self.peer.get() else {
            return async {}.boxed();
        };
        match &mut notification {
            ServerNotification::ResourceUpdatedNotification(updated) => {
                updated.params.uri = self.catalog.borrow().expose_uri(from, &updated.params.uri);
            }
            ServerNotification::CustomNotification(custom)
                if custom.method == "notifications/tasks/status" =>
            {
                if let Some(task) = custom.params.as_mut() {
                    super::tasks::expose_ids(from, task);
                }
            }
            #[allow(deprecated)]
            ServerNotification::LoggingMessageNotification(log) => {
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

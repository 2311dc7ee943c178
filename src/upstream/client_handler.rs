//! The rmcp client handler of one upstream session: it answers the upstream's own
//! requests (sampling, elicitation, roots, custom requests) by asking the client
//! through the [`ClientLink`], declares to the upstream only the capabilities the
//! client declared, and passes the upstream's notifications on (resource updates and
//! custom notifications to the client; list changes to the supervisor, which lists
//! again). Progress and log messages do not come here: the session's tap takes them
//! out first, in order (`tap.rs`, `in_flight/progress.rs`).

use std::sync::Arc;

use rmcp::{
    ClientHandler, ErrorData, RoleClient,
    model::{
        ClientCapabilities, ClientInfo, ClientResult, CreateMessageRequest, CreateMessageRequestParams,
        CreateMessageResult, CustomNotification, CustomRequest, CustomResult, ElicitRequest,
        ElicitRequestParams, ElicitResult, Implementation, ListRootsRequest, ListRootsResult,
        ProtocolVersion, ResourceUpdatedNotification, ResourceUpdatedNotificationParam, ServerNotification,
        ServerRequest,
    },
    service::{NotificationContext, RequestContext},
};
use tokio::sync::Notify;

use super::ClientLink;

/// The rmcp client handler of one upstream session.
pub struct UpstreamHandler {
    name: Arc<str>,
    link: Arc<dyn ClientLink>,
    /// Signalled when the upstream says one of its lists changed; the supervisor re-lists.
    lists_changed: Arc<Notify>,
}

impl UpstreamHandler {
    pub fn new(name: Arc<str>, link: Arc<dyn ClientLink>, lists_changed: Arc<Notify>) -> Self {
        Self { name, link, lists_changed }
    }

    /// The client's `capabilities.tasks` for the upstream (`client_tasks.rs`).
    pub fn client_tasks(&self) -> Option<serde_json::Value> {
        self.link.client_tasks()
    }

    async fn ask_client(
        &self,
        mut request: ServerRequest,
        context: RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        super::client_tasks::attach_origin(&self.name, &mut request, &context);
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

//! The rmcp `ServerHandler` of [`Bridge`]: one method per MCP request, each a thin
//! mapping from exposed names to an upstream request.
//!
//! It declares the server capabilities the bridge relays, minus the kinds turned off in
//! `bridge.aggregation`, and the protocol versions the bridge serves. On `initialize` it
//! hands the client's peer to the link and adds the merged instructions. An upstream's
//! `-32601` gets the upstream's name and the method; a (un)subscription to a resource of an
//! upstream that does not offer `subscribe` is refused.

use std::borrow::Cow;

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, ClientNotification, ClientRequest, CompleteRequest,
        CompleteRequestParams, CompleteResult, CustomNotification, ErrorCode, GetPromptRequest,
        GetPromptRequestParams, GetPromptResponse, Implementation, InitializeRequestParams, InitializeResult,
        ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
        PaginatedRequestParams, ProgressNotificationParam, ProtocolVersion, ReadResourceRequest,
        ReadResourceRequestParams, ReadResourceResponse, Reference, ResourceContents,
        RootsListChangedNotification, ServerCapabilities, ServerInfo, ServerResult, SetLevelRequestParams,
        SubscribeRequest, SubscribeRequestParams, UnsubscribeRequest, UnsubscribeRequestParams,
    },
    service::{NotificationContext, RequestContext},
};

use super::{Bridge, catalog::Route, expect_result};
use crate::upstream::RequestOptions;

impl Bridge {
    fn options(context: &RequestContext<RoleServer>) -> RequestOptions {
        RequestOptions::for_client(context.ct.clone(), context.meta.clone())
    }

    async fn forward(
        &self,
        route: &Route,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let method = request.method().to_owned();
        self.upstreams.request(&route.upstream, request, Self::options(context)).await.map_err(|error| {
            let mut error = error.into_error_data();
            if error.code == ErrorCode::METHOD_NOT_FOUND {
                error.message =
                    format!("upstream `{}` does not support `{method}`: {}", route.upstream, error.message)
                        .into();
            }
            error
        })
    }

    /// Refuse a (un)subscription to a resource of an upstream that did not declare
    /// resource subscriptions: it would be acknowledged and never honoured.
    fn check_subscribable(&self, route: &Route, method: &str) -> Result<(), ErrorData> {
        let view = self.upstreams.view();
        let view = view.borrow();
        let capabilities = view.get(&route.upstream).and_then(|state| state.catalog.as_ref());
        let subscribable = capabilities
            .and_then(|catalog| catalog.capabilities.resources.as_ref())
            .is_some_and(|resources| resources.subscribe == Some(true));
        if subscribable {
            return Ok(());
        }
        Err(ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!(
                "`{method}` is not supported for `{}`: its upstream `{}` does not support resource subscriptions",
                route.name, route.upstream
            ),
            None,
        ))
    }

    async fn resource_route(&self, uri: &str) -> Result<Route, ErrorData> {
        self.route(|catalog| catalog.resource(uri))
            .await
            .ok_or_else(|| ErrorData::resource_not_found(format!("unknown resource `{uri}`"), None))
    }
}

impl ServerHandler for Bridge {
    fn get_info(&self) -> ServerInfo {
        let mut capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_resources_subscribe()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        if !self.aggregation.tools {
            capabilities.tools = None;
        }
        if !self.aggregation.prompts {
            capabilities.prompts = None;
        }
        if !self.aggregation.resources {
            capabilities.resources = None;
        }
        ServerInfo::new(capabilities)
            .with_server_info(Implementation::new("foxxy-bridge", env!("CARGO_PKG_VERSION")))
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        // rmcp defaults to 2026-07-28, which has no `initialize` and no server→client
        // requests; clients of today speak up to 2025-11-25.
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        tracing::info!(
            client = %request.client_info.name,
            version = %request.client_info.version,
            protocol = %request.protocol_version,
            "client initialized"
        );
        context.peer.set_peer_info(request.clone());
        self.link.set_peer(context.peer.clone());
        if let Some(upstream) = self.serves_as.clone() {
            return self.initialize_as(&upstream, &request).await;
        }
        let mut result = self.negotiate_initialize(&request)?;
        result.instructions = self.instructions().await;
        Ok(result)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let catalog = self.settled_catalog().await;
        if let Some(conflict) = catalog.conflicts.first() {
            return Err(ErrorData::internal_error(conflict.clone(), None));
        }
        Ok(ListToolsResult::with_all_items(super::catalog::search::listed_tools(&catalog)))
    }

    /// Over stdio, an initialized session's `tools/call` is served by `stdio/calls.rs`
    /// (same routing, without rmcp's session task); this serves the rest.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let options = Self::options(&context);
        self.route_tool_call(request, options).await.map(CallToolResponse::from)
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let catalog = self.settled_catalog().await;
        Ok(ListPromptsResult::with_all_items(catalog.prompts.clone()))
    }

    async fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let route = self
            .route(|catalog| catalog.prompt(&request.name).cloned())
            .await
            .ok_or_else(|| ErrorData::invalid_params(format!("unknown prompt `{}`", request.name), None))?;
        request.name = route.name.clone();
        let result = self
            .forward(&route, ClientRequest::GetPromptRequest(GetPromptRequest::new(request)), &context)
            .await?;
        expect_result(result, |result| match result {
            ServerResult::GetPromptResult(result) => Ok(result),
            other => Err(Box::new(other)),
        })
        .map(GetPromptResponse::from)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let catalog = self.settled_catalog().await;
        Ok(ListResourcesResult::with_all_items(catalog.resources.clone()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let catalog = self.settled_catalog().await;
        Ok(ListResourceTemplatesResult::with_all_items(catalog.resource_templates.clone()))
    }

    async fn read_resource(
        &self,
        mut request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let exposed = request.uri.clone();
        let route = self.resource_route(&request.uri).await?;
        request.uri = route.name.clone();
        let result = self
            .forward(&route, ClientRequest::ReadResourceRequest(ReadResourceRequest::new(request)), &context)
            .await?;
        let mut result = expect_result(result, |result| match result {
            ServerResult::ReadResourceResult(result) => Ok(result),
            other => Err(Box::new(other)),
        })?;
        // Contents name the URI they belong to: give the client back the one it asked for.
        for contents in &mut result.contents {
            if let ResourceContents::TextResourceContents { uri, .. }
            | ResourceContents::BlobResourceContents { uri, .. } = contents
                && *uri == route.name
            {
                *uri = exposed.clone();
            }
        }
        Ok(ReadResourceResponse::from(result))
    }

    async fn subscribe(
        &self,
        mut request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let route = self.resource_route(&request.uri).await?;
        self.check_subscribable(&route, "resources/subscribe")?;
        request.uri = route.name.clone();
        self.forward(&route, ClientRequest::SubscribeRequest(SubscribeRequest::new(request)), &context)
            .await?;
        Ok(())
    }

    async fn unsubscribe(
        &self,
        mut request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let route = self.resource_route(&request.uri).await?;
        self.check_subscribable(&route, "resources/unsubscribe")?;
        request.uri = route.name.clone();
        self.forward(&route, ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(request)), &context)
            .await?;
        Ok(())
    }

    async fn complete(
        &self,
        mut request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let route = match &mut request.r#ref {
            Reference::Prompt(prompt) => {
                let route = self.route(|catalog| catalog.prompt(&prompt.name).cloned()).await;
                if let Some(route) = &route {
                    prompt.name = route.name.clone();
                }
                route
            }
            Reference::Resource(template) => {
                let route = self.route(|catalog| catalog.template(&template.uri)).await;
                if let Some(route) = &route {
                    template.uri = route.name.clone();
                }
                route
            }
            _ => None,
        };
        let Some(route) = route else {
            // Nothing to complete against: an empty completion, not an error.
            return Ok(CompleteResult::default());
        };
        let result = self
            .forward(&route, ClientRequest::CompleteRequest(CompleteRequest::new(request)), &context)
            .await?;
        expect_result(result, |result| match result {
            ServerResult::CompleteResult(result) => Ok(result),
            other => Err(Box::new(other)),
        })
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.upstreams.set_log_level(request.level).await;
        Ok(())
    }

    /// The client's progress on a request an upstream sent it (`upstream_requests.rs`).
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleServer>,
    ) {
        self.link.upstream_requests().progress(params).await;
    }

    /// `notifications/tasks/status` of a task the client runs for an upstream goes to
    /// that upstream.
    async fn on_custom_notification(
        &self,
        mut notification: CustomNotification,
        context: NotificationContext<RoleServer>,
    ) {
        if notification.method != "notifications/tasks/status" {
            return;
        }
        super::upstream_requests::restore_meta(&mut notification, &context);
        let task_id = notification.params.as_ref().and_then(|params| params.get("taskId"));
        let owner = task_id
            .and_then(serde_json::Value::as_str)
            .and_then(|id| self.link.upstream_requests().owner(id));
        if let Some(owner) = owner {
            owner.notify(notification).await;
        }
    }

    async fn on_roots_list_changed(&self, _context: NotificationContext<RoleServer>) {
        let notification =
            ClientNotification::RootsListChangedNotification(RootsListChangedNotification::default());
        self.upstreams.notify_all(notification).await;
    }
}

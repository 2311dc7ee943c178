//! [`BridgeService`]: the rmcp `Service` the stdio session runs. It answers the
//! requests whose results the bridge relays as the upstreams wrote them, which rmcp's
//! typed results cannot carry (a `Tool` keeps only the fields rmcp knows), and hands
//! every other request to [`Bridge`]'s `ServerHandler` (`handler.rs`).

use std::{borrow::Cow, sync::Arc};

use rmcp::{
    ErrorData, RoleServer, Service,
    model::{
        ClientNotification, ClientRequest, CustomResult, ErrorCode, ProtocolVersion, ServerInfo, ServerResult,
    },
    service::{NotificationContext, RequestContext},
};
use serde_json::{Map, Value};

use super::Bridge;

/// The bridge as the downstream session's service.
pub struct BridgeService(pub Arc<Bridge>);

impl BridgeService {
    /// `tools/list`: every exposed tool object (in search mode, the listed ones) as its
    /// upstream wrote it but the name, in one page.
    async fn list_tools(&self) -> Result<ServerResult, ErrorData> {
        let catalog = self.0.settled_catalog().await;
        if let Some(conflict) = catalog.conflicts.first() {
            return Err(ErrorData::internal_error(conflict.clone(), None));
        }
        // In search mode the client sees the meta-tools and the pinned tools only.
        let objects = match &catalog.search {
            Some(search) => &search.listed_objects,
            None => &catalog.tool_objects,
        };
        let tools = objects.iter().map(|object| Value::Object((**object).clone())).collect();
        let mut result = Map::new();
        result.insert("tools".to_owned(), Value::Array(tools));
        Ok(ServerResult::CustomResult(CustomResult(Value::Object(result))))
    }
}

impl Service<RoleServer> for BridgeService {
    async fn handle_request(
        &self,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        match request {
            ClientRequest::ListToolsRequest(_) if self.0.aggregation.tools => self.list_tools().await,
            ClientRequest::CustomRequest(_)
            | ClientRequest::GetTaskRequest(_)
            | ClientRequest::UpdateTaskRequest(_)
            | ClientRequest::CancelTaskRequest(_)
            | ClientRequest::ListSkillsRequest(_)
            | ClientRequest::GetSkillRequest(_)
            | ClientRequest::ReadResourceDirectoryRequest(_) => Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!("foxxy-bridge does not support `{}`", request.method()),
                None,
            )),
            request => Service::handle_request(&*self.0, request, context).await,
        }
    }

    async fn handle_notification(
        &self,
        notification: ClientNotification,
        context: NotificationContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Service::handle_notification(&*self.0, notification, context).await
    }

    fn get_info(&self) -> ServerInfo {
        Service::get_info(&*self.0)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Service::supported_protocol_versions(&*self.0)
    }
}

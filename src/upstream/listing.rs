//! Listing an upstream's catalog: `list_catalog` asks for the four lists an upstream's
//! capabilities offer, at once, and keeps each tool as the upstream wrote it
//! (`raw_results.rs`) beside rmcp's decoded form, which the bridge uses for names and
//! routing.

use std::{sync::Arc, time::Duration};

use rmcp::{
    model::{ClientRequest, JsonObject, ListToolsRequest, PaginatedRequestParams, ServerResult, Tool},
    service::{PeerRequestOptions, ServiceError},
};

use super::{UpstreamCatalog, connection::Connection};
use crate::http_client::describe_http_error;

/// List everything the upstream offers, per its declared capabilities.
pub async fn list_catalog(connection: &Connection, timeout: Duration) -> Result<UpstreamCatalog, String> {
    let peer = connection.peer();
    let info = peer.peer_info().ok_or("the upstream sent no initialize result")?;
    let capabilities = info.capabilities.clone();
    // The four lists are independent: ask for them at once.
    let listing = async {
        let (tools, prompts, resources, templates) = tokio::join!(
            async {
                if capabilities.tools.is_some() { list_tools(connection).await } else { Ok(Vec::new()) }
            },
            async {
                if capabilities.prompts.is_some() { peer.list_all_prompts().await } else { Ok(Vec::new()) }
            },
            async {
                if capabilities.resources.is_some() {
                    peer.list_all_resources().await
                } else {
                    Ok(Vec::new())
                }
            },
            async {
                if capabilities.resources.is_some() {
                    peer.list_all_resource_templates().await
                } else {
                    Ok(Vec::new())
                }
            },
        );
        let (tools, tool_objects) = tools?.into_iter().unzip();
        Ok::<_, rmcp::service::ServiceError>(UpstreamCatalog {
            protocol_version: info.protocol_version.to_string(),
            tasks: connection.raw_results().initialize_tasks(),
            capabilities: capabilities.clone(),
            instructions: info.instructions.clone(),
            tools,
            tool_objects,
            prompts: prompts?,
            resources: resources?,
            resource_templates: templates?,
        })
    };
    match tokio::time::timeout(timeout, listing).await {
        Ok(result) => result.map_err(|error| describe_http_error(&error)),
        Err(_) => Err(format!("listing did not finish within {} s", timeout.as_secs())),
    }
}

/// Every page of the upstream's tools, each decoded and as the upstream wrote it (its
/// decoded form encoded again when the transport could not keep the text).
async fn list_tools(connection: &Connection) -> Result<Vec<(Tool, Arc<JsonObject>)>, ServiceError> {
    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let request = ClientRequest::ListToolsRequest(ListToolsRequest {
            method: Default::default(),
            params: Some(PaginatedRequestParams::default().with_cursor(cursor)),
            extensions: Default::default(),
        });
        let handle =
            connection.peer().send_request_with_option(request, PeerRequestOptions::no_options()).await?;
        let id = handle.id.clone();
        let response = handle.await_response().await;
        let written =
            connection.raw_results().take(&id).and_then(|mut result| match result["tools"].take() {
                serde_json::Value::Array(tools) => Some(
                    tools
                        .into_iter()
                        .map(|tool| match tool {
                            serde_json::Value::Object(object) => object,
                            _ => JsonObject::new(),
                        })
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            });
        let ServerResult::ListToolsResult(page) = response? else {
            return Err(ServiceError::UnexpectedResponse);
        };
        let mut written = written.map(Vec::into_iter);
        for tool in page.tools {
            // The text is used only while it lists the same tools in the same order.
            let object = written
                .as_mut()
                .and_then(Iterator::next)
                .filter(|object| object.get("name").and_then(|name| name.as_str()) == Some(&*tool.name));
            let object = match object {
                Some(object) => object,
                None => {
                    written = None;
                    match serde_json::to_value(&tool) {
                        Ok(serde_json::Value::Object(object)) => object,
                        _ => JsonObject::new(),
                    }
                }
            };
            listed.push((tool, Arc::new(object)));
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            return Ok(listed);
        }
    }
}

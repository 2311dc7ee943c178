//! Listing an upstream's catalog, and results as the upstream wrote them.
//!
//! `list_catalog` asks for the four lists an upstream's capabilities offer, at once.
//!
//! rmcp decodes every result into its own types, which keep only the fields they know:
//! `execution` in a tool, a field of a newer protocol, a task (rmcp 3.11 models another
//! tasks proposal), or a server's own extension field would be lost on the way to the
//! client. So every session has a [`RawResults`]: the tap (`tap.rs`) marks the id
//! of each outgoing `tools/list` request and of each request marked [`RawResultWanted`],
//! each transport offers the JSON text of every incoming message while such an id is
//! open ([`RawResults::offer`]), and the capture keeps the `result` of the matching
//! response. `list_catalog` takes a `tools/list` result by the request's id and pairs its
//! tools with rmcp's decoded ones, which the bridge still uses for names and routing;
//! `Connection::request_raw` takes the others whole.
//!
//! The capture costs one atomic load per incoming message while no `tools/list` is
//! open. When a transport cannot offer the text (a streamable HTTP response sent as one
//! JSON body, which rmcp decodes below the bridge), the decoded tool is served as rmcp
//! encodes it.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use foldhash::HashMap;
use rmcp::{
    model::{
        ClientRequest, JsonObject, ListToolsRequest, PaginatedRequestParams, RequestId, ServerResult, Tool,
    },
    service::{PeerRequestOptions, ServiceError},
};
use serde::{Deserialize, de::IgnoredAny};
use serde_json::Value;

use super::{UpstreamCatalog, connection::Connection, remote};

/// Open `tools/list` ids beyond this are forgotten (answers that never came).
const MAX_OPEN: usize = 64;

/// Marks a request (in its rmcp extensions, never sent) whose result is wanted as the
/// upstream wrote it.
#[derive(Clone, Copy, Debug)]
pub struct RawResultWanted;

/// The raw results of one session's `tools/list` responses and of requests marked
/// [`RawResultWanted`], by request id.
#[derive(Default)]
pub struct RawResults {
    /// How many ids are open; read without the lock on every incoming message.
    open: AtomicUsize,
    /// Open ids (`None`) and answered ones (the raw result), until taken.
    lists: Mutex<HashMap<RequestId, Option<Value>>>,
    /// The id of the session's `initialize`, whose result holds what rmcp's capability
    /// type drops (`capabilities.tasks`).
    initialize: std::sync::OnceLock<RequestId>,
    /// Its result's `capabilities.tasks`, once taken (every re-listing reads it).
    initialize_tasks: std::sync::OnceLock<Option<Value>>,
}

impl RawResults {
    fn lists(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, Option<Value>>> {
        self.lists.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A request with id `id` whose result is wanted raw is being sent.
    pub fn expect(&self, id: RequestId) {
        let mut lists = self.lists();
        if lists.len() >= MAX_OPEN {
            lists.clear();
        }
        lists.insert(id, None);
        self.open.store(lists.len(), Ordering::SeqCst);
    }

    /// `text` is an incoming message: keep its result if it answers an open id.
    pub fn offer(&self, text: &[u8]) {
        if self.open.load(Ordering::SeqCst) == 0 {
            return;
        }
        #[derive(Deserialize)]
        struct Head {
            id: Option<RequestId>,
            method: Option<IgnoredAny>,
        }
        #[derive(Deserialize)]
        struct Answer {
            result: Value,
        }
        let Ok(Head { id: Some(id), method: None }) = serde_json::from_slice::<Head>(text) else { return };
        if !matches!(self.lists().get(&id), Some(None)) {
            return;
        }
        let Ok(answer) = serde_json::from_slice::<Answer>(text) else { return };
        if let Some(slot) = self.lists().get_mut(&id) {
            *slot = Some(answer.result);
        }
    }

    /// The session's `initialize` request, with id `id`, is being sent.
    pub fn expect_initialize(&self, id: RequestId) {
        let _ = self.initialize.set(id.clone());
        self.expect(id);
    }

    /// `capabilities.tasks` of the `initialize` result as written (`None` when it has
    /// none, for a session opened with `server/discover`, or when the transport could
    /// not keep the text).
    pub fn initialize_tasks(&self) -> Option<Value> {
        self.initialize_tasks
            .get_or_init(|| {
                let mut result = self.take(self.initialize.get()?)?;
                result.get_mut("capabilities")?.get_mut("tasks").map(Value::take)
            })
            .clone()
    }

    /// The result of the answer to request `id`, as written; `None` when the transport
    /// could not offer its text. The id is closed either way.
    pub fn take(&self, id: &RequestId) -> Option<Value> {
        let mut lists = self.lists();
        let taken = lists.remove(id).flatten();
        self.open.store(lists.len(), Ordering::SeqCst);
        taken
    }
}

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
        Ok(result) => result.map_err(|error| remote::describe(&error)),
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keeps_the_tools_of_open_lists_only() {
        let capture = RawResults::default();
        let answer = |id: i64| {
            json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [{"name": "a", "execution": {"taskSupport": "optional"}}]}})
                .to_string()
        };
        capture.offer(answer(1).as_bytes());
        assert!(capture.take(&RequestId::Number(1)).is_none(), "1 was never open");
        capture.expect(RequestId::Number(2));
        capture.offer(br#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#);
        capture.offer(answer(3).as_bytes());
        capture.offer(answer(2).as_bytes());
        let result = capture.take(&RequestId::Number(2)).expect("the answer to 2");
        assert_eq!(result["tools"][0]["execution"], json!({"taskSupport": "optional"}));
        assert_eq!(capture.open.load(Ordering::SeqCst), 0);
        assert!(capture.take(&RequestId::Number(2)).is_none(), "taken once");
    }
}

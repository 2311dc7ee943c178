//! Task requests served straight from the transport: a task-augmented `tools/call`
//! and `tasks/get`, `tasks/result`, `tasks/cancel`, `tasks/list`. rmcp 3.11 decodes
//! these into types of another tasks proposal (dropping `task`, `ttl`, `pollInterval`),
//! so the reader takes them before rmcp does and a task of their own relays them raw
//! ([`Bridge::relay_task_request`], `proxy/tasks.rs`). The id counts as in flight until
//! answered, and a `notifications/cancelled` for it cancels the task, as for a call.

use std::{collections::hash_map::Entry, sync::Arc};

use rmcp::model::{RequestId, ServerJsonRpcMessage};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::{
    Verdict,
    outbox::{Outbox, ServedBy},
    writer::Outgoing,
};
use crate::{proxy::Bridge, wire::number_or_string};

const TASK_METHODS: [&str; 4] = ["tasks/get", "tasks/result", "tasks/cancel", "tasks/list"];

/// A decoded task request, its id registered as in flight.
pub struct TaskRequest {
    id: RequestId,
    method: String,
    params: Map<String, Value>,
    cancel: CancellationToken,
    bridge: Arc<Bridge>,
}

/// `line` as a task request: its id, method and params. `None` for anything else.
pub fn decode(line: &str) -> Option<(RequestId, String, Map<String, Value>)> {
    #[derive(Deserialize)]
    struct Line {
        jsonrpc: String,
        #[serde(deserialize_with = "number_or_string")]
        id: RequestId,
        method: String,
        #[serde(default)]
        params: Map<String, Value>,
    }
    // Cheap first: most lines are nothing of the kind.
    if !line.contains("task") {
        return None;
    }
    let line: Line = serde_json::from_str(line).ok()?;
    let wanted = TASK_METHODS.contains(&line.method.as_str())
        || (line.method == "tools/call" && line.params.get("task").is_some_and(Value::is_object));
    (line.jsonrpc == "2.0" && wanted).then_some((line.id, line.method, line.params))
}

/// Serve task request `id`, or `None` when its id is already in flight (the general
/// path refuses it).
pub fn serve(
    outbox: &Arc<Outbox>,
    bridge: &Arc<Bridge>,
    id: RequestId,
    method: String,
    params: Map<String, Value>,
) -> Option<Verdict> {
    let mut in_flight = outbox.in_flight();
    let Entry::Vacant(slot) = in_flight.entry(id.clone()) else { return None };
    let cancel = CancellationToken::new();
    slot.insert(ServedBy::Task(cancel.clone()));
    Some(Verdict::TaskRequest(TaskRequest { id, method, params, cancel, bridge: bridge.clone() }))
}

impl TaskRequest {
    /// Relay the request on a task of its own and queue its answer for the client.
    pub fn spawn(self, outbox: Arc<Outbox>) {
        tokio::spawn(async move {
            let TaskRequest { id, method, params, cancel, bridge } = self;
            tracing::debug!(%id, %method, "task request");
            let result = bridge.relay_task_request(&method, params, cancel.clone()).await;
            if cancel.is_cancelled() {
                return;
            }
            let line = match result.and_then(|result| {
                serde_json::to_vec(&result)
                    .map_err(|error| rmcp::ErrorData::internal_error(error.to_string(), None))
            }) {
                Ok(result) => outbox.encode_result(id, &result),
                Err(error) => outbox.encode(&ServerJsonRpcMessage::error(error, Some(id))),
            };
            if let Some(line) = line {
                let _ = outbox.tx.send(Outgoing::Line(line)).await;
            }
        });
    }
}

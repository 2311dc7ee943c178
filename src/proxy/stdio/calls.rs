//! `tools/call` served straight from the transport.
//!
//! rmcp's server would take each request through its session task: a channel hop, a
//! task spawned with the request's context, its handler dispatch, and the answer back
//! through the task to this transport. For the one method a client sends over and over,
//! that is a large share of the bridge's cost per call. So once the session is
//! initialized, the reader decodes a `tools/call` here and serves it one of two ways:
//!
//! - When its upstream is a stdio session that is up, the reader writes the call to the
//!   upstream's lane itself (`upstream/stdio/lane.rs`, [`Bridge::tool_ticket`]), and no task
//!   waits for it: the upstream's reader hands the answer to a [`Reply`], which queues
//!   the client's answer line.
//! - Otherwise (an upstream still starting or reconnecting, HTTP and SSE upstreams) it
//!   runs on a task of its own, through the same routing the rmcp handler uses
//!   ([`Bridge::relay_tool_call`]).
//!
//! Without a task, the steps a waiting task would take are split between the reader and
//! the upstream's reader. Here: the call's id is recorded as in flight with its lane
//! ticket ([`ServedBy::Lane`]), and the ticket's `send` replaces the client's progress
//! token with the call's own, records the call in the lane's waiting list with its
//! deadline and a [`Reply`] (the client's id, the tool's exposed name), puts in the
//! progress route and queues the request line on the upstream's write queue. When the
//! answer comes, the lane takes the call out of its list and hands the outcome (the
//! result relayed raw or decoded, `wire::tool_answer`) to the [`Reply`], after flushing
//! progress queued before it. `Reply::deliver` checks that the id is still in flight
//! with this ticket (a cancellation that raced the answer suppresses it), shapes the
//! outcome as the task path does and queues the line for stdout. The lane times the
//! call out itself (telling the upstream), progress restarts its deadline, a client's
//! `notifications/cancelled` reaches the ticket's `cancel` (from the stdin reader), and
//! a session that ends fails it as "not connected".
//!
//! Either way the answer goes straight to the outbox, shaped by the same code
//! ([`crate::proxy::tool_outcome`], `answer_line`): a result the upstream sent in the
//! shape this client expects is relayed as it was written (`wire::tool_result`).
//!
//! What rmcp's session would have done for the request is done here too: the answer is
//! shaped for a client before 2026-07-28 (the only protocols the bridge serves), a
//! `notifications/cancelled` for it cancels it and suppresses its answer, and its id
//! counts as in flight until then. Everything else still goes through rmcp.

use std::{borrow::Cow, collections::hash_map::Entry, sync::Arc};

use rmcp::model::{CallToolResult, RequestId, ServerJsonRpcMessage, ServerResult};
use serde::{Deserialize, de::IgnoredAny};
use tokio_util::sync::CancellationToken;

use super::{
    Verdict,
    outbox::{Outbox, ServedBy},
    writer::Outgoing,
};
use crate::{
    proxy::Bridge,
    upstream::{AnswerSink, RequestOptions, UpstreamError},
    wire::{ResponseLine, ToolAnswer, ToolCall, ToolCallRef, number_or_string, tool_answer},
};

/// A decoded `tools/call`, its id registered as in flight, and the bridge to run it.
pub struct ToolCallTask {
    id: RequestId,
    params: ToolCall,
    cancel: CancellationToken,
    bridge: Arc<Bridge>,
}

/// Decode `line` as a `tools/call` request. `None` for anything else (and for a
/// `tools/call` that does not decode: the general decoder then says why).
pub fn decode(line: &str) -> Option<(RequestId, ToolCallRef<'_>)> {
    #[derive(Deserialize)]
    struct Line<'a> {
        // Borrowed: rmcp's `JsonRpcVersion2_0` reads it into a `String` first.
        #[serde(borrow)]
        jsonrpc: Cow<'a, str>,
        #[serde(deserialize_with = "number_or_string")]
        id: RequestId,
        #[serde(borrow)]
        method: Cow<'a, str>,
        #[serde(borrow)]
        params: ToolCallRef<'a>,
        // A request has neither; rmcp refuses a message with both shapes.
        result: Option<IgnoredAny>,
        error: Option<IgnoredAny>,
    }
    let line: Line<'_> = serde_json::from_str(line).ok()?;
    let request =
        line.jsonrpc == "2.0" && line.method == "tools/call" && line.result.is_none() && line.error.is_none();
    request.then_some((line.id, line.params))
}

/// Serve the `tools/call` request `id`, or `None` when its id is already in flight
/// (the general path refuses it). A call whose upstream has a direct lane now is sent
/// there and answered from the upstream's reader ([`Reply`]); any other runs on a task
/// of its own ([`ToolCallTask::spawn`]).
pub fn serve(
    outbox: &Arc<Outbox>,
    bridge: &Arc<Bridge>,
    id: RequestId,
    params: ToolCallRef<'_>,
) -> Option<Verdict> {
    let mut in_flight = outbox.in_flight();
    let Entry::Vacant(slot) = in_flight.entry(id.clone()) else { return None };
    let Some((name, ticket)) = bridge.tool_ticket(&params.name) else {
        // Cannot fail: `_meta` holds JSON text that was just read.
        let params = params.into_owned().ok()?;
        let cancel = CancellationToken::new();
        slot.insert(ServedBy::Task(cancel.clone()));
        return Some(Verdict::ToolCallTask(ToolCallTask { id, params, cancel, bridge: bridge.clone() }));
    };
    tracing::debug!(%id, tool = %params.name, "tools/call");
    let key = ticket.key();
    slot.insert(ServedBy::Lane(ticket.clone()));
    // The sink may be called at once (a session that just ended), and takes the lock.
    drop(in_flight);
    let as_written = bridge.relays_answers_as_written();
    let reply = Reply { id, outbox: outbox.clone(), exposed: params.name.to_string(), key, as_written };
    ticket.send(&name, &params, Box::new(reply));
    Some(Verdict::Drop)
}

/// Answers the client for a call sent on a direct lane.
struct Reply {
    id: RequestId,
    outbox: Arc<Outbox>,
    /// The tool's name as the client knows it, for errors.
    exposed: String,
    /// The call's ticket ([`LaneTicket::key`]).
    key: (usize, i64),
    /// The upstream's answer line goes to the client as written, with the client's id
    /// ([`Bridge::relays_answers_as_written`]).
    as_written: bool,
}

impl Reply {
    /// Whether the call is still the client's: `false` when the client cancelled it
    /// meanwhile (the answer was on its way), and then it gets no answer.
    fn still_wanted(&self) -> bool {
        let in_flight = self.outbox.in_flight();
        matches!(in_flight.get(&self.id), Some(ServedBy::Lane(ticket)) if ticket.key() == self.key)
    }
}

impl AnswerSink for Reply {
    fn deliver(self: Box<Self>, outcome: Result<ToolAnswer, UpstreamError>) {
        if !self.still_wanted() {
            return;
        }
        let Reply { id, outbox, exposed, .. } = *self;
        let outcome = crate::proxy::tool_outcome(&exposed, outcome);
        if let Some(line) = answer_line(&outbox, id, outcome) {
            outbox.queue(line);
        }
    }

    fn deliver_line(self: Box<Self>, answer: ResponseLine) {
        // Read as any answer unless it goes on as written: with the client's id where the
        // lane found the upstream's (a lane that reads answers only up to their id notes
        // where that is).
        let id_at = if self.as_written { answer.id_at.clone() } else { None };
        let Some(id_at) = id_at else {
            return self.deliver(tool_answer(answer).map_err(UpstreamError::Mcp));
        };
        if !self.still_wanted() {
            return;
        }
        if let Some(line) = self.outbox.encode_with_id(self.id, &answer.line, id_at) {
            self.outbox.queue(line);
        }
    }
}

/// The client's answer line to call `id`, the id no longer in flight.
fn answer_line(
    outbox: &Outbox,
    id: RequestId,
    outcome: Result<ToolAnswer<CallToolResult>, rmcp::ErrorData>,
) -> Option<Vec<u8>> {
    match outcome {
        // Already in the shape this client expects (`wire::tool_result`).
        Ok(ToolAnswer::Raw(raw)) => outbox.encode_result(id, raw.json()),
        Ok(ToolAnswer::Decoded(result)) => {
            let mut result = ServerResult::CallToolResult(result);
            result.strip_result_type_for_legacy_peer();
            result.strip_non_object_output_for_legacy_peer();
            outbox.encode(&ServerJsonRpcMessage::response(result, id))
        }
        Err(error) => outbox.encode(&ServerJsonRpcMessage::error(error, Some(id))),
    }
}

impl ToolCallTask {
    /// Run the call on a task of its own and queue its answer for the client.
    pub fn spawn(self, outbox: Arc<Outbox>) {
        tokio::spawn(async move {
            let ToolCallTask { id, mut params, cancel, bridge } = self;
            tracing::debug!(%id, tool = %params.name, "tools/call");
            // As rmcp's request context would: `_meta` travels as options, not as part
            // of the params.
            let meta = params.meta.take().unwrap_or_default();
            let options = RequestOptions::for_client(cancel.clone(), meta);
            let result = bridge.relay_tool_call(params, options).await;
            if cancel.is_cancelled() {
                // The client cancelled it: no answer (its id was freed then).
                return;
            }
            if let Some(line) = answer_line(&outbox, id, result) {
                // A closed outbox means the client is gone; nobody is left to answer.
                let _ = outbox.tx.send(Outgoing::Line(line)).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage};
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn decodes_a_tool_call_as_the_general_decoder_does() {
        let lines = [
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "a__b"}}),
            json!({"jsonrpc": "2.0", "id": "x", "method": "tools/call", "params": {
                "name": "a__b", "arguments": {"n": [1, {"k": null}], "s": "é\n\"q\""},
                "_meta": {"progressToken": 7, "other": "kept"}, "extra": true,
            }}),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "aé", "arguments": null}}),
        ]
        .map(|line| line.to_string());
        // Escapes in the name and the arguments, as written (not as `json!` would write them).
        let escaped = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"a\u00e9\"","arguments":{"t":"\u00e9\ud83d\ude00"}}}"#;
        for line in lines.iter().map(String::as_str).chain([escaped]) {
            let bytes = line.as_bytes().to_vec();
            let (id, params) = decode(line).expect("a tools/call");
            let params = params.into_owned().unwrap();
            let general: ClientJsonRpcMessage = serde_json::from_slice(&bytes).unwrap();
            let JsonRpcMessage::Request(general) = general else { panic!("{line}") };
            assert!(matches!(general.request, ClientRequest::CallToolRequest(_)), "{line}");
            assert_eq!(id, general.id);
            let general: Value = serde_json::to_value(&general).unwrap();
            assert_eq!(serde_json::to_value(&params).unwrap(), general["params"], "{line}");
        }
        // Arguments nested as deeply as the general decoder takes, and one level deeper.
        for depth in 120..130 {
            let arguments = format!(r#"{{"a":{}{}}}"#, "[".repeat(depth - 1), "]".repeat(depth - 1));
            let line = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"a","arguments":{arguments}}}}}"#
            );
            let general = serde_json::from_str::<ClientJsonRpcMessage>(&line).is_ok();
            assert_eq!(decode(&line).is_some(), general, "arguments nested {depth} deep");
        }
        // Everything else, and a tools/call that does not fit, takes the general path.
        for line in [
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "prompts/get", "params": {"name": "a"}}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 42}}),
            json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "a"}}),
            json!({"jsonrpc": "1.0", "id": 1, "method": "tools/call", "params": {"name": "a"}}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "a"}, "result": {}}),
            json!({"jsonrpc": "2.0", "id": 1.5, "method": "tools/call", "params": {"name": "a"}}),
            // Arguments that are not an object; the 2026-07-28 multi-round retry fields.
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "a", "arguments": [1]}}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "a", "arguments": "x"}}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "a", "requestState": "s"}}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "a", "inputResponses": {}}}),
        ] {
            assert!(decode(&line.to_string()).is_none(), "{line}");
        }
    }
}

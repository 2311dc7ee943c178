//! The reader of the client's stdin: each line is framed within `maxMessageBytes`
//! (`wire::line_reader`) and judged here, so that rmcp sees only well-formed messages.
//!
//! rmcp's own stdio transport drops unparsable lines silently and answers malformed
//! requests without their id. This reader answers every bad line as JSON-RPC 2.0 says:
//! `-32700` (parse error, `id: null`), `-32600` (invalid request; also a line over
//! `maxMessageBytes`, and a request whose id is still in flight), `-32602` (a known
//! method with parameters of the wrong shape, with the request's id).
//!
//! Once the session is initialized, a `tools/call` is tried first: it decodes in one pass
//! (`calls.rs`) and is served without rmcp; task requests likewise (`tasks.rs`). Any
//! other line is decoded as a `ClientJsonRpcMessage` and goes to rmcp, after the checks
//! that keep the session's lifecycle in one piece: notifications and responses that
//! arrive before `initialize` are dropped (rmcp would end the session on them), a second
//! `initialize` is refused instead of renegotiating a running session, the params of
//! standard methods are checked, and the request's id is recorded as in flight. A
//! `notifications/cancelled` for a request served here cancels it here.

use std::sync::{Arc, atomic::Ordering};

use rmcp::model::{ClientJsonRpcMessage, ClientNotification, ClientRequest, JsonRpcMessage};
use serde_json::{Value, json};
use tokio::{io::AsyncRead, sync::mpsc};

use super::{
    Verdict, calls,
    outbox::{Outbox, ServedBy},
    tasks,
    writer::Outgoing,
};
use crate::wire::{BoundedLineReader, Framed, number_or_string};

/// An error reply to a client message rmcp will not see.
fn error_reply(id: Value, code: i32, message: String) -> Verdict {
    let reply = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    tracing::debug!(code, "rejected a client message: {message}");
    let mut line = reply.to_string().into_bytes();
    line.push(b'\n');
    Verdict::Reply(line)
}

/// Read newline-delimited messages until EOF, never holding more than `max_bytes` of
/// one line in memory.
pub async fn read_stdin(
    input: impl AsyncRead + Unpin,
    outbox: &Arc<Outbox>,
    incoming: &mpsc::Sender<ClientJsonRpcMessage>,
) {
    let mut lines = BoundedLineReader::new(input, outbox.max_bytes);
    loop {
        let verdict = match lines.next().await {
            Ok(Framed::Line) => parse_line(lines.line(), outbox),
            Ok(Framed::OverLimit) => continue,
            Ok(Framed::Oversized) => {
                let message = format!(
                    "message larger than the {} byte limit (`bridge.maxMessageBytes`)",
                    outbox.max_bytes
                );
                error_reply(Value::Null, -32600, message)
            }
            Ok(Framed::End) => break,
            Err(error) => {
                tracing::warn!("reading stdin failed: {error}");
                break;
            }
        };
        if !deliver(verdict, outbox, incoming).await {
            return;
        }
    }
    if let Some(line) = lines.unterminated_line() {
        deliver(parse_line(line, outbox), outbox, incoming).await;
    }
}

/// Hand a parsed line on; `false` once the session is gone.
async fn deliver(
    verdict: Verdict,
    outbox: &Arc<Outbox>,
    incoming: &mpsc::Sender<ClientJsonRpcMessage>,
) -> bool {
    match verdict {
        Verdict::Pass(message) => incoming.send(message).await.is_ok(),
        Verdict::Reply(line) => outbox.tx.send(Outgoing::Line(line)).await.is_ok(),
        Verdict::Drop => true,
        Verdict::ToolCallTask(call) => {
            call.spawn(outbox.clone());
            true
        }
        Verdict::TaskRequest(request) => {
            request.spawn(outbox.clone());
            true
        }
    }
}

/// Parse one line and decide what becomes of it: passed to rmcp, answered with an
/// error here, or dropped.
fn parse_line(line: &[u8], outbox: &Arc<Outbox>) -> Verdict {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Verdict::Drop;
    }
    if let Some(bridge) = &outbox.bridge {
        // An answer to an upstream's request relayed raw is kept as written.
        bridge.link.upstream_requests().offer(line);
    }
    // The fast paths below skip the fields they do not need without checking them,
    // so a line that is not UTF-8 goes to the general decoder, which refuses it. Checked
    // once here, the line's strings need no check of their own.
    let text = match outbox.initialized.load(Ordering::Acquire) {
        true => std::str::from_utf8(line).ok(),
        false => None,
    };
    if let Some(bridge) = &outbox.bridge
        && let Some(text) = text
        && let Some((id, params)) = calls::decode(text)
        && let Some(verdict) = calls::serve(outbox, bridge, id, params)
    {
        return verdict;
    }
    if let Some(bridge) = &outbox.bridge
        && let Some(text) = text
        && bridge.aggregation.tools
        && let Some((id, method, params)) = tasks::decode(text)
        && let Some(verdict) = tasks::serve(outbox, bridge, id, method, params)
    {
        return verdict;
    }
    match serde_json::from_slice::<ClientJsonRpcMessage>(line) {
        Ok(JsonRpcMessage::Request(request)) => {
            let id = || serde_json::to_value(&request.id).unwrap_or(Value::Null);
            if let ClientRequest::CustomRequest(custom) = &request.request
                && let Some(problem) = standard_params_problem(&custom.method, custom.params.as_ref())
            {
                // A standard method whose params did not fit: rmcp would call it unknown.
                return error_reply(
                    id(),
                    -32602,
                    format!("invalid params for `{}`: {problem}", custom.method),
                );
            }
            let initialize = matches!(request.request, ClientRequest::InitializeRequest(_));
            if initialize && outbox.initialized.load(Ordering::Acquire) {
                return error_reply(id(), -32600, "the session is already initialized".to_owned());
            }
            if !outbox.enter(&request.id) {
                let message = format!("request id `{}` is already used by a request in flight", request.id);
                return error_reply(id(), -32600, message);
            }
            // Only an `initialize` that goes on to rmcp starts the session: one refused
            // for its id must leave the next one free to (this reader is the only writer).
            if initialize {
                outbox.initialized.store(true, Ordering::Release);
                if let Some(bridge) = &outbox.bridge {
                    bridge.link.upstream_requests().remember_initialize(line);
                }
            }
            Verdict::Pass(JsonRpcMessage::Request(request))
        }
        Ok(_) if !outbox.initialized.load(Ordering::Acquire) => {
            // rmcp ends a session whose first message is not a request; nothing before
            // `initialize` can refer to anything, so these are dropped.
            tracing::debug!("dropped a notification or response sent before `initialize`");
            Verdict::Drop
        }
        Ok(JsonRpcMessage::Notification(notification)) => {
            if let ClientNotification::CancelledNotification(cancelled) = &notification.notification
                && let Some(id) = &cancelled.params.request_id
            {
                // A cancelled request gets no response, so its id is free again.
                let pending = outbox.in_flight().remove(id);
                // Served here, not by rmcp: cancel it here.
                match pending {
                    Some(ServedBy::Task(call)) => {
                        call.cancel();
                        return Verdict::Drop;
                    }
                    Some(ServedBy::Lane(ticket)) => {
                        ticket.cancel();
                        return Verdict::Drop;
                    }
                    Some(ServedBy::Rmcp) | None => {}
                }
            }
            Verdict::Pass(JsonRpcMessage::Notification(notification))
        }
        Ok(message) => Verdict::Pass(message),
        Err(error) => reject(line, &error),
    }
}

/// For a standard MCP method, why `params` do not fit it (rmcp then decodes the request
/// as a custom one). `None` for methods rmcp does not know.
fn standard_params_problem(method: &str, params: Option<&Value>) -> Option<String> {
    fn check<T: serde::de::DeserializeOwned>(params: Option<&Value>) -> Option<String> {
        let params = params.cloned().unwrap_or(Value::Object(Default::default()));
        serde_json::from_value::<T>(params).err().map(|error| error.to_string())
    }
    use rmcp::model::*;
    match method {
        "initialize" => check::<InitializeRequestParams>(params),
        "tools/call" => check::<CallToolRequestParams>(params),
        "prompts/get" => check::<GetPromptRequestParams>(params),
        "resources/read" => check::<ReadResourceRequestParams>(params),
        "resources/subscribe" => check::<SubscribeRequestParams>(params),
        "resources/unsubscribe" => check::<UnsubscribeRequestParams>(params),
        "completion/complete" => check::<CompleteRequestParams>(params),
        #[allow(deprecated)]
        "logging/setLevel" => check::<SetLevelRequestParams>(params),
        "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
            check::<Option<PaginatedRequestParams>>(params)
        }
        "ping" => Some("`ping` takes no params".to_owned()),
        _ => None,
    }
    .or_else(|| {
        matches!(method, "tools/call" | "prompts/get" | "resources/read" | "initialize")
            .then(|| "params do not match the method".to_owned())
    })
}

/// Work out why `line` is not a valid client message and how to answer it.
fn reject(line: &[u8], error: &serde_json::Error) -> Verdict {
    let value = match serde_json::from_slice::<Value>(line) {
        Ok(value) => value,
        Err(parse_error) => return error_reply(Value::Null, -32700, format!("parse error: {parse_error}")),
    };
    let Value::Object(object) = &value else {
        let message = if value.is_array() {
            "batch requests are not supported".to_owned()
        } else {
            "a JSON-RPC message must be an object".to_owned()
        };
        return error_reply(Value::Null, -32600, message);
    };
    let raw_id = object.get("id");
    let id = raw_id.filter(|id| id.is_string() || is_integral(id)).cloned();
    let method = object.get("method").and_then(Value::as_str);
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return error_reply(id.unwrap_or(Value::Null), -32600, "`jsonrpc` must be \"2.0\"".to_owned());
    }
    if let Some(unusable) = raw_id.filter(|id| id.is_number() && !is_integral(id)) {
        // An id that cannot be a request id is answered with `null`, as JSON-RPC asks
        // when the id cannot be told.
        let message = format!(
            "request id {unusable} is not supported: use a string or an integer between -2^63 and 2^63-1"
        );
        return error_reply(Value::Null, -32600, message);
    }
    match (method, id) {
        (Some(method), Some(id)) => {
            error_reply(id, -32602, format!("invalid params for `{method}`: {error}"))
        }
        (Some(method), None) if !object.contains_key("id") => {
            tracing::warn!("dropped notification `{method}` with invalid params: {error}");
            Verdict::Drop
        }
        (None, Some(_)) if object.contains_key("result") || object.contains_key("error") => {
            tracing::warn!("dropped a malformed response from the client: {error}");
            Verdict::Drop
        }
        (_, id) => error_reply(id.unwrap_or(Value::Null), -32600, format!("invalid request: {error}")),
    }
}

/// Whether a JSON number is an integer that rmcp takes as a request id (`7`, or `7.0`):
/// the rules of [`number_or_string`], which the `tools/call` decoder reads ids with.
fn is_integral(number: &Value) -> bool {
    matches!(number_or_string(number), Ok(rmcp::model::NumberOrString::Number(_)))
}

//! The result of a `tools/call` as an upstream wrote it, and the decoders that read it
//! with as little JSON work as it can take.
//!
//! **Raw results.** Decoding a `CallToolResult` (its content blocks are tagged unions) and
//! encoding it again for the client is most of the JSON work of a relayed call, and for
//! most answers it changes nothing: the result already has the shape a client before
//! 2026-07-28 (the only protocols the bridge serves) expects. Such a result is relayed as
//! the upstream wrote it ([`RawToolResult`]). A result that rmcp's decoding or its shaping
//! for those clients would change (a `resultType`, a non-object `structuredContent`, a
//! missing `content`, a field of the wrong type) is decoded, as on every other path, so
//! the client gets the same answer either way. Raw results come from a stdio session's
//! direct lane only ([`tool_answer`] of a [`ResponseLine`]); other transports decode
//! every result.
//!
//! What the raw relay does not do is check each content block: a block rmcp could not
//! decode (a type from a newer protocol, or a malformed one) reaches the client as the
//! upstream sent it, as it would through any byte-relaying proxy, instead of becoming a
//! "malformed result" error.
//!
//! **Decoded results** ([`tool_response`]). rmcp decodes every response as its untagged
//! `ServerResult`, trying one result type after another until one fits; for a
//! `tools/call` result that is sixteen failed attempts, each building and dropping a
//! `serde_json::Error`. A transport that knows which of its requests are `tools/call`
//! reads their responses as `CallToolResult` directly; any other line, and a result that
//! does not decode that way, is left to the general decoder, so what reaches rmcp is what
//! it would have decoded itself. The stdio transport and the streamable HTTP client both
//! use it.

use std::{borrow::Cow, cell::Cell, ops::Range};

use rmcp::{
    ErrorData,
    model::{
        CallToolResult, JsonRpcMessage, JsonRpcResponse, JsonRpcVersion2_0, NumberOrString, RequestId,
        ServerJsonRpcMessage, ServerResult,
    },
};
use serde::{
    Deserialize, Deserializer,
    de::{IgnoredAny, MapAccess, Visitor},
};
use serde_json::value::RawValue;

use super::ids::number_or_string;

/// What a `tools/call` to an upstream returned: `R` is the decoded form
/// ([`ServerResult`] from the upstream set, `CallToolResult` once routed).
#[derive(Debug)]
pub enum ToolAnswer<R = ServerResult> {
    /// The upstream's result object as it wrote it, to be relayed unchanged.
    Raw(RawToolResult),
    Decoded(R),
}

/// A `CallToolResult` as the upstream wrote it, already in the shape a client before
/// 2026-07-28 expects (see the module doc).
pub struct RawToolResult {
    line: Vec<u8>,
    result: Range<usize>,
}

impl std::fmt::Debug for RawToolResult {
    // Tool results are the user's data: their size is enough for a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawToolResult").field("bytes", &self.result.len()).finish()
    }
}

impl RawToolResult {
    /// The result object's JSON text.
    pub fn json(&self) -> &[u8] {
        &self.line[self.result.clone()]
    }

    /// The result decoded, for a caller that needs it typed.
    pub fn decode(&self) -> Result<CallToolResult, ErrorData> {
        serde_json::from_slice(self.json()).map_err(|error| {
            ErrorData::internal_error(format!("the upstream sent a malformed result: {error}"), None)
        })
    }
}

impl ToolAnswer<CallToolResult> {
    /// The result, decoded if it was relayed raw.
    pub fn into_typed(self) -> Result<CallToolResult, ErrorData> {
        match self {
            ToolAnswer::Raw(raw) => raw.decode(),
            ToolAnswer::Decoded(result) => Ok(result),
        }
    }
}

/// An upstream's response line to a `tools/call`, and what its reader noted of it: where
/// its `result` is (none for an error response, or when it was not looked for), and
/// where its `id` is (only when the line goes on as written with another id; see
/// [`response_id`]).
pub struct ResponseLine {
    pub line: Vec<u8>,
    pub result: Option<Range<usize>>,
    pub id_at: Option<Range<usize>>,
}

/// The id of the response `line` when it is a number (lane ids are), and where that id
/// stands in the line. `None` for a line that is not a response (it has a `method`, or
/// neither `result` nor `error`), or whose id is a string.
///
/// The object is read only up to its id and its `result` or `error`, whichever comes
/// last; the rest is left unread and unchecked. This is for a relay whose client reads
/// and checks the whole line itself: the hub, passing an answer to a bridge, need not
/// read a large result the bridge reads anyway.
pub fn response_id(line: &[u8]) -> Option<(i64, Range<usize>)> {
    struct Head<'s> {
        line: &'s [u8],
        found: &'s Cell<Option<(i64, Range<usize>)>>,
    }
    impl<'de> Visitor<'de> for Head<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON-RPC response")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let (mut id, mut response) = (None, false);
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                match &*key {
                    "id" => {
                        let raw: &RawValue = map.next_value()?;
                        let text = raw.get();
                        let Ok(NumberOrString::Number(number)) =
                            number_or_string(&mut serde_json::Deserializer::from_str(text))
                        else {
                            return Ok(());
                        };
                        // `raw` borrows from the line, so its offset is where the id starts.
                        let start = text.as_ptr() as usize - self.line.as_ptr() as usize;
                        id = Some((number, start..start + text.len()));
                    }
                    "method" => return Ok(()),
                    "result" | "error" => {
                        response = true;
                        if id.is_none() {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                if response && id.is_some() {
                    break;
                }
            }
            if response {
                self.found.set(id);
            }
            Ok(())
        }
    }
    let found = Cell::new(None);
    let mut reader = serde_json::Deserializer::from_slice(line);
    // Stopping inside the object, the visitor leaves it unfinished, which serde_json
    // reports: what was found before is the answer.
    let _ = reader.deserialize_map(Head { line, found: &found });
    found.take()
}

/// The result of the upstream's `response` to a `tools/call`: relayed raw when it can be,
/// else decoded as rmcp would have; `Err` for an error response (passed through as is)
/// or a malformed one.
pub fn tool_answer(response: ResponseLine) -> Result<ToolAnswer, ErrorData> {
    if let Some(result) = response.result.clone()
        && relayable(&response.line[result.clone()])
    {
        return Ok(ToolAnswer::Raw(RawToolResult { line: response.line, result }));
    }
    decode(&response.line).map(ToolAnswer::Decoded)
}

/// Whether `result` is a `CallToolResult` that rmcp's decoding and its shaping for a
/// client before 2026-07-28 would leave as it is (see the module doc). Unknown fields are kept,
/// as the client's own decoder would.
fn relayable(result: &[u8]) -> bool {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape<'a> {
        #[serde(default, borrow, deserialize_with = "present")]
        result_type: Option<&'a RawValue>,
        #[serde(default, borrow, deserialize_with = "present")]
        content: Option<&'a RawValue>,
        #[serde(default, borrow, deserialize_with = "present")]
        structured_content: Option<&'a RawValue>,
        #[serde(default, borrow, deserialize_with = "present")]
        is_error: Option<&'a RawValue>,
        #[serde(rename = "_meta", default, borrow, deserialize_with = "present")]
        meta: Option<&'a RawValue>,
    }
    // `Option<&RawValue>` would read a `null` as absent; these fields must be told apart.
    fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
        <&RawValue>::deserialize(deserializer).map(Some)
    }
    let Ok(shape) = serde_json::from_slice::<Shape<'_>>(result) else {
        return false;
    };
    let starts = |raw: &RawValue, first: u8| raw.get().as_bytes().first() == Some(&first);
    shape.result_type.is_none()
        && shape.content.is_some_and(|content| starts(content, b'['))
        && shape.structured_content.is_none_or(|structured| starts(structured, b'{'))
        && shape.is_error.is_none_or(|is_error| matches!(is_error.get(), "true" | "false"))
        && shape.meta.is_none_or(|meta| starts(meta, b'{'))
}

/// Decode the response `line` as rmcp would have.
fn decode(line: &[u8]) -> Result<ServerResult, ErrorData> {
    #[derive(Deserialize)]
    struct Response {
        result: CallToolResult,
    }
    if let Ok(response) = serde_json::from_slice::<Response>(line) {
        return Ok(ServerResult::CallToolResult(response.result));
    }
    // An error, or a result that is not a plain `CallToolResult`: the general decoder.
    match serde_json::from_slice::<ServerJsonRpcMessage>(line) {
        Ok(JsonRpcMessage::Response(response)) => Ok(response.result),
        Ok(JsonRpcMessage::Error(error)) => Err(error.error),
        Ok(_) => Err(ErrorData::internal_error("the upstream sent a malformed answer", None)),
        Err(error) => {
            Err(ErrorData::internal_error(format!("the upstream sent a malformed answer: {error}"), None))
        }
    }
}

/// `line` decoded as the response to a `tools/call` request whose id `is_call` claims,
/// its result read as `CallToolResult` directly rather than tried against every result
/// type; `None` for any other message, or a result that does not decode that way (the
/// general decoder then decides).
pub fn tool_response(line: &[u8], is_call: impl FnOnce(&RequestId) -> bool) -> Option<ServerJsonRpcMessage> {
    #[derive(Deserialize)]
    struct ToolResponse {
        id: RequestId,
        result: CallToolResult,
    }
    let envelope: Envelope = serde_json::from_slice(line).ok()?;
    let id = envelope.id.filter(|_| envelope.method.is_none() && envelope.result.is_some())?;
    if !is_call(&id) {
        return None;
    }
    let response: ToolResponse = serde_json::from_slice(line).ok()?;
    Some(JsonRpcMessage::Response(JsonRpcResponse {
        jsonrpc: JsonRpcVersion2_0,
        id: response.id,
        result: ServerResult::from(response.result),
    }))
}

/// The envelope of a JSON-RPC line: what kind of message it is, and its id.
#[derive(Deserialize)]
pub struct Envelope {
    pub id: Option<RequestId>,
    pub method: Option<IgnoredAny>,
    pub result: Option<IgnoredAny>,
}

#[cfg(test)]
mod tests;

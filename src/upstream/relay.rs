//! A `tools/call` relayed with as little JSON work as it can take: the client's
//! `arguments` and `_meta` entries and the upstream's result travel as the JSON text
//! their writer sent.
//!
//! **The call** ([`ToolCallRef`], borrowed from the client's line; [`ToolCall`] where it
//! must be owned): the arguments are only checked to be an object. The bridge needs the
//! tool's name (to route it) and the progress token in `_meta` (to replace it with its
//! own), not their content.
//!
//! **Results.** Decoding a `CallToolResult` (its content blocks are tagged unions) and
//! encoding it again for the client is most of the JSON work of a relayed call, and for
//! most answers it changes nothing: the result already has the shape a client before
//! 2026-07-28 (the only protocols the bridge serves) expects. Such a result is relayed
//! as the upstream wrote it ([`RawToolResult`]). A result that rmcp's decoding or its
//! shaping for those clients would change (a `resultType`, a non-object
//! `structuredContent`, a missing `content`, a field of the wrong type) is decoded, as
//! on every other path, so the client gets the same answer either way. Raw results come
//! from the lane (`lane.rs`) only; other transports decode every result.
//!
//! What the raw relay does not do is check each content block: a block rmcp could not
//! decode (a type from a newer protocol, or a malformed one) reaches the client as the
//! upstream sent it, as it would through any byte-relaying proxy, instead of becoming a
//! "malformed result" error.

use std::{borrow::Cow, ops::Range};

use rmcp::{
    ErrorData,
    model::{
        CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest, JsonObject, JsonRpcMessage,
        MetaObject, NumberOrString, ProgressToken, RequestMetaObject, ServerJsonRpcMessage, ServerResult,
    },
};
use serde::{Deserialize, Deserializer, Serialize, de::IgnoredAny};
use serde_json::value::RawValue;

use super::{UpstreamError, stdio::lane::AnswerLine};

/// The params of a `tools/call`, with its arguments as the client wrote them.
#[derive(Debug, Clone, Serialize)]
pub struct ToolCall {
    /// The exposed name until routed, then the upstream's own.
    pub name: String,
    /// A JSON object, or absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Box<RawValue>>,
    #[serde(rename = "_meta", skip_serializing_if = "Option::is_none")]
    pub meta: Option<RequestMetaObject>,
}

/// The params of a client's `tools/call` as they stand in its line, borrowed from it:
/// what a lane call needs to write its request without decoding `_meta` into values
/// and encoding it again ([`super::stdio::lane::LaneTicket::send`]). Other paths take the owned
/// [`ToolCall`] ([`ToolCallRef::into_owned`]).
pub struct ToolCallRef<'a> {
    /// The exposed name (unescaped: borrowed unless it has escapes).
    pub name: Cow<'a, str>,
    /// A JSON object, or absent.
    pub arguments: Option<&'a RawValue>,
    pub meta: Option<MetaRef<'a>>,
}

/// A request's `_meta` object as written: its progress token apart, because the bridge
/// replaces it, and every other entry as the client wrote it.
#[derive(Default)]
pub struct MetaRef<'a> {
    /// The value of `progressToken`, if there is one (not yet checked to be a token).
    pub progress_token: Option<&'a RawValue>,
    /// The other entries, in the order written; a repeated key keeps only its last
    /// entry, as a decoded map keeps its last value.
    pub rest: Vec<(Cow<'a, str>, &'a RawValue)>,
}

const PROGRESS_TOKEN: &str = "progressToken";

impl MetaRef<'_> {
    /// The client's progress token, if it sent a valid one (as
    /// `RequestMetaObject::get_progress_token` reads it).
    pub fn token(&self) -> Option<ProgressToken> {
        let raw = self.progress_token?;
        number_or_string(&mut serde_json::Deserializer::from_str(raw.get())).ok().map(ProgressToken)
    }

    /// The same entries decoded, as `RequestMetaObject` holds them.
    fn into_owned(self) -> serde_json::Result<RequestMetaObject> {
        let mut map = JsonObject::new();
        let token = self.progress_token.map(|raw| (Cow::Borrowed(PROGRESS_TOKEN), raw));
        for (key, raw) in token.into_iter().chain(self.rest) {
            map.insert(key.into_owned(), serde_json::from_str(raw.get())?);
        }
        Ok(RequestMetaObject(MetaObject(map)))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for MetaRef<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// A key, borrowed from the line unless it has escapes.
        struct Key<'a>(Cow<'a, str>);
        impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl<'de> serde::de::Visitor<'de> for Visitor {
                    type Value = Key<'de>;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("a key")
                    }
                    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
                        Ok(Key(Cow::Borrowed(key)))
                    }
                    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
                        Ok(Key(Cow::Owned(key.to_owned())))
                    }
                }
                deserializer.deserialize_str(Visitor)
            }
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = MetaRef<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a `_meta` object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut meta = MetaRef::default();
                while let Some(Key(key)) = map.next_key()? {
                    let value: &RawValue = map.next_value()?;
                    if key == PROGRESS_TOKEN {
                        meta.progress_token = Some(value);
                    } else {
                        meta.rest.push((key, value));
                    }
                }
                if meta.rest.len() > 1 {
                    // In linear time: a line may hold many keys.
                    let last: foldhash::HashMap<&str, usize> =
                        meta.rest.iter().enumerate().map(|(index, (key, _))| (&**key, index)).collect();
                    if last.len() < meta.rest.len() {
                        let keep: Vec<bool> = meta
                            .rest
                            .iter()
                            .enumerate()
                            .map(|(index, (key, _))| last[&**key] == index)
                            .collect();
                        let mut kept = keep.into_iter();
                        meta.rest.retain(|_| kept.next().unwrap_or(true));
                    }
                }
                Ok(meta)
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Decodes the params of a client's `tools/call` as `CallToolRequestParams` would, and
/// refuses what only those can carry (the 2026-07-28 multi-round fields): the general
/// path then serves the call.
impl<'de: 'a, 'a> Deserialize<'de> for ToolCallRef<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Params<'a> {
            #[serde(borrow)]
            name: Cow<'a, str>,
            #[serde(borrow)]
            arguments: Option<&'a RawValue>,
            #[serde(rename = "_meta", borrow)]
            meta: Option<MetaRef<'a>>,
            input_responses: Option<IgnoredAny>,
            request_state: Option<IgnoredAny>,
            task: Option<IgnoredAny>,
        }
        let params = Params::deserialize(deserializer)?;
        if params.task.is_some() {
            // A task-augmented call: relayed raw, with its task, by `proxy/stdio/tasks.rs`.
            return Err(serde::de::Error::custom("a task-augmented call"));
        }
        if let Some(arguments) = params.arguments {
            if !arguments.get().starts_with('{') {
                return Err(serde::de::Error::custom("`arguments` is not an object"));
            }
            if nesting(arguments.get().as_bytes()) > MAX_ARGUMENTS_NESTING {
                return Err(serde::de::Error::custom("`arguments` is nested too deeply"));
            }
        }
        if params.input_responses.is_some() || params.request_state.is_some() {
            return Err(serde::de::Error::custom("a multi-round retry"));
        }
        Ok(ToolCallRef { name: params.name, arguments: params.arguments, meta: params.meta })
    }
}

impl ToolCallRef<'_> {
    /// The same call, owning its parts (its `_meta` decoded).
    pub fn into_owned(self) -> serde_json::Result<ToolCall> {
        Ok(ToolCall {
            name: self.name.into_owned(),
            arguments: self.arguments.map(RawValue::to_owned),
            meta: self.meta.map(MetaRef::into_owned).transpose()?,
        })
    }
}

/// Decodes a JSON-RPC id or a progress token as rmcp's `NumberOrString` does (an
/// integer, also written in float form, or a string), without the `serde_json::Value`
/// that rmcp's decoder goes through. For `#[serde(deserialize_with)]`.
pub fn number_or_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NumberOrString, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = NumberOrString;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer or a string")
        }
        fn visit_i64<E>(self, number: i64) -> Result<Self::Value, E> {
            Ok(NumberOrString::Number(number))
        }
        fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<Self::Value, E> {
            i64::try_from(number)
                .map(NumberOrString::Number)
                .map_err(|_| E::custom("Number too large for i64"))
        }
        fn visit_f64<E: serde::de::Error>(self, number: f64) -> Result<Self::Value, E> {
            // `1.0` and `1e2` are integers written in float form; 2^53 and above are
            // not exact.
            const EXACT: f64 = 9_007_199_254_740_992.0;
            (number.fract() == 0.0 && number.abs() < EXACT)
                .then_some(NumberOrString::Number(number as i64))
                .ok_or_else(|| E::custom("Expected an integer"))
        }
        fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
            Ok(NumberOrString::String(text.into()))
        }
    }
    deserializer.deserialize_any(Visitor)
}

/// How deeply `arguments` may nest (the object itself is 1). serde_json refuses a line
/// nested deeper than 127 levels, and the arguments sit at level 3 of a request; the
/// raw relay skips them without that limit, so it is checked here, lest the bridge pass
/// on a request that it (and an upstream built on serde_json) refuses on every other
/// path.
const MAX_ARGUMENTS_NESTING: usize = 125;

/// The deepest nesting of arrays and objects in the JSON text `json`.
fn nesting(json: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

impl ToolCall {
    /// The same call, with its arguments as the client wrote them.
    pub fn from_params(params: CallToolRequestParams) -> ToolCall {
        ToolCall {
            name: params.name.into_owned(),
            arguments: params
                .arguments
                .and_then(|arguments| serde_json::value::to_raw_value(&arguments).ok()),
            meta: params.meta,
        }
    }

    /// The same call as rmcp's request, for a path that sends it through rmcp.
    pub fn into_request(self) -> ClientRequest {
        ClientRequest::CallToolRequest(CallToolRequest::new(self.into_params()))
    }

    /// The same call as rmcp's type.
    fn into_params(self) -> CallToolRequestParams {
        let mut params = CallToolRequestParams::new(self.name);
        // Checked to be an object when decoded (or encoded from one).
        params.arguments =
            self.arguments.and_then(|arguments| serde_json::from_str::<JsonObject>(arguments.get()).ok());
        params.meta = self.meta;
        params
    }
}

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

/// The result of the upstream's `answer` to a lane call: relayed raw when it can be,
/// else decoded as rmcp would have.
pub fn tool_answer(answer: AnswerLine) -> Result<ToolAnswer, UpstreamError> {
    if let Some(result) = answer.result.clone()
        && relayable(&answer.line[result.clone()])
    {
        return Ok(ToolAnswer::Raw(RawToolResult { line: answer.line, result }));
    }
    decode(&answer.line).map(ToolAnswer::Decoded)
}

/// Whether `result` is a `CallToolResult` that rmcp's decoding and its shaping for a
/// client before 2026-07-28 would leave as it is (module doc). Unknown fields are kept,
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

/// Decode the answer `line` as rmcp would have.
fn decode(line: &[u8]) -> Result<ServerResult, UpstreamError> {
    #[derive(Deserialize)]
    struct Answer {
        result: CallToolResult,
    }
    if let Ok(answer) = serde_json::from_slice::<Answer>(line) {
        return Ok(ServerResult::CallToolResult(answer.result));
    }
    // An error, or a result that is not a plain `CallToolResult`: the general decoder.
    match serde_json::from_slice::<ServerJsonRpcMessage>(line) {
        Ok(JsonRpcMessage::Response(response)) => Ok(response.result),
        Ok(JsonRpcMessage::Error(error)) => Err(UpstreamError::Mcp(error.error)),
        Ok(_) => {
            Err(UpstreamError::Mcp(ErrorData::internal_error("the upstream sent a malformed answer", None)))
        }
        Err(error) => Err(UpstreamError::Mcp(ErrorData::internal_error(
            format!("the upstream sent a malformed answer: {error}"),
            None,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// The answer to a lane call whose result is the JSON text `result`, as the lane hands it over.
    fn answer(result: &str) -> AnswerLine {
        let head = r#"{"jsonrpc":"2.0","id":1000000000,"result":"#;
        let line = format!("{head}{result}}}").into_bytes();
        AnswerLine { line, result: Some(head.len()..head.len() + result.len()) }
    }

    /// What the client gets for a decoded result: rmcp's shaping for a client before 2026-07-28.
    fn shaped(result: ServerResult) -> Value {
        let mut result = result;
        result.strip_result_type_for_legacy_peer();
        result.strip_non_object_output_for_legacy_peer();
        serde_json::to_value(result).unwrap()
    }

    #[test]
    fn ids_and_tokens_decode_as_rmcp_decodes_them() {
        for text in [
            "0",
            "7",
            "-3",
            "1000000005",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "18446744073709551616",
            "1.0",
            "1e2",
            "-0",
            "1.5",
            "9007199254740992.0",
            "9007199254740991.0",
            r#""x""#,
            r#""\u00e9\n""#,
            r#""""#,
            "null",
            "true",
            "[1]",
            "{}",
        ] {
            let ours = number_or_string(&mut serde_json::Deserializer::from_str(text)).ok();
            let rmcp = serde_json::from_str::<NumberOrString>(text).ok();
            assert_eq!(ours, rmcp, "{text}");
        }
    }

    #[test]
    fn meta_keeps_every_entry_as_written_and_the_token_apart() {
        let decode = |text: &str| {
            serde_json::from_str::<MetaRef<'_>>(text).map(|meta| {
                let token = meta.token();
                let rest: Vec<_> =
                    meta.rest.iter().map(|(key, raw)| (key.to_string(), raw.get().to_owned())).collect();
                (meta.progress_token.map(|raw| raw.get().to_owned()), token, rest)
            })
        };
        let (raw, token, rest) = decode(r#"{"a":1,"progressToken":"p","b\u00e9":{"x":[1]},"a":2}"#).unwrap();
        assert_eq!(
            (raw.as_deref(), token),
            (Some(r#""p""#), Some(ProgressToken(NumberOrString::String("p".into()))))
        );
        let expected =
            [("bé", r#"{"x":[1]}"#), ("a", "2")].map(|(key, raw)| (key.to_owned(), raw.to_owned()));
        assert_eq!(rest, expected, "a repeated key keeps its last entry");
        // Many keys, many repeated: each key once, with its last value (in linear time).
        let entries: Vec<String> = (0..100_000).map(|n| format!(r#""k{}":{n}"#, n % 1000)).collect();
        let (_, _, rest) = decode(&format!("{{{}}}", entries.join(","))).unwrap();
        assert_eq!(rest.len(), 1000);
        assert_eq!(rest[0], ("k0".to_owned(), "99000".to_owned()));
        // A token that is not one is no token (and not forwarded as another entry).
        let (raw, token, rest) = decode(r#"{"progressToken":true}"#).unwrap();
        assert_eq!((raw.as_deref(), token, rest.len()), (Some("true"), None, 0));
        assert!(decode("[]").is_err() && decode("1").is_err(), "`_meta` must be an object");
    }

    #[test]
    fn a_result_already_in_shape_is_relayed_as_written_and_means_what_the_decoded_one_would() {
        for result in [
            r#"{"content":[{"type":"text","text":"Echo: hi"}]}"#,
            r#"{"content": [], "isError": true}"#,
            r#"{"content":[{"type":"text","text":"{\"n\":1}"}],"structuredContent":{"n":1},"isError":false,"_meta":{"k":"v"}}"#,
            r#"{"content":[{"type":"image","data":"AAAA","mimeType":"image/png"},{"type":"resource_link","uri":"file:///a","name":"a"}]}"#,
        ] {
            let Ok(ToolAnswer::Raw(raw)) = tool_answer(answer(result)) else {
                panic!("not relayed raw: {result}")
            };
            assert_eq!(raw.json(), result.as_bytes(), "relayed byte for byte");
            let decoded = decode(&answer(result).line).unwrap();
            assert_eq!(serde_json::from_slice::<Value>(raw.json()).unwrap(), shaped(decoded), "{result}");
            assert_eq!(raw.decode().unwrap(), serde_json::from_str::<CallToolResult>(result).unwrap());
        }
    }

    #[test]
    fn a_result_that_decoding_or_shaping_would_change_is_decoded() {
        for (result, client_sees) in [
            // rmcp drops a "complete" result type for these clients.
            (r#"{"resultType":"complete","content":[]}"#, json!({"content": []})),
            // A missing `content` is written as an empty one.
            (r#"{"isError":true}"#, json!({"content": [], "isError": true})),
            // Structured content that is not an object moves into the content.
            (
                r#"{"content":[],"structuredContent":[1,2]}"#,
                json!({"content": [{"type": "text", "text": "[1,2]"}]}),
            ),
            (
                r#"{"content":[],"structuredContent":null}"#,
                json!({"content": [{"type": "text", "text": "null"}]}),
            ),
        ] {
            let Ok(ToolAnswer::Decoded(decoded)) = tool_answer(answer(result)) else {
                panic!("relayed raw: {result}")
            };
            assert_eq!(shaped(decoded), client_sees, "{result}");
        }
        // Fields of the wrong type, or no result object: the decoder's verdict (a
        // result of another kind, or an error), never a raw relay.
        for result in [
            r#"{"content":{}}"#,
            r#"{"content":[],"isError":"yes"}"#,
            r#"{"content":[],"_meta":[]}"#,
            r#"{"content":[],"content":[]}"#,
            r#"[]"#,
            r#""text""#,
        ] {
            assert!(!matches!(tool_answer(answer(result)), Ok(ToolAnswer::Raw(_))), "relayed raw: {result}");
        }
        let error = br#"{"jsonrpc":"2.0","id":1000000000,"error":{"code":-32602,"message":"bad"}}"#;
        let answer = AnswerLine { line: error.to_vec(), result: None };
        let Err(UpstreamError::Mcp(error)) = tool_answer(answer) else { panic!("an error answer") };
        assert_eq!((error.code.0, &*error.message), (-32602, "bad"));
    }

    #[test]
    fn content_blocks_are_relayed_as_sent() {
        // A block type rmcp does not know (a newer protocol's) reaches the client as a
        // byte relay would pass it; decoding it would have failed.
        let result = r#"{"content":[{"type":"hologram","frames":3}]}"#;
        let Ok(ToolAnswer::Raw(raw)) = tool_answer(answer(result)) else { panic!("not relayed raw") };
        assert_eq!(raw.json(), result.as_bytes());
        assert!(raw.decode().is_err(), "a typed caller still learns that it does not decode");
        assert!(!format!("{raw:?}").contains("hologram"), "Debug shows no tool output");
    }
}

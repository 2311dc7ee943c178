//! The params of a client's `tools/call`, read with as little JSON work as a relayed call
//! can take: the client's `arguments` and `_meta` entries travel as the JSON text it
//! wrote.
//!
//! [`ToolCallRef`] is borrowed from the client's line; [`ToolCall`] is the owned form,
//! where a call must outlive the line (a call run on a task of its own, one sent through
//! rmcp). The arguments are only checked to be an object (nested no deeper than serde_json
//! reads): the bridge needs the tool's name (to route it) and the progress token in
//! `_meta` (to replace it with its own), not their content. [`MetaRef`] keeps that token
//! apart and every other `_meta` entry as written, so a request to an upstream can be
//! written from these pieces without decoding `_meta` into values and encoding it again.

use std::borrow::Cow;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientRequest, JsonObject, MetaObject, ProgressToken,
    RequestMetaObject,
};
use serde::{Deserialize, Deserializer, Serialize, de::IgnoredAny};
use serde_json::value::RawValue;

use super::ids::number_or_string;

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
/// and encoding it again ([`super::stdio::lane::Ticket::send`]). Other paths take the owned
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

#[cfg(test)]
mod tests {
    use rmcp::model::NumberOrString;

    use super::*;

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
}

//! Client input generators: JSON-RPC messages with every field sometimes wrong or
//! missing, ids of every kind, params of the right and wrong shape, truncated and flipped
//! messages, raw bytes and known nasty lines.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::FUZZ_MAX_BYTES;

pub(super) const METHODS: &[&str] = &[
    "ping",
    "initialize",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "sampling/createMessage",
    "roots/list",
    "server/discover",
    "",
    "unknown/method",
    "rpc.discover",
    "ünï/🦊",
];

pub(super) fn id() -> impl Strategy<Value = Value> {
    prop_oneof![
        // Small integers and short strings, so ids repeat within a batch.
        6 => (0i64..4).prop_map(Value::from),
        3 => prop::sample::select(&["", "a", "1", "ünï", "🦊"][..]).prop_map(Value::from),
        1 => prop::sample::select(&[i64::MAX, i64::MIN, -1][..]).prop_map(Value::from),
        1 => Just(Value::from(u64::MAX)),
        1 => Just(Value::from(9_007_199_254_740_993u64)),
        1 => "\\PC{0,300}".prop_map(Value::from),
        2 => prop::sample::select(&[1.0, 1.5, -0.0, 1e20, 1e308, 2.5e-3][..]).prop_map(Value::from),
        2 => prop::sample::select(vec![json!(null), json!(true), json!({}), json!([]), json!([1]), json!({"a": 1})]),
    ]
}

/// Arbitrary JSON, small.
pub(super) fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|float| serde_json::Number::from_f64(float).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{0,4}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Params shaped for `method`, or not.
pub(super) fn params() -> impl Strategy<Value = Value> {
    let name = prop_oneof![Just("echo".to_owned()), "\\PC{0,20}"];
    let plausible = prop_oneof![
        (name.clone(), prop::option::of(any_json())).prop_map(|(name, arguments)| {
            let mut params = json!({ "name": name });
            if let Some(arguments) = arguments {
                params["arguments"] = arguments;
            }
            params
        }),
        "\\PC{0,20}".prop_map(|uri| json!({ "uri": uri })),
        prop::sample::select(&["debug", "info", "emergency", "loud", ""][..])
            .prop_map(|level| json!({ "level": level })),
        (id(), "\\PC{0,8}").prop_map(|(id, reason)| json!({ "requestId": id, "reason": reason })),
        (any_json(), any::<u32>())
            .prop_map(|(token, progress)| json!({ "progressToken": token, "progress": progress })),
        // `_meta` entries as the lane forwards them: the token among other keys (some
        // escaped), of any type; or a `_meta` that is not an object.
        (
            name.clone(),
            prop_oneof![
                3 => prop::collection::btree_map(
                    prop_oneof![Just("progressToken".to_owned()), "[a-z\"\\\\é]{0,3}"],
                    any_json(),
                    0..4
                )
                .prop_map(|map| Value::Object(map.into_iter().collect())),
                1 => any_json(),
            ]
        )
            .prop_map(|(name, meta)| json!({ "name": name, "arguments": { "a": 1 }, "_meta": meta })),
        (name, "\\PC{0,8}").prop_map(|(name, value)| json!({
            "ref": { "type": "ref/prompt", "name": name }, "argument": { "name": "a", "value": value } })),
        Just(
            json!({ "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "c", "version": "1" } })
        ),
        Just(json!({ "protocolVersion": 5, "capabilities": [] })),
        Just(json!({ "cursor": "abc" })),
        Just(json!({ "_meta": { "progressToken": 7 } })),
    ];
    prop_oneof![
        6 => plausible,
        2 => prop::sample::select(vec![json!({}), json!([]), json!(null), json!(5), json!("x")]),
        2 => any_json(),
        // Past serde_json's nesting limit (128) and below it.
        1 => (100usize..160).prop_map(|depth| {
            (0..depth).fold(json!(1), |inner, _| Value::Array(vec![inner]))
        }),
        // Around `FUZZ_MAX_BYTES`, to hit both sides of the limit.
        1 => (FUZZ_MAX_BYTES - 200..FUZZ_MAX_BYTES + 200).prop_map(|len| json!({ "name": "x", "arguments": { "blob": "a".repeat(len - 60) } })),
    ]
}

/// A JSON-RPC-ish object: mostly well-formed, every field sometimes wrong or missing.
pub(super) fn message() -> impl Strategy<Value = Value> {
    let version = prop_oneof![
        12 => Just(Some(json!("2.0"))),
        1 => prop::sample::select(vec![json!("1.0"), json!(2.0), json!(null), json!("2.0 ")]).prop_map(Some),
        1 => Just(None),
    ];
    let method = prop_oneof![
        10 => prop::sample::select(METHODS).prop_map(|method| Some(json!(method))),
        1 => "\\PC{0,12}".prop_map(|method| Some(json!(method))),
        1 => prop::sample::select(vec![json!(5), json!(null), json!({})]).prop_map(Some),
        2 => Just(None),
    ];
    let reply = prop_oneof![
        10 => Just(None),
        1 => Just(Some(("result", json!({})))),
        1 => Just(Some(("error", json!({ "code": -1, "message": "no" })))),
        1 => Just(Some(("error", json!(5)))),
    ];
    let extra = prop::option::weighted(0.1, ("[a-z]{1,6}", any_json()));
    (version, prop::option::weighted(0.8, id()), method, prop::option::weighted(0.7, params()), reply, extra)
        .prop_map(|(version, id, method, params, reply, extra)| {
            let mut object = Map::new();
            let fields = [("jsonrpc", version), ("id", id), ("method", method), ("params", params)];
            for (field, value) in fields {
                if let Some(value) = value {
                    object.insert(field.to_owned(), value);
                }
            }
            if let Some((field, value)) = reply {
                object.insert(field.to_owned(), value);
            }
            if let Some((field, value)) = extra {
                object.insert(field, value);
            }
            Value::Object(object)
        })
}

/// One line of a batch (its newline added later; raw bytes may hold more newlines).
pub(super) fn line() -> impl Strategy<Value = Vec<u8>> {
    const NASTY: &[&[u8]] = &[
        b"{", b"}", b"[]", b"[", b"null", b"1", b"\"str\"", b"{}", b"true", b"   ", b"\r", b"\t{}\t",
        b"{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}",
        b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}",
        b"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r",
        b"{\"jsonrpc\":\"2.0\",\"id\":\"\xff\",\"method\":\"ping\"}",
        b"\xff\xfe\xfd", b"\x00", b"{\"a\":\"\\ud800\"}",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"ping\"}",
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"method\":\"tools/list\"}",
    ];
    prop_oneof![
        12 => message().prop_map(|message| serde_json::to_vec(&message).expect("JSON serializes")),
        // A message cut short.
        3 => (message(), any::<prop::sample::Index>()).prop_map(|(message, cut)| {
            let bytes = serde_json::to_vec(&message).expect("JSON serializes");
            bytes[..cut.index(bytes.len())].to_vec()
        }),
        2 => prop::sample::select(NASTY).prop_map(<[u8]>::to_vec),
        2 => any_json().prop_map(|value| serde_json::to_vec(&value).expect("JSON serializes")),
        2 => prop::collection::vec(any::<u8>(), 0..40),
        // A message with bytes flipped.
        1 => (message(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(message, at, byte)| {
            let mut bytes = serde_json::to_vec(&message).expect("JSON serializes");
            let at = at.index(bytes.len());
            bytes[at] = byte;
            bytes
        }),
    ]
}

/// The lines of one case; `Debug` shows them as escaped text, one per line.
#[derive(Clone)]
pub(super) struct Batch(pub(super) Vec<Vec<u8>>);

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Batch [\n")?;
        for line in &self.0 {
            writeln!(f, "  b\"{}\"", line.escape_ascii())?;
        }
        f.write_str("]")
    }
}

impl Batch {
    pub(super) fn join(&self) -> Vec<u8> {
        let mut batch = Vec::new();
        for line in &self.0 {
            batch.extend_from_slice(line);
            batch.push(b'\n');
        }
        batch
    }
}

pub(super) fn batch() -> impl Strategy<Value = Batch> {
    prop::collection::vec(line(), 1..12).prop_map(Batch)
}

//! Tests of the lane's request encoder.

use serde_json::{Value, json};

use super::*;
use crate::upstream::in_flight::FIRST_ID;

/// The line of a call as the client wrote it (`LaneTicket::send`).
fn written_line(id: i64, name: &str, call: &ToolCallRef<'_>, routed: bool) -> Vec<u8> {
    let rest = call.meta.as_ref().map_or(&[][..], |meta| &meta.rest[..]);
    call_line(id, name, call.arguments, MetaEntries::Written(rest), routed)
}

#[test]
fn a_lane_call_line_is_the_clients_call_with_the_lanes_id_name_and_token() {
    let id = FIRST_ID + 7;
    for (params, routed, expected) in [
        (json!({"name": "x"}), false, json!({"name": "echo"})),
        (
            json!({"name": "x", "arguments": {"s": "\u{e9}\n\"", "n": [1, {"k": null}]}}),
            false,
            json!({"name": "echo", "arguments": {"s": "\u{e9}\n\"", "n": [1, {"k": null}]}}),
        ),
        (
            json!({"name": "x", "_meta": {"progressToken": 3}}),
            true,
            json!({"name": "echo", "_meta": {"progressToken": id}}),
        ),
        (
            json!({"name": "x", "_meta": {"progressToken": "p", "k\"é": {"a": 1}, "z": null}}),
            true,
            json!({"name": "echo", "_meta": {"progressToken": id, "k\"é": {"a": 1}, "z": null}}),
        ),
        // An unusable token is dropped; other entries are kept.
        (
            json!({"name": "x", "_meta": {"progressToken": true, "k": 1}}),
            false,
            json!({"name": "echo", "_meta": {"k": 1}}),
        ),
        (json!({"name": "x", "_meta": {}}), false, json!({"name": "echo"})),
    ] {
        let text = params.to_string();
        let call: ToolCallRef<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(call.meta.as_ref().and_then(MetaRef::token).is_some(), routed, "{text}");
        let line = written_line(id, "echo", &call, routed);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|&&byte| byte == b'\n').count(), 1, "one line");
        let line: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            line,
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": expected}),
            "{text}"
        );
    }
    // The name is escaped as JSON needs.
    let call: ToolCallRef<'_> = serde_json::from_str(r#"{"name":"x"}"#).unwrap();
    let line: Value = serde_json::from_slice(&written_line(id, "a\"b\\\n", &call, false)).unwrap();
    assert_eq!(line["params"]["name"], "a\"b\\\n");
}

/// An owned call (`LaneTicket::send_owned`) is written as the same line: its decoded
/// `_meta` entries encoded once, a `progressToken` among them replaced when routed.
#[test]
fn an_owned_call_line_is_the_same_request() {
    let id = FIRST_ID + 8;
    for (meta, routed, expected) in [
        (json!({}), false, None),
        (json!({}), true, Some(json!({"progressToken": id}))),
        (json!({"progressToken": "p", "k\"é": [1]}), true, Some(json!({"progressToken": id, "k\"é": [1]}))),
        (json!({"progressToken": "p"}), false, Some(json!({"progressToken": "p"}))),
        (json!({"z": null}), false, Some(json!({"z": null}))),
    ] {
        let Value::Object(map) = meta else { unreachable!() };
        let arguments = RawValue::from_string(r#"{"s":"\n"}"#.to_owned()).unwrap();
        let line = call_line(id, "echo", Some(&arguments), MetaEntries::Decoded(&map), routed);
        assert_eq!(line.iter().filter(|&&byte| byte == b'\n').count(), 1, "one line");
        let line: Value = serde_json::from_slice(&line).unwrap();
        let mut params = json!({"name": "echo", "arguments": {"s": "\n"}});
        if let Some(expected) = expected {
            params["_meta"] = expected;
        }
        assert_eq!(line, json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}));
    }
}

//! Tests of the raw relay of tool results: what is relayed as written, and that it means
//! what the decoded result would.

use serde_json::{Value, json};

use super::*;

/// The response to a lane call whose result is the JSON text `result`, as the lane hands it over.
fn answer(result: &str) -> ResponseLine {
    let head = r#"{"jsonrpc":"2.0","id":1000000000,"result":"#;
    let line = format!("{head}{result}}}").into_bytes();
    ResponseLine { line, result: Some(head.len()..head.len() + result.len()), id_at: None }
}

/// What the client gets for a decoded result: rmcp's shaping for a client before 2026-07-28.
fn shaped(result: ServerResult) -> Value {
    let mut result = result;
    result.strip_result_type_for_legacy_peer();
    result.strip_non_object_output_for_legacy_peer();
    serde_json::to_value(result).unwrap()
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
    let answer = ResponseLine { line: error.to_vec(), result: None, id_at: None };
    let Err(error) = tool_answer(answer) else { panic!("an error answer") };
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

#[test]
fn the_id_of_a_response_line_is_found_wherever_it_stands() {
    for (line, id, number) in [
        (r#"{"jsonrpc":"2.0","id":1000000003,"result":{"content":[]}}"#, "1000000003", 1_000_000_003),
        // Node's SDK writes the result first; a nested `id` is not the response's.
        (
            r#"{"result":{"structuredContent":{"id":7},"content":[]},"jsonrpc":"2.0","id":1000000004}"#,
            "1000000004",
            1_000_000_004,
        ),
        (
            r#"{ "jsonrpc" : "2.0" , "error" : {"code":-32602,"message":"\"id\": 9"} , "id" : 1e9 }"#,
            "1e9",
            1_000_000_000,
        ),
        // What follows the id and the result's start is not read: a relay's client reads it.
        (r#"{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"#, "5", 5),
    ] {
        let (found, span) = response_id(line.as_bytes()).expect("an id");
        assert_eq!((found, &line[span]), (number, id), "{line}");
    }
    for line in [
        r#"{"jsonrpc":"2.0","result":{}}"#,
        r#"{"jsonrpc":"2.0","id":"s-1","result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1.5,"result":{}}"#,
        // A request of the server's, and a notification: not answers.
        r#"{"jsonrpc":"2.0","id":3,"method":"sampling/createMessage","params":{}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":3}}"#,
        r#"{"jsonrpc":"2.0","id":3}"#,
        r#"{"jsonrpc":"2.0","id":3,"#,
        "[1]",
        "not json",
    ] {
        assert_eq!(response_id(line.as_bytes()), None, "{line}");
    }
}

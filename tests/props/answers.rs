//! Fuzz target: the hub's reading of an upstream's answer lines (`wire::response_id`).
//!
//! The hub reads an answer only as far as its id and its `result` or `error`, whichever
//! comes last, and passes the line on with another id where it found this one. So on any
//! line it must not panic, and a span it reports must hold the id it reports; on a
//! well-formed object it must agree with a reading of the whole object, in the order the
//! entries were written, up to where it stops.

use foxxy_bridge::wire::{number_or_string, response_id};
use proptest::prelude::*;
use rmcp::model::NumberOrString;
use serde_json::{Value, json};

use crate::harness::fuzz;

/// JSON values, nested a little, some with an `id` of their own.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |n| n.is_finite()).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        Just(json!("\"id\": 9, \"result\"")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop::sample::select(&["id", "result", "method", "a"][..]),
                inner,
                0..4
            )
            .prop_map(|map| Value::Object(map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// A response's id as upstreams write them, and ids no lane has.
fn id() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (1_000_000_000i64..1_000_001_000).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => Just(json!(1e9)),
        1 => Just(json!(7.5)),
        1 => "[a-z0-9-]{0,8}".prop_map(Value::from),
        1 => Just(Value::Null),
    ]
}

/// The entries of one message, each key once, in the order they are written.
fn entries() -> impl Strategy<Value = Vec<(String, Value)>> {
    let key = prop::sample::select(&["jsonrpc", "id", "result", "error", "method", "params", "x"][..]);
    let entry = (key, value(), id()).prop_map(|(key, value, id)| match key {
        "id" => (key.to_owned(), id),
        "jsonrpc" => (key.to_owned(), json!("2.0")),
        "method" => (key.to_owned(), json!("notifications/progress")),
        _ => (key.to_owned(), value),
    });
    prop::collection::vec(entry, 0..6).prop_map(|mut entries| {
        let mut seen = std::collections::HashSet::new();
        entries.retain(|(key, _)| seen.insert(key.clone()));
        entries
    })
}

/// `entries` as one line, with some space around the punctuation.
fn line_of(entries: &[(String, Value)], spaced: bool) -> String {
    let gap = if spaced { " " } else { "" };
    let body: Vec<String> =
        entries.iter().map(|(key, value)| format!("{gap}{}{gap}:{gap}{}{gap}", json!(key), value)).collect();
    format!("{{{}}}", body.join(","))
}

/// What the hub must find: read the entries in order until both the id and a `result`
/// or `error` were seen; a `method` before that makes the line no answer.
fn expected(entries: &[(String, Value)]) -> Option<i64> {
    let (mut id, mut response) = (None, false);
    for (key, value) in entries {
        match key.as_str() {
            "id" => match number_or_string(value) {
                Ok(NumberOrString::Number(number)) => id = Some(number),
                _ => return None,
            },
            "method" => return None,
            "result" | "error" => response = true,
            _ => {}
        }
        if response && id.is_some() {
            break;
        }
    }
    if response { id } else { None }
}

/// Whatever `response_id` says of `line`, its span holds its id.
fn check_span(line: &[u8], found: Option<(i64, std::ops::Range<usize>)>) -> Result<(), TestCaseError> {
    if let Some((id, span)) = found {
        prop_assert!(span.end <= line.len(), "span {span:?} past the line");
        let text = std::str::from_utf8(&line[span.clone()])
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        let value: Value =
            serde_json::from_str(text).map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert!(matches!(number_or_string(&value), Ok(NumberOrString::Number(n)) if n == id), "{text}");
    }
    Ok(())
}

#[test]
fn answers_response_id() {
    fuzz("answers-response-id", (entries(), any::<bool>()), |(entries, spaced)| {
        let line = line_of(&entries, spaced);
        let found = response_id(line.as_bytes());
        prop_assert_eq!(found.as_ref().map(|(id, _)| *id), expected(&entries), "{}", line);
        check_span(line.as_bytes(), found)
    });
}

/// Lines cut short or with bytes changed: no panic, and a span found holds its id.
#[test]
fn answers_response_id_of_broken_lines() {
    let broken = (entries(), any::<prop::sample::Index>(), any::<u8>(), any::<bool>());
    fuzz("answers-response-id-broken", broken, |(entries, at, byte, cut)| {
        let mut line = line_of(&entries, false).into_bytes();
        let at = at.index(line.len() + 1);
        if cut {
            line.truncate(at);
        } else if at < line.len() {
            line[at] = byte;
        }
        check_span(&line, response_id(&line))
    });
}

//! What JSON-RPC 2.0 owes a batch of client lines, and what a line the bridge prints
//! must look like.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// Who a response is for: a usable id (canonical text) or `null`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Key {
    Id(String),
    Null,
}

/// The canonical form of an id, as a request id is compared: integers that fit in an
/// i64 (also written as `1.0`: integral and exactly representable) and strings are
/// usable, the rest is not.
pub(super) fn id_key(id: &Value) -> Key {
    match id {
        Value::String(text) => Key::Id(format!("s:{text}")),
        Value::Number(number) => {
            if let Some(integer) = number.as_i64() {
                Key::Id(format!("n:{integer}"))
            } else if number.is_u64() {
                // Beyond i64: no request can have it, so it is answered with `null`.
                Key::Null
            } else {
                match number.as_f64() {
                    Some(float) if float.fract() == 0.0 && float.abs() < 9_007_199_254_740_992.0 => {
                        Key::Id(format!("n:{}", float as i64))
                    }
                    _ => Key::Null,
                }
            }
        }
        _ => Key::Null,
    }
}

/// How many responses a batch is owed, per key, as a range; and how many parse errors.
#[derive(Debug, Default)]
pub(super) struct Owed {
    pub(super) responses: BTreeMap<Key, (usize, usize)>,
    pub(super) parse_errors: usize,
}

impl Owed {
    pub(super) fn add(&mut self, key: Key, min: usize, max: usize) {
        let entry = self.responses.entry(key).or_default();
        entry.0 += min;
        entry.1 += max;
    }

    /// Owes `min..=max` responses to a message with `id`. An id written as a float is
    /// a JSON-RPC Number, but the bridge only echoes it when rmcp reads it as an integer
    /// (`1.0` is `1`) and the request is valid; otherwise it answers with `null` (see
    /// the report), so either is accepted, at most `max` times.
    pub(super) fn owe(&mut self, id: Option<&Value>, min: usize, max: usize) {
        match id {
            Some(Value::Number(number)) if number.is_f64() => {
                if let key @ Key::Id(_) = id_key(&Value::Number(number.clone())) {
                    self.add(key, 0, max);
                    self.add(Key::Null, 0, max);
                } else {
                    self.add(Key::Null, min, max);
                }
            }
            id => self.add(id.map_or(Key::Null, id_key), min, max),
        }
    }
}

/// What JSON-RPC 2.0 asks for each line of `batch` (split as the bridge splits it).
pub(super) fn owed(batch: &[u8], max_bytes: usize) -> Owed {
    let mut owed = Owed::default();
    let mut cancelled = Vec::new();
    let lines: Vec<&[u8]> = batch.split(|&byte| byte == b'\n').collect();
    // The batch ends with a newline: the piece after it is empty.
    for line in &lines[..lines.len() - 1] {
        if line.len() > max_bytes {
            owed.add(Key::Null, 1, 1);
            continue;
        }
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let Ok(value) = serde_json::from_slice::<Value>(line) else {
            owed.parse_errors += 1;
            owed.add(Key::Null, 1, 1);
            continue;
        };
        let Value::Object(object) = &value else {
            owed.add(Key::Null, 1, 1);
            continue;
        };
        let id = object.get("id");
        let version_ok = object.get("jsonrpc") == Some(&json!("2.0"));
        let is_response = object.contains_key("result") || object.contains_key("error");
        match (object.get("method"), object.contains_key("id")) {
            // A notification: never answered. A malformed one may get an error.
            (Some(Value::String(method)), false) => {
                let params = object.get("params");
                let well_formed =
                    version_ok && params.is_none_or(|params| params.is_object() || params.is_array());
                if well_formed && method == "notifications/cancelled" {
                    cancelled.extend(params.and_then(|params| params.get("requestId")).map(id_key));
                }
                owed.add(Key::Null, 0, usize::from(!well_formed));
            }
            // A request: answered once, with its id when it has a usable one. An object
            // that is also a response is ambiguous: it may be left unanswered.
            (Some(_), true) => owed.owe(id, usize::from(!is_response), 1),
            (Some(_), false) => owed.add(Key::Null, usize::from(!is_response), 1),
            // A response from the client: not answered (a malformed one may get an error).
            (None, _) if is_response => owed.owe(id, 0, usize::from(!is_valid_response(object))),
            // Neither: an invalid request.
            (None, _) => owed.owe(id, 1, 1),
        }
    }
    // A cancelled request may go unanswered.
    for key in cancelled {
        if let Some(entry) = owed.responses.get_mut(&key) {
            entry.0 = 0;
        }
    }
    owed
}

/// A JSON-RPC 2.0 response object: a result with a usable id, or a well-formed error
/// with a usable or `null` id.
pub(super) fn is_valid_response(object: &Map<String, Value>) -> bool {
    let usable_id = object.get("id").is_some_and(|id| id_key(id) != Key::Null);
    let error_ok = |error: &Value| {
        error.get("code").is_some_and(Value::is_i64) && error.get("message").is_some_and(Value::is_string)
    };
    let reply_ok = match (object.get("result"), object.get("error")) {
        (Some(_), None) => usable_id,
        (None, Some(error)) => error_ok(error) && (usable_id || object.get("id") == Some(&Value::Null)),
        _ => false,
    };
    object.get("jsonrpc") == Some(&json!("2.0")) && reply_ok
}

/// Checks one stdout line; returns the key of a response (`None` for a notification).
pub(super) fn check_line(line: &[u8]) -> Result<Option<(Key, Option<i64>)>, String> {
    let text = String::from_utf8_lossy(line);
    let value: Value =
        serde_json::from_slice(line).map_err(|error| format!("stdout line is not JSON ({error}): {text}"))?;
    let object = value.as_object().ok_or_else(|| format!("stdout line is not an object: {text}"))?;
    if object.get("jsonrpc") != Some(&json!("2.0")) {
        return Err(format!("stdout line without \"jsonrpc\": \"2.0\": {text}"));
    }
    if object.get("method").is_some_and(Value::is_string) && !object.contains_key("id") {
        return Ok(None);
    }
    let id = object.get("id").ok_or_else(|| format!("a response without `id`: {text}"))?;
    let code = match (object.get("result"), object.get("error")) {
        (Some(_), None) => None,
        (None, Some(error)) => {
            let code = error.get("code").and_then(Value::as_i64);
            if code.is_none() || !error.get("message").is_some_and(Value::is_string) {
                return Err(format!("an error without an integer `code` and a `message`: {text}"));
            }
            code
        }
        _ => return Err(format!("a response needs exactly one of `result` and `error`: {text}")),
    };
    if code == Some(-32700) && !id.is_null() {
        return Err(format!("a parse error must have `\"id\": null`: {text}"));
    }
    if !id.is_null() && id_key(id) == Key::Null {
        return Err(format!("a response with an id no request can have: {text}"));
    }
    Ok(Some((id_key(id), code)))
}

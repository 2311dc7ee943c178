//! What a line over `maxMessageBytes` from a stdio upstream was, read from its first
//! bytes only (the line reader keeps those, `wire::line_reader`; the rest is never held in
//! memory): an answer to one of our requests (and its id), a request or notification of
//! the server's, or something that cannot be told. The transport (`transport.rs`) then
//! fails that one request, answers the server's request, or fails every request in flight
//! and ends the session, so no request waits for an answer that was dropped. It also
//! makes the error lines that stand in for a dropped answer.

use rmcp::model::{ErrorCode, ErrorData, JsonRpcError, JsonRpcVersion2_0, RequestId};

/// What the start of an over-limit line says it is.
#[derive(Debug, PartialEq)]
pub enum Oversized {
    /// An answer (`result` or `error`) to our request `id`.
    Answer(RequestId),
    /// A request (with its id) or notification (none) of the server's.
    ServerMessage(Option<RequestId>),
    /// Neither could be told from the first bytes.
    Unknown,
}

/// Read the top-level keys at the start of a JSON object, as far as `head` goes.
pub fn classify(head: &[u8]) -> Oversized {
    let mut reader = TruncatedJsonReader { text: head, at: 0 };
    let mut id = None;
    let mut answer = false;
    let mut server = false;
    if reader.expect(b'{') {
        while let Some(key) = reader.key() {
            match key {
                b"id" => match reader.value() {
                    Some(value) => id = serde_json::from_slice::<RequestId>(value).ok(),
                    None => break,
                },
                other => {
                    answer |= other == b"result" || other == b"error";
                    server |= other == b"method" || other == b"params";
                    if (answer || server) && id.is_some() {
                        break;
                    }
                    if reader.value().is_none() {
                        break;
                    }
                }
            }
            if !reader.expect(b',') {
                break;
            }
        }
    }
    match (answer, server, id) {
        (true, false, Some(id)) => Oversized::Answer(id),
        (false, true, id) => Oversized::ServerMessage(id),
        _ => Oversized::Unknown,
    }
}

/// The answer that stands in for a dropped answer to `tools/call` request `id`: a tool
/// error result, as the bridge gives for every failure of its own on a tool call, so
/// the model reads the reason.
pub fn tool_error_line(id: RequestId, message: &str) -> Vec<u8> {
    let line = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": { "content": [{ "type": "text", "text": message }], "isError": true },
    });
    serde_json::to_vec(&line).unwrap_or_default()
}

/// The error answer that stands in for a dropped answer to any other request `id`.
pub fn error_line(id: RequestId, message: &str) -> Vec<u8> {
    let error = JsonRpcError {
        jsonrpc: JsonRpcVersion2_0,
        id: Some(id),
        error: ErrorData::new(ErrorCode::INTERNAL_ERROR, message.to_owned(), None),
    };
    serde_json::to_vec(&error).unwrap_or_default()
}

/// A forward-only reader of JSON text that may stop anywhere.
struct TruncatedJsonReader<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> TruncatedJsonReader<'a> {
    fn skip_space(&mut self) {
        while self.text.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    /// Consume `byte` (after white space), if it is next.
    fn expect(&mut self, byte: u8) -> bool {
        self.skip_space();
        let found = self.text.get(self.at) == Some(&byte);
        self.at += usize::from(found);
        found
    }

    /// The next key and its colon; `None` at the end of the object or of the text.
    fn key(&mut self) -> Option<&'a [u8]> {
        self.skip_space();
        let key = self.string()?;
        self.expect(b':').then_some(key)
    }

    /// A string's raw text without its quotes; `None` if it does not end in the text.
    fn string(&mut self) -> Option<&'a [u8]> {
        if self.text.get(self.at) != Some(&b'"') {
            return None;
        }
        let start = self.at + 1;
        let mut index = start;
        while let Some(&byte) = self.text.get(index) {
            match byte {
                b'\\' => index += 2,
                b'"' => {
                    self.at = index + 1;
                    return Some(&self.text[start..index]);
                }
                _ => index += 1,
            }
        }
        None
    }

    /// Skip one value and return its text; `None` if it does not end in the text.
    fn value(&mut self) -> Option<&'a [u8]> {
        self.skip_space();
        let start = self.at;
        match *self.text.get(self.at)? {
            b'"' => {
                self.string()?;
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match *self.text.get(self.at)? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                let length = self.text[self.at..]
                    .iter()
                    .position(|byte| matches!(byte, b',' | b'}' | b']') || byte.is_ascii_whitespace())?;
                self.at += length;
            }
        }
        Some(&self.text[start..self.at])
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::NumberOrString;

    use super::*;

    fn check(head: &str, expected: Oversized) {
        assert_eq!(classify(head.as_bytes()), expected, "{head}");
    }

    fn number(id: i64) -> RequestId {
        NumberOrString::Number(id)
    }

    #[test]
    fn the_start_of_a_line_tells_what_it_answered() {
        check(
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"xxxx"#,
            Oversized::Answer(number(7)),
        );
        check(r#"{ "id" : "a\"b", "result" : "#, Oversized::Answer(NumberOrString::String("a\"b".into())));
        check(
            r#"{"jsonrpc":"2.0","id":1000000001,"error":{"code":1,"message":"xx"#,
            Oversized::Answer(number(1_000_000_001)),
        );
        check(r#"{"result":{"a":[1,{"b":"}"}]},"jsonrpc":"2.0","id":3}"#, Oversized::Answer(number(3)));
        check(
            r#"{"jsonrpc":"2.0","id":2,"method":"sampling/createMessage","params":{"x"#,
            Oversized::ServerMessage(Some(number(2))),
        );
        check(
            r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"xxx"#,
            Oversized::ServerMessage(None),
        );
        // The id after a result that does not end in the head: cannot be told.
        check(r#"{"jsonrpc":"2.0","result":{"content":[{"text":"xxxxxx"#, Oversized::Unknown);
        check("xxxxxxxxxxxxxxxx", Oversized::Unknown);
        check(r#"{"jsonrpc":"2.0","id":"#, Oversized::Unknown);
        check(r#"{"jsonrpc":"2.0","id":4"#, Oversized::Unknown);
        check("", Oversized::Unknown);
    }

    #[test]
    fn the_stand_ins_are_a_json_rpc_error_and_a_tool_error() {
        let line: serde_json::Value = serde_json::from_slice(&error_line(number(5), "too big")).unwrap();
        assert_eq!(
            line,
            serde_json::json!({"jsonrpc": "2.0", "id": 5, "error": {"code": -32603, "message": "too big"}})
        );
        let line: serde_json::Value = serde_json::from_slice(&tool_error_line(number(6), "too big")).unwrap();
        let result = serde_json::json!({"content": [{"type": "text", "text": "too big"}], "isError": true});
        assert_eq!(line, serde_json::json!({"jsonrpc": "2.0", "id": 6, "result": result}));
    }
}

//! The state the client's stdio transport shares between rmcp's side, the stdin reader
//! and the calls served without rmcp: the queue to the stdout writer, the client requests
//! in flight and who serves each, whether the session is initialized, and the encoding of
//! answers (an answer over `maxMessageBytes` becomes an error that says so).

use std::{
    collections::hash_map::Entry,
    ops::Range,
    sync::{Arc, Mutex, atomic::AtomicBool},
};

use rmcp::model::{JsonRpcMessage, RequestId, ServerJsonRpcMessage};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::writer::Outgoing;
use crate::{locks::Unpoisoned, proxy::Bridge, upstream::LaneTicket};

/// Who is serving a client request that has not been answered yet.
pub enum ServedBy {
    /// rmcp's session.
    Rmcp,
    /// A task of `calls.rs` or `tasks.rs`, stopped by this token.
    Task(CancellationToken),
    /// An upstream's direct lane; no task waits for it (`calls.rs`).
    Lane(LaneTicket),
}

/// Shared by the transport (rmcp's side) and the stdin reader.
pub struct Outbox {
    pub tx: mpsc::Sender<Outgoing>,
    /// Client requests that have not been answered yet, and who serves them.
    pub in_flight: Mutex<foldhash::HashMap<RequestId, ServedBy>>,
    /// Whether an `initialize` request has been passed to rmcp.
    pub initialized: AtomicBool,
    pub max_bytes: usize,
    /// Serves `tools/call` without rmcp's session task (`calls.rs`); `None` in tests of
    /// the transport alone.
    pub bridge: Option<Arc<Bridge>>,
}

impl Outbox {
    pub fn in_flight(&self) -> std::sync::MutexGuard<'_, foldhash::HashMap<RequestId, ServedBy>> {
        self.in_flight.lock_unpoisoned()
    }

    /// Record `id` as in flight, served by rmcp; `false` when it already is. The
    /// request already in flight keeps its entry.
    pub fn enter(&self, id: &RequestId) -> bool {
        match self.in_flight().entry(id.clone()) {
            Entry::Vacant(vacant) => {
                vacant.insert(ServedBy::Rmcp);
                true
            }
            Entry::Occupied(_) => false,
        }
    }

    /// Queue `line` for stdout from code that cannot wait: when the queue is full, a
    /// task of its own waits for room.
    pub fn queue(&self, line: Vec<u8>) {
        if let Err(mpsc::error::TrySendError::Full(item)) = self.tx.try_send(Outgoing::Line(line))
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let tx = self.tx.clone();
            runtime.spawn(async move {
                // A closed outbox means the client is gone; nobody is left to answer.
                let _ = tx.send(item).await;
            });
        }
    }

    /// The line for `item`, its id no longer in flight; an answer over `maxMessageBytes`
    /// becomes an error that says so.
    pub fn encode(&self, item: &ServerJsonRpcMessage) -> Option<Vec<u8>> {
        let id = match item {
            JsonRpcMessage::Response(response) => Some(&response.id),
            JsonRpcMessage::Error(error) => error.id.as_ref(),
            _ => None,
        };
        match serde_json::to_vec(item) {
            Ok(line) => self.finish(id, line),
            Err(error) => {
                tracing::error!("cannot encode a message for the client: {error}");
                if let Some(id) = id {
                    self.in_flight().remove(id);
                }
                None
            }
        }
    }

    /// The answer to request `id` whose result is the JSON text `result`, as [`Outbox::encode`]
    /// would write it for a decoded result.
    pub fn encode_result(&self, id: RequestId, result: &[u8]) -> Option<Vec<u8>> {
        const HEAD: &[u8] = br#"{"jsonrpc":"2.0","id":"#;
        let mut line = Vec::with_capacity(HEAD.len() + 32 + result.len());
        line.extend_from_slice(HEAD);
        // A number or a string: cannot fail.
        serde_json::to_writer(&mut line, &id).ok()?;
        line.extend_from_slice(br#","result":"#);
        line.extend_from_slice(result);
        line.push(b'}');
        self.finish(Some(&id), line)
    }

    /// The response `line` of another peer, with request `id` in place of the id at
    /// `id_at`, and `id` no longer in flight.
    pub fn encode_with_id(&self, id: RequestId, line: &[u8], id_at: Range<usize>) -> Option<Vec<u8>> {
        let (head, tail) = (line.get(..id_at.start)?, line.get(id_at.end..)?.trim_ascii_end());
        let mut encoded = Vec::with_capacity(line.len() + 16);
        encoded.extend_from_slice(head);
        // A number or a string: cannot fail.
        serde_json::to_writer(&mut encoded, &id).ok()?;
        encoded.extend_from_slice(tail);
        self.finish(Some(&id), encoded)
    }

    /// The encoded `line`, with request `id` (if it answers one) no longer in flight.
    fn finish(&self, id: Option<&RequestId>, mut line: Vec<u8>) -> Option<Vec<u8>> {
        if let Some(id) = id {
            self.in_flight().remove(id);
        }
        if line.len() > self.max_bytes {
            tracing::warn!(bytes = line.len(), "a message for the client is over `maxMessageBytes`");
            let id = id.cloned()?;
            line = json!({"jsonrpc": "2.0", "id": id, "error": {
                "code": -32603,
                "message": format!("the result is larger than the {} byte limit (`bridge.maxMessageBytes`)", self.max_bytes),
            }})
            .to_string()
            .into_bytes();
        }
        line.push(b'\n');
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn limited_to(max_bytes: usize) -> Outbox {
        let (tx, _rx) = mpsc::channel(1);
        Outbox {
            tx,
            in_flight: Mutex::default(),
            initialized: AtomicBool::new(true),
            max_bytes,
            bridge: None,
        }
    }

    #[test]
    fn another_peers_answer_gets_the_clients_id_and_nothing_else_changes() {
        let outbox = limited_to(1 << 16);
        let line = br#"{ "result" : {"content":[{"type":"text","text":"a \"b\"\n"}]}, "id":1000000007, "jsonrpc":"2.0"}  "#;
        let at = line.windows(10).position(|window| window == b"1000000007").expect("the id");
        for id in [RequestId::Number(3), RequestId::String("call \"4\"".into())] {
            outbox.in_flight().insert(id.clone(), ServedBy::Rmcp);
            let encoded = outbox.encode_with_id(id.clone(), line, at..at + 10).expect("encoded");
            assert!(!outbox.in_flight().contains_key(&id), "the id is no longer in flight");
            assert_eq!(encoded.last(), Some(&b'\n'));
            let mut expected: Value = serde_json::from_slice(line).expect("JSON");
            expected["id"] = serde_json::to_value(&id).expect("id");
            assert_eq!(serde_json::from_slice::<Value>(&encoded).expect("JSON"), expected);
            let text = String::from_utf8(encoded).expect("UTF-8");
            assert!(text.starts_with(r#"{ "result" : {"content""#), "written as the peer wrote it: {text}");
        }
        // Over the limit: an error that says so, with the client's id.
        let small = limited_to(40);
        let encoded = small.encode_with_id(RequestId::Number(9), line, at..at + 10).expect("an error");
        let error: Value = serde_json::from_slice(&encoded).expect("JSON");
        assert_eq!((error["id"].as_i64(), error["error"]["code"].as_i64()), (Some(9), Some(-32603)));
    }
}

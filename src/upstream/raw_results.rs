//! Results as the upstream wrote them.
//!
//! rmcp decodes every result into its own types, which keep only the fields they know:
//! `execution` in a tool, a field of a newer protocol, a task (rmcp 3.11 models another
//! tasks proposal), or a server's own extension field would be lost on the way to the
//! client. So every session has a [`RawResults`]: the tap (`tap.rs`) marks the id
//! of each outgoing `tools/list` request and of each request marked [`RawResultWanted`],
//! each transport offers the JSON text of every incoming message while such an id is
//! open ([`RawResults::offer`]), and the capture keeps the `result` of the matching
//! response. `listing::list_catalog` takes a `tools/list` result by the request's id and pairs its
//! tools with rmcp's decoded ones, which the bridge still uses for names and routing;
//! `Connection::request_raw` takes the others whole.
//!
//! The capture costs one atomic load per incoming message while no `tools/list` is
//! open. Over streamable HTTP, an answer sent as one JSON body is decoded inside rmcp's
//! client, so the bridge's own client POSTs these requests and offers that body
//! (`http/json_answer.rs`). When a transport cannot offer the text, the decoded tool is
//! served as rmcp encodes it.

use std::sync::{
    Mutex,
    atomic::{AtomicUsize, Ordering},
};

use foldhash::HashMap;
use rmcp::model::RequestId;
use serde::{Deserialize, de::IgnoredAny};
use serde_json::Value;

use crate::locks::Unpoisoned;

/// Open `tools/list` ids beyond this are forgotten (answers that never came).
const MAX_OPEN: usize = 64;

/// Marks a request (in its rmcp extensions, never sent) whose result is wanted as the
/// upstream wrote it.
#[derive(Clone, Copy, Debug)]
pub struct RawResultWanted;

/// The raw results of one session's `tools/list` responses and of requests marked
/// [`RawResultWanted`], by request id.
#[derive(Default)]
pub struct RawResults {
    /// How many ids are open; read without the lock on every incoming message.
    open: AtomicUsize,
    /// Open ids (`None`) and answered ones (the raw result), until taken.
    lists: Mutex<HashMap<RequestId, Option<Value>>>,
    /// The id of the session's `initialize`, whose result holds what rmcp's capability
    /// type drops (`capabilities.tasks`).
    initialize: std::sync::OnceLock<RequestId>,
    /// Its result's `capabilities.tasks`, once taken (every re-listing reads it).
    initialize_tasks: std::sync::OnceLock<Option<Value>>,
    /// Requests to the client with `params.task`, as written (`client_tasks.rs`).
    pub task_requests: super::client_tasks::TaskRequests,
}

impl RawResults {
    fn lists(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, Option<Value>>> {
        self.lists.lock_unpoisoned()
    }

    /// A request with id `id` whose result is wanted raw is being sent.
    pub fn expect(&self, id: RequestId) {
        let mut lists = self.lists();
        if lists.len() >= MAX_OPEN {
            lists.clear();
        }
        lists.insert(id, None);
        self.open.store(lists.len(), Ordering::SeqCst);
    }

    /// `text` is an incoming message: keep its result if it answers an open id.
    pub fn offer(&self, text: &[u8]) {
        self.task_requests.offer(text);
        if self.open.load(Ordering::SeqCst) == 0 {
            return;
        }
        #[derive(Deserialize)]
        struct Head {
            id: Option<RequestId>,
            method: Option<IgnoredAny>,
        }
        #[derive(Deserialize)]
        struct Answer {
            result: Value,
        }
        let Ok(Head { id: Some(id), method: None }) = serde_json::from_slice::<Head>(text) else { return };
        if !matches!(self.lists().get(&id), Some(None)) {
            return;
        }
        let Ok(answer) = serde_json::from_slice::<Answer>(text) else { return };
        if let Some(slot) = self.lists().get_mut(&id) {
            *slot = Some(answer.result);
        }
    }

    /// The session's `initialize` request, with id `id`, is being sent.
    pub fn expect_initialize(&self, id: RequestId) {
        let _ = self.initialize.set(id.clone());
        self.expect(id);
    }

    /// `capabilities.tasks` of the `initialize` result as written (`None` when it has
    /// none, for a session opened with `server/discover`, or when the transport could
    /// not keep the text).
    pub fn initialize_tasks(&self) -> Option<Value> {
        self.initialize_tasks
            .get_or_init(|| {
                let mut result = self.take(self.initialize.get()?)?;
                result.get_mut("capabilities")?.get_mut("tasks").map(Value::take)
            })
            .clone()
    }

    /// The result of the answer to request `id`, as written; `None` when the transport
    /// could not offer its text. The id is closed either way.
    pub fn take(&self, id: &RequestId) -> Option<Value> {
        let mut lists = self.lists();
        let taken = lists.remove(id).flatten();
        self.open.store(lists.len(), Ordering::SeqCst);
        taken
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keeps_the_tools_of_open_lists_only() {
        let capture = RawResults::default();
        let answer = |id: i64| {
            json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [{"name": "a", "execution": {"taskSupport": "optional"}}]}})
                .to_string()
        };
        capture.offer(answer(1).as_bytes());
        assert!(capture.take(&RequestId::Number(1)).is_none(), "1 was never open");
        capture.expect(RequestId::Number(2));
        capture.offer(br#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#);
        capture.offer(answer(3).as_bytes());
        capture.offer(answer(2).as_bytes());
        let result = capture.take(&RequestId::Number(2)).expect("the answer to 2");
        assert_eq!(result["tools"][0]["execution"], json!({"taskSupport": "optional"}));
        assert_eq!(capture.open.load(Ordering::SeqCst), 0);
        assert!(capture.take(&RequestId::Number(2)).is_none(), "taken once");
    }
}

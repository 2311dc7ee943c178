//! The direct lane for `tools/call` on a stdio upstream.
//!
//! rmcp's client sends a request through its session task: the request is queued to
//! that task, serialized through a generic value, written, and its answer travels back
//! through the task's responder table. For the one method a bridge relays thousands of
//! times, that machinery is most of the bridge's cost per call. The lane skips it: the
//! caller ([`super::connection::Connection`]) writes the request line itself, and the
//! transport ([`super::lines::LineTransport`]) hands the answer line straight back to
//! the waiting caller instead of decoding it for rmcp.
//!
//! Everything else (other requests, notifications, the upstream's own requests) still
//! goes through rmcp. The lane's request ids are numbers from [`FIRST_ID`] up, far
//! above rmcp's counters (which start at 0), and within 32 bits for servers that read
//! ids as `int`. The lane is used only on sessions that speak a protocol before
//! 2026-07-28; see `session.rs`.

use std::{
    collections::HashMap,
    ops::Range,
    sync::{Arc, Mutex, MutexGuard},
};

use rmcp::model::{JsonRpcVersion2_0, RequestId};
use serde::{Deserialize, Serialize, de::IgnoredAny};
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::{outlet::Outlet, relay::ToolCall};

/// The first request id of the lane; ids wrap back to it after `i32::MAX`.
pub const FIRST_ID: i64 = 1_000_000_000;

pub struct Lane {
    outlet: Arc<Outlet>,
    /// Calls waiting for their answer. Entries are added by [`Lane::reserve`], removed
    /// by the transport when the answer arrives or by the [`Call`] when dropped, and
    /// all dropped when the transport ends (their callers then see the session closed).
    waiting: Mutex<Waiting>,
}

struct Waiting {
    next_id: i64,
    answers: HashMap<i64, oneshot::Sender<Answer>>,
    closed: bool,
}

/// The upstream's answer line to a lane call, and where in it its `result` is (none for
/// an error answer).
pub struct Answer {
    pub line: Vec<u8>,
    pub result: Option<Range<usize>>,
}

/// One call on the lane, from its id's reservation until its answer or its end.
pub struct Call<'a> {
    lane: &'a Lane,
    pub id: i64,
    /// Fires with the upstream's answer; fails when the session ended first.
    pub answer: oneshot::Receiver<Answer>,
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        // Answered calls are already gone; this forgets one given up on (cancelled,
        // timed out), so its late answer goes to rmcp, which logs and drops it.
        self.lane.waiting().answers.remove(&self.id);
    }
}

impl Lane {
    pub fn new(outlet: Arc<Outlet>) -> Self {
        Self {
            outlet,
            waiting: Mutex::new(Waiting { next_id: FIRST_ID, answers: HashMap::new(), closed: false }),
        }
    }

    fn waiting(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh id whose answer will be routed back; `None` once the session ended.
    pub fn reserve(&self) -> Option<Call<'_>> {
        let mut waiting = self.waiting();
        if waiting.closed {
            return None;
        }
        let id = waiting.next_id;
        waiting.next_id = if id >= i64::from(i32::MAX) { FIRST_ID } else { id + 1 };
        let (tx, answer) = oneshot::channel();
        waiting.answers.insert(id, tx);
        Some(Call { lane: self, id, answer })
    }

    /// Write the `tools/call` request of `call`.
    pub async fn send(&self, call: &Call<'_>, params: &ToolCall) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct Line<'a> {
            jsonrpc: JsonRpcVersion2_0,
            id: i64,
            method: &'static str,
            params: &'a ToolCall,
        }
        let line = Line { jsonrpc: JsonRpcVersion2_0, id: call.id, method: "tools/call", params };
        let mut bytes = Vec::with_capacity(256);
        serde_json::to_writer(&mut bytes, &line)?;
        bytes.push(b'\n');
        self.outlet.send(bytes).await
    }

    /// If `line` answers a call waiting on the lane, hand it over and return `true`;
    /// otherwise the line is for rmcp. Cheap when nothing is waiting.
    pub fn claim(&self, line: &[u8]) -> bool {
        // One pass finds the id and where the result is, so the caller need not scan
        // the line again to relay the result.
        #[derive(Deserialize)]
        struct Head<'a> {
            id: Option<RequestId>,
            method: Option<IgnoredAny>,
            #[serde(borrow)]
            result: Option<&'a RawValue>,
        }
        let mut waiting = self.waiting();
        if waiting.answers.is_empty() {
            return false;
        }
        let Ok(Head { id: Some(RequestId::Number(id)), method: None, result }) = serde_json::from_slice(line)
        else {
            return false;
        };
        let Some(answer) = waiting.answers.remove(&id) else {
            return false;
        };
        let result = result.map(|result| {
            // `result` borrows from `line`, so its offset is where its text starts.
            let start = result.get().as_ptr() as usize - line.as_ptr() as usize;
            start..start + result.get().len()
        });
        // The caller may have given up this instant; then the answer has no one to go to.
        let _ = answer.send(Answer { line: line.to_vec(), result });
        true
    }

    /// The session ended: fail every waiting call and refuse new ones.
    pub fn close(&self) {
        let mut waiting = self.waiting();
        waiting.closed = true;
        waiting.answers.clear();
    }
}

//! The client's side of the requests upstreams send it, beyond what rmcp's types carry:
//! tasks the client runs for an upstream (MCP 2025-11-25) and progress on requests.
//!
//! - The client's `capabilities.tasks`, read from its `initialize` line as written
//!   ([`UpstreamRequests::remember_initialize`]), since rmcp's capability type drops it;
//!   what the bridge relays of it is declared to each upstream.
//! - Answers as written: a request relayed raw (a custom request: a task-augmented
//!   sampling or elicitation request, `tasks/*`) is marked [`RawAnswerWanted`]; the
//!   stdio transport records its id when it sends it and offers every response line
//!   ([`UpstreamRequests::offer`]), so the upstream gets the client's result unchanged.
//! - Progress: an upstream's request that carries a progress token reaches the client
//!   with the token rmcp's peer gave it (marked [`KeepProgressToken`]), and the client's
//!   progress under that token goes back to the upstream under its own.
//! - Task ownership: the client's task ids, each known to the upstream that created it,
//!   so `tasks/get`, `tasks/result`, `tasks/cancel` and `tasks/list` of one upstream never
//!   reach another's tasks, and `notifications/tasks/status` goes to the owner.

use std::sync::{
    Mutex, OnceLock,
    atomic::{AtomicUsize, Ordering},
};

use foldhash::HashMap;
use rmcp::model::{GetExtensions, ProgressNotificationParam, ProgressToken, RequestId, ServerRequest};
use serde::{Deserialize, de::IgnoredAny};
use serde_json::{Map, Value};

use crate::{locks::Unpoisoned, upstream::RequestOrigin};

/// Marks a request to the client (in its rmcp extensions, never sent) whose answer is
/// wanted as the client wrote it.
#[derive(Clone, Copy, Debug)]
pub struct RawAnswerWanted;

/// Marks a request to the client whose progress token stays: the upstream gave one.
#[derive(Clone, Copy, Debug)]
pub struct KeepProgressToken;

/// Entries of each table beyond this are forgotten (requests never answered, tasks
/// long gone); forgetting a task only lets any upstream ask about it.
const MAX_ENTRIES: usize = 4096;

/// See the module documentation. One per client session, held by the client link.
#[derive(Default)]
pub struct UpstreamRequests {
    /// `capabilities.tasks` of the client's `initialize`, as written.
    declared: OnceLock<Option<Value>>,
    /// How many answers are wanted raw; read without the lock on every response.
    open: AtomicUsize,
    answers: Mutex<HashMap<RequestId, Option<Value>>>,
    /// The progress tokens the client was given, and where its progress goes.
    progress: Mutex<HashMap<ProgressToken, RequestOrigin>>,
    /// The client's task ids, and the upstream that created each.
    owners: Mutex<HashMap<String, RequestOrigin>>,
}

fn bounded<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
}

impl UpstreamRequests {
    /// `line` is the client's `initialize` request: keep its `capabilities.tasks`.
    pub fn remember_initialize(&self, line: &[u8]) {
        #[derive(Deserialize)]
        struct Line {
            params: Params,
        }
        #[derive(Deserialize)]
        struct Params {
            capabilities: Map<String, Value>,
        }
        let tasks = serde_json::from_slice::<Line>(line)
            .ok()
            .and_then(|mut line| line.params.capabilities.remove("tasks"))
            .filter(Value::is_object);
        let _ = self.declared.set(tasks);
    }

    /// What the bridge declares to upstreams of the client's `capabilities.tasks`: the
    /// members it relays (`list`, `cancel`, task-augmented sampling and elicitation).
    pub fn relayable(&self) -> Option<Value> {
        let declared = self.declared.get()?.as_ref()?;
        let mut relayed = serde_json::json!({});
        for path in [
            &["list"][..],
            &["cancel"],
            &["requests", "sampling", "createMessage"],
            &["requests", "elicitation", "create"],
        ] {
            if let Some(value) = lookup(declared, path) {
                let mut at = &mut relayed;
                for key in &path[..path.len() - 1] {
                    at = at
                        .as_object_mut()
                        .expect("built of objects")
                        .entry(*key)
                        .or_insert_with(|| serde_json::json!({}));
                }
                at[path[path.len() - 1]] = value.clone();
            }
        }
        Some(relayed)
    }

    /// The member of the client's `capabilities.tasks` that custom request `method` with
    /// `params` needs, if the client did not declare it; `None` when it may be sent.
    pub fn missing(&self, method: &str, params: Option<&Value>) -> Option<&'static str> {
        let declared = self.declared.get().and_then(Option::as_ref);
        let has = |path: &[&str]| declared.is_some_and(|declared| lookup(declared, path).is_some());
        let tasked = params.and_then(|params| params.get("task")).is_some();
        match method {
            "sampling/createMessage" if tasked && !has(&["requests", "sampling", "createMessage"]) => {
                Some("tasks.requests.sampling.createMessage")
            }
            "elicitation/create" if tasked && !has(&["requests", "elicitation", "create"]) => {
                Some("tasks.requests.elicitation.create")
            }
            "tasks/list" if !has(&["list"]) => Some("tasks.list"),
            "tasks/cancel" if !has(&["cancel"]) => Some("tasks.cancel"),
            "tasks/get" | "tasks/result" if declared.is_none() => Some("tasks"),
            _ => None,
        }
    }

    /// Request `id` is being sent to the client: when marked [`RawAnswerWanted`], keep
    /// its answer as written.
    pub fn mark_sent(&self, id: &RequestId, request: &ServerRequest) {
        if request.extensions().get::<RawAnswerWanted>().is_none() {
            return;
        }
        let mut answers = self.answers.lock_unpoisoned();
        bounded(&mut answers);
        answers.insert(id.clone(), None);
        self.open.store(answers.len(), Ordering::SeqCst);
    }

    /// `line` came from the client: keep its result if it answers an open id.
    #[inline]
    pub fn offer(&self, line: &[u8]) {
        // Asked of every line the client sends; most sessions never have an answer open.
        if self.open.load(Ordering::SeqCst) != 0 {
            self.keep_answer(line);
        }
    }

    /// [`UpstreamRequests::offer`] with some answer wanted as written.
    fn keep_answer(&self, line: &[u8]) {
        #[derive(Deserialize)]
        struct Answer {
            id: RequestId,
            method: Option<IgnoredAny>,
            result: Option<Value>,
        }
        let Ok(Answer { id, method: None, result: Some(result) }) = serde_json::from_slice(line) else {
            return;
        };
        if let Some(slot @ None) = self.answers.lock_unpoisoned().get_mut(&id) {
            *slot = Some(result);
        }
    }

    /// The answer to request `id` as written, if it was kept; the id is closed either way.
    pub fn take(&self, id: &RequestId) -> Option<Value> {
        let mut answers = self.answers.lock_unpoisoned();
        let taken = answers.remove(id).flatten();
        self.open.store(answers.len(), Ordering::SeqCst);
        taken
    }

    /// The client's progress under `token` goes to `origin`.
    pub fn route_progress(&self, token: ProgressToken, origin: RequestOrigin) {
        let mut progress = self.progress.lock_unpoisoned();
        bounded(&mut progress);
        progress.insert(token, origin);
    }

    pub fn unroute_progress(&self, token: &ProgressToken) {
        self.progress.lock_unpoisoned().remove(token);
    }

    /// Relay the client's progress to the upstream whose request it is about.
    pub async fn progress(&self, progress: ProgressNotificationParam) {
        let origin = self.progress.lock_unpoisoned().get(&progress.progress_token).cloned();
        match origin {
            Some(origin) => origin.progress(progress).await,
            None => tracing::debug!("progress from the client for no request in flight dropped"),
        }
    }

    /// The client answered `origin`'s task-augmented request with `result`: the task it
    /// created, if any, belongs to that upstream.
    pub fn created(&self, origin: &RequestOrigin, result: &Value) {
        if let Some(task_id) = result.get("task").and_then(|task| task.get("taskId")).and_then(Value::as_str)
        {
            let mut owners = self.owners.lock_unpoisoned();
            bounded(&mut owners);
            owners.insert(task_id.to_owned(), origin.clone());
        }
    }

    /// The upstream that created client task `task_id`, if known.
    pub fn owner(&self, task_id: &str) -> Option<RequestOrigin> {
        self.owners.lock_unpoisoned().get(task_id).cloned()
    }

    /// Whether the client's task `task_id` may be asked about by `upstream`: it created
    /// it, or its creator is not known.
    pub fn visible_to(&self, task_id: &str, upstream: &str) -> bool {
        self.owners.lock_unpoisoned().get(task_id).is_none_or(|owner| &*owner.upstream == upstream)
    }

    /// A `tasks/list` answer of the client with only `upstream`'s tasks.
    pub fn keep_own(&self, upstream: &str, mut listed: Value) -> Value {
        if let Some(Value::Array(tasks)) = listed.get_mut("tasks") {
            let owners = self.owners.lock_unpoisoned();
            tasks.retain(|task| {
                task.get("taskId")
                    .and_then(Value::as_str)
                    .is_some_and(|id| owners.get(id).is_some_and(|owner| &*owner.upstream == upstream))
            });
        }
        listed
    }
}

/// `request` is being sent to the client: rmcp gave it a progress token, which stays
/// only when the upstream gave one of its own (marked [`KeepProgressToken`]); its
/// answer is kept as written when it is marked [`RawAnswerWanted`].
pub fn sending(bridge: Option<&super::Bridge>, request: &mut rmcp::model::JsonRpcRequest<ServerRequest>) {
    if request.request.extensions().get::<KeepProgressToken>().is_none() {
        crate::upstream::drop_progress_token(&mut request.request);
    }
    if let Some(bridge) = bridge {
        bridge.link.upstream_requests().mark_sent(&request.id, &request.request);
    }
}

/// Give `notification` back the `_meta` the client wrote, which rmcp moved into
/// `context` (leaving an empty one that would be sent as `"_meta": {}`).
pub fn restore_meta(
    notification: &mut rmcp::model::CustomNotification,
    context: &rmcp::service::NotificationContext<rmcp::RoleServer>,
) {
    use rmcp::model::NotificationMetaObject;
    let written = context
        .extensions
        .get::<NotificationMetaObject>()
        .filter(|meta| !meta.0.is_empty())
        .cloned()
        .or_else(|| (!context.meta.0.is_empty()).then(|| context.meta.clone()));
    notification.extensions.remove::<NotificationMetaObject>();
    if let Some(meta) = written {
        notification.extensions.insert(meta);
    }
}

fn lookup<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| value.get(key))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_the_relayed_members_of_the_clients_tasks_are_declared() {
        let requests = UpstreamRequests::default();
        let line = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {
            "tasks": {"list": {}, "requests": {"sampling": {"createMessage": {}}, "roots": {"list": {}}}, "x": 1},
        }}});
        requests.remember_initialize(line.to_string().as_bytes());
        assert_eq!(
            requests.relayable(),
            Some(json!({"list": {}, "requests": {"sampling": {"createMessage": {}}}}))
        );
        assert_eq!(requests.missing("tasks/cancel", None), Some("tasks.cancel"));
        assert_eq!(requests.missing("tasks/get", None), None);
        let tasked = json!({"task": {}});
        assert_eq!(
            requests.missing("elicitation/create", Some(&tasked)),
            Some("tasks.requests.elicitation.create")
        );
        assert_eq!(requests.missing("sampling/createMessage", Some(&tasked)), None);

        let none = UpstreamRequests::default();
        none.remember_initialize(br#"{"params":{"capabilities":{}}}"#);
        assert_eq!(none.relayable(), None);
        assert_eq!(none.missing("tasks/get", None), Some("tasks"));
    }

    #[test]
    fn answers_are_kept_as_written_only_for_open_ids() {
        let requests = UpstreamRequests::default();
        let mut marked = rmcp::model::CustomRequest::new("tasks/get", None);
        marked.extensions.insert(RawAnswerWanted);
        requests.mark_sent(&RequestId::Number(1), &ServerRequest::CustomRequest(marked));
        requests.mark_sent(
            &RequestId::Number(2),
            &ServerRequest::CustomRequest(rmcp::model::CustomRequest::new("x", None)),
        );
        requests.offer(br#"{"jsonrpc":"2.0","id":2,"result":{"a":1}}"#);
        requests.offer(br#"{"jsonrpc":"2.0","id":1,"result":{"taskId":"t","ttl":null}}"#);
        assert_eq!(requests.take(&RequestId::Number(1)), Some(json!({"taskId": "t", "ttl": null})));
        assert_eq!(requests.take(&RequestId::Number(2)), None);
        assert_eq!(requests.open.load(Ordering::SeqCst), 0);
    }
}

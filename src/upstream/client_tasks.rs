//! Tasks an upstream asks the client to run (MCP 2025-11-25): what rmcp 3.11, which
//! models another tasks proposal, would lose on the way.
//!
//! - The client's `capabilities.tasks` (rmcp's `ClientCapabilities` has no such field):
//!   the tap marks the session's `initialize` with [`DeclaredTasks`], and each transport
//!   passes the request through [`declare_tasks`] before it encodes it, which writes the
//!   declaration into the params as the upstream then reads them.
//! - A request to the client that carries `params.task` (a task-augmented
//!   `sampling/createMessage` or `elicitation/create`): rmcp's request types drop
//!   `task`. While the client declared such requests, the transports' offer of every
//!   incoming message (`raw_results.rs`) keeps those requests as written
//!   ([`TaskRequests`]), and the tap hands rmcp the request as written, as a custom
//!   request, which the client link relays raw. `tasks/get`, `tasks/result`, `tasks/list`
//!   and `tasks/cancel` from an upstream are custom requests to rmcp already.
//! - [`RequestOrigin`]: the way back to the upstream that sent a request, for the
//!   client's progress on it and the status notifications of a task it created.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use foldhash::HashMap;
use rmcp::{
    Peer, RoleClient,
    model::{
        ClientJsonRpcMessage, ClientNotification, ClientRequest, CustomNotification, CustomRequest,
        GetExtensions, GetMeta, JsonRpcMessage, ProgressNotification, ProgressNotificationParam,
        ProgressToken, RequestId, ServerRequest,
    },
    service::RequestContext,
};
use serde::Deserialize;
use serde_json::Value;

use crate::locks::Unpoisoned;

/// Marks the session's `initialize` request (in its rmcp extensions, never sent): the
/// client's `capabilities.tasks`, to be declared to the upstream as well.
#[derive(Clone, Debug)]
pub struct DeclaredTasks(pub Arc<Value>);

/// `message` ready to be encoded: an `initialize` marked with [`DeclaredTasks`] as a
/// request of the same method and id whose params carry `capabilities.tasks`; anything
/// else unchanged. rmcp's transports keep no state about the request's type after it
/// is handed to them, so the two encode alike but for the declaration.
pub fn declare_tasks(message: ClientJsonRpcMessage) -> ClientJsonRpcMessage {
    let JsonRpcMessage::Request(mut request) = message else { return message };
    let declared = match &request.request {
        ClientRequest::InitializeRequest(initialize) => {
            initialize.extensions.get::<DeclaredTasks>().map(|declared| declared.0.clone())
        }
        _ => None,
    };
    let Some(declared) = declared else { return JsonRpcMessage::Request(request) };
    let ClientRequest::InitializeRequest(initialize) = &request.request else {
        return JsonRpcMessage::Request(request);
    };
    let Ok(mut params) = serde_json::to_value(&initialize.params) else {
        return JsonRpcMessage::Request(request);
    };
    if let Some(capabilities) = params.get_mut("capabilities").and_then(Value::as_object_mut) {
        capabilities.insert("tasks".to_owned(), (*declared).clone());
    }
    request.request = ClientRequest::CustomRequest(CustomRequest::new("initialize", Some(params)));
    JsonRpcMessage::Request(request)
}

/// Open requests beyond this are forgotten (requests rmcp never passed on).
const MAX_KEPT: usize = 64;

/// Requests to the client kept as the upstream wrote them, by id, until the tap takes
/// them: every `sampling/createMessage` and `elicitation/create` (rmcp's types would
/// change numbers and add defaults), and, when the client declared task-augmented
/// requests, any request that carries `params.task` (which rmcp's types drop). Lines
/// answering the direct lane are never offered, so `tools/call` answers cost nothing.
#[derive(Default)]
pub struct TaskRequests {
    enabled: AtomicBool,
    kept: AtomicUsize,
    requests: Mutex<HashMap<RequestId, CustomRequest>>,
}

impl TaskRequests {
    fn requests(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, CustomRequest>> {
        self.requests.lock_unpoisoned()
    }

    /// Keep task-augmented requests from now on.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::SeqCst);
    }

    /// `text` is an incoming message: keep it if it is a request to relay as written.
    pub fn offer(&self, text: &[u8]) {
        let tasked = self.enabled.load(Ordering::Relaxed) && contains(text, b"\"task\"");
        if !tasked && !contains(text, b"sampling/createMessage") && !contains(text, b"elicitation/create") {
            return;
        }
        #[derive(Deserialize)]
        struct Request {
            id: RequestId,
            method: String,
            params: Option<Value>,
        }
        let Ok(request) = serde_json::from_slice::<Request>(text) else { return };
        let has_task =
            request.params.as_ref().and_then(|params| params.get("task")).is_some_and(Value::is_object);
        let as_written = matches!(request.method.as_str(), "sampling/createMessage" | "elicitation/create");
        if !(as_written || has_task && tasked) {
            return;
        }
        // Decoded as rmcp decodes a custom request: `_meta` goes to its extensions.
        let custom = serde_json::json!({"method": request.method, "params": request.params});
        let Ok(custom) = serde_json::from_value::<CustomRequest>(custom) else { return };
        let mut requests = self.requests();
        if requests.len() >= MAX_KEPT {
            requests.clear();
        }
        requests.insert(request.id, custom);
        self.kept.store(requests.len(), Ordering::SeqCst);
    }

    /// The request with id `id` as written, if it was kept.
    pub fn take(&self, id: &RequestId) -> Option<CustomRequest> {
        if self.kept.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let mut requests = self.requests();
        let taken = requests.remove(id);
        self.kept.store(requests.len(), Ordering::SeqCst);
        taken
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// Whether the client's `capabilities.tasks` declares task-augmented requests.
pub fn declares_requests(tasks: &Value) -> bool {
    tasks.get("requests").and_then(Value::as_object).is_some_and(|requests| !requests.is_empty())
}

/// Which upstream sent a request to the client, and the way back to it: the client's
/// progress on the request and the status of a task it created go there.
#[derive(Clone)]
pub struct RequestOrigin {
    /// The upstream's name.
    pub upstream: Arc<str>,
    peer: Peer<RoleClient>,
    /// The upstream's own progress token for the request, if it gave one.
    pub progress_token: Option<ProgressToken>,
}

impl RequestOrigin {
    pub(super) fn new(
        upstream: Arc<str>,
        peer: Peer<RoleClient>,
        progress_token: Option<ProgressToken>,
    ) -> Self {
        Self { upstream, peer, progress_token }
    }

    /// The client's progress on the request, under the upstream's token; nothing when
    /// the upstream gave none.
    pub async fn progress(&self, mut progress: ProgressNotificationParam) {
        let Some(token) = self.progress_token.clone() else { return };
        progress.progress_token = token;
        let notification = ClientNotification::ProgressNotification(ProgressNotification::new(progress));
        if let Err(error) = self.peer.send_notification(notification).await {
            tracing::debug!(upstream = %self.upstream, "could not forward the client's progress: {error}");
        }
    }

    /// A notification of the client's for the upstream (a task's status), as written.
    pub async fn notify(&self, notification: CustomNotification) {
        if let Err(error) =
            self.peer.send_notification(ClientNotification::CustomNotification(notification)).await
        {
            tracing::debug!(upstream = %self.upstream, "could not forward a notification of the client: {error}");
        }
    }
}

/// The origin of `request` when the upstream handler attached one.
pub fn origin_of(request: &ServerRequest) -> Option<RequestOrigin> {
    request.extensions().get::<RequestOrigin>().cloned()
}

/// Ready `request` of upstream `upstream` for the client: its `_meta` as the upstream
/// wrote it (rmcp moved it to `context`) but for the progress token, which the client
/// link maps, and its [`RequestOrigin`].
pub(super) fn attach_origin(
    upstream: &Arc<str>,
    request: &mut ServerRequest,
    context: &RequestContext<RoleClient>,
) {
    let mut meta = context.meta.clone();
    let progress_token = meta.get_progress_token();
    meta.0.remove("progressToken");
    if !meta.0.is_empty() {
        request.get_meta_mut().extend(meta);
    }
    let origin = RequestOrigin::new(upstream.clone(), context.peer.clone(), progress_token);
    request.extensions_mut().insert(origin);
}

#[cfg(test)]
mod tests {
    use rmcp::model::{ClientCapabilities, Implementation, InitializeRequest, InitializeRequestParams};
    use serde_json::json;

    use super::*;

    #[test]
    fn initialize_declares_the_clients_tasks_and_nothing_else_changes() {
        let params =
            InitializeRequestParams::new(ClientCapabilities::default(), Implementation::new("b", "1"));
        let mut initialize = InitializeRequest::new(params);
        let plain = ClientJsonRpcMessage::request(
            ClientRequest::InitializeRequest(initialize.clone()),
            RequestId::Number(0),
        );
        let plain = serde_json::to_value(&plain).expect("encodes");
        let tasks = json!({"requests": {"sampling": {"createMessage": {}}}});
        initialize.extensions.insert(DeclaredTasks(Arc::new(tasks.clone())));
        let marked =
            ClientJsonRpcMessage::request(ClientRequest::InitializeRequest(initialize), RequestId::Number(0));
        let declared = serde_json::to_value(declare_tasks(marked)).expect("encodes");
        let mut expected = plain.clone();
        expected["params"]["capabilities"]["tasks"] = tasks;
        assert_eq!(declared, expected);
        let unmarked = serde_json::from_value::<ClientJsonRpcMessage>(plain.clone()).expect("decodes");
        assert_eq!(serde_json::to_value(declare_tasks(unmarked)).expect("encodes"), plain);
    }

    #[test]
    fn sampling_and_elicitation_are_kept_and_other_tasked_requests_when_enabled() {
        let requests = TaskRequests::default();
        let tasked =
            br#"{"jsonrpc":"2.0","id":3,"method":"x/ask","params":{"task":{"ttl":5},"_meta":{"k":1}}}"#;
        requests.offer(tasked);
        assert!(requests.take(&RequestId::Number(3)).is_none(), "off by default");
        let sampling = br#"{"jsonrpc":"2.0","id":4,"method":"sampling/createMessage","params":{"maxTokens":1,"temperature":0.7}}"#;
        requests.offer(sampling);
        let kept = requests.take(&RequestId::Number(4)).expect("sampling is always kept");
        let encoded = serde_json::to_value(&kept).expect("encodes");
        assert_eq!(encoded["params"], json!({"maxTokens": 1, "temperature": 0.7}), "numbers as written");
        requests.enable();
        requests.offer(br#"{"jsonrpc":"2.0","id":5,"result":{"task":{"taskId":"x"}}}"#);
        requests.offer(tasked);
        assert!(requests.take(&RequestId::Number(5)).is_none(), "an answer is no request");
        let kept = requests.take(&RequestId::Number(3)).expect("kept");
        assert_eq!(kept.method, "x/ask");
        let encoded = serde_json::to_value(&kept).expect("encodes");
        assert_eq!(encoded["params"], json!({"task": {"ttl": 5}, "_meta": {"k": 1}}));
        assert!(requests.take(&RequestId::Number(3)).is_none(), "taken once");
    }
}

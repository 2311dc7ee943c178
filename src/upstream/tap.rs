//! A transport wrapper that takes progress and log notifications out of an upstream's
//! message stream, in the order they arrived.
//!
//! rmcp hands every inbound notification to its handler in a task of its own, so two
//! progress notifications can overtake each other, or the result they belong to. The
//! tap sits below rmcp's service loop, where the order is still the wire order, and
//! queues those notifications on one bounded channel per connection. A single
//! forwarding task (in `connection.rs`) drains it, so the client sees them in order;
//! and because the channel is bounded, an upstream that floods notifications is slowed
//! down instead of growing memory.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use rmcp::{
    model::{
        ClientRequest, GetExtensions, GetMeta, JsonRpcMessage, LoggingMessageNotificationParam,
        ProgressNotificationParam, RequestMetaObject, ServerNotification,
    },
    service::{RoleClient, RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{
    client_tasks::DeclaredTasks,
    raw_results::{RawResultWanted, RawResults},
};

/// Marks a request (in its rmcp extensions, never sent) whose `_meta.progressToken`
/// the upstream should get: the client gave one, and progress is routed back to it.
/// rmcp puts a progress token into every request it sends; the tap takes it out of
/// the others, so the upstream sees a token only where the client wrote one.
#[derive(Clone, Copy, Debug)]
pub struct ProgressWanted;

/// Take the progress token rmcp put into `request`'s `_meta` out again, and `_meta`
/// with it when nothing else is in it.
pub fn drop_progress_token<R>(request: &mut R)
where
    R: GetMeta<Metadata = RequestMetaObject> + GetExtensions,
{
    let meta = request.get_meta_mut();
    meta.0.remove("progressToken");
    if meta.0.is_empty() {
        request.extensions_mut().remove::<RequestMetaObject>();
    }
}

/// What the tap queues, in wire order.
pub enum Tapped {
    Progress(ProgressNotificationParam),
    Log(LoggingMessageNotificationParam),
    /// Acknowledged once everything queued before it has been forwarded.
    Barrier(oneshot::Sender<()>),
}

/// How long a finished request waits for its queued progress to reach the client.
const FLUSH_LIMIT: Duration = Duration::from_secs(1);

/// Capacity of the ordered notification queue of one upstream connection.
pub const TAP_CAPACITY: usize = 256;

/// The producer side of a session's ordered queue. It counts what is queued and not
/// yet forwarded, so a finished request can skip waiting for the forwarder when
/// nothing is pending (the common case: no progress at all).
#[derive(Clone)]
pub struct TapQueue {
    tx: mpsc::Sender<Tapped>,
    queued: Arc<AtomicUsize>,
}

/// The consumer side; see [`TapQueue`].
pub struct TapReceiver {
    rx: mpsc::Receiver<Tapped>,
    queued: Arc<AtomicUsize>,
}

/// A new ordered queue.
pub fn queue() -> (TapQueue, TapReceiver) {
    let (tx, rx) = mpsc::channel(TAP_CAPACITY);
    let queued = Arc::new(AtomicUsize::new(0));
    (TapQueue { tx, queued: queued.clone() }, TapReceiver { rx, queued })
}

impl TapQueue {
    /// Queue `item`, waiting while the queue is full (backpressure on the upstream).
    pub async fn push(&self, item: Tapped) -> Result<(), ()> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(item).await.is_err() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(());
        }
        Ok(())
    }

    /// Everything queued so far has been forwarded.
    pub fn is_drained(&self) -> bool {
        self.queued.load(Ordering::SeqCst) == 0
    }

    /// Wait (at most [`FLUSH_LIMIT`]) until everything queued so far has been
    /// forwarded, so that the client sees a request's progress before its result.
    pub async fn flush(&self) {
        if self.is_drained() {
            return;
        }
        let (done, flushed) = oneshot::channel();
        if self.push(Tapped::Barrier(done)).await.is_ok() {
            let _ = tokio::time::timeout(FLUSH_LIMIT, flushed).await;
        }
    }
}

impl TapReceiver {
    pub async fn recv(&mut self) -> Option<Tapped> {
        self.rx.recv().await
    }

    /// Mark one received item as fully handled.
    pub fn done(&self) {
        self.queued.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct TapTransport<T> {
    inner: T,
    tapped: TapQueue,
    /// Cancelled when the upstream ends its side of the transport.
    closed: CancellationToken,
    /// Told the id of each outgoing `tools/list`, whose answer the inner transport
    /// offers it as written (`raw_results.rs`).
    raw_results: Arc<RawResults>,
    /// The client's `capabilities.tasks`, declared to the upstream (`client_tasks.rs`).
    client_tasks: Option<Arc<serde_json::Value>>,
    /// `_meta` of the `initialize` request (a shared upstream's session names the
    /// upstream it wants from the hub there).
    initialize_meta: Option<rmcp::model::RequestMetaObject>,
}

impl<T> TapTransport<T> {
    pub fn new(inner: T, tapped: TapQueue, closed: CancellationToken, raw_results: Arc<RawResults>) -> Self {
        Self { inner, tapped, closed, raw_results, client_tasks: None, initialize_meta: None }
    }

    /// Send `meta` as the `_meta` of `initialize`.
    pub fn with_initialize_meta(mut self, meta: rmcp::model::RequestMetaObject) -> Self {
        self.initialize_meta = Some(meta);
        self
    }

    /// Declare the client's `capabilities.tasks` to the upstream, and relay the
    /// task-augmented requests it then sends as written (`client_tasks.rs`).
    pub fn with_client_tasks(mut self, tasks: Option<serde_json::Value>) -> Self {
        if tasks.as_ref().is_some_and(super::client_tasks::declares_requests) {
            self.raw_results.task_requests.enable();
        }
        self.client_tasks = tasks.map(Arc::new);
        self
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for TapTransport<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let mut item = item;
        if let JsonRpcMessage::Request(request) = &mut item {
            if let ClientRequest::InitializeRequest(initialize) = &mut request.request {
                self.raw_results.expect_initialize(request.id.clone());
                if let Some(tasks) = &self.client_tasks {
                    initialize.extensions.insert(DeclaredTasks(tasks.clone()));
                }
                if let Some(meta) = &self.initialize_meta {
                    initialize.params.meta = Some(meta.clone());
                }
            } else if matches!(request.request, ClientRequest::ListToolsRequest(_))
                || request.request.extensions().get::<RawResultWanted>().is_some()
            {
                self.raw_results.expect(request.id.clone());
            }
            if request.request.extensions().get::<ProgressWanted>().is_none() {
                drop_progress_token(&mut request.request);
            }
        }
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        loop {
            let Some(message) = self.inner.receive().await else {
                self.closed.cancel();
                return None;
            };
            let tapped = match message {
                JsonRpcMessage::Notification(notification) => match notification.notification {
                    ServerNotification::ProgressNotification(progress) => Tapped::Progress(progress.params),
                    ServerNotification::LoggingMessageNotification(log) => Tapped::Log(log.params),
                    other => {
                        return Some(JsonRpcMessage::Notification(rmcp::model::JsonRpcNotification {
                            jsonrpc: notification.jsonrpc,
                            notification: other,
                        }));
                    }
                },
                JsonRpcMessage::Request(mut request) => {
                    // rmcp's request types drop `params.task`: the request as written.
                    if let Some(written) = self.raw_results.task_requests.take(&request.id) {
                        request.request = rmcp::model::ServerRequest::CustomRequest(written);
                    }
                    return Some(JsonRpcMessage::Request(request));
                }
                other => return Some(other),
            };
            // A closed queue means the connection is being torn down: drop the message.
            let _ = self.tapped.push(tapped).await;
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

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

use std::future::Future;

use rmcp::{
    model::{JsonRpcMessage, LoggingMessageNotificationParam, ProgressNotificationParam, ServerNotification},
    service::{RoleClient, RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// What the tap queues, in wire order.
pub enum Tapped {
    Progress(ProgressNotificationParam),
    Log(LoggingMessageNotificationParam),
    /// Acknowledged once everything queued before it has been forwarded.
    Barrier(oneshot::Sender<()>),
}

/// Capacity of the ordered notification queue of one upstream connection.
pub const TAP_CAPACITY: usize = 256;

pub struct TapTransport<T> {
    inner: T,
    tapped: mpsc::Sender<Tapped>,
    /// Cancelled when the upstream ends its side of the transport.
    closed: CancellationToken,
}

impl<T> TapTransport<T> {
    pub fn new(inner: T, tapped: mpsc::Sender<Tapped>, closed: CancellationToken) -> Self {
        Self { inner, tapped, closed }
    }
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for TapTransport<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
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
                other => return Some(other),
            };
            // A closed queue means the connection is being torn down: drop the message.
            let _ = self.tapped.send(tapped).await;
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

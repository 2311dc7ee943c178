//! Progress of requests in flight: which client token each upstream progress token
//! stands for, and the ordered forwarder that delivers the session's progress and log
//! messages to the client.
//!
//! The bridge never forwards the client's own progress token upstream: a request gets
//! the session's token (for a request tracked by the engine, its id,
//! [`request_token`]; for one sent through rmcp, the token rmcp picks), and its
//! [`ProgressRoute`] maps that back. Each progress notification also restarts the
//! request's timeout. The upstream's notifications arrive in order on the session's
//! tap queue (`tap.rs`); [`forward_tapped`] drains it, so a request that ends first
//! flushes the queue and only then forgets its route: progress the upstream sent
//! before its answer reaches the client before the answer.

use std::sync::{Arc, Weak};

use rmcp::model::{
    LoggingMessageNotification, NumberOrString, ProgressNotification, ProgressToken, ServerNotification,
};
use tokio::sync::Mutex;

use super::InFlight;
use crate::upstream::{
    ClientLink,
    tap::{TapReceiver, Tapped},
};

/// Where progress for one in-flight request goes.
pub struct ProgressRoute {
    client_token: ProgressToken,
    /// The engine tracking the request, told of each progress notification: it
    /// restarts the request's timeout.
    engine: Weak<InFlight>,
    /// The request's id in the engine.
    id: i64,
}

impl ProgressRoute {
    /// The route of request `id` of `engine`, whose progress goes to `client_token`.
    pub fn new(client_token: ProgressToken, engine: Weak<InFlight>, id: i64) -> Self {
        Self { client_token, engine, id }
    }

    /// Progress arrived: the request's timeout starts again.
    fn touch(&self) {
        if let Some(engine) = self.engine.upgrade() {
            engine.touch(self.id);
        }
    }
}

/// Upstream progress token → route. A request through rmcp (which picks the token) locks
/// it from before its message is queued until its route is in; a request tracked by the
/// engine knows its token and puts the route in before writing. The forwarder locks it
/// per progress notification. Either way a fast upstream's first progress can never
/// miss its route.
pub type ProgressRoutes = Mutex<foldhash::HashMap<ProgressToken, ProgressRoute>>;

/// The upstream progress token of request `id` tracked by the engine.
pub fn request_token(id: i64) -> ProgressToken {
    ProgressToken(NumberOrString::Number(id))
}

/// Drain the ordered notification queue of one session until it closes: progress goes
/// to the request that asked for it, log messages to the client, barriers are acked.
pub async fn forward_tapped(
    name: Arc<str>,
    link: Arc<dyn ClientLink>,
    routes: Arc<ProgressRoutes>,
    mut tapped: TapReceiver,
) {
    while let Some(item) = tapped.recv().await {
        forward_one(&name, &link, &routes, item).await;
        tapped.done();
    }
}

/// Forward one queued item; see [`forward_tapped`].
async fn forward_one(name: &str, link: &Arc<dyn ClientLink>, routes: &ProgressRoutes, item: Tapped) {
    match item {
        Tapped::Progress(mut progress) => {
            let routes_guard = routes.lock().await;
            let Some(route) = routes_guard.get(&progress.progress_token) else {
                tracing::debug!(upstream = %name, "progress for an unknown or finished request dropped");
                return;
            };
            route.touch();
            progress.progress_token = route.client_token.clone();
            drop(routes_guard);
            let notification = ProgressNotification::new(progress);
            link.notify(name, ServerNotification::ProgressNotification(notification)).await;
        }
        Tapped::Log(log) => {
            let notification = LoggingMessageNotification::new(log);
            link.notify(name, ServerNotification::LoggingMessageNotification(notification)).await;
        }
        Tapped::Barrier(done) => {
            let _ = done.send(());
        }
    }
}

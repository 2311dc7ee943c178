//! Progress of requests in flight: which client token each upstream progress token
//! stands for, and the ordered forwarder that delivers the session's progress and log
//! messages to the client.
//!
//! The bridge never forwards the client's own progress token upstream: a request gets
//! the session's token (for a request on the direct lane, its id; for one sent through
//! rmcp, the token rmcp picks), and its route maps that back: a lane request's is kept
//! in its entry of the engine ([`InFlight::lane_progress`]), one through rmcp has a
//! [`ProgressRoute`] in the session's [`ProgressRoutes`]. Each progress notification
//! also restarts the request's timeout. The upstream's notifications arrive in order on
//! the session's tap queue (`tap.rs`); [`forward_tapped`] drains it, so a request that
//! ends first flushes the queue and only then forgets its route: progress the upstream
//! sent before its answer reaches the client before the answer.

use std::sync::{Arc, OnceLock, Weak};

use rmcp::model::{LoggingMessageNotification, ProgressNotification, ProgressToken, ServerNotification};
use tokio::sync::{Mutex, MutexGuard};

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

/// The routes of one session's progress. A request through rmcp (which picks the token)
/// locks the table from before its message is queued until its route is in. A lane
/// request knows its token (its id) and keeps its route in the engine's entry, made
/// before the request is written; the forwarder asks the engine first. Either way a
/// fast upstream's first progress can never miss its route.
#[derive(Default)]
pub struct ProgressRoutes {
    /// Upstream progress token → route, for requests through rmcp. The forwarder locks
    /// it per progress notification that is not a lane request's.
    table: Mutex<foldhash::HashMap<ProgressToken, ProgressRoute>>,
    /// The engine of the session's direct lane, if it has one: it routes the progress
    /// of the lane's requests ([`InFlight::lane_progress`]).
    lane: OnceLock<Weak<InFlight>>,
}

impl ProgressRoutes {
    /// The routes of requests through rmcp, once they are free.
    pub async fn lock(&self) -> MutexGuard<'_, foldhash::HashMap<ProgressToken, ProgressRoute>> {
        self.table.lock().await
    }

    /// The session's direct lane tracks its requests in `engine`, which routes their
    /// progress. Once per session.
    pub fn route_lane_progress(&self, engine: Weak<InFlight>) {
        let _ = self.lane.set(engine);
    }

    /// The client's token for progress under the upstream's `token`, if it is a lane
    /// request's (its timeout starts again).
    fn lane_route(&self, token: &ProgressToken) -> Option<ProgressToken> {
        self.lane.get()?.upgrade()?.lane_progress(token)
    }
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
            if let Some(client_token) = routes.lane_route(&progress.progress_token) {
                progress.progress_token = client_token;
            } else {
                let routes_guard = routes.lock().await;
                let Some(route) = routes_guard.get(&progress.progress_token) else {
                    tracing::debug!(upstream = %name, "progress for an unknown or finished request dropped");
                    return;
                };
                route.touch();
                progress.progress_token = route.client_token.clone();
            }
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

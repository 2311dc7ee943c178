//! What one attached connection sees of the hub's upstream set ([`ConnectionUpstreams`]):
//! the one upstream it serves, as the [`Upstreams`] of that connection's `Bridge`.
//!
//! Requests go to the shared set under the upstream's name, each counted as in flight
//! for this connection (server→client requests are routed by it) and with its progress
//! token made unique across connections (`router.rs`). A `tools/call` takes the
//! upstream's direct lane when it can, as in a bridge, with the same bookkeeping done by
//! the ticket's origin ([`ConnectionCalls`]). Letting the upstreams go starts
//! this one in the hub if no bridge has needed it yet. Reloading and shutting down
//! belong to the hub, not to a connection: a connection's `reconfigure` and `shutdown`
//! do nothing.

// Logging is deprecated by SEP-2577 for protocol 2026-07-28, but it is a live part of
// 2025-11-25, which the hub speaks.
#![allow(deprecated)]

use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};
use rmcp::model::{
    ClientNotification, ClientRequest, LoggingLevel, ProgressToken, ServerResult, SetLevelRequest,
    SetLevelRequestParams,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{
    HubUpstreams,
    router::{AttachedBridges, RequestInFlight},
};
use crate::{
    config::Settings,
    locks::Unpoisoned,
    upstream::{
        LaneCallEnd, LaneCallOrigin, LaneTicket, RequestOptions, SignInStep, UpstreamError, UpstreamSet,
        Upstreams, View,
    },
    wire::{ToolAnswer, ToolCall},
};

/// One connection's view of the hub's upstreams.
pub struct ConnectionUpstreams {
    pub id: u64,
    pub upstream: Arc<str>,
    pub set: Arc<UpstreamSet>,
    pub bridges: Arc<AttachedBridges>,
    pub hub: Arc<HubUpstreams>,
    pub view: watch::Receiver<Arc<View>>,
    /// Cancelled when the connection ends: its requests still in flight are cancelled
    /// upstream, as they would be when an unshared upstream's bridge goes away.
    pub closing: CancellationToken,
    /// Its calls on the upstream's direct lane, and its socket.
    pub calls: Arc<ConnectionCalls>,
}

/// One connection as the origin of its calls on the upstream's direct lane
/// ([`Upstreams::tool_ticket`]): they get the bookkeeping of its other requests (counted in
/// flight, progress tokens made unique), those still running are cancelled when the
/// connection ends, and one that finds the upstream's session gone ends the connection.
pub struct ConnectionCalls {
    id: u64,
    bridges: Arc<AttachedBridges>,
    /// The connection's socket: closed at once when a request finds the upstream's
    /// session gone, before the failure is answered.
    socket: Arc<std::os::unix::net::UnixStream>,
    running: std::sync::Mutex<foldhash::HashMap<i64, LaneTicket>>,
}

impl ConnectionCalls {
    pub fn new(
        id: u64,
        bridges: Arc<AttachedBridges>,
        socket: Arc<std::os::unix::net::UnixStream>,
    ) -> Arc<Self> {
        Arc::new(Self { id, bridges, socket, running: std::sync::Mutex::default() })
    }

    /// End the connection: the bridge sees it closed.
    fn end_connection(&self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }

    /// Cancel every call still running (the connection ended).
    pub fn cancel_all(&self) {
        let running = std::mem::take(&mut *self.running.lock_unpoisoned());
        for ticket in running.into_values() {
            ticket.cancel();
        }
    }
}

impl LaneCallOrigin for ConnectionCalls {
    fn begin(
        self: Arc<Self>,
        ticket: &LaneTicket,
        client_token: Option<ProgressToken>,
    ) -> (Option<ProgressToken>, Box<dyn LaneCallEnd>) {
        let (in_flight, token) = self.bridges.begin_request(self.id, client_token);
        self.running.lock_unpoisoned().insert(ticket.id(), ticket.clone());
        let lane_id = ticket.id();
        (token, Box::new(ConnectionCallEnd { calls: self, lane_id, _in_flight: in_flight }))
    }
}

/// One lane call of a connection, until it ends.
struct ConnectionCallEnd {
    calls: Arc<ConnectionCalls>,
    lane_id: i64,
    _in_flight: RequestInFlight,
}

impl LaneCallEnd for ConnectionCallEnd {
    fn ended(self: Box<Self>, error: Option<&UpstreamError>) {
        if error.is_some_and(ends_session) {
            self.calls.end_connection();
        }
    }
}

impl Drop for ConnectionCallEnd {
    fn drop(&mut self) {
        self.calls.running.lock_unpoisoned().remove(&self.lane_id);
    }
}

/// Run `upstream` at log `level`: the most verbose level its bridges set (each bridge
/// hears the messages at its own level, `router.rs`).
pub async fn set_upstream_level(set: &UpstreamSet, upstream: &str, level: LoggingLevel) {
    let request = ClientRequest::SetLevelRequest(SetLevelRequest::new(SetLevelRequestParams::new(level)));
    if let Err(error) = set.request(upstream, request, RequestOptions::default()).await {
        tracing::debug!(upstream = %upstream, "logging/setLevel failed: {error}");
    }
}

/// Whether a request failed because the upstream's session is gone.
fn lost_session<T>(result: &Result<T, UpstreamError>) -> bool {
    result.as_ref().err().is_some_and(ends_session)
}

/// Whether `error` says the upstream's session is gone.
fn ends_session(error: &UpstreamError) -> bool {
    matches!(error, UpstreamError::NotConnected { .. } | UpstreamError::Transport { .. })
}

impl ConnectionUpstreams {
    /// The view of the set narrowed to `upstream`, kept current while anyone watches it.
    pub fn narrowed_view(set: &UpstreamSet, upstream: Arc<str>) -> watch::Receiver<Arc<View>> {
        let mut source = set.view();
        let narrow = |view: &View, upstream: &str| {
            Arc::new(View {
                upstreams: view.upstreams.iter().filter(|state| &*state.name == upstream).cloned().collect(),
            })
        };
        let (sender, receiver) = watch::channel(narrow(&source.borrow_and_update(), &upstream));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = source.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let narrowed = narrow(&source.borrow_and_update(), &upstream);
                        sender.send_replace(narrowed);
                    }
                    () = sender.closed() => break,
                }
            }
        });
        receiver
    }

    /// Run `request` with `options` as one of this connection's requests: counted in
    /// flight, its progress token made unique, cancelled by the client or by the end of
    /// the connection, whichever comes first.
    async fn tracked<'a, T>(
        &'a self,
        mut options: RequestOptions,
        request: impl FnOnce(RequestOptions) -> BoxFuture<'a, T>,
    ) -> T {
        let (guard, token) = self.bridges.begin_request(self.id, options.progress_token.take());
        options.progress_token = token;
        let by_client = std::mem::replace(&mut options.cancel, self.closing.child_token());
        let cancel = options.cancel.clone();
        let outcome = request(options);
        tokio::pin!(outcome);
        let outcome = tokio::select! {
            biased;
            outcome = &mut outcome => outcome,
            () = by_client.cancelled() => {
                cancel.cancel();
                outcome.await
            }
        };
        drop(guard);
        outcome
    }

    /// A request that found the upstream's session gone ends the connection instead of
    /// being answered: the bridge then fails it, and every other call in flight, as it
    /// fails calls to a server that exited, in its client's words (the tool's name as
    /// the client knows it), and reconnects.
    fn end_on_lost_session<T>(&self, result: &Result<T, UpstreamError>) {
        if lost_session(result) {
            self.calls.end_connection();
        }
    }

    /// A subscription reaches the upstream only for the first subscriber of a resource,
    /// an unsubscription only for the last; the others are answered here.
    fn subscription(&self, request: &ClientRequest) -> Option<bool> {
        match request {
            ClientRequest::SubscribeRequest(subscribe) => {
                Some(self.bridges.subscribe(self.id, &self.upstream, &subscribe.params.uri))
            }
            ClientRequest::UnsubscribeRequest(unsubscribe) => {
                Some(self.bridges.unsubscribe(self.id, &self.upstream, &unsubscribe.params.uri))
            }
            _ => None,
        }
    }
}

impl Upstreams for ConnectionUpstreams {
    fn view(&self) -> watch::Receiver<Arc<View>> {
        self.view.clone()
    }

    fn request(
        &self,
        _upstream: &str,
        request: ClientRequest,
        options: RequestOptions,
    ) -> BoxFuture<'_, Result<ServerResult, UpstreamError>> {
        if self.subscription(&request) == Some(false) {
            return async { Ok(ServerResult::empty(())) }.boxed();
        }
        let subscribe = matches!(request, ClientRequest::SubscribeRequest(_)).then(|| request.clone());
        async move {
            let result =
                self.tracked(options, |options| self.set.request(&self.upstream, request, options)).await;
            self.end_on_lost_session(&result);
            if let (Err(_), Some(ClientRequest::SubscribeRequest(subscribe))) = (&result, subscribe) {
                // Not subscribed after all: the next subscriber asks again.
                self.bridges.unsubscribe(self.id, &self.upstream, &subscribe.params.uri);
            }
            result
        }
        .boxed()
    }

    fn call_tool(
        &self,
        _upstream: &str,
        call: ToolCall,
        options: RequestOptions,
    ) -> BoxFuture<'_, Result<ToolAnswer, UpstreamError>> {
        async move {
            let result =
                self.tracked(options, |options| self.set.call_tool(&self.upstream, call, options)).await;
            self.end_on_lost_session(&result);
            result
        }
        .boxed()
    }

    fn request_raw(
        &self,
        _upstream: &str,
        method: String,
        params: serde_json::Map<String, serde_json::Value>,
        options: RequestOptions,
    ) -> BoxFuture<'_, Result<serde_json::Value, UpstreamError>> {
        async move {
            let result = self
                .tracked(options, |options| self.set.request_raw(&self.upstream, method, params, options))
                .await;
            self.end_on_lost_session(&result);
            result
        }
        .boxed()
    }

    fn tool_ticket(&self, _upstream: &str) -> Option<LaneTicket> {
        let ticket = self.set.tool_ticket(&self.upstream)?;
        Some(ticket.with_origin(self.calls.clone()))
    }

    fn sign_in(
        &self,
        _upstream: &str,
        pasted: Option<String>,
    ) -> BoxFuture<'_, Result<SignInStep, UpstreamError>> {
        self.set.sign_in(&self.upstream, pasted)
    }

    fn notify_all(&self, notification: ClientNotification) -> BoxFuture<'_, ()> {
        self.set.notify_all(notification)
    }

    fn set_log_level(&self, level: LoggingLevel) -> BoxFuture<'_, ()> {
        let wanted = self.bridges.set_log_level(self.id, level);
        async move {
            if let Some(level) = wanted {
                set_upstream_level(&self.set, &self.upstream, level).await;
            }
        }
        .boxed()
    }

    fn begin(&self) {
        let hub = self.hub.clone();
        let upstream = self.upstream.clone();
        tokio::spawn(async move { hub.start(&upstream).await });
    }

    fn reconfigure(&self, _settings: &Settings) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }
}

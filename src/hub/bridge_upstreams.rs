//! What one attached connection sees of the hub's upstream set ([`ConnectionUpstreams`]):
//! the one upstream it serves, as the [`Upstreams`] of that connection's `Bridge`.
//!
//! Requests go to the shared set under the upstream's name, each counted as in flight
//! for this connection (server→client requests are routed by it) and with its progress
//! token made unique across connections (`router.rs`). Letting the upstreams go starts
//! this one in the hub if no bridge has needed it yet. Reloading and shutting down
//! belong to the hub, not to a connection: a connection's `reconfigure` and `shutdown`
//! do nothing.

// Logging is deprecated by SEP-2577 for protocol 2026-07-28, but it is a live part of
// 2025-11-25, which the hub speaks.
#![allow(deprecated)]

use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};
use rmcp::model::{ClientNotification, ClientRequest, LoggingLevel, ServerResult};
use tokio::sync::watch;

use super::{HubUpstreams, router::AttachedBridges};
use crate::{
    config::Settings,
    upstream::{RequestOptions, SignInStep, UpstreamError, UpstreamSet, Upstreams, View},
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

    fn track(&self, options: &mut RequestOptions) -> super::router::RequestInFlight {
        let (guard, token) = self.bridges.begin_request(self.id, options.progress_token.take());
        options.progress_token = token;
        guard
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
        mut options: RequestOptions,
    ) -> BoxFuture<'_, Result<ServerResult, UpstreamError>> {
        let guard = self.track(&mut options);
        async move {
            let result = self.set.request(&self.upstream, request, options).await;
            drop(guard);
            result
        }
        .boxed()
    }

    fn call_tool(
        &self,
        _upstream: &str,
        call: ToolCall,
        mut options: RequestOptions,
    ) -> BoxFuture<'_, Result<ToolAnswer, UpstreamError>> {
        let guard = self.track(&mut options);
        async move {
            let result = self.set.call_tool(&self.upstream, call, options).await;
            drop(guard);
            result
        }
        .boxed()
    }

    fn request_raw(
        &self,
        _upstream: &str,
        method: String,
        params: serde_json::Map<String, serde_json::Value>,
        mut options: RequestOptions,
    ) -> BoxFuture<'_, Result<serde_json::Value, UpstreamError>> {
        let guard = self.track(&mut options);
        async move {
            let result = self.set.request_raw(&self.upstream, method, params, options).await;
            drop(guard);
            result
        }
        .boxed()
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
        self.set.set_log_level(level)
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

//! Tests of `Bridge`: starting, routing while upstreams start, and shutdown.

use std::{
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

use futures::{FutureExt, future::BoxFuture};
use rmcp::model::{ClientNotification, ClientRequest, LoggingLevel};

use super::*;
use crate::upstream::UpstreamState;

/// Upstreams that never connect; they only record whether they were let go.
struct Idle {
    view: watch::Sender<Arc<View>>,
    began: AtomicBool,
}

impl Upstreams for Idle {
    fn view(&self) -> watch::Receiver<Arc<View>> {
        self.view.subscribe()
    }
    fn request(
        &self,
        upstream: &str,
        _request: ClientRequest,
        _options: RequestOptions,
    ) -> BoxFuture<'_, Result<ServerResult, UpstreamError>> {
        let error = UpstreamError::Unknown(upstream.to_owned());
        async move { Err(error) }.boxed()
    }
    fn notify_all(&self, _notification: ClientNotification) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }
    fn set_log_level(&self, _level: LoggingLevel) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }
    fn begin(&self) {
        self.began.store(true, Ordering::SeqCst);
    }
    fn reconfigure(&self, _settings: &Settings) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }
}

#[tokio::test]
async fn a_request_before_begin_does_not_keep_the_upstreams_waiting() {
    let text = r#"{ "mcpServers": { "fx": { "command": "x" } }, "bridge": { "startupTimeout": 5 } }"#;
    let settings = Arc::new(crate::config::load_str(text, Path::new("c.json5"), &|_| None).unwrap());
    let connecting = UpstreamState {
        name: "fx".into(),
        transport: "stdio",
        status: Status::Connecting,
        settled: false,
        catalog: None,
        generation: 0,
        note: None,
        pid: None,
    };
    let idle = Arc::new(Idle {
        view: watch::channel(Arc::new(View { upstreams: vec![connecting] })).0,
        began: AtomicBool::new(false),
    });
    let upstreams = idle.clone();
    let bridge = Bridge::assemble(settings, None, None, move |_| upstreams);
    // The client's first `tools/list` is handled before `begin`: it waits.
    let early = tokio::time::timeout(Duration::from_millis(50), bridge.settled_catalog()).await;
    assert!(early.is_err(), "the list waits for the connecting upstream");
    bridge.begin();
    assert!(idle.began.load(Ordering::SeqCst), "the upstreams were let go");
}

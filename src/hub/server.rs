//! The serving hub: the socket, each connection from its first line to its end, the
//! idle exit and config reload.
//!
//! A connection's first line decides what it is. A control request (`hubStatus`,
//! `hubStop`, `hub_socket::control`) is answered and the connection closed. Anything else
//! must be the `initialize` of a bridge, naming in `params._meta` the shared upstream it
//! wants; the connection then carries one MCP session served by a
//! `Bridge::for_one_upstream` over that upstream, its first line included. A peer of
//! another user is refused before anything is read.
//!
//! A connection ends when the bridge closes it, when the hub stops, and when the
//! upstream it serves leaves the session it had: the upstream crashed, or a reload
//! restarted or removed it. The bridge then reconnects as after any upstream failure,
//! and meets the upstream's next session.
//!
//! The hub exits `bridge.hub.idleTimeout` after the last connection ended (or after its
//! start, if none ever came), and on `hubStop`, SIGTERM, SIGINT or SIGHUP; it ends its
//! upstreams and removes its socket on the way out.

// Resource subscriptions are deprecated by SEP-2577 for protocol 2026-07-28, but they
// are a live part of 2025-11-25, which the hub speaks.
#![allow(deprecated)]

use std::{io::Cursor, sync::Arc, time::Duration};

use anyhow::Context as _;
use rmcp::{
    ServiceExt as _,
    model::{ClientRequest, UnsubscribeRequest, UnsubscribeRequestParams},
};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
};
use tokio_util::sync::CancellationToken;

use super::{
    HubUpstreams,
    bridge_upstreams::{ConnectionCalls, ConnectionUpstreams, set_upstream_level},
    router::{AttachedBridges, HubLink},
};
use crate::{
    config::{self, Settings, ToolFilter, ToolMode},
    hub_socket::{
        HubAddress,
        control::{self, ControlKind, HubStatus, HubUpstreamStatus},
        launch::HubLifeLock,
        socket,
    },
    locks::Unpoisoned,
    oauth::SignInContext,
    proxy::{Bridge, BridgeService, stdio},
    socket_halves,
    upstream::{RequestOptions, UPSTREAM_META, UpstreamSet, Upstreams},
};

/// How long a new connection may take to send its first line.
const FIRST_LINE_LIMIT: Duration = Duration::from_secs(10);
/// How long a connection whose `initialize` failed stays open for the answer to leave.
const FAILED_INITIALIZE_LINGER: Duration = Duration::from_secs(1);
/// How long closing a connection's MCP session may take.
const CLOSE_LIMIT: Duration = Duration::from_millis(300);

/// Serve the shared upstreams of `settings` at `address` until idle or stopped.
pub async fn serve(
    address: HubAddress,
    settings: Arc<Settings>,
    oauth: SignInContext,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let _life = HubLifeLock::acquire(&address)?;
    let listener =
        socket::bind(&address).with_context(|| format!("cannot listen on `{}`", address.socket.display()))?;
    tracing::info!(socket = %address.socket.display(), config = %settings.source.display(), "hub listening");
    let bridges = AttachedBridges::new();
    let config = HubUpstreams::shared_only(&settings);
    let mut nothing_yet = (*config).clone();
    nothing_yet.servers.clear();
    let set = UpstreamSet::start(&nothing_yet, Arc::new(HubLink(bridges.clone())), oauth, None);
    let hub = Arc::new(HubUpstreams::new(set.clone(), config));
    let serving =
        Arc::new(Serving { address, hub, bridges, stop: stop.clone(), sockets: OpenSockets::default() });

    tokio::spawn(exit_when_idle(serving.bridges.clone(), settings.bridge.hub.idle_timeout, stop.clone()));
    if settings.bridge.config_reload.enabled {
        spawn_reload(serving.hub.clone(), &settings, stop.clone());
    }
    accept(&listener, &serving).await;

    tracing::info!("hub stopping");
    serving.sockets.close_all();
    set.shutdown().await;
    let _ = std::fs::remove_file(&serving.address.socket);
    tracing::info!("hub stopped");
    Ok(())
}

/// What every connection shares.
struct Serving {
    address: HubAddress,
    hub: Arc<HubUpstreams>,
    bridges: Arc<AttachedBridges>,
    stop: CancellationToken,
    sockets: OpenSockets,
}

/// A handle on every open connection's socket, so that stopping closes them all before
/// the upstreams end: the bridges then see their connections end, not answers that the
/// stopping upstreams would give.
#[derive(Default)]
struct OpenSockets {
    open: std::sync::Mutex<std::collections::HashMap<u64, Arc<std::os::unix::net::UnixStream>>>,
    next: std::sync::atomic::AtomicU64,
}

/// A connection's entry in [`OpenSockets`]: dropped when the connection ends, on every
/// way out of it, which closes the socket.
struct OpenSocket<'a> {
    sockets: &'a OpenSockets,
    key: u64,
}

impl Drop for OpenSocket<'_> {
    fn drop(&mut self) {
        self.sockets.close(self.key);
    }
}

impl OpenSockets {
    fn open(&self, socket: &Arc<std::os::unix::net::UnixStream>) -> OpenSocket<'_> {
        let key = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.open.lock_unpoisoned().insert(key, socket.clone());
        OpenSocket { sockets: self, key }
    }

    fn close(&self, key: u64) {
        if let Some(socket) = self.open.lock_unpoisoned().remove(&key) {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }

    fn close_all(&self) {
        for (_, socket) in self.open.lock_unpoisoned().drain() {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }
}

async fn accept(listener: &UnixListener, serving: &Arc<Serving>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = serving.stop.cancelled() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!("accepting a connection failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer = match socket::check_peer(&stream) {
            Ok(peer) => peer,
            Err(refused) => {
                tracing::warn!("{refused}");
                continue;
            }
        };
        let serving = serving.clone();
        tokio::spawn(async move { serving.connection(stream, peer.pid).await });
    }
}

impl Serving {
    /// One connection, from its first line to its end.
    async fn connection(self: Arc<Self>, stream: UnixStream, pid: Option<i32>) {
        // A third descriptor of the socket besides its halves', shared by everything
        // that may have to close it for both sides while the halves are still held.
        let Some((stream, closer)) = with_closer(stream) else { return };
        let Ok((read, mut write)) = socket_halves::split(stream) else { return };
        let _open = self.sockets.open(&closer);
        let max_bytes = self.hub.config().bridge.max_message_bytes;
        let mut read = BufReader::new(read);
        let Ok(Some(first)) = tokio::time::timeout(FIRST_LINE_LIMIT, first_line(&mut read, max_bytes)).await
        else {
            return;
        };
        if let Some(request) = control::parse_control(&first) {
            let answer = match request.kind {
                ControlKind::Status => control::answer_line(&request.id, &self.status()),
                ControlKind::Stop => control::answer_line(&request.id, &serde_json::json!({})),
            };
            let _ = write.write_all(&answer).await;
            let _ = write.shutdown().await;
            if matches!(request.kind, ControlKind::Stop) {
                tracing::info!("asked to stop");
                self.stop.cancel();
            }
            return;
        }
        let Some((id, upstream)) = initialize_of(&first) else {
            tracing::warn!("a connection began with something other than `initialize`; closed it");
            return;
        };
        let server = match self.hub.server(&upstream) {
            Some(server) => Some(server),
            None => self.reread_for(&upstream).await,
        };
        let Some(server) = server else {
            let error = serde_json::json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": { "code": -32602, "message": format!("the hub has no shared server `{upstream}`") },
            });
            let mut line = serde_json::to_vec(&error).unwrap_or_default();
            line.push(b'\n');
            let _ = write.write_all(&line).await;
            return;
        };
        let input = Cursor::new(first).chain(read);
        self.serve_bridge(server.name.as_str().into(), input, write, pid, &closer).await;
    }

    /// One bridge's MCP session with `upstream`.
    async fn serve_bridge(
        &self,
        upstream: Arc<str>,
        input: impl tokio::io::AsyncRead + Unpin + Send + 'static,
        output: impl tokio::io::AsyncWrite + Unpin + Send + 'static,
        pid: Option<i32>,
        socket: &Arc<std::os::unix::net::UnixStream>,
    ) {
        let id = self.bridges.next_id();
        let config = self.hub.config();
        let settings = Arc::new(one_upstream_settings(&config, &upstream));
        let set = self.hub.set.clone();
        let view = ConnectionUpstreams::narrowed_view(&set, upstream.clone());
        let closing = CancellationToken::new();
        let calls = ConnectionCalls::new(id, self.bridges.clone(), socket.clone());
        let bridge = Arc::new(Bridge::for_one_upstream(settings, upstream.clone(), |link| {
            self.bridges.attach(id, upstream.clone(), link, pid);
            Arc::new(ConnectionUpstreams {
                id,
                upstream: upstream.clone(),
                set,
                bridges: self.bridges.clone(),
                hub: self.hub.clone(),
                view,
                closing: closing.clone(),
                calls: calls.clone(),
            })
        }));
        tracing::info!(upstream = %upstream, bridge_pid = ?pid, "a bridge attached");
        let input_closed = CancellationToken::new();
        let transport = stdio::over_streams(
            input,
            output,
            config.bridge.max_message_bytes,
            input_closed.clone(),
            Some(bridge.clone()),
        );
        let end = self.stop.child_token();
        let serve = BridgeService(bridge.clone()).serve_with_ct(transport, end.clone());
        let service = tokio::select! {
            service = serve => service.ok(),
            () = input_closed.cancelled() => None,
            () = end.cancelled() => None,
        };
        if let Some(mut service) = service {
            tokio::select! {
                () = input_closed.cancelled() => {}
                () = end.cancelled() => {}
                () = session_ended(&self.hub.set, &upstream) => {
                    tracing::info!(upstream = %upstream, "its session ended; closing the bridges' connections to it");
                }
            }
            bridge.shutdown().await;
            let _ = service.close_with_timeout(CLOSE_LIMIT).await;
        } else {
            bridge.shutdown().await;
            // The answer to a failed `initialize` is on its way out: the bridge reads it
            // and closes its side, or the linger ends.
            let _ = tokio::time::timeout(FAILED_INITIALIZE_LINGER, input_closed.cancelled()).await;
        }
        // The socket first: requests the end of the connection cancels are not answered,
        // so that the bridge fails each call in flight once, as when a server exits.
        let _ = socket.shutdown(std::net::Shutdown::Both);
        closing.cancel();
        calls.cancel_all();
        let had_level = self.bridges.log_level_of(id).is_some();
        let orphaned = self.bridges.detach(id);
        tracing::info!(upstream = %upstream, bridge_pid = ?pid, "a bridge detached");
        if let (true, Some(level)) = (had_level, self.bridges.wanted_log_level(&upstream)) {
            // Its level may have been the most verbose one.
            set_upstream_level(&self.hub.set, &upstream, level).await;
        }
        for uri in orphaned {
            let request = ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(
                UnsubscribeRequestParams::new(uri),
            ));
            if let Err(error) = self.hub.set.request(&upstream, request, RequestOptions::default()).await {
                tracing::debug!(upstream = %upstream, "unsubscribing a departed bridge's resource failed: {error}");
            }
        }
    }

    /// A bridge wants a shared upstream this hub does not know: the config file may
    /// have gained it a moment ago, before the hub's own reload. Read it again now.
    async fn reread_for(&self, upstream: &str) -> Option<crate::config::ServerSettings> {
        let path = self.hub.config().source.clone();
        match config::load(&path) {
            Ok(settings) if settings.server(upstream).is_some_and(|server| server.shared) => {
                tracing::info!(upstream = %upstream, "a bridge wants a shared server the config gained; applying the config");
                self.hub.reload(&settings).await;
                self.hub.server(upstream)
            }
            _ => None,
        }
    }

    fn status(&self) -> HubStatus {
        let view = self.hub.set.view();
        let view = view.borrow();
        HubStatus {
            socket: self.address.socket.clone(),
            pid: std::process::id(),
            config: self.address.config.clone(),
            bridges: self.bridges.bridges(),
            upstreams: view
                .upstreams
                .iter()
                .map(|state| HubUpstreamStatus {
                    name: state.name.to_string(),
                    status: state.status.label().to_owned(),
                    pid: state.pid,
                })
                .collect(),
        }
    }
}

/// `stream` and a second handle on its socket, to be shared.
fn with_closer(
    stream: UnixStream,
) -> Option<(std::os::unix::net::UnixStream, Arc<std::os::unix::net::UnixStream>)> {
    let stream = stream.into_std().ok()?;
    let closer = stream.try_clone().ok()?;
    Some((stream, Arc::new(closer)))
}

/// The first line of a connection, newline included; `None` when the peer sends none
/// within `max_bytes` (the rest stays buffered in `read`).
async fn first_line(read: &mut BufReader<impl AsyncRead + Unpin>, max_bytes: usize) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let buffer = read.fill_buf().await.ok()?;
        if buffer.is_empty() {
            return None;
        }
        let (taken, complete) = match buffer.iter().position(|&byte| byte == b'\n') {
            Some(end) => (end + 1, true),
            None => (buffer.len(), false),
        };
        line.extend_from_slice(&buffer[..taken]);
        read.consume(taken);
        if complete {
            return Some(line);
        }
        if line.len() > max_bytes {
            return None;
        }
    }
}

/// The id of a bridge's `initialize` on `line`, and the upstream its `_meta` names.
fn initialize_of(line: &[u8]) -> Option<(Value, String)> {
    let message: Value = serde_json::from_slice(line).ok()?;
    if message.get("method")?.as_str()? != "initialize" {
        return None;
    }
    let upstream = message.pointer("/params/_meta")?.get(UPSTREAM_META)?.as_str()?.to_owned();
    Some((message.get("id")?.clone(), upstream))
}

/// The settings of a connection's bridge: `upstream` alone, without namespaces or
/// filters (the bridge on the other side applies its own), every kind served.
fn one_upstream_settings(config: &Settings, upstream: &str) -> Settings {
    let mut settings = config.clone();
    settings.servers.retain(|server| server.name == upstream);
    for server in &mut settings.servers {
        server.tool_namespace = None;
        server.prompt_namespace = None;
        server.resource_namespace = None;
        server.tool_filter = ToolFilter::default();
    }
    let bridge = &mut settings.bridge;
    bridge.default_namespace = false;
    bridge.tool_mode = ToolMode::All;
    bridge.pinned_tools.clear();
    bridge.aggregation = config::Aggregation { tools: true, resources: true, prompts: true };
    bridge.instructions_wait = Duration::ZERO;
    settings
}

/// Resolves once `upstream` has been ready and then left that session (crashed,
/// restarted or removed by a reload).
async fn session_ended(set: &UpstreamSet, upstream: &str) {
    let mut view = set.view();
    let mut serving = None;
    loop {
        {
            let view = view.borrow_and_update();
            let state = view.get(upstream);
            match (serving, state) {
                (None, Some(state)) if state.is_ready() => serving = Some(state.generation),
                (Some(generation), Some(state)) if state.is_ready() && state.generation == generation => {}
                (Some(_), _) => return,
                (None, _) => {}
            }
        }
        if view.changed().await.is_err() {
            return;
        }
    }
}

/// Cancel `stop` once no connection has been attached for `idle`.
async fn exit_when_idle(bridges: Arc<AttachedBridges>, idle: Duration, stop: CancellationToken) {
    let mut count = bridges.count();
    loop {
        if *count.borrow_and_update() == 0 {
            tokio::select! {
                () = tokio::time::sleep(idle) => {
                    tracing::info!(seconds = idle.as_secs(), "no bridge attached for the idle timeout; exiting");
                    stop.cancel();
                    return;
                }
                changed = count.changed() => if changed.is_err() { return },
                () = stop.cancelled() => return,
            }
        } else {
            tokio::select! {
                changed = count.changed() => if changed.is_err() { return },
                () = stop.cancelled() => return,
            }
        }
    }
}

/// Apply config edits to the shared upstreams, as a bridge applies them to its own.
fn spawn_reload(hub: Arc<HubUpstreams>, settings: &Settings, stop: CancellationToken) {
    config::watch::apply_edits(settings, "hub", stop, move |settings| {
        let hub = hub.clone();
        async move { hub.reload(&settings).await }
    });
}

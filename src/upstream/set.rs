//! [`UpstreamSet`]: the in-process implementation of [`Upstreams`]. It starts one
//! supervisor task per enabled upstream and routes requests to their live sessions.

use std::{
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::future::{BoxFuture, FutureExt, join_all};
use rmcp::model::{ClientNotification, ClientRequest, LoggingLevel, ServerResult};
use tokio::sync::{Semaphore, watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    ClientLink, LaneTicket, RequestOptions, SignInStep, Status, UpstreamError, UpstreamState, Upstreams,
    View,
    connection::Connection,
    entry::{Entry, Shared},
    sign_in::{self, SignInTarget},
    supervisor,
};
use crate::{
    config::{ServerSettings, Settings, TransportSettings},
    hub_socket::HubAddress,
    locks::{Unpoisoned, UnpoisonedRw},
    oauth::SignInContext,
    wire::{ToolAnswer, ToolCall},
};

/// How long `shutdown` waits for every supervisor to end its upstream.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(3);

/// Every enabled upstream of one bridge process, each with its own supervisor.
pub struct UpstreamSet {
    shared: Arc<Shared>,
    entries: RwLock<Vec<Arc<Entry>>>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    /// Source of [`Entry::generation`].
    generations: AtomicU64,
}

impl UpstreamSet {
    /// Start every enabled upstream of `settings` in the background; the `shared` ones
    /// are reached through the hub at `hub`.
    pub fn start(
        settings: &Settings,
        link: Arc<dyn ClientLink>,
        oauth: SignInContext,
        hub: Option<HubAddress>,
    ) -> Arc<Self> {
        let bridge = &settings.bridge;
        let shared = Arc::new(Shared {
            link,
            view: watch::Sender::new(Arc::new(View::default())),
            start_permits: Semaphore::new(bridge.max_concurrent_starts.max(1)),
            max_message_bytes: bridge.max_message_bytes,
            recovery_interval: bridge.failover.recovery_interval,
            failover: bridge.failover,
            log_level: Mutex::new(None),
            oauth,
            hub,
            go: CancellationToken::new(),
        });
        let set = Arc::new(Self {
            shared,
            entries: RwLock::new(Vec::new()),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            generations: AtomicU64::new(0),
        });
        set.apply(settings, true);
        set
    }

    /// Make the running upstreams match `settings`: start the new ones, stop the removed
    /// or disabled ones, restart those whose settings changed, and leave the others —
    /// and their calls in flight — alone. Used at start (`first`) and on config reload.
    fn apply(&self, settings: &Settings, first: bool) {
        let wanted: Vec<&ServerSettings> = settings.enabled_servers().collect();
        let mut entries = self.entries.write_unpoisoned();
        let mut next = Vec::with_capacity(wanted.len());
        for server in &wanted {
            let existing =
                entries.iter().find(|entry| *entry.name == *server.name && entry.settings == **server);
            match existing {
                Some(entry) => next.push(entry.clone()),
                None => {
                    let generation = self.generations.fetch_add(1, Ordering::Relaxed);
                    let entry =
                        Arc::new(Entry::new((*server).clone(), self.cancel.child_token(), generation));
                    if entries.iter().any(|old| *old.name == *server.name) {
                        tracing::info!(upstream = %server.name, "its settings changed; restarting it");
                    } else if !first {
                        tracing::info!(upstream = %server.name, "new in the config; starting it");
                    }
                    next.push(entry);
                }
            }
        }
        for old in entries.iter() {
            if !next.iter().any(|entry| Arc::ptr_eq(entry, old)) {
                if !wanted.iter().any(|server| *server.name == *old.name) {
                    tracing::info!(upstream = %old.name, "removed from the config (or disabled); stopping it");
                }
                old.cancel.cancel();
            }
        }
        // The view follows the config's order; kept upstreams keep their state.
        self.shared.view.send_modify(|view| {
            let previous = std::mem::take(&mut Arc::make_mut(view).upstreams);
            Arc::make_mut(view).upstreams = next
                .iter()
                .map(|entry| {
                    previous
                        .iter()
                        .find(|state| state.name == entry.name && state.generation == entry.generation)
                        .cloned()
                        .unwrap_or_else(|| UpstreamState {
                            name: entry.name.clone(),
                            transport: transport_label(&entry.settings),
                            status: Status::Connecting,
                            settled: false,
                            catalog: None,
                            generation: entry.generation,
                            note: None,
                            pid: None,
                        })
                })
                .collect();
        });
        for entry in &next {
            if !entries.iter().any(|old| Arc::ptr_eq(old, entry)) {
                self.tasks.spawn(supervisor::run(entry.clone(), self.shared.clone()));
            }
        }
        *entries = next;
    }

    fn entry(&self, name: &str) -> Option<Arc<Entry>> {
        let entries = self.entries.read_unpoisoned();
        entries.iter().find(|entry| &*entry.name == name).cloned()
    }

    fn connections(&self) -> Vec<Arc<Connection>> {
        let entries = self.entries.read_unpoisoned();
        entries.iter().filter_map(|entry| entry.connection()).collect()
    }

    /// The live session of `entry`. When there is none (the upstream is starting,
    /// reconnecting, backing off or marked failed), the request starts the next
    /// connection attempt and waits for it, at most the upstream's `timeout`. An attempt
    /// already under way may still succeed and serve the request; if it fails, the
    /// request waits for the one it asked for, which starts at once: an attempt that
    /// began before the request (say, while the server was still down) does not decide
    /// its fate. Only that attempt failing, or no session within `timeout`, is an error;
    /// it names the upstream and the cause.
    async fn connection_for_request(
        &self,
        entry: &Entry,
        cancel: &CancellationToken,
    ) -> Result<Arc<Connection>, UpstreamError> {
        if let Some(connection) = entry.live_connection() {
            return Ok(connection);
        }
        let mut attempts = entry.attempts.subscribe();
        attempts.mark_unchanged();
        // The supervisor may have set the connection before the subscription.
        if let Some(connection) = entry.live_connection() {
            return Ok(connection);
        }
        // The attempt this request asks for is the one after those started so far.
        let wanted = entry.attempts_started.load(Ordering::Acquire) + 1;
        entry.reconnect.notify_one();
        let limit = entry.settings.connect_timeout;
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        let finished = loop {
            tokio::select! {
                changed = attempts.changed() => {
                    if changed.is_err() || *attempts.borrow_and_update() >= wanted || entry.cancel.is_cancelled() {
                        break true;
                    }
                    if let Some(connection) = entry.live_connection() {
                        return Ok(connection);
                    }
                }
                () = &mut deadline => break false,
                () = cancel.cancelled() => return Err(UpstreamError::Cancelled),
            }
        };
        if let Some(connection) = entry.live_connection() {
            return Ok(connection);
        }
        let status_cause = {
            let view = self.shared.view.borrow();
            view.get(&entry.name).and_then(|state| state.status.error().map(str::to_owned))
        };
        let last_failure = entry.last_failure.lock_unpoisoned().clone();
        // The attempt waited for failed with `last_failure`; the view may show a later state.
        let status_cause =
            if finished { last_failure.or(status_cause) } else { status_cause.or(last_failure) };
        let cause = match (finished, status_cause) {
            (true, Some(cause)) => cause,
            (true, None) => "its connection attempt failed".to_owned(),
            (false, Some(cause)) => {
                format!("it did not connect within {} s (last failure: {cause})", limit.as_secs())
            }
            (false, None) => format!("it did not connect within {} s", limit.as_secs()),
        };
        Err(UpstreamError::NotConnected { name: entry.name.to_string(), cause })
    }

    async fn request_inner(
        &self,
        upstream: String,
        request: ClientRequest,
        options: RequestOptions,
    ) -> Result<ServerResult, UpstreamError> {
        let entry = self.entry(&upstream).ok_or(UpstreamError::Unknown(upstream))?;
        let connection = self.connection_for_request(&entry, &options.cancel).await?;
        let tracks_subscription =
            matches!(request, ClientRequest::SubscribeRequest(_) | ClientRequest::UnsubscribeRequest(_));
        let bookkeeping = tracks_subscription.then(|| request.clone());
        let result = connection.request(request, options).await;
        if let (Ok(_), Some(request)) = (&result, bookkeeping) {
            entry.track_subscription(&request);
        }
        result
    }
}

fn transport_label(settings: &ServerSettings) -> &'static str {
    if settings.shared {
        return "shared";
    }
    match &settings.transport {
        TransportSettings::Stdio { .. } => "stdio",
        TransportSettings::Remote(remote) => match remote.kind {
            crate::config::RemoteKind::StreamableHttp => "streamable-http",
            crate::config::RemoteKind::Sse => "sse",
            crate::config::RemoteKind::Auto => "http",
        },
    }
}

impl Upstreams for UpstreamSet {
    fn view(&self) -> watch::Receiver<Arc<View>> {
        self.shared.view.subscribe()
    }

    fn request(
        &self,
        upstream: &str,
        request: ClientRequest,
        options: RequestOptions,
    ) -> BoxFuture<'_, Result<ServerResult, UpstreamError>> {
        // The future itself, not one wrapping it: boxing copies it whole, and a wrapper
        // would add another copy of the request's state.
        self.request_inner(upstream.to_owned(), request, options).boxed()
    }

    fn call_tool(
        &self,
        upstream: &str,
        call: ToolCall,
        options: RequestOptions,
    ) -> BoxFuture<'_, Result<ToolAnswer, UpstreamError>> {
        let upstream = upstream.to_owned();
        async move {
            let entry = self.entry(&upstream).ok_or(UpstreamError::Unknown(upstream))?;
            let connection = self.connection_for_request(&entry, &options.cancel).await?;
            connection.call_tool(call, options).await
        }
        .boxed()
    }

    fn request_raw(
        &self,
        upstream: &str,
        method: String,
        params: serde_json::Map<String, serde_json::Value>,
        options: RequestOptions,
    ) -> BoxFuture<'_, Result<serde_json::Value, UpstreamError>> {
        let upstream = upstream.to_owned();
        async move {
            let entry = self.entry(&upstream).ok_or(UpstreamError::Unknown(upstream))?;
            let connection = self.connection_for_request(&entry, &options.cancel).await?;
            connection.request_raw(method, params, options).await
        }
        .boxed()
    }

    fn tool_ticket(&self, upstream: &str) -> Option<LaneTicket> {
        self.entry(upstream)?.live_connection()?.ticket()
    }

    fn sign_in(
        &self,
        upstream: &str,
        pasted: Option<String>,
    ) -> BoxFuture<'_, Result<SignInStep, UpstreamError>> {
        let target = self.entry(upstream).map(|entry| SignInTarget {
            name: entry.name.to_string(),
            source: entry.tokens.get().cloned().flatten(),
            cancel: entry.cancel.clone(),
            connect_now: Box::new(move || entry.reconnect.notify_one()),
        });
        let target = target.ok_or_else(|| UpstreamError::Unknown(upstream.to_owned()));
        async move { sign_in::sign_in(target?, &self.tasks, pasted).await }.boxed()
    }

    fn notify_all(&self, notification: ClientNotification) -> BoxFuture<'_, ()> {
        async move {
            let connections = self.connections();
            join_all(connections.iter().map(|connection| {
                let notification = notification.clone();
                async move {
                    let _ = connection.peer().send_notification(notification).await;
                }
            }))
            .await;
        }
        .boxed()
    }

    fn set_log_level(&self, level: LoggingLevel) -> BoxFuture<'_, ()> {
        async move {
            *self.shared.log_level.lock_unpoisoned() = Some(level);
            let connections = self.connections();
            join_all(
                connections
                    .iter()
                    .filter(|connection| {
                        connection.peer().peer_info().is_some_and(|info| info.capabilities.logging.is_some())
                    })
                    .map(|connection| supervisor::set_level(connection, level)),
            )
            .await;
        }
        .boxed()
    }

    fn begin(&self) {
        self.shared.go.cancel();
    }

    fn reconfigure(&self, settings: &Settings) -> BoxFuture<'_, ()> {
        self.apply(settings, false);
        async {}.boxed()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        async move {
            self.cancel.cancel();
            self.tasks.close();
            if tokio::time::timeout(SHUTDOWN_LIMIT, self.tasks.wait()).await.is_err() {
                tracing::warn!("some upstreams did not stop in time");
            }
        }
        .boxed()
    }
}

//! Establishing one session with an upstream, whatever its transport: spawn or dial,
//! `initialize`, list its catalog, and end it again.
//!
//! Stdio children are spawned here; remote upstreams are reached over streamable HTTP
//! or legacy SSE, with auto-detection (streamable HTTP first, SSE when the endpoint
//! answers the `initialize` POST with a 4xx, as the MCP spec's backwards-compatibility
//! section describes).

use std::{sync::Arc, time::Duration};

use rmcp::{
    RoleClient, ServiceExt,
    service::{ClientInitializeError, RunningService},
    transport::{Transport, async_rw::AsyncRwTransport},
};
use tokio_util::sync::CancellationToken;

use super::{
    UpstreamCatalog,
    child::{self, ChildGuard, SpawnSpec},
    connection::{self, Connection, SessionParts, UpstreamHandler},
    remote,
    set::{Entry, Shared},
    sse,
    tap::TapTransport,
};
use crate::config::{RemoteKind, RemoteSettings, TransportSettings};

/// How long closing an rmcp session may take before the child is ended anyway.
const CLOSE_LIMIT: Duration = Duration::from_millis(300);

/// A live session and what it owns. Owned by the upstream's supervisor.
pub struct Session {
    pub service: RunningService<RoleClient, UpstreamHandler>,
    pub connection: Arc<Connection>,
    /// Fires when the upstream closed its side, or a request found the connection dead.
    pub closed: CancellationToken,
    pub child: Option<ChildGuard>,
    forwarder: tokio::task::JoinHandle<()>,
    /// `stdio`, `streamable-http` or `sse`: what this session actually uses.
    pub transport: &'static str,
}

/// End a session: stop forwarding, close the MCP session, end the child if any.
pub async fn close(session: &mut Session) {
    session.forwarder.abort();
    let _ = tokio::time::timeout(CLOSE_LIMIT, session.service.close()).await;
    if let Some(child) = session.child.as_mut() {
        child.shutdown().await;
    }
}

/// Connect and list; a session that cannot list is closed again.
pub async fn connect_and_list(
    entry: &Arc<Entry>,
    shared: &Arc<Shared>,
) -> Result<(Session, UpstreamCatalog), String> {
    let mut session = connect(entry, shared).await?;
    match list_catalog(&session.connection, entry.settings.connect_timeout).await {
        Ok(catalog) => Ok((session, catalog)),
        Err(error) => {
            close(&mut session).await;
            Err(format!("listing its catalog failed: {error}"))
        }
    }
}

async fn connect(entry: &Arc<Entry>, shared: &Arc<Shared>) -> Result<Session, String> {
    match &entry.settings.transport {
        TransportSettings::Stdio { command, args, env, cwd } => {
            connect_stdio(entry, shared, &SpawnSpec { command, args, env, cwd: cwd.as_ref() }).await
        }
        TransportSettings::Remote(remote) => connect_remote(entry, shared, remote).await,
    }
}

/// Why `initialize` did not complete.
enum InitFailure {
    Timeout,
    Failed(Box<ClientInitializeError>),
}

/// A session's handler and queues, plus the token its transport cancels on close.
struct Pending {
    parts: SessionParts,
    closed: CancellationToken,
}

impl Pending {
    fn new(entry: &Entry, shared: &Shared) -> Self {
        let parts = connection::session_parts(
            entry.name.clone(),
            shared.link.clone(),
            entry.lists_changed.clone(),
            entry.settings.request_timeout,
        );
        Self { parts, closed: CancellationToken::new() }
    }

    fn tap<T>(&self, transport: T) -> TapTransport<T> {
        TapTransport::new(transport, self.parts.tapped_tx.clone(), self.closed.clone())
    }

    /// Run `initialize` over `transport`, bounded by the upstream's `timeout`.
    async fn initialize<T: Transport<RoleClient> + 'static>(
        self,
        entry: &Entry,
        shared: &Shared,
        transport: TapTransport<T>,
        child: Option<ChildGuard>,
        label: &'static str,
    ) -> Result<Session, (InitFailure, Option<ChildGuard>)> {
        let Pending { parts, closed } = self;
        let serve = parts.handler.serve_with_ct(transport, entry.cancel.child_token());
        let service = match tokio::time::timeout(entry.settings.connect_timeout, serve).await {
            Ok(Ok(service)) => service,
            Ok(Err(error)) => return Err((InitFailure::Failed(Box::new(error)), child)),
            Err(_) => return Err((InitFailure::Timeout, child)),
        };
        let routes = parts.connection_parts.routes.clone();
        let connection = Arc::new(parts.connection_parts.into_connection(
            service.peer().clone(),
            parts.tapped_tx,
            closed.clone(),
        ));
        let forwarder = tokio::spawn(connection::forward_tapped(
            entry.name.clone(),
            shared.link.clone(),
            routes,
            parts.tapped_rx,
        ));
        Ok(Session { service, connection, closed, child, forwarder, transport: label })
    }
}

async fn connect_stdio(entry: &Entry, shared: &Shared, spec: &SpawnSpec<'_>) -> Result<Session, String> {
    let pending = Pending::new(entry, shared);
    let spawned = child::spawn(&entry.name, spec)?;
    let transport = pending.tap(
        AsyncRwTransport::new_client(spawned.stdout, spawned.stdin)
            .with_max_line_length(shared.max_message_bytes),
    );
    match pending.initialize(entry, shared, transport, Some(spawned.guard), "stdio").await {
        Ok(session) => Ok(session),
        Err((failure, child)) => {
            let mut child = child.expect("a stdio session attempt keeps its child");
            let cause = match failure {
                InitFailure::Timeout => {
                    format!(
                        "it did not finish initialize within {} s",
                        entry.settings.connect_timeout.as_secs()
                    )
                }
                InitFailure::Failed(error) => {
                    match tokio::time::timeout(Duration::from_millis(200), child.wait()).await {
                        Ok(exit) => format!("{exit} before finishing initialize"),
                        Err(_) => format!("initialize failed: {}", remote::describe_initialize(&error)),
                    }
                }
            };
            child.shutdown().await;
            Err(cause)
        }
    }
}

async fn connect_remote(
    entry: &Entry,
    shared: &Shared,
    settings: &RemoteSettings,
) -> Result<Session, String> {
    let timeout = entry.settings.connect_timeout;
    let client = remote::http_client(&entry.name, settings, timeout)?;
    let describe = |failure: InitFailure| match failure {
        InitFailure::Timeout => format!("no answer to initialize within {} s", timeout.as_secs()),
        InitFailure::Failed(error) => remote::describe_initialize(&error),
    };
    if settings.kind != RemoteKind::Sse {
        let pending = Pending::new(entry, shared);
        let transport = pending.tap(remote::streamable_transport(
            client.clone(),
            settings,
            shared.max_message_bytes,
            None,
        ));
        match pending.initialize(entry, shared, transport, None, "streamable-http").await {
            Ok(session) => {
                tracing::info!(upstream = %entry.name, url = %settings.url, "connected over streamable HTTP");
                return Ok(session);
            }
            Err((InitFailure::Failed(error), _))
                if settings.kind == RemoteKind::Auto && remote::should_fall_back_to_sse(&error) =>
            {
                tracing::info!(
                    upstream = %entry.name,
                    "not a streamable HTTP endpoint ({}); trying the legacy SSE transport",
                    remote::describe_initialize(&error)
                );
            }
            Err((failure, _)) => return Err(describe(failure)),
        }
    }
    let pending = Pending::new(entry, shared);
    let headers = remote::headers(settings).into_iter().collect();
    let stream = sse::connect(client, &settings.url, headers, timeout, &entry.name).await?;
    let transport = pending.tap(stream);
    match pending.initialize(entry, shared, transport, None, "sse").await {
        Ok(session) => {
            tracing::info!(upstream = %entry.name, url = %settings.url, "connected over legacy SSE");
            Ok(session)
        }
        Err((failure, _)) => Err(describe(failure)),
    }
}

/// List everything the upstream offers, per its declared capabilities.
pub async fn list_catalog(connection: &Connection, timeout: Duration) -> Result<UpstreamCatalog, String> {
    let peer = connection.peer();
    let info = peer.peer_info().ok_or("the upstream sent no initialize result")?;
    let capabilities = info.capabilities.clone();
    let listing = async {
        let mut catalog = UpstreamCatalog {
            capabilities: capabilities.clone(),
            instructions: info.instructions.clone(),
            ..UpstreamCatalog::default()
        };
        if capabilities.tools.is_some() {
            catalog.tools = peer.list_all_tools().await?;
        }
        if capabilities.prompts.is_some() {
            catalog.prompts = peer.list_all_prompts().await?;
        }
        if capabilities.resources.is_some() {
            catalog.resources = peer.list_all_resources().await?;
            catalog.resource_templates = peer.list_all_resource_templates().await?;
        }
        Ok::<_, rmcp::service::ServiceError>(catalog)
    };
    match tokio::time::timeout(timeout, listing).await {
        Ok(result) => result.map_err(|error| remote::describe(&error)),
        Err(_) => Err(format!("listing did not finish within {} s", timeout.as_secs())),
    }
}

//! Establishing one session with an upstream, whatever its transport: spawn or dial,
//! `initialize`, list its catalog, and end it again.
//!
//! Stdio children are spawned here; remote upstreams are reached over streamable HTTP
//! or legacy SSE (`session/remote_session.rs`).

use std::{sync::Arc, time::Duration};

use rmcp::{
    RoleClient,
    model::ProtocolVersion,
    service::{
        ClientInitializeError, ClientLifecycleMode, RunningService, serve_client_with_lifecycle_and_ct,
    },
    transport::Transport,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{
    UpstreamCatalog,
    client_handler::UpstreamHandler,
    connection::{self, Connection, SessionParts},
    entry::{Entry, Shared},
    http as remote,
    in_flight::progress,
    raw_results::RawResults,
    stdio::{
        child::{self, ChildGuard, SpawnSpec},
        child_output::StdoutNoise,
        lane::{AnswerReading, Lane},
        transport::LineTransport,
    },
    tap::TapTransport,
};
use crate::config::TransportSettings;

mod hub_session;
mod remote_session;

pub use hub_session::{NEEDS_SIGN_IN, UPSTREAM_META};

/// Listing lives in `listing.rs`; the supervisor finds it here, with the session.
pub use super::listing::list_catalog;

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

/// Why no session could be established.
#[derive(Debug)]
pub struct ConnectFailure {
    pub cause: String,
    /// Only a sign-in (or tokens from elsewhere) can fix it: do not retry blindly.
    pub needs_sign_in: bool,
}

impl ConnectFailure {
    fn sign_in(cause: String) -> Self {
        Self { cause, needs_sign_in: true }
    }
}

impl From<String> for ConnectFailure {
    fn from(cause: String) -> Self {
        Self { cause, needs_sign_in: false }
    }
}

/// Connect and list; a session that cannot list is closed again.
pub async fn connect_and_list(
    entry: &Arc<Entry>,
    shared: &Arc<Shared>,
) -> Result<(Session, UpstreamCatalog), ConnectFailure> {
    let mut session = connect(entry, shared).await?;
    match list_catalog(&session.connection, entry.settings.connect_timeout).await {
        Ok(catalog) => Ok((session, catalog)),
        Err(error) => {
            close(&mut session).await;
            Err(format!("listing its catalog failed: {error}").into())
        }
    }
}

async fn connect(entry: &Arc<Entry>, shared: &Arc<Shared>) -> Result<Session, ConnectFailure> {
    if entry.settings.shared {
        return hub_session::connect_shared(entry, shared).await;
    }
    match &entry.settings.transport {
        TransportSettings::Stdio { command, args, env, cwd } => {
            Ok(connect_stdio(entry, shared, &SpawnSpec { command, args, env, cwd: cwd.as_ref() }).await?)
        }
        TransportSettings::Remote(settings) => remote_session::connect_remote(entry, shared, settings).await,
    }
}

/// Why `initialize` did not complete.
enum InitFailure {
    Timeout,
    Failed(Box<ClientInitializeError>),
}

/// A session being opened: its handler and queues, plus the token its transport
/// cancels on close.
struct OpeningSession {
    parts: SessionParts,
    closed: CancellationToken,
    lifecycle: ClientLifecycleMode,
    /// How long `initialize` may take (the upstream's `timeout` unless set).
    limit: Duration,
}

impl OpeningSession {
    fn new(entry: &Entry, shared: &Shared) -> Self {
        let parts = connection::session_parts(
            entry.name.clone(),
            shared.link.clone(),
            entry.lists_changed.clone(),
            entry.settings.request_timeout,
        );
        let limit = entry.settings.connect_timeout;
        Self { parts, closed: CancellationToken::new(), lifecycle: ClientLifecycleMode::Initialize, limit }
    }

    /// Let `initialize` take `limit`.
    fn with_limit(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    /// Open the session the 2026-07-28 way (`server/discover`, no `initialize`).
    fn modern(mut self) -> Self {
        self.lifecycle =
            ClientLifecycleMode::Discover { preferred_versions: vec![ProtocolVersion::V_2026_07_28] };
        self
    }

    fn tap<T>(&self, transport: T) -> TapTransport<T> {
        let raw_results = self.raw_results();
        TapTransport::new(transport, self.parts.tapped_tx.clone(), self.closed.clone(), raw_results)
            .with_client_tasks(self.parts.handler.client_tasks())
    }

    /// Where the transport offers `tools/list` answers as written (`listing.rs`).
    fn raw_results(&self) -> Arc<RawResults> {
        self.parts.connection_parts.raw_results.clone()
    }

    /// Open the session over `transport` (`initialize`, or `server/discover` for
    /// 2026-07-28 servers), bounded by the upstream's `timeout`.
    async fn initialize<T: Transport<RoleClient> + 'static>(
        self,
        entry: &Entry,
        shared: &Shared,
        transport: TapTransport<T>,
        child: Option<ChildGuard>,
        label: &'static str,
        lane: Option<Arc<Lane>>,
    ) -> Result<Session, (InitFailure, Option<ChildGuard>)> {
        let OpeningSession { parts, closed, lifecycle, limit } = self;
        // rmcp's session task inherits this span, so what is logged from inside it (by
        // rmcp, and by the transport: unparsable lines, oversized messages) names it.
        let span = tracing::info_span!("upstream", upstream = %entry.name);
        let serve = serve_client_with_lifecycle_and_ct(
            parts.handler,
            transport,
            lifecycle,
            entry.cancel.child_token(),
        )
        .instrument(span);
        let service = match tokio::time::timeout(limit, serve).await {
            Ok(Ok(service)) => service,
            Ok(Err(error)) => return Err((InitFailure::Failed(Box::new(error)), child)),
            Err(_) => return Err((InitFailure::Timeout, child)),
        };
        let routes = parts.connection_parts.routes.clone();
        // The lane speaks the protocol of 2025-11-25 and before; a 2026-07-28 session
        // (request association, multi-round results) keeps every call on rmcp.
        let legacy = service
            .peer()
            .peer_info()
            .is_some_and(|info| info.protocol_version < ProtocolVersion::V_2026_07_28);
        let connection = Arc::new(parts.connection_parts.into_connection(
            service.peer().clone(),
            parts.tapped_tx,
            closed.clone(),
            lane.filter(|_| legacy),
        ));
        let forwarder = tokio::spawn(progress::forward_tapped(
            entry.name.clone(),
            shared.link.clone(),
            routes,
            parts.tapped_rx,
        ));
        Ok(Session { service, connection, closed, child, forwarder, transport: label })
    }
}

async fn connect_stdio(entry: &Entry, shared: &Shared, spec: &SpawnSpec<'_>) -> Result<Session, String> {
    match start_stdio(entry, shared, spec, OpeningSession::new(entry, shared)).await {
        // The server refused `initialize` itself: it may speak only 2026-07-28.
        Err(StdioFailure::Refused(error)) => {
            tracing::info!(upstream = %entry.name, "initialize was refused ({error}); trying protocol 2026-07-28");
            start_stdio(entry, shared, spec, OpeningSession::new(entry, shared).modern()).await.map_err(
                |failure| match failure {
                    StdioFailure::Refused(_) => {
                        format!("the server refused both initialize ({error}) and server/discover")
                    }
                    StdioFailure::Other(cause) => cause,
                },
            )
        }
        Err(StdioFailure::Other(cause)) => Err(cause),
        Ok(session) => Ok(session),
    }
}

enum StdioFailure {
    /// The server answered the handshake with a JSON-RPC error.
    Refused(String),
    Other(String),
}

async fn start_stdio(
    entry: &Entry,
    shared: &Shared,
    spec: &SpawnSpec<'_>,
    opening: OpeningSession,
) -> Result<Session, StdioFailure> {
    let spawned = child::spawn(&entry.name, spec).map_err(StdioFailure::Other)?;
    let stderr_tail = spawned.stderr_tail.clone();
    let noise = Arc::new(StdoutNoise::default());
    let reading = match shared.link.reads_tool_answers() {
        true => AnswerReading::UpToId,
        false => AnswerReading::Whole,
    };
    let lines = LineTransport::new(spawned.stdout, spawned.stdin, shared.max_message_bytes)
        .reading_answers(reading)
        .with_raw_results(opening.raw_results())
        .with_noise(noise.clone())
        .for_upstream(entry.name.clone());
    let lane = lines.lane();
    let transport = opening.tap(lines);
    let label = "stdio";
    let initialize = opening.initialize(entry, shared, transport, Some(spawned.guard), label, Some(lane));
    // A line of noise does not end the start; it is shown while the start goes on.
    let show_noise = async {
        let note = StdoutNoise::note(noise.first_line().await);
        shared.publish(entry, |state| state.note = Some(note));
        std::future::pending::<std::convert::Infallible>().await
    };
    let initialized = tokio::select! {
        initialized = initialize => initialized,
        never = show_noise => match never {},
    };
    match initialized {
        Ok(session) => Ok(session),
        Err((failure, child)) => {
            let mut child = child.expect("a stdio session attempt keeps its child");
            let cause = match failure {
                InitFailure::Timeout => {
                    let seconds = entry.settings.connect_timeout.as_secs();
                    StdioFailure::Other(match noise.line() {
                        Some(line) => format!(
                            "it did not finish initialize within {seconds} s; {}",
                            StdoutNoise::note(line)
                        ),
                        None => format!("it did not finish initialize within {seconds} s"),
                    })
                }
                InitFailure::Failed(error) if is_handshake_refusal(&error) => {
                    StdioFailure::Refused(remote::describe_initialize(&error))
                }
                InitFailure::Failed(error) => {
                    match tokio::time::timeout(Duration::from_millis(200), child.wait()).await {
                        Ok(exit) => {
                            // What it said before exiting is usually why (a missing key).
                            let said = stderr_tail.last_lines(Duration::from_millis(200)).await;
                            let said =
                                said.map(|lines| format!("; its stderr ends: {lines}")).unwrap_or_default();
                            StdioFailure::Other(format!("{exit} before finishing initialize{said}"))
                        }
                        Err(_) => StdioFailure::Other(format!(
                            "initialize failed: {}",
                            remote::describe_initialize(&error)
                        )),
                    }
                }
            };
            child.shutdown().await;
            Err(cause)
        }
    }
}

/// Whether the server itself refused the handshake (a JSON-RPC error, or no common
/// protocol version), as a 2026-07-28-only server refuses `initialize`.
fn is_handshake_refusal(error: &ClientInitializeError) -> bool {
    matches!(
        error,
        ClientInitializeError::JsonRpcError(_) | ClientInitializeError::NoCompatibleProtocolVersion { .. }
    )
}

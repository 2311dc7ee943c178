//! A shared upstream's session: the hub runs the server, and this session is an MCP
//! session with the hub over its Unix socket, in which the hub is that server (its
//! `initialize` names the upstream in `_meta`). The hub is started first if none
//! listens (`hub_socket::launch`).
//!
//! Everything past the socket is a stdio upstream's: the same line transport, with its
//! direct lane for tool calls. The hub answers `initialize` once the server is up there,
//! so the wait is the server's `timeout` plus the hub's own start.

use std::time::Duration;

use serde_json::Value;

use rmcp::service::ClientInitializeError;

use super::{ConnectFailure, InitFailure, OpeningSession, Session, remote_session};
use crate::{
    config::TransportSettings,
    hub_socket::launch,
    socket_halves,
    upstream::{
        entry::{Entry, Shared},
        http as remote,
        stdio::transport::LineTransport,
    },
};

/// The `_meta` key of `initialize` that names the upstream the session is for.
pub const UPSTREAM_META: &str = "foxxy-bridge/upstream";
/// The key in the `data` of the hub's error answering `initialize` when the upstream
/// waits for a sign-in there.
pub const NEEDS_SIGN_IN: &str = "needsSignIn";
/// How long a hub this bridge starts may take to accept.
const HUB_START_LIMIT: Duration = Duration::from_secs(10);
/// Waited for `initialize` beyond the server's `timeout`: the hub fails it itself when
/// the server does not start in time, and that cause is the better message.
const HUB_GRACE: Duration = Duration::from_secs(5);

pub(super) async fn connect_shared(entry: &Entry, shared: &Shared) -> Result<Session, ConnectFailure> {
    match attach(entry, shared).await {
        // The hub was exiting (idle) as this session attached: the next one starts anew.
        Err(Attach::Closed(cause)) => {
            tracing::info!(upstream = %entry.name, "{cause}; trying once more");
            attach(entry, shared).await.map_err(|failure| failure.into_connect_failure(entry, shared))
        }
        other => other.map_err(|failure| failure.into_connect_failure(entry, shared)),
    }
}

/// Why attaching to the hub failed.
enum Attach {
    /// The hub closed the connection before answering `initialize`.
    Closed(String),
    /// The upstream waits for a sign-in in the hub.
    NeedsSignIn(String),
    Other(String),
}

impl Attach {
    fn into_connect_failure(self, entry: &Entry, shared: &Shared) -> ConnectFailure {
        match self {
            Attach::Closed(cause) | Attach::Other(cause) => cause.into(),
            Attach::NeedsSignIn(cause) => {
                // Watch the token cache as for an unshared upstream: the hub picks up
                // new tokens as soon as they are written, and so does this session.
                if let TransportSettings::Remote(settings) = &entry.settings.transport {
                    let _ = remote_session::token_source(entry, shared, settings);
                }
                ConnectFailure::sign_in(cause)
            }
        }
    }
}

async fn attach(entry: &Entry, shared: &Shared) -> Result<Session, Attach> {
    let Some(address) = &shared.hub else {
        return Err(Attach::Other("it is shared, but this process has no hub to use".to_owned()));
    };
    let program = std::env::current_exe().map_err(|error| {
        Attach::Other(format!("cannot find this program's path to start the hub: {error}"))
    })?;
    let stream = launch::connect_or_start(address, &program, HUB_START_LIMIT)
        .await
        .map_err(|error| Attach::Other(format!("cannot reach the hub: {error}")))?;
    let (read, write) = socket_halves::split_tokio(stream)
        .map_err(|error| Attach::Other(format!("cannot use the hub's socket: {error}")))?;
    let opening = OpeningSession::new(entry, shared).with_limit(entry.settings.connect_timeout + HUB_GRACE);
    let lines = LineTransport::new(read, write, shared.max_message_bytes)
        .with_raw_results(opening.raw_results())
        .for_upstream(entry.name.clone());
    let lane = lines.lane();
    let mut meta = rmcp::model::RequestMetaObject::default();
    meta.0.0.insert(UPSTREAM_META.to_owned(), Value::String(entry.name.to_string()));
    let transport = opening.tap(lines).with_initialize_meta(meta);
    match opening.initialize(entry, shared, transport, None, "shared", Some(lane)).await {
        Ok(session) => Ok(session),
        Err((InitFailure::Timeout, _)) => {
            let seconds = (entry.settings.connect_timeout + HUB_GRACE).as_secs();
            Err(Attach::Other(format!("the hub did not finish initialize within {seconds} s")))
        }
        Err((InitFailure::Failed(error), _)) => {
            let cause = format!("in the hub: {}", remote::describe_initialize(&error));
            Err(match *error {
                ClientInitializeError::ConnectionClosed(_) => Attach::Closed(cause),
                ClientInitializeError::JsonRpcError(ref refused)
                    if refused.data.as_ref().and_then(|data| data.get(NEEDS_SIGN_IN)).is_some() =>
                {
                    Attach::NeedsSignIn(cause)
                }
                _ => Attach::Other(cause),
            })
        }
    }
}

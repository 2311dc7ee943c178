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

use super::{ConnectFailure, InitFailure, OpeningSession, Session};
use crate::{
    hub_socket::launch,
    upstream::{
        entry::{Entry, Shared},
        http as remote,
        stdio::transport::LineTransport,
    },
};

/// The `_meta` key of `initialize` that names the upstream the session is for.
pub const UPSTREAM_META: &str = "foxxy-bridge/upstream";
/// How long a hub this bridge starts may take to accept.
const HUB_START_LIMIT: Duration = Duration::from_secs(10);
/// Waited for `initialize` beyond the server's `timeout`: the hub fails it itself when
/// the server does not start in time, and that cause is the better message.
const HUB_GRACE: Duration = Duration::from_secs(5);

pub(super) async fn connect_shared(entry: &Entry, shared: &Shared) -> Result<Session, ConnectFailure> {
    let Some(address) = &shared.hub else {
        return Err("it is shared, but this process has no hub to use".to_owned().into());
    };
    let program = std::env::current_exe()
        .map_err(|error| format!("cannot find this program's path to start the hub: {error}"))?;
    let stream = launch::connect_or_start(address, &program, HUB_START_LIMIT)
        .await
        .map_err(|error| format!("cannot reach the hub: {error}"))?;
    let (read, write) = stream.into_split();
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
            Err(format!("the hub did not finish initialize within {seconds} s").into())
        }
        Err((InitFailure::Failed(error), _)) => {
            Err(format!("in the hub: {}", remote::describe_initialize(&error)).into())
        }
    }
}

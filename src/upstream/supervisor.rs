//! The life of one upstream: connect, list, serve, notice the end, back off, retry.
//!
//! One supervisor task per enabled upstream owns that upstream's session and child
//! process. It is the only writer of the upstream's entry in the [`View`](super::View)
//! and of its current [`Connection`]. It stops when its cancellation token fires, and
//! then ends the session and the child before returning.

use std::{sync::Arc, time::Duration};

use rmcp::{
    RoleClient, ServiceExt,
    model::{LoggingLevel, SetLevelRequest, SetLevelRequestParams, SubscribeRequest, SubscribeRequestParams},
    service::RunningService,
    transport::async_rw::AsyncRwTransport,
};
use tokio_util::sync::CancellationToken;

use super::{
    RequestOptions, Status, UpstreamCatalog,
    child::{self, ChildGuard, SpawnSpec},
    connection::{self, Connection, UpstreamHandler},
    set::{Entry, Shared},
    tap::TapTransport,
};
use crate::config::TransportSettings;

/// The longest pause between two connection attempts while not yet marked failed.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// How long closing an rmcp session may take before the child is ended anyway.
const CLOSE_LIMIT: Duration = Duration::from_millis(300);

/// A live session and what it owns.
struct Session {
    service: RunningService<RoleClient, UpstreamHandler>,
    connection: Arc<Connection>,
    /// Fires when the upstream closed its side of the transport.
    closed: CancellationToken,
    child: Option<ChildGuard>,
    forwarder: tokio::task::JoinHandle<()>,
}

/// Run the supervisor loop of `entry` until `entry.cancel` fires.
pub async fn run(entry: Arc<Entry>, shared: Arc<Shared>) {
    let settings = &entry.settings;
    let mut failures: u32 = 0;
    loop {
        if entry.cancel.is_cancelled() {
            break;
        }
        shared.publish(&entry.name, |state| state.status = Status::Connecting);
        let attempt = {
            let _permit = shared.start_permits.acquire().await;
            tokio::select! {
                attempt = connect_and_list(&entry, &shared) => Some(attempt),
                () = entry.cancel.cancelled() => None,
            }
        };
        let Some(attempt) = attempt else { break };
        match attempt {
            Ok((mut session, catalog)) => {
                if failures > 0 {
                    tracing::info!(upstream = %entry.name, "upstream is back");
                }
                tracing::info!(
                    upstream = %entry.name,
                    tools = catalog.tools.len(),
                    prompts = catalog.prompts.len(),
                    resources = catalog.resources.len(),
                    "upstream ready"
                );
                entry.set_connection(Some(session.connection.clone()));
                shared.publish(&entry.name, |state| {
                    state.status = Status::Ready;
                    state.settled = true;
                    state.catalog = Some(Arc::new(catalog));
                });
                entry.attempt_finished();
                restore_session_state(&entry, &shared, &session.connection).await;
                let cause = serve(&entry, &shared, &mut session).await;
                entry.set_connection(None);
                close(&mut session).await;
                let Some(cause) = cause else { break };
                tracing::warn!(upstream = %entry.name, "upstream disconnected: {cause}");
                // The count restarts with this session's end as its first failure.
                failures = 1;
                shared.publish(&entry.name, |state| state.status = Status::Retrying(cause.clone()));
            }
            Err(cause) => {
                failures += 1;
                let failed = failures >= settings.retry_attempts.max(1);
                tracing::warn!(
                    upstream = %entry.name,
                    attempt = failures,
                    "upstream failed to start: {cause}"
                );
                shared.publish(&entry.name, |state| {
                    state.settled = true;
                    state.status =
                        if failed { Status::Failed(cause.clone()) } else { Status::Retrying(cause.clone()) };
                });
                if failed && failures == settings.retry_attempts.max(1) {
                    tracing::error!(
                        upstream = %entry.name,
                        "upstream marked failed after {failures} attempts; retrying every {} s or when a tool of it is called",
                        shared.recovery_interval.as_secs()
                    );
                }
                entry.attempt_finished();
            }
        }
        let delay =
            retry_delay(settings.retry_delay, failures, settings.retry_attempts, shared.recovery_interval);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = entry.reconnect.notified() => {
                tracing::info!(upstream = %entry.name, "reconnecting now because a request needs it");
            }
            () = entry.cancel.cancelled() => break,
        }
    }
    entry.set_connection(None);
    entry.attempt_finished();
}

/// Backoff before the next attempt: `retryDelay` doubling per consecutive failure,
/// capped at 30 s; once marked failed, the failover recovery interval.
pub fn retry_delay(first: Duration, failures: u32, retry_attempts: u32, recovery: Duration) -> Duration {
    if failures >= retry_attempts.max(1) {
        return recovery;
    }
    let doublings = failures.saturating_sub(1).min(16);
    first.saturating_mul(1 << doublings).min(MAX_RETRY_DELAY)
}

/// Serve a ready session until it ends; `None` when it ended because we were cancelled,
/// else the cause of the disconnect.
async fn serve(entry: &Entry, shared: &Shared, session: &mut Session) -> Option<String> {
    loop {
        let child_exit = async {
            match session.child.as_mut() {
                Some(child) => child.wait().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = entry.cancel.cancelled() => return None,
            status = child_exit => return Some(status),
            () = session.closed.cancelled() => return Some("the upstream closed the connection".to_owned()),
            () = entry.lists_changed.notified() => {
                match list_catalog(&session.connection, entry.settings.connect_timeout).await {
                    Ok(catalog) => shared.publish(&entry.name, |state| state.catalog = Some(Arc::new(catalog))),
                    Err(error) => tracing::warn!(upstream = %entry.name, "re-listing after list_changed failed: {error}"),
                }
            }
        }
    }
}

async fn close(session: &mut Session) {
    session.forwarder.abort();
    let _ = tokio::time::timeout(CLOSE_LIMIT, session.service.close()).await;
    if let Some(child) = session.child.as_mut() {
        child.shutdown().await;
    }
}

/// Re-apply what the client set on the previous session: log level, subscriptions.
async fn restore_session_state(entry: &Entry, shared: &Shared, connection: &Connection) {
    let capabilities =
        connection.peer().peer_info().map(|info| info.capabilities.clone()).unwrap_or_default();
    if let Some(level) = shared.log_level()
        && capabilities.logging.is_some()
    {
        set_level(connection, level).await;
    }
    if capabilities.resources.as_ref().and_then(|resources| resources.subscribe).unwrap_or(false) {
        for uri in entry.subscriptions() {
            let request = SubscribeRequest::new(SubscribeRequestParams::new(uri.clone()));
            if let Err(error) = connection
                .request(rmcp::model::ClientRequest::SubscribeRequest(request), RequestOptions::default())
                .await
            {
                tracing::warn!(upstream = %entry.name, %uri, "could not restore a subscription: {error}");
            }
        }
    }
}

pub async fn set_level(connection: &Connection, level: LoggingLevel) {
    let request = SetLevelRequest::new(SetLevelRequestParams::new(level));
    if let Err(error) = connection
        .request(rmcp::model::ClientRequest::SetLevelRequest(request), RequestOptions::default())
        .await
    {
        tracing::debug!("upstream rejected logging/setLevel: {error}");
    }
}

async fn connect_and_list(
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
    let parts = connection::session_parts(
        entry.name.clone(),
        shared.link.clone(),
        entry.lists_changed.clone(),
        entry.settings.request_timeout,
    );
    let closed = CancellationToken::new();
    let timeout = entry.settings.connect_timeout;
    let (transport, mut child) = match &entry.settings.transport {
        TransportSettings::Stdio { command, args, env, cwd } => {
            let spec = SpawnSpec { command, args, env, cwd: cwd.as_ref() };
            let spawned = child::spawn(&entry.name, &spec)?;
            let transport = AsyncRwTransport::new_client(spawned.stdout, spawned.stdin)
                .with_max_line_length(shared.max_message_bytes);
            (TapTransport::new(transport, parts.tapped_tx.clone(), closed.clone()), Some(spawned.guard))
        }
        TransportSettings::Remote(_) => {
            return Err("remote upstreams are not supported yet".to_owned());
        }
    };
    let serve = parts.handler.serve_with_ct(transport, entry.cancel.child_token());
    let service = match tokio::time::timeout(timeout, serve).await {
        Ok(Ok(service)) => service,
        Ok(Err(error)) => {
            let cause = match child.as_mut() {
                Some(child) => match tokio::time::timeout(Duration::from_millis(200), child.wait()).await {
                    Ok(exit) => format!("{exit} before finishing initialize"),
                    Err(_) => format!("initialize failed: {error}"),
                },
                None => format!("initialize failed: {error}"),
            };
            if let Some(child) = child.as_mut() {
                child.shutdown().await;
            }
            return Err(cause);
        }
        Err(_) => {
            if let Some(child) = child.as_mut() {
                child.shutdown().await;
            }
            return Err(format!("it did not finish initialize within {} s", timeout.as_secs()));
        }
    };
    let routes = parts.connection_parts.routes.clone();
    let connection =
        Arc::new(parts.connection_parts.into_connection(service.peer().clone(), parts.tapped_tx));
    let forwarder = tokio::spawn(connection::forward_tapped(
        entry.name.clone(),
        shared.link.clone(),
        routes,
        parts.tapped_rx,
    ));
    Ok(Session { service, connection, closed, child, forwarder })
}

/// List everything the upstream offers, per its declared capabilities.
async fn list_catalog(connection: &Connection, timeout: Duration) -> Result<UpstreamCatalog, String> {
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
        Ok(result) => result.map_err(|error| error.to_string()),
        Err(_) => Err(format!("listing did not finish within {} s", timeout.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(failures: u32, expected_ms: u64) {
        let delay = retry_delay(Duration::from_millis(1000), failures, 3, Duration::from_secs(60));
        assert_eq!(delay, Duration::from_millis(expected_ms), "failures = {failures}");
    }

    #[test]
    fn backoff_doubles_then_waits_for_recovery() {
        check(0, 1000);
        check(1, 1000);
        check(2, 2000);
        check(3, 60_000);
        check(7, 60_000);
    }

    #[test]
    fn backoff_is_capped() {
        let delay = retry_delay(Duration::from_secs(20), 5, 10, Duration::from_secs(60));
        assert_eq!(delay, MAX_RETRY_DELAY);
    }
}

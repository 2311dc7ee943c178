//! The life of one upstream: connect, list, serve, notice the end, back off, retry.
//!
//! One supervisor task per enabled upstream owns that upstream's session and child
//! process. It is the only writer of the upstream's entry in the [`View`](super::View)
//! and of its current [`Connection`]. It stops when its cancellation token fires, and
//! then ends the session and the child before returning.

use std::{sync::Arc, time::Duration};

use rmcp::model::{
    ClientRequest, LoggingLevel, PingRequest, SetLevelRequest, SetLevelRequestParams, SubscribeRequest,
    SubscribeRequestParams,
};

use super::{
    RequestOptions, Status,
    connection::Connection,
    entry::{Entry, Shared},
    session::{self, Session},
};

/// The longest pause between two connection attempts while not yet marked failed.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Run the supervisor loop of `entry` until `entry.cancel` fires.
pub async fn run(entry: Arc<Entry>, shared: Arc<Shared>) {
    let settings = &entry.settings;
    let mut failures: u32 = 0;
    // Set while the upstream waits for a sign-in: the attempt that follows keeps showing
    // that state, so the client sees the sign-in placeholder replaced by the real tools
    // in one change rather than vanish first.
    let mut after_sign_in = false;
    // In stdio mode upstreams start once the client's `initialize` is answered, so
    // spawning them does not delay that answer.
    tokio::select! {
        () = shared.go.cancelled() => {}
        () = entry.cancel.cancelled() => return,
    }
    loop {
        if entry.cancel.is_cancelled() {
            break;
        }
        if !std::mem::take(&mut after_sign_in) {
            shared.publish(&entry, |state| {
                state.status = Status::Connecting;
                state.note = None;
            });
        }
        tracing::debug!(upstream = %entry.name, failures, "connecting");
        entry.attempt_started();
        let attempt = {
            let _permit = shared.start_permits.acquire().await;
            tokio::select! {
                attempt = session::connect_and_list(&entry, &shared) => Some(attempt),
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
                shared.publish(&entry, |state| {
                    state.transport = session.transport;
                    state.pid = session.child.as_ref().and_then(|child| child.pid());
                    state.status = Status::Ready;
                    state.note = None;
                    state.settled = true;
                    state.catalog = Some(Arc::new(catalog));
                });
                entry.attempt_finished();
                restore_session_state(&entry, &shared, &session.connection).await;
                let cause = serve(&entry, &shared, &mut session).await;
                entry.set_connection(None);
                session::close(&mut session).await;
                let Some(cause) = cause else { break };
                tracing::warn!(upstream = %entry.name, "upstream disconnected: {cause}");
                // The count restarts with this session's end as its first failure.
                failures = 1;
                shared.publish(&entry, |state| {
                    state.status = Status::Retrying(cause.clone());
                    state.pid = None;
                });
            }
            Err(failure) if failure.needs_sign_in => {
                let cause = failure.cause;
                tracing::warn!(upstream = %entry.name, "upstream is waiting for a sign-in: {cause}");
                shared.publish(&entry, |state| {
                    state.settled = true;
                    state.status = Status::NeedsSignIn(cause.clone());
                });
                entry.attempt_failed(&cause);
                entry.attempt_finished();
                if !wait_for_tokens(&entry).await {
                    break;
                }
                after_sign_in = true;
                continue;
            }
            Err(failure) => {
                let cause = failure.cause;
                failures += 1;
                let failed = failures >= settings.retry_attempts.max(1);
                tracing::warn!(
                    upstream = %entry.name,
                    attempt = failures,
                    "upstream failed to start: {cause}"
                );
                shared.publish(&entry, |state| {
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
                entry.attempt_failed(&cause);
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

/// Wait until tokens for `entry` are written (by `oauth login` in a shell, or another
/// bridge), or a request asks for the upstream; `false` when the upstream stops.
async fn wait_for_tokens(entry: &Entry) -> bool {
    let source = entry.tokens.get().cloned().flatten();
    let baseline = match &source {
        Some(source) => source.stamp().await,
        None => None,
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(TOKEN_POLL) => {
                let stamp = match &source {
                    Some(source) => source.stamp().await,
                    None => None,
                };
                if stamp != baseline {
                    tracing::info!(upstream = %entry.name, "new OAuth tokens appeared; connecting");
                    return true;
                }
            }
            () = entry.reconnect.notified() => return true,
            () = entry.cancel.cancelled() => return false,
        }
    }
}

/// How often an upstream that needs a sign-in looks for new tokens.
const TOKEN_POLL: Duration = Duration::from_secs(1);

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
    let health = entry.settings.health_check;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + health.interval, health.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failed_pings = 0u32;
    // An OAuth upstream's session ends when the user signs out (`oauth logout`): the next
    // attempt then waits for a sign-in instead of failing every call.
    let tokens = entry.tokens.get().cloned().flatten();
    let mut token_checks = tokio::time::interval(TOKEN_POLL);
    token_checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
            () = session.closed.cancelled() => return Some("the connection to the upstream was lost".to_owned()),
            _ = token_checks.tick(), if tokens.is_some() => {
                if let Some(tokens) = &tokens
                    && tokens.signed_out().await
                {
                    return Some("signed out with `foxxy-bridge oauth logout`".to_owned());
                }
            }
            _ = ticks.tick(), if health.enabled => {
                match ping(&session.connection, health.timeout).await {
                    Ok(()) => failed_pings = 0,
                    Err(error) => {
                        failed_pings += 1;
                        tracing::debug!(upstream = %entry.name, failed_pings, "health check failed: {error}");
                        if shared.failover.enabled && failed_pings >= shared.failover.max_failures.max(1) {
                            return Some(format!("{failed_pings} health checks in a row failed (last: {error})"));
                        }
                    }
                }
            }
            () = entry.lists_changed.notified() => {
                // Raced against the session's end: a bridge that stops (or a session
                // that drops) while listing is not a listing failure.
                let listing = session::list_catalog(&session.connection, entry.settings.connect_timeout);
                tokio::select! {
                    listed = listing => match listed {
                        Ok(catalog) => shared.publish(entry, |state| state.catalog = Some(Arc::new(catalog))),
                        Err(_) if entry.cancel.is_cancelled() || session.closed.is_cancelled() => {}
                        Err(error) => tracing::warn!(upstream = %entry.name, "re-listing after list_changed failed: {error}"),
                    },
                    () = entry.cancel.cancelled() => return None,
                    () = session.closed.cancelled() => return Some("the connection to the upstream was lost".to_owned()),
                }
            }
        }
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

/// One `ping`, bounded by `timeout`.
async fn ping(connection: &Connection, timeout: std::time::Duration) -> Result<(), String> {
    let request = ClientRequest::PingRequest(PingRequest::default());
    match tokio::time::timeout(timeout, connection.request(request, RequestOptions::default())).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
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

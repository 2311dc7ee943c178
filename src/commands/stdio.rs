//! `foxxy-bridge stdio`: serve MCP on stdin/stdout until the client goes away.
//!
//! Shutdown is bounded: when stdin closes or SIGTERM/SIGINT/SIGHUP arrives, every
//! upstream is ended (children included) and the process exits, without waiting for
//! work still in flight.
//!
//! The order: load the settings (a broken config is the one thing written to stderr: there
//! is no session to report it in), start logging, build the `Bridge`, serve rmcp over the
//! downstream transport (`proxy::stdio`), and let the upstreams start (`Bridge::begin`)
//! only once `initialize` is answered, so spawning them never delays that answer.
//!
//! With `bridge.configReload`, each settled edit of the file arrives loaded
//! (`config::watch`): a valid one is narrowed again by this process's `--servers`, `--tags`
//! and `--tool-mode` and applied with `Bridge::reconfigure`, which restarts only the
//! upstreams whose settings changed; an invalid one is logged with every problem, and the
//! running config stays.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use rmcp::ServiceExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::{Context, Outcome, selection::Narrowing};
use crate::{
    config::{self, Settings},
    output,
    proxy::{Bridge, BridgeService, InstructionsStore, stdio},
};

/// How long the MCP session may take to flush its last messages on the way out.
const CLOSE_LIMIT: Duration = Duration::from_millis(300);

pub async fn run(context: &Context, narrowing: &Narrowing) -> anyhow::Result<Outcome> {
    // A broken config is the one thing reported on stderr: the client shows it to the
    // user, and there is no session to report it in.
    let settings = match context.load_settings() {
        Ok(settings) => Arc::new(narrowing.apply(&settings)?),
        Err(error) => {
            output::error_line(format_args!("foxxy-bridge: {error:#}"));
            return Ok(Outcome::Failure);
        }
    };
    let _log = context.start_logging(Some(&settings), true);
    tracing::info!(config = %settings.source.display(), "starting stdio bridge");
    let bridge = Arc::new(Bridge::start(
        settings.clone(),
        context.sign_in_context(&settings)?,
        context.hub_address(&settings),
    ));
    bridge.remember_instructions(InstructionsStore::new(context.paths.instructions_dir()));
    let stop = CancellationToken::new();
    let stdin_closed = CancellationToken::new();
    spawn_signal_watch(stop.clone())?;

    if settings.bridge.config_reload.enabled {
        spawn_reload(bridge.clone(), &settings, narrowing, stop.clone());
    }
    let transport =
        stdio::stdio(settings.bridge.max_message_bytes, stdin_closed.clone(), Some(bridge.clone()));
    // Held until this function returns, whichever way, `?` included.
    let _blocking_on_exit = stdio::RestoreOnDrop;
    let serve = BridgeService(bridge.clone()).serve_with_ct(transport, stop.child_token());
    let service = tokio::select! {
        service = serve => Some(service.context("the MCP session could not start")?),
        () = stdin_closed.cancelled() => None,
        () = stop.cancelled() => None,
    };
    // `initialize` is answered: now the upstreams may start.
    bridge.begin();
    if let Some(mut service) = service {
        tokio::select! {
            _ = stdin_closed.cancelled() => tracing::info!("client closed stdin"),
            _ = stop.cancelled() => {}
        }
        bridge.shutdown().await;
        let _ = service.close_with_timeout(CLOSE_LIMIT).await;
    } else {
        bridge.shutdown().await;
    }
    tracing::info!("stdio bridge stopped");
    Ok(Outcome::Success)
}

/// Apply config edits while serving: a valid change, narrowed again by this process's
/// selection, reconfigures the bridge.
fn spawn_reload(bridge: Arc<Bridge>, settings: &Settings, narrowing: &Narrowing, stop: CancellationToken) {
    let narrowing = narrowing.clone();
    config::watch::apply_edits(settings, "bridge", stop, move |settings| {
        let (bridge, narrowing) = (bridge.clone(), narrowing.clone());
        async move { bridge.reconfigure(Arc::new(narrowing.apply_to_reload(&settings))).await }
    });
}

/// Cancel `stop` on SIGTERM, SIGINT or SIGHUP.
pub(super) fn spawn_signal_watch(stop: CancellationToken) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
            _ = hangup.recv() => "SIGHUP",
        };
        tracing::info!("{name} received, shutting down");
        stop.cancel();
    });
    Ok(())
}

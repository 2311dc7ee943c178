//! `foxxy-bridge hub status|stop`: this user's running hubs, found by their sockets in the
//! state root's `run/` and asked over them; `hub serve` is `hub_serve`.
//!
//! A socket file nobody accepts on is left by a hub that died: it is skipped (the next
//! hub of that config replaces it). A socket whose hub accepts but does not answer in
//! time is a warning.

use std::{
    io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{Context, Outcome};
use crate::{
    cli::HubCommand,
    hub_socket::{self, HubStatus, query_status, request_stop, socket::no_hub_listens},
    output,
};

/// How long a hub has to answer a control request.
const ANSWER_LIMIT: Duration = Duration::from_secs(2);
/// How long `stop` waits for a hub to close its socket once it agreed to stop.
const STOP_WAIT: Duration = Duration::from_secs(5);
const STOP_POLL: Duration = Duration::from_millis(50);

pub async fn run(context: &Context, command: HubCommand) -> anyhow::Result<Outcome> {
    match command {
        HubCommand::Serve => super::hub_serve::run(context).await,
        HubCommand::Status { json } => status(context, json).await,
        HubCommand::Stop => stop(context).await,
    }
}

/// What was found on one socket.
enum Found {
    Running(HubStatus),
    /// Nobody accepts on it: its hub is gone.
    Stale,
    /// Accepted, but no usable answer in time.
    Unanswered(io::Error),
}

/// Every `hub-*.sock` in the run directory, asked for its status (all at once).
async fn survey(run_dir: &Path) -> anyhow::Result<Vec<(PathBuf, Found)>> {
    let sockets = sockets(run_dir)?;
    let answers =
        futures::future::join_all(sockets.iter().map(|socket| query_status(socket, ANSWER_LIMIT))).await;
    let found = sockets
        .into_iter()
        .zip(answers)
        .map(|(socket, answer)| {
            let found = match answer {
                Ok(status) => Found::Running(status),
                Err(error) if no_hub_listens(&error) => Found::Stale,
                Err(error) => Found::Unanswered(error),
            };
            (socket, found)
        })
        .collect();
    Ok(found)
}

/// The hub sockets in `run_dir`, sorted; none when it does not exist.
fn sockets(run_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(run_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("cannot list `{}`", run_dir.display())),
    };
    let mut sockets: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("hub-") && name.ends_with(".sock"))
        })
        .collect();
    sockets.sort();
    Ok(sockets)
}

async fn status(context: &Context, json: bool) -> anyhow::Result<Outcome> {
    let mut running = Vec::new();
    for (_, found) in survey(&context.paths.run_dir()).await? {
        match found {
            Found::Running(status) => running.push(status),
            Found::Stale => {}
            Found::Unanswered(error) => output::error_line(format_args!("warning: {error}")),
        }
    }
    if json {
        output::line(serde_json::to_string_pretty(&running)?);
        return Ok(Outcome::Success);
    }
    if running.is_empty() {
        output::line("no hub is running");
        return Ok(Outcome::Success);
    }
    let mut rows = Vec::new();
    for hub in &running {
        let bridges = match hub.bridges {
            1 => "1 bridge".to_owned(),
            count => format!("{count} bridges"),
        };
        rows.push(vec![
            hub.socket.display().to_string(),
            hub.pid.to_string(),
            bridges,
            hub.config.display().to_string(),
        ]);
        for upstream in &hub.upstreams {
            let pid = upstream.pid.map_or_else(|| "-".to_owned(), |pid| pid.to_string());
            rows.push(vec![format!("  {}", upstream.name), pid, upstream.status.clone(), String::new()]);
        }
    }
    output::raw(&output::table(&["Hub / upstream", "Pid", "Status", "Config"], &rows));
    Ok(Outcome::Success)
}

async fn stop(context: &Context) -> anyhow::Result<Outcome> {
    let mut running = Vec::new();
    let mut outcome = Outcome::Success;
    for (_, found) in survey(&context.paths.run_dir()).await? {
        match found {
            Found::Running(status) => running.push(status),
            Found::Stale => {}
            Found::Unanswered(error) => {
                output::error_line(format_args!("error: {error}"));
                outcome = Outcome::Failure;
            }
        }
    }
    if running.is_empty() && outcome == Outcome::Success {
        output::line("no hub is running");
        return Ok(outcome);
    }
    let results = futures::future::join_all(running.iter().map(|hub| stop_one(&hub.socket))).await;
    for (hub, result) in running.iter().zip(results) {
        match result {
            Ok(()) => {
                output::line(format_args!("stopped the hub of `{}` (pid {})", hub.config.display(), hub.pid))
            }
            Err(error) => {
                output::error_line(format_args!(
                    "error: the hub of `{}` (pid {}): {error}",
                    hub.config.display(),
                    hub.pid
                ));
                outcome = Outcome::Failure;
            }
        }
    }
    Ok(outcome)
}

/// Ask the hub on `socket` to stop, then wait until nobody accepts there any more.
async fn stop_one(socket: &Path) -> io::Result<()> {
    request_stop(socket, ANSWER_LIMIT).await?;
    let deadline = Instant::now() + STOP_WAIT;
    loop {
        match hub_socket::connect(socket).await {
            Err(error) if no_hub_listens(&error) => return Ok(()),
            Err(error) => return Err(error),
            Ok(_still_listening) => {}
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "it agreed to stop but still listens on `{}` after {} s",
                    socket.display(),
                    STOP_WAIT.as_secs()
                ),
            ));
        }
        tokio::time::sleep(STOP_POLL).await;
    }
}

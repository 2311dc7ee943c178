//! Watching the config file for hot reload (`bridge.configReload`).
//!
//! The file's directory is watched (editors often save by writing a new file and
//! renaming it over the old one, which a watch on the file itself would miss). Changes
//! are debounced: a burst of events within `debounce` is one reload. Each reload is
//! delivered as the result of loading the file again, so an invalid edit arrives as a
//! [`ConfigError`] with every problem, and the caller keeps the config it runs.
//!
//! [`apply_edits`] is how its users take them: the `stdio` command applies a valid reload
//! with `Bridge::reconfigure`, which restarts only the upstreams whose settings changed,
//! and the hub applies it to the shared upstreams it runs.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ConfigError, Settings, load};

/// A running watch; dropping it stops watching.
pub struct ConfigWatch {
    _watcher: notify::RecommendedWatcher,
    /// Each settled change to the file, loaded.
    pub changes: mpsc::Receiver<Result<Settings, ConfigError>>,
}

/// Watch `path` and deliver it, reloaded, after each settled change.
pub fn watch(path: &Path, debounce: Duration) -> notify::Result<ConfigWatch> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let directory = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let file_name = path.file_name().map(|name| name.to_os_string());
    let (events_tx, mut events) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        tracing::trace!(?event, "config directory event");
        let ours = event.paths.iter().any(|changed| changed.file_name() == file_name.as_deref());
        if ours && !event.kind.is_access() {
            let _ = events_tx.send(());
        }
    })?;
    watcher.watch(&directory, RecursiveMode::NonRecursive)?;
    let (changes_tx, changes) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut last = std::fs::read(&path).ok();
        while events.recv().await.is_some() {
            // Wait until the file has been quiet for `debounce`.
            loop {
                match tokio::time::timeout(debounce, events.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let current = std::fs::read(&path).ok();
            if current.is_none() || current == last {
                continue;
            }
            last = current;
            if changes_tx.send(load(&path)).await.is_err() {
                return;
            }
        }
    });
    Ok(ConfigWatch { _watcher: watcher, changes })
}

/// Watch the file of `settings` and hand each valid settled edit to `apply`, until `stop`;
/// an invalid edit is logged with every problem, and the running config stays. A file
/// that cannot be watched is logged: its edits then need a restart of `who`.
pub fn apply_edits<F, Fut>(settings: &Settings, who: &'static str, stop: CancellationToken, apply: F)
where
    F: Fn(Settings) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let path = settings.source.clone();
    let watch = match watch(&path, settings.bridge.config_reload.debounce) {
        Ok(watch) => watch,
        Err(error) => {
            tracing::warn!(config = %path.display(), "cannot watch the config file; edits need a restart of the {who}: {error}");
            return;
        }
    };
    tokio::spawn(async move {
        // Own the whole watch (not just its channel): dropping it stops watching.
        let mut watch = watch;
        loop {
            let change = tokio::select! {
                change = watch.changes.recv() => change,
                () = stop.cancelled() => None,
            };
            match change {
                None => break,
                Some(Ok(settings)) => {
                    tracing::info!(config = %path.display(), "config changed; applying it");
                    apply(settings).await;
                }
                Some(Err(error)) => {
                    tracing::error!(config = %path.display(), "config change rejected, the running config stays:\n{error}");
                }
            }
        }
    });
}

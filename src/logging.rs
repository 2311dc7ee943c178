//! Logging to a file, never to stdout (which belongs to MCP in `stdio` mode).
//!
//! Lines go to `<state>/logs/foxxy-bridge.<date>.log`, rotated daily, seven kept, with
//! `foxxy-bridge.log` a symlink to the current file. Writing is non-blocking and lossy
//! under pressure: a burst of logs can never stall the proxy. Every line carries the
//! process id, since several bridges of one client share the file. The returned guard
//! flushes what is queued when dropped: keep it until the process ends.

use std::path::Path;

use tracing::Level;
use tracing_appender::{non_blocking::WorkerGuard, rolling};
use tracing_subscriber::{
    filter::Targets,
    fmt::{format::Writer, time::FormatTime},
    layer::SubscriberExt,
};

/// Keeps the log writer alive; dropping it flushes.
#[must_use = "dropping the guard stops logging"]
pub struct LogGuard {
    _worker: WorkerGuard,
}

/// Timestamps followed by the process id, e.g. `2026-11-27T10:00:00.123456Z [4242]`.
struct TimeAndPid {
    pid: u32,
}

impl FormatTime for TimeAndPid {
    fn format_time(&self, writer: &mut Writer<'_>) -> std::fmt::Result {
        tracing_subscriber::fmt::time::SystemTime.format_time(writer)?;
        write!(writer, " [{}]", self.pid)
    }
}

/// Start logging into `logs_dir` at `level` (a level name or `target=level` directives).
/// Errors (e.g. an unwritable directory) are returned, not printed.
pub fn init(logs_dir: &Path, level: &str) -> std::io::Result<LogGuard> {
    std::fs::create_dir_all(logs_dir)?;
    let appender = rolling::Builder::new()
        .rotation(rolling::Rotation::DAILY)
        .filename_prefix("foxxy-bridge")
        .filename_suffix("log")
        .max_log_files(7)
        .build(logs_dir)
        .map_err(std::io::Error::other)?;
    point_latest_link(logs_dir);
    let (writer, worker) =
        // The queue's slots are allocated up front: tracing-appender's default of 128,000
        // lines costs 4 MB of resident memory per process and milliseconds at start. A few
        // thousand lines absorb any burst the bridge makes; beyond that, lines are dropped.
        tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(4096)
            .finish(appender);
    let filter = filter_for(level);
    let subscriber = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_target(true)
        .with_timer(TimeAndPid { pid: std::process::id() })
        .finish()
        .with(filter);
    tracing::subscriber::set_global_default(subscriber).map_err(std::io::Error::other)?;
    Ok(LogGuard { _worker: worker })
}

/// Make `foxxy-bridge.log` a symlink to today's file. Many bridges start at once, so
/// the link is made under a private name and renamed into place (atomic); failing to
/// make it only costs the convenience name. (tracing-appender's own `latest_symlink`
/// fails the whole start when another process created the link first.)
fn point_latest_link(logs_dir: &Path) {
    let today = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let target = format!("foxxy-bridge.{}.log", &today[..10]);
    let temporary = logs_dir.join(format!(".foxxy-bridge.log.{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    if std::os::unix::fs::symlink(&target, &temporary).is_ok()
        && std::fs::rename(&temporary, logs_dir.join("foxxy-bridge.log")).is_err()
    {
        let _ = std::fs::remove_file(&temporary);
    }
}

/// A bare level applies to the bridge and the crates it uses alike; anything else is
/// taken as a list of `target=level` directives (`foxxy_bridge=debug,rmcp=info`). rmcp
/// logs every message at info, so it is kept at warn unless asked for. (tracing's
/// `Targets` rather than `EnvFilter`: the latter compiles regular expressions at start,
/// which costs start-up time and resident memory in every bridge process.)
fn filter_for(level: &str) -> Targets {
    let level = level.trim().to_ascii_lowercase();
    let directive = match level.as_str() {
        "trace" | "debug" => format!("{level},hyper=info,reqwest=info,h2=info"),
        "info" | "warn" | "error" | "off" => format!("{level},rmcp=warn"),
        _ => level,
    };
    directive
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(Level::INFO).with_target("rmcp", Level::WARN))
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::filter_for;

    #[test]
    fn levels_and_directives_become_filters() {
        let check = |given: &str, target: &str, level: Level, enabled: bool| {
            assert_eq!(
                filter_for(given).would_enable(target, &level),
                enabled,
                "{given}: {target} at {level}"
            );
        };
        check("info", "foxxy_bridge::proxy", Level::INFO, true);
        check("info", "foxxy_bridge::proxy", Level::DEBUG, false);
        check("info", "rmcp::service", Level::INFO, false);
        check("info", "rmcp::service", Level::WARN, true);
        check(" DEBUG ", "foxxy_bridge", Level::DEBUG, true);
        check("debug", "hyper::client", Level::DEBUG, false);
        check("debug", "rmcp::service", Level::DEBUG, true);
        check("off", "foxxy_bridge", Level::ERROR, false);
        check("foxxy_bridge=debug", "foxxy_bridge::upstream", Level::DEBUG, true);
        check("foxxy_bridge=debug", "rmcp", Level::ERROR, false);
        check("warn,foxxy_bridge::oauth=trace", "foxxy_bridge::oauth::flow", Level::TRACE, true);
        check("warn,foxxy_bridge::oauth=trace", "foxxy_bridge::proxy", Level::INFO, false);
        // Not a filter: the default.
        check("foxxy_bridge=loud", "foxxy_bridge", Level::INFO, true);
        check("foxxy_bridge=loud", "foxxy_bridge", Level::DEBUG, false);
        check("foxxy_bridge=loud", "rmcp", Level::INFO, false);
    }
}

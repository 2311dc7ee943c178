//! Logging to a file, never to stdout (which belongs to MCP in `stdio` mode).
//!
//! Lines go to `<state>/logs/foxxy-bridge.<date>.log`, rotated daily, seven kept, with
//! `foxxy-bridge.log` a symlink to the current file. Writing is non-blocking and lossy
//! under pressure: a burst of logs can never stall the proxy. Every line carries the
//! process id, since several bridges of one client share the file, and the hub's lines
//! also the tag `hub` ([`tag_process`]). The returned guard
//! flushes what is queued when dropped: keep it until the process ends.
//!
//! The log holds sign-in URLs and upstreams' stderr, so the directory is 0700 and every
//! file 0600: each day's file is created with that mode before the appender opens it
//! (`PrivateFiles`), and files an earlier version left readable are fixed at start.
//! rmcp's OAuth module logs authorization codes and token responses at debug, so its
//! target is capped at info whatever level is asked for (`SECRET_TARGETS`).
//!
//! Filters are tracing's `Targets` (`target=level` directives), not `EnvFilter`, whose
//! regular expressions cost start-up time and memory in every process. A bare level keeps
//! rmcp at warn, because rmcp logs every message at info. Where the directory is belongs to
//! `paths.rs`.

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use tracing::{Level, level_filters::LevelFilter};
use tracing_appender::{
    non_blocking::WorkerGuard,
    rolling::{self, RollingFileAppender},
};
use tracing_subscriber::{
    filter::Targets,
    fmt::{format::Writer, time::FormatTime},
    layer::SubscriberExt,
};

/// Targets that log secrets (authorization codes, tokens, client secrets) below info.
const SECRET_TARGETS: &[&str] = &["rmcp::transport::auth"];

const FILE_PREFIX: &str = "foxxy-bridge";
const FILE_SUFFIX: &str = "log";

/// Keeps the log writer alive; dropping it flushes.
#[must_use = "dropping the guard stops logging"]
pub struct LogGuard {
    _worker: WorkerGuard,
}

/// Timestamps followed by the process id, e.g. `2026-11-27T10:00:00.123456Z [4242]`.
struct TimeAndPid {
    pid: u32,
}

/// What this process is, when it is not a bridge: written after the process id on every
/// line (`hub` for the process that runs the shared upstreams).
static PROCESS_TAG: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Tag every line of this process with `tag` (before [`init`]).
pub fn tag_process(tag: &'static str) {
    let _ = PROCESS_TAG.set(tag);
}

impl FormatTime for TimeAndPid {
    fn format_time(&self, writer: &mut Writer<'_>) -> std::fmt::Result {
        tracing_subscriber::fmt::time::SystemTime.format_time(writer)?;
        match PROCESS_TAG.get() {
            Some(tag) => write!(writer, " [{} {tag}]", self.pid),
            None => write!(writer, " [{}]", self.pid),
        }
    }
}

/// Start logging into `logs_dir` at `level` (a level name or `target=level` directives).
/// Errors (e.g. an unwritable directory) are returned, not printed.
pub fn init(logs_dir: &Path, level: &str) -> std::io::Result<LogGuard> {
    make_private_dir(logs_dir)?;
    let today = utc_day(SystemTime::now());
    create_private_file(&logs_dir.join(file_name(today)))?;
    let appender = rolling::Builder::new()
        .rotation(rolling::Rotation::DAILY)
        .filename_prefix(FILE_PREFIX)
        .filename_suffix(FILE_SUFFIX)
        .max_log_files(7)
        .build(logs_dir)
        .map_err(std::io::Error::other)?;
    point_latest_link(logs_dir);
    let files = PrivateFiles { appender, dir: logs_dir.to_owned(), day: today };
    let (writer, worker) =
        // The queue's slots are allocated up front: tracing-appender's default of 128,000
        // lines costs 4 MB of resident memory per process and milliseconds at start. A few
        // thousand lines absorb any burst the bridge makes; beyond that, lines are dropped.
        tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(4096)
            .finish(files);
    let filter = filter_for(level);
    let subscriber = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_target(true)
        .with_timer(TimeAndPid { pid: std::process::id() })
        // The builder's own maximum is info; `filter` alone decides.
        .with_max_level(LevelFilter::TRACE)
        .finish()
        .with(filter)
        .with(tracing_subscriber::filter::filter_fn(|metadata| !is_rmcp_error_dump(metadata)));
    tracing::subscriber::set_global_default(subscriber).map_err(std::io::Error::other)?;
    Ok(LogGuard { _worker: worker })
}

/// rmcp logs every error a request handler answers with as a Rust `Debug` dump at warn
/// (`response error`, fields `id` and `error`). The bridge logs those in words where it
/// makes them (a refused upstream request, for one), so the dump is dropped.
fn is_rmcp_error_dump(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.is_event()
        && metadata.target() == "rmcp::service"
        && *metadata.level() == Level::WARN
        && metadata.fields().field("id").is_some()
        && metadata.fields().field("error").is_some()
}

/// The daily appender, with each day's file created 0600 before the appender opens it
/// (tracing-appender creates files with the process's umask). Owned by the log writer's
/// thread.
struct PrivateFiles {
    appender: RollingFileAppender,
    dir: PathBuf,
    /// The UTC day whose file was last created here.
    day: u64,
}

impl Write for PrivateFiles {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let day = utc_day(SystemTime::now());
        if day != self.day {
            self.day = day;
            // When this fails, the appender reports the same problem on its open.
            let _ = create_private_file(&self.dir.join(file_name(day)));
        }
        self.appender.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.appender.flush()
    }
}

/// Create `dir` (0700) or make an existing one 0700, and make the log files already in
/// it 0600.
fn make_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_log = name.starts_with(FILE_PREFIX) && name.ends_with(FILE_SUFFIX);
        // Symbolic links are left alone: their targets are the files themselves.
        if is_log && entry.file_type().is_ok_and(|kind| kind.is_file()) {
            // Another user's file (a shared state root) cannot be changed; not our concern.
            let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o600));
        }
    }
    Ok(())
}

fn create_private_file(path: &Path) -> io::Result<()> {
    let file = fs::OpenOptions::new().append(true).create(true).mode(0o600).open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))
}

/// Days since the Unix epoch, in UTC, which is when tracing-appender rotates.
fn utc_day(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs() / 86_400)
}

/// `foxxy-bridge.2026-11-27.log`, the appender's name for that day's file.
fn file_name(day: u64) -> String {
    let midnight = UNIX_EPOCH + std::time::Duration::from_secs(day * 86_400);
    let date = humantime::format_rfc3339_seconds(midnight).to_string();
    format!("{FILE_PREFIX}.{}.{FILE_SUFFIX}", &date[..10])
}

/// Make `foxxy-bridge.log` a symlink to today's file. Many bridges start at once, so
/// the link is made under a private name and renamed into place (atomic); failing to
/// make it only costs the convenience name. (tracing-appender's own `latest_symlink`
/// fails the whole start when another process created the link first.)
fn point_latest_link(logs_dir: &Path) {
    let target = file_name(utc_day(SystemTime::now()));
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
/// which costs start-up time and resident memory in every bridge process.) Whatever is
/// asked for, `SECRET_TARGETS` log at info at most.
fn filter_for(level: &str) -> Targets {
    let level = level.trim().to_ascii_lowercase();
    let directive = match level.as_str() {
        "trace" | "debug" => format!("{level},hyper=info,reqwest=info,h2=info"),
        "info" | "warn" | "error" | "off" => format!("{level},rmcp=warn"),
        _ => level,
    };
    let targets = directive
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(Level::INFO).with_target("rmcp", Level::WARN));
    cap_secret_targets(targets)
}

fn cap_secret_targets(targets: Targets) -> Targets {
    let is_secret = |target: &str| SECRET_TARGETS.iter().any(|secret| target.starts_with(secret));
    let mut capped = Targets::new();
    if let Some(level) = targets.default_level() {
        capped = capped.with_default(level);
    }
    for (target, level) in &targets {
        let level = if is_secret(target) { level.min(LevelFilter::INFO) } else { level };
        capped = capped.with_target(target, level);
    }
    for secret in SECRET_TARGETS {
        let enabled = [Level::TRACE, Level::DEBUG, Level::INFO, Level::WARN, Level::ERROR]
            .into_iter()
            .find(|level| targets.would_enable(secret, level))
            .map_or(LevelFilter::OFF, LevelFilter::from_level);
        capped = capped.with_target(*secret, enabled.min(LevelFilter::INFO));
    }
    capped
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
        // rmcp's OAuth module logs codes and tokens at debug: never below info.
        check("debug", "rmcp::transport::auth", Level::DEBUG, false);
        check("trace", "rmcp::transport::auth", Level::INFO, true);
        check("trace", "rmcp::transport::streamable_http_client", Level::TRACE, true);
        check("rmcp::transport::auth=trace", "rmcp::transport::auth", Level::DEBUG, false);
        check("rmcp::transport::auth::x=trace", "rmcp::transport::auth::x", Level::DEBUG, false);
        check("rmcp::transport::auth=trace", "rmcp::transport::auth", Level::INFO, true);
        check("info", "rmcp::transport::auth", Level::INFO, false);
        check("info", "rmcp::transport::auth", Level::WARN, true);
    }

    #[test]
    fn file_names_follow_the_utc_day() {
        use std::time::{Duration, UNIX_EPOCH};

        use super::{file_name, utc_day};
        let day = utc_day(UNIX_EPOCH + Duration::from_secs(1_764_979_199));
        assert_eq!(file_name(day), "foxxy-bridge.2025-12-05.log");
        assert_eq!(file_name(day + 1), "foxxy-bridge.2025-12-06.log");
    }
}

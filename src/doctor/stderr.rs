//! The last lines a local upstream wrote on stderr, read back from this process's log,
//! so that a server that fails at start is reported with its own words ("missing API
//! key") rather than only "exited with status 1".
//!
//! The log is shared by every bridge process of the user; lines are matched by this
//! process's id and the upstream's name, in the format `logging.rs` writes:
//! `<time> [<pid>]  INFO upstream_stderr: <text> upstream=<name>`. Only the end of the
//! file is read.

use std::{
    io::{Read, Seek, SeekFrom},
    path::Path,
};

use super::{Check, CheckCode, CheckStatus};
use crate::config::{Settings, TransportSettings};

/// Lines of stderr quoted per upstream.
const QUOTED_LINES: usize = 3;

/// Adds to each failed local upstream's connection check what the server last wrote on
/// stderr, as this process logged it in `log_file` (flushed by the caller).
pub fn quote_stderr(checks: &mut [Check], settings: &Settings, log_file: &Path) {
    let pid = std::process::id();
    for check in checks {
        let failed = check.status == CheckStatus::Error
            && matches!(check.code, CheckCode::UpstreamConnects | CheckCode::UpstreamTimedOut);
        let local = settings
            .server(&check.subject)
            .is_some_and(|server| matches!(server.transport, TransportSettings::Stdio { .. }));
        if !failed || !local {
            continue;
        }
        let tail = stderr_tail(log_file, pid, &check.subject, QUOTED_LINES);
        if !tail.is_empty() {
            let quoted: Vec<String> = tail.iter().map(|line| format!("`{line}`")).collect();
            check.message.push_str(&format!("; its stderr ended with: {}", quoted.join(" / ")));
        }
    }
}

/// How much of the end of the log is searched.
const TAIL_BYTES: u64 = 256 * 1024;

/// The last `count` stderr lines of `upstream` logged by process `pid`, oldest first.
pub fn stderr_tail(log_file: &Path, pid: u32, upstream: &str, count: usize) -> Vec<String> {
    let Ok(text) = read_tail(log_file) else { return Vec::new() };
    let process = format!(" [{pid}] ");
    let suffix = format!(" upstream={upstream}");
    let mut lines: Vec<String> = text
        .lines()
        .filter(|line| line.contains(&process))
        .filter_map(|line| {
            let (_, message) = line.split_once(" upstream_stderr: ")?;
            Some(message.strip_suffix(&suffix)?.trim().to_owned())
        })
        .filter(|message| !message.is_empty())
        .collect();
    let skip = lines.len().saturating_sub(count);
    lines.drain(..skip);
    lines
}

fn read_tail(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let length = file.metadata()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(TAIL_BYTES)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_process_lines_of_one_upstream() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("foxxy-bridge.log");
        std::fs::write(
            &log,
            "2026-12-06T16:44:32.0Z [7]  INFO upstream_stderr: other process upstream=crash\n\
             2026-12-06T16:44:32.0Z [9]  INFO upstream_stderr: first upstream=crash\n\
             2026-12-06T16:44:32.0Z [9]  INFO upstream_stderr: other upstream upstream=crash2\n\
             2026-12-06T16:44:32.1Z [9]  WARN foxxy_bridge::upstream::supervisor: failed upstream=crash\n\
             2026-12-06T16:44:32.2Z [9]  INFO upstream_stderr: second upstream=crash\n\
             2026-12-06T16:44:32.2Z [9]  INFO upstream_stderr: third upstream=crash\n",
        )
        .expect("write");
        assert_eq!(stderr_tail(&log, 9, "crash", 2), ["second", "third"]);
        assert_eq!(stderr_tail(&log, 9, "crash", 5), ["first", "second", "third"]);
        assert!(stderr_tail(&log, 9, "none", 5).is_empty());
        assert!(stderr_tail(&dir.path().join("missing.log"), 9, "crash", 5).is_empty());
    }
}

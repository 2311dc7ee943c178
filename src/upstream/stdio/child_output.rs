//! What a local upstream wrote that explains a failed start, kept so that the cause
//! shows where the user looks (`tools`, the client's error) and not only in the log:
//! [`StderrTail`], the last lines of its stderr (`boom: missing API_KEY`), and
//! [`StdoutNoise`], the first line on its stdout that is not JSON-RPC.

use std::{
    collections::VecDeque,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use tokio::sync::{Notify, watch};

use crate::locks::Unpoisoned;

/// The first line a child wrote on stdout that is not JSON-RPC. Set by its transport
/// (`transport.rs`), awaited by the session's start (`session.rs`).
///
/// Such a line does not end the start: many servers print a banner on stdout and then
/// work, so the server keeps its whole `timeout` to answer `initialize`. Meanwhile the
/// line is shown as a note on its `connecting` status, and if the start times out, it is
/// the cause given.
#[derive(Default)]
pub struct StdoutNoise {
    first: OnceLock<String>,
    seen: Notify,
}

impl StdoutNoise {
    /// The child wrote `line` on stdout, which is not JSON-RPC.
    pub fn record(&self, line: &[u8]) {
        let text: String = String::from_utf8_lossy(line).chars().take(LINE_CHARS).collect();
        if self.first.set(text).is_ok() {
            self.seen.notify_waiters();
        }
    }

    /// The first such line, once there is one.
    pub async fn first_line(&self) -> &str {
        let seen = self.seen.notified();
        if self.first.get().is_none() {
            seen.await;
        }
        self.first.get().map(String::as_str).unwrap_or_default()
    }

    /// The first such line, if there was one.
    pub fn line(&self) -> Option<&str> {
        self.first.get().map(String::as_str)
    }

    /// What `line` on stdout means while the server has not finished `initialize`.
    pub fn note(line: &str) -> String {
        format!(
            "it wrote `{line}` on stdout, which is not JSON-RPC (an MCP server must write only JSON-RPC on stdout; logs go to stderr)"
        )
    }
}

/// Lines kept.
const LINES: usize = 5;
/// Characters kept of each line.
const LINE_CHARS: usize = 300;

/// Filled by the child's stderr logger (`child.rs`), read when a start fails.
pub struct StderrTail {
    lines: Mutex<VecDeque<String>>,
    /// `true` once the child closed stderr.
    closed: watch::Sender<bool>,
}

impl Default for StderrTail {
    fn default() -> Self {
        Self { lines: Mutex::default(), closed: watch::channel(false).0 }
    }
}

impl StderrTail {
    fn lines(&self) -> std::sync::MutexGuard<'_, VecDeque<String>> {
        self.lines.lock_unpoisoned()
    }

    /// The child wrote `line` on stderr.
    pub fn push(&self, line: &str) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        let mut lines = self.lines();
        if lines.len() == LINES {
            lines.pop_front();
        }
        lines.push_back(line.chars().take(LINE_CHARS).collect());
    }

    /// The child closed stderr: everything it wrote is in.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// The last lines, joined with ` / `, once stderr is closed or `wait` has passed;
    /// `None` when the child wrote nothing.
    pub async fn last_lines(&self, wait: Duration) -> Option<String> {
        let mut closed = self.closed.subscribe();
        let _ = tokio::time::timeout(wait, closed.wait_for(|closed| *closed)).await;
        let lines = self.lines();
        (!lines.is_empty()).then(|| lines.iter().map(String::as_str).collect::<Vec<_>>().join(" / "))
    }
}

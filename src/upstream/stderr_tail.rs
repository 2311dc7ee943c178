//! [`StderrTail`]: the last lines a local upstream wrote on stderr, kept so that a
//! failed start can say why (`boom: missing API_KEY`) where the user looks (`tools`,
//! the client's error) and not only in the log.

use std::{collections::VecDeque, sync::Mutex, time::Duration};

use tokio::sync::watch;

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
        self.lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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

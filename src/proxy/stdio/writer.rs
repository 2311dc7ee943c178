//! The writer of the client's stdout: lines queued by the transport (rmcp's answers and
//! requests), by the stdin reader (its error replies) and by the calls served here are
//! written in the order queued, everything queued at the time in one write, so a burst of
//! answers costs one system call. A line is already encoded, with its newline, when it is
//! queued, so the order is the order of queueing. Once output has been quiet for a
//! moment after some traffic, freed heap memory is handed back to the system.

use std::time::Duration;

use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    sync::{mpsc, oneshot},
    time::Instant,
};

/// The usual capacity of a batch.
const BATCH_CAPACITY: usize = 64 * 1024;
/// A stdout batch is written once it reaches this size, even with more queued.
const BATCH_LIMIT: usize = 1024 * 1024;
/// How long output must be quiet before freed memory is returned to the system.
const QUIET: Duration = Duration::from_millis(500);

/// What the writer is given.
pub enum Outgoing {
    /// A line to write, with its newline.
    Line(Vec<u8>),
    /// Fires once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// Write queued lines to stdout, everything queued at the time in one write. Once output
/// has been quiet for [`QUIET`] after some traffic, freed heap memory is handed back to
/// the system (a burst of calls leaves the allocator holding pages it no longer needs).
pub async fn write_stdout(mut out: impl AsyncWrite + Unpin, mut queue: mpsc::Receiver<Outgoing>) {
    let mut batch = Vec::with_capacity(BATCH_CAPACITY);
    let mut flushed = Vec::new();
    let quiet = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(quiet);
    let mut last_write: Option<Instant> = None;
    loop {
        let item = tokio::select! {
            item = queue.recv() => item,
            () = &mut quiet, if last_write.is_some() => {
                let due = last_write.map_or_else(Instant::now, |at| at + QUIET);
                if Instant::now() >= due {
                    crate::memory::release_free_heap();
                    last_write = None;
                } else {
                    quiet.as_mut().reset(due);
                }
                continue;
            }
        };
        let Some(item) = item else { return };
        let mut next = Some(item);
        while let Some(item) = next.take() {
            match item {
                Outgoing::Line(line) if batch.is_empty() && line.len() >= BATCH_CAPACITY => batch = line,
                Outgoing::Line(line) => batch.extend_from_slice(&line),
                Outgoing::Flush(done) => flushed.push(done),
            }
            if batch.len() >= BATCH_LIMIT {
                break;
            }
            next = queue.try_recv().ok();
        }
        if out.write_all(&batch).await.is_err() || out.flush().await.is_err() {
            return;
        }
        batch.clear();
        if batch.capacity() > BATCH_LIMIT {
            batch.shrink_to(BATCH_CAPACITY);
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
        let now = Instant::now();
        if last_write.is_none() {
            quiet.as_mut().reset(now + QUIET);
        }
        last_write = Some(now);
    }
}

//! The write queue of a stdio upstream's stdin ([`WriteQueue`]): messages are queued,
//! and one task writes everything queued at the time in one write.
//!
//! Both rmcp's sends (through the transport, `transport.rs`) and the lane's (`lane.rs`)
//! go through it, so their order is the order in which they were queued. With many calls
//! in flight, the calls a client sent together leave together: one system call instead of
//! one per message, for the bridge and for the server reading them. A lone message costs
//! one task wake-up more than writing it in place. A sender that cannot wait (the lane,
//! queueing from the client's reader) is told when the queue is full and waits for room
//! on a task of its own ([`Full::wait`]); back-pressure from the pipe reaches senders
//! that way. Closing the queue closes the child's stdin once what is queued is written.

use std::sync::Mutex;

use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    sync::mpsc,
};

use crate::locks::Unpoisoned;

/// Messages queued before senders wait (the pipe's back-pressure reaches them then).
const QUEUE: usize = 1024;
/// A batch is written once it reaches this size, even with more queued.
const BATCH_LIMIT: usize = 1024 * 1024;

/// Our side of a child's stdin.
pub struct WriteQueue {
    /// `None` once closed. Senders clone it for the duration of one send; the writer task
    /// ends (and closes the child's stdin) when the last clone is gone and the queue is
    /// drained.
    tx: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
}

impl WriteQueue {
    /// Start the writer task for `out`. Must be called inside the runtime.
    pub fn new(out: impl AsyncWrite + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(Box::pin(out), rx));
        Self { tx: Mutex::new(Some(tx)) }
    }

    fn sender(&self) -> Option<mpsc::Sender<Vec<u8>>> {
        self.tx.lock_unpoisoned().clone()
    }

    /// Queue `line` (with its newline) if there is room now.
    pub fn try_queue(&self, line: Vec<u8>) -> Queued {
        let Some(tx) = self.sender() else { return Queued::Closed };
        match tx.try_send(line) {
            Ok(()) => Queued::Yes,
            Err(mpsc::error::TrySendError::Full(line)) => Queued::Full(Full { tx, line }),
            Err(mpsc::error::TrySendError::Closed(_)) => Queued::Closed,
        }
    }

    /// Queue `line` (with its newline) now if there is room, so messages keep the
    /// order of the calls; the returned future waits for room otherwise. For senders
    /// whose future must not borrow the queue.
    pub fn send_later(&self, line: Vec<u8>) -> impl Future<Output = std::io::Result<()>> + Send + 'static {
        let waiting = match self.try_queue(line) {
            Queued::Yes => Ok(None),
            Queued::Full(full) => Ok(Some(full)),
            Queued::Closed => Err(closed()),
        };
        async move {
            if let Some(full) = waiting? {
                full.wait().await?;
            }
            Ok(())
        }
    }

    /// Queue `line` (with its newline).
    #[cfg(test)]
    pub async fn send(&self, line: Vec<u8>) -> std::io::Result<()> {
        self.send_later(line).await
    }

    /// Stop taking messages; what is queued is still written, then stdin is closed.
    pub fn close(&self) {
        self.tx.lock_unpoisoned().take();
    }
}

/// What [`WriteQueue::try_queue`] did with a line.
pub enum Queued {
    Yes,
    /// No room now: [`Full::wait`] queues the line once there is.
    Full(Full),
    /// The queue is closed, or its writer has stopped.
    Closed,
}

/// A line that found the queue full, and the queue it waits for.
pub struct Full {
    tx: mpsc::Sender<Vec<u8>>,
    line: Vec<u8>,
}

impl Full {
    /// Queue the line once there is room; fails if the writer stops first.
    pub async fn wait(self) -> std::io::Result<()> {
        self.tx.send(self.line).await.map_err(|_| closed())
    }
}

fn closed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, "the transport is closed")
}

async fn write_batches(
    mut out: std::pin::Pin<Box<dyn AsyncWrite + Send>>,
    mut queue: mpsc::Receiver<Vec<u8>>,
) {
    while let Some(mut batch) = queue.recv().await {
        while batch.len() < BATCH_LIMIT {
            let Ok(line) = queue.try_recv() else { break };
            batch.extend_from_slice(&line);
        }
        if let Err(error) = async {
            out.write_all(&batch).await?;
            out.flush().await
        }
        .await
        {
            // The child is gone or closed its stdin; the reader side ends the session.
            tracing::debug!("writing to the upstream's stdin failed: {error}");
            return;
        }
    }
    let _ = out.shutdown().await;
}

#[cfg(test)]
mod tests {
    use std::{
        pin::Pin,
        sync::{Arc, Mutex},
        task::{Context, Poll},
    };

    use super::*;

    /// Records each write call, and whether it was shut down.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<(Vec<Vec<u8>>, bool)>>);

    impl AsyncWrite for Recorder {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            self.0.lock().unwrap().0.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            self.0.lock().unwrap().1 = true;
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn lines_queued_together_leave_in_one_write_in_order_and_close_ends_it() {
        let recorder = Recorder::default();
        let write_queue = WriteQueue::new(recorder.clone());
        let sends: Vec<_> = ["a\n", "b\n", "c\n"].map(|line| write_queue.send_later(line.into())).into();
        for send in sends {
            send.await.unwrap();
        }
        write_queue.send(b"d\n".to_vec()).await.unwrap();
        write_queue.close();
        assert!(write_queue.send(b"e\n".to_vec()).await.is_err(), "a closed queue takes nothing");
        for _ in 0..100 {
            if recorder.0.lock().unwrap().1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        let (writes, shut) = recorder.0.lock().unwrap().clone();
        assert_eq!(writes, [b"a\nb\nc\nd\n".to_vec()], "one write, in order");
        assert!(shut, "closing the queue closes the stream once the queue is written");
    }
}

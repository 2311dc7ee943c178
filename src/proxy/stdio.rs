//! The downstream stdio transport: newline-delimited JSON-RPC on stdin/stdout, with
//! the error handling a client is owed, and the fast path for tool calls.
//!
//! Its parts, each in a file of its own:
//!
//! - `reader.rs`, the stdin reader task: frames lines within `maxMessageBytes` and answers
//!   every bad line itself, so rmcp sees only well-formed messages; it also keeps the
//!   session's lifecycle in one piece (nothing before `initialize`, no second one).
//! - `calls.rs` and `tasks.rs`: once the session is initialized, a client's `tools/call`
//!   does not go to rmcp at all; the reader serves it, through the same routing, to keep
//!   rmcp's session task off the hot path. Task requests are taken the same way, before
//!   rmcp would decode them into its own tasks types.
//! - `outbox.rs`: what rmcp's side, the reader and those calls share: the requests in
//!   flight and who serves each, and the encoding of answers.
//! - `writer.rs`, the stdout writer task: writes queued lines in order, everything queued
//!   at the time in one write.
//! - `pipes.rs`: stdin and stdout as async streams.
//!
//! I/O: when stdin and stdout are pipes or sockets (as a client spawns us), they are
//! switched to non-blocking mode and driven by the async runtime itself, so a message
//! costs no extra thread wake-up on its way in or out. Anything else (a terminal, a
//! file) goes through tokio's blocking stdin/stdout. Outgoing messages are serialized
//! when rmcp hands them over, so they leave in the order rmcp sends them.
//!
//! This module is rmcp's side: [`StdioTransport`] takes rmcp's outgoing messages (rmcp's
//! progress token is stripped from requests to the client, and the `initialize` answer
//! gets `capabilities.tasks`) and hands rmcp the messages the reader passes on.

use std::{
    sync::{Arc, Mutex, atomic::AtomicBool},
    time::Duration,
};

use rmcp::{
    model::{ClientJsonRpcMessage, JsonRpcMessage, RequestId, ServerResult},
    service::{RoleServer, RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};
use serde_json::Value;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::{mpsc, oneshot},
};
use tokio_util::sync::CancellationToken;

mod calls;
mod outbox;
mod pipes;
mod reader;
mod tasks;
mod writer;

pub use pipes::RestoreOnDrop;

use self::{outbox::Outbox, writer::Outgoing};
use super::Bridge;

/// Messages queued for stdout before senders wait.
const OUTBOX_CAPACITY: usize = 1024;
/// How long closing the transport waits for queued output to be written.
const FLUSH_LIMIT: Duration = Duration::from_secs(1);

/// What the reader does with one line from the client.
#[allow(
    clippy::large_enum_variant,
    reason = "returned and moved straight into the channel; boxing costs an allocation per message"
)]
enum Verdict {
    /// A well-formed message for rmcp.
    Pass(ClientJsonRpcMessage),
    /// Answered by the transport itself: this error reply goes to stdout.
    Reply(Vec<u8>),
    /// Nothing to answer (a notification or response that cannot be used).
    Drop,
    /// A `tools/call` served here (`calls.rs`).
    ToolCallTask(calls::ToolCallTask),
    /// A task request served here (`tasks.rs`).
    TaskRequest(tasks::TaskRequest),
}

/// The transport rmcp serves the client over.
pub struct StdioTransport {
    incoming: mpsc::Receiver<ClientJsonRpcMessage>,
    outbox: Arc<Outbox>,
}

/// Start reading stdin and writing stdout. `stdin_closed` fires when the client closes
/// stdin (or it fails), so the caller can shut down without waiting for rmcp. `bridge`
/// serves `tools/call` directly once the session is initialized. Must be called inside
/// the runtime.
pub fn stdio(
    max_bytes: usize,
    stdin_closed: CancellationToken,
    bridge: Option<Arc<Bridge>>,
) -> StdioTransport {
    over_streams(pipes::stdin(), pipes::stdout(), max_bytes, stdin_closed, bridge)
}

/// [`stdio`] over any pair of byte streams: the hub serves each bridge attached to its
/// Unix socket this way. `input_closed` fires when `input` ends.
pub fn over_streams(
    input: impl AsyncRead + Unpin + Send + 'static,
    output: impl AsyncWrite + Unpin + Send + 'static,
    max_bytes: usize,
    input_closed: CancellationToken,
    bridge: Option<Arc<Bridge>>,
) -> StdioTransport {
    let (out_tx, out_rx) = mpsc::channel(OUTBOX_CAPACITY);
    let outbox = Arc::new(Outbox {
        tx: out_tx,
        in_flight: Mutex::new(foldhash::HashMap::default()),
        initialized: AtomicBool::new(false),
        max_bytes,
        bridge,
    });
    let (in_tx, incoming) = mpsc::channel(64);
    let reader_outbox = outbox.clone();
    tokio::spawn(async move {
        reader::read_stdin(input, &reader_outbox, &in_tx).await;
        input_closed.cancel();
    });
    tokio::spawn(writer::write_stdout(output, out_rx));
    StdioTransport { incoming, outbox }
}

impl StdioTransport {
    /// The line answering `initialize`, with `capabilities.tasks`
    /// (`Bridge::tasks_capability`), which rmcp's capability type does not have.
    fn initialize_line(&self, id: RequestId, result: &ServerResult) -> Option<Vec<u8>> {
        let mut result = serde_json::to_value(result).ok()?;
        let tasks = self.outbox.bridge.as_ref().and_then(|bridge| bridge.tasks_capability());
        if let (Some(capabilities), Some(tasks)) =
            (result.get_mut("capabilities").and_then(Value::as_object_mut), tasks)
        {
            capabilities.insert("tasks".to_owned(), tasks);
        }
        self.outbox.encode_result(id, &serde_json::to_vec(&result).ok()?)
    }
}

impl Transport<RoleServer> for StdioTransport {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let mut item = item;
        if let JsonRpcMessage::Request(request) = &mut item {
            super::upstream_requests::sending(self.outbox.bridge.as_deref(), request);
        }
        let line = match &item {
            JsonRpcMessage::Response(response)
                if matches!(response.result, ServerResult::InitializeResult(_))
                    && self.outbox.bridge.as_ref().is_some_and(|bridge| bridge.aggregation.tools) =>
            {
                self.initialize_line(response.id.clone(), &response.result)
            }
            _ => self.outbox.encode(&item),
        };
        let tx = self.outbox.tx.clone();
        // Queue now, while rmcp's loop holds the message order; wait only when full.
        let pending = match line.map(|line| tx.try_send(Outgoing::Line(line))) {
            None | Some(Ok(())) => None,
            Some(Err(mpsc::error::TrySendError::Full(item))) => Some(item),
            Some(Err(mpsc::error::TrySendError::Closed(_))) => {
                return futures::future::Either::Left(std::future::ready(Err(closed())));
            }
        };
        futures::future::Either::Right(async move {
            if let Some(item) = pending {
                tx.send(item).await.map_err(|_| closed())?;
            }
            Ok(())
        })
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        self.incoming.recv().await
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        let (done, flushed) = oneshot::channel();
        if self.outbox.tx.send(Outgoing::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(FLUSH_LIMIT, flushed).await;
        }
        Ok(())
    }
}

fn closed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stdout is closed")
}

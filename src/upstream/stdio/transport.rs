//! The transport to a stdio upstream ([`LineTransport`]): newline-delimited JSON-RPC over
//! the child's pipes, in place of rmcp's `AsyncRwTransport`.
//!
//! Reading: the child's stdout is framed by the bounded line reader
//! (`wire::line_reader`). Each line is first offered to the session's direct lane
//! (`lane.rs`): an answer to a call sent on the lane is handed to its caller before any
//! decoding for rmcp. Every other line is offered to the raw results (`raw_results.rs`,
//! which keeps marked answers as written), then decoded for rmcp. The transport remembers
//! which of its outgoing requests are `tools/call` and decodes their responses as
//! `CallToolResult` directly (`wire::tool_response`) rather than as rmcp's untagged
//! `ServerResult`, which tries one result type after another; every other line, and a
//! tool response that does not decode that way, goes through the general decoder, so what
//! reaches rmcp is what it would have decoded itself. A leading BOM, a trailing CR and
//! blank lines are tolerated.
//!
//! Writing: rmcp's messages are encoded when rmcp sends them and queued on the child's
//! write queue (`write_queue.rs`), which the lane shares, so messages leave in the order
//! they were sent.
//!
//! Lines longer than `maxMessageBytes` are dropped without being held in memory, and
//! lines that are not JSON-RPC are skipped; both are logged (the session's span names
//! the upstream). A dropped line's first bytes say what it was (`oversize.rs`): the
//! request it answered gets an error naming the limit at once; a server request gets an
//! error answer; and when that cannot be told, every request in flight gets the error
//! and the transport ends, so the session restarts and nothing waits for an answer that
//! was dropped. A request the upstream sends that cannot be decoded is answered with
//! "invalid request", as rmcp does.

use std::{
    collections::{HashSet, VecDeque},
    future::Future,
    sync::Arc,
};

use rmcp::{
    RoleClient,
    model::{ClientRequest, ErrorData, JsonRpcMessage, RequestId},
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{
    child_output::StdoutNoise,
    lane::{AnswerReading, Lane},
    oversize::{self, Oversized},
    write_queue::WriteQueue,
};
use crate::{
    upstream::raw_results::RawResults,
    wire::{BoundedLineReader, Framed, tool_response, tool_result::Envelope},
};

/// Outstanding `tools/call` ids beyond this are forgotten (answers that never came);
/// forgetting one only sends its answer down the general decoder.
const MAX_TRACKED_CALLS: usize = 4096;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

pub struct LineTransport<R> {
    /// The child's stdout, one line at a time.
    lines: BoundedLineReader<R>,
    /// Our side of the child's stdin, shared with the lane.
    write_queue: Arc<WriteQueue>,
    /// The direct `tools/call` path of this session; see `lane.rs`.
    lane: Arc<Lane>,
    /// The upstream's name, for the error of a dropped answer.
    name: Arc<str>,
    /// Ids of every request sent through rmcp that has not been answered, so a dropped
    /// line whose id cannot be read can fail them all.
    in_flight: HashSet<RequestId>,
    /// Lines made here (errors standing in for dropped answers), handled before the
    /// next line is read.
    stand_ins: VecDeque<Vec<u8>>,
    /// After the stand-ins, end the transport (a dropped line could not be told).
    ending: bool,
    /// Ids of our `tools/call` requests that have not been answered. `send` and
    /// `receive` both take `&mut self`, so no lock is needed.
    tool_calls: HashSet<RequestId>,
    /// Whether a non-JSON line was already logged at `warn` (the rest go to `debug`).
    warned_noise: bool,
    /// Offered every line, to keep marked answers (`tools/list`, tasks) as written (`listing.rs`).
    raw_results: Option<Arc<RawResults>>,
    /// Told the first line that is not JSON (`child_output.rs`).
    noise: Option<Arc<StdoutNoise>>,
}

impl<R: AsyncRead + Unpin> LineTransport<R> {
    pub fn new(read: R, write: impl AsyncWrite + Send + 'static, max_bytes: usize) -> Self {
        let write_queue = Arc::new(WriteQueue::new(write));
        Self {
            lines: BoundedLineReader::new(read, max_bytes),
            lane: Arc::new(Lane::new(write_queue.clone(), AnswerReading::Whole)),
            write_queue,
            name: Arc::from("upstream"),
            in_flight: HashSet::new(),
            stand_ins: VecDeque::new(),
            ending: false,
            tool_calls: HashSet::new(),
            warned_noise: false,
            raw_results: None,
            noise: None,
        }
    }

    /// Name the upstream in the errors this transport makes.
    pub fn for_upstream(mut self, name: Arc<str>) -> Self {
        self.name = name;
        self
    }

    /// Read the answers to lane calls as `reading` says (all of each, unless set here).
    /// Before the lane is handed out ([`LineTransport::lane`]).
    pub fn reading_answers(mut self, reading: AnswerReading) -> Self {
        self.lane = Arc::new(Lane::new(self.write_queue.clone(), reading));
        self
    }

    /// Tell `noise` the first line that is not JSON.
    pub fn with_noise(mut self, noise: Arc<StdoutNoise>) -> Self {
        self.noise = Some(noise);
        self
    }

    /// Offer every incoming line to `raw_results`.
    pub fn with_raw_results(mut self, raw_results: Arc<RawResults>) -> Self {
        self.raw_results = Some(raw_results);
        self
    }

    /// The session's direct lane for `tools/call`.
    pub fn lane(&self) -> Arc<Lane> {
        self.lane.clone()
    }

    /// Reads up to the next newline: `Some(true)` for a line (in `self.lines`),
    /// `Some(false)` for a line over the limit (its start in `self.lines`). `None` at end
    /// of input or on a read error. Safe to cancel: a partial line stays in the reader.
    async fn next_line(&mut self) -> Option<bool> {
        loop {
            match self.lines.next().await {
                Ok(Framed::Line) => return Some(true),
                Ok(Framed::OverLimit) => tracing::error!(
                    max_bytes = self.lines.max_bytes(),
                    "a message from the upstream exceeded the maximum line length (`bridge.maxMessageBytes`); it is dropped"
                ),
                Ok(Framed::Oversized) => return Some(false),
                Ok(Framed::End) => return None,
                Err(error) => {
                    tracing::warn!("reading the upstream's stdout failed: {error}");
                    return None;
                }
            }
        }
    }

    /// Decodes one line; `Err` carries what to do about a line that is not a message.
    fn decode(&mut self, line: &[u8]) -> Result<RxJsonRpcMessage<RoleClient>, Undecodable> {
        if let Some(message) = self.decode_tool_result(line) {
            return Ok(message);
        }
        match serde_json::from_slice::<RxJsonRpcMessage<RoleClient>>(line) {
            Ok(message) => {
                if let JsonRpcMessage::Response(response) = &message {
                    self.tool_calls.remove(&response.id);
                    self.in_flight.remove(&response.id);
                } else if let JsonRpcMessage::Error(error) = &message
                    && let Some(id) = &error.id
                {
                    self.tool_calls.remove(id);
                    self.in_flight.remove(id);
                }
                Ok(message)
            }
            Err(error) => Err(Undecodable::classify(line, error)),
        }
    }

    /// The fast path: a response to one of our `tools/call` requests.
    fn decode_tool_result(&mut self, line: &[u8]) -> Option<RxJsonRpcMessage<RoleClient>> {
        if self.tool_calls.is_empty() {
            return None;
        }
        let (tool_calls, in_flight) = (&mut self.tool_calls, &mut self.in_flight);
        tool_response(line, |id| {
            in_flight.remove(id);
            tool_calls.remove(id)
        })
    }

    /// A line over the limit was dropped: make the errors that stand in for what it
    /// answered, or the answer to the server's request it was. Returns that answer.
    fn dropped(&mut self) -> Option<TxJsonRpcMessage<RoleClient>> {
        let head = self.lines.take_oversized_head();
        let max_bytes = self.lines.max_bytes();
        let message = format!(
            "upstream `{}` sent a message larger than `bridge.maxMessageBytes` ({} bytes), which was dropped; hint: raise `bridge.maxMessageBytes` in the config",
            self.name, max_bytes
        );
        let lane_ids = self.lane.waiting_ids();
        let is_tool_call = |id: &RequestId| match id {
            RequestId::Number(number) if lane_ids.contains(number) => true,
            other => self.tool_calls.contains(other),
        };
        let stand_in = |id: RequestId| {
            if is_tool_call(&id) {
                oversize::tool_error_line(id, &message)
            } else {
                oversize::error_line(id, &message)
            }
        };
        match oversize::classify(&head) {
            Oversized::Answer(id) => self.stand_ins.push_back(stand_in(id)),
            Oversized::ServerMessage(Some(id)) => {
                return Some(TxJsonRpcMessage::<RoleClient>::error(
                    ErrorData::invalid_request(
                        format!("the message is larger than the client's limit of {max_bytes} bytes"),
                        None,
                    ),
                    Some(id),
                ));
            }
            Oversized::ServerMessage(None) => {}
            Oversized::Unknown => {
                tracing::error!(
                    "the dropped message's request could not be told; every request in flight fails and the session restarts"
                );
                let ids =
                    lane_ids.iter().copied().map(RequestId::Number).chain(self.in_flight.iter().cloned());
                let lines: Vec<Vec<u8>> = ids.map(stand_in).collect();
                self.stand_ins.extend(lines);
                self.ending = true;
            }
        }
        None
    }

    fn log_noise(&mut self, error: &serde_json::Error) {
        if std::mem::replace(&mut self.warned_noise, true) {
            tracing::debug!("skipped an unparsable line from the upstream's stdout: {error}");
        } else {
            tracing::warn!(
                "skipped an unparsable line from the upstream's stdout (a server must print only JSON-RPC there; further ones are logged at debug level): {error}"
            );
        }
    }
}

/// Why a line was not a message, and what that calls for.
enum Undecodable {
    /// Not JSON: skipped.
    Noise(serde_json::Error),
    /// JSON, but no message we know: a request (its id here) gets an error, anything
    /// else is skipped.
    Unknown { request_id: Option<RequestId>, error: serde_json::Error },
}

impl Undecodable {
    fn classify(line: &[u8], error: serde_json::Error) -> Self {
        use serde_json::error::Category;
        match error.classify() {
            Category::Syntax | Category::Eof => Undecodable::Noise(error),
            Category::Data | Category::Io => {
                // A notification (no id) is skipped; a request is answered.
                let request_id = serde_json::from_slice::<Envelope>(line)
                    .ok()
                    .filter(|envelope| envelope.method.is_some())
                    .and_then(|envelope| envelope.id);
                Undecodable::Unknown { request_id, error }
            }
        }
    }
}

impl<R> Transport<RoleClient> for LineTransport<R>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        if let JsonRpcMessage::Request(request) = &item
            && matches!(request.request, ClientRequest::CallToolRequest(_))
        {
            if self.tool_calls.len() >= MAX_TRACKED_CALLS {
                self.tool_calls.clear();
            }
            self.tool_calls.insert(request.id.clone());
        }
        if let JsonRpcMessage::Request(request) = &item {
            if self.in_flight.len() >= MAX_TRACKED_CALLS {
                self.in_flight.clear();
            }
            self.in_flight.insert(request.id.clone());
        }
        // Encoded now, so messages are queued in the order rmcp sends them.
        let bytes =
            serde_json::to_vec(&crate::upstream::client_tasks::declare_tasks(item)).map(|mut bytes| {
                bytes.push(b'\n');
                bytes
            });
        let send = bytes.map(|bytes| self.write_queue.send_later(bytes));
        async move { send?.await }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        loop {
            // Stand-in lines are handled like read ones; they never hold a partial line.
            let (line, read) = match self.stand_ins.pop_front() {
                Some(line) => (line, false),
                None if self.ending => {
                    self.lane.close();
                    return None;
                }
                None => match self.next_line().await {
                    None => {
                        self.lane.close();
                        return None;
                    }
                    Some(false) => {
                        if let Some(reply) = self.dropped()
                            && self.send(reply).await.is_err()
                        {
                            return None;
                        }
                        continue;
                    }
                    Some(true) => (self.lines.take_line(), true),
                },
            };
            let text = line.strip_prefix(UTF8_BOM).unwrap_or(&line);
            let text = text.strip_suffix(b"\r").unwrap_or(text).trim_ascii();
            if text.is_empty() || self.lane.claim(text) {
                if read {
                    self.lines.give_back(line);
                }
                continue;
            }
            if let Some(raw_results) = &self.raw_results {
                raw_results.offer(text);
            }
            let decoded = self.decode(text);
            if let (Err(Undecodable::Noise(_)), Some(noise)) = (&decoded, &self.noise) {
                noise.record(text);
            }
            if read {
                self.lines.give_back(line);
            }
            match decoded {
                Ok(message) => return Some(message),
                Err(Undecodable::Noise(error)) => self.log_noise(&error),
                Err(Undecodable::Unknown { request_id: Some(id), error }) => {
                    tracing::debug!("the upstream sent a request the bridge cannot decode: {error}");
                    let reply = TxJsonRpcMessage::<RoleClient>::error(
                        ErrorData::invalid_request(format!("invalid request: {error}"), None),
                        Some(id),
                    );
                    if self.send(reply).await.is_err() {
                        return None;
                    }
                }
                Err(Undecodable::Unknown { request_id: None, error }) => {
                    tracing::debug!("skipped a message from the upstream that is not MCP: {error}");
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.lane.close();
        // The child's stdin closes once what is queued is written.
        self.write_queue.close();
        Ok(())
    }
}

impl<R> Drop for LineTransport<R> {
    fn drop(&mut self) {
        // However the session ends, calls waiting on the lane must not wait forever.
        self.lane.close();
    }
}

#[cfg(test)]
mod tests;

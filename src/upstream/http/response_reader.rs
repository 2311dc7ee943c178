//! [`ResponseReader`]: the streamable HTTP client layer that reads a `tools/call`'s
//! answer itself, and offers answers wanted as written to the raw-result capture.
//!
//! A streamable HTTP server may answer any POST with an SSE stream, and most answer a
//! `tools/call` that way even when the stream holds nothing but the result. rmcp's
//! transport then spawns a task to read that stream and decodes each event as its
//! untagged `ServerJsonRpcMessage`, trying one result type after another and failing
//! on each before the tool result: together a large share of the bridge's cost per
//! call to an HTTP upstream (the figures are in `docs/performance.md`). This wrapper, around the client that does the HTTP
//! (`JsonAnswerClient`, or the OAuth bearer client over it), reads the first events of a
//! `tools/call`'s stream before handing the response to rmcp. When the first message
//! in it is that call's answer, it is decoded as `CallToolResult` directly (the decoder
//! the stdio transport uses) and handed over as a plain JSON response, which rmcp
//! delivers at once without a task. Anything else (progress first, a request from the
//! server, an error, an empty stream) is handed over as the same stream, with the
//! events already read put back in front, so rmcp sees exactly what the server sent.
//!
//! Every stream handed to rmcp (a POST's answer, the GET stream) has its messages offered
//! to the session's `RawResults` on the way (`raw_results.rs`): a `tools/list` answer, a
//! task's result, or a server request with `params.task` is then kept as written.
//!
//! The stream's remaining bytes are read to its end (by a small task when the end has
//! not arrived with the answer, which with hyper is the usual case) so that the
//! connection goes back to the pool; a server that keeps the stream open after the
//! answer gets [`DRAIN_LIMIT`] before the connection is dropped.
//!
//! Invariant: rmcp sees either exactly the server's events, in order, or the one answer.
//!
//! The layer is one [`StreamableHttpLayer`]: rmcp's client trait is implemented for it by
//! the shared forwarding layer in `http_client/`.

use std::{sync::Arc, time::Duration};

use futures::{FutureExt, StreamExt};
use rmcp::{
    model::{
        ClientJsonRpcMessage, ClientRequest, GetExtensions, JsonRpcMessage, RequestId, ServerJsonRpcMessage,
    },
    transport::streamable_http_client::{StreamableHttpClient, StreamableHttpPostResponse},
};
use sse_stream::Sse;

use crate::{
    http_client::{SseEvents, StreamableHttpLayer},
    upstream::raw_results::{RawResultWanted, RawResults},
    wire::tool_response,
};

/// How long the rest of an answered stream may take to end before its connection is
/// dropped instead of reused.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Events without a message (a resumption primer, comments) read past before giving up
/// on the shortcut; more than a few means this is not a plain answer.
const MAX_EMPTY_EVENTS: usize = 4;

/// The streamable HTTP client layer over `C` that reads POST responses itself: a
/// `tools/call`'s answer, and the raw text of answers wanted as written.
#[derive(Clone)]
pub struct ResponseReader<C> {
    inner: C,
    /// Offered the events of every stream handed to rmcp (`raw_results.rs`).
    raw_results: Arc<RawResults>,
}

impl<C> ResponseReader<C> {
    pub fn new(inner: C, raw_results: Arc<RawResults>) -> Self {
        Self { inner, raw_results }
    }
}

/// How the bridge reads the response to a POSTed message.
pub enum ResponseReading {
    /// A `tools/call`: its answer, if it is the first message of an SSE stream.
    ToolAnswer(RequestId),
    /// Anything else: a stream is handed to rmcp with its messages offered to the
    /// capture of results wanted as written (`raw_results.rs`).
    Other,
}

/// Whether `message` is a request whose result is wanted as the upstream wrote it: a
/// `tools/list`, or one marked [`RawResultWanted`] (`raw_results.rs`).
pub fn wants_raw_result(message: &ClientJsonRpcMessage) -> bool {
    match message {
        JsonRpcMessage::Request(request) => {
            matches!(request.request, ClientRequest::ListToolsRequest(_))
                || request.request.extensions().get::<RawResultWanted>().is_some()
        }
        _ => false,
    }
}

impl ResponseReading {
    pub(super) fn of(message: &ClientJsonRpcMessage) -> Self {
        match message {
            JsonRpcMessage::Request(request) => match request.request {
                ClientRequest::CallToolRequest(_) => ResponseReading::ToolAnswer(request.id.clone()),
                _ => ResponseReading::Other,
            },
            _ => ResponseReading::Other,
        }
    }
}

impl<C: StreamableHttpClient + Sync> StreamableHttpLayer for ResponseReader<C> {
    type Inner = C;
    type PostNote = ResponseReading;

    fn inner(&self) -> &C {
        &self.inner
    }

    fn note_post(&self, message: &ClientJsonRpcMessage) -> ResponseReading {
        ResponseReading::of(message)
    }

    /// The upstream's `initialize` with the client's `capabilities.tasks` in it.
    fn prepare_post(&self, message: ClientJsonRpcMessage) -> ClientJsonRpcMessage {
        crate::upstream::client_tasks::declare_tasks(message)
    }

    /// The GET stream, its messages offered to the capture as a POST's are.
    fn read_stream(&self, stream: SseEvents) -> SseEvents {
        offered(stream, self.raw_results.clone())
    }

    /// `response` as it came, a `tools/call` answer read by [`answer_from_stream`]; the
    /// events of a stream handed on are offered to the capture on their way to rmcp.
    async fn read_post(
        &self,
        reading: ResponseReading,
        response: StreamableHttpPostResponse,
    ) -> StreamableHttpPostResponse {
        let response = match reading {
            ResponseReading::ToolAnswer(call) => answer_from_stream(Some(call), response).await,
            ResponseReading::Other => response,
        };
        match response {
            StreamableHttpPostResponse::Sse(stream, session_id) => {
                StreamableHttpPostResponse::Sse(offered(stream, self.raw_results.clone()), session_id)
            }
            other => other,
        }
    }
}

/// `stream` with each message offered to `raw_results` (a `tools/list` answer, a task
/// result, a request of the server's with `params.task`) on its way to rmcp.
fn offered(stream: SseEvents, raw_results: Arc<RawResults>) -> SseEvents {
    stream
        .inspect(move |item| {
            if let Ok(event) = item
                && let SseEventData::Message(data) = event_data(event)
            {
                raw_results.offer(data.as_bytes());
            }
        })
        .boxed()
}

/// `response` as a JSON response if it is an SSE stream whose first message answers
/// `call`; otherwise as it came.
async fn answer_from_stream(
    call: Option<RequestId>,
    response: StreamableHttpPostResponse,
) -> StreamableHttpPostResponse {
    let (call, mut stream, session_id) = match (call, response) {
        (Some(call), StreamableHttpPostResponse::Sse(stream, session_id)) => (call, stream, session_id),
        (_, response) => return response,
    };
    let mut read = Vec::new();
    while let Some(item) = stream.next().await {
        let event = match &item {
            Ok(event) => ToolStreamEvent::of(event, &call),
            Err(_) => ToolStreamEvent::Other,
        };
        match event {
            ToolStreamEvent::Answer(answer) => {
                drain_answered_stream(stream, DRAIN_LIMIT);
                return StreamableHttpPostResponse::Json(*answer, session_id);
            }
            ToolStreamEvent::Empty if read.len() < MAX_EMPTY_EVENTS => read.push(item),
            ToolStreamEvent::Empty | ToolStreamEvent::Other => {
                read.push(item);
                break;
            }
        }
    }
    let replay = futures::stream::iter(read).chain(stream).boxed();
    StreamableHttpPostResponse::Sse(replay, session_id)
}

/// What one SSE event of a `tools/call`'s response is to the shortcut.
enum ToolStreamEvent {
    /// No message in it (a resumption primer, a keep-alive): look at the next one.
    Empty,
    /// The call's answer, decoded.
    Answer(Box<ServerJsonRpcMessage>),
    /// Anything else: a control event, another message, or an answer that only the
    /// general decoder reads. The stream is left to rmcp.
    Other,
}

impl ToolStreamEvent {
    fn of(event: &Sse, call: &RequestId) -> Self {
        match event_data(event) {
            SseEventData::Empty => ToolStreamEvent::Empty,
            SseEventData::Control => ToolStreamEvent::Other,
            SseEventData::Message(data) => tool_response(data.as_bytes(), |id| id == call)
                .map_or(ToolStreamEvent::Other, |answer| ToolStreamEvent::Answer(Box::new(answer))),
        }
    }
}

enum SseEventData<'a> {
    Empty,
    Control,
    Message(&'a str),
}

/// Which events carry a message, decided as rmcp does: those named `message`, or not
/// named, whose data is not blank.
fn event_data(event: &Sse) -> SseEventData<'_> {
    if !matches!(event.event.as_deref(), None | Some("" | "message")) {
        return SseEventData::Control;
    }
    match event.data.as_deref() {
        Some(data) if !data.trim().is_empty() => SseEventData::Message(data),
        _ => SseEventData::Empty,
    }
}

/// Read what is left of an answered stream, so that its connection can be reused. If
/// the end is already there, that is all; with hyper it mostly is not (its connection
/// task delivers the end after the answer), and a task waits for it, up to `limit`. A
/// server sends nothing for a call after its answer; should one, what it sent is
/// logged and dropped.
fn drain_answered_stream(mut stream: SseEvents, limit: Duration) {
    let first = match stream.next().now_or_never() {
        Some(None) => return,
        Some(Some(item)) => Some(item),
        None => None,
    };
    let rest = futures::stream::iter(first).chain(stream);
    tokio::spawn(async move {
        let read = rest.for_each(|item| {
            if let Ok(event) = &item
                && matches!(event_data(event), SseEventData::Message(_))
            {
                tracing::debug!("a message after a tool call's answer on the same SSE stream was dropped");
            }
            std::future::ready(())
        });
        if tokio::time::timeout(limit, read).await.is_err() {
            tracing::debug!(
                "the upstream kept a tool call's SSE stream open after its answer; the connection is closed"
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use futures::stream;
    use rmcp::model::ServerResult;
    use sse_stream::Error as SseError;

    use super::*;

    const ANSWER: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"hi"}]}}"#;
    const PROGRESS: &str =
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}"#;

    fn message(data: &str) -> Result<Sse, SseError> {
        Ok(Sse::default().data(data))
    }

    /// A resumption primer: an id, no data.
    fn primer() -> Result<Sse, SseError> {
        Ok(Sse::default().id("0").data(""))
    }

    async fn shortcut_of(
        call: Option<i64>,
        events: Vec<Result<Sse, SseError>>,
    ) -> StreamableHttpPostResponse {
        let response = StreamableHttpPostResponse::Sse(stream::iter(events).boxed(), Some("session".into()));
        answer_from_stream(call.map(RequestId::Number), response).await
    }

    /// The events of a response handed on as a stream: their data, or `error`.
    async fn replayed(response: StreamableHttpPostResponse) -> Vec<String> {
        let StreamableHttpPostResponse::Sse(stream, session) = response else {
            panic!("expected the stream to be handed on, got {response:?}");
        };
        assert_eq!(session.as_deref(), Some("session"));
        stream
            .map(|item| match item {
                Ok(event) => event.data.unwrap_or_default(),
                Err(_) => "error".to_owned(),
            })
            .collect()
            .await
    }

    fn assert_answered(response: StreamableHttpPostResponse) {
        let StreamableHttpPostResponse::Json(JsonRpcMessage::Response(answer), session) = response else {
            panic!("expected the answer as JSON, got {response:?}");
        };
        assert_eq!(session.as_deref(), Some("session"));
        assert_eq!(answer.id, RequestId::Number(7));
        let ServerResult::CallToolResult(result) = answer.result else {
            panic!("expected a tool result, got {:?}", answer.result);
        };
        assert_eq!(result.content[0].as_text().map(|text| text.text.as_str()), Some("hi"));
    }

    #[tokio::test]
    async fn a_stream_holding_only_the_answer_becomes_a_json_answer() {
        assert_answered(shortcut_of(Some(7), vec![message(ANSWER)]).await);
        assert_answered(shortcut_of(Some(7), vec![primer(), message("  "), message(ANSWER)]).await);
        let named = Ok(Sse::default().event("message").data(ANSWER));
        assert_answered(shortcut_of(Some(7), vec![named, message(PROGRESS)]).await);
    }

    #[tokio::test]
    async fn anything_else_is_handed_on_as_the_same_stream() {
        let error = r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32603,"message":"no"}}"#;
        let other = ANSWER.replace(r#""id":7"#, r#""id":8"#);
        // The call's id, the events the server sent, the data of the events handed on.
        type Case<'a> = (Option<i64>, Vec<Result<Sse, SseError>>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            // Not a tools/call: untouched.
            (None, vec![message(ANSWER)], vec![ANSWER]),
            // Progress first: rmcp relays it before the answer.
            (Some(7), vec![primer(), message(PROGRESS), message(ANSWER)], vec!["", PROGRESS, ANSWER]),
            (Some(7), vec![message(error)], vec![error]),
            (Some(7), vec![message(&other)], vec![&other]),
            (Some(7), vec![message("not json")], vec!["not json"]),
            (Some(7), vec![Ok(Sse::default().event("ping").data("x")), message(ANSWER)], vec!["x", ANSWER]),
            (Some(7), vec![Err(SseError::InvalidLine), message(ANSWER)], vec!["error", ANSWER]),
            (Some(7), vec![primer(), primer(), primer(), primer(), primer(), message(ANSWER)], {
                vec!["", "", "", "", "", ANSWER]
            }),
            (Some(7), vec![], vec![]),
        ];
        for (call, events, expected) in cases {
            let handed_on = replayed(shortcut_of(call, events).await).await;
            assert_eq!(handed_on, expected, "call {call:?}");
        }
        assert_answered(
            shortcut_of(Some(7), vec![primer(), primer(), primer(), primer(), message(ANSWER)]).await,
        );
    }

    #[tokio::test]
    async fn json_and_accepted_responses_are_untouched() {
        let json = serde_json::from_str::<ServerJsonRpcMessage>(ANSWER).expect("answer");
        let response = StreamableHttpPostResponse::Json(json, None);
        assert!(matches!(
            answer_from_stream(Some(RequestId::Number(7)), response).await,
            StreamableHttpPostResponse::Json(..)
        ));
        let response = StreamableHttpPostResponse::Accepted;
        assert!(matches!(
            answer_from_stream(Some(RequestId::Number(7)), response).await,
            StreamableHttpPostResponse::Accepted
        ));
    }

    #[tokio::test]
    async fn a_stream_left_open_after_the_answer_is_dropped_after_the_limit() {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Result<Sse, SseError>>();
        sender.send(message(PROGRESS)).expect("open");
        let stream = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        });
        drain_answered_stream(stream.boxed(), Duration::from_millis(50));
        tokio::time::timeout(Duration::from_secs(5), sender.closed()).await.expect("the stream was dropped");
    }
}

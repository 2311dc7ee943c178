//! [`Answers`]: the streamable HTTP client that reads a `tools/call` answer itself.
//!
//! A streamable HTTP server may answer any POST with an SSE stream, and most answer a
//! `tools/call` that way even when the stream holds nothing but the result. rmcp's
//! transport then spawns a task to read that stream and decodes each event as its
//! untagged `ServerJsonRpcMessage`, trying one result type after another (sixteen
//! failed attempts for a tool result): together about half of the bridge's whole cost
//! per call to an HTTP upstream. This wrapper, around the client that does the HTTP
//! (plain reqwest, or the OAuth bearer client), reads the first events of a
//! `tools/call`'s stream before handing the response to rmcp. When the first message
//! in it is that call's answer, it is decoded as `CallToolResult` directly (the decoder
//! the stdio transport uses) and handed over as a plain JSON response, which rmcp
//! delivers at once without a task. Anything else (progress first, a request from the
//! server, an error, an empty stream) is handed over as the same stream, with the
//! events already read put back in front, so rmcp sees exactly what the server sent.
//!
//! The stream's remaining bytes are read to its end (by a small task when the end has
//! not arrived with the answer, which with hyper is the usual case) so that the
//! connection goes back to the pool; a server that keeps the stream open after the
//! answer gets [`DRAIN_LIMIT`] before the connection is dropped.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::{FutureExt, StreamExt, stream::BoxStream};
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::{
    model::{
        ClientJsonRpcMessage, ClientRequest, GetExtensions, JsonRpcMessage, RequestId, ServerJsonRpcMessage,
    },
    transport::streamable_http_client::{
        StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
    },
};
use sse_stream::{Error as SseError, Sse};

use crate::{
    upstream::raw_results::{RawResultWanted, RawResults},
    wire::tool_response,
};

/// How long the rest of an answered stream may take to end before its connection is
/// dropped instead of reused.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Events without a message (a resumption primer, comments) read past before giving up
/// on the shortcut; more than a few means this is not a plain answer.
const MAX_EMPTY_EVENTS: usize = 4;

type SseStream = BoxStream<'static, Result<Sse, SseError>>;

#[derive(Clone)]
pub struct Answers<C> {
    inner: C,
    /// Offered the events of each `tools/list` response stream (`raw_results.rs`).
    raw_results: Arc<RawResults>,
}

impl<C> Answers<C> {
    pub fn new(inner: C, raw_results: Arc<RawResults>) -> Self {
        Self { inner, raw_results }
    }

    /// `response` as it came, a `tools/list` answer's stream offered to the capture on
    /// its way to rmcp; a `tools/call` answer read by [`shortcut`].
    async fn read(&self, message: &Kind, response: StreamableHttpPostResponse) -> StreamableHttpPostResponse {
        match (message, response) {
            (Kind::Raw, StreamableHttpPostResponse::Sse(stream, session_id)) => {
                let raw_results = self.raw_results.clone();
                let stream = stream.inspect(move |item| {
                    if let Ok(event) = item
                        && let Payload::Message(data) = payload(event)
                    {
                        raw_results.offer(data.as_bytes());
                    }
                });
                StreamableHttpPostResponse::Sse(stream.boxed(), session_id)
            }
            (Kind::ToolCall(call), response) => shortcut(Some(call.clone()), response).await,
            (_, response) => response,
        }
    }
}

/// What the bridge reads itself in a POST's response.
enum Kind {
    ToolCall(RequestId),
    /// A `tools/list`, or a request whose result is wanted as written (`raw_results.rs`).
    Raw,
    Other,
}

impl Kind {
    fn of(message: &ClientJsonRpcMessage) -> Self {
        match message {
            JsonRpcMessage::Request(request) => match request.request {
                ClientRequest::CallToolRequest(_) => Kind::ToolCall(request.id.clone()),
                ClientRequest::ListToolsRequest(_) => Kind::Raw,
                _ if request.request.extensions().get::<RawResultWanted>().is_some() => Kind::Raw,
                _ => Kind::Other,
            },
            _ => Kind::Other,
        }
    }
}

impl<C: StreamableHttpClient + Sync> StreamableHttpClient for Answers<C> {
    type Error = C::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let kind = Kind::of(&message);
        let response = self.inner.post_message(uri, message, session_id, auth_header, custom_headers).await?;
        Ok(self.read(&kind, response).await)
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let kind = Kind::of(&message);
        let response = self
            .inner
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await?;
        Ok(self.read(&kind, response).await)
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let kind = Kind::of(&message);
        let response = self
            .inner
            .post_message_with_response_limits(uri, message, session_id, auth_header, custom_headers, limits)
            .await?;
        Ok(self.read(&kind, response).await)
    }

    fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = Result<(), StreamableHttpError<Self::Error>>> + Send + '_ {
        self.inner.delete_session(uri, session_id, auth_header, custom_headers)
    }

    fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = Result<SseStream, StreamableHttpError<Self::Error>>> + Send + '_ {
        self.inner.get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
    }

    fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> impl Future<Output = Result<SseStream, StreamableHttpError<Self::Error>>> + Send + '_ {
        self.inner.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            max_sse_event_size,
        )
    }
}

/// `response` as a JSON response if it is an SSE stream whose first message answers
/// `call`; otherwise as it came.
async fn shortcut(
    call: Option<RequestId>,
    response: StreamableHttpPostResponse,
) -> StreamableHttpPostResponse {
    let (call, mut stream, session_id) = match (call, response) {
        (Some(call), StreamableHttpPostResponse::Sse(stream, session_id)) => (call, stream, session_id),
        (_, response) => return response,
    };
    let mut read = Vec::new();
    while let Some(item) = stream.next().await {
        let seen = match &item {
            Ok(event) => Seen::of(event, &call),
            Err(_) => Seen::Other,
        };
        match seen {
            Seen::Answer(answer) => {
                drain(stream, DRAIN_LIMIT);
                return StreamableHttpPostResponse::Json(*answer, session_id);
            }
            Seen::Empty if read.len() < MAX_EMPTY_EVENTS => read.push(item),
            Seen::Empty | Seen::Other => {
                read.push(item);
                break;
            }
        }
    }
    let replay = futures::stream::iter(read).chain(stream).boxed();
    StreamableHttpPostResponse::Sse(replay, session_id)
}

/// What one SSE event of a `tools/call`'s response is to the shortcut.
enum Seen {
    /// No message in it (a resumption primer, a keep-alive): look at the next one.
    Empty,
    /// The call's answer, decoded.
    Answer(Box<ServerJsonRpcMessage>),
    /// Anything else: a control event, another message, or an answer that only the
    /// general decoder reads. The stream is left to rmcp.
    Other,
}

impl Seen {
    fn of(event: &Sse, call: &RequestId) -> Self {
        match payload(event) {
            Payload::Empty => Seen::Empty,
            Payload::Control => Seen::Other,
            Payload::Message(data) => tool_response(data.as_bytes(), |id| id == call)
                .map_or(Seen::Other, |answer| Seen::Answer(Box::new(answer))),
        }
    }
}

enum Payload<'a> {
    Empty,
    Control,
    Message(&'a str),
}

/// Which events carry a message, decided as rmcp does: those named `message`, or not
/// named, whose data is not blank.
fn payload(event: &Sse) -> Payload<'_> {
    if !matches!(event.event.as_deref(), None | Some("" | "message")) {
        return Payload::Control;
    }
    match event.data.as_deref() {
        Some(data) if !data.trim().is_empty() => Payload::Message(data),
        _ => Payload::Empty,
    }
}

/// Read what is left of an answered stream, so that its connection can be reused. If
/// the end is already there, that is all; with hyper it mostly is not (its connection
/// task delivers the end after the answer), and a task waits for it, up to `limit`. A
/// server sends nothing for a call after its answer; should one, what it sent is
/// logged and dropped.
fn drain(mut stream: SseStream, limit: Duration) {
    let first = match stream.next().now_or_never() {
        Some(None) => return,
        Some(Some(item)) => Some(item),
        None => None,
    };
    let rest = futures::stream::iter(first).chain(stream);
    tokio::spawn(async move {
        let read = rest.for_each(|item| {
            if let Ok(event) = &item
                && matches!(payload(event), Payload::Message(_))
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
        shortcut(call.map(RequestId::Number), response).await
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
            let seen = replayed(shortcut_of(call, events).await).await;
            assert_eq!(seen, expected, "call {call:?}");
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
            shortcut(Some(RequestId::Number(7)), response).await,
            StreamableHttpPostResponse::Json(..)
        ));
        let response = StreamableHttpPostResponse::Accepted;
        assert!(matches!(
            shortcut(Some(RequestId::Number(7)), response).await,
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
        drain(stream.boxed(), Duration::from_millis(50));
        tokio::time::timeout(Duration::from_secs(5), sender.closed()).await.expect("the stream was dropped");
    }
}

//! [`JsonAnswerClient`]: the streamable HTTP client at the bottom of every streamable
//! HTTP upstream, which POSTs the requests whose results are wanted as written itself,
//! so that an answer sent as one `application/json` body reaches the raw-result capture.
//!
//! rmcp's reqwest client decodes a JSON body into its own types before any layer sees
//! it, so fields it does not model (a tool's `execution`, a vendor's field) would be lost
//! on that path (an SSE answer is read by `response_reader.rs`). For a request that
//! `response_reader::wants_raw_result` marks (`tools/list` and the other lists, all
//! idempotent), this client sends the POST with the same headers rmcp would: `Accept`
//! for both JSON and SSE, the bearer token it was given, the session id, and the
//! transport's own headers (the configured ones and the negotiated protocol version).
//! A `200` answer with a JSON body within `max_json_response_size` is offered to the
//! capture and handed to rmcp decoded, exactly as rmcp's client would hand it. Any
//! other answer (an SSE stream, `202`, `401`/`403`/`404`, another status, a body that is
//! not one JSON-RPC message) is dropped and the request sent again through rmcp's
//! client, which handles it as for every other request; since only idempotent requests
//! take this path, the second send is harmless, and it happens at most once per call.
//! A failure to reach the server, or a body over the limit, is returned as rmcp's client
//! would return it, without a second send.
//!
//! The token is only put on the request; it is never logged.

use std::{collections::HashMap, sync::Arc};

use futures::StreamExt;
use reqwest::{
    StatusCode,
    header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue},
};
use rmcp::{
    model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage, ServerJsonRpcMessage},
    transport::streamable_http_client::{
        StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
    },
};

use super::response_reader::wants_raw_result;
use crate::http_client::HttpLayerError;
use crate::{http_client::SseEvents, upstream::raw_results::RawResults};

/// The session header of streamable HTTP.
const SESSION_ID: &str = "mcp-session-id";
/// What a streamable HTTP client accepts in answer to a POST.
const POST_ACCEPT: &str = "text/event-stream, application/json";
/// Headers the transport sets itself; a custom header by one of these names is left
/// to rmcp's client to refuse.
const RESERVED: [&str; 3] = ["accept", SESSION_ID, "last-event-id"];

/// rmcp's reqwest client, but for POSTs of requests whose results are wanted as
/// written (see the module doc).
#[derive(Clone)]
pub struct JsonAnswerClient {
    http: reqwest::Client,
    raw_results: Arc<RawResults>,
}

impl JsonAnswerClient {
    pub fn new(http: reqwest::Client, raw_results: Arc<RawResults>) -> Self {
        Self { http, raw_results }
    }

    /// POST `message` and read a `200` answer, as rmcp is to read it: a JSON body read
    /// here and offered to the capture, an event stream handed on (bounded per event as
    /// rmcp bounds it; the layer above offers its messages). An error is a failure to
    /// send or read, as rmcp's client reports it; `None` is any other answer, dropped
    /// (the request is to be sent again through rmcp's client, which handles
    /// challenges, lost sessions and errors).
    async fn post_for_json(
        &self,
        uri: &str,
        message: &ClientJsonRpcMessage,
        session_id: Option<&str>,
        auth_header: Option<&str>,
        custom_headers: &HashMap<HeaderName, HeaderValue>,
        limits: &StreamableHttpResponseLimits,
    ) -> Result<Option<StreamableHttpPostResponse>, HttpLayerError<reqwest::Client>> {
        let mut request = self.http.post(uri).header(ACCEPT, POST_ACCEPT);
        if let Some(token) = auth_header {
            request = request.bearer_auth(token);
        }
        for (name, value) in custom_headers {
            if RESERVED.iter().any(|reserved| name.as_str().eq_ignore_ascii_case(reserved)) {
                return Ok(None);
            }
            request = request.header(name, value);
        }
        if let Some(session_id) = session_id {
            request = request.header(SESSION_ID, session_id);
        }
        let response = request.json(message).send().await.map_err(StreamableHttpError::Client)?;
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(|essence| essence.trim().to_ascii_lowercase());
        let answered_session =
            response.headers().get(SESSION_ID).and_then(|value| value.to_str().ok()).map(str::to_owned);
        if response.status() == StatusCode::OK && media_type.as_deref() == Some("text/event-stream") {
            let events = super::sse::bounded_event_stream(response, limits.max_sse_event_size);
            return Ok(Some(StreamableHttpPostResponse::Sse(events, answered_session)));
        }
        if response.status() != StatusCode::OK || media_type.as_deref() != Some("application/json") {
            tracing::debug!(
                status = %response.status(),
                "a list request was not answered with one JSON body; it is sent again through rmcp's client"
            );
            return Ok(None);
        }
        let body = read_body(response, limits.max_json_response_size).await?;
        let Ok(answer) = serde_json::from_slice::<ServerJsonRpcMessage>(&body) else { return Ok(None) };
        self.raw_results.offer(&body);
        Ok(Some(StreamableHttpPostResponse::Json(answer, answered_session)))
    }
}

/// The whole body of `response`, or [`StreamableHttpError::ResponseBodyTooLarge`] once
/// it (or its announced length) passes `max_size`.
async fn read_body(
    response: reqwest::Response,
    max_size: usize,
) -> Result<Vec<u8>, HttpLayerError<reqwest::Client>> {
    let too_large = || StreamableHttpError::ResponseBodyTooLarge { max_size };
    if response.content_length().is_some_and(|length| length > max_size as u64) {
        return Err(too_large());
    }
    let mut chunks = response.bytes_stream();
    let mut body = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(StreamableHttpError::Client)?;
        if chunk.len() > max_size - body.len() {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl StreamableHttpClient for JsonAnswerClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, HttpLayerError<reqwest::Client>> {
        let limits = StreamableHttpResponseLimits::default();
        self.post_message_with_response_limits(uri, message, session_id, auth_header, custom_headers, limits)
            .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, HttpLayerError<reqwest::Client>> {
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_sse_event_size = max_sse_event_size;
        self.post_message_with_response_limits(uri, message, session_id, auth_header, custom_headers, limits)
            .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, HttpLayerError<reqwest::Client>> {
        if posts_itself(&message)
            && let Some(answer) = self
                .post_for_json(
                    &uri,
                    &message,
                    session_id.as_deref(),
                    auth_header.as_deref(),
                    &custom_headers,
                    &limits,
                )
                .await?
        {
            return Ok(answer);
        }
        self.http
            .post_message_with_response_limits(uri, message, session_id, auth_header, custom_headers, limits)
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), HttpLayerError<reqwest::Client>> {
        self.http.delete_session(uri, session_id, auth_header, custom_headers).await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<SseEvents, HttpLayerError<reqwest::Client>> {
        self.http.get_stream(uri, session_id, last_event_id, auth_header, custom_headers).await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<SseEvents, HttpLayerError<reqwest::Client>> {
        self.http
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}

/// Whether this client POSTs `message` itself: a request whose result is wanted as
/// written, and which may be sent twice (a list, or reading a task), since an answer
/// other than a `200` is dropped and the request sent again through rmcp's client. A
/// `tools/call` (with a task or not), `tasks/result` or `tasks/cancel` never is.
fn posts_itself(message: &ClientJsonRpcMessage) -> bool {
    let JsonRpcMessage::Request(request) = message else { return false };
    let idempotent = match &request.request {
        ClientRequest::ListToolsRequest(_) => true,
        ClientRequest::CustomRequest(custom) => matches!(custom.method.as_str(), "tasks/get" | "tasks/list"),
        _ => false,
    };
    idempotent && wants_raw_result(message)
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    };

    use axum::{body::Body, http::HeaderMap, response::Response};
    use rmcp::model::RequestId;
    use serde_json::{Value, json};

    use super::*;

    const LISTED: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","inputSchema":{"type":"object"},"execution":{"taskSupport":"optional"}}]}}"#;

    /// A loopback server answering every request with `respond()`: its URL, how many
    /// requests it got, and the headers of the last one.
    struct TestServer {
        url: Arc<str>,
        requests: Arc<AtomicUsize>,
        headers: Arc<Mutex<HeaderMap>>,
    }

    async fn serve(respond: fn() -> Response) -> TestServer {
        let requests = Arc::new(AtomicUsize::new(0));
        let headers = Arc::new(Mutex::new(HeaderMap::new()));
        let (counted, seen) = (requests.clone(), headers.clone());
        let app = axum::Router::new().fallback(move |request_headers: HeaderMap| {
            counted.fetch_add(1, Ordering::SeqCst);
            *seen.lock().expect("headers") = request_headers;
            std::future::ready(respond())
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/mcp", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        TestServer { url: url.into(), requests, headers }
    }

    fn answer(status: u16, content_type: &str, body: &'static str) -> Response {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .header("mcp-session-id", "answered")
            .header("www-authenticate", r#"Bearer resource_metadata="http://127.0.0.1/x""#)
            .body(Body::from(body))
            .expect("a response")
    }

    fn message(value: Value) -> ClientJsonRpcMessage {
        serde_json::from_value(value).expect("a client message")
    }

    fn tools_list() -> ClientJsonRpcMessage {
        message(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
    }

    /// POST `sent` to `server` as rmcp's transport does, with `max_json` as the JSON
    /// limit; the response and the raw result captured for id 1.
    async fn post(
        server: &TestServer,
        sent: ClientJsonRpcMessage,
        max_json: usize,
    ) -> (Result<StreamableHttpPostResponse, HttpLayerError<reqwest::Client>>, Option<Value>) {
        let raw_results = Arc::new(RawResults::default());
        raw_results.expect(RequestId::Number(1));
        crate::http_client::install_crypto_provider();
        let client = JsonAnswerClient::new(reqwest::Client::new(), raw_results.clone());
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_json_response_size = max_json;
        let custom = HashMap::from([
            (HeaderName::from_static("x-custom"), HeaderValue::from_static("yes")),
            (HeaderName::from_static("mcp-protocol-version"), HeaderValue::from_static("2025-11-25")),
        ]);
        let response = client
            .post_message_with_response_limits(
                server.url.clone(),
                sent,
                Some("session".into()),
                Some("token".to_owned()),
                custom,
                limits,
            )
            .await;
        (response, raw_results.take(&RequestId::Number(1)))
    }

    #[tokio::test]
    async fn a_list_answered_as_one_json_body_is_captured_and_sent_once() {
        let server = serve(|| answer(200, "application/json; charset=utf-8", LISTED)).await;
        let (response, raw) = post(&server, tools_list(), 1 << 20).await;
        let Ok(StreamableHttpPostResponse::Json(_, session)) = response else {
            panic!("expected the JSON answer, got {response:?}");
        };
        assert_eq!(session.as_deref(), Some("answered"));
        assert_eq!(raw.expect("captured")["tools"][0]["execution"], json!({"taskSupport": "optional"}));
        assert_eq!(server.requests.load(Ordering::SeqCst), 1);
        let headers = server.headers.lock().expect("headers").clone();
        for (name, value) in [
            ("authorization", "Bearer token"),
            ("mcp-session-id", "session"),
            ("x-custom", "yes"),
            ("mcp-protocol-version", "2025-11-25"),
            ("accept", POST_ACCEPT),
            ("content-type", "application/json"),
        ] {
            assert_eq!(headers.get(name).and_then(|value| value.to_str().ok()), Some(value), "{name}");
        }
    }

    #[tokio::test]
    async fn an_event_stream_is_handed_on_and_any_other_answer_left_to_rmcps_client() {
        let sse = serve(|| answer(200, "text/event-stream", "data: {}\n\n")).await;
        let (response, _) = post(&sse, tools_list(), 1 << 20).await;
        assert!(matches!(response, Ok(StreamableHttpPostResponse::Sse(..))), "{response:?}");
        assert_eq!(sse.requests.load(Ordering::SeqCst), 1, "an event stream is not asked for twice");

        let unauthorized = serve(|| answer(401, "text/plain", "no")).await;
        let (response, _) = post(&unauthorized, tools_list(), 1 << 20).await;
        assert!(matches!(response, Err(StreamableHttpError::AuthRequired(_))), "{response:?}");
        assert_eq!(unauthorized.requests.load(Ordering::SeqCst), 2);

        let accepted = serve(|| answer(202, "application/json", "")).await;
        let (response, _) = post(&accepted, tools_list(), 1 << 20).await;
        assert!(matches!(response, Ok(StreamableHttpPostResponse::Accepted)), "{response:?}");
        assert_eq!(accepted.requests.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_json_body_over_the_limit_fails_as_rmcps_client_fails_it() {
        let server = serve(|| answer(200, "application/json", LISTED)).await;
        let (response, raw) = post(&server, tools_list(), 16).await;
        assert!(
            matches!(response, Err(StreamableHttpError::ResponseBodyTooLarge { max_size: 16 })),
            "{response:?}"
        );
        assert!(raw.is_none());
        assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn only_requests_that_may_be_sent_twice_are_posted_here() {
        let raw = |method: &str| {
            let mut request =
                ClientRequest::CustomRequest(rmcp::model::CustomRequest::new(method, Some(json!({}))));
            rmcp::model::GetExtensions::extensions_mut(&mut request)
                .insert(crate::upstream::raw_results::RawResultWanted);
            ClientJsonRpcMessage::request(request, rmcp::model::RequestId::Number(1))
        };
        assert!(posts_itself(&tools_list()));
        assert!(posts_itself(&raw("tasks/get")) && posts_itself(&raw("tasks/list")));
        for once in ["tools/call", "tasks/result", "tasks/cancel"] {
            assert!(!posts_itself(&raw(once)), "{once} must be sent once");
        }
    }

    #[tokio::test]
    async fn other_requests_go_through_rmcps_client_only() {
        let server = serve(|| answer(200, "application/json", LISTED)).await;
        let call =
            message(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "a"}}));
        let (response, raw) = post(&server, call, 1 << 20).await;
        assert!(matches!(response, Ok(StreamableHttpPostResponse::Json(..))), "{response:?}");
        assert!(raw.is_none(), "not offered to the capture");
        assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    }
}

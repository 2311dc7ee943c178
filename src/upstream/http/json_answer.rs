//! [`JsonAnswerClient`]: the streamable HTTP client at the bottom of every streamable
//! HTTP upstream, which POSTs the requests whose results are wanted as written itself,
//! so that an answer sent as one `application/json` body reaches the raw-result capture.
//!
//! rmcp's reqwest client decodes a JSON body into its own types before any layer sees
//! it, so fields it does not model (a tool's `execution`, a vendor's field) would be lost
//! on that path (an SSE answer is read by `response_reader.rs`). For a request that
//! `ResponseReading` reads as a raw capture (`tools/list` and the other lists, all
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
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    transport::streamable_http_client::{
        StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
    },
};

use super::response_reader::ResponseReading;
use crate::{http_client::SseEvents, upstream::raw_results::RawResults};

/// The session header of streamable HTTP.
const SESSION_ID: &str = "mcp-session-id";
/// What a streamable HTTP client accepts in answer to a POST.
const POST_ACCEPT: &str = "text/event-stream, application/json";
/// Headers the transport sets itself; a custom header by one of these names is left
/// to rmcp's client to refuse.
const RESERVED: [&str; 3] = ["accept", SESSION_ID, "last-event-id"];

type HttpError = StreamableHttpError<reqwest::Error>;

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

    /// POST `message` and read a `200` JSON answer, as rmcp is to read it. An error is
    /// a failure to send or read, as rmcp's client reports it; `None` is any other
    /// answer, dropped (the request is to be sent again through rmcp's client).
    async fn post_for_json(
        &self,
        uri: &str,
        message: &ClientJsonRpcMessage,
        session_id: Option<&str>,
        auth_header: Option<&str>,
        custom_headers: &HashMap<HeaderName, HeaderValue>,
        max_body: usize,
    ) -> Result<Option<StreamableHttpPostResponse>, HttpError> {
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
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
        if response.status() != StatusCode::OK || !is_json {
            tracing::debug!(
                status = %response.status(),
                "a list request was not answered with one JSON body; it is sent again through rmcp's client"
            );
            return Ok(None);
        }
        let answered_session =
            response.headers().get(SESSION_ID).and_then(|value| value.to_str().ok()).map(str::to_owned);
        let body = read_body(response, max_body).await?;
        let Ok(answer) = serde_json::from_slice::<ServerJsonRpcMessage>(&body) else { return Ok(None) };
        self.raw_results.offer(&body);
        Ok(Some(StreamableHttpPostResponse::Json(answer, answered_session)))
    }
}

/// The whole body of `response`, or [`StreamableHttpError::ResponseBodyTooLarge`] once
/// it (or its announced length) passes `max_size`.
async fn read_body(response: reqwest::Response, max_size: usize) -> Result<Vec<u8>, HttpError> {
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
    ) -> Result<StreamableHttpPostResponse, HttpError> {
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
    ) -> Result<StreamableHttpPostResponse, HttpError> {
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
    ) -> Result<StreamableHttpPostResponse, HttpError> {
        if matches!(ResponseReading::of(&message), ResponseReading::RawCapture)
            && let Some(answer) = self
                .post_for_json(
                    &uri,
                    &message,
                    session_id.as_deref(),
                    auth_header.as_deref(),
                    &custom_headers,
                    limits.max_json_response_size,
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
    ) -> Result<(), HttpError> {
        self.http.delete_session(uri, session_id, auth_header, custom_headers).await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<SseEvents, HttpError> {
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
    ) -> Result<SseEvents, HttpError> {
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

//! The legacy HTTP+SSE client transport (MCP 2024-11-05), which rmcp does not have.
//!
//! The client opens a `GET` event stream; the server's first event, `endpoint`, names
//! the URL to `POST` JSON-RPC messages to (an endpoint on another origin is refused);
//! every server message then arrives on the stream as a `message` event, which a reader
//! task turns into a JSON-RPC message. The task is aborted when the transport is closed
//! or dropped. SSE framing is parsed by the `sse-stream` crate.
//!
//! A legacy session lives and dies with its stream: when the stream ends, `receive`
//! returns `None` and the supervisor starts a new session (the server has dropped
//! the old one), rather than resuming.
//!
//! Memory stays bounded: an event longer than `maxMessageBytes` ends the stream (the
//! parser would otherwise buffer it whole), and a `POST` that gets no answer within the
//! upstream's `timeout` fails instead of hanging.
//!
//! With OAuth, every request carries the upstream's current token, asked of the
//! `TokenSource` each time (so it refreshes by expiry); a 401 with a challenge on the
//! `GET` is [`SseTransportError::AuthRequired`], which starts discovery and sign-in. A
//! `POST` answered 401 is sent once more with a newer token (a refresh, or another
//! process's), so an access token that the server stops accepting mid-session does not
//! end the session.

use std::{future::Future, sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use rmcp::{
    model::ServerJsonRpcMessage,
    service::{RoleClient, RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};
use sse_stream::SseStream;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::bytes::Bytes;
use url::Url;

use crate::upstream::raw_results::RawResults;
use crate::{
    config::Secret,
    http_client::{describe_http_error, describe_status},
    oauth::TokenSource,
};

/// Messages buffered from the event stream before the reader waits.
const INBOX: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum SseTransportError {
    #[error("{0}")]
    Http(String),
    #[error("the server answered the POST with HTTP {0}")]
    Status(u16),
    /// HTTP 401 with this `WWW-Authenticate` challenge.
    #[error("{}", describe_status(401, None))]
    AuthRequired(String),
}

pub struct SseTransport {
    client: reqwest::Client,
    /// Bearer tokens for OAuth upstreams, fetched per request (they refresh).
    tokens: Option<Arc<TokenSource>>,
    /// Where messages are POSTed, as announced by the `endpoint` event.
    endpoint: Arc<Url>,
    headers: reqwest::header::HeaderMap,
    /// The data of each `message` event, in order.
    inbox: mpsc::Receiver<String>,
    reader: JoinHandle<()>,
    /// How long a `POST` may take.
    timeout: Duration,
    upstream: Arc<str>,
    /// Offered every message, to keep marked answers (`tools/list`, tasks) as written (`raw_results.rs`).
    raw_results: Option<Arc<RawResults>>,
}

impl SseTransport {
    /// Offer every incoming message to `raw_results`.
    pub fn with_raw_results(mut self, raw_results: Arc<RawResults>) -> Self {
        self.raw_results = Some(raw_results);
        self
    }
}

impl Drop for SseTransport {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Why the byte stream under the SSE parser ended.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("{}", describe_http_error(.0))]
    Http(reqwest::Error),
    #[error("an event exceeded the {0} byte limit (`bridge.maxMessageBytes`)")]
    TooLarge(usize),
}

/// The event stream of `response`, for rmcp's streamable HTTP client: it ends with an
/// error once an event grows past `max` bytes.
pub(super) fn bounded_event_stream(response: reqwest::Response, max: usize) -> crate::http_client::SseEvents {
    SseStream::from_bytes_stream(bounded_events(response.bytes_stream(), max)).boxed()
}

/// `bytes`, ended with [`StreamError::TooLarge`] once more than `max` bytes arrive without
/// an event boundary (a blank line) among them.
fn bounded_events(
    bytes: impl Stream<Item = Result<Bytes, reqwest::Error>>,
    max: usize,
) -> impl Stream<Item = Result<Bytes, StreamError>> {
    /// Bytes since the last event boundary, the last bytes of the previous chunk (so a
    /// boundary split across chunks is seen), and whether the limit was hit.
    struct Count {
        since_boundary: usize,
        tail: Vec<u8>,
        failed: bool,
    }
    let boundary_in = |bytes: &[u8]| {
        (0..bytes.len()).rev().find(|&at| {
            let rest = &bytes[at..];
            rest.starts_with(b"\n\n") || rest.starts_with(b"\r\r") || rest.starts_with(b"\r\n\r\n")
        })
    };
    let start = Count { since_boundary: 0, tail: Vec::new(), failed: false };
    bytes.scan(start, move |count, chunk| {
        let item = if count.failed {
            None
        } else {
            match chunk {
                Err(error) => Some(Err(StreamError::Http(error))),
                Ok(chunk) => {
                    let mut window = std::mem::take(&mut count.tail);
                    let carried = window.len();
                    window.extend_from_slice(&chunk[..chunk.len().min(4)]);
                    count.since_boundary = match boundary_in(&chunk) {
                        Some(at) => chunk.len() - at,
                        None if boundary_in(&window).is_some_and(|at| at < carried) => chunk.len(),
                        None => count.since_boundary + chunk.len(),
                    };
                    count.tail = chunk[chunk.len().saturating_sub(3)..].to_vec();
                    if count.since_boundary > max {
                        count.failed = true;
                        Some(Err(StreamError::TooLarge(max)))
                    } else {
                        Some(Ok(chunk))
                    }
                }
            }
        };
        std::future::ready(item)
    })
}

/// The bearer token to send, if this upstream uses OAuth and has one.
async fn bearer(tokens: Option<&Arc<TokenSource>>) -> Result<Option<String>, SseTransportError> {
    let Some(tokens) = tokens else { return Ok(None) };
    Ok(current_token(tokens).await?.map(|token| format!("Bearer {}", token.expose())))
}

/// The access token of an OAuth upstream; `None` when it has none (the server's 401
/// then starts the sign-in).
async fn current_token(tokens: &TokenSource) -> Result<Option<Secret>, SseTransportError> {
    match tokens.access_token().await {
        Ok(token) => Ok(Some(token)),
        Err(crate::oauth::OAuthError::SignInRequired { .. }) => Ok(None),
        Err(error) => Err(SseTransportError::Http(error.to_string())),
    }
}

/// Open the event stream at `url` and wait (up to `timeout`) for the `endpoint` event.
pub async fn connect(
    client: reqwest::Client,
    url: &str,
    headers: reqwest::header::HeaderMap,
    tokens: Option<Arc<TokenSource>>,
    timeout: Duration,
    max_bytes: usize,
    upstream: &str,
) -> Result<SseTransport, SseTransportError> {
    let base =
        Url::parse(url).map_err(|error| SseTransportError::Http(format!("invalid URL `{url}`: {error}")))?;
    let mut request = client.get(base.clone()).headers(headers.clone()).header(ACCEPT, "text/event-stream");
    if let Some(bearer) = bearer(tokens.as_ref()).await? {
        request = request.header(AUTHORIZATION, bearer);
    }
    let response = tokio::time::timeout(timeout, request.send())
        .await
        .map_err(|_| SseTransportError::Http(format!("no answer within {} s", timeout.as_secs())))?
        .map_err(|error| SseTransportError::Http(describe_http_error(&error)))?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED
        && let Some(challenge) =
            response.headers().get(WWW_AUTHENTICATE).and_then(|value| value.to_str().ok())
    {
        return Err(SseTransportError::AuthRequired(challenge.to_owned()));
    }
    if !status.is_success() {
        return Err(SseTransportError::Http(describe_status(status.as_u16(), None)));
    }
    let content_type =
        response.headers().get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("").to_owned();
    if !content_type.starts_with("text/event-stream") {
        return Err(SseTransportError::Http(format!(
            "the server answered with `{content_type}`, not an event stream (is the URL right? is it a login page?)"
        )));
    }
    let mut events = SseStream::from_bytes_stream(bounded_events(response.bytes_stream(), max_bytes));
    let endpoint = tokio::time::timeout(timeout, async {
        while let Some(event) = events.next().await {
            let event = event.map_err(|error| format!("the event stream broke: {error}"))?;
            if event.event.as_deref() == Some("endpoint") {
                let data = event.data.unwrap_or_default();
                return base
                    .join(data.trim())
                    .map_err(|error| format!("bad `endpoint` event `{data}`: {error}"));
            }
        }
        Err("the event stream ended before the `endpoint` event".to_owned())
    })
    .await
    .map_err(|_| {
        format!("no `endpoint` event within {} s (is this a legacy SSE endpoint?)", timeout.as_secs())
    })
    .and_then(|endpoint| endpoint)
    .map_err(SseTransportError::Http)?;
    if endpoint.origin() != base.origin() {
        // The spec says the endpoint is on the same server; refuse to send messages
        // (and headers with credentials) anywhere else.
        return Err(SseTransportError::Http(format!(
            "the server announced an endpoint on another origin: `{endpoint}`"
        )));
    }
    let (tx, inbox) = mpsc::channel(INBOX);
    let upstream_name = upstream.to_owned();
    let reader = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(upstream = %upstream_name, "SSE stream error: {error}");
                    break;
                }
            };
            if !matches!(event.event.as_deref(), None | Some("message")) {
                continue;
            }
            let Some(data) = event.data else { continue };
            if tx.send(data).await.is_err() {
                break;
            }
        }
    });
    Ok(SseTransport {
        client,
        tokens,
        endpoint: Arc::new(endpoint),
        headers,
        inbox,
        reader,
        timeout,
        upstream: upstream.into(),
        raw_results: None,
    })
}

impl Transport<RoleClient> for SseTransport {
    type Error = SseTransportError;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let request = (self.client.post(self.endpoint.as_ref().clone()))
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .json(&crate::upstream::client_tasks::declare_tasks(item));
        let tokens = self.tokens.clone();
        async move {
            let mut token = match &tokens {
                Some(tokens) => current_token(tokens).await?,
                None => None,
            };
            let mut retried = false;
            loop {
                let mut attempt = request
                    .try_clone()
                    .ok_or_else(|| SseTransportError::Http("the message cannot be sent again".to_owned()))?;
                if let Some(token) = &token {
                    attempt = attempt.header(AUTHORIZATION, format!("Bearer {}", token.expose()));
                }
                let response = attempt
                    .send()
                    .await
                    .map_err(|error| SseTransportError::Http(describe_http_error(&error)))?;
                let status = response.status();
                // The token was rejected mid-session: ask for a newer one (a refresh, or
                // another process's) and send once more, as the streamable HTTP client does.
                if status == reqwest::StatusCode::UNAUTHORIZED
                    && !retried
                    && let (Some(tokens), Some(sent)) = (&tokens, &token)
                    && let Ok(fresh) = tokens.after_rejection(sent).await
                    && &fresh != sent
                {
                    retried = true;
                    token = Some(fresh);
                    continue;
                }
                return if status.is_success() {
                    Ok(())
                } else {
                    Err(SseTransportError::Status(status.as_u16()))
                };
            }
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        loop {
            let data = self.inbox.recv().await?;
            if let Some(raw_results) = &self.raw_results {
                raw_results.offer(data.as_bytes());
            }
            match serde_json::from_str::<ServerJsonRpcMessage>(&data) {
                Ok(message) => return Some(message),
                Err(error) => {
                    tracing::warn!(upstream = %self.upstream, "dropped an SSE message that is not JSON-RPC: {error}");
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.reader.abort();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(chunks: &[&str], max: usize) -> (usize, bool) {
        let chunks: Vec<Result<Bytes, reqwest::Error>> =
            chunks.iter().map(|chunk| Ok(Bytes::from(chunk.to_string()))).collect();
        let items: Vec<_> = bounded_events(futures::stream::iter(chunks), max).collect().await;
        let passed = items.iter().filter(|item| item.is_ok()).count();
        let too_large = items.iter().any(|item| matches!(item, Err(StreamError::TooLarge(_))));
        (passed, too_large)
    }

    #[tokio::test]
    async fn events_are_bounded_between_blank_lines() {
        // Many small events, boundaries in every position, a boundary split over chunks.
        let small = ["data: 12345\n\n", "data: 1234", "5\n", "\ndata: 12", "345\r\n\r\n"];
        assert_eq!(run(&small, 16).await, (5, false));
        // One event growing past the limit over several chunks ends the stream.
        let big = ["data: 12345", "6789012345", "678\n\n", "data: x\n\n"];
        assert_eq!(run(&big, 16).await, (1, true));
        // A chunk may hold several events; only the bytes after its last boundary count.
        let packed = ["data: a\n\ndata: b\n\ndata: c\n\n0123456789", "\n\n"];
        assert_eq!(run(&packed, 12).await, (2, false));
    }
}

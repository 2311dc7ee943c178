//! Remote upstreams over HTTP: the reqwest client of a remote upstream, the streamable
//! HTTP transport (rmcp's), and transport auto-detection.
//!
//! - [`http_client`] builds the upstream's reqwest client: rustls with the ring provider,
//!   `verify_ssl` (a warning in the log when it is off), the connect timeout, and TCP
//!   keep-alive with pooled idle connections kept for twice its interval.
//! - [`streamable_config`] is rmcp's streamable HTTP transport configuration: the
//!   configured `headers` (marked sensitive), `maxMessageBytes` as the limit of a JSON
//!   response and of one SSE event, and `reinit_on_expired_session`, with which rmcp
//!   answers a 404 for a lost session by repeating `initialize` and sending the request
//!   once more. [`streamable_transport`] layers `response_reader.rs` over the client
//!   (the bottom one, or the OAuth bearer client over it). The bottom client is
//!   [`JsonAnswerClient`] (`json_answer.rs`): rmcp's reqwest client, but for the POSTs
//!   of lists, whose answers sent as one JSON body it offers to the raw-result capture.
//! - [`challenge`] finds the `WWW-Authenticate` challenge of a 401 in an `initialize`
//!   failure, from either transport, which is what starts OAuth discovery.
//! - [`should_fall_back_to_sse`] is the auto-detection rule: a streamable HTTP
//!   `initialize` answered with a 4xx other than 401/403, or with a content type that is
//!   not MCP, means the URL is a legacy SSE endpoint; any other failure is a failure.
//! - `sse.rs` is the legacy HTTP+SSE transport, which rmcp does not have.
//!
//! The wording of HTTP failures is shared with the OAuth client (`http_client/`).

use std::{collections::HashMap, error::Error as StdError, sync::Arc, time::Duration};

use reqwest::header::{HeaderName, HeaderValue};
use rmcp::{
    service::ClientInitializeError,
    transport::{
        StreamableHttpClientTransport,
        streamable_http_client::{
            StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
        },
    },
};

mod json_answer;
mod response_reader;
pub mod sse;

pub use self::json_answer::JsonAnswerClient;
use self::response_reader::ResponseReader;
use super::raw_results::RawResults;
pub use crate::http_client::{describe_initialize, describe_status};
use crate::{
    config::RemoteSettings,
    http_client::{LayeredHttpClient, describe_http_error, install_crypto_provider},
};

/// Idle HTTP connections are kept this long, and TCP keep-alive probes sent this
/// often, so a quiet upstream's connection survives NATs and load balancers.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// The HTTP client for one remote upstream: its TLS policy and connect timeout.
pub fn http_client(
    name: &str,
    remote: &RemoteSettings,
    connect_timeout: Duration,
) -> Result<reqwest::Client, String> {
    install_crypto_provider();
    if !remote.verify_ssl {
        tracing::warn!(
            upstream = %name,
            "TLS certificate verification is OFF for this upstream (verify_ssl: false); use this only for development"
        );
    }
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .tcp_keepalive(KEEP_ALIVE)
        .pool_idle_timeout(KEEP_ALIVE * 2)
        .tls_danger_accept_invalid_certs(!remote.verify_ssl)
        .build()
        .map_err(|error| format!("cannot set up the HTTP client: {}", describe_http_error(&error)))
}

/// The configured `headers`, as HTTP header values. (The config loader has checked
/// names and values already.)
pub fn headers(remote: &RemoteSettings) -> HashMap<HeaderName, HeaderValue> {
    remote
        .headers
        .iter()
        .filter_map(|(name, value)| {
            let name = HeaderName::try_from(name.as_str()).ok()?;
            let mut value = HeaderValue::try_from(value.expose()).ok()?;
            value.set_sensitive(true);
            Some((name, value))
        })
        .collect()
}

/// The streamable HTTP transport settings for `remote`.
pub fn streamable_config(
    remote: &RemoteSettings,
    max_message_bytes: usize,
) -> StreamableHttpClientTransportConfig {
    StreamableHttpClientTransportConfig::with_uri(remote.url.as_str())
        .custom_headers(headers(remote))
        .max_json_response_size(max_message_bytes)
        .max_sse_event_size(max_message_bytes)
        .reinit_on_expired_session(true)
}

/// A streamable HTTP transport over `client` ([`JsonAnswerClient`], or the OAuth bearer
/// client), which reads `tools/call` answers itself (`response_reader.rs`).
pub fn streamable_transport<C: StreamableHttpClient + Sync>(
    client: C,
    remote: &RemoteSettings,
    max_message_bytes: usize,
    raw_results: Arc<RawResults>,
) -> StreamableHttpClientTransport<LayeredHttpClient<ResponseReader<C>>> {
    StreamableHttpClientTransport::with_client(
        LayeredHttpClient::new(ResponseReader::new(client, raw_results)),
        streamable_config(remote, max_message_bytes),
    )
}

/// The `WWW-Authenticate` challenge of a 401 that ended `initialize`, if that is why.
pub fn challenge(error: &ClientInitializeError) -> Option<String> {
    if let Some(challenge) = error.auth_challenge() {
        return Some(challenge.to_owned());
    }
    let ClientInitializeError::TransportError { error, .. } = error else { return None };
    let mut current: Option<&(dyn StdError + 'static)> = Some(error.error.as_ref());
    while let Some(error) = current {
        if let Some(StreamableHttpError::AuthRequired(required)) =
            error.downcast_ref::<StreamableHttpError<reqwest::Error>>()
        {
            return Some(required.www_authenticate_header.clone());
        }
        if let Some(sse::SseTransportError::AuthRequired(challenge)) =
            error.downcast_ref::<sse::SseTransportError>()
        {
            return Some(challenge.clone());
        }
        current = error.source();
    }
    None
}

/// Whether a failed streamable-HTTP `initialize` means "this is not a streamable HTTP
/// endpoint" (HTTP 4xx other than auth), so auto-detection should try legacy SSE.
pub fn should_fall_back_to_sse(error: &ClientInitializeError) -> bool {
    let mut current: Option<&(dyn StdError + 'static)> = match error {
        ClientInitializeError::TransportError { error, .. } => Some(error.error.as_ref()),
        other => Some(other),
    };
    while let Some(error) = current {
        if let Some(http) = error.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
            return match http {
                StreamableHttpError::UnexpectedServerResponse(text) => {
                    let status = text.strip_prefix("HTTP ").and_then(|rest| rest.get(..3));
                    matches!(status, Some(code) if code.starts_with('4') && code != "401" && code != "403")
                }
                StreamableHttpError::UnexpectedContentType(_) => true,
                _ => false,
            };
        }
        current = error.source();
    }
    false
}

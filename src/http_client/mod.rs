//! What every HTTP client of the bridge shares, below both `oauth/` and `upstream/`:
//! the process-wide TLS provider, the wording of HTTP failures, and the one forwarding
//! layer over rmcp's streamable HTTP client trait.
//!
//! - [`install_crypto_provider`]: reqwest and rustls are built without a default
//!   provider; every place that builds a client calls this first.
//! - [`describe_http_error`], [`describe_initialize`], [`describe_status`]: one
//!   actionable line from rmcp's and reqwest's error chains (refused connections, TLS,
//!   DNS, HTTP statuses, oversized answers), the same words whether an upstream session,
//!   the OAuth client or `doctor` met the failure.
//! - [`StreamableHttpLayer`] and [`LayeredHttpClient`]: a layer adds behaviour to
//!   another streamable HTTP client (a bearer token with retries, reading a POST's
//!   response before rmcp does) and [`LayeredHttpClient`] implements rmcp's trait for it
//!   once, forwarding each method to the same method of the inner client.
//!
//! This module imports neither `oauth` nor `upstream`: it knows HTTP and rmcp's HTTP
//! client types, not tokens or sessions.

mod failure;
mod layer;

pub use failure::{describe_http_error, describe_initialize, describe_status};
pub use layer::{
    DeleteSession, GetStream, HttpLayerError, LayeredHttpClient, PostLimits, PostMessage, SseEvents,
    StreamableHttpLayer, StreamableHttpRequest,
};

/// Make the process-wide TLS provider available (ring); idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

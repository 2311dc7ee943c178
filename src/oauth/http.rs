//! The HTTP client every OAuth request goes through (discovery, registration, token
//! exchange, refresh), plugged into rmcp as its `OAuthHttpClient` and into the
//! `oauth2` crate as its `AsyncHttpClient`.
//!
//! It is where the bridge's own rules apply, which rmcp leaves to its caller:
//! - HTTPS is required for authorization-server endpoints except on loopback hosts;
//! - `verify_ssl: false` is honoured;
//! - `send_resource: false` removes the RFC 8707 `resource` parameter from token
//!   requests (for servers that reject it, such as Entra ID);
//! - every URL tried and the status it answered are recorded, so a failed discovery
//!   can be reported with all of them (the discovery check at start names each);
//! - each request is bounded in time and in the size of its answer's body.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use oauth2::http;
use rmcp::transport::{
    OAuthHttpClient, OAuthHttpClientError, OAuthHttpClientFuture, OAuthHttpRedirectPolicy, OAuthHttpRequest,
};

use crate::locks::Unpoisoned;

/// Largest OAuth response body accepted (metadata documents and token responses are small).
const MAX_BODY: usize = 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(30);

/// One request made, for diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub method: String,
    pub url: String,
    /// The HTTP status, or the error when there was no response.
    pub outcome: String,
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({})", self.method, self.url, self.outcome)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthHttpError {
    #[error(
        "refusing plain http for `{0}`: OAuth endpoints must use https (plain http is allowed only on loopback hosts)"
    )]
    InsecureUrl(String),
    #[error("the response of `{0}` is larger than {MAX_BODY} bytes")]
    TooLarge(String),
    #[error("request to `{url}` failed: {reason}")]
    Request { url: String, reason: String },
}

/// The bridge's OAuth HTTP client. Cheap to clone.
#[derive(Clone)]
pub struct BridgeOAuthHttp {
    follow: reqwest::Client,
    stop: reqwest::Client,
    send_resource: bool,
    attempts: Arc<Mutex<Vec<Attempt>>>,
}

impl BridgeOAuthHttp {
    pub fn new(verify_ssl: bool, send_resource: bool) -> Result<Self, OAuthHttpError> {
        crate::http_client::install_crypto_provider();
        let build = |policy: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .timeout(TIMEOUT)
                .redirect(policy)
                .tls_danger_accept_invalid_certs(!verify_ssl)
                .build()
                .map_err(|error| OAuthHttpError::Request { url: String::new(), reason: error.to_string() })
        };
        Ok(Self {
            follow: build(reqwest::redirect::Policy::limited(5))?,
            stop: build(reqwest::redirect::Policy::none())?,
            send_resource,
            attempts: Arc::default(),
        })
    }

    /// Every request made so far, oldest first.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock_unpoisoned().clone()
    }

    fn record(&self, method: &str, url: &str, outcome: String) {
        let url = &super::store::redacted_url(url);
        tracing::debug!(%method, %url, %outcome, "oauth http");
        self.attempts.lock_unpoisoned().push(Attempt {
            method: method.to_owned(),
            url: url.to_owned(),
            outcome,
        });
    }

    /// Execute one request under the bridge's rules.
    pub async fn execute(
        &self,
        mut request: http::Request<Vec<u8>>,
        redirects: OAuthHttpRedirectPolicy,
    ) -> Result<http::Response<Vec<u8>>, OAuthHttpError> {
        let url = request.uri().to_string();
        let method = request.method().to_string();
        if !is_secure_or_loopback(&url) {
            self.record(&method, &url, "refused: plain http".to_owned());
            return Err(OAuthHttpError::InsecureUrl(super::store::redacted_url(&url)));
        }
        if !self.send_resource && is_form(&request) {
            let body = strip_form_field(request.body(), "resource");
            *request.body_mut() = body;
        }
        let client = match redirects {
            OAuthHttpRedirectPolicy::Stop => &self.stop,
            _ => &self.follow,
        };
        let request = reqwest::Request::try_from(request)
            .map_err(|error| OAuthHttpError::Request { url: url.clone(), reason: error.to_string() })?;
        let response = match client.execute(request).await {
            Ok(response) => response,
            Err(error) => {
                let reason = crate::http_client::describe_http_error(&error);
                self.record(&method, &url, reason.clone());
                return Err(OAuthHttpError::Request { url: super::store::redacted_url(&url), reason });
            }
        };
        self.record(&method, &url, format!("HTTP {}", response.status().as_u16()));
        let mut builder = http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|error| OAuthHttpError::Request { url: url.clone(), reason: error.to_string() })?;
            if body.len() + chunk.len() > MAX_BODY {
                return Err(OAuthHttpError::TooLarge(url));
            }
            body.extend_from_slice(&chunk);
        }
        builder.body(body).map_err(|error| OAuthHttpError::Request { url, reason: error.to_string() })
    }
}

impl OAuthHttpClient for BridgeOAuthHttp {
    fn execute(&self, request: OAuthHttpRequest) -> OAuthHttpClientFuture<'_> {
        Box::pin(async move {
            BridgeOAuthHttp::execute(self, request.request, request.redirect_policy)
                .await
                .map_err(|error| Box::new(error) as OAuthHttpClientError)
        })
    }
}

impl<'c> oauth2::AsyncHttpClient<'c> for BridgeOAuthHttp {
    type Error = OAuthHttpError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<oauth2::HttpResponse, Self::Error>> + Send + 'c>,
    >;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move { self.execute(request, OAuthHttpRedirectPolicy::Stop).await })
    }
}

/// HTTPS, or plain http to a loopback host (`127.0.0.1`, `::1`, `localhost`).
pub fn is_secure_or_loopback(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else { return false };
    match url.scheme() {
        "https" => true,
        "http" => is_loopback_host(&url),
        _ => false,
    }
}

pub fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn is_form(request: &http::Request<Vec<u8>>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"))
}

/// `body` (form-encoded) without the fields named `name`.
fn strip_form_field(body: &[u8], name: &str) -> Vec<u8> {
    let kept: Vec<(String, String)> = url::form_urlencoded::parse(body)
        .filter(|(key, _)| key != name)
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(kept).finish().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_required_except_on_loopback() {
        for (url, ok) in [
            ("https://auth.example.com/token", true),
            ("http://auth.example.com/token", false),
            ("http://127.0.0.1:8080/token", true),
            ("http://127.8.9.1/token", true),
            ("http://[::1]:9/token", true),
            ("http://localhost:9/token", true),
            ("http://LOCALHOST:9/token", true),
            ("http://localhost.example.com/token", false),
            ("ftp://127.0.0.1/x", false),
            ("not a url", false),
        ] {
            assert_eq!(is_secure_or_loopback(url), ok, "{url}");
        }
    }

    #[test]
    fn resource_is_stripped_from_forms() {
        let body = b"grant_type=refresh_token&resource=https%3A%2F%2Fmcp.example.com%2Fmcp&client_id=a";
        let stripped = String::from_utf8(strip_form_field(body, "resource")).unwrap();
        assert_eq!(stripped, "grant_type=refresh_token&client_id=a");
    }
}

//! The loopback callback listener of one browser sign-in.
//!
//! It binds only a loopback address, lives for one flow, answers a request with a
//! wrong or missing `state` with HTTP 400 and keeps waiting, and ends after the one
//! callback with the right `state` or when the flow's timeout passes.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    extract::{Query, State},
    http::{StatusCode, Uri},
    response::{Html, IntoResponse},
    routing::get,
};
use tokio::sync::oneshot;

pub const CALLBACK_PATH: &str = "/callback";

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("the OAuth callback host `{0}` is not a loopback address (use 127.0.0.1, ::1 or localhost)")]
    NotLoopback(String),
    #[error(
        "cannot listen for the OAuth callback on `{addr}`: {reason} (is another sign-in running? set `bridge.oauth_port` to another port, or 0 for any free port)"
    )]
    Bind { addr: String, reason: String },
    #[error("no sign-in callback arrived within {0} s")]
    Timeout(u64),
    #[error("the authorization server refused the sign-in: {0}")]
    Denied(String),
}

/// A bound, not yet serving, callback listener.
pub struct CallbackListener {
    listener: tokio::net::TcpListener,
    host: String,
    addr: SocketAddr,
}

/// Bind `host:port` (port 0 = any free port). Only loopback hosts are allowed.
pub async fn bind(host: &str, port: u16) -> Result<CallbackListener, CallbackError> {
    let ip: std::net::IpAddr = match host {
        "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
        other => {
            other.trim_matches(['[', ']']).parse().map_err(|_| CallbackError::NotLoopback(host.to_owned()))?
        }
    };
    if !ip.is_loopback() {
        return Err(CallbackError::NotLoopback(host.to_owned()));
    }
    let addr = SocketAddr::new(ip, port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| CallbackError::Bind { addr: addr.to_string(), reason: error.to_string() })?;
    let addr = listener
        .local_addr()
        .map_err(|error| CallbackError::Bind { addr: addr.to_string(), reason: error.to_string() })?;
    Ok(CallbackListener { listener, host: host.to_owned(), addr })
}

impl CallbackListener {
    /// The redirect URI to register and send: `http://<host>:<port>/callback`.
    pub fn redirect_uri(&self) -> String {
        let host = if self.addr.is_ipv6() && self.host != "localhost" {
            format!("[{}]", self.addr.ip())
        } else {
            self.host.clone()
        };
        format!("http://{host}:{}{CALLBACK_PATH}", self.addr.port())
    }

    /// Serve until the callback with `expected_state` arrives (returns its full URL)
    /// or `timeout` passes. The listener is closed when this returns.
    pub async fn wait(self, expected_state: String, timeout: Duration) -> Result<String, CallbackError> {
        let (done, result) = oneshot::channel();
        let state = Arc::new(Flow {
            expected_state,
            redirect_uri: self.redirect_uri(),
            done: Mutex::new(Some(done)),
        });
        let router = Router::new().route(CALLBACK_PATH, get(callback)).with_state(state);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = axum::serve(self.listener, router).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        let server = tokio::spawn(async move {
            if let Err(error) = server.await {
                tracing::warn!("the OAuth callback listener failed: {error}");
            }
        });
        let outcome = tokio::time::timeout(timeout, result).await;
        let _ = stop.send(());
        // Let the last page reach the browser before the listener goes away.
        let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => Err(CallbackError::Timeout(timeout.as_secs())),
        }
    }
}

struct Flow {
    expected_state: String,
    redirect_uri: String,
    /// Taken by the one request with the right state.
    done: Mutex<Option<oneshot::Sender<Result<String, CallbackError>>>>,
}

#[derive(serde::Deserialize)]
struct CallbackQuery {
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    State(flow): State<Arc<Flow>>,
    uri: Uri,
    Query(query): Query<CallbackQuery>,
) -> impl IntoResponse {
    if query.state.as_deref() != Some(flow.expected_state.as_str()) {
        tracing::warn!("OAuth callback with a wrong or missing `state` refused");
        return (
            StatusCode::BAD_REQUEST,
            Html(page(
                "Sign-in not accepted",
                "This sign-in response does not belong to the sign-in foxxy-bridge is waiting for (wrong or missing state). You can close this tab.",
            )),
        );
    }
    let Some(done) = flow.done.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() else {
        return (
            StatusCode::BAD_REQUEST,
            Html(page("Already signed in", "This sign-in was already completed. You can close this tab.")),
        );
    };
    if let Some(error) = query.error {
        let description = query.error_description.map(|text| format!(": {text}")).unwrap_or_default();
        let _ = done.send(Err(CallbackError::Denied(format!("{error}{description}"))));
        return (
            StatusCode::OK,
            Html(page(
                "Sign-in failed",
                &format!(
                    "The authorization server said: {}. You can close this tab.",
                    escape(&format!("{error}{description}"))
                ),
            )),
        );
    }
    let full = format!("{}{}", flow.redirect_uri.trim_end_matches(CALLBACK_PATH), uri);
    let _ = done.send(Ok(full));
    (StatusCode::OK, Html(page("Signed in", "foxxy-bridge is signed in. You can close this tab.")))
}

fn page(title: &str, text: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title} - foxxy-bridge</title></head>\
         <body style=\"font-family: sans-serif; margin: 3em\"><h1>{title}</h1><p>{text}</p></body></html>"
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(url: &str) -> (u16, String) {
        crate::upstream::install_crypto_provider();
        let response = reqwest::get(url).await.expect("request");
        (response.status().as_u16(), response.text().await.unwrap_or_default())
    }

    #[tokio::test]
    async fn a_wrong_state_gets_400_and_the_listener_keeps_waiting() {
        let listener = bind("127.0.0.1", 0).await.expect("bind");
        let redirect = listener.redirect_uri();
        assert!(redirect.starts_with("http://127.0.0.1:") && redirect.ends_with("/callback"), "{redirect}");
        let waiting = tokio::spawn(listener.wait("expected".to_owned(), Duration::from_secs(10)));
        let (status, body) = get(&format!("{redirect}?code=c&state=wrong")).await;
        assert_eq!(status, 400);
        assert!(body.contains("wrong or missing state"), "{body}");
        let (status, _) = get(&format!("{redirect}?code=c")).await;
        assert_eq!(status, 400, "a missing state is refused too");
        let (status, body) = get(&format!("{redirect}?code=abc&state=expected&iss=x")).await;
        assert_eq!(status, 200);
        assert!(body.contains("You can close this tab"));
        let url = waiting.await.expect("join").expect("callback");
        assert!(url.ends_with("/callback?code=abc&state=expected&iss=x"), "{url}");
    }

    #[tokio::test]
    async fn an_error_callback_reports_the_reason() {
        let listener = bind("localhost", 0).await.expect("bind");
        let redirect = listener.redirect_uri();
        assert!(redirect.starts_with("http://localhost:"), "{redirect}");
        let waiting = tokio::spawn(listener.wait("s".to_owned(), Duration::from_secs(10)));
        let (status, _) = get(&format!("{redirect}?state=s&error=access_denied&error_description=no")).await;
        assert_eq!(status, 200);
        let error = waiting.await.expect("join").expect_err("denied");
        assert!(error.to_string().contains("access_denied: no"), "{error}");
    }

    #[tokio::test]
    async fn it_times_out_and_refuses_non_loopback_hosts() {
        let listener = bind("127.0.0.1", 0).await.expect("bind");
        let error = listener.wait("s".to_owned(), Duration::from_millis(200)).await.expect_err("timeout");
        assert!(matches!(error, CallbackError::Timeout(_)));
        assert!(matches!(bind("0.0.0.0", 0).await, Err(CallbackError::NotLoopback(_))));
        assert!(matches!(bind("example.com", 0).await, Err(CallbackError::NotLoopback(_))));
    }
}

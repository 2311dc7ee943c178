//! The loopback callback listener of one browser sign-in.
//!
//! It binds only a loopback address, lives for one flow, answers a request with a
//! wrong or missing `state` with HTTP 400 and keeps waiting, and ends after the one
//! callback with the right `state` or when the flow's timeout passes.
//!
//! The redirect URI is `http://<host>:<port>/callback`. The right callback's request
//! waits for the exchange's outcome ([`Callback::reply`]) before its page is sent, so the
//! page says whether the sign-in worked. A port held by another sign-in is retried by
//! the flow; [`held_by_another_program`] tells that apart from a port another program
//! holds, by the page the holder answers.

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

use crate::locks::Unpoisoned;

pub const CALLBACK_PATH: &str = "/callback";

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("the OAuth callback host `{0}` is not a loopback address (use 127.0.0.1, ::1 or localhost)")]
    NotLoopback(String),
    #[error(
        "cannot listen for the OAuth callback on `{addr}`: {reason} (is another sign-in running? set `bridge.oauth_port` to another port, or 0 for any free port)"
    )]
    Bind { addr: String, reason: String },
    /// The address is taken (by another sign-in, or by another program).
    #[error("cannot listen for the OAuth callback on `{addr}`: the port is in use")]
    InUse { addr: String },
    #[error(
        "port `{port}` (`bridge.oauth_port`) is used by another program, so the sign-in cannot receive its callback\nhint: stop that program, or set `bridge.oauth_port` to a free port (0 picks any free port)"
    )]
    PortTaken { port: u16 },
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
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|error| {
        if error.kind() == std::io::ErrorKind::AddrInUse {
            CallbackError::InUse { addr: addr.to_string() }
        } else {
            CallbackError::Bind { addr: addr.to_string(), reason: error.to_string() }
        }
    })?;
    let addr = listener
        .local_addr()
        .map_err(|error| CallbackError::Bind { addr: addr.to_string(), reason: error.to_string() })?;
    Ok(CallbackListener { listener, host: host.to_owned(), addr })
}

/// Whether `host:port` answers HTTP like another program rather than like the callback
/// listener of another sign-in (whose pages name foxxy-bridge). No answer at all counts
/// as another sign-in: a listener is bound a moment before it starts serving.
pub async fn held_by_another_program(host: &str, port: u16) -> bool {
    crate::http_client::install_crypto_provider();
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
    else {
        return false;
    };
    let host =
        if host.contains(':') { format!("[{}]", host.trim_matches(['[', ']'])) } else { host.to_owned() };
    match client.get(format!("http://{host}:{port}{CALLBACK_PATH}")).send().await {
        Ok(response) => !response.text().await.unwrap_or_default().contains("foxxy-bridge"),
        Err(_) => false,
    }
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

    /// Serve until the callback with `expected_state` arrives or `timeout` passes. The
    /// browser's request stays open until [`Callback::reply`] says how the sign-in ended,
    /// so its page tells the truth; the listener closes after that reply.
    pub async fn wait(self, expected_state: String, timeout: Duration) -> Result<Callback, CallbackError> {
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
        let mut callback =
            Callback { url: String::new(), reply: None, stop: Some(stop), server: Some(server) };
        match outcome {
            Ok(Ok(Ok((url, reply)))) => {
                callback.url = url;
                callback.reply = Some(reply);
                Ok(callback)
            }
            Ok(Ok(Err(error))) => {
                callback.close().await;
                Err(error)
            }
            Ok(Err(_)) | Err(_) => {
                callback.close().await;
                Err(CallbackError::Timeout(timeout.as_secs()))
            }
        }
    }
}

/// The callback with the right `state`, whose browser request waits for [`Callback::reply`].
pub struct Callback {
    url: String,
    /// Answers the waiting browser request; dropped unanswered, the page says the sign-in
    /// did not finish.
    reply: Option<oneshot::Sender<Result<(), String>>>,
    /// Stops the listener; the listener task ends after the last page is sent.
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// The URL carries the authorization code, so `Debug` leaves it out.
impl std::fmt::Debug for Callback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callback").field("url", &"[REDACTED]").finish_non_exhaustive()
    }
}

impl Callback {
    /// The full URL the browser was redirected to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Show the user how the sign-in ended (`Err` = what failed), then close the listener.
    pub async fn reply(mut self, outcome: Result<(), String>) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(outcome);
        }
        self.close().await;
    }

    async fn close(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            // Let the last page reach the browser before the listener goes away.
            let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        }
    }
}

/// How long the browser's callback request waits for the code exchange.
const REPLY_WAIT: Duration = Duration::from_secs(60);

type Delivered = Result<(String, oneshot::Sender<Result<(), String>>), CallbackError>;

struct Flow {
    expected_state: String,
    redirect_uri: String,
    /// Taken by the one request with the right state.
    done: Mutex<Option<oneshot::Sender<Delivered>>>,
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
    let Some(done) = flow.done.lock_unpoisoned().take() else {
        return (
            StatusCode::BAD_REQUEST,
            Html(page("Already answered", "This sign-in was already answered. You can close this tab.")),
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
    let (reply, outcome) = oneshot::channel();
    let _ = done.send(Ok((full, reply)));
    match tokio::time::timeout(REPLY_WAIT, outcome).await {
        Ok(Ok(Ok(()))) => {
            (StatusCode::OK, Html(page("Signed in", "foxxy-bridge is signed in. You can close this tab.")))
        }
        Ok(Ok(Err(reason))) => (
            StatusCode::OK,
            Html(page(
                "Sign-in failed",
                &format!(
                    "foxxy-bridge could not finish the sign-in: {}. You can close this tab.",
                    escape(&reason)
                ),
            )),
        ),
        Ok(Err(_)) | Err(_) => (
            StatusCode::OK,
            Html(page(
                "Sign-in not finished",
                "foxxy-bridge stopped before it could finish the sign-in. You can close this tab.",
            )),
        ),
    }
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

    async fn get(url: impl AsRef<str>) -> (u16, String) {
        crate::http_client::install_crypto_provider();
        let response = reqwest::get(url.as_ref()).await.expect("request");
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
        let page = tokio::spawn(get(format!("{redirect}?code=abc&state=expected&iss=x")));
        let callback = waiting.await.expect("join").expect("callback");
        assert!(callback.url().ends_with("/callback?code=abc&state=expected&iss=x"), "{}", callback.url());
        callback.reply(Err("the code exchange failed: nope".to_owned())).await;
        let (status, body) = page.await.expect("join");
        assert_eq!(status, 200);
        assert!(body.contains("Sign-in failed") && body.contains("nope"), "{body}");
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

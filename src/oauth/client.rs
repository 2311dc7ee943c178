//! [`BearerClient`]: the streamable HTTP client layer that puts the upstream's access
//! token on every request (rmcp's client trait is implemented for it by the shared
//! forwarding layer in `http_client/`; [`BearerClient::client`] gives that client).
//!
//! rmcp's own `AuthClient` refreshes through its `AuthorizationManager`, which cannot
//! tell that another process already refreshed; this client gets its token from the
//! [`TokenSource`] instead, so refreshes stay coordinated across processes. On a 401
//! it asks the source for a fresher token (refresh, or another process's); on a 403
//! `insufficient_scope` it signs in again for the union of the scopes, at most
//! [`MAX_STEP_UPS`] times per session.
//!
//! Sign-ins start here only once the session is up ([`BearerClient::set_interactive`]):
//! during `initialize` the upstream's session code signs in itself, so that the
//! upstream's status shows it. Before that, a 401 without a better token is passed on.
//! OAuth failures reach rmcp as transport errors whose text starts with `OAuth:`.

use std::{
    borrow::Cow,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
};

use rmcp::{
    model::ClientJsonRpcMessage,
    transport::streamable_http_client::{
        StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    },
};

use super::{OAuthError, TokenSource, store::Secret};
use crate::http_client::HttpLayerError;
use crate::http_client::{LayeredHttpClient, StreamableHttpLayer, StreamableHttpRequest};

/// Scope step-ups allowed per session before a 403 is passed on: with the first
/// sign-in, at most three authorizations (the conformance suite's limit).
pub const MAX_STEP_UPS: u32 = 2;

/// The bearer layer over `C`, the client that does the HTTP (rmcp's reqwest client, or
/// one that reads some answers itself).
#[derive(Clone)]
pub struct BearerClient<C = reqwest::Client> {
    inner: C,
    source: Arc<TokenSource>,
    /// Set once the session is up: from then on a 401/403 may start a browser sign-in.
    /// During `initialize` the supervisor handles sign-in itself (with status updates).
    interactive: Arc<AtomicBool>,
    step_ups: Arc<AtomicU32>,
}

impl<C: StreamableHttpClient<Error = reqwest::Error> + Sync> BearerClient<C> {
    pub fn new(inner: C, source: Arc<TokenSource>) -> Self {
        Self { inner, source, interactive: Arc::default(), step_ups: Arc::default() }
    }

    /// rmcp's streamable HTTP client for this layer (sharing its state).
    pub fn client(&self) -> LayeredHttpClient<Self> {
        LayeredHttpClient::new(self.clone())
    }

    /// Allow sign-ins from now on (the session is established).
    pub fn set_interactive(&self) {
        self.interactive.store(true, Ordering::SeqCst);
    }

    async fn token(&self) -> Result<Option<Secret>, HttpLayerError<reqwest::Client>> {
        match self.source.access_token().await {
            Ok(token) => Ok(Some(token)),
            // Without a token the server answers 401 with its challenge, which is
            // what starts discovery and sign-in.
            Err(OAuthError::SignInRequired { .. }) => Ok(None),
            Err(error) => Err(auth_error(&error)),
        }
    }

    /// Run `call` with the current token; on 401/403 get a better one and retry.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, HttpLayerError<reqwest::Client>>
    where
        F: Fn(Option<String>) -> Fut,
        Fut: Future<Output = Result<T, HttpLayerError<reqwest::Client>>>,
    {
        let mut token = self.token().await?;
        let mut retried_401 = false;
        loop {
            let result = call(token.as_ref().map(|token| token.expose().to_owned())).await;
            match result {
                Err(StreamableHttpError::AuthRequired(challenge)) if !retried_401 => {
                    retried_401 = true;
                    let refreshed = match &token {
                        Some(sent) => match self.source.after_rejection(sent).await {
                            Ok(fresh) => Some(fresh).filter(|fresh| fresh != sent),
                            // A refresh that failed for now (network, 429, 5xx, a busy
                            // lock) keeps the tokens and never starts an interactive
                            // sign-in: the request fails with the cause.
                            Err(error @ OAuthError::Transient { .. }) => return Err(auth_error(&error)),
                            Err(_) => None,
                        },
                        None => None,
                    };
                    token = match refreshed {
                        Some(fresh) => Some(fresh),
                        None if self.interactive.load(Ordering::SeqCst) => Some(
                            self.source
                                .sign_in(Some(&challenge.www_authenticate_header), &[], token.as_ref(), false)
                                .await
                                .map_err(|error| auth_error(&error))?,
                        ),
                        None => return Err(StreamableHttpError::AuthRequired(challenge)),
                    };
                }
                Err(StreamableHttpError::InsufficientScope(needed))
                    if self.interactive.load(Ordering::SeqCst)
                        && self.step_ups.fetch_add(1, Ordering::SeqCst) < MAX_STEP_UPS =>
                {
                    let scopes: Vec<String> = needed
                        .required_scope
                        .as_deref()
                        .map(|scope| scope.split_whitespace().map(str::to_owned).collect())
                        .unwrap_or_default();
                    tracing::info!(upstream = %self.source.target().name, ?scopes, "the server needs more scopes; signing in again");
                    token = Some(
                        self.source
                            .sign_in(Some(&needed.www_authenticate_header), &scopes, token.as_ref(), false)
                            .await
                            .map_err(|error| auth_error(&error))?,
                    );
                }
                other => return other,
            }
        }
    }
}

/// An OAuth failure in the transport's error type, with our message intact.
fn auth_error(error: &OAuthError) -> HttpLayerError<reqwest::Client> {
    StreamableHttpError::UnexpectedServerResponse(Cow::Owned(format!("OAuth: {error}")))
}

impl<C: StreamableHttpClient<Error = reqwest::Error> + Sync> StreamableHttpLayer for BearerClient<C> {
    type Inner = C;
    type PostNote = ();

    fn inner(&self) -> &C {
        &self.inner
    }

    /// `request` with the current token instead of rmcp's auth header (rmcp has none).
    fn send<R: StreamableHttpRequest<C>>(
        &self,
        request: R,
        _auth_header: Option<String>,
    ) -> impl Future<Output = Result<R::Output, HttpLayerError<reqwest::Client>>> + Send + '_ {
        self.call(move |token| request.clone().send(&self.inner, token))
    }

    fn note_post(&self, _message: &ClientJsonRpcMessage) {}

    fn read_post(
        &self,
        (): (),
        response: StreamableHttpPostResponse,
    ) -> impl Future<Output = StreamableHttpPostResponse> + Send + '_ {
        std::future::ready(response)
    }
}

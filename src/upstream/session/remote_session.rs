//! Establishing a session with a remote upstream: over streamable HTTP or legacy SSE,
//! with auto-detection (streamable HTTP first; legacy SSE when the endpoint answers the
//! `initialize` POST with a 4xx other than 401/403, since an old server knows no POST
//! there), and OAuth: a 401 challenge starts a sign-in (once across processes),
//! after which the upstream is dialed again with the bearer client.

use std::sync::Arc;

use super::{ConnectFailure, InitFailure, OpeningSession, Session, is_handshake_refusal};
use crate::{
    config::{RemoteKind, RemoteSettings},
    oauth::{OAuthError, Target, TokenSource, client::BearerClient},
    upstream::{
        Status,
        entry::{Entry, Shared},
        http::{self as remote, sse},
        stdio::child::ChildGuard,
    },
};

pub(super) async fn connect_remote(
    entry: &Entry,
    shared: &Shared,
    settings: &RemoteSettings,
) -> Result<Session, ConnectFailure> {
    let tokens = token_source(entry, shared, settings);
    // Dial first, with the stored token if there is one: the server's 401 challenge
    // carries what discovery and scope selection need (`resource_metadata`, `scope`).
    // All upstreams start at once, so discovery for every OAuth upstream (the preflight)
    // runs at once too, and its failure is reported with every URL tried.
    match dial(entry, shared, settings, tokens.as_ref()).await {
        Err(Dial::Challenge(challenge)) => {
            let Some(source) = &tokens else {
                return Err(remote::describe_status(401, None).into());
            };
            tracing::info!(upstream = %entry.name, "the server asks for OAuth authorization");
            ensure_signed_in(entry, shared, source, challenge).await?;
            dial(entry, shared, settings, tokens.as_ref()).await.map_err(Dial::into_failure)
        }
        other => other.map_err(Dial::into_failure),
    }
}

/// The token source of an OAuth upstream (`None` when OAuth is off for it).
pub(super) fn token_source(
    entry: &Entry,
    shared: &Shared,
    settings: &RemoteSettings,
) -> Option<Arc<TokenSource>> {
    entry
        .tokens
        .get_or_init(|| match Target::for_remote(&entry.name, settings)? {
            // Bearer tokens must not travel in clear text to a remote host.
            Ok(target) if !crate::oauth::http::is_secure_or_loopback(&target.url) => {
                tracing::warn!(upstream = %entry.name, "OAuth is off for this upstream: its URL is plain http on a non-loopback host, and tokens are only sent over https");
                None
            }
            Ok(target) => Some(Arc::new(TokenSource::new(target, shared.oauth.clone()))),
            Err(error) => {
                tracing::warn!(upstream = %entry.name, "OAuth is unavailable for this upstream: {error}");
                None
            }
        })
        .clone()
}

/// Sign in (once across processes) because the server answered 401 with `challenge`,
/// unless another process already has tokens the server has not rejected.
async fn ensure_signed_in(
    entry: &Entry,
    shared: &Shared,
    source: &TokenSource,
    challenge: String,
) -> Result<(), ConnectFailure> {
    let rejected = source.entry().await.ok().flatten().map(|entry| entry.access_token);
    // A refresh comes first; one that fails for now keeps the tokens and never starts an
    // interactive sign-in.
    if let Some(rejected) = &rejected {
        match source.after_rejection(rejected).await {
            Ok(fresh) if &fresh != rejected => return Ok(()),
            Err(error @ OAuthError::Transient { .. }) => return Err(error.to_string().into()),
            _ => {}
        }
    }
    // Not settled: the first tools/list waits for a quick sign-in up to the startup
    // deadline, like any upstream still connecting.
    shared.publish(entry, |state| state.status = Status::SigningIn);
    match source.sign_in(Some(&challenge), &[], rejected.as_ref(), false).await {
        Ok(_) => Ok(()),
        Err(
            error @ (OAuthError::Discovery { .. } | OAuthError::NoPkce { .. } | OAuthError::Insecure { .. }),
        ) => Err(error.to_string().into()),
        Err(error @ OAuthError::SignInRequired { .. }) => Err(ConnectFailure::sign_in(error.to_string())),
        Err(error) => Err(ConnectFailure::sign_in(format!(
            "{error}; hint: run `foxxy-bridge oauth login {}`",
            entry.name
        ))),
    }
}

/// How dialing a remote upstream failed.
enum Dial {
    /// HTTP 401 with this `WWW-Authenticate` challenge.
    Challenge(String),
    Failed(String),
}

impl Dial {
    fn into_failure(self) -> ConnectFailure {
        match self {
            Dial::Challenge(_) => remote::describe_status(401, None).into(),
            Dial::Failed(cause) => cause.into(),
        }
    }
}

/// One streamable HTTP session attempt, with the bearer client for OAuth upstreams.
async fn streamable(
    entry: &Entry,
    shared: &Shared,
    settings: &RemoteSettings,
    client: &reqwest::Client,
    tokens: Option<&Arc<TokenSource>>,
    opening: OpeningSession,
) -> Result<Session, (InitFailure, Option<ChildGuard>)> {
    let max = shared.max_message_bytes;
    // POSTs lists itself, so that a list answered as one JSON body keeps its fields.
    let http = remote::JsonAnswerClient::new(client.clone(), opening.raw_results());
    match tokens {
        Some(tokens) => {
            let bearer = BearerClient::new(http, tokens.clone());
            let transport = opening.tap(remote::streamable_transport(
                bearer.client(),
                settings,
                max,
                opening.raw_results(),
            ));
            let attempt = opening.initialize(entry, shared, transport, None, "streamable-http", None).await;
            // Once connected, a 401/403 mid-session may start a sign-in itself.
            bearer.set_interactive();
            attempt
        }
        None => {
            let transport =
                opening.tap(remote::streamable_transport(http, settings, max, opening.raw_results()));
            opening.initialize(entry, shared, transport, None, "streamable-http", None).await
        }
    }
}

/// Connect over streamable HTTP or SSE (auto-detected unless configured).
async fn dial(
    entry: &Entry,
    shared: &Shared,
    settings: &RemoteSettings,
    tokens: Option<&Arc<TokenSource>>,
) -> Result<Session, Dial> {
    let timeout = entry.settings.connect_timeout;
    let client = remote::http_client(&entry.name, settings, timeout).map_err(Dial::Failed)?;
    // Requests carry a bearer token only once OAuth is in play for this upstream: an
    // `oauth` block, or tokens from an earlier sign-in. Until then the plain client is
    // used, and a 401 challenge (mapped below) starts OAuth.
    let stored = match tokens {
        Some(source) => source.entry().await.ok().flatten().is_some(),
        None => false,
    };
    let bearer = tokens.filter(|_| settings.oauth.is_some() || stored);
    let failed = |failure: InitFailure| match failure {
        InitFailure::Timeout => {
            Dial::Failed(format!("no answer to initialize within {} s", timeout.as_secs()))
        }
        InitFailure::Failed(error) => match remote::challenge(&error) {
            Some(challenge) if tokens.is_some() => Dial::Challenge(challenge),
            _ => Dial::Failed(remote::describe_initialize(&error)),
        },
    };
    if settings.kind != RemoteKind::Sse {
        let attempt =
            streamable(entry, shared, settings, &client, bearer, OpeningSession::new(entry, shared)).await;
        let attempt = match attempt {
            // The server refused `initialize` itself: it may speak only 2026-07-28.
            Err((InitFailure::Failed(error), _)) if is_handshake_refusal(&error) => {
                tracing::info!(upstream = %entry.name, "initialize was refused; trying protocol 2026-07-28");
                streamable(
                    entry,
                    shared,
                    settings,
                    &client,
                    bearer,
                    OpeningSession::new(entry, shared).modern(),
                )
                .await
            }
            other => other,
        };
        match attempt {
            Ok(session) => {
                tracing::info!(upstream = %entry.name, url = %crate::oauth::store::redacted_url(&settings.url), "connected over streamable HTTP");
                return Ok(session);
            }
            Err((InitFailure::Failed(error), _))
                if settings.kind == RemoteKind::Auto && remote::should_fall_back_to_sse(&error) =>
            {
                tracing::info!(
                    upstream = %entry.name,
                    "not a streamable HTTP endpoint ({}); trying the legacy SSE transport",
                    remote::describe_initialize(&error)
                );
            }
            Err((failure, _)) => return Err(failed(failure)),
        }
    }
    let opening = OpeningSession::new(entry, shared);
    let headers = remote::headers(settings).into_iter().collect();
    let stream = match sse::connect(
        client,
        &settings.url,
        headers,
        bearer.cloned(),
        timeout,
        shared.max_message_bytes,
        &entry.name,
    )
    .await
    {
        Ok(stream) => stream.with_raw_results(opening.raw_results()),
        Err(sse::SseTransportError::AuthRequired(challenge)) if tokens.is_some() => {
            return Err(Dial::Challenge(challenge));
        }
        Err(error) => return Err(Dial::Failed(error.to_string())),
    };
    let transport = opening.tap(stream);
    match opening.initialize(entry, shared, transport, None, "sse", None).await {
        Ok(session) => {
            tracing::info!(upstream = %entry.name, url = %crate::oauth::store::redacted_url(&settings.url), "connected over legacy SSE");
            Ok(session)
        }
        Err((failure, _)) => Err(failed(failure)),
    }
}

//! [`TokenSource`]: the access token of one remote upstream in one bridge process.
//!
//! Reads are cheap: the current entry is cached in memory and reloaded only when the
//! token file changed (so a token written by another process — `oauth login` in a
//! shell, or another bridge's refresh — is picked up without a restart).
//!
//! Refresh and sign-in are coordinated across processes by the store's file lock.
//! After taking it, the entry is read again: if another process already refreshed or
//! signed in, its result is used. So N processes with one expired token make exactly
//! one refresh request (rotating refresh tokens survive), and N processes that need a
//! sign-in open exactly one browser tab while the others wait for its tokens. A step-up
//! uses another process's newer token only when its granted scopes cover the request.
//!
//! [`TokenSource::access_token`] refreshes first when the token expires within a minute
//! (within half its lifetime for a short-lived token) and never opens a browser. A refresh is an `oauth2` refresh-token grant to the stored token endpoint,
//! with the stored client (`authorize::token_client`) and `resource`. A response without
//! a refresh token keeps the old one. `invalid_grant`, and `invalid_client` or
//! `unauthorized_client` or an expired secret of a dynamic client, remove the entry (the
//! upstream is signed out); any other failure keeps the tokens
//! ([`OAuthError::Transient`], which no caller turns into a sign-in) and backs further
//! refreshes off, doubling up to [`MAX_BACKOFF`].
//!
//! An automatic sign-in (not started from a shell) is refused while the store's sign-in
//! note says the user signed out, or that the last sign-in failed less than
//! `signInRetryAfter` ago; a failed sign-in writes that note. A sign-in the user asked
//! for through the placeholder tool skips that check and, without a display, prefers
//! the device grant. The sign-in under way is shown on the upstream's
//! [`PromptBoard`](super::prompt::PromptBoard).

use std::{
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use oauth2::{RefreshToken, RequestTokenError, TokenResponse as _, basic::BasicErrorResponseType};

use super::{
    OAuthError, SignInContext, Target, authorize, discovery, flow,
    http::BridgeOAuthHttp,
    prompt::PromptBoard,
    store::{self, ClientSource, EntryLock, NoteKind, Secret, SignInNote, TokenEntry},
};
use crate::locks::Unpoisoned;

/// How often the token file is looked at for changes made by other processes.
const RECHECK: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Cached {
    entry: Option<TokenEntry>,
    /// The token file's modification time when `entry` was read.
    stamp: Option<SystemTime>,
    /// When the file was last looked at; `None` = never.
    checked: Option<Instant>,
}

/// How long a process waits for another one's refresh before giving up for now.
const REFRESH_LOCK_WAIT: Duration = Duration::from_secs(30);
/// Refresh this long before expiry (or at half the lifetime of short-lived tokens).
const REFRESH_MARGIN: u64 = 60;

/// The token of one upstream. Shared by its sessions; cheap to call.
pub struct TokenSource {
    target: Target,
    context: SignInContext,
    /// The entry as last read, and the token file's stamp when it was read.
    cached: Mutex<Cached>,
    /// One refresh or sign-in at a time within this process (the file lock handles
    /// other processes).
    busy: tokio::sync::Mutex<()>,
    /// When a refresh that failed for now may be tried again; set and cleared by
    /// `refresh`, under `busy`.
    backoff: Mutex<Backoff>,
    /// What the sign-in under way asks of the user, for the placeholder tool.
    board: PromptBoard,
}

/// Refreshes that fail for now back off: 5 s, doubling, at most 5 minutes.
#[derive(Default)]
struct Backoff {
    until: Option<Instant>,
    delay: Duration,
    reason: String,
}

const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl TokenSource {
    pub fn new(target: Target, context: SignInContext) -> Self {
        Self {
            target,
            context,
            cached: Mutex::new(Cached::default()),
            busy: tokio::sync::Mutex::new(()),
            backoff: Mutex::default(),
            board: PromptBoard::default(),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn context(&self) -> &SignInContext {
        &self.context
    }

    /// What the sign-in under way asks of the user (the URL, the device code), and
    /// where the address the browser ended on can be handed back.
    pub fn board(&self) -> &PromptBoard {
        &self.board
    }

    /// The stored entry, re-read only when the file changed since the last read. The
    /// file is looked at no more often than every [`RECHECK`]; refreshes and sign-ins of
    /// this process update the cache directly. File reads run on the blocking pool.
    pub async fn entry(&self) -> Result<Option<TokenEntry>, OAuthError> {
        let previous = {
            let cached = self.cached.lock_unpoisoned();
            if cached.checked.is_some_and(|checked| checked.elapsed() < RECHECK) {
                return Ok(cached.entry.clone());
            }
            cached.checked.map(|_| cached.stamp)
        };
        let stamp = self.context.store.stamp_async(&self.target.url).await;
        if previous == Some(stamp) {
            let mut cached = self.cached.lock_unpoisoned();
            cached.checked = Some(Instant::now());
            return Ok(cached.entry.clone());
        }
        let entry = match self.context.store.read_async(&self.target.url).await {
            Ok(entry) => entry,
            Err(error) => {
                // A corrupt file counts as signed out; say so once per change.
                tracing::warn!(upstream = %self.target.name, "ignoring the token file: {error}");
                None
            }
        };
        *self.cached.lock_unpoisoned() =
            Cached { entry: entry.clone(), stamp, checked: Some(Instant::now()) };
        Ok(entry)
    }

    /// Whether the user signed out (`oauth logout`) and no tokens were stored since: a
    /// running session then ends, so the upstream waits for a sign-in the user starts.
    pub async fn signed_out(&self) -> bool {
        if !matches!(self.entry().await, Ok(None)) {
            return false;
        }
        let note = self.context.store.note_async(&self.target.url).await;
        note.is_some_and(|note| note.kind == NoteKind::SignedOut)
    }

    /// A fresh stamp check for callers that poll for tokens written elsewhere.
    pub async fn stamp(&self) -> Option<SystemTime> {
        self.context.store.stamp_async(&self.target.url).await
    }

    /// The access token to send now, refreshed first if it is about to expire.
    /// Never starts a browser sign-in: that is [`TokenSource::sign_in`].
    pub async fn access_token(&self) -> Result<Secret, OAuthError> {
        let entry = self.entry().await?.ok_or_else(|| self.sign_in_required("no tokens are stored"))?;
        if !needs_refresh(&entry, store::now()) {
            return Ok(entry.access_token);
        }
        self.refresh(Some(&entry.access_token)).await
    }

    /// The server rejected `rejected` (HTTP 401): refresh unless someone already has.
    pub async fn after_rejection(&self, rejected: &Secret) -> Result<Secret, OAuthError> {
        self.refresh(Some(rejected)).await
    }

    /// Refresh under the lock, unless the entry changed since `seen` was read.
    async fn refresh(&self, seen: Option<&Secret>) -> Result<Secret, OAuthError> {
        let _busy = self.busy.lock().await;
        let lock = self.lock(REFRESH_LOCK_WAIT).await.map_err(|error| self.transient(&error.to_string()))?;
        let Some(latest) = self.read_locked().await? else {
            return Err(self.sign_in_required("no tokens are stored"));
        };
        let now = store::now();
        if Some(&latest.access_token) != seen && !needs_refresh(&latest, now) {
            tracing::debug!(upstream = %self.target.name, "another process refreshed the token");
            let token = latest.access_token.clone();
            self.remember(latest).await;
            return Ok(token);
        }
        let Some(refresh_token) = latest.refresh_token.clone() else {
            return Err(self.sign_in_required("the access token expired and there is no refresh token"));
        };
        if let Some(wait) = self.backing_off() {
            let reason = self.backoff.lock_unpoisoned().reason.clone();
            return Err(self.transient(&format!("{reason}; the next try is in {} s", wait.as_secs().max(1))));
        }
        match refresh(&self.target, &latest, &refresh_token).await {
            Ok(fresh) => {
                *self.backoff.lock_unpoisoned() = Backoff::default();
                self.context
                    .store
                    .write_async(lock, fresh.clone())
                    .await
                    .map_err(|error| OAuthError::Store(error.to_string()))?;
                tracing::info!(upstream = %self.target.name, "access token refreshed");
                let token = fresh.access_token.clone();
                self.remember(fresh).await;
                Ok(token)
            }
            Err(RefreshFailure::Rejected(reason)) => {
                tracing::warn!(upstream = %self.target.name, "the refresh token was rejected ({reason}); signed out");
                let _ = self.context.store.remove_async(lock, &self.target.url).await;
                self.forget();
                Err(self.sign_in_required("the authorization server rejected the refresh token"))
            }
            Err(RefreshFailure::Transient(reason)) => {
                tracing::warn!(upstream = %self.target.name, "token refresh failed, keeping the tokens: {reason}");
                {
                    let mut backoff = self.backoff.lock_unpoisoned();
                    let delay = if backoff.delay.is_zero() {
                        FIRST_BACKOFF
                    } else {
                        (backoff.delay * 2).min(MAX_BACKOFF)
                    };
                    *backoff = Backoff { until: Some(Instant::now() + delay), delay, reason: reason.clone() };
                }
                // An access token that has not actually expired yet still works.
                if !latest.is_expired(now, 0) && Some(&latest.access_token) != seen {
                    return Ok(latest.access_token);
                }
                Err(self.transient(&reason))
            }
        }
    }

    /// Sign in with the browser (once across processes), unless valid tokens appear
    /// meanwhile. `challenge` is the server's `WWW-Authenticate`, `extra_scopes` the
    /// scopes a 403 `insufficient_scope` asked for.
    /// A stored token equal to `rejected` (the server refused it) is not reused, nor
    /// any stored token when `force` is set (`oauth login --force`).
    pub async fn sign_in(
        &self,
        challenge: Option<&str>,
        extra_scopes: &[String],
        rejected: Option<&Secret>,
        force: bool,
    ) -> Result<Secret, OAuthError> {
        self.sign_in_as(challenge, extra_scopes, rejected, force, false).await
    }

    /// A sign-in the user asked for from an MCP client (the placeholder tool): it runs
    /// even while automatic sign-ins pause (a failed sign-in, `oauth logout`), unless
    /// valid tokens appear meanwhile. Without a display it uses the device grant when the
    /// authorization server offers it.
    pub async fn user_sign_in(&self) -> Result<Secret, OAuthError> {
        self.sign_in_as(None, &[], None, false, true).await
    }

    async fn sign_in_as(
        &self,
        challenge: Option<&str>,
        extra_scopes: &[String],
        rejected: Option<&Secret>,
        force: bool,
        user_started: bool,
    ) -> Result<Secret, OAuthError> {
        let _busy = self.busy.lock().await;
        let wait = self.context.sign_in_timeout + Duration::from_secs(30);
        let lock = self.lock(wait).await.map_err(|error| OAuthError::Flow {
            upstream: self.target.name.clone(),
            reason: format!("waiting for another process's sign-in: {error}"),
        })?;
        let previous = self.read_locked().await?;
        // Another process's token is used when the server has not refused it and it covers
        // the scopes a step-up asks for, so N processes stepping up sign in once.
        if let Some(entry) = &previous
            && !force
            && Some(&entry.access_token) != rejected
            && !entry.is_expired(store::now(), 0)
            && extra_scopes.iter().all(|scope| entry.granted_scopes.contains(scope))
        {
            tracing::info!(upstream = %self.target.name, "signed in by another process");
            let token = entry.access_token.clone();
            self.remember(entry.clone()).await;
            return Ok(token);
        }
        if self.context.shell.is_none() && !user_started {
            self.check_note().await?;
        }
        let discovery = discovery::discover(&self.target, challenge).await?;
        let prefer_device = user_started && !self.context.browser.shows_itself();
        let signed_in = flow::sign_in(
            &self.context,
            &self.target,
            discovery,
            previous.as_ref(),
            extra_scopes,
            &self.board,
            prefer_device,
        )
        .await;
        self.board.end(signed_in.as_ref().err().map(ToString::to_string));
        let entry = match signed_in {
            Ok(entry) => entry,
            Err(error @ (OAuthError::Flow { .. } | OAuthError::Callback(_))) => {
                // Remembered in the cache, so the processes waiting for this sign-in do not
                // each start their own.
                let note = SignInNote { kind: NoteKind::Failed, at: store::now(), reason: error.to_string() };
                if let Err(store_error) = self.context.store.write_note_async(lock, note).await {
                    tracing::warn!(upstream = %self.target.name, "could not record the failed sign-in: {store_error}");
                }
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        self.context
            .store
            .write_async(lock, entry.clone())
            .await
            .map_err(|error| OAuthError::Store(error.to_string()))?;
        tracing::info!(upstream = %self.target.name, "OAuth flow completed; signed in");
        let token = entry.access_token.clone();
        self.remember(entry).await;
        Ok(token)
    }

    /// How long refreshes still wait after one failed for now; `None` when one may run.
    fn backing_off(&self) -> Option<Duration> {
        let backoff = self.backoff.lock_unpoisoned();
        backoff
            .until
            .and_then(|until| until.checked_duration_since(Instant::now()))
            .filter(|wait| !wait.is_zero())
    }

    /// Refuse an automatic sign-in while the cache says the user signed out, or the last
    /// sign-in failed less than `bridge.signInRetryAfter` ago.
    async fn check_note(&self) -> Result<(), OAuthError> {
        let Some(note) = self.context.store.note_async(&self.target.url).await else { return Ok(()) };
        let retry_after = self.context.sign_in_retry_after.as_secs();
        match note.kind {
            NoteKind::SignedOut => Err(self.sign_in_required("signed out with `foxxy-bridge oauth logout`")),
            NoteKind::Failed if store::now() < note.at.saturating_add(retry_after) => {
                Err(self.sign_in_required(&format!(
                    "the last sign-in failed ({}); bridges start another one by themselves only {retry_after} s after it",
                    note.reason
                )))
            }
            NoteKind::Failed => Ok(()),
        }
    }

    async fn lock(&self, wait: Duration) -> Result<EntryLock, OAuthError> {
        self.context
            .store
            .lock_async(&self.target.url, wait)
            .await
            .map_err(|error| OAuthError::Store(error.to_string()))
    }

    async fn read_locked(&self) -> Result<Option<TokenEntry>, OAuthError> {
        match self.context.store.read_async(&self.target.url).await {
            Ok(entry) => Ok(entry),
            Err(error) => {
                tracing::warn!(upstream = %self.target.name, "ignoring the token file: {error}");
                Ok(None)
            }
        }
    }

    async fn remember(&self, entry: TokenEntry) {
        let stamp = self.context.store.stamp_async(&self.target.url).await;
        *self.cached.lock_unpoisoned() = Cached { entry: Some(entry), stamp, checked: Some(Instant::now()) };
    }

    fn forget(&self) {
        *self.cached.lock_unpoisoned() = Cached::default();
    }

    fn sign_in_required(&self, reason: &str) -> OAuthError {
        OAuthError::SignInRequired { upstream: self.target.name.clone(), reason: reason.to_owned() }
    }

    fn transient(&self, reason: &str) -> OAuthError {
        OAuthError::Transient { upstream: self.target.name.clone(), reason: reason.to_owned() }
    }
}

/// Whether `entry` should be refreshed now: within a minute of expiry, or within half
/// the lifetime for tokens that live less than two minutes.
pub fn needs_refresh(entry: &TokenEntry, now: u64) -> bool {
    let margin = entry.expires_in.map_or(REFRESH_MARGIN, |lifetime| REFRESH_MARGIN.min(lifetime / 2));
    entry.is_expired(now, margin)
}

enum RefreshFailure {
    /// `invalid_grant` (the refresh token is dead), or a dynamically registered client
    /// that is gone or whose secret expired: sign in again.
    Rejected(String),
    /// Anything else (429, 5xx, network): keep the tokens, try later.
    Transient(String),
}

/// One refresh-token grant at the entry's token endpoint, authenticating as the code
/// exchange did ([`authorize::token_client`]).
async fn refresh(
    target: &Target,
    entry: &TokenEntry,
    refresh_token: &Secret,
) -> Result<TokenEntry, RefreshFailure> {
    if entry.client.source == ClientSource::Dynamic && authorize::secret_expired(&entry.client, store::now())
    {
        return Err(RefreshFailure::Rejected("the registered client's secret expired".to_owned()));
    }
    let http = BridgeOAuthHttp::new(target.verify_ssl, target.settings.send_resource)
        .map_err(|error| RefreshFailure::Transient(error.to_string()))?;
    let client =
        authorize::token_client(&entry.client, &entry.token_endpoint).map_err(RefreshFailure::Transient)?;
    let old_refresh = RefreshToken::new(refresh_token.expose().to_owned());
    let mut request = client.exchange_refresh_token(&old_refresh);
    if let Some(resource) = entry.resource.as_ref().filter(|_| target.settings.send_resource) {
        request = request.add_extra_param("resource", resource.clone());
    }
    let dynamic = entry.client.source == ClientSource::Dynamic;
    let response = request.request_async(&http).await.map_err(|error| match &error {
        RequestTokenError::ServerResponse(response)
            if *response.error() == BasicErrorResponseType::InvalidGrant =>
        {
            RefreshFailure::Rejected("invalid_grant".to_owned())
        }
        // A dynamically registered client the server no longer knows: drop it, so the
        // next sign-in registers again.
        RequestTokenError::ServerResponse(response)
            if dynamic
                && matches!(
                    response.error(),
                    BasicErrorResponseType::InvalidClient | BasicErrorResponseType::UnauthorizedClient
                ) =>
        {
            RefreshFailure::Rejected(format!("{}", response.error()))
        }
        other => RefreshFailure::Transient(authorize::describe_token_error(other)),
    })?;
    let now = store::now();
    let expires_in = response.expires_in().map(|duration| duration.as_secs());
    let scope = response
        .scopes()
        .map(|scopes| scopes.iter().map(|scope| scope.to_string()).collect::<Vec<_>>().join(" "))
        .or_else(|| entry.scope.clone());
    Ok(TokenEntry {
        access_token: Secret::new(response.access_token().secret().clone()),
        // A response without a refresh token keeps the old one (RFC 6749 §6).
        refresh_token: Some(
            response
                .refresh_token()
                .map(|token| Secret::new(token.secret().clone()))
                .unwrap_or_else(|| refresh_token.clone()),
        ),
        expires_in,
        expires_at: expires_in.map(|seconds| now.saturating_add(seconds)),
        created_at: now,
        scope,
        ..entry.clone()
    })
}

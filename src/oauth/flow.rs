//! The browser sign-in of one upstream, after discovery (`discovery.rs`): the callback
//! listener, the scopes, the authorization URL and code exchange (`authorize.rs`), with
//! the client, the RFC 8707 `resource` and the token-cache entry from `grant.rs`; a
//! headless sign-in that the server offers the device grant for goes to `device.rs`.
//!
//! It binds the callback listener first (a port held by another program fails at once; one
//! held by another sign-in is waited for, `bind_callback`), picks the client, the scopes
//! and the `resource`, builds the authorization URL, then opens the browser and waits for
//! the callback, or with `ShellSignIn::PasteBack` also reads the address or code the user
//! pastes on stdin. In a bridge it shows the URL on the upstream's `PromptBoard` and takes
//! a paste from there too. The callback page reports the outcome of the code exchange. The
//! result is a `TokenEntry`: the caller holds the lock and writes it.

use std::time::Duration;

use rmcp::transport::auth::AuthorizationMetadata;

use crate::output;

use super::{
    OAuthError, ShellSignIn, SignInContext, Target,
    authorize::{self, AuthorizationParams, PendingAuthorization},
    callback, device,
    discovery::Discovery,
    grant,
    http::BridgeOAuthHttp,
    prompt::{PromptBoard, SignInPrompt},
    store::{ClientRegistration, ClientSource, TokenEntry},
};

/// Run the browser sign-in for `target` and return the entry to store. The caller
/// holds the entry's lock, so only one process signs in at a time. The callback page
/// says "signed in" only once the code exchange succeeded, else what failed.
///
/// Outside a shell the URL (or device code) also goes on `board`, and the address the
/// browser ended on (or its code) may come back through it. `prefer_device`: the user
/// asked from a place with no browser of its own; the device grant is used when the
/// authorization server offers it.
pub async fn sign_in(
    context: &SignInContext,
    target: &Target,
    discovery: Discovery,
    previous: Option<&TokenEntry>,
    extra_scopes: &[String],
    board: &PromptBoard,
    prefer_device: bool,
) -> Result<TokenEntry, OAuthError> {
    let device_offered = device::endpoint(&discovery.metadata).is_some();
    let mode = match context.shell {
        Some(ShellSignIn::Headless) if device_offered => Some(ShellSignIn::Device),
        Some(ShellSignIn::Headless) => Some(ShellSignIn::PasteBack),
        None if prefer_device && device_offered => Some(ShellSignIn::Device),
        other => other,
    };
    if mode == Some(ShellSignIn::Device) {
        return device::sign_in(context, target, discovery, previous, board).await;
    }
    let listener = bind_callback(context).await?;
    let redirect_uri = listener.redirect_uri();
    let prepared = prepare(target, discovery, previous, extra_scopes, &redirect_uri).await?;
    let url = &prepared.pending.url;
    let failed = |reason: String| OAuthError::Flow { upstream: target.name.clone(), reason };
    let state = prepared.pending.state.clone();
    board.show(SignInPrompt { url: url.clone(), user_code: None, accepts_paste: true });
    let pasted = if mode == Some(ShellSignIn::PasteBack) {
        context.browser.log_only(&target.name, url);
        output::error_line(format_args!(
            "Open this URL in a browser to sign in to `{}`:\n{url}",
            target.name
        ));
        output::error_line(
            "Then paste here the address the browser ended on (an error page is fine), or just the code:",
        );
        tokio::select! {
            callback = listener.wait(state, context.sign_in_timeout) => Err(callback),
            line = read_pasted_line(context.sign_in_timeout) => Ok(line),
        }
    } else {
        context.browser.open(&target.name, url);
        if context.shell.is_some() {
            output::error_line(format_args!("If no browser opened, visit:\n{url}"));
        }
        tokio::select! {
            callback = listener.wait(state, context.sign_in_timeout) => Err(callback),
            line = board.next_paste() => Ok(Some(line)),
        }
    };
    match pasted {
        Ok(Some(line)) => {
            let (redirect, bare_code) = pasted_redirect(&line, &redirect_uri, &prepared.pending.state);
            prepared.finish(target, &redirect, bare_code).await
        }
        Ok(None) => Err(failed("no sign-in address or code was pasted".to_owned())),
        Err(callback) => {
            let callback = callback.map_err(|error| failed(error.to_string()))?;
            let result = prepared.finish(target, callback.url(), false).await;
            callback.reply(result.as_ref().map(|_| ()).map_err(ToString::to_string)).await;
            result
        }
    }
}

/// One line from stdin, trimmed; `None` at its end, when it is empty, or after `timeout`.
/// Read on a plain thread of its own: a read of stdin cannot be cancelled, and on the
/// runtime's blocking pool it would hold up the runtime's shutdown when the loopback
/// callback wins instead.
async fn read_pasted_line(timeout: Duration) -> Option<String> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("paste-back".to_owned()).spawn(move || {
        let mut line = String::new();
        let read = std::io::stdin().read_line(&mut line);
        let _ = sender.send(read.map(|_| line));
    });
    if spawned.is_err() {
        return None;
    }
    match tokio::time::timeout(timeout, receiver).await {
        Ok(Ok(Ok(line))) if !line.trim().is_empty() => Some(line.trim().to_owned()),
        _ => None,
    }
}

/// The redirect to check for what the user pasted (trimmed): the address itself, or for a bare
/// code the redirect it came from (`true`: only the code is known, there is no `iss`
/// to check).
fn pasted_redirect(pasted: &str, redirect_uri: &str, state: &str) -> (String, bool) {
    let pasted = pasted.trim();
    if pasted.contains("://") {
        return (pasted.to_owned(), false);
    }
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("code", pasted)
        .append_pair("state", state)
        .finish();
    (format!("{redirect_uri}?{query}"), true)
}

/// A sign-in whose authorization URL is ready: what the redirect is checked against and
/// how the code is exchanged.
pub struct PreparedSignIn {
    pub pending: PendingAuthorization,
    metadata: AuthorizationMetadata,
    issuer: String,
    http: BridgeOAuthHttp,
    client: ClientRegistration,
    scopes: Vec<String>,
}

/// Pick the client (registering if needed), the scopes and the `resource`, and build the
/// authorization URL for `redirect_uri`.
pub async fn prepare(
    target: &Target,
    discovery: Discovery,
    previous: Option<&TokenEntry>,
    extra_scopes: &[String],
    redirect_uri: &str,
) -> Result<PreparedSignIn, OAuthError> {
    let Discovery { mut manager, metadata, issuer, http } = discovery;
    let settings = &target.settings;
    let client = match grant::registration(target, &metadata, &http, Some(redirect_uri), previous).await? {
        Some(client) => client,
        None => ClientRegistration {
            client_id: settings.client_metadata_url.clone().unwrap_or_default(),
            client_secret: None,
            redirect_uri: Some(redirect_uri.to_owned()),
            token_endpoint_auth_method: Some("none".to_owned()),
            source: ClientSource::Cimd,
            client_secret_expires_at: None,
        },
    };
    let initial = manager.select_initial_scopes(&[]).await;
    let granted = previous.map(|entry| entry.granted_scopes.clone()).unwrap_or_default();
    let scopes = authorize::requested_scopes(&initial, &settings.scopes, &granted, extra_scopes);
    let resource = grant::resource_for(target, &mut manager).await;
    let params = AuthorizationParams {
        authorization_endpoint: &metadata.authorization_endpoint,
        redirect_uri,
        scopes: &scopes,
        resource: resource.as_deref(),
        additional_params: &settings.additional_params,
    };
    let pending = authorize::authorization_url(&client.client_id, &params)
        .map_err(|reason| OAuthError::Flow { upstream: target.name.clone(), reason })?;
    Ok(PreparedSignIn { pending, metadata, issuer, http, client, scopes })
}

impl PreparedSignIn {
    /// Check the redirect (`bare_code`: only its code is known, so no `iss` is required)
    /// and exchange its code.
    pub async fn finish(
        self,
        target: &Target,
        redirect: &str,
        bare_code: bool,
    ) -> Result<TokenEntry, OAuthError> {
        let failed = |reason: String| OAuthError::Flow { upstream: target.name.clone(), reason };
        let iss_required = !bare_code
            && self
                .metadata
                .additional_fields
                .get("authorization_response_iss_parameter_supported")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
        let code = authorize::code_from_redirect(redirect, &self.pending.state, &self.issuer, iss_required)
            .map_err(failed)?;
        let resource = self.pending.resource().map(str::to_owned);
        let token =
            authorize::exchange(&self.http, &self.client, &self.metadata.token_endpoint, self.pending, code)
                .await
                .map_err(|reason| failed(format!("the code exchange failed: {reason}")))?;
        Ok(grant::token_entry(
            target,
            self.issuer,
            &token,
            self.client,
            &self.metadata,
            resource,
            &self.scopes,
        ))
    }
}

/// Bind the callback listener, waiting (bounded) while another sign-in of this
/// machine holds the port; a port held by another program fails at once.
async fn bind_callback(context: &SignInContext) -> Result<callback::CallbackListener, OAuthError> {
    let deadline = tokio::time::Instant::now() + context.sign_in_timeout;
    loop {
        match callback::bind(&context.host, context.port).await {
            Ok(listener) => return Ok(listener),
            Err(error @ callback::CallbackError::NotLoopback(_)) => {
                return Err(OAuthError::Callback(error.to_string()));
            }
            // Another sign-in of this machine frees the port when it ends; another
            // program may hold it for good, so that fails at once.
            Err(callback::CallbackError::InUse { .. })
                if callback::held_by_another_program(&context.host, context.port).await =>
            {
                let error = callback::CallbackError::PortTaken { port: context.port };
                return Err(OAuthError::Callback(error.to_string()));
            }
            Err(error) if tokio::time::Instant::now() >= deadline => {
                return Err(OAuthError::Callback(error.to_string()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

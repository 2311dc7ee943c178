//! The browser sign-in of one upstream, after discovery (`discovery.rs`): the callback
//! listener, the client (pre-registered → client ID metadata document → a stored or new
//! RFC 7591 dynamic registration, done here because rmcp keeps neither the secret nor the
//! redirect URI), the scopes and the RFC 8707 `resource`, the authorization URL and code
//! exchange (`authorize.rs`), and turning the result into a token-cache entry.

use std::time::Duration;

use oauth2::TokenResponse as _;
use rmcp::transport::{
    AuthorizationManager,
    auth::{AuthorizationMetadata, OAuthClientConfig},
};
use serde_json::json;

use crate::output;

use super::{
    OAuthError, ShellSignIn, SignInContext, Target,
    authorize::{self, AuthorizationParams, PendingAuthorization},
    callback, device,
    discovery::Discovery,
    http::BridgeOAuthHttp,
    prompt::{PromptBoard, SignInPrompt},
    store::{self, ClientRegistration, ClientSource, Secret, TokenEntry},
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
    let client = match registration(target, &metadata, &http, Some(redirect_uri), previous).await? {
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
    let resource = resource_for(target, &mut manager).await;
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

/// The RFC 8707 `resource` to send: `additional_params.resource` when configured, else
/// what discovery found; `None` with `send_resource: false`.
pub(super) async fn resource_for(target: &Target, manager: &mut AuthorizationManager) -> Option<String> {
    let settings = &target.settings;
    if !settings.send_resource {
        return None;
    }
    if let Some(resource) = settings.additional_params.get("resource") {
        return Some(resource.clone());
    }
    let discovered = discovered_resource(manager, "http://127.0.0.1/callback").await;
    Some(without_userinfo(&discovered.unwrap_or_else(|| target.url.clone())))
}

/// The RFC 8707 `resource` rmcp's discovery settled on (the protected resource
/// metadata's `resource`, else the server URL). rmcp keeps it private but puts it on the
/// authorization URLs it builds, so one is built and read; its PKCE state is discarded.
async fn discovered_resource(manager: &mut AuthorizationManager, redirect_uri: &str) -> Option<String> {
    manager.configure_client(OAuthClientConfig::new("foxxy-bridge", redirect_uri)).ok()?;
    let url = manager.get_authorization_url(&[]).await.ok()?;
    query_param(&url, "resource").filter(|resource| !resource.is_empty())
}

/// `url` without a user name or password: the RFC 8707 `resource` names the server, and
/// credentials in its URL are for the server alone.
fn without_userinfo(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.into()
        }
        _ => url.to_owned(),
    }
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
        Ok(token_entry(target, self.issuer, &token, self.client, &self.metadata, resource, &self.scopes))
    }
}

/// The cache entry for a token response of `client` at `metadata`'s token endpoint;
/// `requested` stands in for the granted scopes when the response names none.
pub(super) fn token_entry(
    target: &Target,
    issuer: String,
    token: &oauth2::basic::BasicTokenResponse,
    client: ClientRegistration,
    metadata: &AuthorizationMetadata,
    resource: Option<String>,
    requested: &[String],
) -> TokenEntry {
    let now = store::now();
    let expires_in = token.expires_in().map(|duration| duration.as_secs());
    let scope = token
        .scopes()
        .map(|scopes| scopes.iter().map(|scope| scope.to_string()).collect::<Vec<_>>().join(" "))
        .or_else(|| (!requested.is_empty()).then(|| requested.join(" ")));
    TokenEntry {
        version: store::FORMAT_VERSION,
        server_url: target.url.clone(),
        issuer,
        access_token: Secret::new(token.access_token().secret().clone()),
        refresh_token: token.refresh_token().map(|token| Secret::new(token.secret().clone())),
        token_type: "Bearer".to_owned(),
        expires_in,
        scope: scope.clone(),
        created_at: now,
        expires_at: expires_in.map(|seconds| now.saturating_add(seconds)),
        client,
        token_endpoint: metadata.token_endpoint.clone(),
        resource,
        granted_scopes: scope
            .map(|scope| scope.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
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

/// The client to use: pre-registered from the config, a still-valid earlier dynamic
/// registration, or a new dynamic registration. `None` means CIMD (rmcp uses the
/// metadata document URL as the client id).
/// `redirect_uri` is `None` for the device grant, which has no redirect.
pub(super) async fn registration(
    target: &Target,
    metadata: &AuthorizationMetadata,
    http: &BridgeOAuthHttp,
    redirect_uri: Option<&str>,
    previous: Option<&TokenEntry>,
) -> Result<Option<ClientRegistration>, OAuthError> {
    let settings = &target.settings;
    let auth_methods = token_auth_methods(metadata);
    if let Some(client_id) = &settings.client_id {
        let secret = settings.client_secret.as_ref().map(|secret| Secret::new(secret.expose().to_owned()));
        let method = if secret.is_none() {
            "none"
        } else if auth_methods.iter().any(|m| m == "client_secret_post")
            && !auth_methods.iter().any(|m| m == "client_secret_basic")
        {
            "client_secret_post"
        } else {
            "client_secret_basic"
        };
        return Ok(Some(ClientRegistration {
            client_id: client_id.clone(),
            client_secret: secret,
            redirect_uri: redirect_uri.map(str::to_owned),
            token_endpoint_auth_method: Some(method.to_owned()),
            source: ClientSource::Preregistered,
            client_secret_expires_at: None,
        }));
    }
    let cimd_supported = metadata
        .additional_fields
        .get("client_id_metadata_document_supported")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    if settings.client_metadata_url.is_some() && cimd_supported {
        return Ok(None);
    }
    if let Some(previous) = previous
        && previous.client.source == ClientSource::Dynamic
        && previous.client.redirect_uri.as_deref() == redirect_uri
        && !authorize::secret_expired(&previous.client, store::now())
    {
        return Ok(Some(previous.client.clone()));
    }
    let Some(endpoint) = &metadata.registration_endpoint else {
        return Err(OAuthError::Flow {
            upstream: target.name.clone(),
            reason: "the authorization server offers no dynamic registration; set `oauth.client_id` (and `client_secret`) from a client you registered with it, or `oauth.client_metadata_url`".to_owned(),
        });
    };
    register(target, http, endpoint, redirect_uri).await.map(Some)
}

fn token_auth_methods(metadata: &AuthorizationMetadata) -> Vec<String> {
    metadata
        .additional_fields
        .get("token_endpoint_auth_methods_supported")
        .and_then(serde_json::Value::as_array)
        .map(|methods| methods.iter().filter_map(|m| m.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// RFC 7591 dynamic registration as a native public client.
async fn register(
    target: &Target,
    http: &BridgeOAuthHttp,
    endpoint: &str,
    redirect_uri: Option<&str>,
) -> Result<ClientRegistration, OAuthError> {
    let settings = &target.settings;
    let mut body = json!({
        "client_name": settings.client_name.clone().unwrap_or_else(|| "foxxy-bridge".to_owned()),
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    });
    match redirect_uri {
        Some(redirect_uri) => {
            body["redirect_uris"] = json!([redirect_uri]);
            body["grant_types"] = json!(["authorization_code", "refresh_token"]);
            body["response_types"] = json!(["code"]);
        }
        None => {
            body["grant_types"] = json!([device::GRANT_TYPE, "refresh_token"]);
            body["response_types"] = json!([]);
        }
    }
    if let Some(uri) = &settings.client_uri {
        body["client_uri"] = json!(uri);
    }
    if !settings.scopes.is_empty() {
        body["scope"] = json!(settings.scopes.join(" "));
    }
    let failed = |reason: String| OAuthError::Flow {
        upstream: target.name.clone(),
        reason: format!("dynamic client registration failed: {reason}"),
    };
    let request = oauth2::http::Request::post(endpoint)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(serde_json::to_vec(&body).map_err(|error| failed(error.to_string()))?)
        .map_err(|error| failed(error.to_string()))?;
    let response = http
        .execute(request, rmcp::transport::OAuthHttpRedirectPolicy::Stop)
        .await
        .map_err(|error| failed(error.to_string()))?;
    if !response.status().is_success() {
        let text = String::from_utf8_lossy(response.body());
        return Err(failed(format!(
            "HTTP {}: {}",
            response.status().as_u16(),
            text.chars().take(300).collect::<String>()
        )));
    }
    #[derive(serde::Deserialize)]
    struct Registered {
        client_id: String,
        client_secret: Option<String>,
        token_endpoint_auth_method: Option<String>,
        client_secret_expires_at: Option<u64>,
    }
    let registered: Registered =
        serde_json::from_slice(response.body()).map_err(|error| failed(error.to_string()))?;
    tracing::info!(upstream = %target.name, "registered as an OAuth client");
    Ok(ClientRegistration {
        client_id: registered.client_id,
        client_secret: registered.client_secret.filter(|secret| !secret.is_empty()).map(Secret::new),
        redirect_uri: redirect_uri.map(str::to_owned),
        token_endpoint_auth_method: registered.token_endpoint_auth_method.or(Some("none".to_owned())),
        source: ClientSource::Dynamic,
        client_secret_expires_at: registered.client_secret_expires_at,
    })
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

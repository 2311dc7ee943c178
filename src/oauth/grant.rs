//! What every authorization grant of a sign-in (the browser's authorization code, the
//! device code) shares: the client to use (pre-registered → client ID metadata document →
//! a stored or new RFC 7591 dynamic registration, done here because rmcp keeps neither
//! the secret nor the redirect URI), the RFC 8707 `resource` to send, and the token-cache
//! entry made from a token response.

use oauth2::TokenResponse as _;
use rmcp::transport::{
    AuthorizationManager,
    auth::{AuthorizationMetadata, OAuthClientConfig},
};
use serde_json::json;

use super::{
    OAuthError, Target, authorize,
    http::BridgeOAuthHttp,
    store::{self, ClientRegistration, ClientSource, Secret, TokenEntry},
};

/// The RFC 8628 device authorization grant's `grant_type`.
pub const DEVICE_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

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
            body["grant_types"] = json!([DEVICE_GRANT_TYPE, "refresh_token"]);
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

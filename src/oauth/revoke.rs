//! RFC 7009 token revocation when the user signs out (`oauth logout`): best effort. The
//! authorization server is found by discovery; without a `revocation_endpoint` nothing is
//! sent. The refresh token is revoked (which ends its access tokens too), else the access
//! token. The request is built here rather than with `oauth2`, which refuses plain http
//! even on loopback hosts; the client authenticates with its id and, when it has one, its
//! secret in the form.

use super::{
    Target, discovery,
    http::{BridgeOAuthHttp, is_secure_or_loopback},
    store::{self, TokenEntry},
};

/// What revocation did: `Ok(None)` when the server offers none.
pub async fn revoke(target: &Target, entry: &TokenEntry) -> Result<Option<String>, String> {
    let found = discovery::discover(target, None).await.map_err(|error| error.to_string())?;
    let Some(endpoint) = found
        .metadata
        .additional_fields
        .get("revocation_endpoint")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
    else {
        return Ok(None);
    };
    if !is_secure_or_loopback(&endpoint) {
        return Err(format!("refusing plain http for `{}`", store::redacted_url(&endpoint)));
    }
    let (token, hint) = match &entry.refresh_token {
        Some(refresh) => (refresh.expose(), "refresh_token"),
        None => (entry.access_token.expose(), "access_token"),
    };
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("token", token).append_pair("token_type_hint", hint);
    form.append_pair("client_id", &entry.client.client_id);
    if let Some(secret) = &entry.client.client_secret {
        form.append_pair("client_secret", secret.expose());
    }
    let request = oauth2::http::Request::post(&endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.finish().into_bytes())
        .map_err(|error| error.to_string())?;
    let http: BridgeOAuthHttp = found.http;
    let response = http
        .execute(request, rmcp::transport::OAuthHttpRedirectPolicy::Stop)
        .await
        .map_err(|error| error.to_string())?;
    if response.status().as_u16() == 200 {
        Ok(Some(store::redacted_url(&endpoint)))
    } else {
        Err(format!("`{}` answered HTTP {}", store::redacted_url(&endpoint), response.status().as_u16()))
    }
}

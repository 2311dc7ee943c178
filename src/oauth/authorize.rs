//! The authorization-code grant with PKCE S256, on the `oauth2` crate: the authorization
//! URL (`state`, the PKCE challenge, the RFC 8707 `resource`, the scopes and
//! `additional_params`), the checks of the redirect the browser ends on (`state`, RFC 9207
//! `iss`), and the code exchange. Also [`token_client`], the client authentication that
//! every token request of one client uses, so the code exchange and every later refresh
//! authenticate the same way (the registered `token_endpoint_auth_method`).
//!
//! Discovery and registration are not here (`flow.rs`); nothing here opens a browser or
//! listens for the callback.
//!
//! `additional_params` go into the URL except the parameters the flow sets itself
//! (`OAUTH_FLOW_PARAMS`), which config validation refuses.

use std::borrow::Cow;

use oauth2::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, TokenUrl,
    basic::{BasicClient, BasicTokenResponse},
};

use super::{http::BridgeOAuthHttp, store::ClientRegistration};
use crate::config::OAUTH_FLOW_PARAMS;

/// A `BasicClient` that knows only its token endpoint.
pub type TokenClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// The client of a token request, authenticating as `client` registered: with
/// `client_secret_post` the secret goes in the form, with `client_secret_basic` (or a
/// secret and no method) in HTTP Basic, and with `none` only the `client_id` is sent.
pub fn token_client(client: &ClientRegistration, token_endpoint: &str) -> Result<TokenClient, String> {
    let token_url = TokenUrl::new(token_endpoint.to_owned())
        .map_err(|error| format!("invalid token endpoint `{token_endpoint}`: {error}"))?;
    let mut oauth_client = BasicClient::new(ClientId::new(client.client_id.clone())).set_token_uri(token_url);
    let method = client.token_endpoint_auth_method.as_deref();
    if let Some(secret) = client.client_secret.as_ref().filter(|_| method != Some("none")) {
        oauth_client = oauth_client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
    }
    if method == Some("client_secret_post") {
        oauth_client = oauth_client.set_auth_type(AuthType::RequestBody);
    }
    Ok(oauth_client)
}

/// An authorization URL handed to the user, and what its redirect must be checked
/// against and exchanged with.
pub struct PendingAuthorization {
    pub url: String,
    pub state: String,
    verifier: PkceCodeVerifier,
    redirect_uri: String,
    resource: Option<String>,
}

impl PendingAuthorization {
    /// The RFC 8707 `resource` the URL carries, which the token requests repeat.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }
}

/// What the request asks for, besides the client.
pub struct AuthorizationParams<'a> {
    pub authorization_endpoint: &'a str,
    pub redirect_uri: &'a str,
    pub scopes: &'a [String],
    /// The RFC 8707 `resource`, or `None` when it is not sent.
    pub resource: Option<&'a str>,
    /// Extra query parameters; flow parameters among them are ignored (config
    /// validation refuses them) and `resource` is carried by `resource` instead.
    pub additional_params: &'a std::collections::BTreeMap<String, String>,
}

pub fn authorization_url(
    client_id: &str,
    params: &AuthorizationParams<'_>,
) -> Result<PendingAuthorization, String> {
    let mut url = url::Url::parse(params.authorization_endpoint)
        .map_err(|error| format!("invalid authorization endpoint: {error}"))?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let state = CsrfToken::new_random().secret().clone();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", params.redirect_uri)
            .append_pair("state", &state)
            .append_pair("code_challenge", challenge.as_str())
            .append_pair("code_challenge_method", "S256");
        if !params.scopes.is_empty() {
            query.append_pair("scope", &params.scopes.join(" "));
        }
        if let Some(resource) = params.resource {
            query.append_pair("resource", resource);
        }
        for (key, value) in params.additional_params {
            if key != "resource" && !OAUTH_FLOW_PARAMS.contains(&key.as_str()) {
                query.append_pair(key, value);
            }
        }
    }
    Ok(PendingAuthorization {
        url: url.into(),
        state,
        verifier,
        redirect_uri: params.redirect_uri.to_owned(),
        resource: params.resource.map(str::to_owned),
    })
}

/// The code of a redirect the browser ended on, after checking its `state` and its RFC 9207
/// `iss`: when present it must be the issuer, and when the server promised it
/// (`authorization_response_iss_parameter_supported`) it must be present.
pub fn code_from_redirect(
    redirect: &str,
    expected_state: &str,
    issuer: &str,
    iss_required: bool,
) -> Result<String, String> {
    let url = url::Url::parse(redirect).map_err(|error| format!("not a URL: {error}"))?;
    let get =
        |name: &str| url.query_pairs().find(|(key, _)| key == name).map(|(_, value)| value.into_owned());
    if let Some(error) = get("error") {
        let description = get("error_description").map(|text| format!(": {text}")).unwrap_or_default();
        return Err(format!("the authorization server refused the sign-in: {error}{description}"));
    }
    if get("state").as_deref() != Some(expected_state) {
        return Err("the redirect's `state` does not belong to this sign-in".to_owned());
    }
    match get("iss") {
        Some(iss) if iss.trim_end_matches('/') != issuer.trim_end_matches('/') => {
            return Err(format!("the redirect's `iss` `{iss}` is not the authorization server `{issuer}`"));
        }
        None if iss_required => {
            return Err(format!("the redirect has no `iss` although `{issuer}` promises one (RFC 9207)"));
        }
        _ => {}
    }
    get("code").filter(|code| !code.is_empty()).ok_or_else(|| "the redirect carries no `code`".to_owned())
}

/// Exchange `code` at the token endpoint, authenticating as `client`.
pub async fn exchange(
    http: &BridgeOAuthHttp,
    client: &ClientRegistration,
    token_endpoint: &str,
    pending: PendingAuthorization,
    code: String,
) -> Result<BasicTokenResponse, String> {
    let oauth_client = token_client(client, token_endpoint)?;
    let redirect = RedirectUrl::new(pending.redirect_uri).map_err(|error| error.to_string())?;
    let mut request = oauth_client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(pending.verifier)
        .set_redirect_uri(Cow::Owned(redirect));
    if let Some(resource) = pending.resource {
        request = request.add_extra_param("resource", resource);
    }
    request.request_async(http).await.map_err(|error| describe_token_error(&error))
}

/// A token-endpoint failure in words, never quoting a body (a malformed success may hold
/// a token).
pub fn describe_token_error<E: std::error::Error>(
    error: &RequestTokenError<E, oauth2::StandardErrorResponse<oauth2::basic::BasicErrorResponseType>>,
) -> String {
    match error {
        RequestTokenError::ServerResponse(response) => {
            let description =
                response.error_description().map(|text| format!(": {text}")).unwrap_or_default();
            format!("the token endpoint answered `{}`{description}", response.error())
        }
        RequestTokenError::Request(error) => error.to_string(),
        RequestTokenError::Parse(_, body) => {
            format!("the token endpoint sent an unreadable answer ({} bytes)", body.len())
        }
        RequestTokenError::Other(text) => text.clone(),
    }
}

/// The scopes to ask for. A first sign-in asks for `initial` (the challenge's `scope`,
/// else the protected resource's `scopes_supported`, else nothing); a step-up for what
/// was granted plus what the server now asks for; both plus the configured ones.
pub fn requested_scopes(
    initial: &[String],
    configured: &[String],
    granted: &[String],
    step_up: &[String],
) -> Vec<String> {
    let base: Vec<&String> =
        if step_up.is_empty() { initial.iter().collect() } else { granted.iter().chain(step_up).collect() };
    let mut scopes: Vec<String> = Vec::new();
    for scope in base.into_iter().chain(configured) {
        if !scope.is_empty() && !scopes.contains(scope) {
            scopes.push(scope.clone());
        }
    }
    scopes
}

/// A client secret whose RFC 7591 `client_secret_expires_at` has passed (0 = never).
pub fn secret_expired(client: &ClientRegistration, now: u64) -> bool {
    client.client_secret.is_some() && client.client_secret_expires_at.is_some_and(|at| at != 0 && at <= now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::store::Secret;

    #[test]
    fn scopes_follow_the_challenge_then_the_resource_then_nothing() {
        #[track_caller]
        fn check(
            initial: &[&str],
            configured: &[&str],
            granted: &[&str],
            step_up: &[&str],
            expected: &[&str],
        ) {
            let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            let got = requested_scopes(&owned(initial), &owned(configured), &owned(granted), &owned(step_up));
            assert_eq!(got, owned(expected));
        }
        check(&["read"], &[], &[], &[], &["read"]);
        check(&[], &[], &[], &[], &[]);
        check(&["read"], &["profile", "read"], &[], &[], &["read", "profile"]);
        check(&["read"], &[], &["read", "write"], &["admin"], &["read", "write", "admin"]);
        check(&[], &["x"], &["read"], &["admin"], &["read", "admin", "x"]);
    }

    #[test]
    fn redirects_are_checked_for_state_and_iss() {
        #[track_caller]
        fn check(redirect: &str, required: bool, expected: Result<&str, &str>) {
            let got = code_from_redirect(redirect, "s1", "http://127.0.0.1:9", required);
            match (got, expected) {
                (Ok(code), Ok(wanted)) => assert_eq!(code, wanted),
                (Err(error), Err(part)) => assert!(error.contains(part), "{error}"),
                (got, wanted) => panic!("{redirect}: got {got:?}, wanted {wanted:?}"),
            }
        }
        let base = "http://127.0.0.1:5/callback";
        check(&format!("{base}?code=c&state=s1&iss=http%3A%2F%2F127.0.0.1%3A9"), true, Ok("c"));
        check(&format!("{base}?code=c&state=s1"), false, Ok("c"));
        check(&format!("{base}?code=c&state=s1"), true, Err("has no `iss`"));
        check(
            &format!("{base}?code=c&state=s1&iss=http%3A%2F%2Fevil"),
            false,
            Err("is not the authorization"),
        );
        check(&format!("{base}?code=c&state=s2"), false, Err("`state`"));
        check(
            &format!("{base}?state=s1&error=access_denied"),
            false,
            Err("refused the sign-in: access_denied"),
        );
        check(&format!("{base}?state=s1"), false, Err("no `code`"));
    }

    #[test]
    fn expired_client_secrets() {
        let mut client = ClientRegistration {
            client_id: "c".into(),
            client_secret: Some(Secret::new("s")),
            redirect_uri: None,
            token_endpoint_auth_method: Some("client_secret_post".into()),
            source: crate::oauth::store::ClientSource::Dynamic,
            client_secret_expires_at: Some(100),
        };
        assert!(secret_expired(&client, 100));
        assert!(!secret_expired(&client, 99));
        client.client_secret_expires_at = Some(0);
        assert!(!secret_expired(&client, u64::MAX), "0 means it never expires");
        client.client_secret_expires_at = None;
        assert!(!secret_expired(&client, u64::MAX));
    }
}

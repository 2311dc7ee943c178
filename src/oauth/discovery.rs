//! Finding the authorization server of an upstream, on rmcp's discovery: the
//! challenge's `resource_metadata`, RFC 9728 well-known paths, RFC 8414 / OIDC metadata;
//! then the configured `oauth.issuer`. It refuses an authorization server that does not
//! advertise PKCE S256 (rmcp only warns) and endpoints that are plain http off loopback.
//! A failure says why: the problem rmcp reported (an issuer or resource mismatch), the
//! outcome of every candidate URL, and the hint to set `oauth.issuer` only when no
//! metadata was published at all.
//!
//! From the configured issuer (`from_issuer`), path insertion is tried first, and redirects
//! are followed only to https or loopback on the issuer's origin.

use std::sync::Arc;

use rmcp::transport::{
    AuthorizationManager,
    auth::{AuthorizationMetadata, AuthorizationMetadataSource},
};

use super::{
    OAuthError, Target,
    http::{BridgeOAuthHttp, is_secure_or_loopback},
    store,
};

/// What discovery found for one upstream.
pub struct Discovery {
    pub manager: AuthorizationManager,
    pub metadata: AuthorizationMetadata,
    pub issuer: String,
    pub http: BridgeOAuthHttp,
}

/// Find the authorization server of `target`: from the challenge's
/// `resource_metadata`, else the well-known paths, else the configured `issuer`.
pub async fn discover(target: &Target, challenge: Option<&str>) -> Result<Discovery, OAuthError> {
    let http = BridgeOAuthHttp::new(target.verify_ssl, target.settings.send_resource).map_err(|error| {
        OAuthError::Discovery { upstream: target.name.clone(), reason: error.to_string(), tried: vec![] }
    })?;
    let mut manager =
        AuthorizationManager::new_with_oauth_http_client(target.url.as_str(), Arc::new(http.clone()))
            .await
            .map_err(|error| discovery_error(target, &http, error.to_string()))?;
    // Why discovery through the server found nothing usable, if it says.
    let mut server_problem = None;
    let resolved = match manager.resolve_metadata_from_challenge(challenge).await {
        Ok(resolution) if resolution.source != AuthorizationMetadataSource::LegacyEndpointFallback => {
            Some(resolution.metadata)
        }
        Ok(_) => None,
        Err(error) => {
            let reason = error_chain(&error);
            tracing::warn!(upstream = %target.name, "OAuth discovery through the server failed: {reason}");
            server_problem = Some(reason);
            None
        }
    };
    let metadata = match resolved {
        Some(metadata) => metadata,
        None => match &target.settings.issuer {
            Some(issuer) => from_issuer(&http, issuer).await.map_err(|reason| {
                let reason = match &server_problem {
                    Some(problem) => format!("{reason}; through the server: {problem}"),
                    None => reason,
                };
                discovery_error(target, &http, reason)
            })?,
            None => {
                // The hint helps only when nothing was published at all; metadata that
                // was found but refused is reported as what it is.
                let reason = match server_problem {
                    Some(problem) if found_any_metadata(&http) => problem,
                    Some(problem) => format!(
                        "no OAuth metadata found ({problem}); set `oauth.issuer` if the server does not publish it"
                    ),
                    None => "no OAuth metadata found (set `oauth.issuer` if the server does not publish it)"
                        .to_owned(),
                };
                return Err(discovery_error(target, &http, reason));
            }
        },
    };
    let issuer = metadata.issuer.clone().or_else(|| target.settings.issuer.clone()).ok_or_else(|| {
        discovery_error(target, &http, "the authorization server metadata names no issuer".to_owned())
    })?;
    if let Some(configured) = &target.settings.issuer
        && configured.trim_end_matches('/') != issuer.trim_end_matches('/')
    {
        tracing::warn!(upstream = %target.name, %configured, discovered = %issuer, "the configured issuer differs from the discovered one; using the discovered issuer");
    }
    // The spec says to refuse a server that does not advertise S256 (rmcp only warns).
    let s256 = metadata
        .code_challenge_methods_supported
        .as_ref()
        .is_some_and(|methods| methods.iter().any(|m| m == "S256"));
    if !s256 {
        return Err(OAuthError::NoPkce { upstream: target.name.clone(), issuer });
    }
    for endpoint in [
        Some(&metadata.authorization_endpoint),
        Some(&metadata.token_endpoint),
        metadata.registration_endpoint.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        if !is_secure_or_loopback(endpoint) {
            let url = store::redacted_url(endpoint);
            return Err(OAuthError::Insecure { upstream: target.name.clone(), url });
        }
    }
    manager.set_metadata(metadata.clone());
    Ok(Discovery { manager, metadata, issuer, http })
}

fn discovery_error(target: &Target, http: &BridgeOAuthHttp, reason: String) -> OAuthError {
    OAuthError::Discovery {
        upstream: target.name.clone(),
        reason,
        tried: http.attempts().iter().map(ToString::to_string).collect(),
    }
}

/// Whether any metadata document was answered with success during discovery.
fn found_any_metadata(http: &BridgeOAuthHttp) -> bool {
    http.attempts()
        .iter()
        .any(|attempt| attempt.url.contains("/.well-known/") && attempt.outcome == "HTTP 200")
}

/// An error and its sources, joined with `: `.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Redirects followed while fetching a configured issuer's metadata.
const MAX_METADATA_REDIRECTS: usize = 5;

/// RFC 8414 / OIDC metadata straight from a configured issuer (path insertion first).
/// Every candidate URL's outcome is part of the error. Redirects are followed only to
/// https (or loopback) URLs on the issuer's own origin.
async fn from_issuer(http: &BridgeOAuthHttp, issuer: &str) -> Result<AuthorizationMetadata, String> {
    let base =
        url::Url::parse(issuer).map_err(|error| format!("invalid `oauth.issuer` `{issuer}`: {error}"))?;
    let path = base.path().trim_matches('/');
    let origin = base.origin().ascii_serialization();
    let candidates = if path.is_empty() {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server"),
            format!("{origin}/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server/{path}"),
            format!("{origin}/.well-known/openid-configuration/{path}"),
            format!("{origin}/{path}/.well-known/openid-configuration"),
        ]
    };
    let mut problems = Vec::new();
    for candidate in candidates {
        let metadata = match fetch_metadata(http, &base, &candidate).await {
            Ok(metadata) => metadata,
            Err(problem) => {
                problems.push(format!("`{candidate}`: {problem}"));
                continue;
            }
        };
        // RFC 8414 §3.3: the document must name exactly the issuer it was fetched for.
        match metadata.issuer.as_deref() {
            Some(found) if found.trim_end_matches('/') == issuer.trim_end_matches('/') => {
                return Ok(metadata);
            }
            Some(found) => problems.push(format!(
                "`{candidate}`: issuer mismatch: the document names `{found}`, not the configured `{issuer}`"
            )),
            None => problems.push(format!("`{candidate}`: the document names no issuer")),
        }
    }
    Err(format!(
        "no authorization server metadata for the configured issuer `{issuer}` ({})",
        problems.join("; ")
    ))
}

/// GET one metadata document, following redirects that stay on `issuer`'s origin.
async fn fetch_metadata(
    http: &BridgeOAuthHttp,
    issuer: &url::Url,
    url: &str,
) -> Result<AuthorizationMetadata, String> {
    let mut current = url.to_owned();
    for _ in 0..=MAX_METADATA_REDIRECTS {
        let request = oauth2::http::Request::get(&current)
            .header("accept", "application/json")
            .body(Vec::new())
            .map_err(|error| error.to_string())?;
        let response = http
            .execute(request, rmcp::transport::OAuthHttpRedirectPolicy::Stop)
            .await
            .map_err(|error| error.to_string())?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(oauth2::http::header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .ok_or_else(|| format!("HTTP {} without a Location", status.as_u16()))?;
            current = allowed_redirect(issuer, &current, location)?;
            continue;
        }
        if !status.is_success() {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        return serde_json::from_slice::<AuthorizationMetadata>(response.body())
            .map_err(|error| format!("not authorization server metadata: {error}"));
    }
    Err(format!("more than {MAX_METADATA_REDIRECTS} redirects"))
}

/// Where a redirect from `from` to `location` leads, if it stays on the issuer's origin
/// and is https (or loopback).
fn allowed_redirect(issuer: &url::Url, from: &str, location: &str) -> Result<String, String> {
    let target = url::Url::parse(from)
        .and_then(|from| from.join(location))
        .map_err(|error| format!("a redirect to `{location}` that is not a URL: {error}"))?;
    if !is_secure_or_loopback(target.as_str()) {
        return Err(format!("refused a redirect to `{}`: not https", store::redacted_url(target.as_str())));
    }
    if target.origin() != issuer.origin() {
        return Err(format!(
            "refused a redirect to `{}`: not on the issuer's origin",
            store::redacted_url(target.as_str())
        ));
    }
    Ok(target.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_redirects_stay_on_the_issuers_origin_and_https() {
        #[track_caller]
        fn check(from: &str, location: &str, expected: Result<&str, &str>) {
            let issuer = url::Url::parse("https://auth.example.com/tenant").unwrap();
            match (allowed_redirect(&issuer, from, location), expected) {
                (Ok(to), Ok(wanted)) => assert_eq!(to, wanted),
                (Err(error), Err(part)) => assert!(error.contains(part), "{error}"),
                (got, wanted) => panic!("{location}: got {got:?}, wanted {wanted:?}"),
            }
        }
        let from = "https://auth.example.com/.well-known/oauth-authorization-server/tenant";
        check(from, "/other", Ok("https://auth.example.com/other"));
        check(from, "https://auth.example.com/x", Ok("https://auth.example.com/x"));
        check(from, "https://evil.example.com/x", Err("not on the issuer's origin"));
        check(from, "http://auth.example.com/x", Err("not https"));
    }
}

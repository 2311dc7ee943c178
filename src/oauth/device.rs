//! The RFC 8628 device authorization grant, for a sign-in without a browser on this
//! machine (`oauth login --device`, `oauth login` or the placeholder tool without a
//! display, when the server offers it): ask the `device_authorization_endpoint` for a
//! user code, show the verification URI and the code (stderr from a shell, the prompt
//! board in a bridge), and poll the token endpoint at the server's
//! `interval` (plus 5 s for good after each `slow_down`) until the user approves, denies
//! (`access_denied`) or the code expires (`expired_token`). The `oauth2` crate does the
//! requests and the polling; the `resource` goes with the request and every poll.

use std::time::Duration;

use oauth2::{
    DeviceAuthorizationUrl, DeviceCodeErrorResponseType, RequestTokenError, Scope,
    StandardDeviceAuthorizationResponse,
};
use rmcp::transport::auth::AuthorizationMetadata;

use super::{
    OAuthError, SignInContext, Target, authorize,
    discovery::Discovery,
    grant,
    http::is_secure_or_loopback,
    prompt::{PromptBoard, SignInPrompt},
    store::{self, ClientRegistration, ClientSource, TokenEntry},
};
use crate::output;

/// The authorization server's `device_authorization_endpoint`, if it has one.
pub fn endpoint(metadata: &AuthorizationMetadata) -> Option<String> {
    metadata
        .additional_fields
        .get("device_authorization_endpoint")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// Sign in with the device grant and return the entry to store (the caller holds the
/// entry's lock).
pub async fn sign_in(
    context: &SignInContext,
    target: &Target,
    discovery: Discovery,
    previous: Option<&TokenEntry>,
    board: &PromptBoard,
) -> Result<TokenEntry, OAuthError> {
    let Discovery { mut manager, metadata, issuer, http } = discovery;
    let failed = |reason: String| OAuthError::Flow { upstream: target.name.clone(), reason };
    let Some(device_url) = endpoint(&metadata) else {
        return Err(failed(format!(
            "the authorization server `{issuer}` offers no device sign-in (no `device_authorization_endpoint`)\nhint: run `foxxy-bridge oauth login {} --no-browser` instead",
            target.name
        )));
    };
    if !is_secure_or_loopback(&device_url) {
        return Err(OAuthError::Insecure {
            upstream: target.name.clone(),
            url: store::redacted_url(&device_url),
        });
    }
    let client = match grant::registration(target, &metadata, &http, None, previous).await? {
        Some(client) => client,
        None => ClientRegistration {
            client_id: target.settings.client_metadata_url.clone().unwrap_or_default(),
            client_secret: None,
            redirect_uri: None,
            token_endpoint_auth_method: Some("none".to_owned()),
            source: ClientSource::Cimd,
            client_secret_expires_at: None,
        },
    };
    let initial = manager.select_initial_scopes(&[]).await;
    let scopes = authorize::requested_scopes(&initial, &target.settings.scopes, &[], &[]);
    let resource = grant::resource_for(target, &mut manager).await;
    let device_url = DeviceAuthorizationUrl::new(device_url).map_err(|error| failed(error.to_string()))?;
    let oauth_client = authorize::token_client(&client, &metadata.token_endpoint)
        .map_err(failed)?
        .set_device_authorization_url(device_url);
    let mut request = oauth_client.exchange_device_code().add_scopes(scopes.iter().cloned().map(Scope::new));
    if let Some(resource) = &resource {
        request = request.add_extra_param("resource", resource.clone());
    }
    let details: StandardDeviceAuthorizationResponse =
        request.request_async(&http).await.map_err(|error| {
            failed(format!(
                "the device authorization request failed: {}",
                authorize::describe_token_error(&error)
            ))
        })?;
    show(target, &details, context.shell.is_some());
    let url = details
        .verification_uri_complete()
        .map_or_else(|| details.verification_uri().as_str().to_owned(), |complete| complete.secret().clone());
    board.show(SignInPrompt {
        url,
        user_code: Some(details.user_code().secret().clone()),
        accepts_paste: false,
    });
    let mut poll = oauth_client.exchange_device_access_token(&details);
    if let Some(resource) = &resource {
        poll = poll.add_extra_param("resource", resource.clone());
    }
    let wait = details.expires_in().min(context.sign_in_timeout.max(Duration::from_secs(60)));
    let token = poll
        .request_async(&http, tokio::time::sleep, Some(wait))
        .await
        .map_err(|error| failed(describe(&error)))?;
    Ok(grant::token_entry(target, issuer, &token, client, &metadata, resource, &scopes))
}

/// Tell the user where to go and what to enter: in the log, and on stderr from a shell.
fn show(target: &Target, details: &StandardDeviceAuthorizationResponse, on_stderr: bool) {
    let uri = details.verification_uri().as_str();
    let code = details.user_code().secret();
    tracing::info!(upstream = %target.name, "device sign-in: open {uri} and enter the code {code}");
    if !on_stderr {
        return;
    }
    output::error_line(format_args!("To sign in to `{}`, open {uri} and enter the code {code}", target.name));
    if let Some(complete) = details.verification_uri_complete() {
        output::error_line(format_args!("(or open {}, which carries the code)", complete.secret()));
    }
    output::error_line("Waiting for the sign-in to be approved…");
}

/// A device-flow failure in words.
fn describe<E: std::error::Error>(
    error: &RequestTokenError<E, oauth2::StandardErrorResponse<DeviceCodeErrorResponseType>>,
) -> String {
    match error {
        RequestTokenError::ServerResponse(response) => match response.error() {
            DeviceCodeErrorResponseType::AccessDenied => "the sign-in was denied".to_owned(),
            DeviceCodeErrorResponseType::ExpiredToken => {
                "the code expired before the sign-in was approved; run the sign-in again".to_owned()
            }
            other => {
                let description =
                    response.error_description().map(|text| format!(": {text}")).unwrap_or_default();
                format!("the authorization server answered `{other}`{description}")
            }
        },
        RequestTokenError::Request(error) => error.to_string(),
        RequestTokenError::Parse(_, body) => {
            format!("the authorization server sent an unreadable answer ({} bytes)", body.len())
        }
        RequestTokenError::Other(text) => text.clone(),
    }
}

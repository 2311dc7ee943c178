//! OAuth for remote upstreams: discovery, the browser sign-in, the shared token cache
//! and keeping tokens fresh.
//!
//! - `store.rs` owns the token files and their locks; nothing else touches them.
//! - `discovery.rs` finds the authorization server (on rmcp's `auth`); `flow.rs` runs the
//!   sign-in, with `authorize.rs` for the authorization-code grant itself.
//! - `tokens.rs` is the per-upstream [`TokenSource`]: the current access token,
//!   refreshed once per expiry across all bridge processes, and sign-in when needed.
//! - `client.rs` puts the token on every request of rmcp's streamable HTTP client and
//!   reacts to 401 (refresh, then sign-in) and 403 `insufficient_scope` (step-up).
//! - `prompt.rs` shows a sign-in's URL or device code to the placeholder tool of an MCP
//!   client, and takes back the address the browser ended on.
//! - `callback.rs` is the loopback listener of one sign-in, `browser.rs` opens the URL,
//!   `http.rs` is the HTTP client with the bridge's rules (https, TLS, `resource`).
//!
//! This module does not own connections to upstreams (`upstream/` does) and never
//! logs a token.
//!
//! [`Target`] is an upstream as OAuth sees it: its config name, canonical URL, OAuth
//! settings and TLS verification (`Target::for_remote` is `None` when OAuth is off for it).
//! [`SignInContext`] is what every sign-in of one process needs: the token store, the
//! browser, the callback host and port, the sign-in timeout and the pause after a failed
//! sign-in, and `shell`, how a sign-in started from a shell reaches the user
//! ([`ShellSignIn`]).

pub mod authorize;
pub mod browser;
pub mod callback;
pub mod client;
pub mod device;
pub mod discovery;
pub mod flow;
pub mod grant;
pub mod http;
pub mod prompt;
pub mod revoke;
pub mod store;
pub mod tokens;

use std::time::Duration;

pub use self::{
    browser::Browser,
    store::{TokenEntry, TokenStore},
    tokens::TokenSource,
};
use crate::config::{BridgeSettings, OAuthSettings, RemoteSettings};

/// One remote upstream, as OAuth sees it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The config name, for messages.
    pub name: String,
    /// The canonical MCP endpoint URL (the token cache key).
    pub url: String,
    pub settings: OAuthSettings,
    pub verify_ssl: bool,
}

impl Target {
    /// The OAuth view of a remote upstream; `None` when OAuth is switched off for it
    /// (`"oauth": {"enabled": false}`).
    pub fn for_remote(name: &str, remote: &RemoteSettings) -> Option<Result<Target, OAuthError>> {
        let settings = match &remote.oauth {
            Some(settings) if !settings.enabled => return None,
            Some(settings) => settings.clone(),
            None => OAuthSettings::defaults(),
        };
        Some(
            store::canonical_url(&remote.url)
                .map_err(|error| OAuthError::Store(error.to_string()))
                .map(|url| Target { name: name.to_owned(), url, settings, verify_ssl: remote.verify_ssl }),
        )
    }
}

/// Where and how sign-ins happen in this process.
#[derive(Debug, Clone)]
pub struct SignInContext {
    pub store: TokenStore,
    pub browser: Browser,
    /// Callback listener host (`bridge.host`) and port (`bridge.oauth_port`).
    pub host: String,
    pub port: u16,
    pub sign_in_timeout: Duration,
    /// How long automatic sign-ins pause after one failed (`bridge.signInRetryAfter`).
    pub sign_in_retry_after: Duration,
    /// Set when a user runs the sign-in from a shell (`oauth login`): how it reaches them.
    /// `None` in a bridge, whose stderr nobody may read.
    pub shell: Option<ShellSignIn>,
}

/// How a sign-in started from a shell reaches the user. Every way prints the
/// authorization URL on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellSignIn {
    /// Open the browser; the loopback callback catches the code.
    Browser,
    /// Do not open a browser; read the address the browser ended on (or the bare code)
    /// from stdin, while the loopback callback listens too.
    PasteBack,
    /// The RFC 8628 device authorization grant.
    Device,
    /// No display: the device grant when the authorization server offers it, else
    /// paste-back.
    Headless,
}

impl SignInContext {
    pub fn new(store: TokenStore, browser: Browser, bridge: &BridgeSettings) -> Self {
        Self {
            store,
            browser,
            host: bridge.host.clone(),
            port: bridge.oauth_port,
            sign_in_timeout: bridge.sign_in_timeout,
            sign_in_retry_after: bridge.sign_in_retry_after,
            shell: None,
        }
    }
}

/// Why OAuth did not produce a token. Messages never contain a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthError {
    #[error("OAuth discovery for `{upstream}` failed: {reason}{}", tried_list(.tried))]
    Discovery { upstream: String, reason: String, tried: Vec<String> },
    #[error(
        "the authorization server `{issuer}` of `{upstream}` does not advertise PKCE S256, which MCP requires; refusing to sign in"
    )]
    NoPkce { upstream: String, issuer: String },
    #[error(
        "refusing plain http for `{url}` of `{upstream}`: OAuth endpoints must use https except on loopback hosts"
    )]
    Insecure { upstream: String, url: String },
    #[error("sign-in to `{upstream}` failed: {reason}")]
    Flow { upstream: String, reason: String },
    #[error("{0}")]
    Callback(String),
    #[error("`{upstream}` needs a sign-in: {reason}; hint: run `foxxy-bridge oauth login {upstream}`")]
    SignInRequired { upstream: String, reason: String },
    #[error("token refresh for `{upstream}` failed for now ({reason}); will retry")]
    Transient { upstream: String, reason: String },
    #[error("token cache: {0}")]
    Store(String),
}

fn tried_list(tried: &[String]) -> String {
    if tried.is_empty() {
        return String::new();
    }
    let mut text = String::from("; URLs tried:");
    for attempt in tried {
        text.push_str("\n  - ");
        text.push_str(attempt);
    }
    text
}

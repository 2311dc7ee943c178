//! What one token file holds: the tokens of one sign-in, the client registration they were
//! obtained with, and the little logic that reads them (expiry and status).
//!
//! The JSON shape extends the predecessor's token file (`access_token`, `refresh_token`,
//! `token_type`, `expires_in`, `scope`, `created_at`) with what a refresh needs without
//! repeating discovery. Unknown fields are ignored on read, so a newer bridge may add fields
//! without breaking an older one; an incompatible change bumps [`FORMAT_VERSION`].
//!
//! [`TokenEntry`] holds the tokens and their expiry, the client registration (with its
//! secret's expiry), the token endpoint, the `resource` sent and the granted scopes.
//! `SignInNote` is the note kept beside a URL's entries. Tokens and client secrets are
//! [`Secret`]s, whose `Debug` prints `[REDACTED]`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The `version` this code writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;

/// One cache entry: the tokens for one (upstream URL, authorization server) pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    /// Always [`FORMAT_VERSION`] when written; any other value makes the file unreadable.
    pub version: u32,
    /// The upstream's canonical URL ([`super::canonical_url`]); the store canonicalizes it on write.
    pub server_url: String,
    /// The authorization server's `issuer`, exactly as its metadata states it.
    pub issuer: String,
    pub access_token: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    /// Usually `Bearer`, as the token response said.
    pub token_type: String,
    /// Lifetime in seconds as the token response said, relative to `created_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// The `scope` string of the token response, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Unix seconds when these tokens were received.
    pub created_at: u64,
    /// Unix seconds when the access token expires: `created_at + expires_in`, made absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    pub client: ClientRegistration,
    /// Where refreshes go, so a refresh needs no discovery.
    pub token_endpoint: String,
    /// The RFC 8707 `resource` sent with the grant, if one was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The scopes granted, split; empty when the server did not say.
    #[serde(default)]
    pub granted_scopes: Vec<String>,
}

/// The OAuth client the tokens belong to; a refresh must use the same one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRegistration {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    pub source: ClientSource,
    /// RFC 7591 `client_secret_expires_at` (unix seconds, 0 = never); a client whose
    /// secret has expired is registered again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<u64>,
}

/// How the client id was obtained (tried in order: pre-registered → CIMD → dynamic registration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientSource {
    /// Configured by the user.
    Preregistered,
    /// A client ID metadata document URL.
    Cimd,
    /// RFC 7591 dynamic client registration.
    Dynamic,
}

/// Why bridges do not sign in to a URL by themselves: its last sign-in failed, or the user
/// signed out. Kept next to the URL's entries; a sign-in the user starts ignores it and a
/// successful one removes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInNote {
    pub kind: NoteKind,
    /// Unix seconds when it was written.
    pub at: u64,
    /// What happened, for messages.
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    /// A sign-in failed (denied, timed out, closed): automatic ones pause for a while.
    Failed,
    /// `oauth logout`: no automatic sign-in until the user signs in.
    SignedOut,
}

/// What a bridge can do with an entry right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryStatus {
    /// The access token has not expired (or its expiry is unknown).
    Valid,
    /// Expired, and there is no refresh token: a new sign-in is needed.
    Expired,
    /// Expired, but a refresh token may get a new one.
    Refreshable,
}

impl TokenEntry {
    /// The absolute expiry in unix seconds: `expires_at`, else `created_at + expires_in`,
    /// else unknown.
    pub fn expiry(&self) -> Option<u64> {
        self.expires_at.or_else(|| self.expires_in.map(|seconds| self.created_at.saturating_add(seconds)))
    }

    /// Whether the access token is expired, or expires within `margin` seconds of `now`.
    /// An entry without a known expiry is never expired: the server's 401 will tell.
    pub fn is_expired(&self, now: u64, margin: u64) -> bool {
        self.expiry().is_some_and(|expiry| now.saturating_add(margin) >= expiry)
    }

    pub fn status(&self, now: u64) -> EntryStatus {
        if !self.is_expired(now, 0) {
            EntryStatus::Valid
        } else if self.refresh_token.is_some() {
            EntryStatus::Refreshable
        } else {
            EntryStatus::Expired
        }
    }
}

/// The current time in unix seconds (0 if the clock is set before 1970).
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// Tokens and client secrets: redacted in `Debug`, plain in the file.
pub use crate::config::Secret;

/// A fully populated entry whose secrets all contain `SECRET`, for tests.
#[cfg(test)]
pub(super) fn sample(url: &str, issuer: &str) -> TokenEntry {
    TokenEntry {
        version: FORMAT_VERSION,
        server_url: url.to_owned(),
        issuer: issuer.to_owned(),
        access_token: Secret::new("at-SECRET-access"),
        refresh_token: Some(Secret::new("rt-SECRET-refresh")),
        token_type: "Bearer".to_owned(),
        expires_in: Some(3600),
        scope: Some("read write".to_owned()),
        created_at: 1_700_000_000,
        expires_at: Some(1_700_003_600),
        client: ClientRegistration {
            client_id: "client-1".to_owned(),
            client_secret: Some(Secret::new("cs-SECRET-client")),
            redirect_uri: Some("http://127.0.0.1:8090/callback".to_owned()),
            token_endpoint_auth_method: Some("client_secret_post".to_owned()),
            source: ClientSource::Dynamic,
            client_secret_expires_at: None,
        },
        token_endpoint: "https://auth.example.com/token".to_owned(),
        resource: Some(url.to_owned()),
        granted_scopes: vec!["read".to_owned(), "write".to_owned()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_every_secret() {
        let debug = format!("{:?}", sample("https://mcp.example.com/mcp", "https://auth.example.com"));
        assert!(!debug.contains("SECRET"), "{debug}");
        assert_eq!(debug.matches("[REDACTED]").count(), 3, "{debug}");
    }

    #[test]
    fn secrets_serialize_as_plain_strings_in_the_guides_field_names() {
        let json = serde_json::to_value(sample("https://mcp.example.com/mcp", "https://i")).unwrap();
        assert_eq!(json["access_token"], "at-SECRET-access");
        assert_eq!(json["refresh_token"], "rt-SECRET-refresh");
        assert_eq!(json["client"]["client_secret"], "cs-SECRET-client");
        assert_eq!(json["client"]["source"], "dynamic");
        for field in ["token_type", "expires_in", "scope", "created_at", "version", "expires_at"] {
            assert!(json.get(field).is_some(), "missing `{field}`");
        }
    }

    #[test]
    fn expiry_and_status() {
        #[track_caller]
        fn check(
            expires_at: Option<u64>,
            expires_in: Option<u64>,
            refresh: bool,
            now: u64,
            expected: EntryStatus,
        ) {
            let mut entry = sample("https://x", "https://i");
            entry.created_at = 1000;
            entry.expires_at = expires_at;
            entry.expires_in = expires_in;
            entry.refresh_token = refresh.then(|| Secret::new("r"));
            assert_eq!(entry.status(now), expected);
        }
        use EntryStatus::{Expired, Refreshable, Valid};
        check(Some(2000), None, false, 1999, Valid);
        check(Some(2000), None, false, 2000, Expired);
        check(Some(2000), None, true, 2000, Refreshable);
        check(None, Some(100), false, 1099, Valid);
        check(None, Some(100), true, 1100, Refreshable);
        check(None, None, false, u64::MAX, Valid);
        // `expires_at` wins over `expires_in` when both are present.
        check(Some(5000), Some(1), false, 4000, Valid);
    }

    #[test]
    fn margin_makes_tokens_expire_early() {
        let mut entry = sample("https://x", "https://i");
        entry.expires_at = Some(2000);
        assert!(!entry.is_expired(1940, 59));
        assert!(entry.is_expired(1940, 60));
        assert!(entry.is_expired(u64::MAX, u64::MAX), "no overflow");
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now() > 1_577_836_800);
    }
}

//! The stored sign-in of each OAuth upstream, read from the token cache as it is: no
//! lock, no refresh, no browser.
//!
//! Upstreams that cannot connect without a sign-in are left out of the connection check
//! (`connect.rs`). Remote upstreams without an `oauth` block and without tokens are
//! connected to with OAuth off, so that a 401 is reported instead of starting a sign-in.

use std::{
    collections::BTreeSet,
    time::{Duration, UNIX_EPOCH},
};

use super::{Check, CheckCode};
use crate::{
    config::{Settings, TransportSettings},
    oauth::{
        Target, TokenStore,
        store::{self, EntryStatus},
    },
};

/// What the sign-in checks found.
#[derive(Debug, Default)]
pub struct SignIns {
    pub checks: Vec<Check>,
    /// Upstreams that cannot connect without a sign-in: `doctor` does not try them
    /// (trying would start a sign-in).
    pub blocked: BTreeSet<String>,
    /// Remote upstreams without an `oauth` block and without tokens: connected to with
    /// OAuth off, so that a 401 is reported instead of starting a sign-in.
    pub unsigned: BTreeSet<String>,
}

pub fn check(settings: &Settings, tokens: &TokenStore) -> SignIns {
    let mut found = SignIns::default();
    for server in settings.enabled_servers() {
        let TransportSettings::Remote(remote) = &server.transport else { continue };
        let name = server.name.as_str();
        let declared = remote.oauth.is_some();
        let target = match Target::for_remote(name, remote) {
            None => continue,
            Some(Ok(target)) => target,
            Some(Err(error)) => {
                found.checks.push(unreadable(name, &error.to_string()));
                found.blocked.insert(name.to_owned());
                continue;
            }
        };
        let entry = match tokens.read(&target.url, None) {
            Ok(entry) => entry,
            Err(error) => {
                found.checks.push(unreadable(name, &error.to_string()));
                found.blocked.insert(name.to_owned());
                continue;
            }
        };
        let login = format!("run `foxxy-bridge oauth login {name}`");
        match entry {
            None if declared => {
                found.checks.push(Check::error(
                    CheckCode::NotSignedIn,
                    name,
                    "OAuth upstream with no stored tokens: it cannot connect until you sign in",
                    login,
                ));
                found.blocked.insert(name.to_owned());
            }
            None => {
                found.unsigned.insert(name.to_owned());
            }
            Some(entry) => match entry.status(store::now()) {
                EntryStatus::Valid => {
                    let until =
                        entry.expiry().map(rfc3339).map(|at| format!(" until {at}")).unwrap_or_default();
                    found.checks.push(Check::ok(
                        CheckCode::SignedIn,
                        name,
                        format!("signed in; token valid{until}"),
                    ));
                }
                EntryStatus::Refreshable => found.checks.push(Check::ok(
                    CheckCode::SignedIn,
                    name,
                    "signed in; the access token expired and the stored refresh token renews it",
                )),
                EntryStatus::Expired => {
                    found.checks.push(Check::error(
                        CheckCode::SignInExpired,
                        name,
                        "the stored token expired and there is no refresh token",
                        login,
                    ));
                    found.blocked.insert(name.to_owned());
                }
            },
        }
    }
    found
}

fn unreadable(name: &str, error: &str) -> Check {
    Check::error(
        CheckCode::TokenFileUnreadable,
        name,
        format!("the token cache entry cannot be read: {error}"),
        format!("run `foxxy-bridge oauth logout {name}`, then `foxxy-bridge oauth login {name}`"),
    )
}

fn rfc3339(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}

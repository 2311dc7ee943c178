//! `foxxy-bridge oauth login|logout|status`: the sign-in state of remote upstreams,
//! managed from a shell with no bridge running.
//!
//! - `login` signs in with `TokenSource::sign_in`, reaching the user as asked:
//!   `--no-browser` (the user pastes the address back), `--device` (the device grant), else
//!   the browser when one can open, else a headless way. It does nothing while the stored
//!   token is valid, unless `--force`.
//! - `logout` takes the URL's token lock, revokes the tokens (best effort), removes the
//!   entry with `TokenStore::remove`, and writes a signed-out note, so running bridges stop
//!   signing in on their own; `--all` does this for every remote upstream with OAuth on.
//! - `status` reads the store without a lock: a table, or JSON with `--json`.
//!
//! A server name that is unknown, local, or has OAuth off is a message and exit 1
//! (`target`).

use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

use super::{Context, Outcome};
use crate::{
    cli::OauthCommand,
    config::{ServerSettings, Settings, TransportSettings},
    oauth::{
        Browser, OAuthError, ShellSignIn, SignInContext, Target, TokenSource, revoke,
        store::{self, EntryStatus, NoteKind, SignInNote, TokenEntry},
    },
    output,
};

/// How long `logout` waits for a sign-in or refresh of another process to finish.
const LOGOUT_LOCK_WAIT: Duration = Duration::from_secs(30);

pub async fn run(context: &Context, command: OauthCommand) -> anyhow::Result<Outcome> {
    let settings = context.load_settings()?;
    let _log = context.start_logging(Some(&settings), false);
    let sign_in = context.sign_in_context(&settings)?;
    match command {
        OauthCommand::Status { server, json } => status(&settings, &sign_in, server.as_deref(), json),
        OauthCommand::Login { server, force, no_browser, device } => {
            let mut sign_in = sign_in;
            sign_in.shell = Some(shell_sign_in(&sign_in.browser, no_browser, device));
            login(&settings, sign_in, &server, force).await
        }
        OauthCommand::Logout { server, all } => logout(&settings, &sign_in, server.as_deref(), all).await,
    }
}

/// How `oauth login` reaches the user: as asked, else the browser when one can open
/// (a `FOXXY_BRIDGE_BROWSER` command, or the system browser with a display), else the
/// headless choice (device grant or paste-back).
fn shell_sign_in(browser: &Browser, no_browser: bool, device: bool) -> ShellSignIn {
    if device {
        return ShellSignIn::Device;
    }
    if no_browser {
        return ShellSignIn::PasteBack;
    }
    if browser.shows_itself() { ShellSignIn::Browser } else { ShellSignIn::Headless }
}

/// The OAuth view of `name`, or a message saying why it has none.
fn target(settings: &Settings, name: &str) -> Result<Target, String> {
    let Some(server) = settings.server(name) else {
        let known: Vec<&str> = settings.servers.iter().map(|server| server.name.as_str()).collect();
        return Err(format!("no server `{name}` in the config (servers: {})", known.join(", ")));
    };
    let TransportSettings::Remote(remote) = &server.transport else {
        return Err(format!("`{name}` is a local (stdio) server; OAuth applies only to remote servers"));
    };
    match Target::for_remote(name, remote) {
        None => Err(format!("OAuth is switched off for `{name}` (`\"oauth\": {{\"enabled\": false}}`)")),
        Some(result) => result.map_err(|error| error.to_string()),
    }
}

/// Remote servers that OAuth applies to (not switched off with `"enabled": false`).
fn remote_servers(settings: &Settings) -> impl Iterator<Item = &ServerSettings> {
    settings.servers.iter().filter(|server| match &server.transport {
        TransportSettings::Remote(remote) => remote.oauth.as_ref().is_none_or(|oauth| oauth.enabled),
        TransportSettings::Stdio { .. } => false,
    })
}

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z); later expiries show as it.
const LAST_RFC3339_SECOND: u64 = 253_402_300_799;

fn rfc3339(seconds: u64) -> String {
    let seconds = seconds.min(LAST_RFC3339_SECOND);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}

struct Row {
    server: String,
    url: String,
    status: &'static str,
    expires_at: Option<u64>,
    issuer: Option<String>,
}

fn row(server: &ServerSettings, sign_in: &SignInContext) -> Row {
    let url = match &server.transport {
        TransportSettings::Remote(remote) => {
            store::canonical_url(&remote.url).unwrap_or_else(|_| remote.url.clone())
        }
        TransportSettings::Stdio { .. } => String::new(),
    };
    let entry: Option<TokenEntry> = match sign_in.store.read(&url, None) {
        Ok(entry) => entry,
        Err(error) => {
            tracing::warn!(server = %server.name, "unreadable token file, counted as signed out: {error}");
            None
        }
    };
    let now = store::now();
    let (status, expires_at, issuer) = match &entry {
        None => ("no_tokens", None, None),
        Some(entry) => {
            let status = match entry.status(now) {
                EntryStatus::Valid => "valid",
                EntryStatus::Refreshable => "refreshable",
                EntryStatus::Expired => "expired",
            };
            (status, entry.expiry(), Some(entry.issuer.clone()))
        }
    };
    Row { server: server.name.clone(), url, status, expires_at, issuer }
}

fn status(
    settings: &Settings,
    sign_in: &SignInContext,
    only: Option<&str>,
    json: bool,
) -> anyhow::Result<Outcome> {
    if let Some(name) = only {
        target(settings, name).map_err(anyhow::Error::msg)?;
    }
    let rows: Vec<Row> = remote_servers(settings)
        .filter(|server| only.is_none_or(|name| server.name == name))
        .map(|server| row(server, sign_in))
        .collect();
    if json {
        let items: Vec<_> = rows
            .iter()
            .map(|row| {
                json!({
                    "server": row.server,
                    "url": store::redacted_url(&row.url),
                    "status": row.status,
                    "expires_at": row.expires_at.map(rfc3339),
                    "issuer": row.issuer,
                })
            })
            .collect();
        output::line(serde_json::to_string_pretty(&items)?);
        return Ok(Outcome::Success);
    }
    if rows.is_empty() {
        output::line("no remote servers in the config");
        return Ok(Outcome::Success);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let label = match row.status {
                "valid" => "✓ Valid",
                "refreshable" => "⚠ Expired (refreshable)",
                "expired" => "⚠ Expired",
                _ => "✗ No tokens",
            };
            vec![
                row.server.clone(),
                label.to_owned(),
                row.expires_at.map(rfc3339).unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    output::raw(&output::table(&["Server", "OAuth Status", "Token Expiry"], &table));
    Ok(Outcome::Success)
}

async fn login(
    settings: &Settings,
    sign_in: SignInContext,
    name: &str,
    force: bool,
) -> anyhow::Result<Outcome> {
    let target = match target(settings, name) {
        Ok(target) => target,
        Err(message) => {
            output::error_line(format_args!("error: {message}"));
            return Ok(Outcome::Failure);
        }
    };
    let source = TokenSource::new(target, sign_in);
    if !force
        && let Ok(Some(entry)) = source.entry().await
        && entry.status(store::now()) == EntryStatus::Valid
    {
        let until = entry.expiry().map(|seconds| format!(" until {}", rfc3339(seconds))).unwrap_or_default();
        output::line(format_args!(
            "already signed in to `{name}` (token valid{until}); use --force to sign in again"
        ));
        return Ok(Outcome::Success);
    }
    if source.context().shell == Some(ShellSignIn::Browser) {
        output::error_line(format_args!("signing in to `{name}`: complete the sign-in in your browser…"));
    } else {
        output::error_line(format_args!("signing in to `{name}`…"));
    }
    match source.sign_in(None, &[], None, force).await {
        Ok(_) => {
            output::line(format_args!("signed in to `{name}`"));
            Ok(Outcome::Success)
        }
        Err(error) => {
            output::error_line(format_args!("error: {error}"));
            Ok(Outcome::Failure)
        }
    }
}

async fn logout(
    settings: &Settings,
    sign_in: &SignInContext,
    name: Option<&str>,
    all: bool,
) -> anyhow::Result<Outcome> {
    let targets: Vec<Target> = if all {
        remote_servers(settings).filter_map(|server| target(settings, &server.name).ok()).collect()
    } else {
        let name = name.unwrap_or_default();
        match target(settings, name) {
            Ok(target) => vec![target],
            Err(message) => {
                output::error_line(format_args!("error: {message}"));
                return Ok(Outcome::Failure);
            }
        }
    };
    if targets.is_empty() {
        output::line("no remote servers in the config");
    }
    for target in targets {
        let lock = sign_in
            .store
            .lock_async(&target.url, LOGOUT_LOCK_WAIT)
            .await
            .map_err(|error| OAuthError::Store(error.to_string()))?;
        // Best effort: the local tokens go whatever the server says.
        if let Ok(Some(entry)) = sign_in.store.read(&target.url, None) {
            match revoke::revoke(&target, &entry).await {
                Ok(Some(endpoint)) => {
                    output::line(format_args!("revoked the tokens of `{}` at {endpoint}", target.name))
                }
                Ok(None) => {}
                Err(reason) => output::error_line(format_args!(
                    "warning: could not revoke the tokens of `{}` ({reason}); removing them here anyway",
                    target.name
                )),
            }
        }
        let removed =
            sign_in.store.remove(&lock, &target.url).map_err(|error| OAuthError::Store(error.to_string()))?;
        // Remembered, so running bridges do not sign in again by themselves.
        let note = SignInNote {
            kind: NoteKind::SignedOut,
            at: store::now(),
            reason: "signed out with `foxxy-bridge oauth logout`".to_owned(),
        };
        sign_in.store.write_note(&lock, &note).map_err(|error| OAuthError::Store(error.to_string()))?;
        if removed == 0 {
            output::line(format_args!("no tokens stored for `{}`", target.name));
        } else {
            output::line(format_args!("signed out of `{}`", target.name));
        }
    }
    Ok(Outcome::Success)
}

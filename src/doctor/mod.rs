//! The checks of `foxxy-bridge doctor`: each finding is a [`Check`] with a stable
//! [`CheckCode`], a status, a subject, a message and, when something is wrong, a hint with the
//! fix. The codes are part of the contract (scripts and the troubleshooting page use
//! them): a code keeps its meaning forever, and new findings get new codes.
//!
//! - `local.rs`: what can be checked without connecting: the config file, the state
//!   directories, and whether each local server's command can be found.
//! - `signin.rs`: the stored sign-in of each OAuth upstream, read from the token cache
//!   without a lock, a refresh or a browser.
//! - `connect.rs`: connects to the upstreams with the same machinery as `tools`
//!   (`proxy::Bridge`), bounded in time, and reports each one and the merged catalog.
//!
//! Printing is not done here (`commands/doctor.rs` renders, through `output.rs`).
//!
//! A code is `FB` and three digits. `docs/troubleshooting.md` lists each one with its cause
//! and fix, and a unit test keeps the codes and the page in step.

pub mod connect;
pub mod local;
pub mod signin;

use serde::Serialize;

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Warn,
    Error,
}

impl CheckStatus {
    pub fn label(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Warn => "warn",
            CheckStatus::Error => "error",
        }
    }
}

/// The stable code of a finding. `docs/troubleshooting.md` lists each with its cause
/// and fix; keep the two in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckCode {
    /// The config file: found, or not found or unreadable.
    ConfigFile,
    /// The config is valid, or its problems.
    ConfigValid,
    /// The config has no enabled server.
    NoServers,
    /// A local server's command was found where MCP clients look.
    CommandFound,
    /// A local server's command is found only through the shell's `PATH`.
    CommandOnlyOnShellPath,
    /// A local server's command is not found at all.
    CommandMissing,
    /// An upstream connected (or failed to, with the cause).
    UpstreamConnects,
    /// An upstream did not finish connecting in the time allowed.
    UpstreamTimedOut,
    /// An upstream needs a sign-in before it can connect.
    UpstreamNeedsSignIn,
    /// An OAuth upstream's stored sign-in is usable.
    SignedIn,
    /// An OAuth upstream has no stored tokens.
    NotSignedIn,
    /// An OAuth upstream's token expired and cannot be refreshed.
    SignInExpired,
    /// An OAuth upstream's token file cannot be read.
    TokenFileUnreadable,
    /// How many tools the bridge exposes (a warning above [`TOOL_LIMIT`]).
    ToolCount,
    /// Two upstreams offer the same exposed name under `conflictResolution: "error"`.
    NameClash,
    /// Name clashes hid tools under `conflictResolution: "priority"` or `"first"`.
    NameClashHidden,
    /// A state directory is writable.
    DirectoryWritable,
    /// A state directory's mode lets other users in.
    DirectoryMode,
}

impl CheckCode {
    pub const ALL: [CheckCode; 18] = [
        CheckCode::ConfigFile,
        CheckCode::ConfigValid,
        CheckCode::NoServers,
        CheckCode::CommandFound,
        CheckCode::CommandOnlyOnShellPath,
        CheckCode::CommandMissing,
        CheckCode::UpstreamConnects,
        CheckCode::UpstreamTimedOut,
        CheckCode::UpstreamNeedsSignIn,
        CheckCode::SignedIn,
        CheckCode::NotSignedIn,
        CheckCode::SignInExpired,
        CheckCode::TokenFileUnreadable,
        CheckCode::ToolCount,
        CheckCode::NameClash,
        CheckCode::NameClashHidden,
        CheckCode::DirectoryWritable,
        CheckCode::DirectoryMode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckCode::ConfigFile => "FB001",
            CheckCode::ConfigValid => "FB002",
            CheckCode::NoServers => "FB003",
            CheckCode::CommandFound => "FB010",
            CheckCode::CommandOnlyOnShellPath => "FB011",
            CheckCode::CommandMissing => "FB012",
            CheckCode::UpstreamConnects => "FB020",
            CheckCode::UpstreamTimedOut => "FB021",
            CheckCode::UpstreamNeedsSignIn => "FB022",
            CheckCode::SignedIn => "FB030",
            CheckCode::NotSignedIn => "FB031",
            CheckCode::SignInExpired => "FB032",
            CheckCode::TokenFileUnreadable => "FB033",
            CheckCode::ToolCount => "FB040",
            CheckCode::NameClash => "FB041",
            CheckCode::NameClashHidden => "FB042",
            CheckCode::DirectoryWritable => "FB050",
            CheckCode::DirectoryMode => "FB051",
        }
    }
}

impl Serialize for CheckCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// More tools than this and some clients refuse or truncate the list (and every tool
/// costs the model context).
pub const TOOL_LIMIT: usize = 128;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub code: CheckCode,
    pub status: CheckStatus,
    /// What was checked: `config`, a server name, `catalog`, a directory.
    pub subject: String,
    pub message: String,
    /// The fix, for anything not ok.
    pub hint: Option<String>,
}

impl Check {
    pub fn ok(code: CheckCode, subject: impl Into<String>, message: impl Into<String>) -> Check {
        Check { code, status: CheckStatus::Ok, subject: subject.into(), message: message.into(), hint: None }
    }

    pub fn warn(
        code: CheckCode,
        subject: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check {
            code,
            status: CheckStatus::Warn,
            subject: subject.into(),
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// A check not run because the check `because` reports the cause: a warning, so the
    /// cause counts as one error, reported once, by `because`.
    pub fn skip(
        code: CheckCode,
        subject: impl Into<String>,
        message: impl Into<String>,
        because: CheckCode,
    ) -> Check {
        Check::warn(code, subject, message, format!("fix {} first", because.as_str()))
    }

    pub fn error(
        code: CheckCode,
        subject: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Check {
        Check {
            code,
            status: CheckStatus::Error,
            subject: subject.into(),
            message: message.into(),
            hint: Some(hint.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_documented() {
        let page = include_str!("../../docs/troubleshooting.md");
        let mut seen = std::collections::HashSet::new();
        for code in CheckCode::ALL {
            assert!(seen.insert(code.as_str()), "{} used twice", code.as_str());
            assert!(
                page.contains(&format!("### {}", code.as_str())),
                "{} missing from docs/troubleshooting.md",
                code.as_str()
            );
        }
    }
}

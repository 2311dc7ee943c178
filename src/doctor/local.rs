//! Checks that need no connection: the config file, each local server's command, and
//! the state directories.
//!
//! A local command is found on the short `PATH` that MCP clients give their servers
//! (`SHORT_PATH`), only on the shell's `PATH` (a client that does not pass that on will not
//! find it), or not at all.

use std::{
    ffi::OsStr,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use super::{Check, CheckCode};
use crate::{
    config::{ConfigError, Settings, TransportSettings},
    paths::StatePaths,
};

/// The `PATH` MCP clients commonly start servers with (a GUI app does not read the
/// shell's profile).
pub const SHORT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The result of looking the config up and loading it.
pub fn config_file(path: Result<&Path, &ConfigError>) -> Check {
    match path {
        Ok(path) => {
            let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
            Check::ok(CheckCode::ConfigFile, "config", format!("using `{}`", path.display()))
        }
        Err(error) => Check::error(
            CheckCode::ConfigFile,
            "config",
            first_line(&error.to_string()),
            "run `foxxy-bridge import` to create one from your MCP client's config, or pass `--config PATH`",
        ),
    }
}

pub fn config_valid(loaded: &Result<Settings, ConfigError>, path: &Path) -> Check {
    match loaded {
        Ok(_) => Check::ok(CheckCode::ConfigValid, "config", "valid"),
        Err(ConfigError::Read { source, .. }) => Check::error(
            CheckCode::ConfigFile,
            "config",
            format!("cannot read `{}`: {source}", path.display()),
            "check that the file exists and that you may read it",
        ),
        Err(error) => Check::error(
            CheckCode::ConfigValid,
            "config",
            error.to_string().lines().collect::<Vec<_>>().join("; "),
            format!(
                "fix each problem listed; `foxxy-bridge config validate --config {}` checks again",
                path.display()
            ),
        ),
    }
}

pub fn servers(settings: &Settings) -> Option<Check> {
    (settings.enabled_servers().next().is_none()).then(|| {
        Check::warn(
            CheckCode::NoServers,
            "config",
            "no enabled server under `mcpServers`",
            "add servers, or copy them from your MCP client with `foxxy-bridge import`",
        )
    })
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or(text).to_owned()
}

/// One check per enabled local server: where its command is found.
pub fn commands(settings: &Settings, shell_path: Option<&OsStr>, cwd: &Path) -> Vec<Check> {
    let short: Vec<PathBuf> = std::env::split_paths(SHORT_PATH).collect();
    let shell: Vec<PathBuf> =
        shell_path.map(|path| std::env::split_paths(path).collect()).unwrap_or_default();
    let mut checks = Vec::new();
    for server in settings.enabled_servers() {
        let TransportSettings::Stdio { command, .. } = &server.transport else { continue };
        checks.push(command_check(&server.name, command, &short, &shell, cwd));
    }
    checks
}

fn command_check(name: &str, command: &str, short: &[PathBuf], shell: &[PathBuf], cwd: &Path) -> Check {
    if command.contains('/') {
        let path = cwd.join(command);
        return if is_executable(&path) {
            Check::ok(CheckCode::CommandFound, name, format!("command `{}` found", path.display()))
        } else {
            Check::error(
                CheckCode::CommandMissing,
                name,
                format!("command `{command}` does not exist or is not executable"),
                "fix the path in `command`, or install the server",
            )
        };
    }
    let find = |dirs: &[PathBuf]| dirs.iter().map(|dir| dir.join(command)).find(|path| is_executable(path));
    if let Some(path) = find(short) {
        return Check::ok(
            CheckCode::CommandFound,
            name,
            format!("command `{command}` found at `{}`", path.display()),
        );
    }
    match find(shell) {
        Some(path) => Check::warn(
            CheckCode::CommandOnlyOnShellPath,
            name,
            format!(
                "command `{command}` is found at `{}` only through your shell's PATH, not on {SHORT_PATH}, which MCP clients often start servers with",
                path.display()
            ),
            format!("write the absolute path `{}` as `command`", path.display()),
        ),
        None => Check::error(
            CheckCode::CommandMissing,
            name,
            format!("command `{command}` not found on the PATH"),
            "install it, or write its absolute path as `command`",
        ),
    }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The state root, the token cache and the logs: each writable, and closed to others
/// (the token cache entirely, the others against writes).
pub fn directories(paths: &StatePaths) -> Vec<Check> {
    let dirs = [
        ("state directory", paths.root().to_path_buf(), false),
        ("token cache", paths.auth_dir(), true),
        ("log directory", paths.logs_dir(), false),
    ];
    let mut checks = Vec::new();
    for (label, dir, private) in dirs {
        let subject = format!("{label} `{}`", dir.display());
        let meta = match fs::metadata(&dir) {
            Ok(meta) => meta,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                checks.push(Check::ok(
                    CheckCode::DirectoryWritable,
                    subject,
                    "not created yet; made on first use",
                ));
                continue;
            }
            Err(error) => {
                checks.push(Check::error(
                    CheckCode::DirectoryWritable,
                    subject,
                    format!("cannot read: {error}"),
                    format!("check the permissions of `{}`", dir.display()),
                ));
                continue;
            }
        };
        if !meta.is_dir() {
            checks.push(Check::error(
                CheckCode::DirectoryWritable,
                subject,
                "exists but is not a directory",
                format!("move `{}` out of the way", dir.display()),
            ));
            continue;
        }
        let mode = meta.permissions().mode() & 0o777;
        checks.push(match probe_write(&dir) {
            Ok(()) => Check::ok(CheckCode::DirectoryWritable, subject.clone(), "writable"),
            Err(error) => Check::error(
                CheckCode::DirectoryWritable,
                subject.clone(),
                format!("not writable: {error}"),
                format!("make `{}` writable by you (`chmod u+rwx`)", dir.display()),
            ),
        });
        let open = if private { mode & 0o077 } else { mode & 0o022 };
        if open != 0 {
            let (what, fix) = if private {
                ("other users can read or enter it, and it holds your tokens", "chmod 700")
            } else {
                ("other users can write to it", "chmod go-w")
            };
            checks.push(Check::error(
                CheckCode::DirectoryMode,
                subject,
                format!("mode {mode:03o}: {what}"),
                format!("`{fix} {}`", dir.display()),
            ));
        } else {
            checks.push(Check::ok(CheckCode::DirectoryMode, subject, format!("mode {mode:03o}")));
        }
    }
    checks
}

/// Creates and removes a file in `dir`.
fn probe_write(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".doctor-probe-{}", std::process::id()));
    fs::OpenOptions::new().write(true).create_new(true).open(&probe)?;
    fs::remove_file(&probe)
}

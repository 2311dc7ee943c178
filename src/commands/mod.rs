//! What each subcommand does. `run` resolves the raw inputs (CLI, environment, config
//! file) into settings once, starts logging, and dispatches.
//!
//! The `Context` that `run` builds holds everything a command takes from outside the config
//! file, read once: the state paths, the explicit config path, the log options,
//! `FOXXY_BRIDGE_BROWSER`, the MCP clients' environment (home, config and current
//! directories), the shell's `PATH` and the path of this binary. `Context::start_logging`
//! picks the level: `--debug`, then `--log-level` or `FOXXY_BRIDGE_LOG`, then
//! `bridge.logLevel`, then `info`. `Context::sign_in_context` builds the `SignInContext` of
//! every command that may sign in: the token store in the state root's `auth/`, the
//! browser, and the bridge's callback and sign-in settings.
//!
//! Commands are thin drivers of `proxy::Bridge`, `oauth::TokenSource` and
//! `oauth::TokenStore`, `clients/` and `doctor/`; none holds protocol, upstream or OAuth
//! logic of its own.

mod config;
mod doctor;
mod hub;
mod hub_serve;
mod import;
mod install;
mod oauth;
mod selection;
mod stdio;
mod tools;

use std::{ffi::OsString, path::PathBuf, sync::Arc};

use anyhow::Context as _;

use crate::{
    cli::{Cli, Command, ConfigCommand},
    clients::ClientEnv,
    config::{self as bridge_config, Settings},
    hub_socket::HubAddress,
    logging::{self, LogGuard},
    oauth::{Browser, SignInContext, TokenStore},
    output,
    paths::StatePaths,
    upstream::watchdog,
};

/// How a command ended, mapped to the process exit code by `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: the command ran but what it checked or did failed (printed already).
    Failure,
}

/// A mistake in how the command was invoked (exit 2), as opposed to a failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Resolved inputs every command may need.
pub struct Context {
    pub paths: StatePaths,
    pub explicit_config: Option<PathBuf>,
    pub debug: bool,
    pub log_level: Option<String>,
    /// `FOXXY_BRIDGE_BROWSER`.
    pub browser: Option<String>,
    /// Home, config and current directories, for the MCP clients' config files.
    pub clients: ClientEnv,
    /// The shell's `PATH`, for `doctor`'s command checks.
    pub shell_path: Option<OsString>,
    /// The absolute path of this binary, for `install` and for recognising entries that
    /// run it.
    pub own_binary: Option<PathBuf>,
}

impl Context {
    /// Token cache and sign-in settings for this process.
    pub fn sign_in_context(&self, settings: &Settings) -> anyhow::Result<SignInContext> {
        let browser = Browser::from_setting(self.browser.as_deref()).map_err(anyhow::Error::msg)?;
        Ok(SignInContext::new(TokenStore::new(self.paths.auth_dir()), browser, &settings.bridge))
    }

    /// Where the hub of `settings`' config file listens, when it has shared upstreams.
    pub fn hub_address(&self, settings: &Settings) -> Option<HubAddress> {
        settings
            .enabled_servers()
            .any(|server| server.shared)
            .then(|| HubAddress::for_config(&self.paths, &settings.source))
    }

    pub fn config_path(&self) -> anyhow::Result<PathBuf> {
        Ok(bridge_config::locate(self.explicit_config.as_deref(), self.paths.root())?)
    }

    /// The config `import` writes to: the one the lookup finds, else (no file anywhere)
    /// `<state root>/config.json5`, to be created. The flag says whether it exists.
    pub fn config_path_or_new(&self) -> (PathBuf, bool) {
        match self.config_path() {
            Ok(path) => {
                let exists = path.exists();
                (path, exists)
            }
            Err(_) => (self.paths.root().join("config.json5"), false),
        }
    }

    /// Where a bridge started by an MCP client (without `--config`, `FOXXY_BRIDGE_CONFIG`
    /// or `FOXXY_BRIDGE_HOME` in its environment) looks for its config.
    pub fn default_config_paths(&self) -> Vec<PathBuf> {
        let platform_dir = directories::ProjectDirs::from("", "", "foxxy-bridge")
            .map(|dirs| dirs.config_dir().to_path_buf());
        std::iter::once(self.clients.home.join(".foxxy-bridge"))
            .chain(platform_dir)
            .flat_map(|dir| [dir.join("config.json5"), dir.join("config.json")])
            .collect()
    }

    pub fn load_settings(&self) -> anyhow::Result<Arc<Settings>> {
        let path = self.config_path()?;
        Ok(Arc::new(bridge_config::load(&path)?))
    }

    /// Start file logging at the level chosen by `--debug`, `--log-level`/`FOXXY_BRIDGE_LOG`,
    /// the config's `bridge.logLevel`, or `info`, in that order. Logs are a help, not a
    /// condition: when they cannot be written the command still runs (and, except in
    /// `stdio` mode where stderr stays quiet, says so on stderr).
    pub fn start_logging(&self, settings: Option<&Settings>, quiet: bool) -> Option<LogGuard> {
        match self.try_start_logging(settings) {
            Ok(guard) => Some(guard),
            Err(error) => {
                if !quiet {
                    output::error_line(format_args!("warning: {error:#}; continuing without a log file"));
                }
                None
            }
        }
    }

    fn try_start_logging(&self, settings: Option<&Settings>) -> anyhow::Result<LogGuard> {
        let level = if self.debug {
            "debug".to_owned()
        } else {
            self.log_level
                .clone()
                .or_else(|| settings.and_then(|settings| settings.bridge.log_level.clone()))
                .unwrap_or_else(|| crate::config::DEFAULT_LOG_LEVEL.to_owned())
        };
        let logs = self.paths.logs_dir();
        logging::init(&logs, &level).with_context(|| format!("cannot write logs in `{}`", logs.display()))
    }
}

/// Run the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let context = Context {
        paths: StatePaths::from_env(),
        explicit_config: cli.global.config,
        debug: cli.global.debug,
        log_level: cli.global.log_level,
        browser: std::env::var("FOXXY_BRIDGE_BROWSER").ok(),
        clients: ClientEnv::from_env(),
        shell_path: std::env::var_os("PATH"),
        own_binary: std::env::current_exe().ok(),
    };
    match cli.command {
        Command::Watchdog => {
            watchdog::serve();
            Ok(Outcome::Success)
        }
        Command::Stdio(args) => stdio::run(&context, &selection::Narrowing::for_stdio(args)).await,
        Command::Tools { json, selection } => {
            tools::list(&context, &selection::Narrowing::for_tools(selection), json).await
        }
        Command::Call { name, arguments, json } => {
            tools::call(&context, &name, arguments.as_deref(), json).await
        }
        Command::Schema => Ok(config::schema()),
        Command::Config(ConfigCommand::Validate) => config::validate(&context),
        Command::Oauth(command) => oauth::run(&context, command).await,
        Command::Import { sources, dry_run, overwrite } => {
            import::run(&context, &sources, dry_run, overwrite)
        }
        Command::Install { client, name, dry_run, remove_imported } => {
            install::run(&context, client, &name, dry_run, remove_imported)
        }
        Command::Doctor { json } => doctor::run(&context, json).await,
        Command::Hub(command) => hub::run(&context, command).await,
    }
}

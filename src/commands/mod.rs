//! What each subcommand does. `run` resolves the raw inputs (CLI, environment, config
//! file) into settings once, starts logging, and dispatches.

mod config;
mod oauth;
mod selection;
mod stdio;
mod tools;

use std::{path::PathBuf, sync::Arc};

use anyhow::Context as _;

use crate::{
    cli::{Cli, Command, ConfigCommand},
    config::{self as bridge_config, Settings},
    logging::{self, LogGuard},
    oauth::{Browser, SignInContext, TokenStore},
    output,
    paths::StatePaths,
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
}

impl Context {
    /// Token cache and sign-in settings for this process.
    pub fn sign_in_context(&self, settings: &Settings) -> anyhow::Result<SignInContext> {
        let browser = Browser::from_setting(self.browser.as_deref()).map_err(anyhow::Error::msg)?;
        Ok(SignInContext::new(TokenStore::new(self.paths.auth_dir()), browser, &settings.bridge))
    }

    pub fn config_path(&self) -> anyhow::Result<PathBuf> {
        Ok(bridge_config::locate(self.explicit_config.as_deref(), self.paths.root())?)
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
                .unwrap_or_else(|| "info".to_owned())
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
    };
    match cli.command {
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
    }
}

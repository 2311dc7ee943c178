//! What one process serves out of the config: `--servers` and `--tags` pick upstreams,
//! `--tool-mode` overrides `bridge.toolMode`.
//!
//! The choice is applied to the loaded `Settings` before the bridge starts (and again to
//! each reloaded config): an upstream left out is turned off, so it is never started.

use super::UsageError;
use crate::{
    cli::{ServerSelection, StdioArgs, ToolModeArg},
    config::{Settings, ToolMode},
};

/// The command line's narrowing of the config for this process.
#[derive(Debug, Default, Clone)]
pub struct Narrowing {
    servers: Vec<String>,
    tags: Vec<String>,
    tool_mode: Option<ToolMode>,
}

impl Narrowing {
    pub fn for_stdio(args: StdioArgs) -> Narrowing {
        let tool_mode = args.tool_mode.map(|mode| match mode {
            ToolModeArg::All => ToolMode::All,
            ToolModeArg::Search => ToolMode::Search,
        });
        Narrowing { tool_mode, ..Narrowing::for_tools(args.selection) }
    }

    pub fn for_tools(selection: ServerSelection) -> Narrowing {
        let clean = |items: Vec<String>| -> Vec<String> {
            items.into_iter().map(|item| item.trim().to_owned()).filter(|item| !item.is_empty()).collect()
        };
        Narrowing { servers: clean(selection.servers), tags: clean(selection.tags), tool_mode: None }
    }

    /// `settings` narrowed for this process. A server name or tag that the config does
    /// not have is a usage error: a typo would otherwise serve nothing, silently.
    pub fn apply(&self, settings: &Settings) -> Result<Settings, UsageError> {
        let known = |name: &str| settings.servers.iter().any(|server| server.name == name);
        if let Some(unknown) = self.servers.iter().find(|name| !known(name)) {
            let names: Vec<&str> = settings.servers.iter().map(|server| server.name.as_str()).collect();
            return Err(UsageError(format!(
                "--servers: no server `{unknown}` in `{}`\nhint: the configured servers are: {}",
                settings.source.display(),
                names.join(", ")
            )));
        }
        let tagged = |tag: &str| settings.servers.iter().any(|server| server.tags.iter().any(|t| t == tag));
        if let Some(unknown) = self.tags.iter().find(|tag| !tagged(tag)) {
            let mut tags: Vec<&str> =
                settings.servers.iter().flat_map(|server| server.tags.iter().map(String::as_str)).collect();
            tags.sort_unstable();
            tags.dedup();
            let hint = if tags.is_empty() { "none".to_owned() } else { tags.join(", ") };
            return Err(UsageError(format!(
                "--tags: no server in `{}` has the tag `{unknown}`\nhint: the tags in use are: {hint}",
                settings.source.display()
            )));
        }
        Ok(self.narrow(settings))
    }

    /// Like [`Narrowing::apply`], for a reloaded config: names it no longer has are
    /// logged and skipped, since the session is running and cannot be refused.
    pub fn apply_to_reload(&self, settings: &Settings) -> Settings {
        if let Err(error) = self.apply(settings) {
            tracing::warn!("the reloaded config does not match the command line: {error}");
        }
        self.narrow(settings)
    }

    fn narrow(&self, settings: &Settings) -> Settings {
        let mut settings = settings.clone();
        if !self.servers.is_empty() || !self.tags.is_empty() {
            for server in &mut settings.servers {
                let named = self.servers.contains(&server.name);
                let tagged = server.tags.iter().any(|tag| self.tags.contains(tag));
                server.enabled &= named || tagged;
            }
        }
        if let Some(mode) = self.tool_mode {
            settings.bridge.tool_mode = mode;
        }
        settings
    }
}

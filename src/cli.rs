//! The command line, as clap types. The doc comments are the `--help` text.
//!
//! This module only describes the arguments; `commands/` does the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A stdio MCP proxy: every upstream MCP server in your config, served as one.
///
/// Add `foxxy-bridge stdio` to your MCP client's `mcpServers`; from a shell, use
/// `tools`, `call`, `oauth` and `config validate` to check what it sees.
#[derive(Debug, Parser)]
#[command(name = "foxxy-bridge", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Config file (JSON5). Default: $FOXXY_BRIDGE_CONFIG, then
    /// ~/.foxxy-bridge/config.json5 (or .json), then the platform config dir.
    #[arg(
        long,
        global = true,
        visible_alias = "bridge-config",
        env = "FOXXY_BRIDGE_CONFIG",
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,

    /// Log at debug level (same as `--log-level debug`).
    #[arg(long, global = true)]
    pub debug: bool,

    /// Log level for the log file: error, warn, info, debug or trace, or
    /// `target=level` directives such as `warn,foxxy_bridge=debug`.
    #[arg(long, global = true, env = "FOXXY_BRIDGE_LOG", value_name = "LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve MCP on stdin/stdout, aggregating every enabled upstream (what MCP clients run).
    Stdio(StdioArgs),
    /// Connect to every upstream like `stdio` does, print the merged tool catalog and
    /// each upstream's status, then exit (1 if some upstream did not connect).
    Tools {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        selection: ServerSelection,
    },
    /// Call one exposed tool and print its result (exit 1 when the result is an error).
    Call {
        /// The tool's exposed name, as `tools` lists it.
        name: String,
        /// Arguments as a JSON object, e.g. '{"message":"hi"}'.
        #[arg(value_name = "JSON_ARGS")]
        arguments: Option<String>,
        /// Print the whole result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of the config file.
    Schema,
    /// Config file commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// OAuth sign-in management for remote upstreams.
    #[command(subcommand)]
    Oauth(OauthCommand),
}

#[derive(Debug, Args)]
pub struct StdioArgs {
    #[command(flatten)]
    pub selection: ServerSelection,
    /// How tools are offered: `all` lists every tool; `search` lists the pinned tools plus
    /// `foxxy__search_tools` and `foxxy__call_tool`. Default: the config's `bridge.toolMode`.
    #[arg(long, value_enum, value_name = "MODE")]
    pub tool_mode: Option<ToolModeArg>,
}

/// Which upstreams this process serves. Without either option, every enabled upstream;
/// with both, the upstreams named or tagged.
#[derive(Debug, Args, Default)]
pub struct ServerSelection {
    /// Serve only these upstreams (names under `mcpServers`, comma separated).
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub servers: Vec<String>,
    /// Serve only the upstreams that carry one of these `tags` (comma separated).
    #[arg(long, value_delimiter = ',', value_name = "T1,T2")]
    pub tags: Vec<String>,
}

/// `--tool-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ToolModeArg {
    All,
    Search,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the config file: exit 0 if valid, else print every problem and exit 1.
    Validate,
}

#[derive(Debug, Subcommand)]
pub enum OauthCommand {
    /// Sign in to one upstream in the browser and store its tokens.
    Login {
        /// The server's name under `mcpServers`.
        server: String,
        /// Sign in again even when valid tokens are stored.
        #[arg(long)]
        force: bool,
    },
    /// Delete stored tokens.
    Logout {
        /// The server's name under `mcpServers`.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        server: Option<String>,
        /// Delete the tokens of every remote upstream in the config.
        #[arg(long)]
        all: bool,
    },
    /// Show the sign-in state of remote upstreams.
    Status {
        /// Only this server.
        server: Option<String>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

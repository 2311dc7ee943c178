//! The command line, as clap types. The doc comments are the `--help` text.
//!
//! This module only describes the arguments; `commands/` does the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A stdio MCP proxy: every upstream MCP server in your config, served as one.
///
/// Add `foxxy-bridge stdio` to your MCP client's `mcpServers` (`import` and `install`
/// move a client's servers behind the bridge); from a shell, use `doctor`, `tools`,
/// `call`, `oauth` and `config validate` to check what it sees.
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
    /// Copy server entries from MCP clients' configs into foxxy-bridge's config.
    ///
    /// Prints one line per entry: imported, unchanged, conflict (a server of that name
    /// with other content is already there; kept unless --overwrite) or skipped, with the
    /// reason. Comments and formatting of the config are kept, and the previous version
    /// is saved as `<config>.bak`. The config written to is the one foxxy-bridge would
    /// load; `~/.foxxy-bridge/config.json5` is created when there is none.
    Import {
        /// Clients to import from (claude-desktop, claude-code, cursor, vscode, windsurf)
        /// or client config files. Default: every client whose config exists.
        #[arg(value_name = "CLIENT|PATH")]
        sources: Vec<String>,
        /// Show what would be imported without writing anything.
        #[arg(long)]
        dry_run: bool,
        /// Replace servers of the same name that have other content.
        #[arg(long)]
        overwrite: bool,
    },
    /// Add foxxy-bridge to an MCP client's config, with the absolute path of this binary.
    Install {
        /// The client whose config to edit.
        client: ClientName,
        /// The name of the entry in the client's config.
        #[arg(long, default_value = "foxxy-bridge")]
        name: String,
        /// Show what would change without writing anything.
        #[arg(long)]
        dry_run: bool,
        /// Also remove the client's entries that foxxy-bridge's config holds with the
        /// same content, so the client reaches them only through the bridge.
        #[arg(long)]
        remove_imported: bool,
    },
    /// Check the config, every upstream, sign-ins, the tool catalog and the state
    /// directories; print one line per check with a stable code (exit 1 on any error).
    Doctor {
        /// Print JSON: `{"checks": [{"code", "status", "subject", "message", "hint"}]}`.
        #[arg(long)]
        json: bool,
    },
    /// The hub that runs the `shared` upstreams once for every bridge of this user.
    #[command(subcommand)]
    Hub(HubCommand),
    /// Internal: the helper that ends the upstreams' process groups when the bridge that
    /// started it dies (it reads their ids from stdin).
    #[command(name = "__watchdog", hide = true)]
    Watchdog,
}

/// An MCP client whose config `install` edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientName {
    ClaudeDesktop,
    ClaudeCode,
    Cursor,
    Vscode,
    Windsurf,
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
pub enum HubCommand {
    /// Run the hub of the config file in the foreground. Bridges start it by themselves,
    /// detached, when the config has a `shared` server; it exits `bridge.hub.idleTimeout`
    /// seconds after its last bridge.
    Serve,
    /// List this user's running hubs: socket, pid, config, attached bridges, and each
    /// shared upstream's status and pid.
    Status {
        /// Print JSON: `[{"socket", "pid", "config", "bridges", "upstreams": [{"name",
        /// "status", "pid"}]}]`.
        #[arg(long)]
        json: bool,
    },
    /// Stop every running hub of this user, with its upstreams.
    Stop,
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
        /// Do not open a browser: print the sign-in URL, then read the address the browser
        /// ended on (or just the code) from stdin.
        #[arg(long, conflicts_with = "device")]
        no_browser: bool,
        /// Use the device authorization grant (RFC 8628): print a URL and a code to enter
        /// on any device. Chosen by itself when there is no display and the server offers it.
        #[arg(long)]
        device: bool,
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

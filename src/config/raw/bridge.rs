//! The `bridge` section of the config file as written: settings of the bridge itself
//! (names, timeouts, limits, the tool mode, aggregation, failover, reload), with the
//! defaults the schema shows.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DEFAULT_LOG_LEVEL;

/// `bridge`: settings of the bridge itself.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
#[schemars(rename = "Bridge")]
pub struct RawBridge {
    /// What happens when two servers expose the same tool or prompt name: `namespace`
    /// (disambiguate), `priority` (lowest `priority` wins), `first` (first in the file wins)
    /// or `error`. Default: `namespace`.
    pub conflict_resolution: RawConflictResolution,
    /// Use the server name as namespace when a server sets none. Default: `true`.
    pub default_namespace: bool,
    /// Which kinds of capabilities are aggregated. Default: all.
    pub aggregation: RawAggregation,
    /// Port of the OAuth sign-in callback listener; 0 picks any free port. Default: 8090.
    #[serde(rename = "oauth_port")]
    pub oauth_port: u16,
    /// Host of the OAuth sign-in callback listener; must be a loopback address (`127.0.0.1`,
    /// `::1`, `localhost`). Default: `127.0.0.1`.
    pub host: String,
    /// The predecessor's HTTP server port. Accepted so old files load; unused, because this
    /// bridge serves MCP on stdio. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// How long the first list requests wait for servers still connecting or signing in, in
    /// seconds. Default: 10.
    pub startup_timeout: u64,
    /// How long a browser sign-in may take before it is abandoned, in seconds. Default: 300.
    #[schemars(range(min = 1))]
    pub sign_in_timeout: u64,
    /// Timeout of each request to a server, in seconds, unless the server sets its own
    /// `requestTimeout`; each progress notification restarts it. Default: 120.
    #[schemars(range(min = 1))]
    pub request_timeout: u64,
    /// Marking failing servers as failed and probing them for recovery. Default: enabled,
    /// 3 failures, 60000 ms.
    pub failover: RawFailover,
    /// Reloading the config when the file changes. Default: enabled, 1000 ms debounce.
    pub config_reload: RawConfigReload,
    /// Largest JSON-RPC message accepted in either direction, in bytes (at least 1024).
    /// Default: 33554432 (32 MiB).
    #[schemars(range(min = 1024))]
    pub max_message_bytes: usize,
    /// How many servers are started at the same time. Default: 8.
    #[schemars(range(min = 1))]
    pub max_concurrent_starts: usize,
    /// Level of the log file: `error`, `warn`, `info`, `debug` or `trace`. `--debug`,
    /// `--log-level` and `FOXXY_BRIDGE_LOG` override it. Default: `info`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = DEFAULT_LOG_LEVEL))]
    pub log_level: Option<RawLogLevel>,
    /// After an automatic sign-in failed (denied, timed out, closed), how long bridges wait
    /// before starting another one by themselves, in seconds. A sign-in the user starts
    /// (`foxxy-bridge oauth login`) always runs. Default: 600.
    pub sign_in_retry_after: u64,
    /// How tools are offered to the client: `all` lists every tool; `search` lists only
    /// the `pinnedTools` plus `foxxy__search_tools` and `foxxy__call_tool`, with which the
    /// model finds and calls the rest. `stdio --tool-mode` overrides it. Default: `all`.
    pub tool_mode: RawToolMode,
    /// In search mode, the tools still listed directly, by glob (`*`, `?`, `[abc]`) on the
    /// exposed name (e.g. `github__get_*`). Default: none.
    pub pinned_tools: Vec<String>,
    /// How long the answer to the client's `initialize` may wait for the servers to
    /// connect, in milliseconds, so that their `instructions` are in it (a server that
    /// connects later cannot add its own). 0 answers at once, with the instructions each
    /// server gave in an earlier session (remembered under the state root). At most
    /// 10000. Default: 0.
    #[schemars(range(max = 10000))]
    pub instructions_wait: u64,
    /// The hub that runs the servers marked `shared`.
    pub hub: RawHub,
}

impl Default for RawBridge {
    fn default() -> Self {
        Self {
            conflict_resolution: RawConflictResolution::Namespace,
            default_namespace: true,
            aggregation: RawAggregation::default(),
            oauth_port: 8090,
            host: "127.0.0.1".to_owned(),
            port: None,
            startup_timeout: 10,
            sign_in_timeout: 300,
            request_timeout: 120,
            failover: RawFailover::default(),
            config_reload: RawConfigReload::default(),
            max_message_bytes: 32 * 1024 * 1024,
            max_concurrent_starts: 8,
            log_level: None,
            sign_in_retry_after: 600,
            tool_mode: RawToolMode::All,
            pinned_tools: Vec::new(),
            instructions_wait: 0,
            hub: RawHub::default(),
        }
    }
}

/// `bridge.conflictResolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "ConflictResolution")]
pub enum RawConflictResolution {
    Namespace,
    Priority,
    First,
    Error,
}

/// `bridge.toolMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "ToolMode")]
pub enum RawToolMode {
    All,
    Search,
}

/// `bridge.logLevel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "LogLevel")]
pub enum RawLogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// `bridge.aggregation`: which kinds of capabilities the bridge merges and serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(rename = "Aggregation")]
pub struct RawAggregation {
    /// Serve the servers' tools. Default: `true`.
    pub tools: bool,
    /// Serve the servers' resources and resource templates. Default: `true`.
    pub resources: bool,
    /// Serve the servers' prompts. Default: `true`.
    pub prompts: bool,
}

impl Default for RawAggregation {
    fn default() -> Self {
        Self { tools: true, resources: true, prompts: true }
    }
}

/// `bridge.failover`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
#[schemars(rename = "Failover")]
pub struct RawFailover {
    /// Mark a server failed after `maxFailures` consecutive failures and probe it for
    /// recovery. Default: `true`.
    pub enabled: bool,
    /// Consecutive failures before a server is marked failed. Default: 3.
    #[schemars(range(min = 1))]
    pub max_failures: u32,
    /// Time between recovery attempts of a failed server, in milliseconds. Default: 60000.
    #[schemars(range(min = 1))]
    pub recovery_interval: u64,
}

impl Default for RawFailover {
    fn default() -> Self {
        Self { enabled: true, max_failures: 3, recovery_interval: 60_000 }
    }
}

/// `bridge.hub`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
#[schemars(rename = "Hub")]
pub struct RawHub {
    /// How long the hub keeps running after the last bridge detached, in seconds; then
    /// it ends its servers and exits. Default: 60.
    pub idle_timeout: u64,
}

impl Default for RawHub {
    fn default() -> Self {
        Self { idle_timeout: 60 }
    }
}

/// `bridge.configReload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
#[schemars(rename = "ConfigReload")]
pub struct RawConfigReload {
    /// Reload the config when the file changes. Default: `true`.
    pub enabled: bool,
    /// How long the file must stay unchanged before it is reloaded, in milliseconds.
    /// Default: 1000.
    pub debounce_ms: u64,
}

impl Default for RawConfigReload {
    fn default() -> Self {
        Self { enabled: true, debounce_ms: 1000 }
    }
}

//! The resolved, validated settings the rest of the bridge runs on.
//!
//! Everything here is already checked: `${VAR}`s are expanded, durations carry their
//! unit, defaults are filled in and names are known to be unique. Nothing downstream of
//! `config/` reads `std::env` for configuration or looks at the raw file again.
//!
//! Raw file types (serde + schemars, what the user writes) live in `raw.rs`; this file
//! is what they resolve to.
//!
//! Secret values (`env` values, header values, client secrets) are `Secret`s, whose `Debug`
//! prints `[REDACTED]`.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use super::raw::RawOAuth;

/// The whole bridge configuration, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The file these settings came from, for messages and hot reload.
    pub source: PathBuf,
    /// Every configured upstream, enabled or not, in file order.
    pub servers: Vec<ServerSettings>,
    pub bridge: BridgeSettings,
}

impl Settings {
    /// The upstreams that should run (`enabled` and not `disabled`).
    pub fn enabled_servers(&self) -> impl Iterator<Item = &ServerSettings> {
        self.servers.iter().filter(|server| server.enabled)
    }

    pub fn server(&self, name: &str) -> Option<&ServerSettings> {
        self.servers.iter().find(|server| server.name == name)
    }
}

/// One upstream MCP server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// The key under `mcpServers`.
    pub name: String,
    /// `enabled` (default true) and not `disabled`.
    pub enabled: bool,
    pub transport: TransportSettings,
    /// `toolNamespace`; `None` = use the server name when `bridge.defaultNamespace`.
    pub tool_namespace: Option<String>,
    pub prompt_namespace: Option<String>,
    pub resource_namespace: Option<String>,
    /// Connect / initialize timeout (`timeout`, seconds, default 60).
    pub connect_timeout: Duration,
    /// Per-request timeout (`requestTimeout`, seconds), else `bridge.requestTimeout`.
    pub request_timeout: Duration,
    /// Lower wins under `conflictResolution: priority` (default 100).
    pub priority: i64,
    pub tags: Vec<String>,
    /// Consecutive failed starts/connects before the upstream is marked failed (default 3).
    pub retry_attempts: u32,
    /// First retry delay (`retryDelay`, ms, default 1000); doubles, capped at 30 s.
    pub retry_delay: Duration,
    pub health_check: HealthCheckSettings,
    pub tool_filter: ToolFilter,
    /// `shared`: run once per user in the hub, not in each bridge.
    pub shared: bool,
}

/// How to reach an upstream.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportSettings {
    /// A local command speaking MCP on its stdin/stdout.
    Stdio {
        command: String,
        args: Vec<String>,
        /// Added to (not replacing) the bridge's own environment. Values often hold
        /// tokens, so they are secrets.
        env: BTreeMap<String, Secret>,
        cwd: Option<PathBuf>,
    },
    /// A remote endpoint.
    Remote(RemoteSettings),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSettings {
    pub url: String,
    pub kind: RemoteKind,
    /// Sent on every request. Values may be secrets: never log them.
    pub headers: BTreeMap<String, Secret>,
    /// `verify_ssl` on the server or inside `oauth` (either `false` turns it off).
    pub verify_ssl: bool,
    /// `None` = no `oauth` block (401 auto-detection still on);
    /// `Some(o)` with `o.enabled == false` turns OAuth off entirely.
    pub oauth: Option<OAuthSettings>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteKind {
    /// `"streamablehttp"` / `"http"` / `"streamable-http"`.
    StreamableHttp,
    /// `"sse"`: the legacy HTTP+SSE transport.
    Sse,
    /// No transport given: try streamable HTTP, fall back to SSE.
    Auto,
}

/// Authorization request parameters the sign-in flow itself sets, which
/// `oauth.additional_params` may not replace (`resource` may be replaced).
pub const OAUTH_FLOW_PARAMS: [&str; 8] = [
    "state",
    "redirect_uri",
    "code_challenge",
    "code_challenge_method",
    "response_type",
    "client_id",
    "grant_type",
    "code_verifier",
];

#[derive(Debug, Clone, PartialEq)]
pub struct OAuthSettings {
    /// Absent `enabled` counts as enabled.
    pub enabled: bool,
    pub issuer: Option<String>,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub scopes: Vec<String>,
    pub additional_params: BTreeMap<String, String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// CIMD: an https URL of a client ID metadata document.
    pub client_metadata_url: Option<String>,
    /// `send_resource` (default true): `false` for servers that reject RFC 8707.
    pub send_resource: bool,
}

impl OAuthSettings {
    /// OAuth for an upstream without an `oauth` block, started by a 401 challenge: the
    /// settings of an empty `oauth` block, whose defaults `raw.rs` writes.
    pub fn defaults() -> Self {
        Self::from(&RawOAuth::default())
    }
}

/// An `oauth` block's settings as written, with their defaults (checked by `resolve.rs`).
impl From<&RawOAuth> for OAuthSettings {
    fn from(raw: &RawOAuth) -> Self {
        Self {
            enabled: raw.enabled,
            issuer: raw.issuer.clone(),
            client_name: raw.client_name.clone(),
            client_uri: raw.client_uri.clone(),
            scopes: raw.scopes.clone(),
            additional_params: raw.additional_params.clone(),
            client_id: raw.client_id.clone(),
            client_secret: raw.client_secret.as_ref().map(Secret::new),
            client_metadata_url: raw.client_metadata_url.clone(),
            send_resource: raw.send_resource,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheckSettings {
    pub enabled: bool,
    /// ms in the file, default 30000.
    pub interval: Duration,
    /// ms in the file, default 5000.
    pub timeout: Duration,
}

/// Which of an upstream's tools are exposed (`toolFilter`). A tool is exposed when it
/// matches some `allow` glob (or `allow` is empty) and no `deny` glob.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolFilter {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

impl ToolFilter {
    pub fn allows(&self, tool: &str) -> bool {
        let matches =
            |pattern: &String| glob::Pattern::new(pattern).is_ok_and(|pattern| pattern.matches(tool));
        (self.allow.is_empty() || self.allow.iter().any(matches)) && !self.deny.iter().any(matches)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BridgeSettings {
    pub conflict_resolution: ConflictResolution,
    /// Use the server name as namespace when none is configured (default true).
    pub default_namespace: bool,
    pub aggregation: Aggregation,
    /// OAuth callback port (`oauth_port`, default 8090; 0 = any free port).
    pub oauth_port: u16,
    /// OAuth callback host (`host`, default 127.0.0.1; must be loopback).
    pub host: String,
    /// How long the first list requests wait for upstreams still connecting
    /// (`startupTimeout`, seconds, default 10).
    pub startup_timeout: Duration,
    /// How long a browser sign-in may take (`signInTimeout`, seconds, default 300).
    pub sign_in_timeout: Duration,
    /// Default per-request timeout (`requestTimeout`, seconds, default 120).
    pub request_timeout: Duration,
    pub failover: FailoverSettings,
    pub config_reload: ConfigReloadSettings,
    /// Largest JSON-RPC message accepted in either direction (`maxMessageBytes`, default 32 MiB).
    pub max_message_bytes: usize,
    /// Upstreams started at once (`maxConcurrentStarts`, default 8).
    pub max_concurrent_starts: usize,
    /// Log level from the config (`logLevel`), overridden by `--log-level`/`--debug`/env.
    pub log_level: Option<String>,
    /// How long automatic sign-ins pause after one failed (`signInRetryAfter`, seconds,
    /// default 600).
    pub sign_in_retry_after: Duration,
    /// `toolMode`, overridden by `stdio --tool-mode`.
    pub tool_mode: ToolMode,
    /// `pinnedTools`: exposed-name globs still listed in search mode (checked to compile).
    pub pinned_tools: Vec<String>,
    /// How long `initialize` may wait for upstreams, for their instructions
    /// (`instructionsWait`, milliseconds, default 0).
    pub instructions_wait: Duration,
    pub hub: HubSettings,
}

/// `bridge.hub`: the process that runs the shared upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubSettings {
    /// How long the hub outlives its last bridge (`idleTimeout`, seconds, default 60).
    pub idle_timeout: Duration,
}

/// How tools are offered to the client (`bridge.toolMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolMode {
    /// `tools/list` holds every tool.
    #[default]
    All,
    /// `tools/list` holds the pinned tools and the two search meta-tools.
    Search,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictResolution {
    /// Clashing names are disambiguated (server name prefix, then a short hash).
    Namespace,
    /// The upstream with the lowest `priority` keeps the name.
    Priority,
    /// The upstream listed first in the config keeps the name.
    First,
    /// A clash is an error that names both upstreams.
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aggregation {
    pub tools: bool,
    pub resources: bool,
    pub prompts: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverSettings {
    pub enabled: bool,
    pub max_failures: u32,
    /// ms in the file, default 60000.
    pub recovery_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigReloadSettings {
    pub enabled: bool,
    /// `debounceMs`, default 1000.
    pub debounce: Duration,
}

/// A string that must never be printed: header values, client secrets, tokens. It
/// serializes as the plain string (token files need it), but its `Debug` prints
/// `[REDACTED]`, so it cannot leak through logs or error messages.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

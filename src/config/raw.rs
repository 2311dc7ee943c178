//! The config file as the user writes it: serde + schemars types, one field per key.
//!
//! These types are the single source of truth for the file format. The JSON Schema
//! (`schema/foxxy-bridge.schema.json`, `foxxy-bridge schema`) is generated from them, the
//! validator in `validate.rs` walks a document against that generated schema, and the
//! defaults written here (`Default` impls, which schemars copies into the schema) are the
//! defaults the bridge runs with. Doc comments become the schema's `description`s, so each
//! one states the unit and the default.
//!
//! This module does not check anything beyond shapes and ranges (that is `resolve.rs`)
//! and does not expand `${VAR}` (that is `expand.rs`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod bridge;

pub use self::bridge::{RawBridge, RawConflictResolution, RawToolMode};

/// The log file's level when neither the command line, the environment nor
/// `bridge.logLevel` sets one.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The whole file. Unknown keys are errors.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(
    title = "foxxy-bridge configuration",
    description = "Configuration of foxxy-bridge, a stdio-first MCP proxy that serves many upstream MCP servers as one. The file is JSON5: comments and trailing commas are allowed. `${VAR}` and `${VAR:default}` expand in every string value; `$${` is a literal `${`."
)]
pub struct RawConfig {
    /// The JSON Schema this file follows, for editors. Ignored by the bridge.
    #[serde(rename = "$schema", skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The upstream MCP servers, by name. The name is the default namespace of the
    /// server's tools and prompts. Default: none.
    #[serde(rename = "mcpServers")]
    pub mcp_servers: BTreeMap<String, RawServer>,
    /// Settings of the bridge itself. Default: every bridge default.
    pub bridge: RawBridge,
}

/// One upstream MCP server: a local program (`command`) or a remote endpoint (`url`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
#[schemars(
    rename = "Server",
    extend("oneOf" = [{ "required": ["command"] }, { "required": ["url"] }])
)]
pub struct RawServer {
    /// The program to run for a local (stdio) server, found on `PATH` like a shell would.
    /// Give either `command` or `url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub command: Option<String>,
    /// Arguments passed to `command`. Local servers only. Default: none.
    pub args: Vec<String>,
    /// Environment variables added to the bridge's own environment for `command`. Local
    /// servers only. Default: none.
    pub env: BTreeMap<String, String>,
    /// Working directory of `command`. Local servers only. Default: the bridge's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The `http://` or `https://` endpoint of a remote server. Give either `command` or `url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Transport of a remote server: `streamablehttp` (aliases `http`, `streamable-http`) or
    /// `sse` (the legacy HTTP+SSE transport). Default: try streamable HTTP, fall back to SSE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<RawTransport>,
    /// VS Code / Claude Code spelling of the transport: `stdio` (needs `command`), `http`,
    /// `streamable-http`, `streamablehttp` or `sse`. Must agree with `transport` when both
    /// are given. Default: from `command`/`url` and `transport`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<RawType>,
    /// The predecessor's (mcp-foxxy-bridge) spelling of the transport: `stdio`, `sse`,
    /// `streamablehttp` or `http`. Must agree with `transport` and `type`. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport_type: Option<RawTransportType>,
    /// HTTP headers sent with every request to a remote server. Values are secrets and are
    /// never logged. Default: none.
    pub headers: BTreeMap<String, String>,
    /// Verify the remote server's TLS certificate. `false` here or in `oauth` turns
    /// verification off; only for development with self-signed certificates. Default: `true`.
    #[serde(rename = "verify_ssl")]
    pub verify_ssl: bool,
    /// OAuth settings of a remote server. Without this block OAuth still starts when the
    /// server answers 401 with a `WWW-Authenticate` challenge. Remote servers only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth: Option<RawOAuth>,
    /// Namespace of this server's tools (`<namespace>__<tool>`). Default: the server name,
    /// when `bridge.defaultNamespace` is true.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub tool_namespace: Option<String>,
    /// Namespace of this server's resource URIs. Default: URIs pass unchanged unless two
    /// servers list the same one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub resource_namespace: Option<String>,
    /// Namespace of this server's prompts (`<namespace>__<prompt>`). Default: the server
    /// name, when `bridge.defaultNamespace` is true.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub prompt_namespace: Option<String>,
    /// Run this server. Default: `true`.
    pub enabled: bool,
    /// Claude Desktop / Cline spelling: `true` means the server does not run. Default: `false`.
    pub disabled: bool,
    /// Accepted for compatibility with other MCP clients' entries; ignored. Default: none.
    pub auto_approve: Vec<String>,
    /// Accepted for compatibility with other MCP clients' entries; ignored. Default: none.
    pub always_allow: Vec<String>,
    /// Free text for people reading the file; ignored by the bridge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Accepted for compatibility with other MCP clients' entries; not read yet (the file
    /// is not loaded). Use `env` instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_file: Option<String>,
    /// Connect and initialize timeout, in seconds. Default: 60.
    #[schemars(range(min = 1))]
    pub timeout: u64,
    /// Timeout of each request to this server, in seconds; each progress notification
    /// restarts it. Default: `bridge.requestTimeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub request_timeout: Option<u64>,
    /// Under `bridge.conflictResolution: "priority"` the server with the lowest priority keeps
    /// a clashing name. Any integer, negative allowed. Default: 100.
    pub priority: i64,
    /// Free labels for grouping servers. Default: none.
    pub tags: Vec<String>,
    /// Consecutive failed starts or connects before the server is marked failed; a successful
    /// connect resets the count. Default: 3.
    pub retry_attempts: u32,
    /// Delay before the first retry, in milliseconds; it doubles on each further failure, up
    /// to 30 seconds. Default: 1000.
    pub retry_delay: u64,
    /// Periodic `ping` of the server. Default: enabled, every 30000 ms, 5000 ms timeout.
    pub health_check: RawHealthCheck,
    /// Which of the server's tools are exposed, by glob (`*`, `?`, `[abc]`) on the tool's own
    /// name. Default: all of them.
    pub tool_filter: RawToolFilter,
    /// Run this server once per user, in a hub process that every bridge of this config
    /// file uses, instead of once per bridge. Do not share a server that keeps per-client
    /// state or depends on the client's workspace roots. Default: `false`.
    pub shared: bool,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            command: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            url: None,
            transport: None,
            kind: None,
            transport_type: None,
            headers: BTreeMap::new(),
            verify_ssl: true,
            oauth: None,
            tool_namespace: None,
            resource_namespace: None,
            prompt_namespace: None,
            enabled: true,
            disabled: false,
            auto_approve: Vec::new(),
            always_allow: Vec::new(),
            description: None,
            env_file: None,
            timeout: 60,
            request_timeout: None,
            priority: 100,
            tags: Vec::new(),
            retry_attempts: 3,
            retry_delay: 1000,
            health_check: RawHealthCheck::default(),
            tool_filter: RawToolFilter::default(),
            shared: false,
        }
    }
}

/// `transport`: how to talk to a remote server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[schemars(rename = "Transport")]
pub enum RawTransport {
    #[serde(rename = "streamablehttp")]
    StreamableHttp,
    #[serde(rename = "http")]
    Http,
    #[serde(rename = "streamable-http")]
    StreamableHttpDashed,
    #[serde(rename = "sse")]
    Sse,
}

/// `type`: the VS Code / Claude Code spelling of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[schemars(rename = "Type")]
pub enum RawType {
    #[serde(rename = "stdio")]
    Stdio,
    #[serde(rename = "http")]
    Http,
    #[serde(rename = "streamable-http")]
    StreamableHttpDashed,
    #[serde(rename = "streamablehttp")]
    StreamableHttp,
    #[serde(rename = "sse")]
    Sse,
}

/// `transportType`: the predecessor's spelling of the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[schemars(rename = "TransportType")]
pub enum RawTransportType {
    #[serde(rename = "stdio")]
    Stdio,
    #[serde(rename = "sse")]
    Sse,
    #[serde(rename = "streamablehttp")]
    StreamableHttp,
    #[serde(rename = "http")]
    Http,
}

/// OAuth 2.1 settings of a remote server. Field names are mcp-foxxy-bridge's, so its
/// configs load unchanged.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(rename = "OAuth")]
pub struct RawOAuth {
    /// Use OAuth for this server. `false` also turns off starting OAuth on a 401 answer.
    /// Default: `true` (a block without `enabled` counts as enabled).
    pub enabled: bool,
    /// The authorization server's issuer URL. Default: discovered from the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Client name sent in dynamic client registration. Default: the bridge's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// Client home page URL sent in dynamic client registration. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// Scopes to request. Default: what the server asks for.
    pub scopes: Vec<String>,
    /// Extra query parameters for the authorization request, e.g. Auth0's `audience` or
    /// Google's `access_type`. Parameters the flow sets itself (`state`, `redirect_uri`,
    /// `code_challenge`, `code_challenge_method`, `response_type`, `client_id`,
    /// `grant_type`, `code_verifier`) are refused. `resource` replaces the RFC 8707
    /// resource on the authorization, token and refresh requests. Default: none.
    pub additional_params: BTreeMap<String, String>,
    /// A pre-registered client id. Default: a client ID metadata document or dynamic
    /// registration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The secret of a pre-registered confidential client. Never logged. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// URL of a client ID metadata document (CIMD), used as the client id. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_metadata_url: Option<String>,
    /// Verify TLS certificates; same as the server-level `verify_ssl` (either `false` turns
    /// verification off). Default: `true`.
    pub verify_ssl: bool,
    /// Send the RFC 8707 `resource` parameter; `false` for authorization servers that reject
    /// it (Entra ID). Default: `true`.
    pub send_resource: bool,
}

impl Default for RawOAuth {
    fn default() -> Self {
        Self {
            enabled: true,
            issuer: None,
            client_name: None,
            client_uri: None,
            scopes: Vec::new(),
            additional_params: BTreeMap::new(),
            client_id: None,
            client_secret: None,
            client_metadata_url: None,
            verify_ssl: true,
            send_resource: true,
        }
    }
}

/// `healthCheck`: periodic `ping` of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(rename = "HealthCheck")]
pub struct RawHealthCheck {
    /// Ping the server periodically. Default: `true`.
    pub enabled: bool,
    /// Time between pings, in milliseconds. Default: 30000.
    #[schemars(range(min = 1))]
    pub interval: u64,
    /// How long a ping may take, in milliseconds. Default: 5000.
    #[schemars(range(min = 1))]
    pub timeout: u64,
}

impl Default for RawHealthCheck {
    fn default() -> Self {
        Self { enabled: true, interval: 30_000, timeout: 5_000 }
    }
}

/// `toolFilter`: a tool is exposed when it matches some `allow` glob (or `allow` is empty)
/// and no `deny` glob.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(rename = "ToolFilter")]
pub struct RawToolFilter {
    /// Globs of tool names to expose. Default: none, which exposes every tool.
    pub allow: Vec<String>,
    /// Globs of tool names to hide; wins over `allow`. Default: none.
    pub deny: Vec<String>,
}

/// The JSON Schema of [`RawConfig`] as a JSON value (draft 2020-12).
pub fn schema_value() -> serde_json::Value {
    let mut schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<RawConfig>()
        .to_value();
    unwrap_descriptions(&mut schema);
    schema
}

/// Doc comments are wrapped at 100 columns; editors show a description as one paragraph,
/// so the line breaks inside a paragraph become spaces.
fn unwrap_descriptions(schema: &mut serde_json::Value) {
    match schema {
        serde_json::Value::Object(object) => {
            for (key, value) in object.iter_mut() {
                match value {
                    serde_json::Value::String(text) if key == "description" => {
                        let paragraphs: Vec<String> =
                            text.split("\n\n").map(|paragraph| paragraph.replace('\n', " ")).collect();
                        *text = paragraphs.join("\n\n");
                    }
                    _ => unwrap_descriptions(value),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

//! Semantic checks, and the step from the raw file types to [`Settings`].
//!
//! By the time this runs the document has the right shape (`validate.rs` checked it
//! against the schema and dropped what did not fit), so everything here is about meaning:
//! a server has `command` or `url` but not both, `type`/`transport`/`transportType` agree,
//! URLs are http(s), remote-only fields are not on local servers and the other way round,
//! globs compile, the callback host is loopback. Checks about a field that already has a
//! problem are skipped (see [`Report::is_tainted`]) so one mistake is reported once.
//!
//! Defaults come from the raw types' `Default` impls, not from here.

use std::{net::IpAddr, path::Path, time::Duration};

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::{
    node::{child_path, index_path},
    raw::{
        RawBridge, RawConflictResolution, RawOAuth, RawServer, RawToolFilter, RawToolMode, RawTransport,
        RawTransportType, RawType,
    },
    settings::{
        Aggregation, BridgeSettings, ConfigReloadSettings, ConflictResolution, FailoverSettings,
        HealthCheckSettings, HubSettings, OAUTH_FLOW_PARAMS, OAuthSettings, RemoteKind, RemoteSettings,
        Secret, ServerSettings, Settings, ToolFilter, ToolMode, TransportSettings,
    },
    validate::Report,
};

/// Builds the settings from a checked document, reporting every semantic problem. The
/// result is only meaningful when `report` holds no problems.
pub fn resolve(source: &Path, document: &Value, server_order: &[String], report: &mut Report) -> Settings {
    let bridge: RawBridge = deserialize(document.get("bridge"), "bridge", report).unwrap_or_default();
    let servers = server_order
        .iter()
        .filter_map(|name| {
            let path = child_path("mcpServers", name);
            let raw = document.get("mcpServers")?.get(name);
            let raw: RawServer = deserialize(raw, &path, report)?;
            resolve_server(name, raw, &bridge, &path, report)
        })
        .collect();
    Settings { source: source.to_path_buf(), servers, bridge: resolve_bridge(bridge, report) }
}

/// Deserializes a checked value. This only fails if the schema let through something
/// serde rejects, which is then reported rather than trusted.
fn deserialize<T: DeserializeOwned + Default>(
    value: Option<&Value>,
    path: &str,
    report: &mut Report,
) -> Option<T> {
    let Some(value) = value else {
        return Some(T::default());
    };
    serde_json::from_value(value.clone()).map_err(|error| report.problem(path, error.to_string())).ok()
}

fn resolve_bridge(raw: RawBridge, report: &mut Report) -> BridgeSettings {
    if !is_loopback(&raw.host) && !report.is_tainted("bridge.host") {
        report.problem(
            "bridge.host",
            format!(
                "`{}` is not a loopback address; the OAuth callback listener only binds `127.0.0.1`, `::1` or `localhost`",
                raw.host
            ),
        );
    }
    for (index, pattern) in raw.pinned_tools.iter().enumerate() {
        check_glob(pattern, &index_path("bridge.pinnedTools", index), report);
    }
    BridgeSettings {
        conflict_resolution: match raw.conflict_resolution {
            RawConflictResolution::Namespace => ConflictResolution::Namespace,
            RawConflictResolution::Priority => ConflictResolution::Priority,
            RawConflictResolution::First => ConflictResolution::First,
            RawConflictResolution::Error => ConflictResolution::Error,
        },
        default_namespace: raw.default_namespace,
        aggregation: Aggregation {
            tools: raw.aggregation.tools,
            resources: raw.aggregation.resources,
            prompts: raw.aggregation.prompts,
        },
        oauth_port: raw.oauth_port,
        host: raw.host,
        startup_timeout: Duration::from_secs(raw.startup_timeout),
        sign_in_timeout: Duration::from_secs(raw.sign_in_timeout),
        request_timeout: Duration::from_secs(raw.request_timeout),
        failover: FailoverSettings {
            enabled: raw.failover.enabled,
            max_failures: raw.failover.max_failures,
            recovery_interval: Duration::from_millis(raw.failover.recovery_interval),
        },
        config_reload: ConfigReloadSettings {
            enabled: raw.config_reload.enabled,
            debounce: Duration::from_millis(raw.config_reload.debounce_ms),
        },
        max_message_bytes: raw.max_message_bytes,
        max_concurrent_starts: raw.max_concurrent_starts,
        log_level: raw.log_level.map(|level| spelling(&level)),
        sign_in_retry_after: Duration::from_secs(raw.sign_in_retry_after),
        tool_mode: match raw.tool_mode {
            RawToolMode::All => ToolMode::All,
            RawToolMode::Search => ToolMode::Search,
        },
        pinned_tools: raw.pinned_tools,
        instructions_wait: Duration::from_millis(raw.instructions_wait),
        hub: HubSettings { idle_timeout: Duration::from_secs(raw.hub.idle_timeout) },
    }
}

/// `127.0.0.1` (any `127.x`), `::1` (also bracketed) or `localhost`.
fn is_loopback(host: &str) -> bool {
    let unbracketed = host.strip_prefix('[').and_then(|host| host.strip_suffix(']')).unwrap_or(host);
    host.eq_ignore_ascii_case("localhost") || unbracketed.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn resolve_server(
    name: &str,
    raw: RawServer,
    bridge: &RawBridge,
    path: &str,
    report: &mut Report,
) -> Option<ServerSettings> {
    if name.trim().is_empty() {
        report.problem(path, "server name must not be empty");
    }
    check_tool_filter(&raw.tool_filter, &child_path(path, "toolFilter"), report);
    let transport = resolve_transport(&raw, path, report)?;
    Some(ServerSettings {
        name: name.to_owned(),
        enabled: raw.enabled && !raw.disabled,
        transport,
        tool_namespace: raw.tool_namespace,
        prompt_namespace: raw.prompt_namespace,
        resource_namespace: raw.resource_namespace,
        connect_timeout: Duration::from_secs(raw.timeout),
        request_timeout: Duration::from_secs(raw.request_timeout.unwrap_or(bridge.request_timeout)),
        priority: raw.priority,
        tags: raw.tags,
        retry_attempts: raw.retry_attempts,
        retry_delay: Duration::from_millis(raw.retry_delay),
        health_check: HealthCheckSettings {
            enabled: raw.health_check.enabled,
            interval: Duration::from_millis(raw.health_check.interval),
            timeout: Duration::from_millis(raw.health_check.timeout),
        },
        tool_filter: ToolFilter { allow: raw.tool_filter.allow, deny: raw.tool_filter.deny },
        shared: raw.shared,
    })
}

/// What `transport`, `type` and `transportType` each say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Declared {
    Stdio,
    StreamableHttp,
    Sse,
}

/// One transport declaration: the field, the value as written, and what it means.
type Declaration = (&'static str, String, Declared);

fn declarations(raw: &RawServer) -> Vec<Declaration> {
    let transport = raw.transport.map(|value| {
        let declared = match value {
            RawTransport::StreamableHttp | RawTransport::Http | RawTransport::StreamableHttpDashed => {
                Declared::StreamableHttp
            }
            RawTransport::Sse => Declared::Sse,
        };
        ("transport", spelling(&value), declared)
    });
    let kind = raw.kind.map(|value| {
        let declared = match value {
            RawType::Stdio => Declared::Stdio,
            RawType::Http | RawType::StreamableHttp | RawType::StreamableHttpDashed => {
                Declared::StreamableHttp
            }
            RawType::Sse => Declared::Sse,
        };
        ("type", spelling(&value), declared)
    });
    let transport_type = raw.transport_type.map(|value| {
        let declared = match value {
            RawTransportType::Stdio => Declared::Stdio,
            RawTransportType::StreamableHttp | RawTransportType::Http => Declared::StreamableHttp,
            RawTransportType::Sse => Declared::Sse,
        };
        ("transportType", spelling(&value), declared)
    });
    [transport, kind, transport_type].into_iter().flatten().collect()
}

fn resolve_transport(raw: &RawServer, path: &str, report: &mut Report) -> Option<TransportSettings> {
    let declarations = declarations(raw);
    let declared = declarations.first();
    if let Some((field, spelled, first)) = declared
        && let Some((other_field, other_spelled, _)) =
            declarations.iter().find(|(_, _, other)| other != first)
    {
        report.problem(
            path,
            format!("`{field}` is `{spelled}` but `{other_field}` is `{other_spelled}`; keep one of them"),
        );
    }
    match (&raw.command, &raw.url) {
        (Some(_), Some(_)) => {
            report.problem(
                path,
                "has both `command` and `url`; give `command` to run a local server or `url` to connect to a remote one",
            );
            None
        }
        (None, None) => {
            if !report.is_tainted(&child_path(path, "command"))
                && !report.is_tainted(&child_path(path, "url"))
            {
                report.problem(path, "needs `command` (a local program to run) or `url` (a remote endpoint)");
            }
            None
        }
        (Some(command), None) => {
            if let Some((field, spelled, declared)) = declared
                && *declared != Declared::Stdio
            {
                report.problem(
                    path,
                    format!("`{field}` is `{spelled}`, a remote transport, but this server has a `command` instead of a `url`"),
                );
            }
            Some(resolve_stdio(command, raw, path, report))
        }
        (None, Some(url)) => {
            if let Some((field, spelled, Declared::Stdio)) = declared {
                report.problem(
                    path,
                    format!(
                        "`{field}` is `{spelled}`, which runs a local `command`, but this server has a `url`"
                    ),
                );
            }
            let kind = match declared.map(|declaration| declaration.2) {
                Some(Declared::Sse) => RemoteKind::Sse,
                Some(Declared::StreamableHttp) => RemoteKind::StreamableHttp,
                Some(Declared::Stdio) | None => RemoteKind::Auto,
            };
            Some(resolve_remote(url, kind, raw, path, report))
        }
    }
}

fn resolve_stdio(command: &str, raw: &RawServer, path: &str, report: &mut Report) -> TransportSettings {
    if !raw.headers.is_empty() {
        report.problem(&child_path(path, "headers"), "`headers` only apply to remote (`url`) servers");
    }
    if raw.oauth.is_some() {
        report.problem(
            &child_path(path, "oauth"),
            "`oauth` only applies to remote (`url`) servers; a local (`command`) server does not sign in",
        );
    }
    let env_path = child_path(path, "env");
    for (name, value) in &raw.env {
        if name.is_empty() || name.contains(['=', '\0']) {
            report.problem(&env_path, format!("`{name}` is not a valid environment variable name"));
        } else if value.contains('\0') {
            report.problem(&child_path(&env_path, name), "must not contain a NUL character");
        }
    }
    TransportSettings::Stdio {
        command: command.to_owned(),
        args: raw.args.clone(),
        env: raw.env.iter().map(|(name, value)| (name.clone(), Secret::new(value.clone()))).collect(),
        cwd: raw.cwd.as_ref().map(Into::into),
    }
}

fn resolve_remote(
    url: &str,
    kind: RemoteKind,
    raw: &RawServer,
    path: &str,
    report: &mut Report,
) -> TransportSettings {
    for (field, present) in
        [("args", !raw.args.is_empty()), ("env", !raw.env.is_empty()), ("cwd", raw.cwd.is_some())]
    {
        if present {
            report.problem(
                &child_path(path, field),
                format!("`{field}` only applies to local (`command`) servers; this server has a `url`"),
            );
        }
    }
    check_url(url, &child_path(path, "url"), report);
    let headers_path = child_path(path, "headers");
    for (name, value) in &raw.headers {
        if name.is_empty() || !name.chars().all(is_header_name_char) {
            report.problem(&headers_path, format!("`{name}` is not a valid HTTP header name"));
        } else if value.contains(['\r', '\n', '\0']) {
            report
                .problem(&child_path(&headers_path, name), "must not contain a line break or NUL character");
        }
    }
    let oauth = raw.oauth.as_ref().map(|oauth| resolve_oauth(oauth, &child_path(path, "oauth"), report));
    TransportSettings::Remote(RemoteSettings {
        url: url.to_owned(),
        kind,
        headers: raw.headers.iter().map(|(name, value)| (name.clone(), Secret::new(value))).collect(),
        verify_ssl: raw.verify_ssl && raw.oauth.as_ref().is_none_or(|oauth| oauth.verify_ssl),
        oauth,
    })
}

/// RFC 9110 `tchar`.
fn is_header_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn resolve_oauth(raw: &RawOAuth, path: &str, report: &mut Report) -> OAuthSettings {
    for (field, value) in [
        ("issuer", &raw.issuer),
        ("client_uri", &raw.client_uri),
        ("client_metadata_url", &raw.client_metadata_url),
    ] {
        if let Some(value) = value {
            check_url(value, &child_path(path, field), report);
        }
    }
    for key in raw.additional_params.keys() {
        if OAUTH_FLOW_PARAMS.contains(&key.as_str()) {
            report.problem(
                &child_path(&child_path(path, "additional_params"), key),
                format!("`{key}` is set by the sign-in flow itself and cannot be replaced; remove it"),
            );
        }
    }
    OAuthSettings::from(raw)
}

fn check_url(text: &str, path: &str, report: &mut Report) {
    if report.is_tainted(path) {
        return;
    }
    // A URL with `${VAR}` in it may carry a key: the message then does not quote it.
    let quoted = if report.substituted.contains(path) {
        "the value (after `${...}` expansion)".to_owned()
    } else {
        format!("`{text}`")
    };
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {}
        Ok(url) => report.problem(
            path,
            format!("{quoted} is not an `http://` or `https://` URL (its scheme is `{}`)", url.scheme()),
        ),
        Err(error) => report.problem(path, format!("{quoted} is not a valid URL: {error}")),
    }
}

fn check_tool_filter(filter: &RawToolFilter, path: &str, report: &mut Report) {
    for (field, patterns) in [("allow", &filter.allow), ("deny", &filter.deny)] {
        for (index, pattern) in patterns.iter().enumerate() {
            check_glob(pattern, &index_path(&child_path(path, field), index), report);
        }
    }
}

fn check_glob(pattern: &str, path: &str, report: &mut Report) {
    if let Err(error) = glob::Pattern::new(pattern) {
        report.problem(path, format!("invalid glob `{pattern}`: {} at character {}", error.msg, error.pos));
    }
}

/// A unit enum's value as it is written in the file (its serde name).
fn spelling(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        other => format!("{other:?}"),
    }
}

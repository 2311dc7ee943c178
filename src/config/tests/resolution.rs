//! What valid configs resolve to: every field, the defaults, other clients' spellings,
//! and short inline cases.

use std::{collections::BTreeMap, path::Path, time::Duration};

use super::{CASES, load_case, test_env};
use crate::config::*;

#[test]
fn full_config_resolves_every_field() {
    let settings = load_case(&Path::new(CASES).join("valid/full.json5")).unwrap();
    assert_eq!(settings.source, Path::new("full.json5"));
    let names: Vec<&str> = settings.servers.iter().map(|server| server.name.as_str()).collect();
    assert_eq!(names, ["fs", "remote"], "file order, not sorted");

    let fs_server = settings.server("fs").unwrap();
    let strings = |items: &[&str]| items.iter().map(|item| item.to_string()).collect::<Vec<_>>();
    let expected = ServerSettings {
        name: "fs".into(),
        enabled: true,
        transport: TransportSettings::Stdio {
            command: "npx".into(),
            args: strings(&["-y", "@modelcontextprotocol/server-filesystem", "/home/fox/projects"]),
            env: BTreeMap::from([
                ("LITERAL".to_owned(), Secret::new("${NOT_EXPANDED}")),
                ("MODE".to_owned(), Secret::new("dev")),
                ("TOKEN".to_owned(), Secret::new("tok-123")),
            ]),
            cwd: Some("/tmp".into()),
        },
        tool_namespace: Some("files".into()),
        prompt_namespace: Some("fsprompts".into()),
        resource_namespace: Some("fsres".into()),
        connect_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(45),
        priority: -5,
        tags: strings(&["local", "files"]),
        retry_attempts: 5,
        retry_delay: Duration::from_millis(250),
        health_check: HealthCheckSettings {
            enabled: false,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
        },
        tool_filter: ToolFilter { allow: strings(&["read_*", "list_?"]), deny: strings(&["*secret*"]) },
        shared: true,
    };
    assert_eq!(fs_server, &expected);
    assert!(fs_server.tool_filter.allows("read_file"));
    assert!(!fs_server.tool_filter.allows("read_secret_file"));
    assert!(!fs_server.tool_filter.allows("write_file"));

    let remote_server = settings.server("remote").unwrap();
    assert!(!remote_server.enabled, "`disabled: true` wins over `enabled: true`");
    assert_eq!(remote_server.request_timeout, Duration::from_secs(90), "inherited from the bridge");
    let TransportSettings::Remote(remote) = &remote_server.transport else {
        panic!("remote is remote");
    };
    assert_eq!(remote.url, "https://mcp.example.com/mcp");
    assert_eq!(remote.kind, RemoteKind::StreamableHttp);
    assert_eq!(remote.headers["X-Api-Key"].expose(), "hdr-456");
    assert!(!remote.verify_ssl, "`oauth.verify_ssl: false` turns verification off");
    let oauth = remote.oauth.as_ref().unwrap();
    assert_eq!(
        oauth,
        &OAuthSettings {
            enabled: true,
            issuer: Some("https://auth.example.com".into()),
            client_name: Some("foxxy".into()),
            client_uri: Some("https://example.com/foxxy".into()),
            scopes: strings(&["read", "write"]),
            additional_params: BTreeMap::from([(
                "audience".to_owned(),
                "https://api.example.com".to_owned()
            )]),
            client_id: Some("client-123".into()),
            client_secret: Some(Secret::new("shh")),
            client_metadata_url: Some("https://example.com/client.json".into()),
            send_resource: false,
        }
    );
    let debug = format!("{settings:?}");
    assert!(!debug.contains("hdr-456") && !debug.contains("shh"), "secrets leak into Debug: {debug}");

    assert_eq!(
        settings.bridge,
        BridgeSettings {
            conflict_resolution: ConflictResolution::Priority,
            default_namespace: false,
            aggregation: Aggregation { tools: true, resources: false, prompts: false },
            oauth_port: 0,
            host: "localhost".into(),
            startup_timeout: Duration::ZERO,
            sign_in_timeout: Duration::from_secs(300),
            request_timeout: Duration::from_secs(90),
            failover: FailoverSettings {
                enabled: false,
                max_failures: 7,
                recovery_interval: Duration::from_secs(5),
            },
            config_reload: ConfigReloadSettings { enabled: false, debounce: Duration::ZERO },
            max_message_bytes: 1024 * 1024,
            max_concurrent_starts: 2,
            log_level: Some("debug".into()),
            sign_in_retry_after: Duration::from_secs(600),
            tool_mode: ToolMode::All,
            pinned_tools: Vec::new(),
            instructions_wait: Duration::ZERO,
            hub: HubSettings { idle_timeout: Duration::from_secs(5) },
        }
    );
}

#[test]
fn defaults() {
    let settings = load_case(&Path::new(CASES).join("valid/minimal.json5")).unwrap();
    let server = &settings.servers[0];
    assert!(server.enabled);
    assert_eq!(server.tool_namespace, None);
    assert_eq!(server.connect_timeout, Duration::from_secs(60));
    assert_eq!(server.request_timeout, Duration::from_secs(120));
    assert_eq!(server.priority, 100);
    assert_eq!(server.retry_attempts, 3);
    assert_eq!(server.retry_delay, Duration::from_secs(1));
    assert_eq!(
        server.health_check,
        HealthCheckSettings {
            enabled: true,
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    );
    assert_eq!(server.tool_filter, ToolFilter::default());
    assert_eq!(
        settings.bridge,
        BridgeSettings {
            conflict_resolution: ConflictResolution::Namespace,
            default_namespace: true,
            aggregation: Aggregation { tools: true, resources: true, prompts: true },
            oauth_port: 8090,
            host: "127.0.0.1".into(),
            startup_timeout: Duration::from_secs(10),
            sign_in_timeout: Duration::from_secs(300),
            request_timeout: Duration::from_secs(120),
            failover: FailoverSettings {
                enabled: true,
                max_failures: 3,
                recovery_interval: Duration::from_secs(60),
            },
            config_reload: ConfigReloadSettings { enabled: true, debounce: Duration::from_secs(1) },
            max_message_bytes: 32 * 1024 * 1024,
            max_concurrent_starts: 8,
            log_level: None,
            sign_in_retry_after: Duration::from_secs(600),
            tool_mode: ToolMode::All,
            pinned_tools: Vec::new(),
            instructions_wait: Duration::ZERO,
            hub: HubSettings { idle_timeout: Duration::from_secs(60) },
        }
    );
}

#[test]
fn client_styles_resolve_to_the_same_meaning() {
    let settings = load_case(&Path::new(CASES).join("valid/client-styles.json5")).unwrap();
    let kind = |name: &str| match &settings.server(name).unwrap().transport {
        TransportSettings::Remote(remote) => Some(remote.kind),
        TransportSettings::Stdio { .. } => None,
    };
    assert_eq!(kind("claude-code-http"), Some(RemoteKind::StreamableHttp));
    assert_eq!(kind("claude-code-sse"), Some(RemoteKind::Sse));
    assert_eq!(kind("claude-code-stdio"), None);
    assert_eq!(kind("vscode-streamable"), Some(RemoteKind::StreamableHttp));
    assert_eq!(kind("predecessor"), Some(RemoteKind::Sse));
    assert_eq!(kind("auto"), Some(RemoteKind::Auto));
    assert!(!settings.server("cline").unwrap().enabled);
    let enabled: Vec<&str> = settings.enabled_servers().map(|server| server.name.as_str()).collect();
    assert!(!enabled.contains(&"cline") && enabled.contains(&"auto"));
}

/// Inline one-line cases: a config text and a substring of the error, or `ok`.
#[track_caller]
fn check(text: &str, expected: &str) {
    let actual = match load_str(text, Path::new("inline.json5"), &test_env) {
        Ok(_) => "ok".to_owned(),
        Err(error) => error.to_string(),
    };
    assert!(actual.contains(expected), "config: {text}\nexpected: {expected}\nactual: {actual}");
}

#[test]
fn inline_cases() {
    check(r#"{ "bridge": { "host": "127.0.0.2" } }"#, "ok");
    check(r#"{ "bridge": { "host": "[::1]" } }"#, "ok");
    check(r#"{ "bridge": { "host": "LOCALHOST" } }"#, "ok");
    check(r#"{ "bridge": { "host": "example.com" } }"#, "`example.com` is not a loopback address");
    check(r#"{ "bridge": { "host": "::" } }"#, "`::` is not a loopback address");
    check(r#"{ "bridge": { "oauth_port": 65535, "port": 0 } }"#, "ok");
    check(r#"{ "bridge": { "maxMessageBytes": 1024 } }"#, "ok");
    check(
        r#"{ "bridge": { "failover": { "maxFailures": 0 } } }"#,
        "bridge.failover.maxFailures: must be at least 1",
    );
    check(
        r#"{ "mcpServers": { "a": { "command": "x", "retryAttempts": 4294967296 } } }"#,
        "must be at most 4294967295",
    );
    check(r#"{ "mcpServers": { "a": { "command": "" } } }"#, "mcpServers.a.command: must not be empty");
    check(
        r#"{ "mcpServers": { "a": { "command": "x", "healthCheck": { "interval": 0 } } } }"#,
        "healthCheck.interval: must be at least 1",
    );
    check(r#"{ "mcpServers": { "a": { "url": "http://127.0.0.1:8080/mcp", "transport": "http" } } }"#, "ok");
    check(r#"{ "mcpServers": { "a": { "url": "${MCP_URL:http://localhost/mcp}" } } }"#, "ok");
    check(
        r#"{ "mcpServers": { "a": { "url": "${MCP_URL}" } } }"#,
        "mcpServers.a.url: environment variable `MCP_URL` is not set",
    );
    check(r#"{ "mcpServers": { "a": { "url": "https://x.test", "oauth": { "enabled": false } } } }"#, "ok");
    check(r#"{ "mcpServers": { "a": { "url": "https://x.test", "verify_ssl": false } } }"#, "ok");
    check(
        r#"{ "mcpServers": { "a": { "url": "https://x.test", "verifySsl": false } } }"#,
        "did you mean `verify_ssl`?",
    );
    check(
        r#"{ "mcpServers": { "a": { "url": "https://x.test", "transportType": "sse", "type": "sse" } } }"#,
        "ok",
    );
    check(
        r#"{ "mcpServers": { "a": { "url": "https://x.test", "transportType": "stdio" } } }"#,
        "`transportType` is `stdio`",
    );
    check(
        r#"{ "mcpServers": { "a": { "command": "x", "env": { "A": 1 } } } }"#,
        "mcpServers.a.env.A: expected a string, found an integer",
    );
    check(
        r#"{ "mcpServers": { "a": { "command": "x", "env": { "A=B": "c" } } } }"#,
        "`A=B` is not a valid environment variable name",
    );
    check(r#"{ "mcpServers": [] }"#, "mcpServers: expected an object, found an array");
    check(r#"{ "mcpServers": { "a": "npx" } }"#, "mcpServers.a: expected an object, found a string");
    check(
        r#"{ "mcpServers": { "a.b": { "command": "x", "comand": "y" } } }"#,
        "mcpServers[\"a.b\"]: unknown field `comand`",
    );
    check(
        r#"{ "mcpServers": { "a": { "command": "x", "timeout": Infinity } } }"#,
        "expected an integer, found a number",
    );
    check(r#"{ "mcpServers": { "a": { "command": "x", "priority": 0x10 } } }"#, "ok");
    check("\u{feff}{}", "ok");
    check("/* only a comment */", "the config file is empty");
    check("{ \"a\": 1,, }", "inline.json5:1:10: syntax error");
}

#[test]
fn a_bad_url_with_a_variable_in_it_is_not_quoted() {
    let env = |name: &str| (name == "KEY").then(|| "sk-secret-9".to_owned());
    let load = |url: &str| {
        let text = format!(r#"{{ "mcpServers": {{ "r": {{ "url": "{url}" }} }} }}"#);
        load_str(&text, Path::new("c.json5"), &env).unwrap_err().to_string()
    };
    let error = load("ht tp://x/?key=${KEY}");
    assert!(!error.contains("sk-secret-9"), "{error}");
    assert!(
        error.contains("mcpServers.r.url: the value (after `${...}` expansion) is not a valid URL"),
        "{error}"
    );
    let error = load("ftp://x/${KEY}");
    assert!(!error.contains("sk-secret-9") && error.contains("its scheme is `ftp`"), "{error}");
    // Without a variable, the text helps find the typo.
    assert!(load("ht tp://x/").contains("`ht tp://x/` is not a valid URL"));
}

//! Tests of the whole config pipeline, mostly driven by the files in `tests/config_cases/`:
//! `guide/` (the predecessor guide's examples, which must load unchanged), `valid/` and
//! `broken/` (each `NAME.json5` next to a `NAME.expected` whose lines must all appear in
//! the error output). Also keeps `schema/foxxy-bridge.schema.json` in sync.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use super::*;

const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/config_cases");
const SCHEMA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/foxxy-bridge.schema.json");

/// The environment every case file sees; nothing comes from the real one.
fn test_env(name: &str) -> Option<String> {
    let value = match name {
        "HOME" => "/home/fox",
        "API_TOKEN" => "tok-123",
        _ => return None,
    };
    Some(value.to_owned())
}

fn load_case(path: &Path) -> Result<Settings, ConfigError> {
    let text = fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap();
    load_str(&text, Path::new(name), &test_env)
}

fn case_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(Path::new(CASES).join(dir))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "json5"))
        .collect();
    files.sort();
    files
}

#[test]
fn guide_examples_load_unchanged() {
    let files = case_files("guide");
    assert_eq!(files.len(), 12, "one file per JSON block of the reference guide");
    for file in files {
        if let Err(error) = load_case(&file) {
            panic!("{} must load:\n{error}", file.display());
        }
    }
}

/// The in-repo copies are what the test above loads; when the shared reference directory
/// is next to the checkout, make sure they have not drifted from it.
#[test]
fn guide_copies_match_the_reference() {
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/guide-examples");
    let Ok(entries) = fs::read_dir(&reference) else {
        return;
    };
    for entry in entries {
        let original = entry.unwrap().path();
        let copy = Path::new(CASES).join("guide").join(original.file_name().unwrap());
        assert_eq!(
            fs::read(&original).unwrap(),
            fs::read(&copy).unwrap_or_default(),
            "{} differs from {}",
            copy.display(),
            original.display()
        );
    }
}

#[test]
fn guide_examples_resolve_as_documented() {
    let settings = load_case(&Path::new(CASES).join("guide/guide-02-full.json5")).unwrap();
    let remote = |name: &str| match &settings.server(name).unwrap().transport {
        TransportSettings::Remote(remote) => remote.clone(),
        TransportSettings::Stdio { .. } => panic!("{name} is remote"),
    };
    // `verify_ssl` inside `oauth` is the guide's spelling; `false` there turns verification off.
    assert!(remote("remote-server").verify_ssl);
    assert!(!remote("dev-server").verify_ssl);
    assert_eq!(remote("dev-server").kind, RemoteKind::Sse);
    let oauth = remote("dev-server").oauth.unwrap();
    assert!(oauth.enabled && oauth.send_resource);
    assert_eq!(oauth.issuer.as_deref(), Some("https://dev-auth.example.com"));
}

#[test]
fn valid_cases_load() {
    let files = case_files("valid");
    assert!(files.len() >= 4);
    for file in files {
        if let Err(error) = load_case(&file) {
            panic!("{} must load:\n{error}", file.display());
        }
    }
}

#[test]
fn broken_cases_report_what_they_expect() {
    let files = case_files("broken");
    assert!(files.len() >= 20);
    for file in files {
        let expected = fs::read_to_string(file.with_extension("expected"))
            .unwrap_or_else(|_| panic!("{} needs a `.expected` file", file.display()));
        let output = match load_case(&file) {
            Ok(_) => panic!("{} must not load", file.display()),
            Err(error) => error.to_string(),
        };
        for line in expected.lines().filter(|line| !line.trim().is_empty()) {
            assert!(
                output.contains(line),
                "{}: expected the output to contain\n  {line}\nbut it was\n{output}",
                file.display()
            );
        }
    }
}

#[test]
fn every_expected_file_has_a_case() {
    for entry in fs::read_dir(Path::new(CASES).join("broken")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|extension| extension == "expected") {
            assert!(path.with_extension("json5").is_file(), "{} has no case file", path.display());
        }
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let Err(ConfigError::Invalid { problems, .. }) =
        load_case(&Path::new(CASES).join("broken/multiple-problems.json5"))
    else {
        panic!("must be invalid");
    };
    let expected = fs::read_to_string(Path::new(CASES).join("broken/multiple-problems.expected")).unwrap();
    // Exactly the listed problems: one mistake is reported once, not again by a later stage.
    assert_eq!(problems.len(), expected.lines().count(), "{problems:#?}");
}

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
                ("LITERAL".to_owned(), "${NOT_EXPANDED}".to_owned()),
                ("MODE".to_owned(), "dev".to_owned()),
                ("TOKEN".to_owned(), "tok-123".to_owned()),
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
        tool_filter: ToolFilter {
            allow: strings(&["read_*", "list_?"]),
            deny: strings(&["*secret*"]),
        },
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
    assert_eq!(remote.headers["X-Api-Key"].expose(), "tok-123");
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
            additional_params: BTreeMap::from([("audience".to_owned(), "https://api.example.com".to_owned())]),
            client_id: Some("client-123".into()),
            client_secret: Some(Secret::new("shh")),
            client_metadata_url: Some("https://example.com/client.json".into()),
            send_resource: false,
        }
    );
    let debug = format!("{settings:?}");
    assert!(!debug.contains("tok-123") && !debug.contains("shh"), "secrets leak into Debug: {debug}");

    assert_eq!(
        settings.bridge,
        BridgeSettings {
            conflict_resolution: ConflictResolution::Priority,
            default_namespace: false,
            aggregation: Aggregation {
                tools: true,
                resources: false,
                prompts: false,
            },
            oauth_port: 0,
            host: "localhost".into(),
            startup_timeout: Duration::ZERO,
            request_timeout: Duration::from_secs(90),
            failover: FailoverSettings {
                enabled: false,
                max_failures: 7,
                recovery_interval: Duration::from_secs(5),
            },
            config_reload: ConfigReloadSettings {
                enabled: false,
                debounce: Duration::ZERO,
            },
            max_message_bytes: 1024 * 1024,
            max_concurrent_starts: 2,
            log_level: Some("debug".into()),
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
            aggregation: Aggregation {
                tools: true,
                resources: true,
                prompts: true,
            },
            oauth_port: 8090,
            host: "127.0.0.1".into(),
            startup_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            failover: FailoverSettings {
                enabled: true,
                max_failures: 3,
                recovery_interval: Duration::from_secs(60),
            },
            config_reload: ConfigReloadSettings {
                enabled: true,
                debounce: Duration::from_secs(1),
            },
            max_message_bytes: 32 * 1024 * 1024,
            max_concurrent_starts: 8,
            log_level: None,
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
    check(r#"{ "bridge": { "failover": { "maxFailures": 0 } } }"#, "bridge.failover.maxFailures: must be at least 1");
    check(r#"{ "mcpServers": { "a": { "command": "x", "retryAttempts": 4294967296 } } }"#, "must be at most 4294967295");
    check(r#"{ "mcpServers": { "a": { "command": "" } } }"#, "mcpServers.a.command: must not be empty");
    check(r#"{ "mcpServers": { "a": { "command": "x", "healthCheck": { "interval": 0 } } } }"#, "healthCheck.interval: must be at least 1");
    check(r#"{ "mcpServers": { "a": { "url": "http://127.0.0.1:8080/mcp", "transport": "http" } } }"#, "ok");
    check(r#"{ "mcpServers": { "a": { "url": "${MCP_URL:http://localhost/mcp}" } } }"#, "ok");
    check(r#"{ "mcpServers": { "a": { "url": "${MCP_URL}" } } }"#, "mcpServers.a.url: environment variable `MCP_URL` is not set");
    check(r#"{ "mcpServers": { "a": { "url": "https://x.test", "oauth": { "enabled": false } } } }"#, "ok");
    check(r#"{ "mcpServers": { "a": { "url": "https://x.test", "verify_ssl": false } } }"#, "ok");
    check(r#"{ "mcpServers": { "a": { "url": "https://x.test", "verifySsl": false } } }"#, "did you mean `verify_ssl`?");
    check(r#"{ "mcpServers": { "a": { "url": "https://x.test", "transportType": "sse", "type": "sse" } } }"#, "ok");
    check(r#"{ "mcpServers": { "a": { "url": "https://x.test", "transportType": "stdio" } } }"#, "`transportType` is `stdio`");
    check(r#"{ "mcpServers": { "a": { "command": "x", "env": { "A": 1 } } } }"#, "mcpServers.a.env.A: expected a string, found an integer");
    check(r#"{ "mcpServers": { "a": { "command": "x", "env": { "A=B": "c" } } } }"#, "`A=B` is not a valid environment variable name");
    check(r#"{ "mcpServers": [] }"#, "mcpServers: expected an object, found an array");
    check(r#"{ "mcpServers": { "a": "npx" } }"#, "mcpServers.a: expected an object, found a string");
    check(r#"{ "mcpServers": { "a.b": { "command": "x", "comand": "y" } } }"#, "mcpServers[\"a.b\"]: unknown field `comand`");
    check(r#"{ "mcpServers": { "a": { "command": "x", "timeout": Infinity } } }"#, "expected an integer, found a number");
    check(r#"{ "mcpServers": { "a": { "command": "x", "priority": 0x10 } } }"#, "ok");
    check("\u{feff}{}", "ok");
    check("/* only a comment */", "the config file is empty");
    check("{ \"a\": 1,, }", "inline.json5:1:10: syntax error");
}

#[test]
fn problems_render_with_the_file() {
    let error = ConfigError::Invalid {
        path: PathBuf::from("dir/config.json5"),
        problems: vec![
            Problem::position(3, 7, "syntax error: expected `}`"),
            Problem::at("mcpServers.a.url", "bad"),
            Problem::at("", "the config must be a JSON5 object"),
        ],
    };
    assert_eq!(
        error.to_string(),
        "dir/config.json5:3:7: syntax error: expected `}`\n\
         dir/config.json5: mcpServers.a.url: bad\n\
         dir/config.json5: the config must be a JSON5 object"
    );
    let error = ConfigError::NotFound {
        tried: vec![PathBuf::from("/a/config.json5"), PathBuf::from("/a/config.json")],
    };
    assert_eq!(
        error.to_string(),
        "no config file found; tried:\n  /a/config.json5\n  /a/config.json\n\
         hint: create one of these, or pass `--config PATH` or set `FOXXY_BRIDGE_CONFIG`"
    );
}

#[test]
fn load_reads_files_and_reports_unreadable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json5");
    fs::write(&path, r#"{ "mcpServers": { "a": { "command": "x" } } }"#).unwrap();
    assert_eq!(load(&path).unwrap().servers.len(), 1);
    let missing = dir.path().join("missing.json5");
    let error = load(&missing).unwrap_err();
    assert!(matches!(&error, ConfigError::Read { path, .. } if *path == missing), "{error:?}");
    assert!(error.to_string().starts_with("cannot read config file `"), "{error}");
}

#[test]
fn locate_prefers_explicit_then_json5_then_json() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let explicit = root.join("elsewhere.json5");
    assert_eq!(locate(Some(&explicit), root).unwrap(), explicit, "explicit paths are not checked");

    fs::write(root.join("config.json"), "{}").unwrap();
    assert_eq!(locate(None, root).unwrap(), root.join("config.json"));
    fs::write(root.join("config.json5"), "{}").unwrap();
    assert_eq!(locate(None, root).unwrap(), root.join("config.json5"));
}

#[test]
fn locate_lists_every_path_tried() {
    let dir = tempfile::tempdir().unwrap();
    match locate(None, dir.path()) {
        // A developer machine may have a real config in the platform directory.
        Ok(found) => assert!(!found.starts_with(dir.path())),
        Err(ConfigError::NotFound { tried }) => {
            assert_eq!(tried[..2], [dir.path().join("config.json5"), dir.path().join("config.json")]);
            if let Some(dirs) = directories::ProjectDirs::from("", "", "foxxy-bridge") {
                assert_eq!(tried[2..], [dirs.config_dir().join("config.json5"), dirs.config_dir().join("config.json")]);
            }
        }
        Err(other) => panic!("unexpected {other:?}"),
    }
}

/// The committed schema is what `schema_json()` prints. `FOXXY_UPDATE_SCHEMA=1` rewrites it.
#[test]
fn committed_schema_is_up_to_date() {
    let generated = schema_json();
    if std::env::var_os("FOXXY_UPDATE_SCHEMA").is_some_and(|value| value == "1") {
        fs::create_dir_all(Path::new(SCHEMA_FILE).parent().unwrap()).unwrap();
        fs::write(SCHEMA_FILE, &generated).unwrap();
        return;
    }
    let committed = fs::read_to_string(SCHEMA_FILE).unwrap_or_default();
    assert!(
        committed == generated,
        "`schema/foxxy-bridge.schema.json` is out of date with the config types; \
         run `cargo run -- schema > schema/foxxy-bridge.schema.json` \
         (or `FOXXY_UPDATE_SCHEMA=1 cargo test --lib config`)"
    );
}

#[test]
fn schema_documents_every_field() {
    let schema: serde_json::Value = serde_json::from_str(&schema_json()).unwrap();
    assert_eq!(schema["title"], "foxxy-bridge configuration");
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let mut objects = vec![("#".to_owned(), &schema)];
    objects.extend(schema["$defs"].as_object().unwrap().iter().map(|(name, def)| (name.clone(), def)));
    for (name, object) in objects {
        assert!(object.get("description").is_some(), "{name} has no description");
        let Some(properties) = object.get("properties").and_then(|value| value.as_object()) else {
            continue;
        };
        assert_eq!(object["additionalProperties"], false, "{name} allows unknown keys");
        for (field, property) in properties {
            let description = property["description"].as_str().unwrap_or_default();
            assert!(!description.is_empty(), "{name}.{field} has no description");
            assert!(!description.contains('\n'), "{name}.{field}: description has a line break");
            let optional = property.get("anyOf").is_some()
                || property["type"].as_array().is_some_and(|types| types.contains(&"null".into()));
            assert!(
                optional || property.get("default").is_some(),
                "{name}.{field} has neither a default nor is optional"
            );
        }
    }
}

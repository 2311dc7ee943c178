//! Finding and reading config files, rendering errors, and the committed schema.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::config::{syntax, *};

const SCHEMA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/foxxy-bridge.schema.json");

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

/// Every stage recurses once per level; the deepest nesting the parser lets through
/// must pass them all on a test thread's 2 MiB stack in a debug build.
#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let env = |_: &str| None;
    let path = Path::new("deep.json5");
    for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
        let nested = |depth: usize| {
            format!(
                "{{\"mcpServers\": {{\"s\": {{\"command\": \"x\", \"env\": {}1{}}}}}}}",
                open.repeat(depth),
                close.repeat(depth)
            )
        };
        let error = load_str(&nested(syntax::MAX_DEPTH - 3), path, &env).expect_err("not a string map");
        assert!(!error.to_string().contains("nest more"), "{error}");
        let error = load_str(&nested(syntax::MAX_DEPTH), path, &env).expect_err("too deep");
        assert!(error.to_string().contains("nest more than 100 levels"), "{error}");
        let error = load_str(&open.repeat(200_000), path, &env).expect_err("too deep");
        assert!(error.to_string().starts_with("deep.json5:1:"), "{error}");
    }
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
                assert_eq!(
                    tried[2..],
                    [dirs.config_dir().join("config.json5"), dirs.config_dir().join("config.json")]
                );
            }
        }
        Err(other) => panic!("unexpected {other:?}"),
    }
}

/// The committed schema (which the binary prints and checks configs against) is what the
/// config types generate. `FOXXY_UPDATE_SCHEMA=1` rewrites it.
#[test]
fn committed_schema_is_up_to_date() {
    let generated = generated_schema_json();
    if std::env::var_os("FOXXY_UPDATE_SCHEMA").is_some_and(|value| value == "1") {
        fs::create_dir_all(Path::new(SCHEMA_FILE).parent().unwrap()).unwrap();
        fs::write(SCHEMA_FILE, &generated).unwrap();
        return;
    }
    let committed = fs::read_to_string(SCHEMA_FILE).unwrap_or_default();
    assert!(
        committed == generated,
        "`schema/foxxy-bridge.schema.json` is out of date with the config types; \
         run `FOXXY_UPDATE_SCHEMA=1 cargo test --lib config` and commit the file"
    );
}

#[test]
fn schema_documents_every_field() {
    let schema: serde_json::Value = serde_json::from_str(schema_json()).unwrap();
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

/// `docs/configuration.md` has a table row for every field of every object in the schema.
#[test]
fn docs_describe_every_field() {
    let docs = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(schema_json()).unwrap();
    let mut objects = vec![&schema];
    objects.extend(schema["$defs"].as_object().unwrap().values());
    for object in objects {
        for field in object["properties"].as_object().into_iter().flat_map(|properties| properties.keys()) {
            if field != "$schema" {
                assert!(
                    docs.contains(&format!("| `{field}` |")),
                    "docs/configuration.md does not describe `{field}`"
                );
            }
        }
    }
}

/// Editors that check a file against the schema flag a server entry with neither `command`
/// nor `url` (or both), as the loader does: every valid and guide case passes the schema's
/// alternatives, and the broken cases for that rule fail them.
#[test]
fn schema_requires_command_or_url() {
    let schema: serde_json::Value = serde_json::from_str(schema_json()).unwrap();
    let branches = schema["$defs"]["Server"]["oneOf"].as_array().expect("`Server` has `oneOf`");
    let passes = |server: &serde_json::Value| {
        let matching = branches.iter().filter(|branch| {
            branch["required"]
                .as_array()
                .unwrap()
                .iter()
                .all(|key| server.get(key.as_str().unwrap()).is_some())
        });
        matching.count() == 1
    };
    let servers = |path: &Path| -> Vec<(String, serde_json::Value)> {
        let document: serde_json::Value = json5::from_str(&fs::read_to_string(path).unwrap()).unwrap();
        let servers = document.get("mcpServers").and_then(|servers| servers.as_object()).cloned();
        servers.into_iter().flatten().collect()
    };
    let mut checked = 0;
    for path in super::case_files("valid").iter().chain(&super::case_files("guide")) {
        for (name, server) in servers(path) {
            assert!(passes(&server), "{}: `{name}` fails the schema", path.display());
            checked += 1;
        }
    }
    assert!(checked > 10, "only {checked} servers checked");
    for case in ["neither-command-nor-url", "both-command-and-url"] {
        let path = Path::new(super::CASES).join("broken").join(format!("{case}.json5"));
        let failing = servers(&path).iter().filter(|(_, server)| !passes(server)).count();
        assert_eq!(failing, 1, "{case}");
    }
    assert!(passes(&serde_json::json!({ "url": "https://example.com/mcp" })));
    assert!(!passes(&serde_json::json!({ "args": ["x"] })));
}

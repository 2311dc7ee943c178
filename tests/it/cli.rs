//! The command line as users and their scripts use it: config lookup, `config
//! validate`, `schema`, `tools`, `call`, exit codes.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::*;

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

#[tokio::test]
async fn every_reference_guide_example_validates_unchanged() {
    let env = TestEnv::new();
    let dir = repo_path("tests/config_cases/guide");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("guide examples") {
        let path = entry.expect("entry").path();
        let output = env.run(&["config", "validate", "--config", path.to_str().unwrap()]).await;
        assert_eq!(output.code, Some(0), "{}: {}", path.display(), output.stderr);
        assert!(output.stdout.contains("is valid"), "{}", output.stdout);
        checked += 1;
    }
    assert!(checked >= 12, "all guide examples checked ({checked})");
}

#[tokio::test]
async fn a_broken_config_is_reported_with_line_and_column() {
    let env = TestEnv::new();
    std::fs::write(
        env.config_path(),
        "{\n  \"mcpServers\": {\n    \"a\": { \"command\": \"x\" }\n    \"b\": {}\n  }\n}\n",
    )
    .expect("write");
    let output = env.run(&["config", "validate"]).await;
    assert_eq!(output.code, Some(1));
    assert!(output.stderr.contains("config.json5:4:"), "{}", output.stderr);

    let output = env.run(&["stdio"]).await;
    assert_eq!(output.code, Some(1), "stdio refuses a broken config");
    assert!(output.stdout.is_empty(), "nothing on stdout: {}", output.stdout);
    assert!(output.stderr.contains("config.json5:4:"), "{}", output.stderr);
}

#[tokio::test]
async fn semantic_problems_are_all_reported_with_their_paths() {
    let env = TestEnv::new();
    env.write_config(&json!({
        "mcpServers": {
            "a": { "comand": "x" },
            "b": { "command": "x", "url": "https://example.com/mcp" },
            "c": { "url": "https://example.com/mcp", "transport": "carrier-pigeon" }
        },
        "bridge": { "conflictResolution": "loudest" }
    }));
    let output = env.run(&["config", "validate"]).await;
    assert_eq!(output.code, Some(1));
    for expected in [
        "mcpServers.a",
        "did you mean `command`",
        "mcpServers.b",
        "mcpServers.c.transport",
        "bridge.conflictResolution",
    ] {
        assert!(output.stderr.contains(expected), "`{expected}` missing from:\n{}", output.stderr);
    }
}

#[tokio::test]
async fn schema_prints_the_committed_schema() {
    let env = TestEnv::new();
    let output = env.run(&["schema"]).await;
    assert_eq!(output.code, Some(0));
    let committed =
        std::fs::read_to_string(repo_path("schema/foxxy-bridge.schema.json")).expect("schema file");
    assert_eq!(output.stdout, committed);
    let schema: Value = serde_json::from_str(&output.stdout).expect("schema is JSON");
    assert!(schema["properties"]["mcpServers"].is_object());
}

#[tokio::test]
async fn config_is_found_in_the_documented_order() {
    let env = TestEnv::new();
    let home_config = env.home().join("config.json5");
    std::fs::create_dir_all(env.home()).expect("home");
    std::fs::write(&home_config, r#"{ "mcpServers": { "home": { "command": "x" } } }"#).expect("write");
    let explicit = env.path("explicit.json5");
    std::fs::write(
        &explicit,
        r#"{ "mcpServers": { "one": { "command": "x" }, "two": { "command": "y" } } }"#,
    )
    .expect("write");

    // No --config and no FOXXY_BRIDGE_CONFIG: the state root's config.json5.
    let output =
        env.command().env_remove("FOXXY_BRIDGE_CONFIG").args(["config", "validate"]).output().await.unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 server(s)"), "{output:?}");
    // FOXXY_BRIDGE_CONFIG wins over the state root.
    let output = env
        .command()
        .env("FOXXY_BRIDGE_CONFIG", &explicit)
        .args(["config", "validate"])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("2 server(s)"), "{output:?}");
    // --config (and the predecessor's --bridge-config) win over the environment.
    for flag in ["--config", "--bridge-config"] {
        let output = env
            .command()
            .env("FOXXY_BRIDGE_CONFIG", &explicit)
            .args(["config", "validate", flag, home_config.to_str().unwrap()])
            .output()
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&output.stdout).contains("1 server(s)"), "{flag}: {output:?}");
    }
    // Nothing anywhere: an error listing where it looked.
    std::fs::remove_file(&home_config).expect("remove");
    let output = env
        .command()
        .env_remove("FOXXY_BRIDGE_CONFIG")
        .env("HOME", env.path("nohome"))
        .env("XDG_CONFIG_HOME", env.path("nohome/.config"))
        .args(["config", "validate"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("config.json5"), "{output:?}");
}

#[tokio::test]
async fn tools_and_call_work_from_a_shell() {
    let env = TestEnv::new();
    env.write_config(&json!({ "mcpServers": { "fix": fixture("fix", &["--tools", "echo,fail,add"]) } }));
    let output = env.run(&["tools", "--json"]).await;
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    let listed: Value = serde_json::from_str(&output.stdout).expect("json");
    let tools = listed["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), 3);
    assert_eq!(tools[0]["upstream"], "fix");
    assert!(tools.iter().any(|tool| tool["name"] == "fix__add" && tool["title"] == "Add numbers"));
    assert_eq!(
        listed["upstreams"][0],
        json!({"name": "fix", "transport": "stdio", "status": "ready", "error": null})
    );

    let table = env.run(&["tools"]).await;
    assert_eq!(table.code, Some(0));
    assert!(table.stdout.contains("fix__echo") && table.stdout.contains("ready"), "{}", table.stdout);

    let echo = env.run(&["call", "fix__echo", r#"{"message": "from the shell"}"#]).await;
    assert_eq!(echo.code, Some(0), "{}", echo.stderr);
    assert_eq!(echo.stdout, "fix: from the shell\n");

    let failed = env.run(&["call", "fix__fail", r#"{"message": "nope"}"#]).await;
    assert_eq!(failed.code, Some(1), "isError exits 1");
    assert_eq!(failed.stdout, "fix: failed: nope\n");

    let structured = env.run(&["call", "fix__add", r#"{"a": 1, "b": 2}"#, "--json"]).await;
    assert_eq!(structured.code, Some(0));
    let result: Value = serde_json::from_str(&structured.stdout).expect("json");
    assert_eq!(result["structuredContent"], json!({"sum": 3}));

    for bad in [r#"[1, 2]"#, "not json"] {
        let output = env.run(&["call", "fix__echo", bad]).await;
        assert_eq!(output.code, Some(2), "bad arguments are a usage error: {bad}");
    }
    let unknown = env.run(&["call", "fix__nope"]).await;
    assert_eq!(unknown.code, Some(1));
    assert!(unknown.stderr.contains("unknown tool `fix__nope`"), "{}", unknown.stderr);
}

#[tokio::test]
async fn usage_errors_exit_2_and_version_works() {
    let env = TestEnv::new();
    assert_eq!(env.run(&["no-such-command"]).await.code, Some(2));
    let version = env.run(&["--version"]).await;
    assert_eq!(version.code, Some(0));
    assert!(version.stdout.starts_with("foxxy-bridge "), "{}", version.stdout);
}

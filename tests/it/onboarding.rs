//! `import` and `install` against fake home directories holding realistic config files of
//! each MCP client: what is imported or skipped, byte-for-byte preservation of the text
//! around the inserted entries, `.bak` files, dry runs, idempotence, and a result the
//! bridge's own loader accepts.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use serde_json::{Value, json};

use crate::support::{CommandOutput, bridge_bin};

/// A temporary `$HOME` (with `XDG_CONFIG_HOME` under it) and a project directory that is
/// the current directory of every command.
struct FakeHome {
    dir: tempfile::TempDir,
}

impl FakeHome {
    fn new() -> FakeHome {
        let home = FakeHome { dir: tempfile::tempdir().expect("temp dir") };
        std::fs::create_dir_all(home.project()).expect("project dir");
        home
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn project(&self) -> PathBuf {
        self.dir.path().join("project")
    }

    /// Writes `text` at `relative` under the home (`~/...`) or, with a leading `./`, under
    /// the project.
    fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("create parent");
        std::fs::write(&path, text).expect("write file");
        path
    }

    fn path(&self, relative: &str) -> PathBuf {
        match relative.strip_prefix("./") {
            Some(rest) => self.project().join(rest),
            None => self.home().join(relative),
        }
    }

    fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path(relative)).expect("read file")
    }

    async fn run(&self, args: &[&str]) -> CommandOutput {
        self.run_with(args, &[]).await
    }

    async fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> CommandOutput {
        let output = tokio::process::Command::new(bridge_bin())
            .args(args)
            .current_dir(self.project())
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.home().join(".config"))
            .env_remove("FOXXY_BRIDGE_HOME")
            .env_remove("FOXXY_BRIDGE_CONFIG")
            .env_remove("FOXXY_BRIDGE_LOG")
            .envs(env.iter().copied())
            .output()
            .await
            .expect("run foxxy-bridge");
        CommandOutput {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

const BRIDGE_CONFIG: &str = ".foxxy-bridge/config.json5";

/// An existing bridge config with comments, unquoted keys and trailing commas. New entries
/// go right after `INSERT_AFTER`.
const EXISTING_CONFIG: &str = r#"// My bridge config: servers I use everywhere.
{
  $schema: "https://example.invalid/foxxy-bridge.schema.json",
  mcpServers: {
    /* the clock */
    time: { command: "uvx", args: ["mcp-server-time", "--local-timezone=Europe/Paris"] }, // keep
  },
  bridge: {
    conflictResolution: "namespace", // default, spelled out
  },
}
"#;
const INSERT_AFTER: &str = "// keep\n";

const CLAUDE_DESKTOP: &str = r#"{
  "mcpServers": {
    "filesystem": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-filesystem", "/home/me/Desktop"]
    },
    "foxxy": { "command": "BRIDGE", "args": ["stdio"] }
  },
  "globalShortcut": "Ctrl+Alt+Space"
}
"#;

const CLAUDE_CODE: &str = r#"{
  "numStartups": 42,
  "theme": "dark",
  "mcpServers": {
    "remote-api": {
      "type": "http",
      "url": "https://api.example.com/mcp",
      "headers": { "Authorization": "Bearer ${API_TOKEN}" }
    }
  },
  "projects": {
    "/somewhere/else": { "mcpServers": { "elsewhere": { "command": "never-imported" } } },
    "PROJECT": {
      "allowedTools": [],
      "mcpServers": { "local-one": { "type": "stdio", "command": "node", "args": ["local.js"], "env": {} } }
    }
  },
  "tipsHistory": { "memory": 3 }
}
"#;

const PROJECT_MCP: &str =
    r#"{ "mcpServers": { "project-srv": { "command": "python3", "args": ["-m", "project_server"] } } }"#;

const CURSOR: &str = r#"{
  "mcpServers": {
    "search": { "command": "search-mcp", "env": { "SEARCH_KEY": "${env:SEARCH_KEY}" } }
  }
}
"#;

const VSCODE: &str = r#"{
  // VS Code asks for the token when it starts the server
  "inputs": [
    { "type": "promptString", "id": "github-token", "description": "GitHub token", "password": true }
  ],
  "servers": {
    "github": {
      "type": "http",
      "url": "https://api.githubcopilot.com/mcp/",
      "headers": { "Authorization": "Bearer ${input:github-token}" }
    },
    "py": { "type": "stdio", "command": "uvx", "args": ["py-mcp"], "dev": { "watch": "src/**/*.py" } }
  }
}
"#;

const WINDSURF: &str = r#"{ "mcpServers": { "docs": { "serverUrl": "https://docs.example.com/sse" } } }"#;

/// A home with a config file of every client.
fn every_client(home: &FakeHome) {
    home.write(BRIDGE_CONFIG, EXISTING_CONFIG);
    home.write(
        ".config/Claude/claude_desktop_config.json",
        &CLAUDE_DESKTOP.replace("BRIDGE", &bridge_bin().display().to_string()),
    );
    home.write(".claude.json", &CLAUDE_CODE.replace("PROJECT", &home.project().display().to_string()));
    home.write("./.mcp.json", PROJECT_MCP);
    home.write(".cursor/mcp.json", CURSOR);
    home.write(".config/Code/User/mcp.json", VSCODE);
    home.write(".codeium/windsurf/mcp_config.json", WINDSURF);
}

fn parse_json5(text: &str) -> Value {
    json5::from_str(text).expect("the result is JSON5")
}

/// The text around the inserted entries is the original, byte for byte.
fn assert_inserted_only(original: &str, edited: &str, after: &str) {
    let split = original.find(after).expect("marker in the original") + after.len();
    let (before, rest) = original.split_at(split);
    assert!(edited.starts_with(before), "text before the insertion changed:\n{edited}");
    assert!(edited.ends_with(rest), "text after the insertion changed:\n{edited}");
    assert!(edited.len() > original.len());
}

#[tokio::test]
async fn import_reads_every_client_and_keeps_the_config_text() {
    let home = FakeHome::new();
    every_client(&home);

    let output = home.run(&["import"]).await;
    assert_eq!(output.code, Some(0), "{output:?}");
    for line in [
        "imported  filesystem (from claude-desktop)",
        "skipped   foxxy (from claude-desktop): runs foxxy-bridge itself",
        "imported  remote-api (from claude-code)",
        "imported  local-one (from claude-code (local scope))",
        "imported  project-srv (from claude-code (project))",
        "imported  search (from cursor)",
        "imported  github (from vscode)",
        "imported  py (from vscode)",
        "imported  docs (from windsurf)",
    ] {
        assert!(
            output.stdout.lines().any(|printed| printed == line),
            "no line `{line}` in:\n{}",
            output.stdout
        );
    }
    assert!(!output.stdout.contains("elsewhere"), "{}", output.stdout);
    assert!(
        output.stderr.contains("`${input:github-token}` in `headers.Authorization`"),
        "{}",
        output.stderr
    );
    assert!(output.stderr.contains("left out `dev`"), "{}", output.stderr);

    let edited = home.read(BRIDGE_CONFIG);
    assert_inserted_only(EXISTING_CONFIG, &edited, INSERT_AFTER);
    assert_eq!(home.read(".foxxy-bridge/config.json5.bak"), EXISTING_CONFIG);
    // The new entries' keys are unquoted like the file's, where JSON5 allows it.
    for key in ["filesystem: {", "command: \"npx\"", "args: [", "\"remote-api\": {", "Authorization: "] {
        assert!(edited.contains(key), "no `{key}` in:\n{edited}");
    }
    assert!(!edited.contains("\"command\""), "{edited}");
    let servers = &parse_json5(&edited)["mcpServers"];
    assert_eq!(
        servers["filesystem"],
        json!({"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/home/me/Desktop"]})
    );
    assert_eq!(servers["github"]["headers"]["Authorization"], "Bearer $${input:github-token}");
    assert_eq!(servers["search"]["env"]["SEARCH_KEY"], "${SEARCH_KEY:}");
    assert_eq!(servers["docs"], json!({"url": "https://docs.example.com/sse"}));
    assert_eq!(servers["py"], json!({"type": "stdio", "command": "uvx", "args": ["py-mcp"]}));
    assert_eq!(servers["remote-api"]["headers"]["Authorization"], "Bearer ${API_TOKEN}");
    assert!(servers.get("foxxy").is_none());

    // The bridge loads what was written.
    let validate = home.run_with(&["config", "validate"], &[("API_TOKEN", "t")]).await;
    assert_eq!(validate.code, Some(0), "{validate:?}");

    // Again: nothing new, nothing written.
    let again = home.run(&["import"]).await;
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(again.stdout.contains("unchanged filesystem (from claude-desktop)"), "{}", again.stdout);
    assert!(!again.stdout.contains("imported"), "{}", again.stdout);
    assert!(again.stdout.contains("is up to date"), "{}", again.stdout);
    assert_eq!(home.read(BRIDGE_CONFIG), edited);
    assert_eq!(home.read(".foxxy-bridge/config.json5.bak"), EXISTING_CONFIG);
}

#[tokio::test]
async fn import_reports_conflicts_and_dry_runs_write_nothing() {
    let home = FakeHome::new();
    let existing = EXISTING_CONFIG.replace("time:", "filesystem:");
    home.write(BRIDGE_CONFIG, &existing);
    home.write(
        ".config/Claude/claude_desktop_config.json",
        &CLAUDE_DESKTOP.replace("BRIDGE", "/opt/foxxy/bin/foxxy-bridge"),
    );

    let output = home.run(&["import", "claude-desktop", "--dry-run"]).await;
    assert_eq!(output.code, Some(0), "{output:?}");
    assert!(output.stdout.contains("conflict  filesystem (from claude-desktop)"), "{}", output.stdout);
    assert_eq!(home.read(BRIDGE_CONFIG), existing);

    let output = home.run(&["import", "claude-desktop", "--overwrite", "--dry-run"]).await;
    assert!(
        output.stdout.contains("imported  filesystem (from claude-desktop) (replaced"),
        "{}",
        output.stdout
    );
    assert!(output.stdout.contains("dry run"), "{}", output.stdout);
    assert_eq!(home.read(BRIDGE_CONFIG), existing);
    assert!(!home.path(".foxxy-bridge/config.json5.bak").exists());

    let output = home.run(&["import", "claude-desktop", "--overwrite"]).await;
    assert_eq!(output.code, Some(0), "{output:?}");
    let edited = home.read(BRIDGE_CONFIG);
    // Only the value changed: the comments around it and the rest of the file stay.
    let before = existing.split("filesystem:").next().expect("prefix");
    let after = existing.split(" // keep").nth(1).expect("suffix");
    assert!(edited.starts_with(&format!("{before}filesystem: ")), "{edited}");
    assert!(edited.ends_with(&format!(" // keep{after}")), "{edited}");
    assert_eq!(parse_json5(&edited)["mcpServers"]["filesystem"]["command"], "npx");
    assert_eq!(home.read(".foxxy-bridge/config.json5.bak"), existing);
}

#[tokio::test]
async fn import_creates_a_private_config_and_reads_a_named_file() {
    let home = FakeHome::new();
    let vscode = home.write("./.vscode/mcp.json", VSCODE);
    let output = home.run(&["import", vscode.to_str().expect("utf-8 path")]).await;
    assert_eq!(output.code, Some(0), "{output:?}");
    assert!(output.stdout.contains("imported  github"), "{}", output.stdout);
    assert!(output.stdout.contains("created"), "{}", output.stdout);
    let config = home.path(BRIDGE_CONFIG);
    let mode = std::fs::metadata(&config).expect("config created").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!home.path(".foxxy-bridge/config.json5.bak").exists());
    assert_eq!(parse_json5(&home.read(BRIDGE_CONFIG))["mcpServers"]["py"]["command"], "uvx");
    let validate = home.run(&["config", "validate"]).await;
    assert_eq!(validate.code, Some(0), "{validate:?}");

    // `FOXXY_BRIDGE_HOME` moves the state root, and with it the config created.
    let state = home.path("state");
    let moved =
        home.run_with(&["import", "vscode"], &[("FOXXY_BRIDGE_HOME", state.to_str().expect("utf-8"))]).await;
    assert_eq!(moved.code, Some(0), "{moved:?}");
    assert!(state.join("config.json5").is_file(), "{moved:?}");

    let usage = home.run(&["import", "not-a-client"]).await;
    assert_eq!(usage.code, Some(2), "{usage:?}");
    assert!(usage.stderr.contains("claude-desktop"), "{}", usage.stderr);
}

/// The entry `install` writes for this test binary.
fn bridge_entry(extra_args: &[&str]) -> Value {
    let mut args = vec!["stdio".to_owned()];
    args.extend(extra_args.iter().map(|arg| (*arg).to_owned()));
    json!({"command": bridge_bin().display().to_string(), "args": args})
}

#[tokio::test]
async fn install_into_claude_code_keeps_other_keys_and_is_idempotent() {
    let home = FakeHome::new();
    home.write(
        BRIDGE_CONFIG,
        r#"{ mcpServers: { "remote-api": { type: "http", url: "https://api.example.com/mcp", headers: { Authorization: "Bearer ${API_TOKEN}" } } } }"#,
    );
    let original = CLAUDE_CODE.replace("PROJECT", &home.project().display().to_string());
    home.write(".claude.json", &original);

    let dry = home.run(&["install", "claude-code", "--dry-run"]).await;
    assert_eq!(dry.code, Some(0), "{dry:?}");
    assert!(dry.stdout.contains("added     `foxxy-bridge`"), "{}", dry.stdout);
    assert_eq!(home.read(".claude.json"), original);

    let output = home.run(&["install", "claude-code"]).await;
    assert_eq!(output.code, Some(0), "{output:?}");
    let edited = home.read(".claude.json");
    assert_inserted_only(&original, &edited, "\"Bearer ${API_TOKEN}\" }\n    }");
    assert_eq!(home.read(".claude.json.bak"), original);
    let parsed: Value = serde_json::from_str(&edited).expect("still JSON");
    // The config is at the default place: no `--config`.
    assert_eq!(parsed["mcpServers"]["foxxy-bridge"], bridge_entry(&[]));
    assert_eq!(parsed["numStartups"], 42);

    let again = home.run(&["install", "claude-code"]).await;
    assert!(again.stdout.contains("unchanged `foxxy-bridge`"), "{}", again.stdout);
    assert_eq!(home.read(".claude.json"), edited);
    assert_eq!(home.read(".claude.json.bak"), original);

    // The client's entry that the bridge now serves goes; the rest stays.
    let removed = home.run(&["install", "claude-code", "--remove-imported"]).await;
    assert_eq!(removed.code, Some(0), "{removed:?}");
    assert!(removed.stdout.contains("removed   `remote-api`"), "{}", removed.stdout);
    let parsed: Value = serde_json::from_str(&home.read(".claude.json")).expect("still JSON");
    assert_eq!(parsed["mcpServers"], json!({"foxxy-bridge": bridge_entry(&[])}));
    assert_eq!(parsed["projects"]["/somewhere/else"]["mcpServers"]["elsewhere"]["command"], "never-imported");
    assert_eq!(parsed["tipsHistory"], json!({"memory": 3}));
}

#[tokio::test]
async fn install_into_vscode_names_a_config_outside_the_default_places() {
    let home = FakeHome::new();
    let config = home.write("mcp/bridge.json5", "{ mcpServers: {} }\n");
    let original = VSCODE;
    home.write(".config/Code/User/mcp.json", original);

    let config_arg = config.to_str().expect("utf-8 path");
    let output = home.run(&["--config", config_arg, "install", "vscode", "--name", "foxxy"]).await;
    assert_eq!(output.code, Some(0), "{output:?}");
    let edited = home.read(".config/Code/User/mcp.json");
    assert_inserted_only(original, &edited, "\"src/**/*.py\" } }");
    let parsed = parse_json5(&edited);
    let mut expected = bridge_entry(&["--config", config_arg]);
    expected["type"] = json!("stdio");
    assert_eq!(parsed["servers"]["foxxy"], expected);
    assert!(edited.contains("\"foxxy\": {\n      \"type\": \"stdio\","), "{edited}");
    assert_eq!(parsed["inputs"][0]["id"], "github-token");

    // A name taken by another server is not overwritten.
    let taken = home.run(&["--config", config_arg, "install", "vscode", "--name", "github"]).await;
    assert_eq!(taken.code, Some(1), "{taken:?}");
    assert!(taken.stderr.contains("choose another name"), "{}", taken.stderr);
    assert_eq!(home.read(".config/Code/User/mcp.json"), edited);

    // Claude Desktop, with no file yet: created.
    let output = home.run(&["--config", config_arg, "install", "claude-desktop"]).await;
    assert_eq!(output.code, Some(0), "{output:?}");
    let created: Value =
        serde_json::from_str(&home.read(".config/Claude/claude_desktop_config.json")).expect("JSON");
    assert_eq!(created, json!({"mcpServers": {"foxxy-bridge": bridge_entry(&["--config", config_arg])}}));
    assert!(
        !Path::new(&format!("{}.bak", home.path(".config/Claude/claude_desktop_config.json").display()))
            .exists()
    );

    // Cursor and Windsurf: their user files.
    for (client, file) in [("cursor", ".cursor/mcp.json"), ("windsurf", ".codeium/windsurf/mcp_config.json")]
    {
        let output = home.run(&["--config", config_arg, "install", client]).await;
        assert_eq!(output.code, Some(0), "{output:?}");
        let written: Value = serde_json::from_str(&home.read(file)).expect("JSON");
        assert_eq!(
            written["mcpServers"]["foxxy-bridge"],
            bridge_entry(&["--config", config_arg]),
            "{client}"
        );
    }
}

#[tokio::test]
async fn import_through_a_symlinked_config_replaces_the_file_it_points_to() {
    let home = FakeHome::new();
    let real = home.write("dotfiles/foxxy.json5", EXISTING_CONFIG);
    std::fs::create_dir_all(home.path(".foxxy-bridge")).expect("dir");
    std::os::unix::fs::symlink(&real, home.path(BRIDGE_CONFIG)).expect("symlink");
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    home.write(".cursor/mcp.json", CURSOR);
    // Windsurf has a server of the same name with other content: the first one imported wins.
    home.write(
        ".codeium/windsurf/mcp_config.json",
        r#"{ "mcpServers": { "search": { "serverUrl": "https://s.example.com/mcp" } } }"#,
    );

    let output = home.run(&["import", "cursor", "windsurf"]).await;
    assert_eq!(output.code, Some(0), "{output:?}");
    assert!(output.stdout.contains("imported  search (from cursor)"), "{}", output.stdout);
    assert!(output.stdout.contains("conflict  search (from windsurf)"), "{}", output.stdout);
    let link = std::fs::symlink_metadata(home.path(BRIDGE_CONFIG)).expect("link");
    assert!(link.file_type().is_symlink(), "the link was replaced by a file");
    assert_inserted_only(EXISTING_CONFIG, &std::fs::read_to_string(&real).expect("read"), INSERT_AFTER);
    assert_eq!(std::fs::metadata(&real).expect("real").permissions().mode() & 0o777, 0o640);
    assert_eq!(home.read("dotfiles/foxxy.json5.bak"), EXISTING_CONFIG);
    let leftovers: Vec<_> = std::fs::read_dir(home.path("dotfiles"))
        .expect("dir")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

//! The log file: the level asked for by `--debug`, `--log-level`, `FOXXY_BRIDGE_LOG` or
//! `bridge.logLevel` is the level written; secrets never reach it, even at debug; the
//! files are private; and its lines say what happened in words.

use std::{os::unix::fs::PermissionsExt, time::Duration};

use serde_json::{Value, json};

use crate::{remote::HttpFixture, support::*};

/// Whether the log has a line at `level` (the level is written padded, as ` DEBUG `).
fn has_level(log: &str, level: &str) -> bool {
    log.lines().any(|line| line.contains(&format!(" {level} ")))
}

async fn tools_with(env: &TestEnv, configure: impl FnOnce(&mut tokio::process::Command)) -> CommandOutput {
    let mut command = env.command();
    command.args(["tools", "--json"]);
    configure(&mut command);
    let output = command.output().await.expect("run foxxy-bridge");
    CommandOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test]
async fn every_way_of_asking_for_debug_logs_at_debug() {
    type Configure = fn(&mut tokio::process::Command);
    let ways: [(&str, Option<&str>, Configure); 5] = [
        ("--debug", None, |command| {
            command.arg("--debug");
        }),
        ("--log-level debug", None, |command| {
            command.args(["--log-level", "debug"]);
        }),
        ("--log-level trace", None, |command| {
            command.args(["--log-level", "trace"]);
        }),
        ("FOXXY_BRIDGE_LOG", None, |command| {
            command.env("FOXXY_BRIDGE_LOG", "debug");
        }),
        ("bridge.logLevel", Some("debug"), |_| {}),
    ];
    for (way, config_level, configure) in ways {
        let env = TestEnv::new();
        let mut config = json!({ "mcpServers": { "one": fixture("one", &[]) } });
        if let Some(level) = config_level {
            config["bridge"] = json!({ "logLevel": level });
        }
        env.write_config(&config);
        let output = tools_with(&env, configure).await;
        assert_eq!(output.code, Some(0), "{way}: {output:?}");
        wait_until(Duration::from_secs(10), || has_level(&env.log(), "DEBUG")).await;
        assert!(has_level(&env.log(), "INFO"), "{way}");
    }
    // The default stays at info.
    let env = TestEnv::new();
    env.write_config(&json!({ "mcpServers": { "one": fixture("one", &[]) } }));
    assert_eq!(tools_with(&env, |_| {}).await.code, Some(0));
    env.wait_log(" INFO ").await;
    assert!(!has_level(&env.log(), "DEBUG"), "info by default");
}

/// A sign-in at debug level, then a call at trace level: the log has debug lines, and
/// not the authorization code, the tokens or the client secret.
#[tokio::test]
async fn a_sign_in_at_debug_level_logs_no_secret() {
    let server = HttpFixture::start(0, &["--name", "sec", "--oauth"]).await;
    let env = TestEnv::new();
    let client_secret = "client-secret-4d1f9a7c3b";
    env.write_config(&json!({
        "mcpServers": { "sec": { "url": server.url(), "oauth": { "client_secret": client_secret } } },
        "bridge": { "oauth_port": 0 },
    }));
    let browser_log = env.path("browser.log");
    let browser = format!("'{}' --browse-log '{}' --browse", fixture_bin().display(), browser_log.display());
    let output = env
        .command()
        .env("FOXXY_BRIDGE_BROWSER", browser)
        .args(["--debug", "oauth", "login", "sec"])
        .output();
    let output = output.await.expect("run foxxy-bridge");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let call = env
        .command()
        .args(["--log-level", "trace", "call", "sec__echo", r#"{"message": "hi"}"#])
        .output()
        .await;
    let call = call.expect("run foxxy-bridge");
    assert_eq!(String::from_utf8_lossy(&call.stdout), "sec: hi\n");

    // The code, from the callback address the browser was sent to.
    let browser_log = std::fs::read_to_string(&browser_log).expect("browser log");
    let callback = browser_log.lines().find_map(|line| line.strip_prefix("redirect ")).expect("a redirect");
    let code = url::Url::parse(callback)
        .expect("callback URL")
        .query_pairs()
        .find_map(|(key, value)| (key == "code").then(|| value.into_owned()))
        .expect("a code");
    let auth = env.home().join("auth");
    let entry = std::fs::read_dir(&auth)
        .expect("auth dir")
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|extension| extension == "json"))
        .expect("a token file");
    let entry: Value = serde_json::from_str(&std::fs::read_to_string(entry).expect("read")).expect("json");
    let access = entry["access_token"].as_str().expect("access token").to_owned();
    let refresh = entry["refresh_token"].as_str().expect("refresh token").to_owned();

    let log = env.wait_log(" DEBUG ").await;
    assert!(log.contains("rmcp"), "rmcp logs at debug too");
    for (what, secret) in [
        ("code", code.as_str()),
        ("access token", &access),
        ("refresh token", &refresh),
        ("client secret", client_secret),
    ] {
        assert!(!log.contains(secret), "the {what} is in the log");
    }
}

#[tokio::test]
async fn log_files_are_private() {
    let env = TestEnv::new();
    env.write_config(&json!({ "mcpServers": { "one": fixture("one", &[]) } }));
    // A directory and a file left readable by an earlier version are fixed.
    let logs = env.home().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let old = logs.join("foxxy-bridge.2020-01-01.log");
    std::fs::write(&old, "old\n").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();

    assert_eq!(env.run(&["tools"]).await.code, Some(0));
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&logs), 0o700, "the logs directory");
    let mut files = 0;
    for entry in std::fs::read_dir(&logs).unwrap().flatten() {
        if entry.file_type().unwrap().is_file() {
            assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
            files += 1;
        }
    }
    assert_eq!(files, 2, "today's file and the old one");

    // A fresh state root gets the same modes.
    let env = TestEnv::new();
    env.write_config(&json!({ "mcpServers": { "one": fixture("one", &[]) } }));
    assert_eq!(env.run(&["tools"]).await.code, Some(0));
    let logs = env.home().join("logs");
    assert_eq!(mode(&logs), 0o700);
    assert_eq!(mode(&logs.join("foxxy-bridge.log")), 0o600, "today's file, through the link");
}

/// What a new user saw in the log of an ordinary run: "new in the config" for upstreams
/// at the first start, a failed re-listing at every exit, and a Rust `Debug` dump for a
/// refused upstream request.
#[tokio::test]
async fn log_lines_say_what_happened() {
    let env = TestEnv::new();
    env.write_config(&json!({
        "mcpServers": {
            "one": fixture("one", &[]),
            "two": fixture("two", &[]),
            // It announces a list change as it starts, which the bridge is re-listing
            // when `tools` exits.
            "everything": crate::peers::everything_stdio(),
        },
        "bridge": { "startupTimeout": 60 },
    }));
    for _ in 0..2 {
        let output = env.run(&["tools"]).await;
        assert_eq!(output.code, Some(0), "{output:?}");
    }

    // A client without roots: the upstream's `roots/list` (which the fixture sends
    // without checking the client's capabilities) is refused by the bridge.
    let mut session = RawSession::start(&env).await;
    session.initialize().await;
    session
        .send(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": { "name": "one__roots", "arguments": {} }
        }))
        .await;
    let reply = session.response(&json!(1)).await;
    assert_eq!(reply["result"]["isError"], true, "{reply}");
    // Waited for to its end: the log file may hold the start of the line before the rest.
    let log = env.wait_log("did not declare the `roots` capability").await;
    assert!(log.contains("answered a request of the upstream with an error"), "{log}");
    session.close_stdin();

    let log = env.log();
    assert!(!log.contains("new in the config"), "{log}");
    assert!(!log.contains("re-listing after list_changed failed"), "{log}");
    assert!(!log.contains("ErrorData"), "{log}");
}

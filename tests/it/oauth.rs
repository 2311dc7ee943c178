//! OAuth end to end through the real binary, against the fixture's mock authorization
//! server and protected MCP server, with the fixture's scripted browser
//! (`FOXXY_BRIDGE_BROWSER`). Several bridge processes at once share one sign-in and
//! one refresh.

use std::{os::unix::fs::PermissionsExt, path::PathBuf, time::Duration};

use serde_json::{Value, json};
use tokio::process::Command;

use crate::{remote::HttpFixture, support::*};

/// A protected fixture plus a test env whose config points at it.
pub(crate) struct World {
    pub(crate) env: TestEnv,
    pub(crate) server: HttpFixture,
}

impl World {
    pub(crate) async fn start(fixture_args: &[&str], oauth: Option<Value>, bridge: Value) -> World {
        let mut args = vec!["--name", "sec", "--oauth"];
        args.extend_from_slice(fixture_args);
        let server = HttpFixture::start(0, &args).await;
        let env = TestEnv::new();
        let mut upstream = json!({ "url": server.url() });
        if let Some(oauth) = oauth {
            upstream["oauth"] = oauth;
        }
        let mut bridge_settings = json!({ "oauth_port": 0 });
        if let (Some(settings), Some(extra)) = (bridge_settings.as_object_mut(), bridge.as_object()) {
            settings.extend(extra.clone());
        }
        env.write_config(&json!({ "mcpServers": { "sec": upstream }, "bridge": bridge_settings }));
        World { env, server }
    }

    pub(crate) fn browser_log(&self) -> PathBuf {
        self.env.path("browser.log")
    }

    pub(crate) fn browser(&self, delay_ms: u64) -> String {
        format!(
            "'{}' --browse-log '{}' --browse-delay-ms {delay_ms} --browse",
            fixture_bin().display(),
            self.browser_log().display()
        )
    }

    /// A `foxxy-bridge` command with the scripted browser.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = self.env.command();
        command.env("FOXXY_BRIDGE_BROWSER", self.browser(0)).args(args);
        command
    }

    pub(crate) async fn run(&self, args: &[&str]) -> CommandOutput {
        output_of(self.command(args)).await
    }

    pub(crate) fn opens(&self) -> usize {
        std::fs::read_to_string(self.browser_log())
            .unwrap_or_default()
            .lines()
            .filter(|line| line.starts_with("open "))
            .count()
    }

    pub(crate) async fn stats(&self) -> Value {
        http(&self.server.addr, "GET", "/stats").await
    }

    pub(crate) async fn admin(&self, path: &str) {
        http(&self.server.addr, "POST", path).await;
    }

    pub(crate) fn token_file(&self) -> PathBuf {
        let dir = self.env.home().join("auth");
        std::fs::read_dir(&dir)
            .expect("auth dir")
            .flatten()
            .map(|entry| entry.path())
            .find(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "json"))
            .expect("a token file")
    }

    pub(crate) fn token_entry(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.token_file()).expect("read")).expect("json")
    }

    /// Make the stored access token look expired to the bridge (and to the server).
    pub(crate) async fn expire_tokens(&self) {
        self.admin("/admin/expire-access-tokens").await;
        let path = self.token_file();
        let mut entry = self.token_entry();
        entry["expires_at"] = json!(1);
        entry["created_at"] = json!(1);
        std::fs::write(&path, serde_json::to_vec_pretty(&entry).unwrap()).expect("write");
    }
}

pub(crate) async fn output_of(mut command: Command) -> CommandOutput {
    let output = command.output().await.expect("run foxxy-bridge");
    CommandOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A tiny HTTP/1.1 client for the fixture's /stats and /admin endpoints.
pub(crate) async fn http(authority: &str, method: &str, path: &str) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(authority).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()))
}

#[tokio::test]
async fn login_status_logout_from_a_shell() {
    let world = World::start(&[], Some(json!({ "client_name": "foxxy test" })), json!({})).await;
    let before = world.run(&["oauth", "status", "--json"]).await;
    assert_eq!(before.code, Some(0), "{before:?}");
    let rows: Value = serde_json::from_str(&before.stdout).expect("json");
    assert_eq!(rows[0]["status"], "no_tokens");
    assert_eq!(rows[0]["expires_at"], Value::Null);
    let table = world.run(&["oauth", "status"]).await;
    assert!(table.stdout.contains("✗ No tokens"), "{}", table.stdout);

    let login = world.run(&["oauth", "login", "sec"]).await;
    assert_eq!(login.code, Some(0), "{login:?}");
    assert!(login.stdout.contains("signed in to `sec`"), "{}", login.stdout);
    assert_eq!(world.opens(), 1);

    let after = world.run(&["oauth", "status", "--json"]).await;
    let rows: Value = serde_json::from_str(&after.stdout).expect("json");
    assert_eq!(rows[0]["server"], "sec");
    assert_eq!(rows[0]["status"], "valid");
    assert_eq!(rows[0]["url"], world.server.url());
    assert_eq!(rows[0]["issuer"], format!("http://{}", world.server.addr));
    assert!(rows[0]["expires_at"].as_str().is_some_and(|at| at.ends_with('Z')), "RFC 3339: {rows}");
    let table = world.run(&["oauth", "status", "sec"]).await;
    assert!(table.stdout.contains("✓ Valid"), "{}", table.stdout);

    // The files are private, and complete.
    let auth = world.env.home().join("auth");
    assert_eq!(std::fs::metadata(&auth).unwrap().permissions().mode() & 0o777, 0o700);
    for entry in std::fs::read_dir(&auth).unwrap().flatten() {
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", entry.path().display());
        assert!(!entry.file_name().to_string_lossy().starts_with(".tmp"), "no temp files left");
    }
    let entry = world.token_entry();
    for field in
        ["access_token", "refresh_token", "token_type", "expires_in", "scope", "created_at", "expires_at"]
    {
        assert!(entry.get(field).is_some(), "token file has the predecessor's `{field}`: {entry}");
    }
    assert_eq!(entry["client"]["source"], "dynamic");

    // Already signed in: nothing to do without --force.
    let again = world.run(&["oauth", "login", "sec"]).await;
    assert_eq!(again.code, Some(0));
    assert!(again.stdout.contains("already signed in"), "{}", again.stdout);
    assert_eq!(world.opens(), 1);

    // The bridge uses the stored tokens.
    let call = world.run(&["call", "sec__echo", r#"{"message": "with a token"}"#]).await;
    assert_eq!(call.stdout, "sec: with a token\n", "{call:?}");
    assert_eq!(world.opens(), 1, "no new sign-in");

    // Tokens never reach the log or the command output.
    let token = entry["access_token"].as_str().unwrap().to_owned();
    let refresh = entry["refresh_token"].as_str().unwrap().to_owned();
    let log = world.env.log();
    for secret in [&token, &refresh] {
        assert!(!log.contains(secret.as_str()), "a token is in the log");
        assert!(!call.stdout.contains(secret.as_str()) && !call.stderr.contains(secret.as_str()));
    }

    let logout = world.run(&["oauth", "logout", "sec"]).await;
    assert_eq!(logout.code, Some(0));
    assert!(logout.stdout.contains("signed out of `sec`"), "{}", logout.stdout);
    let rows: Value = serde_json::from_str(&world.run(&["oauth", "status", "--json"]).await.stdout).unwrap();
    assert_eq!(rows[0]["status"], "no_tokens");
    let logout = world.run(&["oauth", "logout", "sec"]).await;
    assert_eq!(logout.code, Some(0));
    assert!(logout.stdout.contains("no tokens stored for `sec`"), "{}", logout.stdout);
    assert_eq!(world.run(&["oauth", "logout", "--all"]).await.code, Some(0));
}

#[tokio::test]
async fn login_refuses_unknown_and_local_servers() {
    let world = World::start(&[], None, json!({})).await;
    let unknown = world.run(&["oauth", "login", "nope"]).await;
    assert_eq!(unknown.code, Some(1));
    assert!(unknown.stderr.contains("no server `nope`"), "{}", unknown.stderr);

    let env = TestEnv::new();
    env.write_config(&json!({ "mcpServers": { "local": fixture("local", &[]) } }));
    let local = env.run(&["oauth", "login", "local"]).await;
    assert_eq!(local.code, Some(1));
    assert!(local.stderr.contains("local (stdio) server"), "{}", local.stderr);
}

#[tokio::test]
async fn ten_bridges_with_an_expired_token_make_exactly_one_refresh() {
    let world = World::start(&[], Some(json!({})), json!({})).await;
    assert_eq!(world.run(&["oauth", "login", "sec"]).await.code, Some(0));
    world.expire_tokens().await;
    let calls: Vec<_> = (0..10)
        .map(|i| {
            let command = world.command(&["call", "sec__echo", &format!(r#"{{"message": "bridge {i}"}}"#)]);
            tokio::spawn(output_of(command))
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let output = call.await.expect("join");
        assert_eq!(output.stdout, format!("sec: bridge {i}\n"), "bridge {i}: {output:?}");
    }
    let stats = world.stats().await;
    assert_eq!(stats["token_refresh"], 1, "exactly one refresh for ten bridges: {stats}");
    assert_eq!(stats["refresh_reuse"], 0, "no rotated refresh token was burnt: {stats}");
    assert_eq!(world.opens(), 1, "no new sign-in");
}

#[tokio::test]
async fn five_bridges_without_tokens_open_one_browser_and_all_serve() {
    let world = World::start(&[], Some(json!({})), json!({})).await;
    let calls: Vec<_> = (0..5)
        .map(|i| {
            let command = world.command(&["call", "sec__echo", &format!(r#"{{"message": "bridge {i}"}}"#)]);
            tokio::spawn(output_of(command))
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let output = call.await.expect("join");
        assert_eq!(output.stdout, format!("sec: bridge {i}\n"), "bridge {i}: {output:?}");
    }
    assert_eq!(world.opens(), 1, "exactly one browser tab for five bridges");
    assert_eq!(world.stats().await["token_code"], 1);
}

#[tokio::test]
async fn a_bridge_killed_during_sign_in_is_taken_over() {
    let world = World::start(&[], Some(json!({})), json!({})).await;
    // The first "browser" dawdles, so its bridge is still signing in when we kill it.
    let mut first = world.env.command();
    first.env("FOXXY_BRIDGE_BROWSER", world.browser(5_000)).args([
        "call",
        "sec__echo",
        r#"{"message": "first"}"#,
    ]);
    let mut first = first.spawn().expect("spawn");
    wait_until(Duration::from_secs(10), || world.opens() == 1).await;
    let second = tokio::spawn(output_of(world.command(&["call", "sec__echo", r#"{"message": "second"}"#])));
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.start_kill().expect("kill");
    let _ = first.wait().await;
    let output = second.await.expect("join");
    assert_eq!(output.stdout, "sec: second\n", "{output:?}");
    assert_eq!(world.opens(), 2, "the survivor ran its own sign-in");
}

#[tokio::test]
async fn a_401_without_oauth_config_starts_oauth() {
    let world = World::start(&[], None, json!({})).await;
    let call = world.run(&["call", "sec__echo", r#"{"message": "auto"}"#]).await;
    assert_eq!(call.stdout, "sec: auto\n", "{call:?}");
    assert_eq!(world.opens(), 1);
    assert!(world.env.log().contains("the server asks for OAuth authorization"));
}

#[tokio::test]
async fn oauth_disabled_turns_401_detection_off() {
    let world = World::start(&[], Some(json!({ "enabled": false })), json!({})).await;
    let call = world.run(&["call", "sec__echo", r#"{"message": "no"}"#]).await;
    assert_eq!(call.code, Some(1));
    assert_eq!(world.opens(), 0, "no sign-in when OAuth is off");
    let tools = world.run(&["tools", "--json"]).await;
    assert!(tools.stdout.contains("HTTP 401"), "{}", tools.stdout);
}

#[tokio::test]
async fn a_403_insufficient_scope_steps_up_and_retries() {
    let world = World::start(&["--scope-for", "add=admin"], Some(json!({})), json!({})).await;
    let call = world.run(&["call", "sec__add", r#"{"a": 1, "b": 2}"#]).await;
    assert_eq!(call.code, Some(0), "{call:?}");
    assert_eq!(call.stdout, "sec: sum 3\n");
    assert_eq!(world.opens(), 2, "signed in, then stepped up");
    let stats = world.stats().await;
    let scope = stats["last_authorize_query"]["scope"].as_str().unwrap_or_default().to_owned();
    for wanted in ["admin", "read", "write"] {
        assert!(scope.split(' ').any(|scope| scope == wanted), "step-up asks for the union: {scope}");
    }
}

#[tokio::test]
async fn a_rejected_refresh_token_signs_out_with_a_clear_message() {
    let world = World::start(&[], Some(json!({})), json!({ "signInTimeout": 2 })).await;
    assert_eq!(world.run(&["oauth", "login", "sec"]).await.code, Some(0));
    world.admin("/admin/revoke-all").await;
    world.expire_tokens().await;
    let mut tools = world.env.command();
    tools.env("FOXXY_BRIDGE_BROWSER", "none").args(["tools", "--json"]);
    let tools = output_of(tools).await;
    assert_eq!(tools.code, Some(1));
    let report: Value = serde_json::from_str(&tools.stdout).expect("json");
    assert_eq!(report["upstreams"][0]["status"], "needs sign-in", "{report}");
    let log = world.env.log();
    assert!(log.contains("the refresh token was rejected"), "{log}");
    assert!(
        log.contains("foxxy-bridge oauth login sec") || report.to_string().contains("oauth login"),
        "{log}"
    );
    let rows: Value = serde_json::from_str(&world.run(&["oauth", "status", "--json"]).await.stdout).unwrap();
    assert_eq!(rows[0]["status"], "no_tokens", "signed out");
}

#[tokio::test]
async fn a_429_from_the_token_endpoint_keeps_the_tokens() {
    let world = World::start(&[], Some(json!({})), json!({})).await;
    assert_eq!(world.run(&["oauth", "login", "sec"]).await.code, Some(0));
    world.admin("/admin/token-failure?code=429").await;
    world.expire_tokens().await;
    let call = world.run(&["call", "sec__echo", r#"{"message": "busy"}"#]).await;
    assert_eq!(call.code, Some(1), "{call:?}");
    let rows: Value = serde_json::from_str(&world.run(&["oauth", "status", "--json"]).await.stdout).unwrap();
    assert_eq!(rows[0]["status"], "refreshable", "tokens kept: {rows}");
    world.admin("/admin/token-failure?code=0").await;
    let call = world.run(&["call", "sec__echo", r#"{"message": "later"}"#]).await;
    assert_eq!(call.stdout, "sec: later\n", "{call:?}");
    assert_eq!(world.opens(), 1, "no new sign-in was needed");
}

#[tokio::test]
async fn a_running_bridge_picks_up_tokens_from_a_shell_login() {
    let world = World::start(&[], Some(json!({})), json!({ "signInTimeout": 1 })).await;
    let mut stdio = world.env.command();
    stdio.env("FOXXY_BRIDGE_BROWSER", "none");
    let client = TestClient::default();
    let session = Session::start_command(stdio, client).await;
    let tools = session.service.list_all_tools().await.expect("tools/list");
    assert!(
        tools.iter().all(|tool| !tool.name.starts_with("sec__") || tool.name == "sec__sign_in"),
        "not signed in yet: only the sign-in placeholder"
    );
    world.env.wait_log("upstream is waiting for a sign-in").await;
    let baseline = session.client.seen().tools_changed;

    assert_eq!(world.run(&["oauth", "login", "sec"]).await.code, Some(0));
    session.wait_seen(Duration::from_secs(10), |seen| seen.tools_changed > baseline).await;
    let tools = session.service.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|tool| tool.name == "sec__echo"), "tools announced after the shell login");
    session.close().await;
}

#[tokio::test]
async fn a_failed_discovery_lists_every_url_tried() {
    let broken = HttpFixture::start(0, &["--http-misbehave", "401"]).await;
    let env = TestEnv::new();
    env.write_config(&json!({
        "mcpServers": { "nowhere": { "url": broken.url(), "retryAttempts": 1 } },
        "bridge": { "oauth_port": 0 }
    }));
    let mut tools = env.command();
    tools.env("FOXXY_BRIDGE_BROWSER", "none").args(["tools", "--json"]);
    let output = output_of(tools).await;
    assert_eq!(output.code, Some(1));
    let report: Value = serde_json::from_str(&output.stdout).expect("json");
    let error = report["upstreams"][0]["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("OAuth discovery for `nowhere` failed"), "{error}");
    let base = format!("http://{}", broken.addr);
    for path in ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"] {
        assert!(error.contains(&format!("GET {base}{path} (HTTP 401)")), "`{path}` missing:\n{error}");
    }
    assert_eq!(report["upstreams"][0]["status"], "failed", "a broken OAuth setup fails at once: {report}");
    assert!(env.log().contains("URLs tried"), "the log has the list too");
}

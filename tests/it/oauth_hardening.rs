//! OAuth and token-cache defects found by review, each through the real binary against
//! the fixture authorization server: bad files in the cache, `additional_params`, the
//! scopes asked for, extreme token lifetimes, credentials in URLs, the callback page,
//! discovery errors, client authentication, and the legacy SSE transport.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{oauth::World, support::*};

fn status_rows(output: &CommandOutput) -> Value {
    serde_json::from_str(&output.stdout).unwrap_or_else(|_| panic!("status json: {output:?}"))
}

#[tokio::test]
async fn a_token_lifetime_of_u64_max_is_valid_and_never_refreshed() {
    let world = World::start(&["--token-ttl-s", &u64::MAX.to_string()], Some(json!({})), json!({})).await;
    let login = world.run(&["oauth", "login", "sec"]).await;
    assert_eq!(login.code, Some(0), "{login:?}");
    let rows = status_rows(&world.run(&["oauth", "status", "--json"]).await);
    assert_eq!(rows[0]["status"], "valid", "{rows}");
    assert_eq!(rows[0]["expires_at"], "9999-12-31T23:59:59Z", "{rows}");
    let call = world.run(&["call", "sec__echo", r#"{"message": "forever"}"#]).await;
    assert_eq!(call.stdout, "sec: forever\n", "{call:?}");
    assert_eq!(world.stats().await["token_refresh"], 0, "a fresh token is not refreshed");
}

#[tokio::test]
async fn an_unreadable_file_in_the_cache_affects_only_itself() {
    let world = World::start(&[], Some(json!({})), json!({ "signInTimeout": 1 })).await;
    // A directory with an entry's name: opening it works, reading it fails (EISDIR).
    let auth = world.env.home().join("auth");
    std::fs::create_dir_all(auth.join("0000000000000000.json")).expect("bad entry");

    // A bridge waiting for a sign-in still notices the tokens a shell login writes.
    let mut stdio = world.env.command();
    stdio.env("FOXXY_BRIDGE_BROWSER", "none");
    let session = Session::start_command(stdio, TestClient::default()).await;
    world.env.wait_log("upstream is waiting for a sign-in").await;
    let baseline = session.client.seen().tools_changed;
    let login = world.run(&["oauth", "login", "sec"]).await;
    assert_eq!(login.code, Some(0), "{login:?}");
    session.wait_seen(Duration::from_secs(10), |seen| seen.tools_changed > baseline).await;
    let tools = session.service.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|tool| tool.name == "sec__echo"), "tools announced after the shell login");
    session.close().await;

    let rows = status_rows(&world.run(&["oauth", "status", "--json"]).await);
    assert_eq!(rows[0]["status"], "valid", "the good entry keeps its state: {rows}");
    let call = world.run(&["call", "sec__echo", r#"{"message": "still"}"#]).await;
    assert_eq!(call.stdout, "sec: still\n", "{call:?}");
    assert_eq!(world.opens(), 1, "no new sign-in because of the bad file");
    let log = world.env.log();
    assert!(
        log.contains("0000000000000000.json") && log.contains("Is a directory"),
        "the bad file is reported with the OS error:\n{log}"
    );
}

#[tokio::test]
async fn additional_params_cannot_replace_flow_parameters() {
    let env = TestEnv::new();
    env.write_config(&json!({ "mcpServers": { "remote": {
        "url": "https://mcp.example.com/mcp",
        "oauth": { "additional_params": { "state": "x", "audience": "a", "resource": "https://api.example.com/" } }
    } } }));
    let output = env.run(&["config", "validate"]).await;
    assert_eq!(output.code, Some(1), "{output:?}");
    assert!(
        output.stderr.contains("additional_params") && output.stderr.contains("`state`"),
        "{}",
        output.stderr
    );
    assert!(
        !output.stderr.contains("`audience`") && !output.stderr.contains("`resource`"),
        "{}",
        output.stderr
    );
}

#[tokio::test]
async fn a_configured_resource_is_sent_on_authorize_token_and_refresh() {
    let resource = "https://api.example.com/";
    let oauth = json!({ "additional_params": { "resource": resource } });
    let world = World::start(&["--expect-resource", resource], Some(oauth), json!({})).await;
    let login = world.run(&["oauth", "login", "sec"]).await;
    assert_eq!(login.code, Some(0), "{login:?}");
    let stats = world.stats().await;
    assert_eq!(stats["last_authorize_query"]["resource"], resource, "{stats}");
    assert_eq!(stats["last_token_form"]["resource"], resource, "{stats}");
    world.expire_tokens().await;
    let call = world.run(&["call", "sec__echo", r#"{"message": "refreshed"}"#]).await;
    assert_eq!(call.stdout, "sec: refreshed\n", "{call:?}");
    let stats = world.stats().await;
    assert_eq!(stats["token_refresh"], 1, "{stats}");
    assert_eq!(stats["last_token_form"]["resource"], resource, "{stats}");
}

#[tokio::test]
async fn the_scopes_asked_for_are_the_challenges_plus_the_configured_ones() {
    let oauth = json!({ "scopes": ["extra"] });
    let world = World::start(&["--challenge-scope", "read"], Some(oauth), json!({})).await;
    let call = world.run(&["call", "sec__echo", r#"{"message": "scoped"}"#]).await;
    assert_eq!(call.stdout, "sec: scoped\n", "{call:?}");
    let stats = world.stats().await;
    assert_eq!(stats["last_authorize_query"]["scope"], "read extra", "{stats}");
}

#[tokio::test]
async fn a_wrong_iss_fails_the_sign_in_and_the_page_says_so() {
    let world = World::start(&["--bad-iss"], Some(json!({})), json!({})).await;
    let login = world.run(&["oauth", "login", "sec"]).await;
    assert_eq!(login.code, Some(1), "{login:?}");
    assert!(login.stderr.contains("`iss`"), "{}", login.stderr);
    let browser = std::fs::read_to_string(world.browser_log()).unwrap_or_default();
    assert!(browser.contains("page Sign-in failed"), "the page tells the truth:\n{browser}");
    assert!(!browser.contains("page Signed in"), "{browser}");
    assert_eq!(world.stats().await["token_code"], 0, "no code exchange after a wrong iss");
}

#[tokio::test]
async fn a_callback_port_held_by_another_program_fails_at_once() {
    let other = crate::remote::HttpFixture::start(0, &["--name", "other"]).await;
    let port: u16 = other.addr.rsplit(':').next().and_then(|port| port.parse().ok()).expect("port");
    let world = World::start(&[], Some(json!({})), json!({ "oauth_port": port, "signInTimeout": 60 })).await;
    let started = std::time::Instant::now();
    let login = world.run(&["oauth", "login", "sec"]).await;
    assert_eq!(login.code, Some(1), "{login:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(
        login.stderr.contains(&format!("port `{port}`")) && login.stderr.contains("bridge.oauth_port"),
        "{}",
        login.stderr
    );
    assert_eq!(world.opens(), 0);
}

#[tokio::test]
async fn the_code_exchange_and_refreshes_use_the_registered_client_authentication() {
    let world = World::start(&["--client-auth", "client_secret_post"], Some(json!({})), json!({})).await;
    let login = world.run(&["oauth", "login", "sec"]).await;
    assert_eq!(login.code, Some(0), "{login:?}");
    assert_eq!(world.stats().await["last_token_client_auth"], "post");
    world.expire_tokens().await;
    let call = world.run(&["call", "sec__echo", r#"{"message": "post"}"#]).await;
    assert_eq!(call.stdout, "sec: post\n", "{call:?}");
    let stats = world.stats().await;
    assert_eq!(stats["token_refresh"], 1, "{stats}");
    assert_eq!(stats["last_token_client_auth"], "post", "{stats}");
}

#[tokio::test]
async fn an_expired_client_secret_leads_to_a_new_registration() {
    let world = World::start(&["--client-auth", "client_secret_basic"], Some(json!({})), json!({})).await;
    assert_eq!(world.run(&["oauth", "login", "sec"]).await.code, Some(0));
    world.admin("/admin/expire-client-secrets").await;
    world.expire_tokens().await;
    let path = world.token_file();
    let mut entry = world.token_entry();
    entry["client"]["client_secret_expires_at"] = json!(1);
    std::fs::write(&path, serde_json::to_vec_pretty(&entry).unwrap()).expect("write");
    let call = world.run(&["call", "sec__echo", r#"{"message": "again"}"#]).await;
    assert_eq!(call.stdout, "sec: again\n", "{call:?}");
    let stats = world.stats().await;
    assert_eq!(stats["register"], 2, "registered again: {stats}");
    assert_eq!(stats["token_refresh"], 0, "no refresh with an expired secret: {stats}");
    assert_eq!(world.opens(), 2);
}

#[tokio::test]
async fn a_client_the_server_refuses_on_refresh_is_registered_again() {
    let world = World::start(&["--client-auth", "client_secret_post"], Some(json!({})), json!({})).await;
    assert_eq!(world.run(&["oauth", "login", "sec"]).await.code, Some(0));
    world.admin("/admin/expire-client-secrets").await;
    world.expire_tokens().await;
    let call = world.run(&["call", "sec__echo", r#"{"message": "new client"}"#]).await;
    assert_eq!(call.stdout, "sec: new client\n", "{call:?}");
    let stats = world.stats().await;
    assert_eq!(stats["register"], 2, "registered again after invalid_client: {stats}");
    assert_eq!(world.opens(), 2);
}

#[tokio::test]
async fn credentials_in_a_server_url_are_never_shown() {
    let world = World::start(&[], Some(json!({})), json!({ "signInTimeout": 1 })).await;
    let url = format!("http://alice:hunter2@{}/mcp?key=TOPSECRET", world.server.addr);
    world.env.write_config(&json!({
        "mcpServers": { "sec": { "url": url, "oauth": {}, "retryAttempts": 1 } },
        "bridge": { "oauth_port": 0, "signInTimeout": 1 }
    }));
    let status = world.run(&["oauth", "status", "--json"]).await;
    let rows = status_rows(&status);
    assert_eq!(rows[0]["url"], format!("http://alice:***@{}/mcp?key=***", world.server.addr), "{rows}");
    let table = world.run(&["oauth", "status"]).await;
    let mut tools = world.env.command();
    tools.env("FOXXY_BRIDGE_BROWSER", "none").args(["tools", "--json"]);
    let tools = crate::oauth::output_of(tools).await;
    let log = world.env.log();
    for (what, text) in [
        ("status", &status.stdout),
        ("table", &table.stdout),
        ("tools stdout", &tools.stdout),
        ("tools stderr", &tools.stderr),
        ("log", &log),
    ] {
        assert!(
            !text.contains("hunter2") && !text.contains("TOPSECRET"),
            "{what} shows a credential:\n{text}"
        );
    }
}

#[tokio::test]
async fn a_legacy_sse_upstream_refreshes_its_token_on_a_401_mid_session() {
    let world = World::start(&[], Some(json!({})), json!({})).await;
    let url = format!("http://{}/legacy/sse", world.server.addr);
    world.env.write_config(&json!({
        "mcpServers": { "sec": { "url": url, "transport": "sse", "oauth": {} } },
        "bridge": { "oauth_port": 0 }
    }));
    let login = world.run(&["oauth", "login", "sec"]).await;
    assert_eq!(login.code, Some(0), "{login:?}");
    let session = Session::start_command(world.command(&[]), TestClient::default()).await;
    let tools = session.service.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|tool| tool.name == "sec__echo"), "{tools:?}");
    let first = peer_call(&session, "sec__echo", json!({ "message": "one" })).await;
    assert_eq!(text_of(&first), "sec: one");
    // The server stops accepting the access token the bridge still thinks is valid.
    world.admin("/admin/expire-access-tokens").await;
    let second = peer_call(&session, "sec__echo", json!({ "message": "two" })).await;
    assert_eq!(text_of(&second), "sec: two", "{second:?}");
    assert_eq!(world.stats().await["token_refresh"], 1);
    assert_eq!(world.opens(), 1, "no new sign-in");
    session.close().await;
}

#[tokio::test]
async fn discovery_failures_say_why() {
    // Metadata that describes another resource: reported as such, without the issuer hint.
    let world =
        World::start(&["--prm-resource", "https://elsewhere.example/mcp"], Some(json!({})), json!({})).await;
    let login = world.run(&["oauth", "login", "sec"]).await;
    assert_eq!(login.code, Some(1), "{login:?}");
    assert!(
        login.stderr.contains("https://elsewhere.example/mcp"),
        "the mismatch is named:\n{}",
        login.stderr
    );
    assert!(!login.stderr.contains("set `oauth.issuer`"), "{}", login.stderr);
    assert!(world.env.log().contains("https://elsewhere.example/mcp"), "and logged");

    // An authorization server whose metadata names another issuer.
    let world =
        World::start(&["--metadata-issuer", "https://wrong.example"], Some(json!({})), json!({})).await;
    let login = world.run(&["oauth", "login", "sec"]).await;
    assert_eq!(login.code, Some(1), "{login:?}");
    assert!(login.stderr.contains("https://wrong.example"), "{}", login.stderr);
    assert!(!login.stderr.contains("set `oauth.issuer`"), "{}", login.stderr);

    // With `oauth.issuer` configured: every candidate URL and what was wrong with it.
    let issuer = "https://wrong.example";
    let oauth = json!({ "issuer": issuer });
    let world = World::start(
        &["--metadata-issuer", issuer, "--prm-resource", "https://x.example/"],
        Some(oauth),
        json!({}),
    )
    .await;
    let login = world.run(&["oauth", "login", "sec"]).await;
    assert_eq!(login.code, Some(1), "{login:?}");
    assert!(
        login.stderr.contains("wrong.example/.well-known/oauth-authorization-server"),
        "{}",
        login.stderr
    );
}

#[tokio::test]
async fn a_fifo_in_the_cache_blocks_nothing() {
    let world = World::start(&[], Some(json!({})), json!({ "signInTimeout": 1 })).await;
    let auth = world.env.home().join("auth");
    std::fs::create_dir_all(&auth).expect("auth dir");
    let fifo = auth.join("ffffffffffffffff.json");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    world.env.write_config(&json!({
        "mcpServers": { "local": fixture("local", &[]), "sec": { "url": world.server.url(), "oauth": {} } },
        "bridge": { "oauth_port": 0, "signInTimeout": 1 }
    }));
    // Opening the FIFO would wait for a writer forever; the bridge must neither open it
    // nor stall other upstreams while it reads the cache.
    let mut stdio = world.env.command();
    stdio.env("FOXXY_BRIDGE_BROWSER", "none");
    let session = Session::start_command(stdio, TestClient::default()).await;
    let tools = tokio::time::timeout(Duration::from_secs(20), session.service.list_all_tools())
        .await
        .expect("tools/list answered")
        .expect("tools/list");
    assert!(tools.iter().any(|tool| tool.name == "local__echo"), "{tools:?}");
    let answer = peer_call(&session, "local__echo", json!({ "message": "hi" })).await;
    assert_eq!(text_of(&answer), "local: hi");
    session.close().await;
    let status = tokio::time::timeout(Duration::from_secs(20), world.run(&["oauth", "status", "--json"]))
        .await
        .expect("oauth status answered");
    assert_eq!(status_rows(&status)[0]["status"], "no_tokens", "{status:?}");
    assert!(world.env.log().contains("not a regular file"), "the FIFO is reported");
}

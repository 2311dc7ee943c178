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

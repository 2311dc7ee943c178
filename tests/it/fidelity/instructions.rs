//! The upstreams' `instructions` remembered across sessions: `initialize` is answered
//! before any upstream is up, with what each said in an earlier session, and never with
//! the text of an entry that changed or is not served.

use std::{path::PathBuf, time::Duration};

use serde_json::{Value, json};

use super::{LineClient, recording};
use crate::support::{TestEnv, fixture, fixture_bin, wait_until};

/// The fixture behind `sh`, so that a test changes how it starts without changing its
/// config entry: its `--name`, and so its instructions (`Test fixture server NAME.`),
/// comes from the file `name`, and it does not start while the file `gate` exists.
fn gated_fixture(env: &TestEnv) -> Value {
    let script = format!(
        "while [ -e '{gate}' ]; do sleep 0.05; done; exec '{bin}' --name \"$(cat '{name}')\" --events-file '{events}'",
        gate = env.path("gate").display(),
        bin = fixture_bin().display(),
        name = env.path("name").display(),
        events = env.path("events").display(),
    );
    json!({"command": "sh", "args": ["-c", script]})
}

/// The remembered instructions files of `env` (not temp files), each file's text.
fn remembered(env: &TestEnv) -> Vec<String> {
    let dir = env.home().join("cache").join("instructions");
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "json"))
        .collect();
    paths.sort();
    paths.iter().map(|path| std::fs::read_to_string(path).unwrap_or_default()).collect()
}

/// Wait until `condition` holds of the remembered files; they are written in the
/// background once an upstream is up.
async fn wait_remembered(env: &TestEnv, what: &str, condition: impl Fn(&[String]) -> bool) {
    wait_until(Duration::from_secs(20), || condition(&remembered(env))).await;
    assert!(condition(&remembered(env)), "{what}: {:?}", remembered(env));
}

/// Close the bridge's stdin and wait for it to stop its upstreams and exit.
async fn close(mut client: LineClient) {
    client.raw.close_stdin();
    let exited = tokio::time::timeout(Duration::from_secs(10), client.raw.child.wait()).await;
    assert!(exited.is_ok(), "the bridge exits when stdin closes");
}

fn fx_section(name: &str) -> String {
    format!("## fx (tools `fx__*`)\n\nTest fixture server {name}.")
}

#[tokio::test]
async fn instructions_are_remembered_and_served_before_the_upstream_is_up() {
    let env = TestEnv::new();
    std::fs::write(env.path("name"), "first").expect("write name");
    env.write_config(&json!({"mcpServers": {"fx": gated_fixture(&env)}}));

    // The first session has nothing remembered: `initialize` comes without instructions.
    let mut first = LineClient::bridge(&env);
    let result = first.initialize(json!({})).await;
    assert_eq!(result.get("instructions"), None, "{result}");
    first.tools().await;
    wait_remembered(&env, "the first session remembers them", |texts| {
        texts.len() == 1 && texts[0].contains("Test fixture server first.")
    })
    .await;
    close(first).await;

    // The next session has them at once, while the upstream cannot even start.
    std::fs::write(env.path("gate"), "").expect("write gate");
    let mut second = LineClient::bridge(&env);
    let result = second.initialize(json!({})).await;
    assert_eq!(
        result["instructions"].as_str(),
        Some(fx_section("first").as_str()),
        "{result} {:?} {}",
        remembered(&env),
        env.log()
    );
    let events = std::fs::read_to_string(env.path("events")).unwrap_or_default();
    assert_eq!(
        events.matches("initialized").count(),
        1,
        "only the first session's upstream was up: {events}"
    );
    std::fs::remove_file(env.path("gate")).expect("remove gate");
    close(second).await;

    // The upstream now says something else: this session still starts with the old
    // text, and the next one gets the new text.
    std::fs::write(env.path("name"), "second").expect("write name");
    let mut third = LineClient::bridge(&env);
    let result = third.initialize(json!({})).await;
    assert_eq!(result["instructions"].as_str(), Some(fx_section("first").as_str()), "{result}");
    third.tools().await;
    wait_remembered(&env, "the new text replaces the old one", |texts| {
        texts.len() == 1 && texts[0].contains("Test fixture server second.")
    })
    .await;
    close(third).await;
    std::fs::write(env.path("gate"), "").expect("write gate");
    let mut fourth = LineClient::bridge(&env);
    let result = fourth.initialize(json!({})).await;
    assert_eq!(result["instructions"].as_str(), Some(fx_section("second").as_str()), "{result}");
    std::fs::remove_file(env.path("gate")).expect("remove gate");
    close(fourth).await;
}

#[tokio::test]
async fn a_changed_or_unselected_entry_shows_no_remembered_instructions() {
    let env = TestEnv::new();
    let entry = fixture("fx", &[]);
    env.write_config(&json!({"mcpServers": {"fx": entry}}));
    let mut first = LineClient::bridge(&env);
    first.initialize(json!({})).await;
    first.tools().await;
    wait_remembered(&env, "remembered", |texts| texts.len() == 1).await;
    close(first).await;

    // The same entry with a secret in its environment is another server.
    let mut changed = entry.clone();
    changed["env"] = json!({"API_TOKEN": "s3cret-token-value"});
    env.write_config(&json!({"mcpServers": {"fx": changed}}));
    let mut second = LineClient::bridge(&env);
    let result = second.initialize(json!({})).await;
    assert_eq!(result.get("instructions"), None, "a changed entry: {result}");
    second.tools().await;
    wait_remembered(&env, "the changed entry is remembered apart", |texts| texts.len() == 2).await;
    assert!(
        remembered(&env).iter().all(|text| !text.contains("s3cret")),
        "environment values are never stored: {:?}",
        remembered(&env)
    );
    close(second).await;

    // An upstream left out with `--servers` is not represented.
    let servers = json!({"fx": entry, "other": fixture("other", &["--start-delay-ms", "60000"])});
    env.write_config(&json!({"mcpServers": servers}));
    let mut command = env.command();
    command.args(["stdio", "--servers", "other"]);
    let mut narrowed = LineClient::spawn(command);
    let result = narrowed.initialize(json!({})).await;
    assert_eq!(result.get("instructions"), None, "`fx` is not served: {result}");
    close(narrowed).await;
    let mut whole = LineClient::bridge(&env);
    let result = whole.initialize(json!({})).await;
    assert_eq!(result["instructions"].as_str(), Some(fx_section("fx").as_str()), "{result}");
    close(whole).await;
}

#[tokio::test]
async fn remembered_instructions_are_cut_like_fresh_ones() {
    let env = TestEnv::new();
    let log = env.path("received.jsonl");
    let long = "x".repeat(20_000);
    env.write_config(&json!({"mcpServers": {"rec": recording(&log, &json!({"instructions": long}))}}));
    let mut first = LineClient::bridge(&env);
    first.initialize(json!({})).await;
    first.tools().await;
    wait_remembered(&env, "the whole text is remembered", |texts| {
        texts.len() == 1 && texts[0].contains(&long)
    })
    .await;
    close(first).await;

    let mut second = LineClient::bridge(&env);
    let result = second.initialize(json!({})).await;
    let expected = format!("## rec (tools `rec__*`)\n\n{}\n(cut at 8192 bytes)", &long[..8192]);
    assert_eq!(result["instructions"].as_str(), Some(expected.as_str()));
    close(second).await;

    // A damaged file is ignored, with a warning in the log.
    let dir = env.home().join("cache").join("instructions");
    for entry in std::fs::read_dir(&dir).expect("list").flatten() {
        std::fs::write(entry.path(), "{\"instructions\": ").expect("damage");
    }
    let mut third = LineClient::bridge(&env);
    let result = third.initialize(json!({})).await;
    assert_eq!(result.get("instructions"), None, "{result}");
    env.wait_log("ignoring the remembered instructions").await;
    close(third).await;
}

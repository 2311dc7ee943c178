//! `oauth login` from a shell without a browser: the URL on stderr, paste-back through
//! stdin (`--no-browser`), the RFC 8628 device grant (`--device`), and the automatic
//! choice when there is no display. Against the fixture authorization server.

use std::{process::Stdio, time::Duration};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStderr},
};

use crate::oauth::World;

/// `oauth login sec ARGS` without a display or a browser, stdin and stderr piped.
fn login(world: &World, args: &[&str]) -> (Child, BufReader<ChildStderr>) {
    let mut command = world.env.command();
    command
        .env("FOXXY_BRIDGE_BROWSER", "none")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .args(["oauth", "login", "sec"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn oauth login");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    (child, stderr)
}

/// Read stderr lines until one contains `needle`; returns every line read.
async fn read_until(stderr: &mut BufReader<ChildStderr>, needle: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).await.unwrap_or(0) == 0 {
                return false;
            }
            let done = line.contains(needle);
            lines.push(line.trim_end().to_owned());
            if done {
                return true;
            }
        }
    })
    .await;
    assert!(matches!(found, Ok(true)), "no `{needle}` on stderr:\n{}", lines.join("\n"));
    lines
}

/// The first `http…` word of `lines` that contains `part`.
fn url_in(lines: &[String], part: &str) -> String {
    lines
        .iter()
        .flat_map(|line| line.split_whitespace())
        .find(|word| word.starts_with("http") && word.contains(part))
        .unwrap_or_else(|| panic!("no URL with `{part}` in {lines:?}"))
        .trim_end_matches([',', ')'])
        .to_owned()
}

/// GET `url` (plain http on loopback); the status line's code and the `Location` header.
async fn get(url: &str) -> (u16, Option<String>) {
    let parsed = url::Url::parse(url).expect("url");
    let authority = format!("{}:{}", parsed.host_str().unwrap_or_default(), parsed.port().unwrap_or(80));
    let path = &url[url.find(parsed.path()).unwrap_or(0)..];
    let mut stream = tokio::net::TcpStream::connect(&authority).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let location = response
        .lines()
        .find_map(|line| line.strip_prefix("location: ").or_else(|| line.strip_prefix("Location: ")))
        .map(|value| value.trim().to_owned());
    (status, location)
}

/// Follow the authorization URL printed on stderr to where the browser would end.
async fn redirect_of(lines: &[String]) -> String {
    let authorize = url_in(lines, "/authorize?");
    let (status, location) = get(&authorize).await;
    assert_eq!(status, 302, "{authorize}");
    location.expect("Location")
}

async fn finish(mut child: Child, mut stderr: BufReader<ChildStderr>) -> (Option<i32>, String) {
    let mut rest = String::new();
    let status = tokio::time::timeout(Duration::from_secs(30), async {
        let _ = stderr.read_to_string(&mut rest).await;
        child.wait().await
    })
    .await
    .expect("oauth login ended")
    .expect("wait");
    (status.code(), rest)
}

#[tokio::test]
async fn no_browser_takes_the_pasted_address_or_code_and_checks_the_state() {
    let world = World::start(&[], Some(json!({})), json!({})).await;

    // The whole address the browser ended on.
    let (mut child, mut stderr) = login(&world, &["--no-browser"]);
    let lines = read_until(&mut stderr, "paste").await;
    let redirect = redirect_of(&lines).await;
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(format!("{redirect}\n").as_bytes()).await.expect("paste");
    let (code, rest) = finish(child, stderr).await;
    assert_eq!(code, Some(0), "{lines:?}\n{rest}");
    assert_eq!(world.opens(), 0, "no browser");
    assert_eq!(status(&world).await, "valid");

    // Just the code.
    let (mut child, mut stderr) = login(&world, &["--no-browser", "--force"]);
    let lines = read_until(&mut stderr, "paste").await;
    let redirect = redirect_of(&lines).await;
    let code_only = url::Url::parse(&redirect)
        .expect("redirect")
        .query_pairs()
        .find(|(key, _)| key == "code")
        .map(|(_, value)| value.into_owned())
        .expect("code");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(format!("{code_only}\n").as_bytes()).await.expect("paste");
    let (code, rest) = finish(child, stderr).await;
    assert_eq!(code, Some(0), "{rest}");
    assert_eq!(world.stats().await["token_code"], 2);

    // An address whose state belongs to another sign-in.
    let (mut child, mut stderr) = login(&world, &["--no-browser", "--force"]);
    let lines = read_until(&mut stderr, "paste").await;
    let redirect = redirect_of(&lines).await;
    let mut forged = url::Url::parse(&redirect).expect("redirect");
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(key, value)| {
            let value = if key == "state" { "forged".to_owned() } else { value.into_owned() };
            (key.into_owned(), value)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(format!("{forged}\n").as_bytes()).await.expect("paste");
    let (code, rest) = finish(child, stderr).await;
    assert_eq!(code, Some(1), "{rest}");
    assert!(rest.contains("`state`"), "{rest}");
    assert_eq!(world.stats().await["token_code"], 2, "no exchange for a wrong state");
}

async fn status(world: &World) -> Value {
    let rows: Value =
        serde_json::from_str(&world.run(&["oauth", "status", "--json"]).await.stdout).expect("json");
    rows[0]["status"].clone()
}

#[tokio::test]
async fn the_browser_sign_in_prints_the_url_on_stderr() {
    let world = World::start(&[], Some(json!({})), json!({})).await;
    let login = world.run(&["oauth", "login", "sec"]).await;
    assert_eq!(login.code, Some(0), "{login:?}");
    assert!(login.stderr.contains("If no browser opened, visit:"), "{}", login.stderr);
    assert!(login.stderr.contains("/authorize?"), "{}", login.stderr);
}

/// Wait until the fixture has seen `count` device polls; their times.
async fn polls(world: &World, count: usize) -> Vec<f64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let polls: Vec<f64> =
            serde_json::from_value(world.stats().await["device_polls"].clone()).unwrap_or_default();
        if polls.len() >= count {
            return polls;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {} polls", polls.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn device_sign_in_polls_at_the_interval_and_completes_on_approval() {
    let world = World::start(&["--device-flow"], Some(json!({})), json!({})).await;
    let (child, mut stderr) = login(&world, &["--device"]);
    let lines = read_until(&mut stderr, "which carries the code").await;
    assert!(lines.iter().any(|line| line.contains("enter the code USER-")), "{lines:?}");
    let times = polls(&world, 3).await;
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= 0.9, "polls respect the 1 s interval: {times:?}");
    }
    let (status_code, _) = get(&url_in(&lines, "user_code=")).await;
    assert_eq!(status_code, 200);
    let (code, rest) = finish(child, stderr).await;
    assert_eq!(code, Some(0), "{rest}");
    assert_eq!(status(&world).await, "valid");
    let call = world.run(&["call", "sec__echo", r#"{"message": "device"}"#]).await;
    assert_eq!(call.stdout, "sec: device\n", "{call:?}");
}

#[tokio::test]
async fn device_sign_in_slows_down_for_good_and_ends_on_denial() {
    let world =
        World::start(&["--device-flow", "--device-slow-down", "--device-deny"], Some(json!({})), json!({}))
            .await;
    let (child, mut stderr) = login(&world, &["--device"]);
    let lines = read_until(&mut stderr, "which carries the code").await;
    let times = polls(&world, 3).await;
    assert!(times[1] - times[0] >= 5.9, "slow_down adds 5 s: {times:?}");
    assert!(times[2] - times[1] >= 5.9, "for good: {times:?}");
    let (status_code, _) = get(&url_in(&lines, "user_code=")).await;
    assert_eq!(status_code, 200);
    let (code, rest) = finish(child, stderr).await;
    assert_eq!(code, Some(1), "{rest}");
    assert!(rest.contains("denied"), "{rest}");
    assert_eq!(status(&world).await, "no_tokens");
}

#[tokio::test]
async fn without_a_display_login_picks_the_device_grant_when_offered_else_paste_back() {
    let world = World::start(&["--device-flow"], Some(json!({})), json!({})).await;
    let (mut child, mut stderr) = login(&world, &[]);
    read_until(&mut stderr, "enter the code").await;
    let _ = child.start_kill();
    let _ = child.wait().await;

    let world = World::start(&[], Some(json!({})), json!({})).await;
    let (mut child, mut stderr) = login(&world, &[]);
    read_until(&mut stderr, "paste").await;
    let _ = child.start_kill();
    let _ = child.wait().await;
}

#[tokio::test]
async fn no_browser_also_takes_the_loopback_callback_and_exits_without_input() {
    let world = World::start(&[], Some(json!({})), json!({})).await;
    let (child, mut stderr) = login(&world, &["--no-browser"]);
    let lines = read_until(&mut stderr, "paste").await;
    // The browser runs on this machine after all: its redirect reaches the listener.
    let redirect = redirect_of(&lines).await;
    let (status_code, _) = get(&redirect).await;
    assert_eq!(status_code, 200);
    // stdin stays open and empty: the command must not wait for it.
    let (code, rest) = finish(child, stderr).await;
    assert_eq!(code, Some(0), "{rest}");
    assert_eq!(status(&world).await, "valid");
}

//! The hub's life: killed, it fails the calls in flight once each, the bridges start a
//! new one, and no process of its outlives it; idle, it exits with its upstreams' process
//! groups and removes its socket, unless a bridge attaches first or waits for a slow
//! start; and it serves only peers of its own uid, behind a 0700 directory and a 0600
//! socket.

use std::{collections::HashMap, os::unix::fs::PermissionsExt, time::Duration};

use serde_json::{Value, json};

use super::*;

/// The text of a failed answer (a JSON-RPC error or an `isError` result), or `None` for a
/// success.
fn failure_text(answer: &Value) -> Option<String> {
    if let Some(error) = answer.get("error") {
        return Some(error["message"].as_str().unwrap_or_default().to_owned());
    }
    let result = &answer["result"];
    (result["isError"] == true).then(|| result["content"][0]["text"].as_str().unwrap_or_default().to_owned())
}

/// Call `fx__pid` on a raw session.
async fn raw_pid(raw: &mut RawSession, id: u64) -> u32 {
    raw.send(&tool_call(id, "fx__pid", json!({}))).await;
    let messages = until_response(raw, &json!(id), Duration::from_secs(30)).await;
    let answer = messages.last().expect("the response");
    let text = answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{answer}"));
    text.parse().unwrap_or_else(|_| panic!("fx__pid answered {answer}"))
}

const IN_FLIGHT: [u64; 3] = [10, 11, 12];

#[tokio::test]
async fn a_killed_hub_fails_in_flight_calls_once_and_is_replaced() {
    let env = HubEnv::new();
    let events = env.path("fx.events");
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &["--events-file", text_path(&events)]) }), 2);
    let mut bridges = vec![RawSession::start(&env).await, RawSession::start(&env).await];
    for raw in &mut bridges {
        raw.initialize().await;
        raw_pid(raw, 1).await;
    }
    let old_upstream = starts(&env, "fx");
    assert_eq!(old_upstream.len(), 1, "{old_upstream:?}");
    let old_hub = env.one_hub().await;
    let status = env.status().await;
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(status[0]["pid"], json!(old_hub), "hub status names the hub: {status:?}");

    for raw in &mut bridges {
        for id in IN_FLIGHT {
            raw.send(&tool_call(id, "fx__sleep", json!({"ms": 60_000}))).await;
        }
    }
    let sleeping = || std::fs::read_to_string(&events).unwrap_or_default().matches("sleeping").count();
    wait_until(Duration::from_secs(10), || sleeping() == 6).await;
    kill(old_hub, libc::SIGKILL);
    let killed = std::time::Instant::now();

    let bound = Duration::from_secs(5);
    for (bridge, raw) in bridges.iter_mut().enumerate() {
        let mut answers = HashMap::new();
        while answers.len() < IN_FLIGHT.len() {
            let left = bound.saturating_sub(killed.elapsed());
            let message = recv_within(raw, left).await.unwrap_or_else(|| {
                panic!("bridge {bridge}: in-flight calls not all answered within {bound:?}: {answers:?}\nlog:\n{}", env.log())
            });
            if let Some(id) =
                message.get("id").and_then(Value::as_u64).filter(|_| message.get("method").is_none())
            {
                assert!(IN_FLIGHT.contains(&id), "bridge {bridge}: unexpected {message}");
                assert!(
                    answers.insert(id, message.clone()).is_none(),
                    "bridge {bridge}: two answers to {id}"
                );
            }
        }
        for answer in answers.values() {
            let text =
                failure_text(answer).unwrap_or_else(|| panic!("bridge {bridge}: not an error: {answer}"));
            assert!(text.contains("`fx`"), "bridge {bridge}: the error names the upstream: {answer}");
        }
    }
    let answered_within = killed.elapsed();

    // Later calls succeed through a new hub (after a short retry while it starts), and
    // no second answer to an in-flight call ever arrives.
    for (bridge, raw) in bridges.iter_mut().enumerate() {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        for attempt in 100.. {
            raw.send(&tool_call(attempt, "fx__echo", json!({"message": "again"}))).await;
            let messages = until_response(raw, &json!(attempt), Duration::from_secs(20)).await;
            for message in &messages {
                let id = message.get("id").and_then(Value::as_u64);
                assert!(
                    id.is_none_or(|id| !IN_FLIGHT.contains(&id)),
                    "bridge {bridge}: second answer {message}"
                );
            }
            let answer = messages.last().expect("the response");
            if failure_text(answer).is_none() {
                assert_eq!(answer["result"]["content"][0]["text"], "fx: again", "{answer}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "bridge {bridge}: no successful call within 20 s of the kill: {answer}\nlog:\n{}",
                env.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let new_hub = env.one_hub().await;
    assert_ne!(new_hub, old_hub, "a new hub serves");
    let new_upstream = raw_pid(&mut bridges[0], 2).await;
    assert_eq!(raw_pid(&mut bridges[1], 2).await, new_upstream, "both bridges use the new hub's upstream");
    assert_eq!(starts(&env, "fx"), vec![old_upstream[0], new_upstream], "one new upstream process");
    wait_until(Duration::from_secs(5), || !alive(old_upstream[0])).await;
    eprintln!("in-flight calls answered {answered_within:?} after the hub was killed");
    drop(bridges);
    env.finish().await;
}

/// Wait until the upstream (pid `upstream`) has its `sleep 300` grandchild, and return
/// every process below the hub.
async fn hub_family(hub: u32, upstream: u32) -> Vec<u32> {
    let is_sleep = |pid: &u32| command_line(*pid).starts_with("sleep");
    wait_until(Duration::from_secs(5), || descendants(upstream).iter().any(is_sleep)).await;
    descendants(hub)
}

#[tokio::test]
async fn a_killed_hub_leaves_no_process_behind() {
    let env = HubEnv::new();
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &["--spawn-grandchild"]) }), 2);
    let session = Session::start(&env).await;
    let upstream = pid_of(&session, "fx").await;
    let hub = env.one_hub().await;
    let family = hub_family(hub, upstream).await;
    kill(hub, libc::SIGKILL);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let survivors = || family.iter().copied().filter(|&pid| alive(pid)).collect::<Vec<_>>();
    while !survivors().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left: Vec<String> =
        survivors().into_iter().map(|pid| format!("{pid} {}", command_line(pid))).collect();
    assert!(left.is_empty(), "outlived the hub: {left:?}");
    session.close().await;
    env.finish().await;
}

#[tokio::test]
async fn the_hub_exits_when_idle() {
    let env = HubEnv::new();
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &["--spawn-grandchild"]) }), 1);
    let session = Session::start(&env).await;
    let upstream = pid_of(&session, "fx").await;
    let hub = env.one_hub().await;
    let family = hub_family(hub, upstream).await;
    let sockets = env.sockets();
    assert_eq!(sockets.len(), 1, "{sockets:?}");

    // Attached, the hub stays past its idle timeout.
    let attached = std::time::Instant::now();
    while attached.elapsed() < Duration::from_millis(2500) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(alive(hub) && alive(upstream), "the hub went away while a bridge was attached");
    }
    assert_eq!(pid_of(&session, "fx").await, upstream);

    session.close().await;
    let detached = std::time::Instant::now();
    wait_until(Duration::from_secs(10), || {
        !alive(hub) && family.iter().all(|&pid| !alive(pid)) && !sockets[0].exists()
    })
    .await;
    eprintln!("hub gone {:?} after its last bridge detached (idleTimeout 1 s)", detached.elapsed());
    assert!(env.hub_pids().is_empty());
    assert_eq!(starts(&env, "fx").len(), 1);
    env.finish().await;
}

/// Connects to a socket, sends a status request, and prints what happened: `connected
/// uid U`, then `eof`, `error …` or `timeout`, then `data …` with what it read.
const CONNECTOR: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as error:
    print("connect failed", error)
    sys.exit(0)
print("connected uid", os.getuid(), flush=True)
data = b""
try:
    s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"foxxy-bridge/hubStatus"}\n')
    while b"\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            print("eof")
            break
        data += chunk
except socket.timeout:
    print("timeout")
except OSError as error:
    print("error", error)
print("data", data.decode(errors="replace"))
"#;

fn python3() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" }
}

/// Run the connector against `socket`, as uid 65534 with CAP_DAC_OVERRIDE (so only
/// the hub's own check can refuse it) if `as_nobody`.
async fn connect(socket: &Path, as_nobody: bool) -> String {
    let mut command = if as_nobody {
        let mut command = tokio::process::Command::new("setpriv");
        command.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=+dac_override",
            "--ambient-caps=+dac_override",
            python3(),
        ]);
        command
    } else {
        tokio::process::Command::new(python3())
    };
    let output = command.arg("-c").arg(CONNECTOR).arg(socket).output().await.expect("run the connector");
    assert!(output.status.success(), "connector: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn a_peer_of_another_uid_is_refused() {
    let env = HubEnv::new();
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &[]) }), 2);
    let session = Session::start(&env).await;
    assert_eq!(call_text(&session, "fx__echo", json!({"message": "hi"})).await, "fx: hi");
    let hub = env.one_hub().await;
    let sockets = env.sockets();
    assert_eq!(sockets.len(), 1, "{sockets:?}");
    let mode = |path: &Path| std::fs::metadata(path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&env.home().join("run")), 0o700, "the run directory is private");
    assert_eq!(mode(&sockets[0]), 0o600, "the socket is private");

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // A peer of this uid is answered, so a refusal below is the uid check's doing.
        let own = connect(&sockets[0], false).await;
        assert!(own.contains("\"result\""), "the hub answers its own uid: {own}");

        let other = connect(&sockets[0], true).await;
        assert!(other.contains("connected uid 65534"), "the connector got past the file modes: {other}");
        assert!(other.contains("\ndata \n"), "nothing answered to another uid: {other}");
        assert!(!other.contains("timeout"), "the connection is closed at once: {other}");
        let log = env.wait_log("65534").await;
        let refusal = log.lines().find(|line| line.contains("65534")).expect("a log line");
        assert!(refusal.contains(&format!("[{hub} hub]")) && refusal.contains("WARN"), "{refusal}");
    }
    // The hub serves on after refusing.
    assert_eq!(call_text(&session, "fx__echo", json!({"message": "still"})).await, "fx: still");
    assert!(alive(hub));
    session.close().await;
    env.finish().await;
}

#[tokio::test]
async fn a_bridge_attaching_during_the_idle_wait_keeps_the_hub() {
    let env = HubEnv::new();
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &[]) }), 3);
    let first = Session::start(&env).await;
    let upstream = pid_of(&first, "fx").await;
    let hub = env.one_hub().await;
    first.close().await;

    // A third of the way into the idle wait another bridge attaches; it keeps the hub and
    // the upstream past the end of the wait that began before it.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let second = Session::start(&env).await;
    assert_eq!(pid_of(&second, "fx").await, upstream, "attached to the same hub and upstream");
    let attached = std::time::Instant::now();
    while attached.elapsed() < Duration::from_millis(3500) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(alive(hub) && alive(upstream), "the hub went away while a bridge was attached");
    }
    assert_eq!(pid_of(&second, "fx").await, upstream);
    assert_eq!(starts(&env, "fx").len(), 1);
    second.close().await;
    env.finish().await;
}

#[tokio::test]
async fn a_bridge_waiting_for_a_slow_start_keeps_the_hub() {
    let env = HubEnv::new();
    // The upstream takes three idle timeouts to start.
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &["--start-delay-ms", "3000"]) }), 1);
    let session = Session::start(&env).await;
    assert_eq!(call_text(&session, "fx__echo", json!({"message": "slow"})).await, "fx: slow");
    let started = starts(&env, "fx");
    assert_eq!(started.len(), 1, "started once, by the first hub\nlog:\n{}", env.log());
    assert!(descendants(env.one_hub().await).contains(&started[0]), "which still runs it");
    session.close().await;
    env.finish().await;
}

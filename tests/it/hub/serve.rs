//! `hub serve` run by hand: with no bridge ever attaching it exits its idle timeout after
//! its start, and a second hub of the same config exits at once, leaving the first one
//! serving. What the hub holds open: a control request leaves no socket behind, an
//! attached bridge costs three descriptors, and the hub lifts its own limit on open
//! files (its upstreams keep the one it started with).

use std::{process::Stdio, time::Duration};

use serde_json::json;

use super::*;

#[tokio::test]
async fn a_hub_no_bridge_attaches_to_exits_after_its_idle_timeout() {
    let env = HubEnv::new();
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &[]) }), 1);
    let mut hub = env
        .command()
        .args(["hub", "serve"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hub serve");
    wait_until(Duration::from_secs(10), || env.sockets().len() == 1).await;
    let socket = env.sockets().pop().expect("the socket");
    let started = std::time::Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(10), hub.wait())
        .await
        .expect("the hub exits by itself")
        .expect("wait for the hub");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "it waited for a bridge: {:?}",
        started.elapsed()
    );
    assert!(!socket.exists(), "the socket is removed");
    assert!(starts(&env, "fx").is_empty(), "no upstream started for nobody");
    env.finish().await;
}

#[tokio::test]
async fn a_second_hub_of_the_same_config_exits_at_once() {
    let env = HubEnv::new();
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &[]) }), 2);
    let session = Session::start(&env).await;
    let upstream = pid_of(&session, "fx").await;
    let hub = env.one_hub().await;
    let socket = env.sockets().pop().expect("the socket");

    let second = tokio::time::timeout(Duration::from_secs(10), env.run(&["hub", "serve"]))
        .await
        .expect("a second hub exits at once");
    assert_ne!(second.code, Some(0), "{second:?}");
    assert!(!second.stderr.trim().is_empty(), "it says why: {second:?}");
    assert!(socket.exists(), "the first hub's socket stays");
    assert_eq!(env.one_hub().await, hub);
    assert_eq!(call_text(&session, "fx__echo", json!({"message": "still"})).await, "fx: still");
    assert_eq!(pid_of(&session, "fx").await, upstream);
    assert_eq!(starts(&env, "fx").len(), 1);
    session.close().await;
    env.finish().await;
}

/// The descriptors process `pid` has open.
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|entries| entries.count()).unwrap_or_default()
}

#[tokio::test]
async fn control_requests_leave_no_socket_open_in_the_hub() {
    let env = HubEnv::new();
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &[]) }), 30);
    let session = Session::start(&env).await;
    call_text(&session, "fx__echo", json!({"message": "up"})).await;
    let hub = env.one_hub().await;
    let before = open_descriptors(hub);
    for _ in 0..20 {
        assert_eq!(env.status().await.len(), 1);
    }
    // The hub closes a control connection after answering; give the last one a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while open_descriptors(hub) >= before + 5 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = open_descriptors(hub);
    assert!(after < before + 5, "the hub had {before} descriptors open, {after} after 20 `hub status`");
    session.close().await;
    env.finish().await;
}

/// The soft and hard limits on open files of process `pid`.
fn open_files_limit(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let line = limits.lines().find(|line| line.starts_with("Max open files")).unwrap_or_default();
    let mut values = line.trim_start_matches("Max open files").split_whitespace().map(str::to_owned);
    (values.next().unwrap_or_default(), values.next().unwrap_or_default())
}

#[tokio::test]
async fn the_hub_lifts_its_limit_on_open_files_and_its_upstreams_keep_the_usual_one() {
    const STARTED_WITH: libc::rlim_t = 512;
    let env = HubEnv::new();
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &[]) }), 30);
    let mut command = env.command();
    command.args(["hub", "serve"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: between fork and exec, only getrlimit and setrlimit on a local struct.
    unsafe {
        command.pre_exec(|| {
            let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur = STARTED_WITH.min(limit.rlim_max);
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
            Ok(())
        });
    }
    let hub = command.spawn().expect("spawn hub serve");
    wait_until(Duration::from_secs(10), || env.sockets().len() == 1).await;
    let session = Session::start(&env).await;
    let upstream = pid_of(&session, "fx").await;
    let hub_pid = hub.id().expect("the hub runs");
    assert_eq!(env.one_hub().await, hub_pid, "the bridge uses the hub started here");
    let (soft, hard) = open_files_limit(hub_pid);
    assert!(
        hard == "unlimited" || hard.parse::<u64>().is_ok_and(|hard| hard > STARTED_WITH),
        "this machine's hard limit ({hard}) leaves nothing to lift"
    );
    assert_eq!(soft, hard, "the hub's soft limit is lifted to the hard one");
    let (upstream_soft, _) = open_files_limit(upstream);
    assert_eq!(upstream_soft, STARTED_WITH.to_string(), "the upstream gets the limit the hub started with");
    session.close().await;
    env.finish().await;
}

#[tokio::test]
async fn an_attached_bridge_costs_the_hub_three_descriptors() {
    let env = HubEnv::new();
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &[]) }), 30);
    let first = Session::start(&env).await;
    call_text(&first, "fx__echo", json!({"message": "up"})).await;
    let hub = env.one_hub().await;
    let before = open_descriptors(hub);
    let mut others = Vec::new();
    for _ in 0..4 {
        let session = Session::start(&env).await;
        call_text(&session, "fx__echo", json!({"message": "attached"})).await;
        others.push(session);
    }
    let added = open_descriptors(hub) - before;
    // Its connection's reading and writing halves, and one handle that closes it.
    assert_eq!(added, 4 * 3, "descriptors for 4 more bridges");
    for session in others {
        session.close().await;
    }
    first.close().await;
    env.finish().await;
}

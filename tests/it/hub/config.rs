//! Which hub a bridge uses and what it runs follow the config file: bridges of another
//! config file use their own hub, an edit that adds, changes or removes a shared
//! upstream reaches every bridge of the config, and one that turns `shared` off or on
//! moves the upstream between the bridges and the hub.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;

#[tokio::test]
async fn bridges_of_another_config_use_their_own_hub() {
    let env = HubEnv::new();
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &[]) }), 2);
    let other_config = env.path("other.json5");
    let other = json!({
        "mcpServers": { "fx": counted(&env, "other", true, &[]) },
        "bridge": { "hub": { "idleTimeout": 2 } },
    });
    std::fs::write(&other_config, other.to_string()).expect("write the other config");

    let first = Session::start(&env).await;
    let mut command = env.command();
    command.env("FOXXY_BRIDGE_CONFIG", &other_config);
    let second = Session::start_command(command, TestClient::default()).await;
    let (first_pid, second_pid) = (pid_of(&first, "fx").await, pid_of(&second, "fx").await);
    assert_eq!(starts(&env, "fx"), vec![first_pid]);
    assert_eq!(starts(&env, "other"), vec![second_pid], "the other config's upstream runs apart");

    let hubs = env.hub_pids();
    assert_eq!(hubs.len(), 2, "a hub per config file: {hubs:?}");
    assert_eq!(env.sockets().len(), 2, "{:?}", env.sockets());
    let runs = |pid: u32| hubs.iter().filter(|&&hub| descendants(hub).contains(&pid)).count();
    assert_eq!((runs(first_pid), runs(second_pid)), (1, 1), "each upstream runs in one of the hubs");
    assert!(
        hubs.iter()
            .all(|&hub| !(descendants(hub).contains(&first_pid) && descendants(hub).contains(&second_pid))),
        "not both in one hub"
    );
    first.close().await;
    second.close().await;
    env.finish().await;
}

/// Wait until `session` lists tools satisfying `condition`; the names.
async fn wait_tools(env: &TestEnv, session: &Session, condition: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let names = tool_names(session).await;
        if condition(&names) {
            return names;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tools never matched; last: {names:?}\nlog:\n{}",
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn config(servers: Value) -> Value {
    json!({
        "mcpServers": servers,
        "bridge": { "hub": { "idleTimeout": 2 }, "configReload": { "debounceMs": 100 } },
    })
}

#[tokio::test]
async fn a_config_edit_is_applied_by_the_hub_for_every_bridge() {
    let env = HubEnv::new();
    env.write_config(&config(json!({ "fx": counted(&env, "fx", true, &["--tools", "echo,pid"]) })));
    let sessions = vec![Session::start(&env).await, Session::start(&env).await];
    for session in &sessions {
        assert_eq!(tool_names(session).await, ["fx__echo", "fx__pid"]);
    }
    let hub = env.one_hub().await;

    // Added and changed: every bridge sees both, from one new process each.
    env.write_config(&config(json!({
        "fx": counted(&env, "fx", true, &["--tools", "echo,pid,add"]),
        "gx": counted(&env, "gx", true, &["--tools", "echo,pid"]),
    })));
    let expected = ["fx__add", "fx__echo", "fx__pid", "gx__echo", "gx__pid"];
    for session in &sessions {
        wait_tools(&env, session, |names| names == expected).await;
        assert_eq!(call_text(session, "gx__echo", json!({"message": "new"})).await, "gx: new");
    }
    let fx = starts(&env, "fx");
    assert_eq!(fx.len(), 2, "fx restarted once with its new settings: {fx:?}");
    for session in &sessions {
        assert_eq!(pid_of(session, "fx").await, fx[1]);
        assert_eq!(pid_of(session, "gx").await, starts(&env, "gx")[0]);
    }
    assert_eq!(starts(&env, "gx").len(), 1, "gx started once");
    wait_until(Duration::from_secs(5), || !alive(fx[0])).await;

    // Removed: gone for every bridge, and its process ends.
    env.write_config(&config(json!({ "fx": counted(&env, "fx", true, &["--tools", "echo,pid,add"]) })));
    for session in &sessions {
        wait_tools(&env, session, |names| names == ["fx__add", "fx__echo", "fx__pid"]).await;
    }
    let gx = starts(&env, "gx")[0];
    wait_until(Duration::from_secs(5), || !alive(gx)).await;
    assert_eq!(env.one_hub().await, hub, "the same hub applied every edit");
    assert_eq!(starts(&env, "fx").len(), 2, "an unchanged upstream is not restarted");
    for session in sessions {
        session.close().await;
    }
    env.finish().await;
}

/// Poll `fx__pid` until it answers a pid that `wanted` accepts (bounded); a call in the
/// moment the upstream moves may fail and is tried again.
async fn pid_once(env: &TestEnv, session: &Session, wanted: impl Fn(u32) -> bool) -> u32 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = session.service.call_tool(call("fx__pid", json!({}))).await;
        let pid = answer.as_ref().ok().filter(|result| result.is_error != Some(true)).map(text_of);
        if let Some(pid) = pid.and_then(|text| text.parse().ok()).filter(|&pid| wanted(pid)) {
            return pid;
        }
        assert!(tokio::time::Instant::now() < deadline, "last answer {answer:?}\nlog:\n{}", env.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_edit_of_shared_moves_an_upstream_between_the_hub_and_the_bridges() {
    let env = HubEnv::new();
    let entry = |shared: bool| counted(&env, "fx", shared, &["--tools", "echo,pid"]);
    env.write_config(&config(json!({ "fx": entry(true) })));
    let sessions = vec![Session::start(&env).await, Session::start(&env).await];
    let shared = pid_of(&sessions[0], "fx").await;
    assert_eq!(pid_of(&sessions[1], "fx").await, shared);
    let hub = env.one_hub().await;

    // Unshared: each bridge runs its own, and the hub's process ends.
    env.write_config(&config(json!({ "fx": entry(false) })));
    let mut own = Vec::new();
    for session in &sessions {
        own.push(pid_once(&env, session, |pid| pid != shared).await);
    }
    assert_ne!(own[0], own[1], "a process per bridge");
    for (session, pid) in sessions.iter().zip(&own) {
        assert!(bridge_processes(session.pid, hub).contains(pid), "run by the bridge itself");
    }
    wait_until(Duration::from_secs(5), || !alive(shared)).await;

    // Shared again: one process in a hub, and the bridges' own end.
    env.write_config(&config(json!({ "fx": entry(true) })));
    let mut again = Vec::new();
    for session in &sessions {
        again.push(pid_once(&env, session, |pid| !own.contains(&pid)).await);
    }
    assert_eq!(again[0], again[1], "one shared process again");
    assert!(descendants(env.one_hub().await).contains(&again[0]), "run by the hub");
    wait_until(Duration::from_secs(5), || own.iter().all(|&pid| !alive(pid))).await;
    for session in sessions {
        session.close().await;
    }
    env.finish().await;
}

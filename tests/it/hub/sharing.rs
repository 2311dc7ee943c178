//! One instance of a shared upstream for every bridge of a config: the same process
//! answers them all, their calls do not cross, racing bridges start one hub, a bridge
//! attaching to a running hub waits for no start, a shared remote upstream has no pid,
//! `hub status` counts bridges (not connections), and a shared server lists and answers
//! as it would unshared.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::peers;

#[tokio::test]
async fn several_bridges_share_one_upstream_process() {
    let env = HubEnv::new();
    env.write_servers(
        json!({ "fx": counted(&env, "fx", true, &[]), "own": counted(&env, "own", false, &[]) }),
        2,
    );
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(Session::start(&env).await);
    }
    let mut shared = Vec::new();
    let mut own = Vec::new();
    for session in &sessions {
        shared.push(pid_of(session, "fx").await);
        own.push(pid_of(session, "own").await);
    }
    assert!(shared.iter().all(|&pid| pid == shared[0]), "one shared process answers all: {shared:?}");
    assert_eq!(starts(&env, "fx"), vec![shared[0]], "the shared upstream was started once");
    let mut distinct = own.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "an unshared upstream runs per bridge: {own:?}");
    assert_eq!(starts(&env, "own").len(), 3);

    // The shared process is the hub's, not any bridge's.
    let hub = env.one_hub().await;
    assert!(descendants(hub).contains(&shared[0]), "the hub runs the shared upstream");
    for (session, own_pid) in sessions.iter().zip(&own) {
        let family = bridge_processes(session.pid, hub);
        assert!(!family.contains(&shared[0]), "a bridge does not run the shared upstream");
        assert!(family.contains(own_pid), "each bridge runs its own unshared upstream");
    }
    for session in sessions {
        session.close().await;
    }
    env.finish().await;
}

#[tokio::test]
async fn calls_of_several_bridges_do_not_cross() {
    let env = HubEnv::new();
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &[]) }), 2);
    let sessions = futures::future::join_all((0..3).map(|_| Session::start(&env))).await;
    let calls = sessions.iter().enumerate().flat_map(|(bridge, session)| {
        (0..50).map(move |call_index| {
            let message = format!("bridge {bridge} call {call_index}");
            let peer = session.service.peer().clone();
            async move {
                let result = peer.call_tool(call("fx__echo", json!({ "message": message }))).await;
                (message, result)
            }
        })
    });
    let answers = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(calls))
        .await
        .expect("150 concurrent calls answered within 60 s");
    for (message, result) in answers {
        let result = result.unwrap_or_else(|error| panic!("{message}: {error}"));
        assert_eq!(text_of(&result), format!("fx: {message}"), "each call gets its own answer");
    }
    assert_eq!(starts(&env, "fx").len(), 1);
    for session in sessions {
        session.close().await;
    }
    env.finish().await;
}

#[tokio::test]
async fn two_bridges_starting_at_once_start_one_hub() {
    let env = HubEnv::new();
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &[]) }), 2);
    let sessions = futures::future::join_all((0..4).map(|_| Session::start(&env))).await;
    let pids = futures::future::join_all(sessions.iter().map(|session| pid_of(session, "fx"))).await;
    assert!(pids.iter().all(|&pid| pid == pids[0]), "one upstream process answers all: {pids:?}");
    assert_eq!(starts(&env, "fx"), vec![pids[0]], "the shared upstream was started once");
    let hub = env.one_hub().await;
    assert_eq!(env.sockets().len(), 1, "one hub socket: {:?}", env.sockets());

    let status = env.status().await;
    assert_eq!(status.len(), 1, "one hub in `hub status`: {status:?}");
    assert_eq!(status[0]["pid"], json!(hub), "{status:?}");
    assert_eq!(status[0]["bridges"], json!(4), "every bridge attached to it: {status:?}");
    assert_eq!(
        status[0]["upstreams"],
        json!([{ "name": "fx", "status": "ready", "pid": pids[0] }]),
        "{status:?}"
    );
    for session in sessions {
        session.close().await;
    }
    env.finish().await;
}

/// Those of `pids` that run server-everything.
fn everything_processes(pids: Vec<u32>) -> Vec<u32> {
    let script = peers::server_everything_js();
    let script = script.to_str().expect("UTF-8 path");
    pids.into_iter().filter(|&pid| command_line(pid).contains(script)).collect()
}

/// Tools by name, as JSON, sorted.
async fn tool_objects(env: &TestEnv, session: &Session) -> Vec<Value> {
    let tools =
        wait_for_tools(env, session, &["ev__echo", "ev__trigger-sampling-request"], String::new).await;
    let mut tools: Vec<Value> =
        tools.iter().map(|tool| serde_json::to_value(tool).expect("encode tool")).collect();
    tools.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    tools
}

#[tokio::test]
async fn server_everything_shared_lists_and_answers_as_unshared() {
    let unshared_env = TestEnv::new();
    unshared_env.write_config(&json!({ "mcpServers": { "ev": peers::everything_stdio() } }));
    let unshared = Session::start(&unshared_env).await;
    let expected = tool_objects(&unshared_env, &unshared).await;
    unshared.close().await;

    let env = HubEnv::new();
    let mut entry = peers::everything_stdio();
    entry["shared"] = json!(true);
    entry["timeout"] = json!(60);
    env.write_servers(json!({ "ev": entry }), 2);
    let first = Session::start(&env).await;
    let second = Session::start(&env).await;
    for (label, session) in [("first", &first), ("second", &second)] {
        assert_eq!(tool_objects(&env, session).await, expected, "{label}: the tools as unshared");
        let echoed = peer_call(session, "ev__echo", json!({ "message": label })).await;
        assert_eq!(text_of(&echoed), format!("Echo: {label}"));
    }
    let hub = env.one_hub().await;
    assert_eq!(everything_processes(descendants(hub)).len(), 1, "the hub runs one server-everything");
    for session in [&first, &second] {
        assert!(everything_processes(bridge_processes(session.pid, hub)).is_empty(), "a bridge runs none");
    }
    first.close().await;
    second.close().await;
    env.finish().await;
}

#[tokio::test]
async fn tools_shows_shared_as_the_transport_of_a_shared_upstream() {
    let env = HubEnv::new();
    env.write_servers(
        json!({ "fx": counted(&env, "fx", true, &[]), "own": counted(&env, "own", false, &[]) }),
        2,
    );
    let output = env.run(&["tools", "--json"]).await;
    assert_eq!(output.code, Some(0), "{output:?}\nlog:\n{}", env.log());
    let listed: Value = serde_json::from_str(&output.stdout).expect("tools --json is JSON");
    let transport = |name: &str| {
        let upstreams = listed["upstreams"].as_array().expect("upstreams");
        let upstream = upstreams.iter().find(|upstream| upstream["name"] == name).expect("upstream listed");
        (upstream["transport"].clone(), upstream["status"].clone())
    };
    assert_eq!(transport("fx"), (json!("shared"), json!("ready")), "{listed}");
    assert_eq!(transport("own"), (json!("stdio"), json!("ready")), "{listed}");
    let names: Vec<&str> =
        listed["tools"].as_array().expect("tools").iter().filter_map(|tool| tool["name"].as_str()).collect();
    assert!(names.contains(&"fx__echo") && names.contains(&"own__echo"), "{names:?}");

    let table = env.run(&["tools"]).await;
    assert_eq!(table.code, Some(0), "{table:?}");
    // The upstream table's row of `fx`: `│ fx │ shared │ ready │ │`.
    let rows = table.stdout.lines().map(|line| line.split('│').map(str::trim).collect::<Vec<_>>());
    let upstream_rows: Vec<Vec<&str>> = rows.filter(|cells| cells.get(1) == Some(&"fx")).collect();
    assert_eq!(upstream_rows.len(), 1, "{}", table.stdout);
    assert_eq!(upstream_rows[0].get(2), Some(&"shared"), "{}", table.stdout);
    env.finish().await;
}

#[tokio::test]
async fn a_bridge_attaching_to_a_running_hub_does_not_wait_for_a_start() {
    let env = HubEnv::new();
    // A start takes 4 s: a bridge that waited for one would show it.
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &["--start-delay-ms", "4000"]) }), 2);
    let first = Session::start(&env).await;
    assert!(tool_names(&first).await.contains(&"fx__echo".to_owned()));

    let started = std::time::Instant::now();
    let second = Session::start(&env).await;
    let initialized = started.elapsed();
    let names = tool_names(&second).await;
    let listed = started.elapsed();
    assert!(names.contains(&"fx__echo".to_owned()), "{names:?}");
    assert!(listed < Duration::from_secs(3), "the first complete tools/list took {listed:?}");
    eprintln!(
        "attaching bridge: initialize answered after {initialized:?}, first complete tools/list after {listed:?}"
    );
    assert_eq!(starts(&env, "fx").len(), 1);
    first.close().await;
    second.close().await;
    env.finish().await;
}

#[tokio::test]
async fn a_shared_remote_upstream_serves_every_bridge_with_no_pid() {
    let server = crate::remote::HttpFixture::start(0, &["--name", "web"]).await;
    let env = HubEnv::new();
    env.write_servers(json!({ "web": { "url": server.url(), "shared": true } }), 2);
    let sessions = vec![Session::start(&env).await, Session::start(&env).await];
    for (index, session) in sessions.iter().enumerate() {
        let message = format!("bridge {index}");
        assert_eq!(
            call_text(session, "web__echo", json!({ "message": message })).await,
            format!("web: {message}")
        );
    }
    let hub = env.one_hub().await;
    let status = env.status().await;
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(status[0]["pid"], json!(hub), "{status:?}");
    assert_eq!(status[0]["bridges"], json!(2), "{status:?}");
    assert_eq!(
        status[0]["upstreams"],
        json!([{ "name": "web", "status": "ready", "pid": null }]),
        "{status:?}"
    );
    for session in sessions {
        session.close().await;
    }
    env.finish().await;
    server.stop().await;
}

#[tokio::test]
async fn hub_status_counts_bridges_not_connections() {
    let env = HubEnv::new();
    env.write_servers(
        json!({ "fx": counted(&env, "fx", true, &[]), "gx": counted(&env, "gx", true, &[]) }),
        2,
    );
    let sessions = vec![Session::start(&env).await, Session::start(&env).await];
    let mut pids = Vec::new();
    for session in &sessions {
        pids.push((pid_of(session, "fx").await, pid_of(session, "gx").await));
    }
    assert_eq!(pids[0], pids[1], "both bridges use both shared upstreams of one hub");
    let hub = env.one_hub().await;
    let status = env.status().await;
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(status[0]["pid"], json!(hub));
    assert_eq!(status[0]["bridges"], json!(2), "two bridges, four connections: {status:?}");
    let mut upstreams = status[0]["upstreams"].as_array().expect("upstreams").clone();
    upstreams.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    assert_eq!(
        upstreams,
        [
            json!({ "name": "fx", "status": "ready", "pid": pids[0].0 }),
            json!({ "name": "gx", "status": "ready", "pid": pids[0].1 }),
        ],
        "{status:?}"
    );
    for session in sessions {
        session.close().await;
    }
    env.finish().await;
}

#[tokio::test]
async fn a_bridge_whose_upstreams_are_all_shared_runs_no_process_of_its_own() {
    let env = HubEnv::new();
    env.write_servers(json!({ "fx": counted(&env, "fx", true, &[]) }), 2);
    let session = Session::start(&env).await;
    assert_eq!(call_text(&session, "fx__echo", json!({"message": "hi"})).await, "fx: hi");
    let hub = env.one_hub().await;
    let own: Vec<String> = bridge_processes(session.pid, hub).into_iter().map(command_line).collect();
    assert!(own.is_empty(), "no upstream, so no helper either: {own:?}");
    session.close().await;
    env.finish().await;
}

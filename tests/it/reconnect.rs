//! A request for an upstream that is starting, reconnecting or marked failed joins (or
//! starts) the connection attempt and waits for it, bounded by the upstream's `timeout`;
//! only an attempt that fails answers with an error, naming the upstream and the cause.

use std::{os::unix::fs::PermissionsExt, time::Duration};

use serde_json::{Value, json};

use crate::support::*;

/// An upstream whose first process serves for `first_ms` and exits, and whose later
/// processes take `restart_delay_ms` to start.
fn slow_to_restart(env: &TestEnv, name: &str, first_ms: u64, restart_delay_ms: u64) -> Value {
    let marker = env.path(&format!("{name}.started"));
    let script = env.path(&format!("{name}.sh"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ -e '{marker}' ]; then exec '{fixture}' --name {name} --start-delay-ms {restart_delay_ms}; fi\n\
             touch '{marker}'\nexec '{fixture}' --name {name} --exit-after-ms {first_ms}\n",
            marker = marker.display(),
            fixture = fixture_bin().display(),
        ),
    )
    .expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    json!({ "command": script, "retryDelay": 100 })
}

#[tokio::test]
async fn requests_during_a_slow_restart_wait_for_it() {
    let env = TestEnv::new();
    env.write_config(&json!({ "mcpServers": { "slow": slow_to_restart(&env, "slow", 1500, 6500) } }));
    let session = Session::start(&env).await;
    assert!(tool_names(&session).await.contains(&"slow__echo".to_owned()));
    env.wait_log("upstream disconnected").await;

    // Two calls join the same attempt.
    let started = std::time::Instant::now();
    let first = session.service.call_tool(call("slow__echo", json!({"message": "late"})));
    let second = session.service.call_tool(call("slow__echo", json!({"message": "later"})));
    let (first, second) =
        tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(first, second) })
            .await
            .expect("answered");
    assert_eq!(text_of(&first.expect("call")), "slow: late");
    assert_eq!(text_of(&second.expect("call")), "slow: later");
    assert!(started.elapsed() > Duration::from_secs(2), "it waited for the restart: {:?}", started.elapsed());
    session.close().await;
}

#[tokio::test]
async fn a_call_after_failed_health_checks_brings_the_upstream_back() {
    let env = TestEnv::new();
    // Each process takes 5.5 s to start, serves for 2.5 s, then freezes.
    let mut frozen =
        fixture("frozen", &["--tools", "echo", "--start-delay-ms", "5500", "--hang-after-ms", "8000"]);
    frozen["healthCheck"] = json!({ "enabled": true, "interval": 200, "timeout": 200 });
    frozen["retryAttempts"] = json!(1);
    env.write_config(&json!({
        "mcpServers": { "frozen": frozen },
        "bridge": { "failover": { "maxFailures": 2, "recoveryInterval": 60000 } }
    }));
    let session = Session::start(&env).await;
    assert!(tool_names(&session).await.contains(&"frozen__echo".to_owned()));
    env.wait_log("health checks in a row failed").await;
    // Without a request the next attempt is a minute away; this call makes it now and
    // waits for the slow start.
    let echo = tokio::time::timeout(
        Duration::from_secs(20),
        session.service.call_tool(call("frozen__echo", json!({"message": "back"}))),
    )
    .await
    .expect("answered")
    .expect("call");
    assert_eq!(text_of(&echo), "frozen: back", "{echo:?}");
    session.close().await;
}

/// An attempt that began while the server was still down fails; a call that arrives
/// during it, once the server is back, waits for the attempt it asked for instead of
/// sharing that failure.
#[tokio::test]
async fn a_call_is_not_failed_by_an_attempt_that_began_before_it() {
    let env = TestEnv::new();
    let gate = env.path("flaky.down");
    let script = env.path("flaky.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ -e '{gate}' ]; then sleep 2; echo 'server unavailable' >&2; exit 7; fi\n\
             exec '{fixture}' --name flaky --exit-after-ms 1500\n",
            gate = gate.display(),
            fixture = fixture_bin().display(),
        ),
    )
    .expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    env.write_config(&json!({
        "mcpServers": { "flaky": { "command": script, "retryDelay": 100, "retryAttempts": 50 } },
        "bridge": { "logLevel": "debug" },
    }));
    let session = Session::start(&env).await;
    assert!(tool_names(&session).await.contains(&"flaky__echo".to_owned()));
    // The server goes down; once the bridge is reconnecting, it comes back.
    std::fs::write(&gate, "").expect("close the gate");
    env.wait_log("connecting upstream=flaky failures=1").await;
    std::fs::remove_file(&gate).expect("open the gate");
    let echo = tokio::time::timeout(
        Duration::from_secs(20),
        session.service.call_tool(call("flaky__echo", json!({"message": "back"}))),
    )
    .await
    .expect("answered")
    .expect("call");
    assert_eq!(text_of(&echo), "flaky: back", "{echo:?}");
    session.close().await;
}

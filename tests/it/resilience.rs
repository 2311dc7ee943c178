//! Resilience through the real binary: config hot reload, health checks and failover,
//! request timeouts, misbehaving upstreams, startup under load.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// Wait until the listed tools satisfy `condition`.
async fn wait_tools(session: &Session, condition: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let names = tool_names(session).await;
        if condition(&names) {
            return names;
        }
        assert!(tokio::time::Instant::now() < deadline, "tools never matched; last: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn config_edits_are_applied_while_a_client_is_connected() {
    let env = TestEnv::new();
    let alpha = fixture("alpha", &["--tools", "echo,slow"]);
    let bridge = json!({ "configReload": { "debounceMs": 100 } });
    env.write_config(&json!({ "mcpServers": { "alpha": alpha }, "bridge": bridge }));
    let session = Session::start(&env).await;
    assert_eq!(tool_names(&session).await, ["alpha__echo", "alpha__slow"]);
    let alpha_pid_before =
        session.service.call_tool(call("alpha__echo", json!({"message": "x"}))).await.expect("call");
    assert_eq!(text_of(&alpha_pid_before), "alpha: x");

    // A long call to alpha is in flight while beta is added: it is not disturbed.
    let service = session.service.peer().clone();
    let in_flight = tokio::spawn(async move {
        service.call_tool(call("alpha__slow", json!({"steps": 10, "step_ms": 100}))).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let baseline = session.client.seen().tools_changed;
    env.write_config(&json!({
        "mcpServers": { "alpha": alpha, "beta": fixture("beta", &["--tools", "echo"]) },
        "bridge": bridge
    }));
    session.wait_seen(Duration::from_secs(10), |seen| seen.tools_changed > baseline).await;
    wait_tools(&session, |names| names.iter().any(|name| name == "beta__echo")).await;
    let slow = in_flight.await.expect("join").expect("the in-flight call completes");
    assert_eq!(text_of(&slow), "alpha: done 10 steps");

    // An invalid edit is rejected with its position, and the running config stays.
    std::fs::write(env.config_path(), "{\n  \"mcpServers\": {\n    \"alpha\": { \"command\": \n")
        .expect("write");
    let log = env.wait_log("config change rejected").await;
    assert!(log.contains("config.json5:"), "the problem names file:line:col:\n{log}");
    let echo =
        session.service.call_tool(call("beta__echo", json!({"message": "still"}))).await.expect("call");
    assert_eq!(text_of(&echo), "beta: still");

    // A changed upstream is restarted with its new settings; a removed one is stopped.
    env.write_config(&json!({
        "mcpServers": { "beta": fixture("beta", &["--tools", "echo,add"]) },
        "bridge": bridge
    }));
    let names = wait_tools(&session, |names| names.iter().any(|name| name == "beta__add")).await;
    assert_eq!(names, ["beta__add", "beta__echo"], "alpha is gone, beta has its new tool");
    let sum = session.service.call_tool(call("beta__add", json!({"a": 2, "b": 2}))).await.expect("call");
    assert_eq!(sum.structured_content, Some(json!({"sum": 4})));
    session.close().await;
}

#[tokio::test]
async fn failed_health_checks_withdraw_a_frozen_upstream_and_it_comes_back() {
    let env = TestEnv::new();
    let mut frozen = fixture("frozen", &["--tools", "echo", "--hang-after-ms", "1500"]);
    frozen["healthCheck"] = json!({ "enabled": true, "interval": 200, "timeout": 200 });
    frozen["retryDelay"] = json!(100);
    env.write_config(&json!({
        "mcpServers": { "frozen": frozen, "steady": fixture("steady", &["--tools", "echo"]) },
        "bridge": { "failover": { "maxFailures": 2 } }
    }));
    let session = Session::start(&env).await;
    assert!(tool_names(&session).await.contains(&"frozen__echo".to_owned()));
    // Once frozen, pings time out; after two misses it is dropped (and killed) and its
    // tools are withdrawn; the restarted process serves again until it freezes too.
    let log = env.wait_log("health checks in a row failed").await;
    assert!(log.contains("upstream=frozen"), "{log}");
    session.wait_seen(Duration::from_secs(10), |seen| seen.tools_changed >= 2).await;
    let steady =
        session.service.call_tool(call("steady__echo", json!({"message": "fine"}))).await.expect("call");
    assert_eq!(text_of(&steady), "steady: fine", "the healthy upstream is unaffected");
    assert_eq!(
        env.log().matches("health checks in a row failed").count(),
        1,
        "logged once per outage, not per tick"
    );
    session.close().await;
}

#[tokio::test]
async fn a_request_timeout_cancels_upstream_and_names_the_tool_while_progress_extends_it() {
    for served in Served::BOTH {
        request_timeout(served).await;
    }
}

async fn request_timeout(served: Served) {
    let env = TestEnv::new();
    let events = env.path("slow.events");
    let mut args = vec!["--tools", "sleep,slow", "--events-file", events.to_str().unwrap()];
    args.extend(served.fixture_args());
    let mut slow = fixture("slow", &args);
    slow["requestTimeout"] = json!(1);
    env.write_config(&json!({ "mcpServers": { "slow": slow } }));
    let session = Session::start(&env).await;
    served.prepare(&session).await;
    let started = std::time::Instant::now();
    let answered = tokio::time::timeout(
        Duration::from_secs(10),
        session.service.call_tool(call("slow__sleep", json!({"ms": 5000}))),
    );
    let result = answered.await.unwrap_or_else(|_| panic!("{served:?}: no answer")).expect("call");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{served:?}: timed out after ~1 s, not 5: {:?}",
        started.elapsed()
    );
    assert_eq!(result.is_error, Some(true), "{served:?}");
    let message = text_of(&result);
    assert!(
        message.contains("`slow__sleep`") && message.contains("upstream `slow`") && message.contains("1 s"),
        "{served:?}: {message}"
    );
    wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&events).unwrap_or_default().contains("cancelled sleep")
    })
    .await;

    // Progress every 600 ms keeps a 3 s call alive under a 1 s timeout.
    let result = session
        .service
        .call_tool(call("slow__slow", json!({"steps": 5, "step_ms": 600})))
        .await
        .expect("call");
    assert_eq!(text_of(&result), "slow: done 5 steps", "{served:?}");
    session.close().await;
}

#[tokio::test]
async fn hostile_upstreams_do_not_disturb_the_others() {
    let env = TestEnv::new();
    env.write_config(&json!({
        "mcpServers": {
            "noisy": fixture("noisy", &["--tools", "echo", "--noise-every-ms", "20"]),
            "huge": fixture("huge", &["--tools", "echo", "--many-tools", "3000", "--extra-tool", "dup.name"]),
            "big": { "command": fixture_bin(), "args": ["--name", "big", "--tools", "big,echo"], "requestTimeout": 2 },
            "calm": fixture("calm", &["--tools", "echo"]),
        },
        "bridge": { "maxMessageBytes": 2000000 }
    }));
    let session = Session::start(&env).await;
    let names = tool_names(&session).await;
    assert!(names.len() > 3000, "thousands of tools are listed: {}", names.len());
    assert!(names.contains(&"huge__dup_name".to_owned()));

    let noisy = session
        .service
        .call_tool(call("noisy__echo", json!({"message": "through the noise"})))
        .await
        .expect("call");
    assert_eq!(text_of(&noisy), "noisy: through the noise");
    // A result over maxMessageBytes is dropped by the upstream reader; the call fails at
    // once, and the log says which upstream sent it.
    let oversized =
        session.service.call_tool(call("big__big", json!({"bytes": 3000000}))).await.expect("call");
    assert_eq!(oversized.is_error, Some(true));
    let calm = session.service.call_tool(call("calm__echo", json!({"message": "calm"}))).await.expect("call");
    assert_eq!(text_of(&calm), "calm: calm");
    let log = env.wait_log("exceeded the maximum line length").await;
    assert!(
        log.lines()
            .any(|line| line.contains("exceeded the maximum line length") && line.contains("upstream=big")),
        "{log}"
    );
    assert!(
        log.lines().any(|line| line.contains("unparsable") && line.contains("upstream=noisy")),
        "the log names the noisy upstream"
    );
    session.close().await;
}

#[tokio::test]
async fn a_fifty_megabyte_argument_gets_an_error_and_the_session_lives() {
    let env = TestEnv::new();
    env.write_config(&json!({ "mcpServers": { "fix": fixture("fix", &["--tools", "echo"]) } }));
    let mut raw = RawSession::start(&env).await;
    raw.initialize().await;
    let big = "y".repeat(50 * 1024 * 1024);
    raw.send(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "fix__echo", "arguments": {"message": big}}})).await;
    drop(big);
    let reply = raw.reply().await;
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
    raw.send(&json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "fix__echo", "arguments": {"message": "small"}}})).await;
    let reply = raw.response(&json!(6)).await;
    assert_eq!(reply["result"]["content"][0]["text"], "fix: small");
}

#[tokio::test]
async fn many_upstreams_start_with_bounded_concurrency() {
    let env = TestEnv::new();
    let mut servers = serde_json::Map::new();
    for i in 0..30 {
        servers.insert(
            format!("s{i:02}"),
            fixture(&format!("s{i:02}"), &["--tools", "echo", "--start-delay-ms", "300"]),
        );
    }
    env.write_config(
        &json!({ "mcpServers": servers, "bridge": { "maxConcurrentStarts": 6, "startupTimeout": 60 } }),
    );
    let started = std::time::Instant::now();
    let output = env.run(&["tools", "--json"]).await;
    let elapsed = started.elapsed();
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    let report: Value = serde_json::from_str(&output.stdout).expect("json");
    assert_eq!(report["tools"].as_array().unwrap().len(), 30, "every upstream made it");
    // 30 starts of 300 ms, 6 at a time: at least 5 rounds, and not much more.
    assert!(elapsed >= Duration::from_millis(1500), "starts were bounded: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(20), "and still quick: {elapsed:?}");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn soak_thousands_of_calls_while_one_upstream_keeps_dying() {
    const WORKERS: usize = 8;
    const CALLS_PER_WORKER: usize = 400;
    let env = TestEnv::new();
    let pid_file = env.path("victim.pid");
    let mut victim = fixture("victim", &["--tools", "echo", "--pid-file", pid_file.to_str().unwrap()]);
    victim["retryDelay"] = json!(50);
    victim["retryAttempts"] = json!(100_000);
    env.write_config(&json!({
        "mcpServers": {
            "a": fixture("a", &["--tools", "echo"]),
            "b": fixture("b", &["--tools", "echo"]),
            "victim": victim,
        }
    }));
    let session = Session::start(&env).await;
    let bridge_pid = session.pid;
    tool_names(&session).await;
    // Warm up, then take the memory baseline.
    for i in 0..100 {
        session.service.call_tool(call("a__echo", json!({"message": i.to_string()}))).await.expect("warm-up");
    }
    let rss_before = rss_kib(bridge_pid);

    let stop = tokio_util::sync::CancellationToken::new();
    let killer = {
        let stop = stop.clone();
        let pid_file = pid_file.clone();
        tokio::spawn(async move {
            let mut kills = 0;
            while !stop.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if let Ok(pid) =
                    std::fs::read_to_string(&pid_file).map(|text| text.trim().parse::<i32>().unwrap_or(0))
                    && pid > 0
                {
                    // SAFETY: killing the fixture process the test started (through the bridge).
                    if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                        kills += 1;
                    }
                }
            }
            kills
        })
    };
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let peer = session.service.peer().clone();
            tokio::spawn(async move {
                let (mut healthy_ok, mut victim_ok, mut victim_errors) = (0usize, 0usize, 0usize);
                for i in 0..CALLS_PER_WORKER {
                    let upstream = ["a", "b", "victim"][i % 3];
                    let message = format!("{worker}-{i}");
                    let request = call(&format!("{upstream}__echo"), json!({ "message": message }));
                    let reply = tokio::time::timeout(Duration::from_secs(30), peer.call_tool(request))
                        .await
                        .unwrap_or_else(|_| panic!("call {upstream} {message} got no response"));
                    let expected = format!("{upstream}: {message}");
                    match (upstream, reply) {
                        ("victim", Ok(result)) if result.is_error != Some(true) => {
                            assert_eq!(text_of(&result), expected);
                            victim_ok += 1;
                        }
                        ("victim", _) => victim_errors += 1,
                        (_, Ok(result)) => {
                            assert_eq!(text_of(&result), expected, "a healthy upstream's call failed");
                            healthy_ok += 1;
                        }
                        (_, Err(error)) => panic!("a healthy upstream's call failed: {error}"),
                    }
                }
                (healthy_ok, victim_ok, victim_errors)
            })
        })
        .collect();
    let (mut healthy_ok, mut victim_ok, mut victim_errors) = (0, 0, 0);
    for worker in workers {
        let (healthy, ok, errors) = worker.await.expect("worker");
        healthy_ok += healthy;
        victim_ok += ok;
        victim_errors += errors;
    }
    stop.cancel();
    let kills = killer.await.expect("killer");
    let total = WORKERS * CALLS_PER_WORKER;
    assert_eq!(healthy_ok + victim_ok + victim_errors, total, "every request got exactly one response");
    assert_eq!(healthy_ok, (0..CALLS_PER_WORKER).filter(|i| i % 3 != 2).count() * WORKERS);
    assert!(kills >= 3, "the victim was killed repeatedly ({kills} times)");
    assert!(victim_ok > 0, "the victim served between its deaths");

    let rss_after = rss_kib(bridge_pid);
    assert!(
        rss_after <= rss_before + rss_before / 2 + 8 * 1024,
        "memory stayed bounded: {rss_before} KiB before, {rss_after} KiB after"
    );

    let family = descendants(bridge_pid);
    session.close().await;
    wait_until(Duration::from_secs(5), || !alive(bridge_pid) && family.iter().all(|pid| !alive(*pid))).await;
    eprintln!(
        "soak: {total} calls, {kills} kills, victim {victim_ok} ok / {victim_errors} errors, RSS {rss_before} → {rss_after} KiB"
    );
}

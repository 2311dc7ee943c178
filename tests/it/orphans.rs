//! No process the bridge started outlives it, even when it is killed with SIGKILL and
//! cannot end them itself: its watchdog ends every process group it recorded.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_sigkilled_bridge_leaves_no_process_behind() {
    let env = TestEnv::new();
    // A grandchild in the server's group, and a shell wrapper that leaves one behind.
    let wrapped = format!("sleep 1000 & exec '{}' --name wrapped", fixture_bin().display());
    env.write_config(&json!({
        "mcpServers": {
            "parent": fixture("parent", &["--spawn-grandchild"]),
            "wrapped": { "command": "sh", "args": ["-c", wrapped] },
        }
    }));
    let session = Session::start(&env).await;
    let names = tool_names(&session).await;
    assert!(names.contains(&"parent__echo".to_owned()) && names.contains(&"wrapped__echo".to_owned()));
    // Both servers and both sleeps (and, with it, the watchdog).
    let mut family = Vec::new();
    wait_until(Duration::from_secs(10), || {
        family = descendants(session.pid);
        family.len() >= 4
    })
    .await;

    // SAFETY: signalling the bridge this test started.
    unsafe {
        libc::kill(session.pid as libc::pid_t, libc::SIGKILL);
    }
    let bound = Duration::from_secs(5);
    let started = std::time::Instant::now();
    wait_until(bound, || family.iter().all(|&pid| !alive(pid))).await;
    let survivors: Vec<u32> = family.iter().copied().filter(|&pid| alive(pid)).collect();
    assert!(survivors.is_empty(), "{survivors:?} outlived the bridge");
    assert!(started.elapsed() < bound);
}

//! `hub status` and `hub stop` against stand-in hubs: Unix sockets the test binds in the
//! state root's `run/` and answers on as a hub does, next to a stale socket file.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::UnixListener,
};

use crate::support::TestEnv;

fn run_dir(env: &TestEnv) -> PathBuf {
    let dir = env.home().join("run");
    std::fs::create_dir_all(&dir).expect("create run dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod run dir");
    dir
}

/// What the stand-in hub reports.
fn status_of(socket: &Path) -> Value {
    json!({
        "socket": socket,
        "pid": 4242,
        "config": "/work/config.json5",
        "bridges": 2,
        "upstreams": [
            {"name": "memory", "status": "ready", "pid": 5151},
            {"name": "remote", "status": "needs sign-in", "pid": null},
        ],
    })
}

/// A stand-in hub on `socket`: it answers `hubStatus` and `hubStop` on each connection's
/// first line, records the methods, and on `hubStop` removes its socket and stops
/// listening, as a hub does when it exits.
fn fake_hub(socket: PathBuf) -> Arc<Mutex<Vec<String>>> {
    let listener = UnixListener::bind(&socket).expect("bind the stand-in hub");
    let methods = Arc::new(Mutex::new(Vec::new()));
    let seen = methods.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            if BufReader::new(read).read_line(&mut line).await.is_err() || line.is_empty() {
                continue;
            }
            let request: Value = serde_json::from_str(&line).expect("a JSON request");
            let method = request["method"].as_str().expect("a method").to_owned();
            seen.lock().expect("methods").push(method.clone());
            let result = match method.as_str() {
                "foxxy-bridge/hubStatus" => status_of(&socket),
                "foxxy-bridge/hubStop" => json!({}),
                _ => panic!("unexpected request {line}"),
            };
            let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": result});
            write.write_all(format!("{answer}\n").as_bytes()).await.expect("answer");
            if method == "foxxy-bridge/hubStop" {
                std::fs::remove_file(&socket).expect("remove the socket");
                break;
            }
        }
    });
    methods
}

/// A socket file whose listener is gone, as a hub that died leaves it.
fn stale_socket(run_dir: &Path) -> PathBuf {
    let socket = run_dir.join("hub-000000000000.sock");
    drop(UnixListener::bind(&socket).expect("bind"));
    assert!(socket.exists());
    socket
}

#[tokio::test]
async fn hub_status_and_stop_without_a_hub_say_so() {
    let env = TestEnv::new();
    let status = env.run(&["hub", "status"]).await;
    assert_eq!(status.code, Some(0), "{status:?}");
    assert_eq!(status.stdout, "no hub is running\n");

    stale_socket(&run_dir(&env));
    let status = env.run(&["hub", "status", "--json"]).await;
    assert_eq!(status.code, Some(0), "{status:?}");
    assert_eq!(serde_json::from_str::<Value>(&status.stdout).expect("json"), json!([]));
    assert_eq!(status.stderr, "");

    let stop = env.run(&["hub", "stop"]).await;
    assert_eq!(stop.code, Some(0), "{stop:?}");
    assert_eq!(stop.stdout, "no hub is running\n");
}

#[tokio::test]
async fn hub_status_lists_a_running_hub_and_skips_a_stale_socket() {
    let env = TestEnv::new();
    let run_dir = run_dir(&env);
    stale_socket(&run_dir);
    let socket = run_dir.join("hub-0123456789ab.sock");
    let methods = fake_hub(socket.clone());

    let status = env.run(&["hub", "status", "--json"]).await;
    assert_eq!(status.code, Some(0), "{status:?}");
    assert_eq!(serde_json::from_str::<Value>(&status.stdout).expect("json"), json!([status_of(&socket)]));

    let status = env.run(&["hub", "status"]).await;
    assert_eq!(status.code, Some(0), "{status:?}");
    let rows: Vec<Vec<&str>> = status
        .stdout
        .lines()
        .filter(|line| line.starts_with('│'))
        .map(|line| line.split('│').map(str::trim).filter(|cell| !cell.is_empty()).collect())
        .collect();
    let socket_text = socket.display().to_string();
    assert_eq!(
        rows,
        [
            vec!["Hub / upstream", "Pid", "Status", "Config"],
            vec![socket_text.as_str(), "4242", "2 bridges", "/work/config.json5"],
            vec!["memory", "5151", "ready"],
            vec!["remote", "-", "needs sign-in"],
        ],
        "{}",
        status.stdout
    );
    assert!(!status.stdout.contains("000000000000"), "the stale socket is skipped: {}", status.stdout);
    assert!(status.stdout.contains("│   memory "), "upstreams are indented: {}", status.stdout);
    assert_eq!(*methods.lock().expect("methods"), ["foxxy-bridge/hubStatus", "foxxy-bridge/hubStatus"]);
}

#[tokio::test]
async fn hub_stop_asks_each_running_hub_to_stop_and_waits_for_it() {
    let env = TestEnv::new();
    let run_dir = run_dir(&env);
    stale_socket(&run_dir);
    let socket = run_dir.join("hub-0123456789ab.sock");
    let methods = fake_hub(socket.clone());

    let stop = env.run(&["hub", "stop"]).await;
    assert_eq!(stop.code, Some(0), "{stop:?}");
    assert_eq!(stop.stdout, "stopped the hub of `/work/config.json5` (pid 4242)\n");
    assert_eq!(*methods.lock().expect("methods"), ["foxxy-bridge/hubStatus", "foxxy-bridge/hubStop"]);
    assert!(!socket.exists());

    let status = env.run(&["hub", "status"]).await;
    assert_eq!(status.stdout, "no hub is running\n");
}

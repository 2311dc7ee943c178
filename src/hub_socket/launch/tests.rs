//! The launch protocol against stand-in hubs: shell scripts that record how they were
//! started, while the test plays the hub's socket.

use std::{
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    time::{Duration, Instant},
};

use super::{HubLifeLock, connect_or_start};
use crate::{
    hub_socket::{HubAddress, socket::bind},
    paths::StatePaths,
};

struct Setup {
    dir: tempfile::TempDir,
    address: HubAddress,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.json5");
    std::fs::write(&config, "{}").expect("write config");
    let address = HubAddress::for_config(&StatePaths::new(dir.path()), &config);
    Setup { dir, address }
}

impl Setup {
    /// A stand-in `foxxy-bridge` that appends a line (pid, session id, where its stdout
    /// goes, its arguments) to `starts` and then runs `then`.
    fn exe(&self, then: &str) -> PathBuf {
        let path = self.dir.path().join("fake-bridge");
        let starts = self.starts_path();
        let script = format!(
            "#!/bin/sh\necho \"$$ $(ps -o sid= -p $$ | tr -d ' ') $(readlink /proc/$$/fd/1) $*\" >> '{}'\n{then}\n",
            starts.display()
        );
        std::fs::write(&path, script).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    fn starts_path(&self) -> PathBuf {
        self.dir.path().join("starts")
    }

    fn starts(&self) -> Vec<String> {
        std::fs::read_to_string(self.starts_path()).unwrap_or_default().lines().map(str::to_owned).collect()
    }
}

/// The stand-in hubs of `setup` that are running: process group leaders whose command
/// line names its script (the script's command substitutions are its forks, not leaders).
/// A started script is visible here as soon as it was spawned, unlike in `starts`.
fn running(setup: &Setup) -> Vec<i32> {
    let script = setup.dir.path().join("fake-bridge").display().to_string();
    let entries = std::fs::read_dir("/proc").expect("read /proc");
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(&script))
                && process_group(*pid) == Some(*pid)
        })
        .collect()
}

/// The process group of `pid`: the third field after the command name in its `stat`.
fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(2)?.parse().ok()
}

/// Kill the stand-in hubs that still run, with their process groups (the script and its
/// `sleep`).
fn kill_running(setup: &Setup) -> usize {
    let pids = running(setup);
    for pid in &pids {
        // SAFETY: kill with the id of a stand-in hub, which leads its own process group.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    pids.len()
}

/// Play the hub: once a stand-in started, bind the socket and accept connections.
async fn serve_when_started(setup: &Setup) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while setup.starts().is_empty() {
        assert!(Instant::now() < deadline, "the hub was never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let listener = bind(&setup.address).expect("bind");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
}

#[tokio::test]
async fn a_running_hub_is_used_without_starting_one() {
    let setup = setup();
    let _listener = bind(&setup.address).expect("bind");
    let exe = setup.exe("exit 0");
    connect_or_start(&setup.address, &exe, Duration::from_secs(5)).await.expect("connect");
    assert!(setup.starts().is_empty(), "started a hub: {:?}", setup.starts());
}

#[tokio::test]
async fn the_hub_is_started_detached_with_its_config() {
    let setup = setup();
    let exe = setup.exe("sleep 30");
    let (connected, ()) = tokio::join!(
        connect_or_start(&setup.address, &exe, Duration::from_secs(10)),
        serve_when_started(&setup)
    );
    let starts = setup.starts();
    assert_eq!(kill_running(&setup), 1);
    connected.expect("connected to the started hub");
    assert_eq!(starts.len(), 1, "{starts:?}");
    let fields: Vec<&str> = starts[0].split(' ').collect();
    assert_eq!(fields[0], fields[1], "the hub leads a session of its own: {starts:?}");
    assert_eq!(fields[2], "/dev/null", "{starts:?}");
    let config = setup.address.config.display().to_string();
    assert_eq!(fields[3..], ["--config", config.as_str(), "hub", "serve"], "{starts:?}");
}

#[tokio::test]
async fn bridges_starting_at_once_start_one_hub() {
    let setup = setup();
    let exe = setup.exe("sleep 30");
    let wait = Duration::from_secs(10);
    let (first, second, third, ()) = tokio::join!(
        connect_or_start(&setup.address, &exe, wait),
        connect_or_start(&setup.address, &exe, wait),
        connect_or_start(&setup.address, &exe, wait),
        serve_when_started(&setup)
    );
    let running = kill_running(&setup);
    for connected in [first, second, third] {
        connected.expect("connected");
    }
    assert_eq!(running, 1, "hubs started");
}

#[tokio::test]
async fn a_hub_that_exits_at_once_is_reported_without_waiting_it_out() {
    let setup = setup();
    let exe = setup.exe("exit 3");
    let started = Instant::now();
    let error = connect_or_start(&setup.address, &exe, Duration::from_secs(30)).await.expect_err("no hub");
    assert!(started.elapsed() < Duration::from_secs(10), "waited {:?}", started.elapsed());
    let message = error.to_string();
    assert!(message.contains("exited (exit status: 3) before accepting"), "{message}");
    assert!(message.contains(&setup.address.log_dir.display().to_string()), "{message}");
}

#[tokio::test]
async fn a_hub_that_never_accepts_is_an_error_after_the_wait() {
    let setup = setup();
    let exe = setup.exe("sleep 30");
    let error = connect_or_start(&setup.address, &exe, Duration::from_millis(300)).await.expect_err("no hub");
    kill_running(&setup);
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    let message = error.to_string();
    assert!(message.contains("did not start within 0.3 s"), "{message}");
}

#[test]
fn one_hub_at_a_time_holds_the_life_lock() {
    let setup = setup();
    let held = HubLifeLock::acquire(&setup.address).expect("first");
    let error = HubLifeLock::acquire(&setup.address).expect_err("second");
    assert!(error.to_string().contains("is already running"), "{error}");
    assert!(error.to_string().contains(&setup.address.config.display().to_string()), "{error}");
    drop(held);
    let _again = HubLifeLock::acquire(&setup.address).expect("free again");
    let mode = std::fs::metadata(&setup.address.lock).expect("lock file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn a_start_lock_held_past_the_wait_is_an_error() {
    use fs2::FileExt;
    let setup = setup();
    std::fs::create_dir_all(setup.address.start_lock.parent().expect("run dir")).expect("run dir");
    std::fs::set_permissions(
        setup.address.start_lock.parent().expect("run dir"),
        std::fs::Permissions::from_mode(0o700),
    )
    .expect("chmod");
    let held = std::fs::File::create(&setup.address.start_lock).expect("lock file");
    held.lock_exclusive().expect("hold the start lock");
    let exe = setup.exe("exit 0");
    let error = connect_or_start(&setup.address, &exe, Duration::from_millis(200)).await.expect_err("locked");
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    assert!(error.to_string().contains("another bridge held"), "{error}");
    assert_eq!(kill_running(&setup), 0, "started a hub without the lock");
}

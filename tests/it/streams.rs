//! What stdin and stdout can be: pipes (every other test), a Unix socket pair (how
//! Node and Electron clients spawn servers), and a terminal or a file, which take the
//! blocking fallback. Each is served in full, and the bridge leaves the descriptors in
//! blocking mode when it exits.

use std::{
    fs::File,
    io::Write,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::net::UnixStream,
    },
    process::Stdio,
    time::Duration,
};

use serde_json::{Value, json};

use crate::support::*;

const EXIT_LIMIT: Duration = Duration::from_secs(10);

fn echo(id: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "fix__echo", "arguments": {"message": message}}})
}

fn nonblocking(fd: &impl AsRawFd) -> bool {
    // SAFETY: F_GETFL on a descriptor the caller owns for the call.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    assert!(flags >= 0, "fcntl: {}", std::io::Error::last_os_error());
    flags & libc::O_NONBLOCK != 0
}

/// `foxxy-bridge stdio` with one end of a socket pair as both its stdin and stdout, as
/// Node clients spawn servers; `probe` is a duplicate of that end, sharing its mode.
fn over_a_socket_pair(env: &TestEnv) -> (RawSession, UnixStream) {
    let (ours, theirs) = UnixStream::pair().expect("socket pair");
    let probe = theirs.try_clone().expect("dup");
    let stdout = theirs.try_clone().expect("dup");
    let child = env
        .command()
        .arg("stdio")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::from(OwnedFd::from(stdout)))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn foxxy-bridge stdio");
    ours.set_nonblocking(true).expect("non-blocking");
    let (read, write) = tokio::net::UnixStream::from_std(ours).expect("register").into_split();
    (RawSession::over(child, write, read), probe)
}

#[tokio::test]
async fn a_client_on_a_socket_pair_is_served_and_blocking_mode_comes_back() {
    let env = TestEnv::new();
    env.write_config(&json!({ "mcpServers": { "fix": fixture("fix", &[]) } }));
    let (mut raw, probe) = over_a_socket_pair(&env);
    raw.initialize().await;
    raw.send(&echo(1, "over a socket")).await;
    let reply = raw.response(&json!(1)).await;
    assert_eq!(reply["result"]["content"][0]["text"], "fix: over a socket", "{reply}");
    // Served by the async reactor, not by blocking reads on helper threads.
    assert!(nonblocking(&probe), "the bridge did not drive the socket itself");

    raw.close_stdin();
    let status =
        tokio::time::timeout(EXIT_LIMIT, raw.child.wait()).await.expect("exits on EOF").expect("wait");
    assert!(status.success(), "{status}");
    assert!(!nonblocking(&probe), "the socket was left in non-blocking mode");
}

#[tokio::test]
async fn blocking_mode_comes_back_when_the_session_never_starts() {
    let env = TestEnv::new();
    env.write_config(&json!({ "mcpServers": {} }));
    let (mut raw, probe) = over_a_socket_pair(&env);
    // No `initialize`: the session cannot start, and ends with an error once stdin
    // closes (or, if EOF is seen first, without one).
    raw.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})).await;
    wait_until(Duration::from_secs(10), || nonblocking(&probe)).await;
    raw.close_stdin();
    let status =
        tokio::time::timeout(EXIT_LIMIT, raw.child.wait()).await.expect("exits on EOF").expect("wait");
    assert!(matches!(status.code(), Some(0 | 1)), "{status}");
    assert!(!nonblocking(&probe), "the socket was left in non-blocking mode");
}

#[tokio::test]
async fn a_terminal_on_stdin_and_a_file_on_stdout_are_served() {
    let env = TestEnv::new();
    env.write_config(&json!({ "mcpServers": { "fix": fixture("fix", &[]) } }));
    let (mut terminal, tty) = open_raw_pty();
    let probe = tty.try_clone().expect("dup");
    let output = env.path("stdout.jsonl");
    let mut child = env
        .command()
        .arg("stdio")
        .stdin(Stdio::from(tty))
        .stdout(Stdio::from(File::create(&output).expect("create stdout file")))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn foxxy-bridge stdio");
    let mut send = |message: Value| {
        writeln!(terminal, "{message}").expect("write to the terminal");
        terminal.flush().expect("flush");
    };
    let reply = |id: i64| {
        let output = output.clone();
        async move {
            let found = || {
                std::fs::read_to_string(&output)
                    .unwrap_or_default()
                    .lines()
                    .map(|line| serde_json::from_str::<Value>(line).expect("stdout holds JSON lines only"))
                    .find(|message| message["id"] == id && message.get("method").is_none())
            };
            wait_until(Duration::from_secs(30), || found().is_some()).await;
            found().expect("reply")
        }
    };
    send(json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "tty", "version": "1"}}
    }));
    assert!(reply(0).await.get("result").is_some());
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(echo(1, "typed"));
    let answer = reply(1).await;
    assert_eq!(answer["result"]["content"][0]["text"], "fix: typed", "{answer}");
    assert!(!nonblocking(&probe), "a terminal must stay in blocking mode");

    // Closing the terminal's master side hangs up stdin: the bridge exits.
    drop(terminal);
    let status =
        tokio::time::timeout(EXIT_LIMIT, child.wait()).await.expect("exits on hang-up").expect("wait");
    assert!(status.success(), "{status}");
}

/// A pseudo-terminal in raw mode (no echo, no line editing): the master side as a file
/// to type into, and the terminal itself.
fn open_raw_pty() -> (File, OwnedFd) {
    let (mut master, mut tty) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the locals; the name, termios and
    // window-size pointers may be null. The descriptors are owned right after.
    let opened = unsafe {
        libc::openpty(&mut master, &mut tty, std::ptr::null_mut(), std::ptr::null(), std::ptr::null())
    };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    for fd in [master, tty] {
        // openpty gives no O_CLOEXEC: without it the bridge would inherit the master side
        // and its own stdin would never hang up. (nextest runs each test in a process of
        // its own, so no other test spawns in between.)
        // SAFETY: F_SETFD on a descriptor just opened.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }, 0);
    }
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    let (master, tty) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(tty)) };
    // SAFETY: tcgetattr/tcsetattr on the terminal just opened, with a termios it fills.
    unsafe {
        let mut settings: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(tty.as_raw_fd(), &mut settings), 0);
        libc::cfmakeraw(&mut settings);
        assert_eq!(libc::tcsetattr(tty.as_raw_fd(), libc::TCSANOW, &settings), 0);
    }
    (master, tty)
}

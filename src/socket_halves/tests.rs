use std::{
    io::{Read as _, Write as _},
    os::unix::net::UnixStream,
    time::Duration,
};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use super::split;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
}

#[test]
fn lines_go_both_ways_and_shutdown_ends_the_peers_reading() {
    runtime().block_on(async {
        let (ours, theirs) = UnixStream::pair().expect("a socket pair");
        let (reader, mut writer) = split(ours).expect("split");
        let peer = std::thread::spawn(move || {
            let mut theirs = theirs;
            theirs.write_all(b"from the peer\n").expect("peer writes");
            let mut received = String::new();
            theirs.read_to_string(&mut received).expect("peer reads to the end");
            received
        });
        let mut lines = BufReader::new(reader);
        let mut line = String::new();
        lines.read_line(&mut line).await.expect("read a line");
        assert_eq!(line, "from the peer\n");
        writer.write_all(b"to the peer\n").await.expect("write");
        writer.shutdown().await.expect("shutdown");
        let received =
            tokio::task::spawn_blocking(move || peer.join().expect("peer thread")).await.expect("join");
        assert_eq!(received, "to the peer\n");
        let mut rest = Vec::new();
        assert_eq!(lines.read_to_end(&mut rest).await.expect("the peer's end"), 0);
    });
}

#[test]
fn a_write_larger_than_the_socket_buffer_waits_for_room_and_arrives_whole() {
    runtime().block_on(async {
        let (ours, theirs) = UnixStream::pair().expect("a socket pair");
        let (_reader, mut writer) = split(ours).expect("split");
        let message: Vec<u8> = (0..8 * 1024 * 1024).map(|index| (index % 251) as u8).collect();
        let expected = message.clone();
        let peer = std::thread::spawn(move || {
            let mut theirs = theirs;
            let mut received = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                // A slow reader: the writer finds the socket full many times.
                std::thread::sleep(Duration::from_micros(50));
                match theirs.read(&mut chunk).expect("peer reads") {
                    0 => return received,
                    read => received.extend_from_slice(&chunk[..read]),
                }
            }
        });
        writer.write_all(&message).await.expect("write all");
        writer.shutdown().await.expect("shutdown");
        let received =
            tokio::task::spawn_blocking(move || peer.join().expect("peer thread")).await.expect("join");
        assert!(
            received == expected,
            "received {} bytes, not the {} written",
            received.len(),
            expected.len()
        );
    });
}

/// The context switches the thread `tid` of this process made of its own accord.
fn voluntary_switches(tid: i32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).expect("the thread's status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|count| count.trim().parse().ok())
        .expect("voluntary_ctxt_switches")
}

#[test]
fn the_peer_reading_what_was_written_does_not_wake_the_writers_thread() {
    const MESSAGES: usize = 20;
    let (ours, theirs) = UnixStream::pair().expect("a socket pair");
    let (written_tx, written_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let writing = std::thread::spawn(move || {
        runtime().block_on(async move {
            let (mut reader, mut writer) = split(ours).expect("split");
            for _ in 0..MESSAGES {
                writer.write_all(b"message\n").await.expect("write");
            }
            // SAFETY: gettid has no preconditions.
            written_tx.send(unsafe { libc::gettid() }).expect("tell the test");
            // Wait for an answer, as a session does after sending a request.
            let mut answer = [0u8; 1];
            tokio::select! {
                _ = stop_rx => {}
                _ = reader.read(&mut answer) => {}
            }
        });
    });
    let tid = written_rx.recv().expect("the writer's thread id");
    std::thread::sleep(Duration::from_millis(50));
    let before = voluntary_switches(tid);
    let mut theirs = theirs;
    for _ in 0..MESSAGES {
        // One message per read: each frees what the writer sent, and the socket has
        // room again.
        let mut message = [0u8; 8];
        theirs.read_exact(&mut message).expect("read one message");
        assert_eq!(&message, b"message\n");
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(50));
    let after = voluntary_switches(tid);
    let _ = stop_tx.send(());
    writing.join().expect("the writer's thread");
    assert_eq!(after - before, 0, "the writer's thread woke {} times while the peer read", after - before);
}

#[test]
fn what_comes_after_a_read_that_took_everything_is_read_too() {
    runtime().block_on(async {
        let (ours, mut theirs) = UnixStream::pair().expect("a socket pair");
        let (mut reader, _writer) = split(ours).expect("split");
        let mut buffer = [0_u8; 64];
        for round in 0..20_u8 {
            // Each read takes less than the buffer holds, so it ends the socket's
            // readiness; the next message must still wake the reader.
            let message = [b'a' + round; 3];
            let peer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2));
                theirs.write_all(&message).expect("peer writes");
                theirs
            });
            let read = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buffer))
                .await
                .expect("woken for the message")
                .expect("read");
            assert_eq!(&buffer[..read], &message);
            theirs =
                tokio::task::spawn_blocking(move || peer.join().expect("peer thread")).await.expect("join");
        }
    });
}

//! Tests of the control requests: telling them from other first lines, their answer
//! lines, and the client side against stand-in hubs.

use std::{path::PathBuf, time::Duration};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{
    Control, ControlKind, HubStatus, HubUpstreamStatus, answer_line, parse_control, query_status,
    request_stop,
};

fn check(line: &str, expected: Option<(Value, ControlKind)>) {
    let expected = expected.map(|(id, kind)| Control { id, kind });
    assert_eq!(parse_control(line.as_bytes()), expected, "{line}");
}

#[test]
fn control_requests_are_told_from_everything_else() {
    check(
        r#"{"jsonrpc":"2.0","id":1,"method":"foxxy-bridge/hubStatus"}"#,
        Some((json!(1), ControlKind::Status)),
    );
    check(
        r#"{"jsonrpc":"2.0","id":"s","method":"foxxy-bridge/hubStop"}"#,
        Some((json!("s"), ControlKind::Stop)),
    );
    check(
        r#"{"jsonrpc":"2.0","id":2,"method":"foxxy-bridge/hubStop","params":{}}"#,
        Some((json!(2), ControlKind::Stop)),
    );
    check(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":{}}}"#, None);
    check(r#"{"jsonrpc":"2.0","method":"foxxy-bridge/hubStop"}"#, None);
    check(r#"{"jsonrpc":"2.0","id":1,"method":"foxxy-bridge/hubReload"}"#, None);
    check("not json", None);
    check("", None);
}

#[test]
fn an_answer_is_one_response_line() {
    let line = answer_line(&json!(7), &json!({}));
    assert_eq!(line, b"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n");
    let line = answer_line(&json!("x"), &status(PathBuf::from("/s.sock")));
    assert_eq!(line.iter().filter(|&&byte| byte == b'\n').count(), 1);
    let value: Value = serde_json::from_slice(&line).expect("json");
    assert_eq!(
        value["result"],
        json!({"socket": "/s.sock", "pid": 42, "config": "/c.json5", "bridges": 2, "upstreams": [
            {"name": "memory", "status": "ready", "pid": 4242},
            {"name": "remote", "status": "needs sign-in", "pid": null},
        ]})
    );
}

fn status(socket: PathBuf) -> HubStatus {
    HubStatus {
        socket,
        pid: 42,
        config: PathBuf::from("/c.json5"),
        bridges: 2,
        upstreams: vec![
            HubUpstreamStatus { name: "memory".into(), status: "ready".into(), pid: Some(4242) },
            HubUpstreamStatus { name: "remote".into(), status: "needs sign-in".into(), pid: None },
        ],
    }
}

/// A stand-in hub on `socket` that answers each connection's first line as a hub does,
/// and reports the control requests it got.
fn serve(socket: PathBuf) -> tokio::sync::mpsc::UnboundedReceiver<ControlKind> {
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            BufReader::new(read).read_line(&mut line).await.expect("read");
            let control = parse_control(line.as_bytes()).expect("a control request");
            let answer = match control.kind {
                ControlKind::Status => answer_line(&control.id, &status(socket.clone())),
                ControlKind::Stop => answer_line(&control.id, &json!({})),
            };
            write.write_all(&answer).await.expect("write");
            let _ = sender.send(control.kind);
        }
    });
    receiver
}

#[tokio::test]
async fn status_and_stop_round_trip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("hub.sock");
    let mut seen = serve(socket.clone());
    let limit = Duration::from_secs(5);
    assert_eq!(query_status(&socket, limit).await.expect("status"), status(socket.clone()));
    request_stop(&socket, limit).await.expect("stop");
    assert_eq!(seen.recv().await, Some(ControlKind::Status));
    assert_eq!(seen.recv().await, Some(ControlKind::Stop));
}

#[tokio::test]
async fn a_hub_that_does_not_answer_is_an_error_within_the_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("hub.sock");
    let _listener = tokio::net::UnixListener::bind(&socket).expect("bind");
    let error = query_status(&socket, Duration::from_millis(100)).await.expect_err("no answer");
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    assert!(error.to_string().contains("did not answer within 0.1 s"), "{error}");

    let error = query_status(&dir.path().join("none.sock"), Duration::from_secs(1)).await.expect_err("none");
    assert!(crate::hub_socket::socket::no_hub_listens(&error), "{error}");
}

#[tokio::test]
async fn an_error_answer_is_reported_with_its_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("hub.sock");
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        BufReader::new(read).read_line(&mut line).await.expect("read");
        let answer = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"method not found"}}"#;
        write.write_all(format!("{answer}\n").as_bytes()).await.expect("write");
    });
    let error = request_stop(&socket, Duration::from_secs(5)).await.expect_err("refused");
    assert!(error.to_string().ends_with("refused: method not found"), "{error}");
}

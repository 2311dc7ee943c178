//! The hub's control requests, both sides. Instead of `initialize`, the first line of a
//! connection may be `foxxy-bridge/hubStatus` (answered with a [`HubStatus`], then the
//! connection is closed) or `foxxy-bridge/hubStop` (answered with `{}`, then the hub ends
//! its upstreams and exits). `hub status` and `hub stop` send them with [`query_status`]
//! and [`request_stop`].

use std::{io, path::Path, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::socket::connect;
use crate::wire::{BoundedLineReader, Framed};

pub const STATUS_METHOD: &str = "foxxy-bridge/hubStatus";
pub const STOP_METHOD: &str = "foxxy-bridge/hubStop";

/// The longest answer a client reads: a status lists a few dozen upstreams at most.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// A control request read from a connection's first line.
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    /// The request's JSON-RPC id, for the answer.
    pub id: Value,
    pub kind: ControlKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    Status,
    Stop,
}

/// What a running hub reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubStatus {
    pub socket: PathBuf,
    pub pid: u32,
    pub config: PathBuf,
    /// Distinct bridge processes with a live connection.
    pub bridges: usize,
    pub upstreams: Vec<HubUpstreamStatus>,
}

/// One shared upstream in a [`HubStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubUpstreamStatus {
    pub name: String,
    /// `ready`, `connecting`, `retrying`, `failed`, `signing in` or `needs sign-in`.
    pub status: String,
    /// The process id of a local upstream; none for a remote one or one not running.
    pub pid: Option<u32>,
}

/// The control request on `line`, or `None` when the line is anything else (such as an
/// `initialize`, or a notification without an id).
pub fn parse_control(line: &[u8]) -> Option<Control> {
    #[derive(Deserialize)]
    struct Request {
        id: Option<Value>,
        method: String,
    }
    let request: Request = serde_json::from_slice(line).ok()?;
    let kind = match request.method.as_str() {
        STATUS_METHOD => ControlKind::Status,
        STOP_METHOD => ControlKind::Stop,
        _ => return None,
    };
    Some(Control { id: request.id?, kind })
}

/// The JSON-RPC response line (with its newline) answering request `id` with `result`.
pub fn answer_line(id: &Value, result: &impl Serialize) -> Vec<u8> {
    #[derive(Serialize)]
    struct Response<'a, T> {
        jsonrpc: &'static str,
        id: &'a Value,
        result: &'a T,
    }
    let mut line = serde_json::to_vec(&Response { jsonrpc: "2.0", id, result }).unwrap_or_else(|error| {
        let error = serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": -32603, "message": format!("cannot encode the answer: {error}")},
        });
        serde_json::to_vec(&error).expect("a JSON value always encodes")
    });
    line.push(b'\n');
    line
}

/// Ask the hub listening on `socket` for its status, within `limit`.
pub async fn query_status(socket: &Path, limit: Duration) -> io::Result<HubStatus> {
    let result = exchange(socket, STATUS_METHOD, limit).await?;
    serde_json::from_value(result).map_err(|error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the hub at `{}` sent a status that cannot be read: {error}", socket.display()),
        )
    })
}

/// Ask the hub listening on `socket` to stop; returns once it said it will, within `limit`.
pub async fn request_stop(socket: &Path, limit: Duration) -> io::Result<()> {
    exchange(socket, STOP_METHOD, limit).await.map(drop)
}

/// Send one request to the hub and read the result of its one-line answer.
async fn exchange(socket: &Path, method: &str, limit: Duration) -> io::Result<Value> {
    let exchange = async {
        let mut stream = connect(socket).await?;
        let request = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method});
        let mut line = serde_json::to_vec(&request)?;
        line.push(b'\n');
        stream.write_all(&line).await?;
        let mut reader = BoundedLineReader::new(stream, MAX_ANSWER_BYTES);
        match reader.next().await? {
            Framed::Line => read_answer(socket, reader.line()),
            Framed::End => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the hub at `{}` closed the connection without answering", socket.display()),
            )),
            Framed::OverLimit | Framed::Oversized => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the hub at `{}` answered with over {MAX_ANSWER_BYTES} bytes", socket.display()),
            )),
        }
    };
    tokio::time::timeout(limit, exchange).await.unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the hub at `{}` did not answer within {} s", socket.display(), limit.as_secs_f64()),
        ))
    })
}

/// The `result` of a JSON-RPC response line, or its error as an `io::Error`.
fn read_answer(socket: &Path, line: &[u8]) -> io::Result<Value> {
    #[derive(Deserialize)]
    struct Response {
        result: Option<Value>,
        error: Option<ErrorObject>,
    }
    #[derive(Deserialize)]
    struct ErrorObject {
        message: String,
    }
    let invalid = |what: String| {
        io::Error::new(io::ErrorKind::InvalidData, format!("the hub at `{}` {what}", socket.display()))
    };
    let response: Response = serde_json::from_slice(line)
        .map_err(|error| invalid(format!("sent an unreadable answer: {error}")))?;
    match (response.result, response.error) {
        (Some(result), None) => Ok(result),
        (_, Some(error)) => Err(invalid(format!("refused: {}", error.message))),
        (None, None) => Err(invalid("sent an answer with neither result nor error".to_owned())),
    }
}

#[cfg(test)]
mod tests;

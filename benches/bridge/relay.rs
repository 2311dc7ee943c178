//! The floor rows: what any stdio proxy costs on this machine, measured with a process
//! that only copies bytes between the pipes (`bench --relay COMMAND…`) in the bridge's
//! place.

use std::process::{ExitCode, Stdio};

use crate::{
    progress,
    report::{Row, quantile, us},
    scenarios::{self, Pair, Plan},
    subject::{Session, echo_call},
    throughput_row,
};

/// The floor of any stdio proxy on this machine: the same direct-vs-proxied figures
/// with the bridge replaced by a process that only copies bytes between the pipes.
/// `upstream` is the server's command line.
pub async fn relay_rows(rows: &mut Vec<Row>, upstream: &[String], plan: &Plan) -> anyhow::Result<()> {
    progress("tools/call through a byte relay (the floor)");
    let (program, args) = upstream.split_first().ok_or_else(|| anyhow::anyhow!("no upstream command"))?;
    let mut direct = tokio::process::Command::new(program);
    direct.args(args);
    let mut relay = tokio::process::Command::new(std::env::current_exe()?);
    relay.arg("--relay").args(upstream);
    let pair = Pair {
        direct: Session::spawn(direct, Stdio::null()).await?,
        direct_call: echo_call("echo"),
        bridge: Session::spawn(relay, Stdio::null()).await?,
        bridge_call: echo_call("echo"),
    };
    let latency = scenarios::latency(&pair, plan).await?;
    let throughput = scenarios::throughput(&pair, plan).await?;
    pair.close().await;
    let samples = &latency.samples;
    for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
        let row = Row::durations(
            format!("  floor: same {name} with a byte-copying relay process instead of the bridge"),
            quantile(&samples.direct, q),
            quantile(&samples.bridge, q),
            us,
        );
        rows.push(row);
    }
    let metric = "  floor: same throughput with a byte-copying relay process instead of the bridge";
    rows.push(throughput_row(metric, &throughput).0);
    if let (Some(relay), Some(upstream)) = (throughput.bridge_cpu, throughput.bridge_upstream_cpu) {
        let mut row =
            Row::new("  floor: CPU time per call at that load: the relay alone / the upstream behind it");
        row.bridge = format!("{} / {}", us(relay.on_cpu), us(upstream.on_cpu));
        if let Some(direct) = throughput.direct_cpu {
            row.direct = format!("– / {}", us(direct.on_cpu));
        }
        rows.push(row);
    }
    Ok(())
}

/// `bench --relay COMMAND…`: run COMMAND and copy stdin to it and its stdout back, byte
/// for byte, one thread per direction, no parsing. A stand-in for the cheapest
/// possible stdio proxy.
pub fn relay(command: &[String]) -> ExitCode {
    relay_between(std::io::stdin(), std::io::stdout(), command, "--relay")
}

/// `bench --hub-relay SOCKET COMMAND…`: listen on the Unix socket SOCKET (where a bridge
/// looks for its hub), accept one connection, run COMMAND and copy between the two as
/// `--relay` does. A stand-in for the cheapest possible hub: it serves one bridge and
/// one upstream, whose `initialize` answers the bridge's.
pub fn hub_relay(arguments: &[String]) -> ExitCode {
    let Some((socket, command)) = arguments.split_first() else { return ExitCode::from(2) };
    let Some(connection) = accept_one(socket, "--hub-relay") else { return ExitCode::FAILURE };
    let Ok(reading) = connection.try_clone() else { return ExitCode::FAILURE };
    relay_between(reading, connection, command, "--hub-relay")
}

/// `bench --hub-relay-answers SOCKET COMMAND…`: `--hub-relay` with COMMAND's stdin the
/// accepted connection itself, so that the bridge's requests reach COMMAND with no
/// process between, and only its answers are copied back. A stand-in for a hub that
/// hands each bridge the upstream's stdin: the floor of that design.
pub fn hub_relay_answers(arguments: &[String]) -> ExitCode {
    let Some((socket, command)) = arguments.split_first() else { return ExitCode::from(2) };
    let Some((program, args)) = command.split_first() else { return ExitCode::from(2) };
    let Some(connection) = accept_one(socket, "--hub-relay-answers") else { return ExitCode::FAILURE };
    let Ok(requests) = connection.try_clone() else { return ExitCode::FAILURE };
    let spawned = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(requests)))
        .stdout(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            eprintln!("bench --hub-relay-answers: cannot spawn {program}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let Some(mut answers) = child.stdout.take() else { return ExitCode::FAILURE };
    let mut connection = connection;
    copy(&mut answers, &mut connection);
    let _ = child.wait();
    ExitCode::SUCCESS
}

/// Listen on the Unix socket `socket` (where a bridge looks for its hub, in a 0700
/// directory) and accept one connection; the socket file is gone again after.
fn accept_one(socket: &str, mode: &str) -> Option<std::os::unix::net::UnixStream> {
    use std::os::unix::fs::PermissionsExt;
    let socket = std::path::Path::new(socket);
    let listening = (|| {
        if let Some(dir) = socket.parent() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let listener = std::os::unix::net::UnixListener::bind(socket)?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
        listener.accept()
    })();
    let _ = std::fs::remove_file(socket);
    match listening {
        Ok((connection, _)) => Some(connection),
        Err(error) => {
            eprintln!("bench {mode}: cannot serve {}: {error}", socket.display());
            None
        }
    }
}

/// `bench --hub-relay-async SOCKET COMMAND…`: `--hub-relay` on a single-threaded async
/// runtime (readiness from epoll, as the hub's I/O): the floor of an async hub.
pub fn hub_relay_async(arguments: &[String]) -> ExitCode {
    let Some((socket, command)) = arguments.split_first() else { return ExitCode::from(2) };
    let Some((program, args)) = command.split_first() else { return ExitCode::from(2) };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return ExitCode::FAILURE;
    };
    // The one connection is accepted before the relay starts, blocking, as the others do.
    let Some(connection) = accept_one(socket, "--hub-relay-async") else { return ExitCode::FAILURE };
    let relayed = runtime.block_on(async {
        let (mut from_bridge, mut to_bridge) = foxxy_bridge::socket_halves::split(connection)?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let (Some(mut child_in), Some(mut child_out)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("no pipes"));
        };
        let inbound = async move {
            let _ = tokio::io::copy(&mut from_bridge, &mut child_in).await;
        };
        let outbound = async move {
            let _ = tokio::io::copy(&mut child_out, &mut to_bridge).await;
        };
        tokio::join!(inbound, outbound);
        let _ = child.wait().await;
        Ok::<(), std::io::Error>(())
    });
    match relayed {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench --hub-relay-async: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Run `command`, copy `input` to its stdin and its stdout to `output` until either
/// ends.
fn relay_between(
    mut input: impl std::io::Read + Send + 'static,
    mut output: impl std::io::Write,
    command: &[String],
    mode: &str,
) -> ExitCode {
    let Some((program, args)) = command.split_first() else { return ExitCode::from(2) };
    let mut child = match std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => {
            eprintln!("bench {mode}: cannot spawn {program}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (Some(mut child_in), Some(mut child_out)) = (child.stdin.take(), child.stdout.take()) else {
        return ExitCode::FAILURE;
    };
    // The input's EOF drops `child_in`, the child sees EOF and exits, its stdout ends.
    let inbound = std::thread::spawn(move || copy(&mut input, &mut child_in));
    copy(&mut child_out, &mut output);
    let _ = inbound.join();
    let _ = child.wait();
    ExitCode::SUCCESS
}

/// Copy `from` to `to` until either ends, each read written and flushed at once.
fn copy(from: &mut impl std::io::Read, to: &mut impl std::io::Write) {
    let mut buffer = vec![0; 64 * 1024];
    while let Ok(read @ 1..) = from.read(&mut buffer) {
        if to.write_all(&buffer[..read]).and_then(|()| to.flush()).is_err() {
            break;
        }
    }
}

//! The watchdog: a helper process (this binary, `foxxy-bridge __watchdog`) that ends the
//! upstreams' process groups when the bridge dies without ending them itself (SIGKILL,
//! a crash), on every Unix, where Linux's parent-death signal reaches only the direct
//! child and macOS has none.
//!
//! The bridge starts it once, just before it starts the first upstream's process group
//! ([`start`]; a bridge whose upstreams are all remote or shared runs none), with a
//! pipe to its stdin and nothing else: its stdout and stderr are `/dev/null`, so the
//! MCP client never sees it, and it is the leader of its own process group, so a signal
//! to the bridge's group leaves it to do its work. The bridge writes `+PGID` when it
//! starts a child's process group and `-PGID` once the group is gone ([`started`],
//! [`ended`]). The write end is close-on-exec, held by the bridge alone; when the bridge
//! exits, however it exits, the watchdog reads end-of-file, sends SIGTERM and then
//! SIGKILL to the groups still recorded, and exits. It never outlives the pipe.

use std::{
    collections::BTreeSet,
    io::{BufRead, Write},
    os::{fd::AsRawFd, unix::process::CommandExt},
    process::{ChildStdin, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::Duration,
};

use crate::locks::Unpoisoned;

/// The hidden subcommand that runs the watchdog.
pub const SUBCOMMAND: &str = "__watchdog";

/// How long recorded groups get between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_millis(300);

/// The write end of the watchdog's pipe; `None` inside when it could not be started.
static PIPE: OnceLock<Option<Mutex<ChildStdin>>> = OnceLock::new();

/// Start the watchdog of this process (once; later calls do nothing), before the first
/// process group it is to watch, so that no group exists unwatched. Failing to start it
/// is logged, and the bridge runs without it.
pub fn start() {
    PIPE.get_or_init(|| match spawn() {
        Ok(pipe) => Some(Mutex::new(pipe)),
        Err(error) => {
            tracing::warn!(
                "could not start the watchdog that ends upstreams if the bridge is killed: {error}"
            );
            None
        }
    });
}

fn spawn() -> std::io::Result<ChildStdin> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg(SUBCOMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    let pipe = child.stdin.take().ok_or_else(|| std::io::Error::other("no pipe to the watchdog"))?;
    // A record is a few bytes and the watchdog drains the pipe at once; non-blocking, a
    // stuck watchdog costs a lost record, never a stalled bridge.
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fd = pipe.as_raw_fd();
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
    // The watchdog runs until this process ends; its exit status is of no interest, and
    // it is reaped by init once this process is gone.
    drop(child);
    Ok(pipe)
}

/// The process group `pgid` was started.
pub fn started(pgid: libc::pid_t) {
    record(b'+', pgid);
}

/// The process group `pgid` is gone.
pub fn ended(pgid: libc::pid_t) {
    record(b'-', pgid);
}

fn record(sign: u8, pgid: libc::pid_t) {
    let Some(Some(pipe)) = PIPE.get() else { return };
    let mut line = vec![sign];
    line.extend_from_slice(itoa::Buffer::new().format(pgid).as_bytes());
    line.push(b'\n');
    let mut pipe = pipe.lock_unpoisoned();
    // A failure means the watchdog is gone; nothing better can be done about it here.
    let _ = pipe.write_all(&line);
}

/// The watchdog itself: record groups from stdin until end-of-file, then end them.
pub fn serve() {
    let mut groups = BTreeSet::new();
    let stdin = std::io::stdin();
    for line in stdin.lock().split(b'\n') {
        let Ok(line) = line else { break };
        let Some((&sign, number)) = line.split_first() else { continue };
        let Some(pgid) = std::str::from_utf8(number).ok().and_then(|text| text.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // Only real groups: a zero or negative id would signal far more than one group.
        if pgid <= 1 {
            continue;
        }
        match sign {
            b'+' => groups.insert(pgid),
            b'-' => groups.remove(&pgid),
            _ => false,
        };
    }
    if groups.is_empty() {
        return;
    }
    signal_all(&groups, libc::SIGTERM);
    std::thread::sleep(TERM_GRACE);
    signal_all(&groups, libc::SIGKILL);
}

fn signal_all(groups: &BTreeSet<libc::pid_t>, signal: libc::c_int) {
    for &pgid in groups {
        // SAFETY: killpg only sends a signal; a group that is gone yields ESRCH.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}

//! Finding the hub of a config file, or starting it, and the lock a serving hub holds.
//!
//! A bridge that needs the hub connects to its socket; when nobody accepts, it takes the
//! start lock (`hub-<id>.start`), tries once more (another bridge may have started the
//! hub meanwhile), and otherwise starts `foxxy-bridge --config <config> hub serve`
//! detached, in a session of its own so that it outlives the bridge, and waits for the
//! socket to accept. The start lock is held until then, so bridges starting at once
//! start one hub. The serving hub holds its life lock (`hub-<id>.lock`) for as long as
//! it runs: a second hub of the same config exits at once.

use std::{
    fs::File,
    io,
    path::Path,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use fs2::FileExt;
use tokio::{net::UnixStream, process::Command, sync::oneshot};

use super::{
    HubAddress,
    socket::{self, connect, no_hub_listens},
};

/// How often a blocked start lock is tried again.
const LOCK_POLL: Duration = Duration::from_millis(10);
/// The first and the longest pause between attempts to connect to a starting hub.
const CONNECT_POLL_FIRST: Duration = Duration::from_millis(10);
const CONNECT_POLL_MAX: Duration = Duration::from_millis(50);

/// A connection to the hub of `address`, starting the hub (`exe`, this binary) when none
/// runs. `wait` bounds the whole: waiting for another bridge's start and for the hub's
/// socket to accept.
pub async fn connect_or_start(address: &HubAddress, exe: &Path, wait: Duration) -> io::Result<UnixStream> {
    match connect(&address.socket).await {
        Ok(stream) => return Ok(stream),
        Err(error) if !no_hub_listens(&error) => return Err(error),
        Err(_) => {}
    }
    let deadline = Instant::now() + wait;
    socket::ensure_run_dir(socket::run_dir(&address.socket)?)?;
    let start_lock = lock_start(address, deadline.saturating_duration_since(Instant::now())).await?;
    if let Ok(stream) = connect(&address.socket).await {
        return Ok(stream);
    }
    let mut exited = spawn_hub(address, exe)?;
    let mut pause = CONNECT_POLL_FIRST;
    let result = loop {
        match connect(&address.socket).await {
            Ok(stream) => break Ok(stream),
            Err(error) if !no_hub_listens(&error) => break Err(error),
            Err(_) => {}
        }
        let now = Instant::now();
        if now >= deadline {
            break Err(did_not_start(address, &format!("did not start within {} s", wait.as_secs_f64())));
        }
        tokio::select! {
            () = tokio::time::sleep(pause.min(deadline - now)) => {}
            status = &mut exited => {
                // One more try: it may have exited because a hub of this config runs.
                if let Ok(stream) = connect(&address.socket).await {
                    break Ok(stream);
                }
                let how = match status {
                    Ok(Ok(status)) => format!("exited ({status}) before accepting"),
                    _ => "exited before accepting".to_owned(),
                };
                break Err(did_not_start(address, &how));
            }
        }
        pause = (pause * 2).min(CONNECT_POLL_MAX);
    };
    drop(start_lock);
    result
}

fn did_not_start(address: &HubAddress, how: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "the hub for `{}` {how}; see its lines (tagged `hub`) in the log file in `{}`",
            address.config.display(),
            address.log_dir.display()
        ),
    )
}

/// Start `<exe> --config <config> hub serve` in a session of its own, with stdin, stdout
/// and stderr on `/dev/null` and this process's environment. It is not ended with the
/// bridge; a task waits for it so that it leaves no zombie should it exit while the
/// bridge runs, and the returned receiver gets its exit status then.
fn spawn_hub(
    address: &HubAddress,
    exe: &Path,
) -> io::Result<oneshot::Receiver<io::Result<std::process::ExitStatus>>> {
    let mut command = Command::new(exe);
    command
        .arg("--config")
        .arg(&address.config)
        .args(["hub", "serve"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(false);
    // SAFETY: the closure runs in the forked child before exec and only calls setsid,
    // which is async-signal-safe. The child is not a process group leader (it has a new
    // pid), so setsid makes it the leader of a new session and process group.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|error| {
        io::Error::new(error.kind(), format!("cannot start the hub `{}`: {error}", exe.display()))
    })?;
    tracing::info!(hub_id = %address.id, pid = child.id(), config = %address.config.display(), "started a hub");
    let (sender, receiver) = oneshot::channel();
    tokio::spawn(async move {
        let _ = sender.send(child.wait().await);
    });
    Ok(receiver)
}

/// The start lock of a hub, held while a bridge starts it. Released on drop.
#[must_use = "the lock is released when dropped"]
struct StartLock {
    _file: File,
}

/// Take the start lock, waiting up to `wait` while another bridge holds it.
async fn lock_start(address: &HubAddress, wait: Duration) -> io::Result<StartLock> {
    /// Set when the future is dropped, so that the blocking wait gives up at its next poll.
    struct AbandonOnDrop(Arc<AtomicBool>);
    impl Drop for AbandonOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let abandoned = AbandonOnDrop(Arc::new(AtomicBool::new(false)));
    let (path, flag) = (address.start_lock.clone(), Arc::clone(&abandoned.0));
    let file = tokio::task::spawn_blocking(move || {
        let file = open_lock_file(&path)?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock_exclusive() {
                Ok(()) => return Ok(file),
                Err(error) if is_contended(&error) => {}
                Err(error) => return Err(with_path("cannot lock", &path, error)),
            }
            let now = Instant::now();
            if now >= deadline || flag.load(Ordering::Relaxed) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "another bridge held `{}` for over {} s while starting the hub",
                        path.display(),
                        wait.as_secs_f64()
                    ),
                ));
            }
            std::thread::sleep(LOCK_POLL.min(deadline - now));
        }
    })
    .await
    .map_err(|join_error| io::Error::other(format!("the start lock's wait failed: {join_error}")))??;
    Ok(StartLock { _file: file })
}

/// The serving hub's life lock: held for as long as the value lives, so that one hub at a
/// time serves a config file. Released on drop, or by the system when the hub dies.
#[must_use = "the lock is released when dropped"]
#[derive(Debug)]
pub struct HubLifeLock {
    _file: File,
}

impl HubLifeLock {
    /// Take the life lock of `address` without waiting; an error says that a hub for this
    /// config already runs.
    pub fn acquire(address: &HubAddress) -> io::Result<Self> {
        socket::ensure_run_dir(socket::run_dir(&address.lock)?)?;
        let file = open_lock_file(&address.lock)?;
        match file.try_lock_exclusive() {
            Ok(()) => Ok(Self { _file: file }),
            Err(error) if is_contended(&error) => Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "a hub for `{}` is already running (it holds `{}`)\nhint: `foxxy-bridge hub stop` ends it",
                    address.config.display(),
                    address.lock.display()
                ),
            )),
            Err(error) => Err(with_path("cannot lock", &address.lock, error)),
        }
    }
}

/// [`locks::open_lock_file`], its error naming the path.
fn open_lock_file(path: &Path) -> io::Result<File> {
    crate::locks::open_lock_file(path).map_err(|error| with_path("cannot open", path, error))
}

fn is_contended(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock
        || error.kind() == io::ErrorKind::Interrupted
        || error.raw_os_error() == fs2::lock_contended_error().raw_os_error()
}

fn with_path(doing: &str, path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{doing} `{}`: {error}", path.display()))
}

#[cfg(test)]
mod tests;

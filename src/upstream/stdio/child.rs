//! Local stdio upstreams: spawning the child process, capturing its stderr into the
//! log, and making sure it and everything it started are gone when we are done.
//!
//! Every child is the leader of its own process group, so ending the group also ends
//! grandchildren (`npx` → `node`, shell wrappers). [`ChildGuard`] owns the process:
//! `shutdown` ends it politely (stdin closed, then SIGTERM, then SIGKILL, all bounded),
//! and dropping the guard SIGKILLs the group as a backstop. On Linux the child also gets
//! `PR_SET_PDEATHSIG`, so it dies with the bridge even if the bridge is SIGKILLed; and
//! every group is recorded with the watchdog (`watchdog.rs`) from its start until the
//! guard is dropped, so the whole group goes too, on every Unix.

use std::{collections::BTreeMap, path::PathBuf, process::Stdio, sync::Arc, time::Duration};

use super::child_output::StderrTail;
use crate::config::Secret;
use tokio::{
    io::{AsyncRead, AsyncReadExt},
    process::{Child, ChildStdin, ChildStdout, Command},
};

/// How long a child gets to exit after its stdin is closed, and again after SIGTERM.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// Lines of child stderr longer than this are cut.
const MAX_STDERR_LINE: usize = 2048;
/// Total stderr bytes logged per child; beyond that lines are counted, not written,
/// so a chatty child cannot fill the disk.
const MAX_STDERR_BYTES: usize = 8 * 1024 * 1024;

pub struct SpawnSpec<'a> {
    pub command: &'a str,
    pub args: &'a [String],
    pub env: &'a BTreeMap<String, Secret>,
    pub cwd: Option<&'a PathBuf>,
}

/// A running child and its pipes.
pub struct Spawned {
    pub guard: ChildGuard,
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
    /// The last lines of its stderr, for a failed start's message.
    pub stderr_tail: Arc<StderrTail>,
}

/// Spawn `spec` in a new process group with piped stdio; stderr is logged under the
/// upstream's name until the child closes it.
pub fn spawn(upstream: &str, spec: &SpawnSpec<'_>) -> Result<Spawned, String> {
    let mut command = Command::new(spec.command);
    command
        .args(spec.args)
        .envs(spec.env.iter().map(|(name, value)| (name, value.expose())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = spec.cwd {
        command.current_dir(cwd);
    }
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs in the forked child before exec and only calls prctl,
    // which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // SAFETY: the closure runs in the forked child before exec and only makes an atomic
    // load and two system calls (`restore_in_child`).
    unsafe {
        command.pre_exec(|| {
            crate::descriptor_limit::restore_in_child();
            Ok(())
        });
    }
    super::watchdog::start();
    let mut child = command.spawn().map_err(|error| describe_spawn_error(spec, &error))?;
    let pid = child.id().ok_or("the process exited before it could be tracked")?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("the child's pipes could not be set up".to_owned());
    };
    super::watchdog::started(pid as libc::pid_t);
    tracing::debug!(upstream, pid, command = spec.command, "started the server's process");
    let stderr_tail = Arc::new(StderrTail::default());
    tokio::spawn(log_stderr(upstream.to_owned(), stderr, stderr_tail.clone()));
    Ok(Spawned { guard: ChildGuard { child, pgid: pid as libc::pid_t }, stdin, stdout, stderr_tail })
}

fn describe_spawn_error(spec: &SpawnSpec<'_>, error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => match spec.cwd {
            Some(cwd) if !cwd.is_dir() => format!("working directory `{}` does not exist", cwd.display()),
            _ => format!(
                "command `{}` not found (is it installed and on the PATH the MCP client gives the bridge?)",
                spec.command
            ),
        },
        std::io::ErrorKind::PermissionDenied => {
            format!("command `{}` is not executable", spec.command)
        }
        _ => format!("cannot start `{}`: {error}", spec.command),
    }
}

/// Owns one child process group. See the module docs for the shutdown sequence.
pub struct ChildGuard {
    child: Child,
    pgid: libc::pid_t,
}

impl ChildGuard {
    /// The child's process id, while it has not been waited for.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Wait for the child to exit by itself; returns a description of how it ended.
    pub async fn wait(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => describe_exit(status),
            Err(error) => format!("could not wait for the process: {error}"),
        }
    }

    /// End the child: the caller has already closed its stdin. Wait briefly, then
    /// SIGTERM the group, wait again, then SIGKILL the group. Bounded by about a second.
    pub async fn shutdown(&mut self) {
        if tokio::time::timeout(EXIT_GRACE, self.child.wait()).await.is_err() {
            self.signal_group(libc::SIGTERM);
            if tokio::time::timeout(EXIT_GRACE, self.child.wait()).await.is_err() {
                tracing::warn!(pgid = self.pgid, "upstream ignored SIGTERM; killing it");
            }
        }
        // Whatever the leader did, nothing of its group may outlive it.
        self.signal_group(libc::SIGKILL);
        let _ = tokio::time::timeout(EXIT_GRACE, self.child.wait()).await;
    }

    fn signal_group(&self, signal: libc::c_int) {
        // SAFETY: killpg only sends a signal; a stale group id yields ESRCH, ignored.
        unsafe {
            libc::killpg(self.pgid, signal);
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Backstop for paths that never ran `shutdown` (panics, aborted tasks).
        self.signal_group(libc::SIGKILL);
        super::watchdog::ended(self.pgid);
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("the process exited with status {code}"),
        (None, Some(signal)) => format!("the process was killed by signal {signal}"),
        (None, None) => "the process exited".to_owned(),
    }
}

/// Copy the child's stderr into the log, line by line, bounded in line length and in
/// total bytes. Runs until the child closes stderr.
async fn log_stderr(upstream: String, mut stderr: impl AsyncRead + Unpin, tail: Arc<StderrTail>) {
    let mut buffer = vec![0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    let mut logged_bytes = 0usize;
    let mut suppressed_lines = 0u64;
    let emit = |line: &[u8], logged_bytes: &mut usize, suppressed: &mut u64| {
        tail.push(&String::from_utf8_lossy(line));
        if *logged_bytes >= MAX_STDERR_BYTES {
            *suppressed += 1;
            return;
        }
        *logged_bytes += line.len();
        let text = String::from_utf8_lossy(line);
        tracing::info!(target: "upstream_stderr", upstream = %upstream, "{}", text.trim_end());
        if *logged_bytes >= MAX_STDERR_BYTES {
            tracing::warn!(upstream = %upstream, "stderr log budget used up; further stderr lines are not logged");
        }
    };
    loop {
        let read = match stderr.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        for &byte in &buffer[..read] {
            if byte == b'\n' {
                emit(&line, &mut logged_bytes, &mut suppressed_lines);
                line.clear();
            } else if line.len() < MAX_STDERR_LINE {
                line.push(byte);
            }
        }
    }
    if !line.is_empty() {
        emit(&line, &mut logged_bytes, &mut suppressed_lines);
    }
    if suppressed_lines > 0 {
        tracing::warn!(upstream = %upstream, suppressed_lines, "stderr lines were not logged (budget)");
    }
    tail.close();
}

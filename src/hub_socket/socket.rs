//! The hub's Unix socket: binding it in a private run directory, connecting to it, and
//! telling whether a peer is the hub's own user.
//!
//! The run directory is the access control: it is created 0700, and one that is looser
//! or belongs to another user is refused rather than repaired, since someone else may be
//! able to replace a socket in it. The socket itself is 0600, and the hub checks each
//! peer's uid as well ([`check_peer`]).

use std::{
    fs::{self, DirBuilder},
    io,
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::Path,
};

use tokio::net::{UnixListener, UnixStream};

use super::HubAddress;

/// The longest socket path the system takes: `sun_path` holds 108 bytes on Linux and
/// 104 on the BSDs and macOS, including the terminating NUL.
const MAX_SOCKET_PATH_BYTES: usize = if cfg!(target_os = "linux") { 107 } else { 103 };

/// Bind the hub's socket. The caller holds the hub's life lock, so a socket file left
/// there is stale (its hub is gone) and is removed.
pub fn bind(address: &HubAddress) -> io::Result<UnixListener> {
    check_socket_path(&address.socket)?;
    ensure_run_dir(run_dir(&address.socket)?)?;
    match fs::remove_file(&address.socket) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            return Err(with_path("cannot remove the stale socket", &address.socket, error));
        }
        _ => {}
    }
    let listener = UnixListener::bind(&address.socket)
        .map_err(|error| with_path("cannot listen on", &address.socket, error))?;
    fs::set_permissions(&address.socket, fs::Permissions::from_mode(0o600))
        .map_err(|error| with_path("cannot make private", &address.socket, error))?;
    Ok(listener)
}

/// Connect to the hub's socket at `path`, making sure that the process listening there
/// runs as this user: bridges send it their requests and their clients' answers.
pub async fn connect(path: &Path) -> io::Result<UnixStream> {
    check_socket_path(path)?;
    let stream =
        UnixStream::connect(path).await.map_err(|error| with_path("cannot connect to", path, error))?;
    match check_peer(&stream) {
        Ok(_) => Ok(stream),
        Err(PeerRefused::OtherUser { uid, pid, own_uid }) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "`{}` is served by uid {uid} (pid {}), not by this user (uid {own_uid})",
                path.display(),
                describe_pid(pid)
            ),
        )),
        Err(PeerRefused::Unknown(error)) => {
            Err(with_path("cannot read the peer credentials of", path, error))
        }
    }
}

/// Whether `error` from [`connect`] means that no hub listens there (no socket file, or
/// a file nobody accepts on), as opposed to a socket that cannot be reached at all.
pub fn no_hub_listens(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused)
}

/// Refuse a socket path the system cannot bind or connect to, saying why.
pub fn check_socket_path(path: &Path) -> io::Result<()> {
    let length = path.as_os_str().len();
    if length > MAX_SOCKET_PATH_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the hub's socket path `{}` is {length} bytes long, over the system's limit of \
                 {MAX_SOCKET_PATH_BYTES} for Unix sockets\nhint: set `FOXXY_BRIDGE_HOME` to a shorter directory",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Create the run directory (0700) if needed, and refuse one that another user owns or
/// that others may enter.
pub(super) fn ensure_run_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| with_path("cannot create", dir, error))?;
    let metadata = fs::symlink_metadata(dir).map_err(|error| with_path("cannot read", dir, error))?;
    let refused = |problem: String| io::Error::new(io::ErrorKind::PermissionDenied, problem);
    if !metadata.is_dir() {
        return Err(refused(format!("`{}` is not a directory", dir.display())));
    }
    let own_uid = effective_uid();
    if metadata.uid() != own_uid {
        return Err(refused(format!(
            "`{}` belongs to uid {}, not to this user (uid {own_uid}); the hub's socket must be private",
            dir.display(),
            metadata.uid()
        )));
    }
    let mode = metadata.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(refused(format!(
            "`{}` has mode {mode:04o}: other users may enter it; the hub's socket must be private\n\
             hint: run `chmod 700 {}`",
            dir.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// The directory holding `socket`.
pub(super) fn run_dir(socket: &Path) -> io::Result<&Path> {
    socket.parent().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("`{}` has no directory", socket.display()))
    })
}

/// The peer of a hub connection, once it is known to be this user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    /// The peer's process id, when the system tells it.
    pub pid: Option<i32>,
}

/// Why a peer was refused.
#[derive(Debug, thiserror::Error)]
pub enum PeerRefused {
    #[error("refused a connection from uid {uid} (pid {}): only uid {own_uid} may use this hub", describe_pid(*.pid))]
    OtherUser { uid: u32, pid: Option<i32>, own_uid: u32 },
    #[error("refused a connection whose peer credentials cannot be read")]
    Unknown(#[source] io::Error),
}

fn describe_pid(pid: Option<i32>) -> String {
    pid.map_or_else(|| "unknown".to_owned(), |pid| pid.to_string())
}

/// The peer of `stream` if it runs as this process's effective user.
pub fn check_peer(stream: &UnixStream) -> Result<Peer, PeerRefused> {
    let credentials = stream.peer_cred().map_err(PeerRefused::Unknown)?;
    check_uid(credentials.uid(), credentials.pid(), effective_uid())
}

fn check_uid(uid: u32, pid: Option<i32>, own_uid: u32) -> Result<Peer, PeerRefused> {
    if uid == own_uid { Ok(Peer { uid, pid }) } else { Err(PeerRefused::OtherUser { uid, pid, own_uid }) }
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no arguments, cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// `error`, with what was being done and to which path.
fn with_path(doing: &str, path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{doing} `{}`: {error}", path.display()))
}

#[cfg(test)]
mod tests;

//! stdin and stdout as async streams for the stdio transport.
//!
//! A client spawns the bridge with pipes (or, from Node and Electron clients, a Unix
//! socket pair) on stdin and stdout. Those are switched to non-blocking mode and
//! registered with the runtime's reactor, so reading and writing them costs no thread
//! hop. Anything else (a terminal, a regular file, `/dev/null`) goes through tokio's
//! blocking `stdin()`/`stdout()`, which use a helper thread.
//!
//! Non-blocking mode belongs to the open file description, which a parent may share
//! (a wrapper script's shell writes to the same pipe after the bridge exits), so
//! [`RestoreOnDrop`] puts blocking mode back on the way out.

use std::{
    fs::File,
    io,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
        unix::fs::FileTypeExt,
    },
    pin::Pin,
    sync::atomic::{AtomicBool, Ordering},
};

use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{UnixStream, unix::pipe},
};

pub type Input = Pin<Box<dyn AsyncRead + Send>>;
pub type Output = Pin<Box<dyn AsyncWrite + Send>>;

/// Whether [`stdin`] / [`stdout`] switched their descriptor to non-blocking mode.
static STDIN_NONBLOCKING: AtomicBool = AtomicBool::new(false);
static STDOUT_NONBLOCKING: AtomicBool = AtomicBool::new(false);

/// The process's stdin. Must be called inside the runtime.
pub fn stdin() -> Input {
    match reactor_stream(io::stdin().as_fd()) {
        Ok(Some(Stream::Pipe(file))) => match pipe::Receiver::from_file(file) {
            Ok(receiver) => return marked(&STDIN_NONBLOCKING, receiver),
            Err(error) => tracing::debug!("stdin pipe not usable by the reactor: {error}"),
        },
        Ok(Some(Stream::Socket(socket))) => return marked(&STDIN_NONBLOCKING, socket),
        Ok(None) => {}
        Err(error) => tracing::debug!("stdin not usable by the reactor: {error}"),
    }
    Box::pin(tokio::io::stdin())
}

/// The process's stdout. Must be called inside the runtime.
pub fn stdout() -> Output {
    match reactor_stream(io::stdout().as_fd()) {
        Ok(Some(Stream::Pipe(file))) => match pipe::Sender::from_file(file) {
            Ok(sender) => return marked(&STDOUT_NONBLOCKING, sender),
            Err(error) => tracing::debug!("stdout pipe not usable by the reactor: {error}"),
        },
        Ok(Some(Stream::Socket(socket))) => return marked(&STDOUT_NONBLOCKING, socket),
        Ok(None) => {}
        Err(error) => tracing::debug!("stdout not usable by the reactor: {error}"),
    }
    Box::pin(tokio::io::stdout())
}

/// Puts stdin and stdout back in blocking mode when dropped, if [`stdin`] or [`stdout`]
/// changed them (best effort). Held for the whole session, so that every way out of it,
/// an error included, restores them.
#[must_use = "dropping it restores blocking mode at once"]
pub struct RestoreOnDrop;

impl Drop for RestoreOnDrop {
    fn drop(&mut self) {
        if STDIN_NONBLOCKING.swap(false, Ordering::AcqRel) {
            let _ = set_blocking(io::stdin().as_fd());
        }
        if STDOUT_NONBLOCKING.swap(false, Ordering::AcqRel) {
            let _ = set_blocking(io::stdout().as_fd());
        }
    }
}

fn marked<T>(flag: &AtomicBool, stream: T) -> Pin<Box<T>> {
    flag.store(true, Ordering::Release);
    Box::pin(stream)
}

enum Stream {
    /// A FIFO, still in blocking mode (tokio's pipe types switch it).
    Pipe(File),
    Socket(UnixStream),
}

/// A duplicate of `fd` the reactor can drive, or `None` when it is neither a FIFO nor
/// a socket (epoll cannot watch regular files, and a terminal is left alone).
fn reactor_stream(fd: BorrowedFd<'_>) -> io::Result<Option<Stream>> {
    let owned: OwnedFd = fd.try_clone_to_owned()?;
    let file = File::from(owned);
    let kind = file.metadata()?.file_type();
    if kind.is_fifo() {
        return Ok(Some(Stream::Pipe(file)));
    }
    if !kind.is_socket() {
        return Ok(None);
    }
    // Any stream socket reads and writes like a Unix one; tokio's type is only the
    // vehicle for registering it. The other direction is never used.
    let socket = std::os::unix::net::UnixStream::from(OwnedFd::from(file));
    socket.set_nonblocking(true)?;
    let socket = UnixStream::from_std(socket)?;
    Ok(Some(Stream::Socket(socket)))
}

fn set_blocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl with F_GETFL/F_SETFL on a descriptor borrowed for the call; no
    // memory is passed.
    unsafe {
        let flags = libc::fcntl(raw, libc::F_GETFL);
        if flags < 0 || libc::fcntl(raw, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

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
        unix::{fs::FileTypeExt, net::UnixStream},
    },
    pin::Pin,
    sync::atomic::{AtomicBool, Ordering},
};

use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::unix::pipe,
};

use crate::socket_halves::{SocketReader, SocketWriter};

pub type Input = Pin<Box<dyn AsyncRead + Send>>;
pub type Output = Pin<Box<dyn AsyncWrite + Send>>;

/// Whether [`stdin`] / [`stdout`] switched their descriptor to non-blocking mode.
static STDIN_NONBLOCKING: AtomicBool = AtomicBool::new(false);
static STDOUT_NONBLOCKING: AtomicBool = AtomicBool::new(false);

/// The process's stdin. Must be called inside the runtime.
pub fn stdin() -> Input {
    let stdin = io::stdin();
    let pipe = |file| Ok(Box::pin(pipe::Receiver::from_file(file)?) as Input);
    reactor_stream(stdin.as_fd(), &STDIN_NONBLOCKING, pipe, |socket| {
        Ok(Box::pin(SocketReader::new(socket)?) as Input)
    })
    .unwrap_or_else(|| Box::pin(tokio::io::stdin()))
}

/// The process's stdout. Must be called inside the runtime.
pub fn stdout() -> Output {
    let stdout = io::stdout();
    let pipe = |file| Ok(Box::pin(pipe::Sender::from_file(file)?) as Output);
    reactor_stream(stdout.as_fd(), &STDOUT_NONBLOCKING, pipe, |socket| {
        Ok(Box::pin(SocketWriter::new(socket)?) as Output)
    })
    .unwrap_or_else(|| Box::pin(tokio::io::stdout()))
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

/// A duplicate of `fd` driven by the reactor: `pipe` makes a FIFO into a stream (tokio's
/// pipe types switch it to non-blocking mode themselves), `socket` a socket. `None` for
/// anything else (epoll cannot watch regular files, and a terminal is left alone), or
/// when the reactor cannot take it; the descriptor is then in blocking mode, as the
/// blocking fallback needs. `flag` records that the descriptor's mode was changed.
fn reactor_stream<T: ?Sized>(
    fd: BorrowedFd<'_>,
    flag: &AtomicBool,
    pipe: impl FnOnce(File) -> io::Result<Pin<Box<T>>>,
    socket: impl FnOnce(UnixStream) -> io::Result<Pin<Box<T>>>,
) -> Option<Pin<Box<T>>> {
    let driven = (|| {
        let file = File::from(fd.try_clone_to_owned()?);
        let kind = file.metadata()?.file_type();
        if kind.is_fifo() {
            flag.store(true, Ordering::Release);
            return pipe(file).map(Some);
        }
        if !kind.is_socket() {
            return Ok(None);
        }
        // Any stream socket reads and writes like a Unix one; the type is only the
        // vehicle for registering it. Only the direction used is registered, and a
        // writing half waits for writability only while the socket is full
        // (`socket_halves`): otherwise each answer the client reads would wake the
        // bridge for nothing.
        let std_socket = UnixStream::from(OwnedFd::from(file));
        flag.store(true, Ordering::Release);
        socket(std_socket).map(Some)
    })();
    driven.unwrap_or_else(|error| {
        tracing::debug!(fd = fd.as_raw_fd(), "not usable by the reactor, a helper thread serves it: {error}");
        if flag.swap(false, Ordering::AcqRel) {
            let _ = set_blocking(fd);
        }
        None
    })
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

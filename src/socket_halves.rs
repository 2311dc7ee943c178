//! A connected stream socket as a reading half and a writing half that wake the process
//! only for what they wait for ([`split`]; a socket used one way only gets one half,
//! [`SocketReader::new`] or [`SocketWriter::new`]).
//!
//! tokio registers a socket with the reactor for readability and writability at once.
//! A Unix stream socket signals room to write each time the peer reads something it was
//! sent, so a process that writes a message and then waits for the answer is woken once
//! for nothing when the peer reads the message: on a call path of several processes,
//! one more context switch per message and process, taken just when the peer needs the
//! CPU. Here the reading half is registered for readability only, and the writing half
//! writes in place and registers for writability only while the socket is full, until a
//! write goes through again. A read that returns less than it had room for took all the
//! socket held, so the reading half waits for readiness again instead of asking once
//! more to hear that nothing is left: one system call per message, not two.
//!
//! Both halves hold their own descriptor of the same socket, in non-blocking mode.
//! Dropping them closes those descriptors but does not shut the socket down (a process's
//! stdout may be a socket that outlives it); [`AsyncWriteExt::shutdown`] on the writing
//! half ends the sending direction for the peer.
//!
//! [`AsyncWriteExt::shutdown`]: tokio::io::AsyncWriteExt::shutdown

use std::{
    io::{self, Read as _, Write as _},
    os::unix::net::UnixStream,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf, unix::AsyncFd};

/// The reading half of a socket from [`split`].
pub struct SocketReader {
    socket: AsyncFd<UnixStream>,
}

/// The writing half of a socket from [`split`].
pub struct SocketWriter {
    socket: UnixStream,
    /// Registered for writability while a write waits for room; `None` otherwise.
    waiting_for_room: Option<AsyncFd<UnixStream>>,
}

/// Split a connected socket into its two halves, switching it to non-blocking mode.
/// Must be called inside the runtime.
pub fn split(socket: UnixStream) -> io::Result<(SocketReader, SocketWriter)> {
    let writing = SocketWriter::new(socket.try_clone()?)?;
    Ok((SocketReader::new(socket)?, writing))
}

impl SocketReader {
    /// Read `socket` (its other direction unused), switching it to non-blocking mode.
    /// Must be called inside the runtime.
    pub fn new(socket: UnixStream) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(Self { socket: register(socket, Interest::READABLE)? })
    }
}

impl SocketWriter {
    /// Write to `socket` (its other direction unused), switching it to non-blocking mode.
    pub fn new(socket: UnixStream) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(Self { socket, waiting_for_room: None })
    }
}

/// `socket` registered with the reactor for `interest` only.
fn register(socket: UnixStream, interest: Interest) -> io::Result<AsyncFd<UnixStream>> {
    // SAFETY: a `UnixStream` owns its descriptor: it stays open, and `as_raw_fd` returns
    // it, for as long as the stream lives, and the `AsyncFd` owns the stream.
    Ok(unsafe { AsyncFd::register_with_interest(socket, interest) }?)
}

/// [`split`] for a socket the reactor already drives.
pub fn split_tokio(socket: tokio::net::UnixStream) -> io::Result<(SocketReader, SocketWriter)> {
    split(socket.into_std()?)
}

impl AsyncRead for SocketReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut ready = ready!(self.socket.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let room = unfilled.len();
            match ready.try_io(|socket| socket.get_ref().read(unfilled)) {
                Ok(Ok(read)) => {
                    // A short read took everything the socket had: the next read would
                    // only say so. New data raises readiness again.
                    if read > 0 && read < room {
                        ready.clear_ready();
                    }
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(error)) => return Poll::Ready(Err(error)),
                // Not readable after all: readiness was cleared, wait again.
                Err(_would_block) => {}
            }
        }
    }
}

impl SocketWriter {
    fn poll_room(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            if self.waiting_for_room.is_none() {
                match (&self.socket).write(buf) {
                    Ok(written) => return Poll::Ready(Ok(written)),
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        // Registering reports the current state, so room made between
                        // the write and now is not missed.
                        let registered = register(self.socket.try_clone()?, Interest::WRITABLE)?;
                        self.waiting_for_room = Some(registered);
                    }
                    Err(error) => return Poll::Ready(Err(error)),
                }
            }
            let Some(waiting) = &self.waiting_for_room else { continue };
            let mut ready = ready!(waiting.poll_write_ready(cx))?;
            match ready.try_io(|socket| socket.get_ref().write(buf)) {
                Ok(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
                Ok(result) => {
                    // Room again: stop being woken each time the peer reads.
                    self.waiting_for_room = None;
                    return Poll::Ready(result);
                }
                Err(_would_block) => {}
            }
        }
    }
}

impl AsyncWrite for SocketWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_room(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.socket.shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests;

//! The one reader of newline-delimited JSON-RPC: the client's stdin and every stdio
//! upstream's stdout are read through [`BoundedLineReader`].
//!
//! It reads up to the next newline from a 64 KiB buffer, copying each line once into a
//! line buffer that is reused from line to line. A line longer than `maxMessageBytes` is
//! never held in memory: once it goes over the limit, the rest of it is read and dropped
//! up to its newline, and only its first [`OVERSIZED_HEAD_BYTES`] are kept, so that the
//! caller can tell what it was (an upstream's answer names the request it answers there).
//! What a line means, and what to do about one over the limit, is the caller's: the
//! reader only frames.
//!
//! Reading is safe to cancel: a partial line stays in the reader, and the next
//! [`BoundedLineReader::next`] goes on where the last one stopped.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// The read buffer: one read system call takes up to this much.
const READ_BUFFER: usize = 64 * 1024;

/// How much of an over-limit line is kept to find its id and kind. JSON-RPC writers put
/// `jsonrpc`, `id` and `method` before the (large) `params` or `result`.
pub const OVERSIZED_HEAD_BYTES: usize = 4096;

/// A line buffer larger than this is freed rather than reused once its line is handled,
/// so one huge message does not pin its memory for the rest of the session.
const REUSED_CAPACITY: usize = 1024 * 1024;

/// What [`BoundedLineReader::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// A complete line, without its newline: [`BoundedLineReader::line`].
    Line,
    /// The line being read has just gone over the limit. It is skipped up to its
    /// newline, which [`Framed::Oversized`] reports.
    OverLimit,
    /// The end of a line that went over the limit; its first bytes are in
    /// [`BoundedLineReader::take_oversized_head`].
    Oversized,
    /// The end of the input. A last line without a newline is in
    /// [`BoundedLineReader::unterminated_line`].
    End,
}

/// Newline-delimited messages from `R`, each at most `max_bytes` long.
pub struct BoundedLineReader<R> {
    reader: BufReader<R>,
    /// The line being read, or the complete line last returned.
    line: Vec<u8>,
    /// The last [`Framed::Line`]'s line is still in `line`, to be cleared before the
    /// next one is read.
    line_returned: bool,
    /// The line under way is over the limit and being skipped.
    oversized: bool,
    /// The newline of the line that went over the limit was read with the same chunk:
    /// the next call reports [`Framed::Oversized`] before reading on.
    oversized_ended: bool,
    /// The first bytes of the line being skipped.
    oversized_head: Vec<u8>,
    max_bytes: usize,
}

impl<R: AsyncRead + Unpin> BoundedLineReader<R> {
    pub fn new(read: R, max_bytes: usize) -> Self {
        Self {
            reader: BufReader::with_capacity(READ_BUFFER, read),
            line: Vec::new(),
            line_returned: false,
            oversized: false,
            oversized_ended: false,
            oversized_head: Vec::new(),
            max_bytes,
        }
    }

    /// The longest line taken.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Read up to the next newline, or to the moment a line goes over the limit. An
    /// `Interrupted` read is retried; any other read error is returned, and the input
    /// is then over. Safe to cancel.
    pub async fn next(&mut self) -> std::io::Result<Framed> {
        if std::mem::take(&mut self.line_returned) {
            self.line.clear();
        }
        if std::mem::take(&mut self.oversized_ended) {
            self.oversized = false;
            return Ok(Framed::Oversized);
        }
        loop {
            let buffer = match self.reader.fill_buf().await {
                Ok([]) => return Ok(Framed::End),
                Ok(buffer) => buffer,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            let (chunk, complete) = match buffer.iter().position(|&byte| byte == b'\n') {
                Some(end) => (&buffer[..end], true),
                None => (buffer, false),
            };
            let mut went_over = false;
            if self.line.len() + chunk.len() > self.max_bytes {
                if !self.oversized {
                    went_over = true;
                    let mut head = std::mem::take(&mut self.line);
                    head.truncate(OVERSIZED_HEAD_BYTES);
                    let room = OVERSIZED_HEAD_BYTES - head.len();
                    head.extend_from_slice(&chunk[..room.min(chunk.len())]);
                    head.shrink_to_fit();
                    self.oversized_head = head;
                }
                self.oversized = true;
                self.line = Vec::new();
            } else if !self.oversized {
                self.line.extend_from_slice(chunk);
            }
            let used = chunk.len() + usize::from(complete);
            self.reader.consume(used);
            if went_over {
                // Reported at once, before the rest of the line is read; its end is
                // reported by a later call.
                self.oversized_ended = complete;
                return Ok(Framed::OverLimit);
            }
            if complete {
                if std::mem::take(&mut self.oversized) {
                    return Ok(Framed::Oversized);
                }
                self.line_returned = true;
                return Ok(Framed::Line);
            }
        }
    }

    /// The complete line that [`Framed::Line`] reported.
    pub fn line(&self) -> &[u8] {
        &self.line
    }

    /// Take the complete line that [`Framed::Line`] reported, to hold it while the
    /// reader is borrowed otherwise; [`BoundedLineReader::give_back`] returns its buffer.
    pub fn take_line(&mut self) -> Vec<u8> {
        self.line_returned = false;
        std::mem::take(&mut self.line)
    }

    /// Reuse `buffer` (a taken line) for the next line, unless a huge line made it
    /// large.
    pub fn give_back(&mut self, mut buffer: Vec<u8>) {
        buffer.clear();
        if buffer.capacity() <= REUSED_CAPACITY && self.line.is_empty() {
            self.line = buffer;
        }
    }

    /// The first bytes of the line that [`Framed::Oversized`] reported.
    pub fn take_oversized_head(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.oversized_head)
    }

    /// After [`Framed::End`] or a read error: the last line, which had no newline,
    /// unless it was empty or over the limit.
    pub fn unterminated_line(&self) -> Option<&[u8]> {
        (!self.line.is_empty() && !self.oversized).then_some(&self.line[..])
    }
}

#[cfg(test)]
mod tests;

//! The session's end of its handler's connection: the client's side of a WebSocket over one end
//! of a Unix socket pair, whose other end is the handler's ordinary
//! [`Connection`](crate::Connection). So a handler behaves the same whatever carries the
//! session: the frames, limits, keepalive and closes are the connection's own. (What the
//! connection writes comes back in memory: see `sink.rs`.)
//!
//! Frames go out masked with a zero key (a mask protects proxies' caches, and there is no proxy
//! inside one process) in one `writev`.

use crate::protocol::frame::{BINARY, CLOSE, Header, MAX_HEADER, PONG, TEXT};
use std::io::{self, IoSlice, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Writes frames to the handler's connection.
pub struct LinkWriter(UnixStream);

impl LinkWriter {
    pub fn new(stream: UnixStream, timeout: Duration) -> io::Result<LinkWriter> {
        stream.set_write_timeout(Some(timeout))?;
        Ok(LinkWriter(stream))
    }

    pub fn text(&mut self, payload: &[u8]) -> io::Result<()> {
        self.frame(TEXT, payload)
    }

    pub fn binary(&mut self, payload: &[u8]) -> io::Result<()> {
        self.frame(BINARY, payload)
    }

    pub fn pong(&mut self, payload: &[u8]) -> io::Result<()> {
        self.frame(PONG, payload)
    }

    /// A close frame with `code` (none for 1005) and `reason`.
    pub fn close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        match code {
            1005 => self.frame(CLOSE, &[]),
            code => self.frame(CLOSE, &crate::protocol::frame::close_payload(code, reason)),
        }
    }

    /// The connection's socket, to hang up.
    pub fn stream(&self) -> &UnixStream {
        &self.0
    }

    fn frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mut head = [0u8; MAX_HEADER];
        let mut header = Header::server(opcode, false, payload.len() as u64);
        header.mask = Some([0; 4]);
        let head_len = header.write(&mut head);
        let mut slices = [IoSlice::new(&head[..head_len]), IoSlice::new(payload)];
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            match self.0.write_vectored(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

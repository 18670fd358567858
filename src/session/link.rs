//! The session's end of its handler's connection: a WebSocket client over one end of a Unix
//! socket pair, whose other end is the handler's ordinary [`Connection`](crate::Connection).
//! So a handler behaves the same whatever carries the session: the frames, limits, keepalive
//! and closes are the connection's own.
//!
//! Frames go out masked with a zero key (a mask protects proxies' caches, and there is no proxy
//! inside one process) in one `writev`; frames come in whole (the server never fragments).

use crate::protocol::frame::{BINARY, CLOSE, Header, MAX_HEADER, PONG, TEXT};
use std::io::{self, IoSlice, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// How much one read takes.
const READ_CHUNK: usize = 16 * 1024;

/// A frame from the handler's connection.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

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

/// Reads whole frames from the handler's connection.
pub struct LinkReader {
    stream: UnixStream,
    received: Vec<u8>,
}

impl LinkReader {
    /// `tick`: how long `next` waits before it says nothing came.
    pub fn new(stream: UnixStream, tick: Duration) -> io::Result<LinkReader> {
        stream.set_read_timeout(Some(tick))?;
        Ok(LinkReader {
            stream,
            received: Vec::new(),
        })
    }

    /// The next whole frame; `Ok(None)` when none arrived within the tick. A frame begun
    /// stays in the buffer until the rest comes. `UnexpectedEof` once the connection is gone.
    pub fn next(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(header) = Header::parse(&self.received) {
                let end = header.size as u64 + header.payload;
                if self.received.len() as u64 >= end {
                    let payload = self.received[header.size..end as usize].to_vec();
                    self.received.drain(..end as usize);
                    return Ok(Some(Frame {
                        opcode: header.opcode,
                        payload,
                    }));
                }
            }
            let start = self.received.len();
            self.received.resize(start + READ_CHUNK, 0);
            let read = self.stream.read(&mut self.received[start..]);
            self.received.truncate(start + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if crate::net::wire::is_timeout(&error) => return Ok(None),
                Err(error) => return Err(error),
            }
        }
    }
}

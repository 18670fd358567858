//! The socket under tungstenite: a `TcpStream` that reads big only while data streams in.
//!
//! tungstenite reads at most its read buffer's size per `read()`, and that buffer is allocated
//! for the whole life of a connection. A small buffer keeps an idle connection cheap, but a
//! 64 KiB message then costs dozens of reads. So when a read fills tungstenite's buffer (more
//! is probably waiting), the next one takes up to 64 KiB from the socket into a spill buffer
//! and hands it over from there; once the socket has been drained, the spill buffer is freed.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::ops::Deref;
use std::sync::Arc;

/// How much one read may take from the socket while data streams in.
const SPILL: usize = 64 * 1024;

pub struct Socket {
    stream: Arc<TcpStream>,
    /// Bytes read from the socket and not yet handed over, from `spilled_from` on.
    spill: Vec<u8>,
    spilled_from: usize,
    /// The last read from the socket filled what was asked: more is probably waiting.
    streaming: bool,
}

impl Socket {
    pub fn new(stream: Arc<TcpStream>) -> Socket {
        Socket {
            stream,
            spill: Vec::new(),
            spilled_from: 0,
            streaming: false,
        }
    }
}

/// Timeouts, shutdown and addresses are the `TcpStream`'s own.
impl Deref for Socket {
    type Target = TcpStream;

    fn deref(&self) -> &TcpStream {
        &self.stream
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.spilled_from < self.spill.len() {
            let n = buf.len().min(self.spill.len() - self.spilled_from);
            buf[..n].copy_from_slice(&self.spill[self.spilled_from..self.spilled_from + n]);
            self.spilled_from += n;
            if self.spilled_from == self.spill.len() && !self.streaming {
                self.spill = Vec::new();
                self.spilled_from = 0;
            }
            return Ok(n);
        }
        if !self.streaming || buf.len() >= SPILL {
            let n = (&*self.stream).read(buf)?;
            self.streaming = n == buf.len();
            return Ok(n);
        }
        self.spill.resize(SPILL, 0);
        let n = match (&*self.stream).read(&mut self.spill) {
            Ok(n) => n,
            Err(error) => {
                self.spill = Vec::new();
                self.streaming = false;
                return Err(error);
            }
        };
        self.streaming = n == SPILL;
        self.spill.truncate(n);
        self.spilled_from = 0;
        self.read(buf)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.stream).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self.stream).flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn hands_over_every_byte_in_order_whatever_the_read_sizes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut socket = Socket::new(Arc::new(listener.accept().unwrap().0));
        let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let expected = sent.clone();
        let writing = std::thread::spawn(move || writer.write_all(&sent));
        let mut received = Vec::new();
        let mut sizes = [1024, 7, 4096, 1, 70_000].iter().cycle();
        while received.len() < expected.len() {
            let mut buf = vec![0; *sizes.next().unwrap()];
            let n = socket.read(&mut buf).unwrap();
            assert!(n > 0);
            received.extend_from_slice(&buf[..n]);
        }
        writing.join().unwrap().unwrap();
        assert_eq!(received, expected);
        assert!(socket.spill.is_empty() || socket.spilled_from < socket.spill.len());
    }
}

//! The socket under tungstenite: a `TcpStream` that reads big only while data streams in.
//!
//! tungstenite reads at most its read buffer's size per `read()`, and that buffer is allocated
//! for the whole life of a connection. A small buffer keeps an idle connection cheap, but a
//! 64 KiB message then costs dozens of reads. So when a read fills tungstenite's buffer (more
//! is probably waiting), the next one takes whatever is waiting, up to 64 KiB and without
//! blocking, into a spill buffer and hands it over from there; once the socket has been
//! drained, the spill buffer is freed, so a connection never waits for data holding it.
//!
//! What tungstenite reads has passed `Inbound` (see `inbound.rs`), which counts messages
//! against the memory budget and cuts big frames. Once the handler asks for a `Sender`, every
//! wait, read and write goes through the connection's outbox, which shares the socket with the
//! senders (see `outbox.rs`).

use crate::net::stream::Stream;
use crate::ops::budget::{Budget, Holding};
use crate::protocol::inbound::{Inbound, Source};
use crate::protocol::outbox::Outbox;
use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

/// How much one read may take from the socket while data streams in.
const SPILL: usize = 64 * 1024;

pub struct Socket {
    raw: Raw,
    inbound: Inbound,
}

/// The socket's own bytes, before `Inbound` minds their frames.
struct Raw {
    stream: Arc<Stream>,
    /// Once the handler has asked for a `Sender`: every read and write goes through here.
    outbox: Option<Arc<Outbox>>,
    /// Bytes read from the socket and not yet handed over, from `spilled_from` on.
    spill: Vec<u8>,
    spilled_from: usize,
    /// The last read from the socket filled what was asked: more is probably waiting.
    streaming: bool,
    /// The latest read was handed over from the spill buffer, this many bytes.
    last_from_spill: usize,
}

impl Socket {
    /// A socket just upgraded: `early` is what the client sent after its request head; message
    /// bytes are held against `holding`'s budget; `deflate`: permessage-deflate was agreed.
    pub fn new(
        stream: Arc<Stream>,
        early: Vec<u8>,
        holding: Holding,
        max_message_size: usize,
        deflate: bool,
    ) -> Socket {
        Socket {
            raw: Raw {
                stream,
                outbox: None,
                spill: early,
                spilled_from: 0,
                streaming: false,
                last_from_spill: 0,
            },
            inbound: Inbound::new(holding, max_message_size, deflate),
        }
    }

    /// From now on, share the socket's writing with `outbox`'s senders.
    pub fn link(&mut self, outbox: Arc<Outbox>) {
        self.raw.outbox = Some(outbox);
    }

    /// The socket itself, shared.
    pub fn stream(&self) -> Arc<Stream> {
        Arc::clone(&self.raw.stream)
    }

    pub fn outbox(&self) -> Option<&Arc<Outbox>> {
        self.raw.outbox.as_ref()
    }

    /// The memory budget this connection's messages are held against.
    pub fn budget(&self) -> &Arc<Budget> {
        self.inbound.holding().budget()
    }

    /// The next message if it comes in one frame, read past tungstenite; see
    /// `Inbound::read_direct` for when that may be asked.
    pub fn read_direct(&mut self) -> tungstenite::Result<Option<tungstenite::Message>> {
        self.inbound.read_direct(&mut self.raw)
    }

    /// The budget's account of this connection's messages (see `inbound.rs`).
    pub fn inbound(&mut self) -> &mut Inbound {
        &mut self.inbound
    }
}

impl Raw {
    /// Wait for data (up to the read timeout) and read it.
    fn read_waiting(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.outbox {
            None => (&*self.stream).read(buf),
            Some(outbox) => outbox.read(buf, self.stream.tcp().read_timeout()?),
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        if let Some(outbox) = &self.raw.outbox {
            outbox.end();
        }
    }
}

/// Timeouts, shutdown and addresses are the stream's own.
impl Deref for Socket {
    type Target = Stream;

    fn deref(&self) -> &Stream {
        &self.raw.stream
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inbound.read(&mut self.raw, buf)
    }
}

impl Source for Raw {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.last_from_spill = 0;
        if self.spilled_from < self.spill.len() {
            let n = buf.len().min(self.spill.len() - self.spilled_from);
            buf[..n].copy_from_slice(&self.spill[self.spilled_from..self.spilled_from + n]);
            self.spilled_from += n;
            self.last_from_spill = n;
            return Ok(n);
        }
        if !self.streaming {
            // A connection must never sit waiting for data while holding the spill buffer.
            self.spill = Vec::new();
            self.spilled_from = 0;
        }
        if !self.streaming || buf.len() >= SPILL {
            let n = self.read_waiting(buf)?;
            self.streaming = n == buf.len();
            return Ok(n);
        }
        // Take what is already waiting, without blocking.
        self.spill.resize(SPILL, 0);
        let n = match self.stream.recv_now(&mut self.spill) {
            Ok(n) if n > 0 => n,
            // Nothing waiting, the end, or an error: a plain read waits or reports it.
            _ => {
                self.spill = Vec::new();
                self.spilled_from = 0;
                self.streaming = false;
                return self.read(buf);
            }
        };
        self.streaming = n == SPILL;
        self.spill.truncate(n);
        self.spilled_from = 0;
        self.read(buf)
    }

    fn unread(&mut self, tail: &[u8]) {
        if tail.len() <= self.last_from_spill {
            self.spilled_from -= tail.len();
        } else {
            let mut spill = Vec::with_capacity(tail.len() + self.spill.len() - self.spilled_from);
            spill.extend_from_slice(tail);
            spill.extend_from_slice(&self.spill[self.spilled_from..]);
            self.spill = spill;
            self.spilled_from = 0;
        }
        self.last_from_spill = 0;
    }
}

/// Set the read timeout to what is left before `deadline`; false once it has passed.
pub fn set_timeout_until(stream: &TcpStream, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    !left.is_zero() && stream.set_read_timeout(Some(left)).is_ok()
}

/// Read and throw away what the client still sends, until it hangs up, an error, `deadline`,
/// or `max_bytes`: after our side has stopped writing, so that closing with unread bytes does
/// not reset the connection before the client has read our last words.
pub fn discard_until<R>(reader: &mut R, deadline: Instant, max_bytes: usize)
where
    R: Read + Deref<Target = Stream>,
{
    // Small: a connection's thread is reused, and keeps whatever stack it has touched.
    let mut sink = [0u8; 1024];
    let mut discarded = 0;
    while discarded < max_bytes && set_timeout_until(reader.tcp(), deadline) {
        match reader.read(&mut sink) {
            Ok(0) => return,
            Ok(n) => discarded += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Whether an I/O error is a read or write timeout (Linux reports `WouldBlock`).
pub fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.raw.outbox {
            None => (&*self.raw.stream).write(buf),
            Some(outbox) => {
                let timeout = self.raw.stream.tcp().write_timeout()?;
                outbox.write(&[IoSlice::new(buf)], timeout)
            }
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &self.raw.outbox {
            None => (&*self.raw.stream).write_vectored(bufs),
            Some(outbox) => outbox.write(bufs, self.raw.stream.tcp().write_timeout()?),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &self.raw.outbox {
            None => (&*self.raw.stream).flush(),
            // What TLS still holds goes out while the connection's thread waits.
            Some(_) => Ok(()),
        }
    }
}

impl Socket {
    /// Write `head` then `body`, whole, in one system call when the socket takes it all.
    pub fn write_both(&mut self, head: &[u8], body: &[u8]) -> io::Result<()> {
        self.write_slices(&mut [IoSlice::new(head), IoSlice::new(body)])
    }

    /// Write every slice, whole and in order, in one system call when the socket takes it all.
    #[inline]
    pub fn write_slices(&mut self, slices: &mut [IoSlice<'_>]) -> io::Result<()> {
        let mut left = slices;
        while !left.is_empty() {
            match self.write_vectored(left) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut left, n),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn raw(stream: TcpStream) -> Raw {
        Raw {
            stream: Arc::new(Stream::new(stream)),
            outbox: None,
            spill: Vec::new(),
            spilled_from: 0,
            streaming: false,
            last_from_spill: 0,
        }
    }

    #[test]
    fn hands_over_every_byte_in_order_whatever_the_read_sizes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut socket = raw(listener.accept().unwrap().0);
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
    }

    #[test]
    fn gives_the_spill_buffer_back_once_the_stream_stops() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut socket = raw(listener.accept().unwrap().0);
        // Exactly one spill's worth: every read is full, so the socket believes more follows.
        writer.write_all(&vec![7u8; 1024 + SPILL]).unwrap();
        let mut received = 0;
        let mut buf = [0u8; 1024];
        while received < 1024 + SPILL {
            received += socket.read(&mut buf).unwrap();
        }
        socket
            .stream
            .tcp()
            .set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .unwrap();
        let waited = socket.read(&mut buf).unwrap_err();
        assert!(is_timeout(&waited), "{waited}");
        assert_eq!(
            socket.spill.capacity(),
            0,
            "no spill buffer is held while waiting"
        );
    }
}

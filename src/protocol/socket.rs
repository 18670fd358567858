//! A connection's socket as the protocol reads and writes it: a `Stream` that reads big only
//! while data streams in, under the frame reader, and shared with the outbox once there is one.
//!
//! The reader asks for a header's worth (512 bytes) at a time, or straight into a big
//! message's buffer. So that a 64 KiB message does not cost dozens of reads, when a read fills
//! what was asked (more is probably waiting), the next one takes whatever is waiting, up to
//! 127 KiB and without blocking, into a spill buffer and hands it over from there; once the
//! socket has been drained, the spill buffer is freed, so a connection never waits for data
//! holding it.
//!
//! Once the handler asks for a `Sender`, every wait, read and write goes through the
//! connection's outbox, which shares the socket with the senders (see `outbox.rs`).

use crate::net::stream::Stream;
use crate::ops::budget::{Budget, Holding};
use crate::protocol::outbox::Outbox;
use crate::protocol::reader::{Fault, Reader, Source};
use std::io::{self, IoSlice, Read, Write};
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// How much a burst's first read into the spill buffer may take: a lone 64 KiB message takes
/// no bigger block than it needs (over TLS, zeroed room).
const FIRST_SPILL: usize = 64 * 1024;
/// How much one read may take once one has filled `FIRST_SPILL` (data streams in): two 64 KiB
/// messages and their headers, so back-to-back 64 KiB messages take one `recv` per two, not
/// one each (`wsload stream`, `perf stat`: 1.66 system calls per message instead of 2.09;
/// the MB/s of `make bench`'s stream mode, paired with the 64 KiB build, moved by less than
/// the spread between rounds). Under 128 KiB, so malloc serves it from its heap: from 128 KiB
/// on, each block is mapped and unmapped on its own (`return_big_frees_to_the_system`), a
/// map, an unmap and a fault per page for every burst of data.
const SPILL: usize = 127 * 1024;

pub struct Socket {
    raw: Raw,
    reader: Reader,
}

/// The socket's own bytes, before the reader minds their frames.
struct Raw {
    stream: Arc<Stream>,
    /// Once the handler has asked for a `Sender`: every read and write goes through here.
    outbox: Option<Arc<Outbox>>,
    /// Bytes read from the socket, handed over up to `spilled_from`. Its room is kept while
    /// data streams in and freed once the socket has been drained.
    spill: Vec<u8>,
    spilled_from: usize,
    /// The last read from the socket filled what was asked: more is probably waiting.
    streaming: bool,
    /// The latest read was handed over from the spill buffer, this many bytes.
    last_from_spill: usize,
    /// The read timeout last set through `Socket::set_read_timeout`: how long a read through
    /// the outbox waits, known here so that no wait asks the socket for it (a system call).
    read_timeout: Option<Duration>,
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
                read_timeout: None,
            },
            reader: Reader::new(holding, max_message_size, deflate),
        }
    }

    /// From now on, share the socket's writing with `outbox`'s senders.
    pub fn link(&mut self, outbox: Arc<Outbox>) {
        self.raw.outbox = Some(outbox);
    }

    /// How long a read waits for the client. Set here, never on the wire itself: reads through
    /// the outbox wait as long as this says.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.raw.stream.wire().set_read_timeout(timeout)?;
        self.raw.read_timeout = timeout;
        Ok(())
    }

    /// Reads wait until `deadline`; false once it has passed.
    pub fn set_timeout_until(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        !left.is_zero() && self.set_read_timeout(Some(left)).is_ok()
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
        self.reader.budget()
    }

    /// The next message or control frame from the client (see `reader.rs`).
    pub fn next(&mut self) -> Result<Message, Fault> {
        self.reader.next(&mut self.raw)
    }

    /// The budget's account of this connection's messages (see `reader.rs`).
    pub fn reader(&mut self) -> &mut Reader {
        &mut self.reader
    }
}

impl Raw {
    /// Free the spill buffer (nothing in it is still to be handed over).
    fn drop_spill(&mut self) {
        self.spill = Vec::new();
        self.spilled_from = 0;
    }

    /// How much the next fill of the spill buffer may take: `FIRST_SPILL` for a burst's
    /// first (no buffer is held), `SPILL` once data streams in (the buffer is kept between
    /// fills only while every fill fills it).
    fn spill_size(&self) -> usize {
        if self.spill.capacity() == 0 {
            FIRST_SPILL
        } else {
            SPILL
        }
    }

    /// Take what is already waiting on the socket into the spill buffer, without waiting;
    /// false when nothing was (the stream has paused, ended or failed: a plain read waits for
    /// it or reports it), and the buffer is dropped.
    fn fill_spill(&mut self) -> bool {
        let size = self.spill_size();
        if self.spill.capacity() < size {
            // A fresh block: growing the old one would copy what it held.
            self.spill = Vec::with_capacity(size);
        }
        self.spill.clear();
        match self.stream.recv_now_appending(&mut self.spill, size) {
            Ok(n) if n > 0 => {
                self.streaming = n == size;
                self.spilled_from = 0;
                true
            }
            _ => {
                self.drop_spill();
                self.streaming = false;
                false
            }
        }
    }

    /// Wait for data (up to the read timeout) and read it.
    fn read_waiting(&mut self, buf: &mut [u8]) -> Result<usize, Fault> {
        match &self.outbox {
            None => loop {
                match (&*self.stream).read(buf) {
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    read => return read.map_err(Fault::from),
                }
            },
            Some(outbox) => outbox.read(buf, self.read_timeout),
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

/// The raw bytes, past the reader: for throwing away what a client sends after the close.
impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match Source::read(&mut self.raw, buf) {
            Ok(n) => Ok(n),
            Err(Fault::Io(error)) => Err(error),
            Err(Fault::Timeout) => Err(io::ErrorKind::WouldBlock.into()),
            Err(fault) => Err(io::Error::other(fault.to_string())),
        }
    }
}

impl Source for Raw {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Fault> {
        let held = self.take_held(buf.len());
        if !held.is_empty() {
            let n = held.len();
            buf[..n].copy_from_slice(held);
            return Ok(n);
        }
        if !self.streaming {
            // A connection must never sit waiting for data while holding the spill buffer.
            self.drop_spill();
        }
        let n = self.read_waiting(buf)?;
        self.streaming = n == buf.len();
        Ok(n)
    }

    /// What the spill buffer holds; when it is empty, while data streams in, what is already
    /// waiting on the socket is taken into it, unless `max` is a spill's worth or more (that
    /// is read straight where it goes).
    fn take_held(&mut self, max: usize) -> &[u8] {
        self.last_from_spill = 0;
        if self.spilled_from == self.spill.len()
            && (!self.streaming || max >= self.spill_size() || !self.fill_spill())
        {
            return &[];
        }
        let from = self.spilled_from;
        let n = max.min(self.spill.len() - from);
        self.spilled_from += n;
        self.last_from_spill = n;
        &self.spill[from..from + n]
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
            let written = match &self.raw.outbox {
                None => (&*self.raw.stream).write_vectored(left),
                Some(outbox) => {
                    let timeout = self.raw.stream.wire().write_timeout()?;
                    outbox.write(left, timeout)
                }
            };
            match written {
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
    use std::net::{TcpListener, TcpStream};

    fn raw(stream: TcpStream) -> Raw {
        Raw {
            stream: Arc::new(Stream::new(stream)),
            outbox: None,
            spill: Vec::new(),
            spilled_from: 0,
            streaming: false,
            last_from_spill: 0,
            read_timeout: None,
        }
    }

    /// A loopback connection: the client's end, a clone of the server's end (to watch what has
    /// arrived), and the server's end as the protocol reads it.
    fn connected() -> (TcpStream, TcpStream, Raw) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let accepted = listener.accept().unwrap().0;
        let arrivals = accepted.try_clone().unwrap();
        (writer, arrivals, raw(accepted))
    }

    #[test]
    fn hands_over_every_byte_in_order_whatever_the_read_sizes() {
        let (mut writer, _, mut socket) = connected();
        let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let expected = sent.clone();
        let writing = std::thread::spawn(move || writer.write_all(&sent));
        let mut received = Vec::new();
        let mut sizes = [1024, 7, 4096, 1, 70_000].iter().cycle();
        while received.len() < expected.len() {
            let mut buf = vec![0; *sizes.next().unwrap()];
            let n = Source::read(&mut socket, &mut buf).unwrap();
            assert!(n > 0);
            received.extend_from_slice(&buf[..n]);
        }
        writing.join().unwrap().unwrap();
        assert_eq!(received, expected);
    }

    /// Wait (at most 5 s) until `bytes` have arrived on `stream`, so each fill of the spill
    /// buffer finds all it can take.
    fn wait_for_arrival(stream: &TcpStream, bytes: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut probe = vec![0u8; bytes];
        while stream.peek(&mut probe).unwrap() < bytes && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn gives_the_spill_buffer_back_once_the_stream_stops() {
        let (mut writer, arrivals, mut socket) = connected();
        // Exactly a first spill's worth: every read is full, so the socket believes more follows.
        writer.write_all(&vec![7u8; 1024 + FIRST_SPILL]).unwrap();
        wait_for_arrival(&arrivals, 1024 + FIRST_SPILL);
        let mut received = 0;
        let mut buf = [0u8; 1024];
        while received < 1024 + FIRST_SPILL {
            received += Source::read(&mut socket, &mut buf).unwrap();
        }
        socket
            .stream
            .wire()
            .set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .unwrap();
        let waited = Source::read(&mut socket, &mut buf).unwrap_err();
        assert!(matches!(waited, Fault::Timeout), "{waited}");
        assert_eq!(
            socket.spill.capacity(),
            0,
            "no spill buffer is held while waiting"
        );
    }

    #[test]
    fn a_bursts_first_spill_is_small_and_grows_only_while_data_streams_in() {
        let (mut writer, arrivals, mut socket) = connected();
        let total = 1024 + FIRST_SPILL + 100;
        writer.write_all(&vec![7u8; total]).unwrap();
        wait_for_arrival(&arrivals, total);
        let mut buf = [0u8; 1024];
        // Read straight, and it filled what was asked: the next read goes through a spill.
        assert_eq!(Source::read(&mut socket, &mut buf).unwrap(), 1024);
        assert_eq!(Source::read(&mut socket, &mut buf).unwrap(), 1024);
        assert_eq!(socket.spill.len(), FIRST_SPILL);
        assert!(
            socket.spill.capacity() < SPILL,
            "a burst's first spill takes a block of 64 KiB, not {}",
            socket.spill.capacity()
        );
        let mut received = 2048;
        while received < 1024 + FIRST_SPILL {
            received += Source::read(&mut socket, &mut buf).unwrap();
        }
        // The first spill came back full: data streams in, and the next one may take more.
        received += Source::read(&mut socket, &mut buf).unwrap();
        assert_eq!(received, total);
        assert!(
            socket.spill.capacity() >= SPILL,
            "a stream's spill may take {SPILL} bytes a read"
        );
    }
}

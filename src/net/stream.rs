//! A connection's bytes, behind the one type every port reads and writes through: a plain
//! socket (`wire.rs`: TCP, or a Unix socket), or TLS over it (feature `tls`, see `tls.rs`) once
//! the client's first byte opened a TLS handshake, or, for a session's connection, a socket to
//! read from and a `Sink` that takes what is written.
//!
//! Two ways to move bytes. Blocking `Read` and `Write` on `&Stream` wait up to the socket's
//! read or write timeout, as a socket's do. `recv_now` and `send_now` never wait: they
//! take or give what the socket can now, or fail with `WouldBlock`; the outbox uses them from
//! any thread. Under TLS, bytes `send_now` took may wait, encrypted, in the session (bounded)
//! until the socket takes them: `flush_now` writes them out, and a thread that waits on the
//! socket also waits for it to be writable while `has_pending_output` says so.

use crate::net::tls::{Certificates, Session};
use crate::net::wire::{self, Wire, set_timeout_until};
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// The first byte of a TLS record carrying a handshake message, as a ClientHello begins.
const TLS_HANDSHAKE: u8 = 0x16;

pub struct Stream {
    wire: Wire,
    /// Set once: TLS by the connection's own thread before anything else is read or written,
    /// or a sink before the connection starts.
    layer: OnceLock<Layer>,
}

/// What a stream speaks through, besides its plain socket.
// Held in place, once per stream: boxing the TLS session would cost each TLS connection an
// allocation and every read and write an indirection.
#[allow(clippy::large_enum_variant)]
enum Layer {
    Tls(Session),
    /// Writes go to the sink instead of the socket; reads still come from the socket.
    Sink(Arc<dyn Sink>),
}

/// Where a stream's writes go instead of its socket: a session (see `session/`) takes the
/// frames its handler's connection writes in memory, where a socket would need a system call
/// and a thread on the other end to wake for each.
pub trait Sink: Send + Sync {
    /// Take all of `bufs`, in order: whole frames. An error ends the connection:
    /// `QuotaExceeded` when its client reads too slowly.
    fn take(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
}

impl Stream {
    pub fn new(wire: impl Into<Wire>) -> Stream {
        Stream {
            wire: wire.into(),
            layer: OnceLock::new(),
        }
    }

    /// The socket itself: for timeouts and shutdown, never for bytes.
    pub fn wire(&self) -> &Wire {
        &self.wire
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.layer.get(), Some(Layer::Tls(_)))
    }

    /// From now on, writes go to `sink`; set before anything is written.
    pub fn send_to(&self, sink: Arc<dyn Sink>) {
        let _ = self.layer.set(Layer::Sink(sink));
    }

    fn tls(&self) -> Option<&Session> {
        match self.layer.get() {
            Some(Layer::Tls(tls)) => Some(tls),
            _ => None,
        }
    }

    /// If the client opens with a TLS handshake, complete it by `deadline` with `certificates`
    /// and speak TLS from then on; `Ok(false)` when it opened with anything else (a Flash
    /// policy request, plain HTTP), which stays unread.
    pub fn accept_tls(&self, certificates: &Certificates, deadline: Instant) -> io::Result<bool> {
        let mut first = [0u8; 1];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "nothing received in time",
                ));
            }
            self.wire.set_read_timeout(Some(left))?;
            match self.wire.peek(&mut first) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        if first[0] != TLS_HANDSHAKE {
            return Ok(false);
        }
        let _ = self.layer.set(Layer::Tls(certificates.session()?));
        if let Some(session) = self.tls() {
            session.handshake(&self.wire, deadline)?;
        }
        Ok(true)
    }

    /// What the socket holds now (decrypted), without waiting; `WouldBlock` when nothing.
    pub fn recv_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls() {
            Some(tls) => tls.recv_now(&self.wire, buf),
            None => wire::recv_now(&self.wire, buf),
        }
    }

    /// Append to `buf` what the socket holds now (decrypted), up to `max` bytes, without
    /// waiting; `WouldBlock` when nothing. A plain socket reads into `buf`'s spare room as it
    /// is, so no room is zeroed first (a 64 KiB message's read was zeroed at each burst).
    pub fn recv_now_appending(&self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let Some(tls) = self.tls() else {
            return wire::recv_now_appending(&self.wire, buf, max);
        };
        let at = buf.len();
        buf.resize(at + max, 0);
        let read = tls.recv_now(&self.wire, &mut buf[at..]);
        buf.truncate(at + *read.as_ref().unwrap_or(&0));
        read
    }

    /// What of `bufs`, in order, the socket (or the TLS session) takes now; `WouldBlock` when
    /// nothing.
    pub fn send_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.layer.get() {
            Some(Layer::Tls(tls)) => tls.send_now(&self.wire, bufs),
            Some(Layer::Sink(sink)) => sink.take(bufs),
            None => wire::send_now(&self.wire, bufs),
        }
    }

    /// Write out what TLS holds encrypted, without waiting; true when nothing is left.
    pub fn flush_now(&self) -> io::Result<bool> {
        match self.tls() {
            Some(tls) => tls.flush_now(&self.wire),
            None => Ok(true),
        }
    }

    /// Whether TLS holds encrypted bytes the socket has not taken yet.
    pub fn has_pending_output(&self) -> bool {
        self.tls().is_some_and(Session::has_pending_output)
    }

    /// Stop writing: TLS says goodbye (close_notify) and gets its last bytes out by `deadline`,
    /// then the socket's write half closes.
    pub fn close_write(&self, deadline: Instant) -> io::Result<()> {
        let goodbye = match self.tls() {
            Some(tls) => tls.close(&self.wire, deadline),
            None => Ok(()),
        };
        let closed = self.wire.shutdown(Shutdown::Write);
        goodbye.and(closed)
    }

    /// Send `length` bytes of `file`: straight from the file to the socket when plain
    /// (sendfile on Linux), through the session under TLS.
    pub fn send_file(&self, file: impl Read, length: u64) -> io::Result<u64> {
        let mut file = file.take(length);
        match self.tls() {
            Some(_) => io::copy(&mut file, &mut &*self),
            None => self.wire.send_file(&mut file),
        }
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls() {
            Some(tls) => tls.read(&self.wire, buf),
            None => (&self.wire).read(buf),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.layer.get() {
            Some(Layer::Tls(tls)) => tls.write(&self.wire, bufs),
            Some(Layer::Sink(sink)) => sink.take(bufs),
            None => (&self.wire).write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.tls() {
            Some(tls) => tls.flush(&self.wire),
            None => Ok(()),
        }
    }
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
    while discarded < max_bytes && set_timeout_until(reader.wire(), deadline) {
        match reader.read(&mut sink) {
            Ok(0) => return,
            Ok(n) => discarded += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

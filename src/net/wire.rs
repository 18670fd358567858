//! The socket under a connection's stream: TCP, or a Unix stream socket (one end of an
//! in-memory pair, as `TestClient` uses). The system calls that never wait (`MSG_DONTWAIT`),
//! which plain streams and TLS sessions both read and write with, work the same on both.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// A connected stream socket.
pub enum Wire {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// The same call on whichever socket it is.
macro_rules! either {
    ($wire:expr, $socket:ident => $call:expr) => {
        match $wire {
            Wire::Tcp($socket) => $call,
            Wire::Unix($socket) => $call,
        }
    };
}

impl Wire {
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        either!(self, socket => socket.set_read_timeout(timeout))
    }

    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        either!(self, socket => socket.set_write_timeout(timeout))
    }

    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        either!(self, socket => socket.read_timeout())
    }

    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        either!(self, socket => socket.write_timeout())
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        either!(self, socket => socket.shutdown(how))
    }

    /// The local address of a TCP socket; `None` for a Unix one.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Wire::Tcp(socket) => socket.local_addr().ok(),
            Wire::Unix(_) => None,
        }
    }

    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Wire::Tcp(socket) => socket.peek(buf),
            // SAFETY: recv writes at most `buf.len()` bytes into `buf`, which we borrow
            // mutably, on a descriptor `socket` keeps open.
            Wire::Unix(socket) => syscall_len(unsafe {
                libc::recv(
                    socket.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_PEEK,
                )
            }),
        }
    }

    /// Send `length` bytes of `file`, straight from the file to the socket where the system
    /// can (sendfile on Linux).
    pub fn send_file(&self, file: &mut impl Read) -> io::Result<u64> {
        either!(self, socket => io::copy(file, &mut &*socket))
    }
}

impl AsRawFd for Wire {
    fn as_raw_fd(&self) -> RawFd {
        either!(self, socket => socket.as_raw_fd())
    }
}

impl From<TcpStream> for Wire {
    fn from(socket: TcpStream) -> Wire {
        Wire::Tcp(socket)
    }
}

impl From<UnixStream> for Wire {
    fn from(socket: UnixStream) -> Wire {
        Wire::Unix(socket)
    }
}

impl Read for &Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        recv(self, buf, 0)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        either!(self, socket => (&*socket).read_vectored(bufs))
    }
}

impl Write for &Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        send(self, &[IoSlice::new(buf)], 0)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        send(self, bufs, 0)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn syscall_len(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `recv` with MSG_DONTWAIT: what the socket holds now, or `WouldBlock`.
pub fn recv_now(wire: &Wire, buf: &mut [u8]) -> io::Result<usize> {
    recv(wire, buf, libc::MSG_DONTWAIT)
}

/// `recv` with MSG_DONTWAIT into the spare room of `buf` (up to `max` bytes past its end),
/// appending what the socket holds now; `WouldBlock` when nothing. The room is not zeroed
/// first: the kernel writes it, and only the bytes it wrote join `buf`.
pub fn recv_now_appending(wire: &Wire, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    buf.reserve(max);
    let room = &mut buf.spare_capacity_mut()[..max];
    // SAFETY: `room` is `max` bytes of `buf`'s spare capacity, which we borrow mutably.
    let n = unsafe { recv_at(wire, room.as_mut_ptr().cast(), max, libc::MSG_DONTWAIT) }?;
    // SAFETY: the kernel wrote the first `n` bytes of the room (`n <= max`).
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// `sendmsg` with MSG_DONTWAIT: what the socket takes now of `bufs`, in order, or `WouldBlock`.
pub fn send_now(wire: &Wire, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    send(wire, bufs, libc::MSG_DONTWAIT)
}

// The calls themselves, made through `syscall` rather than glibc's `recv` and `sendmsg`: those
// are thread cancellation points, and the bookkeeping that makes them so (which wsecho, never
// cancelling a thread, has no use for) cost 58 of an echo's 1,168 instructions (1,110 now).

/// `recvfrom(fd, buf, len, flags, NULL, NULL)`: waiting (within the socket's read timeout)
/// unless `flags` says otherwise.
fn recv(wire: &Wire, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `buf` is `buf.len()` bytes we borrow mutably.
    unsafe { recv_at(wire, buf.as_mut_ptr(), buf.len(), flags) }
}

/// `recvfrom` into the `len` bytes at `at`, which need not be initialised.
///
/// # Safety
/// `at` must be valid for writes of `len` bytes, and nothing else may use them meanwhile.
unsafe fn recv_at(wire: &Wire, at: *mut u8, len: usize, flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: recvfrom writes at most `len` bytes at `at` (the caller's promise), on a
    // descriptor that `wire` keeps open; no address is asked for.
    let n = unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            wire.as_raw_fd(),
            at,
            len,
            flags,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    };
    syscall_len(n as isize)
}

/// `sendmsg` of `bufs` (at most `IOV_MAX` of them), never raising SIGPIPE: a client gone is
/// an error to the one writer, not a signal to the process.
fn send(wire: &Wire, bufs: &[IoSlice<'_>], flags: libc::c_int) -> io::Result<usize> {
    let bufs = &bufs[..bufs.len().min(IOV_MAX)];
    // SAFETY: an IoSlice has the layout of an iovec (std guarantees it on Unix); sendmsg
    // reads at most the slices' bytes, which we borrow, on a descriptor `wire` keeps open.
    let n = unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = bufs.as_ptr().cast_mut().cast();
        message.msg_iovlen = bufs.len() as _;
        libc::syscall(
            libc::SYS_sendmsg,
            wire.as_raw_fd(),
            &message as *const libc::msghdr,
            flags | libc::MSG_NOSIGNAL,
        )
    };
    syscall_len(n as isize)
}

/// Linux's limit on the slices of one `sendmsg`.
const IOV_MAX: usize = 1024;

/// Set the read timeout to what is left before `deadline`; false once it has passed.
pub fn set_timeout_until(stream: &Wire, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    !left.is_zero() && stream.set_read_timeout(Some(left)).is_ok()
}

/// Whether an I/O error is a read or write timeout (Linux reports `WouldBlock`).
pub fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn receiving_now_appends_what_arrived_after_what_the_buffer_held() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let wire = Wire::from(listener.accept().unwrap().0);
        let mut buf = b"held".to_vec();
        let nothing = recv_now_appending(&wire, &mut buf, 100).unwrap_err();
        assert!(is_timeout(&nothing), "{nothing}");
        assert_eq!(buf, b"held", "a read that found nothing adds nothing");
        client.write_all(b"0123456789").unwrap();
        wire.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut waiting = [0u8; 10];
        // Wait (at most 5 s) until all ten bytes are there, without taking them.
        let deadline = Instant::now() + Duration::from_secs(5);
        while wire.peek(&mut waiting).unwrap() < 10 && Instant::now() < deadline {}
        assert_eq!(recv_now_appending(&wire, &mut buf, 6).unwrap(), 6);
        assert_eq!(
            buf, b"held012345",
            "at most `max` bytes, after what was held"
        );
        assert_eq!(recv_now_appending(&wire, &mut buf, 100).unwrap(), 4);
        assert_eq!(buf, b"held0123456789");
    }
}

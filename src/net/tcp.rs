//! A TCP socket's system calls that never wait (`MSG_DONTWAIT`), and its read timeouts: what
//! plain streams and TLS sessions both read and write with.

use std::io::{self, IoSlice};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Instant;

/// `recv` with MSG_DONTWAIT: what the socket holds now, or `WouldBlock`.
pub fn recv_now(tcp: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: recv writes at most `buf.len()` bytes into `buf`, which we borrow mutably, on a
    // descriptor that `tcp` keeps open.
    let n = unsafe {
        libc::recv(
            tcp.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `sendmsg` with MSG_DONTWAIT: what the socket takes now of `bufs`, in order, or `WouldBlock`.
pub fn send_now(tcp: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: an IoSlice has the layout of an iovec (std guarantees it on Unix); sendmsg
    // reads at most the slices' bytes, which we borrow, on a descriptor `tcp` keeps open.
    let n = unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = bufs.as_ptr().cast_mut().cast();
        message.msg_iovlen = bufs.len() as _;
        libc::sendmsg(
            tcp.as_raw_fd(),
            &message,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Set the read timeout to what is left before `deadline`; false once it has passed.
pub fn set_timeout_until(stream: &TcpStream, deadline: Instant) -> bool {
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

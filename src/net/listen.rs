//! Listening sockets: binding a port with an accept queue deep enough for a crowd.
//!
//! The standard library listens with a backlog of 128. When more clients than that connect
//! within the moment it takes the accept loop to catch up (every page reconnecting after a
//! restart, a load test opening thousands), the kernel drops the rest of their SYNs and each
//! of those clients waits a second or more for its retry. So the backlog is deepened to
//! `BACKLOG` right after binding (Linux lets `listen()` be called again on a listening
//! socket to change it); the kernel caps it at `net.core.somaxconn` (4096 by default since
//! Linux 5.4).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

/// The accept queue asked for; the kernel's `net.core.somaxconn` caps it.
pub const BACKLOG: i32 = 4096;

/// Bind `addr` and listen with a backlog of `BACKLOG`.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    deepen_backlog(&listener)?;
    Ok(listener)
}

fn deepen_backlog(listener: &TcpListener) -> io::Result<()> {
    // SAFETY: `listen` on a descriptor this listener owns and keeps open for the call.
    let result = unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;
    use std::time::Duration;

    /// What the kernel allows as a backlog on this host.
    fn somaxconn() -> usize {
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(128)
    }

    #[test]
    fn a_crowd_larger_than_the_standard_backlog_connects_before_anyone_is_accepted() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        // Nobody accepts: every connect must find room in the queue. With the standard
        // library's backlog of 128 the 130th would wait for a SYN retry and time out.
        let crowd = 600.min(somaxconn());
        assert!(
            crowd > 129,
            "this host caps backlogs at {} (net.core.somaxconn); the test needs more than 129",
            somaxconn()
        );
        let mut clients = Vec::with_capacity(crowd);
        for n in 0..crowd {
            let client = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                .unwrap_or_else(|error| panic!("connect {n} of {crowd}: {error}"));
            clients.push(client);
        }
        assert_eq!(clients.len(), crowd);
    }
}

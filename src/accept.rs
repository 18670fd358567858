//! The accept loop every listener runs until shutdown, and the way shutdown wakes it.

use crate::shutdown::ShutdownSignal;
use log::{info, warn};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

/// Accept until shutdown, handing each connection to `admit`. `cap_flag` names the option
/// that bounds this listener's connections, for the warning when accepting fails.
pub fn accept_loop(
    listener: TcpListener,
    shutdown: &ShutdownSignal,
    cap_flag: &str,
    mut admit: impl FnMut(TcpStream, SocketAddr),
) {
    // Failures come in runs (out of descriptors until connections close): one line per run.
    let mut failing = false;
    loop {
        let accepted = listener.accept();
        if shutdown.is_triggered() {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                if failing {
                    info!("accepting connections again");
                    failing = false;
                }
                admit(stream, peer)
            }
            Err(error) => {
                if !failing {
                    warn!(
                        "cannot accept connections: {error}; with 'too many open files', \
                         raise `ulimit -n` or lower {cap_flag}"
                    );
                    failing = true;
                }
                // Give closing connections a moment to free what is missing.
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Connect to our own listener so its blocked `accept()` returns and sees the shutdown.
pub fn wake_listener(addr: SocketAddr) -> io::Result<()> {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    TcpStream::connect_timeout(&target, Duration::from_secs(1)).map(drop)
}

//! The accept loop every listener runs until shutdown, the answer to a connection its registry
//! does not admit, and the way shutdown wakes the loop.

use crate::http::Refusal;
use crate::metrics::Metrics;
use crate::registry::NotAdmitted;
use crate::shutdown::ShutdownSignal;
use crate::stream::Stream;
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

/// Answer (503) and log, from the accept thread and without blocking it, a connection that
/// `why` kept out. `what` names the port's connections in the log; `cap_flag` sets its cap.
pub fn refuse(
    stream: &Stream,
    peer: impl std::fmt::Display,
    why: NotAdmitted,
    metrics: &Metrics,
    what: &str,
    cap_flag: &str,
) {
    metrics.refused(why.reason());
    let message = match why {
        NotAdmitted::Full { max } => {
            warn!("refused {peer}: {max} {what} already open ({cap_flag})");
            "server busy: too many open connections, try again later".to_string()
        }
        NotAdmitted::AddressFull { max } => {
            warn!("refused {peer}: {max} {what} already open from its address (--max-per-address)");
            format!(
                "too many connections from your address ({max} open): close some, then try again"
            )
        }
        NotAdmitted::OpeningsFull { max } => {
            warn!("refused {peer}: {max} {what} still opening, most of them from its address");
            "server busy: too many connections from your address still opening, try again later"
                .to_string()
        }
        NotAdmitted::ShuttingDown => "server shutting down".to_string(),
    };
    Refusal::new(503, message).send_without_blocking(stream);
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

//! The accept loop every listener runs until shutdown, the answer to a connection its registry
//! does not admit or the host has no thread for, and the way shutdown wakes the loop.
//!
//! The loop waits for a client in `ppoll` and accepts only when one is there, so shutdown
//! wakes it with a nudge (`wake_accept_loop`) instead of a connection of its own: with socket
//! activation the listening socket outlives the process, and every client queued in it when
//! the process stops is left for the next one.

use crate::net::http::Refusal;
use crate::net::listen::Listener;
use crate::net::registry::NotAdmitted;
use crate::net::stream::Stream;
use crate::net::wake::{self, Woken};
use crate::net::wire::Wire;
use crate::ops::metrics::{Metrics, Reason};
use crate::ops::shutdown::Shutdown;
use log::{info, warn};
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::unix::thread::JoinHandleExt;
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// Accept until shutdown, handing each connection to `admit`. `cap_field` names the `Config` field
/// that bounds this listener's connections, for the warning when accepting fails.
///
/// When the process is out of descriptors, the clients waiting in the listen queue would get
/// no answer at all until some connection closed: one descriptor is kept in reserve for them,
/// let go to accept a waiting client, refuse it (503), and taken back.
pub fn accept_loop(
    listener: Listener,
    shutdown: &Shutdown,
    metrics: &Metrics,
    cap_field: &str,
    mut admit: impl FnMut(Wire, SocketAddr),
) {
    // Before the first look at the flag: a nudge sent from here on is never lost.
    wake::install();
    wake::prepare();
    let mut reserve = Reserve::take();
    // Failures come in runs (out of descriptors until connections close): one line per run.
    let (mut failing, mut refused) = (false, 0u64);
    loop {
        if shutdown.is_triggered() {
            return;
        }
        match wake::wait(listener.as_raw_fd(), true, false, &[], None) {
            Ok(Woken::Ready) => {}
            Ok(_) => continue,
            Err(error) => {
                warn!("cannot wait for connections: {error}; retrying");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        }
        let accepted = listener.accept();
        match accepted {
            Ok((stream, peer)) => {
                if failing {
                    info!(
                        "accepting connections again ({refused} refused with 503 meanwhile \
                         for want of descriptors)"
                    );
                    (failing, refused) = (false, 0);
                }
                reserve.retake();
                admit(stream, peer)
            }
            Err(error) => {
                let out_of_descriptors = matches!(
                    error.raw_os_error(),
                    Some(libc::EMFILE) | Some(libc::ENFILE)
                );
                if !failing {
                    warn!(
                        "cannot accept connections: {error}; {}",
                        if out_of_descriptors {
                            format!(
                                "new clients get 503 until connections close; raise `ulimit -n` \
                                 or lower {cap_field} (see docs/operating.md, \"Sizing a host\")"
                            )
                        } else {
                            "retrying".to_string()
                        }
                    );
                    failing = true;
                }
                if out_of_descriptors && reserve.release() {
                    if let Ok((wire, _peer)) = listener.accept() {
                        metrics.refused(Reason::Descriptors);
                        let message = "server busy: out of descriptors, try again later";
                        Refusal::new(503, message).send_without_blocking(&Stream::new(wire));
                        refused += 1;
                    }
                    reserve.retake();
                    continue;
                }
                // Give closing connections a moment to free what is missing.
                thread::sleep(Duration::from_millis(50));
                reserve.retake();
            }
        }
    }
}

/// A descriptor held so that one is free when all others are taken.
struct Reserve(Option<File>);

impl Reserve {
    fn take() -> Reserve {
        Reserve(File::open("/dev/null").ok())
    }

    /// Let the descriptor go; false if none was held.
    fn release(&mut self) -> bool {
        self.0.take().is_some()
    }

    /// Hold one again, if none is held and one can be had.
    fn retake(&mut self) {
        if self.0.is_none() {
            self.0 = File::open("/dev/null").ok();
        }
    }
}

/// Answer (503) and log, from the accept thread and without blocking it, a connection that
/// `why` kept out. `what` names the port's connections in the log; `cap_field` sets its cap.
pub fn refuse(
    stream: &Stream,
    peer: impl std::fmt::Display,
    why: NotAdmitted,
    metrics: &Metrics,
    what: &str,
    cap_field: &str,
) {
    refusal(peer, why, metrics, what, cap_field).send_without_blocking(stream);
}

/// The 503 owed to a client `why` turned away, counted and logged as `refuse` does.
pub fn refusal(
    peer: impl std::fmt::Display,
    why: NotAdmitted,
    metrics: &Metrics,
    what: &str,
    cap_field: &str,
) -> Refusal {
    metrics.refused(why.reason());
    let message = match why {
        NotAdmitted::Full { max } => {
            warn!("refused {peer}: {max} {what} already open ({cap_field})");
            "server busy: too many open connections, try again later".to_string()
        }
        NotAdmitted::AddressFull { max } => {
            warn!("refused {peer}: {max} {what} already open from its address (`max_per_address`)");
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
    Refusal::new(503, message)
}

/// Answer (503) and log a connection that was admitted but for which the host had no thread
/// (threads, PIDs or memory mappings used up): it alone is refused, and `log` keeps a flood of
/// them to one line a second. `what` names the connection in the log.
pub fn refuse_without_thread(
    stream: &Stream,
    peer: impl std::fmt::Display,
    error: &io::Error,
    metrics: &Metrics,
    log: &Quiet,
    what: &str,
) {
    metrics.refused(Reason::Threads);
    if let Some(more) = log.speak() {
        warn!(
            "refused {peer}{more}: the host has no thread for another {what} ({error}); \
             the host's limits are lower than the caps: see docs/operating.md, \"Sizing a host\""
        );
    }
    let message = "server busy: no thread for your connection, try again later";
    Refusal::new(503, message).send_without_blocking(stream);
}

/// One log line per second at most for a kind of event that can come in floods; the line says
/// how many were not logged since the last one.
#[derive(Default)]
pub struct Quiet {
    state: Mutex<(Option<Instant>, u64)>,
}

impl Quiet {
    /// Whether to log this event now: `Some` with the words to add to the line (how many were
    /// kept quiet before it), or `None` to keep quiet.
    pub fn speak(&self) -> Option<String> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, quieted) = &mut *state;
        let now = Instant::now();
        if last.is_some_and(|last| now.duration_since(last) < Duration::from_secs(1)) {
            *quieted += 1;
            return None;
        }
        *last = Some(now);
        let more = match std::mem::take(quieted) {
            0 => String::new(),
            n => format!(" (and {n} more since the last such line)"),
        };
        Some(more)
    }
}

/// Wake the accept loop running on `thread` so that it sees the shutdown (fired before).
pub fn wake_accept_loop(thread: &thread::JoinHandle<()>) {
    wake::nudge(thread.as_pthread_t());
}

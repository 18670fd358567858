//! A session's own thread. It waits, not for messages (the handler's connection hands them over
//! itself: see `sink.rs`), but for the end: the connection hanging up, or no carrier for the
//! resume window (the handler then sees its client drop, as when a WebSocket drops). Then, once
//! the client has the close record, or the window has passed, the session is forgotten.

use super::{Session, Sessions};
use crate::net::threads;
use crate::net::wake;
use crate::net::wire::is_timeout;
use log::info;
use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

/// The session's thread keeps little on its stack.
const STACK: usize = 64 * 1024;

/// Start the session's thread, on `link`, its end of the handler's connection.
pub fn start(
    sessions: Arc<Sessions>,
    session: Arc<Session>,
    link: UnixStream,
    tick: Duration,
) -> io::Result<()> {
    link.set_read_timeout(Some(tick))?;
    let payload = (sessions, session, link);
    threads::spawn(
        c"session",
        STACK,
        payload,
        move |(sessions, session, link)| {
            run(&sessions, &session, link, tick);
        },
    )
    .map_err(|(error, _)| error)
}

fn run(sessions: &Sessions, session: &Session, mut link: UnixStream, tick: Duration) {
    // Nothing is written to this socket but its end (see `sink.rs`): a small buffer will do.
    let mut end = [0u8; 64];
    loop {
        session.settle_answers();
        if session.lock_down().end.is_some() {
            break;
        }
        if session.expired() {
            let _ = link.shutdown(Shutdown::Both);
            info!(
                "session {}: no carrier for {}s, ended",
                session.id,
                session.window.as_secs()
            );
            sessions.metrics.session_lost();
            session.end_with(1006, "the client did not come back in time");
            break;
        }
        // Polled, not a blocking read (see `wake::readable_within`): here every message
        // from the client would wake a blocked reader for nothing. An error: the read after
        // finds out, within its timeout.
        if !wake::readable_within(link.as_raw_fd(), tick).unwrap_or(true) {
            continue;
        }
        match link.read(&mut end) {
            Ok(0) => session.end_with(1006, "connection lost"),
            Ok(_) => {}
            Err(error) if is_timeout(&error) || error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => session.end_with(1006, "connection lost"),
        }
    }
    // The client may come back for the close record, within the window.
    while !session.close_delivered() && !session.expired() {
        session.settle_answers();
        session.wait_for_change(tick);
    }
    let _ = link.shutdown(Shutdown::Both);
    sessions.forget(session);
}

impl Session {
    /// No carrier has come for the resume window.
    fn expired(&self) -> bool {
        let down = self.lock_down();
        !down.attached && down.detached_since.elapsed() > self.window
    }

    /// The client has the close record, or closed the session itself.
    fn close_delivered(&self) -> bool {
        let down = self.lock_down();
        down.closed_by_client || down.end_delivered
    }

    fn wait_for_change(&self, tick: Duration) {
        let down = self.lock_down();
        let _ = self
            .changed
            .wait_timeout(down, tick)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::thread;

    /// The calling thread's voluntary context switches so far: one per sleep it was woken from.
    fn sleeps_so_far() -> u64 {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let line = status
            .lines()
            .find(|line| line.starts_with("voluntary_ctxt_switches:"))
            .unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn the_session_thread_sleeps_through_the_handler_reading_what_the_client_sent() {
        let (link, handler_side) = UnixStream::pair().unwrap();
        let (asleep, ready) = std::sync::mpsc::channel();
        let waiter = thread::spawn({
            let link = link.try_clone().unwrap();
            move || {
                let before = sleeps_so_far();
                // SAFETY: gettid has no arguments and cannot fail.
                asleep.send(unsafe { libc::gettid() }).unwrap();
                let readable = wake::readable_within(link.as_raw_fd(), Duration::from_secs(10));
                (readable, sleeps_so_far() - before)
            }
        });
        let stat = format!("/proc/self/task/{}/stat", ready.recv().unwrap());
        // A hundred messages from the client, each read by the handler, each while the
        // session thread sleeps (state S): a wake-up for each would be counted apart.
        let (mut to_handler, mut handler) = (&link, &handler_side);
        for _ in 0..100 {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while !std::fs::read_to_string(&stat).unwrap().contains(") S ") {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the waiter never slept"
                );
                thread::sleep(Duration::from_micros(100));
            }
            to_handler.write_all(b"message").unwrap();
            handler.read_exact(&mut [0; 7]).unwrap();
        }
        // The handler's connection ends: the session thread is to wake for that.
        handler_side.shutdown(Shutdown::Both).unwrap();
        let (readable, woken) = waiter.join().unwrap();
        assert!(readable.unwrap(), "the end was not seen");
        assert!(woken < 20, "woken {woken} times for 100 messages");
    }
}

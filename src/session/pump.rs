//! A session's own thread. It waits, not for messages (the handler's connection hands them over
//! itself: see `sink.rs`), but for the end: the connection hanging up, or no carrier for the
//! resume window (the handler then sees its client drop, as when a WebSocket drops). Then, once
//! the client has the close record, or the window has passed, the session is forgotten.

use super::{Session, Sessions};
use crate::net::threads;
use crate::net::wire::is_timeout;
use log::info;
use std::io::{self, Read};
use std::net::Shutdown;
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

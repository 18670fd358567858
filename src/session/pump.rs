//! A session's own thread: reads what the handler's connection sends and keeps it for the
//! client's carriers, answers the connection's pings, and ends the session when no carrier
//! has come for the resume window (the handler then sees its client drop) or once the client
//! has the close.

use super::link::LinkReader;
use super::records::{self, Kind};
use super::{Session, Sessions};
use crate::net::threads;
use crate::ops::metrics::Reason;
use crate::protocol::frame::{BINARY, CLOSE, PING, TEXT};
use log::{info, warn};
use std::io;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

/// The pump keeps little on its stack.
const STACK: usize = 64 * 1024;

/// Start the session's thread.
pub fn start(
    sessions: Arc<Sessions>,
    session: Arc<Session>,
    link: UnixStream,
    tick: Duration,
) -> io::Result<()> {
    let reader = LinkReader::new(link, tick)?;
    let payload = (sessions, session, reader);
    threads::spawn(
        c"session",
        STACK,
        payload,
        move |(sessions, session, reader)| {
            run(&sessions, &session, reader, tick);
        },
    )
    .map_err(|(error, _)| error)
}

fn run(sessions: &Sessions, session: &Session, mut reader: LinkReader, tick: Duration) {
    loop {
        if session.expired() {
            // The handler sees its client vanish, as when a WebSocket drops.
            let _ = reader_shutdown(session);
            info!(
                "session {}: no carrier for {}s, ended",
                session.id,
                session.window.as_secs()
            );
            sessions.metrics.session_lost();
            break;
        }
        if !session.has_room() {
            session.wait_for_change(tick);
            continue;
        }
        match reader.next() {
            Ok(None) => {}
            Ok(Some(frame)) => match frame.opcode {
                TEXT | BINARY => {
                    let kind = if frame.opcode == TEXT {
                        Kind::Text
                    } else {
                        Kind::Binary
                    };
                    if !session.keep(kind, frame.payload) {
                        warn!(
                            "session {}: closing with 1013: server memory budget full; other connections carry on (`memory_budget` sets it)",
                            session.id
                        );
                        sessions.metrics.refused(Reason::Memory);
                        session.keep_close(1013, "server memory budget full; try again later");
                        break;
                    }
                }
                PING => {
                    let mut up = super::lock(&session.up);
                    let _ = up.writer.pong(&frame.payload);
                }
                CLOSE => {
                    let (code, reason) = match frame.payload.as_slice() {
                        [high, low, reason @ ..] => (
                            u16::from_be_bytes([*high, *low]),
                            String::from_utf8_lossy(reason).into_owned(),
                        ),
                        _ => (1005, String::new()),
                    };
                    // Answered, unless this is the answer to the client's own close.
                    if !session.lock_down().closed_by_client {
                        let mut up = super::lock(&session.up);
                        let _ = up.writer.close(code, &reason);
                    }
                    session.keep_close(code, &reason);
                    break;
                }
                _ => {}
            },
            Err(_) => {
                session.keep_close(1006, "connection lost");
                break;
            }
        }
    }
    let _ = reader_shutdown(session);
    // The client may come back for the close record, within the window.
    while !session.close_delivered() && !session.expired() {
        session.wait_for_change(tick);
    }
    sessions.forget(session);
}

fn reader_shutdown(session: &Session) -> io::Result<()> {
    let up = super::lock(&session.up);
    up.writer.stream().shutdown(std::net::Shutdown::Both)
}

impl Session {
    /// No carrier has come for the resume window.
    fn expired(&self) -> bool {
        let down = self.lock_down();
        !down.attached && down.detached_since.elapsed() > self.window
    }

    /// What is kept is under `max_queue` (a message is kept whole, however big).
    fn has_room(&self) -> bool {
        self.lock_down().kept_bytes < self.max_queue
    }

    /// The client has the close record, or closed the session itself.
    fn close_delivered(&self) -> bool {
        let down = self.lock_down();
        down.closed_by_client || down.end_delivered
    }

    /// Keep a record for the client, held against the memory budget; false when the budget
    /// has no room for it (nothing is kept then).
    fn keep(&self, kind: Kind, payload: Vec<u8>) -> bool {
        let mut down = self.lock_down();
        let len = payload.len();
        if !down.holding.grow(len) {
            return false;
        }
        down.kept_bytes += len;
        let seq = down.next_seq;
        if let Some((_, sender)) = &down.pusher
            && !super::push(sender, kind, seq, &payload)
        {
            // Its connection is closing (it read too slowly): the record waits for the next.
            down.pusher = None;
        }
        down.kept.push_back((kind, payload));
        down.next_seq += 1;
        drop(down);
        self.changed.notify_all();
        true
    }

    /// The end: the close record, numbered after everything kept (and kept apart from it, off
    /// the budget: it is small, and the last).
    fn keep_close(&self, code: u16, reason: &str) {
        let mut down = self.lock_down();
        if down.end.is_none() {
            let end = records::close_payload(code, reason);
            if let Some((_, sender)) = down.pusher.take() {
                down.end_delivered = super::push(&sender, Kind::Close, down.next_seq, &end);
                // The session is over: so is its carrier.
                let _ = sender.close(tungstenite::protocol::frame::coding::CloseCode::Normal, "");
            }
            down.end = Some(end);
        }
        drop(down);
        self.changed.notify_all();
    }

    fn wait_for_change(&self, tick: Duration) {
        let down = self.lock_down();
        let deadline = Instant::now() + tick;
        let _ = self
            .changed
            .wait_timeout(down, deadline - Instant::now())
            .unwrap_or_else(PoisonError::into_inner);
    }
}

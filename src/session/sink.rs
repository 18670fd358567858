//! What the handler's connection writes, taken in memory as it is written (the connection's
//! stream sends to the session instead of its socket: see `Sink`), so that a delivery to a
//! session costs no system call and wakes no thread but its carrier's: each message becomes a
//! numbered record kept for the client, pushed at once to a WebSocket carrier; a ping is
//! answered; the connection's close becomes the session's last record.

use super::records::{self, Kind};
use super::streaming::Pushed;
use super::{Session, lock, push};
use crate::net::stream::Sink;
use crate::ops::metrics::Reason;
use crate::protocol::frame::{BINARY, CLOSE, Header, PING, TEXT};
use log::warn;
use std::io::{self, IoSlice};
use std::sync::Arc;

/// A session, as the sink of its handler's connection.
pub struct SessionSink(pub Arc<Session>);

impl Sink for SessionSink {
    fn take(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|buf| buf.len()).sum();
        let mut bytes = Vec::with_capacity(total);
        for buf in bufs {
            bytes.extend_from_slice(buf);
        }
        // The connection writes whole frames, one or more; the last may not be cut.
        let mut at = 0;
        while at < bytes.len() {
            let header = Header::parse(&bytes[at..]).ok_or(io::ErrorKind::InvalidData)?;
            let end = at + header.size + header.payload as usize;
            let payload = bytes
                .get(at + header.size..end)
                .ok_or(io::ErrorKind::InvalidData)?;
            match header.opcode {
                TEXT | BINARY if at == 0 && end == bytes.len() => {
                    // The common case, one message: its bytes move, without a second copy.
                    bytes.drain(..header.size);
                    return self.0.keep_message(header.opcode, bytes).map(|()| total);
                }
                TEXT | BINARY => self.0.keep_message(header.opcode, payload.to_vec())?,
                // Answered if nobody is writing to the connection just then; a client's
                // message on its way is as good a sign of life.
                PING => {
                    self.0.answer(|writer| writer.pong(payload));
                }
                CLOSE => self.0.connection_closed(payload),
                _ => {}
            }
            at = end;
        }
        Ok(total)
    }
}

impl Session {
    /// Keep a message for the client: `QuotaExceeded` when `max_queue` is kept already (the
    /// client reads too slowly: the connection closes with 1008); past the memory budget the
    /// session ends with 1013.
    fn keep_message(&self, opcode: u8, payload: Vec<u8>) -> io::Result<()> {
        let kind = if opcode == TEXT {
            Kind::Text
        } else {
            Kind::Binary
        };
        let mut down = self.lock_down();
        if down.end.is_some() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if down.kept_bytes >= self.max_queue {
            return Err(io::ErrorKind::QuotaExceeded.into());
        }
        if !down.holding.grow(payload.len()) {
            drop(down);
            warn!(
                "session {}: closing with 1013: server memory budget full; other connections carry on (`memory_budget` sets it)",
                self.id
            );
            self.metrics.refused(Reason::Memory);
            self.end_with(1013, "server memory budget full; try again later");
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        down.kept_bytes += payload.len();
        let seq = down.next_seq;
        if let Some((_, sender)) = &down.pusher
            && !push(sender, kind, seq, &payload)
        {
            // Its connection is closing (it read too slowly): the record waits for the next.
            down.pusher = None;
        }
        // A streaming carrier waiting: written to its socket from here, it need not wake.
        let wake = match &mut down.streaming {
            Some(waiting) => waiting.push(kind, seq, &payload) == Pushed::WakeCarrier,
            None => true,
        };
        down.kept.push_back((kind, payload));
        down.next_seq += 1;
        drop(down);
        if wake {
            self.changed.notify_all();
        }
        Ok(())
    }

    /// The connection sent its close: answered (unless it answers the client's own close),
    /// and kept as the session's last record.
    fn connection_closed(&self, payload: &[u8]) {
        let (code, reason) = match payload {
            [high, low, reason @ ..] => (
                u16::from_be_bytes([*high, *low]),
                String::from_utf8_lossy(reason).into_owned(),
            ),
            _ => (1005, String::new()),
        };
        if !self.lock_down().closed_by_client && !self.answer(|writer| writer.close(code, &reason))
        {
            self.lock_down().answer_owed = true;
        }
        self.end_with(code, &reason);
    }

    /// Write an answer to the connection if nobody else is writing to it just then (the
    /// connection may be this very thread, which must not wait for itself to read); false when
    /// it was not written.
    fn answer(&self, write: impl FnOnce(&mut super::link::LinkWriter) -> io::Result<()>) -> bool {
        match self.up.try_lock() {
            Ok(mut up) => write(&mut up.writer).is_ok(),
            Err(_) => false,
        }
    }

    /// The end: the close record, numbered after everything kept (and kept apart from it, off
    /// the budget: it is small, and the last), pushed to a WebSocket carrier, which then closes.
    pub(super) fn end_with(&self, code: u16, reason: &str) {
        let mut down = self.lock_down();
        if down.end.is_none() {
            let end = records::close_payload(code, reason);
            if let Some((_, sender)) = down.pusher.take() {
                down.end_delivered = push(&sender, Kind::Close, down.next_seq, &end);
                let _ = sender.close(tungstenite::protocol::frame::coding::CloseCode::Normal, "");
            }
            down.end = Some(end);
        }
        drop(down);
        self.changed.notify_all();
    }

    /// A close answer owed to the connection (see `connection_closed`), written by the
    /// session's thread.
    pub(super) fn settle_answers(&self) {
        if std::mem::take(&mut self.lock_down().answer_owed) {
            let mut up = lock(&self.up);
            let _ = up.writer.close(1000, "");
        }
    }
}

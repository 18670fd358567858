//! One open WebSocket as the application sees it: `receive`, `send`, `close`.
//!
//! Underneath, it keeps the connection honest so the application does not have to: a Ping
//! after `ping_interval` of silence, close 1011 when a second interval passes with nothing
//! heard, the right close code for a protocol fault (1002), invalid UTF-8 or compressed data
//! (1007) or an oversized message (1009), close 1013 for a message the memory budget has no
//! room for, close 1001 when the server shuts down, and counts of what went each way.

use crate::ops::metrics::{LiveTraffic, Metrics, Traffic};
use crate::ops::shutdown::ShutdownSignal;
use crate::protocol::deflate::{Stored, bad_deflate};
use crate::protocol::inbound::{
    Header, MAX_HEADER, OverBudget, leaves_tungstenite_idle, over_budget,
};
use crate::protocol::outbox::{Interruption, Outbox, Sender};
use crate::protocol::socket::Socket;
use crate::protocol::socket::{discard_until, is_timeout, set_timeout_until};
use log::warn;
use std::fmt;
use std::io::{IoSlice, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::error::ProtocolError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::{CloseFrame, Frame};
use tungstenite::{Error, Message, WebSocket};

/// How a connection ended, for its closing log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Still open.
    Open,
    /// The client sent a close frame (1005 when it carried no code).
    ClosedByClient(u16),
    /// We sent a close frame with this code and reason.
    ClosedByServer(u16, String),
    /// The connection broke without a close handshake.
    Dropped(String),
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Open => write!(f, "still open"),
            Ending::ClosedByClient(code) => write!(f, "closed by client, code {code}"),
            Ending::ClosedByServer(code, reason) => {
                write!(f, "closed by server, code {code} ({reason})")
            }
            Ending::Dropped(why) => write!(f, "dropped without close, code 1006 ({why})"),
        }
    }
}

/// Who a connection is: set at the upgrade, read by the application.
pub(crate) struct About {
    pub id: u64,
    pub peer: SocketAddr,
    pub path: String,
    pub protocol: Option<String>,
}

/// One open WebSocket, owned by its thread: receive whole messages, send, close.
pub struct Connection {
    ws: WebSocket<Socket>,
    about: About,
    shutdown: ShutdownSignal,
    /// Set when a keepalive Ping went out and nothing has been heard since.
    ping_outstanding: bool,
    /// Set by `close`: wait for the client's close frame before hanging up.
    await_close_reply: bool,
    max_message_size: usize,
    /// Most bytes a `Sender` may have queued for this client.
    max_queue: usize,
    /// What went each way so far, read by `/metrics` while the connection is open.
    traffic: Arc<LiveTraffic>,
    metrics: Arc<Metrics>,
    ending: Ending,
    /// The client stopped reading and was given up on: no lingering for it at the end.
    given_up: bool,
    /// tungstenite holds no bytes of a frame (it has read nothing yet, or its last read
    /// returned a message): the next one-frame message may be read past it.
    tungstenite_idle: bool,
    /// Everything written through tungstenite has gone out: `send_direct` need not flush it.
    tungstenite_flushed: bool,
}

impl Connection {
    /// Wrap an upgraded socket. Its read timeout is the keepalive tick, so it is set here.
    pub(crate) fn new(
        ws: WebSocket<Socket>,
        about: About,
        ping_interval: Duration,
        max_message_size: usize,
        max_queue: usize,
        shutdown: ShutdownSignal,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Connection> {
        ws.get_ref().tcp().set_read_timeout(Some(ping_interval))?;
        // A client that stops reading for two intervals is as gone as a silent one.
        ws.get_ref()
            .tcp()
            .set_write_timeout(Some(ping_interval * 2))?;
        Ok(Connection {
            ws,
            about,
            shutdown,
            ping_outstanding: false,
            await_close_reply: false,
            max_message_size,
            max_queue,
            traffic: metrics.track(),
            metrics,
            ending: Ending::Open,
            given_up: false,
            tungstenite_idle: true,
            tungstenite_flushed: true,
        })
    }

    /// The next text or binary message, fragments already joined; `Ok(None)` once the
    /// connection has closed (by either side, with the close handshake done or under way).
    /// `Err` means it broke (a network error, or the client vanished without a close).
    pub fn receive(&mut self) -> Result<Option<Message>, Error> {
        // Whatever the application was handed before, it has dealt with.
        self.ws.get_mut().inbound().release_delivered();
        loop {
            if self.ending != Ending::Open {
                return Ok(None);
            }
            if self.shutdown.is_triggered() {
                self.close(CloseCode::Away, "server shutting down")?;
                return Ok(None);
            }
            match self.read() {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                    self.ws.get_mut().inbound().delivered(message.len());
                    self.ping_outstanding = false;
                    self.traffic.received(message.len());
                    return Ok(Some(message));
                }
                Ok(Message::Close(frame)) => {
                    // tungstenite has queued the reply; the next read sends it.
                    let code = frame.map_or(1005, |frame| u16::from(frame.code));
                    self.ending = Ending::ClosedByClient(code);
                    return self.finish_close_handshake();
                }
                Ok(message) => {
                    // Pongs just prove life; pings are answered.
                    self.ping_outstanding = false;
                    if matches!(message, Message::Ping(_)) {
                        self.send_pong()?;
                    }
                }
                Err(Error::Io(error)) if is_timeout(&error) => self.keepalive_tick()?,
                Err(Error::Io(error)) if over_budget(&error).is_some() => {
                    return self.refuse(&error).map(|()| None);
                }
                Err(Error::Io(error)) if bad_deflate(&error).is_some() => {
                    self.send_close(CloseCode::Invalid, "invalid compressed data")?;
                    return Ok(None);
                }
                Err(Error::Io(error)) => match self.take_interruption(&error) {
                    Some(interruption) => return self.interrupted(interruption),
                    None => return self.fail(Error::Io(error)),
                },
                Err(error) => return self.fail(error),
            }
        }
    }

    /// The next message or control frame: one-frame messages straight from the socket while
    /// tungstenite has nothing under way (see `Inbound::read_direct`), the rest from tungstenite.
    fn read(&mut self) -> Result<Message, Error> {
        if self.tungstenite_idle {
            match self.ws.get_mut().read_direct() {
                Ok(Some(message)) => return Ok(message),
                Ok(None) => {}
                // A timeout, say (tungstenite still holds nothing), or a fault in a message
                // read past it.
                Err(error) => return Err(error),
            }
        }
        let read = self.ws.read();
        self.tungstenite_idle = leaves_tungstenite_idle(&read);
        read
    }

    /// tungstenite has queued the Pong for a Ping it read: send it now, so that `send_direct`
    /// need not flush before every message. A client that cannot take it within the write
    /// timeout has stopped reading: the connection is dropped.
    fn send_pong(&mut self) -> Result<(), Error> {
        self.tungstenite_flushed = false;
        if let Err(error) = self.ws.flush() {
            self.ending = Ending::Dropped(format!("could not send a pong: {error}"));
            return Err(error);
        }
        self.tungstenite_flushed = true;
        Ok(())
    }

    /// Send a message through tungstenite (control frames, or a data message once closing),
    /// flushed.
    fn send_through_tungstenite(&mut self, message: Message) -> Result<(), Error> {
        self.tungstenite_flushed = false;
        self.ws.send(message)?;
        self.tungstenite_flushed = true;
        Ok(())
    }

    /// Send one message, whole, and flush it.
    pub fn send(&mut self, message: Message) -> Result<(), Error> {
        let len = message.len();
        let direct = self.ws.can_write();
        match message {
            Message::Text(text) if direct => self.send_direct(TEXT, text.as_bytes())?,
            Message::Binary(data) if direct => self.send_direct(BINARY, &data)?,
            message => {
                self.traffic.sent(len);
                self.send_through_tungstenite(message)?
            }
        }
        Ok(())
    }

    /// Write a message's frame ourselves, header and payload in one `writev`, straight from the
    /// message, held against the memory budget while it goes out. tungstenite would copy it
    /// into its write buffer (which then keeps the size of the biggest for the connection's
    /// whole life) and take three times the instructions for a small one.
    fn send_direct(&mut self, opcode: u8, payload: &[u8]) -> Result<(), Error> {
        // Whatever tungstenite has buffered goes first: frames never interleave.
        if !self.tungstenite_flushed {
            self.ws.flush()?;
            self.tungstenite_flushed = true;
        }
        let len = payload.len();
        let socket = self.ws.get_mut();
        if !socket.inbound().hold_for_writing(len) {
            let error = std::io::Error::other(OverBudget::now(len as u64, socket.budget()));
            self.refuse(&error)?;
            return Err(Error::Io(error));
        }
        // Counted before it goes: a scrape that follows the client's receipt sees it.
        self.traffic.sent(len);
        let written = match socket.inbound().deflate() {
            false => write_frame(socket, opcode, payload),
            true => write_stored(socket, opcode, payload),
        };
        socket.inbound().written(len);
        written
    }

    /// A handle that sends to this client from any thread, never waiting for it (see
    /// [`Sender`]); what it has queued goes out while this connection waits in `receive`.
    pub fn sender(&mut self) -> Sender {
        if let Some(outbox) = self.ws.get_ref().outbox() {
            return Sender::new(Arc::clone(outbox));
        }
        let socket = self.ws.get_mut();
        let budget = Arc::clone(socket.budget());
        let traffic = Arc::clone(&self.traffic);
        let outbox = Outbox::new(
            self.about.id,
            socket.stream(),
            self.max_queue,
            budget,
            traffic,
        );
        socket.link(Arc::clone(&outbox));
        Sender::new(outbox)
    }

    /// Start the close handshake with `code`; the client's reply is awaited in `finish`.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.send_close(code, reason)?;
        self.await_close_reply = true;
        Ok(())
    }

    /// Send our close frame (once). Without `close`'s promise to await the reply, as when
    /// failing a connection: the client is broken, gone, or breaking the protocol.
    fn send_close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if self.ending != Ending::Open {
            return Ok(());
        }
        self.ending = Ending::ClosedByServer(code.into(), reason.to_string());
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        if self.ws.can_write() {
            self.tungstenite_flushed = false;
            return self.ws.close(Some(frame));
        }
        // tungstenite has already seen the socket end (our own shutdown wake-up reads EOF),
        // but the write half is still open: say goodbye properly all the same. In one write:
        // between two, a `Sender`'s frame could slip in (see `outbox.rs`).
        let mut bytes = Vec::with_capacity(2 + 2 + reason.len());
        Frame::close(Some(frame)).format(&mut bytes)?;
        Ok(self.ws.get_mut().write_all(&bytes)?)
    }

    /// The server's number for this connection, as in its log lines.
    pub fn id(&self) -> u64 {
        self.about.id
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.about.peer
    }

    /// The path it connected to (the route), without the query.
    pub fn path(&self) -> &str {
        &self.about.path
    }

    /// The subprotocol chosen at the upgrade, if the route speaks one the client offered.
    pub fn protocol(&self) -> Option<&str> {
        self.about.protocol.as_deref()
    }

    /// How the connection ended so far.
    pub fn ending(&self) -> &Ending {
        &self.ending
    }

    /// Messages and bytes each way so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic.now()
    }

    /// The application returned an error: a broken connection is recorded as dropped;
    /// anything else closes with 1011 (internal error).
    pub(crate) fn application_failed(&mut self, error: &Error) {
        if self.ending != Ending::Open {
            return;
        }
        match error {
            Error::Io(_) | Error::ConnectionClosed | Error::AlreadyClosed => {
                self.ending = Ending::Dropped(error.to_string());
            }
            _ => {
                let _ = self.send_close(CloseCode::Error, &error.to_string());
            }
        }
    }

    /// End the connection: if still open, close 1000. When we sent the close, wait (at most
    /// `linger`) for the client's reply; then stop writing and wait out the client's hang-up,
    /// so that our close frame is read before the socket goes.
    pub(crate) fn finish(mut self, linger: Duration) {
        if self.ending == Ending::Open {
            let _ = self.close(CloseCode::Normal, "");
        }
        let deadline = Instant::now() + linger;
        if self.await_close_reply {
            // tungstenite reports ConnectionClosed once the reply arrives; anything else
            // (data still in flight, garbage after a fault, a timeout) ends the wait as well.
            while set_timeout_until(self.ws.get_ref().tcp(), deadline) && self.ws.read().is_ok() {}
        }
        let stream = self.ws.get_mut();
        // A broken connection, or a client given up on for not reading, will not read our
        // last words: no waiting for it.
        let hang_up = self.given_up || matches!(self.ending, Ending::Dropped(_));
        let _ = stream.close_write(if hang_up { Instant::now() } else { deadline });
        if !hang_up {
            discard_until(stream, deadline, usize::MAX);
        }
    }

    /// Why a read failed on purpose (a `Sender` asked to close, or the queue overflowed).
    fn take_interruption(&self, error: &std::io::Error) -> Option<Interruption> {
        self.ws.get_ref().outbox()?.interruption(error)
    }

    fn interrupted(&mut self, interruption: Interruption) -> Result<Option<Message>, Error> {
        let (code, reason) = match interruption {
            Interruption::CloseRequested(code, reason) => {
                self.close(code, &reason)?;
                return Ok(None);
            }
            Interruption::TooSlow { limit } => (
                CloseCode::Policy,
                format!("client reads too slowly: more than {limit} bytes were waiting for it"),
            ),
            Interruption::OverBudget { limit } => (
                CloseCode::Again,
                format!("server memory budget ({limit} bytes) full; try again later"),
            ),
        };
        if code == CloseCode::Again {
            self.metrics.refused("memory");
        }
        warn!(
            "#{} closing with {}: {reason}",
            self.about.id,
            u16::from(code)
        );
        // The client is not reading: say goodbye only if it fits now, then hang up.
        if let Some(outbox) = self.ws.get_ref().outbox() {
            outbox.close_now(code, &reason);
        }
        self.given_up = true;
        self.ending = Ending::ClosedByServer(code.into(), reason);
        Ok(None)
    }

    /// A message had no room in the memory budget: close with 1013, and log why.
    fn refuse(&mut self, error: &std::io::Error) -> Result<(), Error> {
        self.metrics.refused("memory");
        if let Some(refusal) = over_budget(error) {
            warn!(
                "#{} closing with 1013: {refusal}; other connections carry on (--memory-budget sets it)",
                self.about.id
            );
        }
        self.send_close(
            CloseCode::Again,
            "server memory budget full; try again later",
        )
    }

    /// The read timeout fired: one interval of silence earns a Ping, two close the connection.
    fn keepalive_tick(&mut self) -> Result<(), Error> {
        if self.ping_outstanding {
            return self.send_close(CloseCode::Error, "keepalive timeout: no answer to ping");
        }
        self.ping_outstanding = true;
        self.send_through_tungstenite(Message::Ping(Default::default()))
    }

    /// After the client's close: send the queued reply and see the handshake through.
    fn finish_close_handshake(&mut self) -> Result<Option<Message>, Error> {
        match self.ws.read() {
            Ok(_) | Err(Error::ConnectionClosed) | Err(Error::AlreadyClosed) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// A read failed: close with the code the fault calls for, or report the break.
    fn fail(&mut self, error: Error) -> Result<Option<Message>, Error> {
        let (code, reason) = match &error {
            Error::ConnectionClosed | Error::AlreadyClosed => return Ok(None),
            Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)
                if self.shutdown.is_triggered() =>
            {
                // Our own wake-up at shutdown: everything the client sent has been read.
                (CloseCode::Away, "server shutting down".to_string())
            }
            Error::Capacity(_) => (
                CloseCode::Size,
                format!("message larger than {} bytes", self.max_message_size),
            ),
            Error::Utf8(_) => (CloseCode::Invalid, "invalid UTF-8 in text".to_string()),
            Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) | Error::Io(_) => {
                self.ending = Ending::Dropped(error.to_string());
                return Err(error);
            }
            Error::Protocol(fault) => (CloseCode::Protocol, fault.to_string()),
            _ => (CloseCode::Error, error.to_string()),
        };
        self.send_close(code, &reason)?;
        Ok(None)
    }
}

impl Drop for Connection {
    /// Its traffic joins the server's totals (also when its handler panicked).
    fn drop(&mut self) {
        self.metrics.ended(&self.traffic);
    }
}

/// Opcodes of the data frames `send_direct` writes.
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;

/// A frame as it is: header and payload in one `writev`.
fn write_frame(socket: &mut Socket, opcode: u8, payload: &[u8]) -> Result<(), Error> {
    let mut head = [0u8; MAX_HEADER];
    let head_len = Header::reply(opcode, false, payload.len() as u64).write(&mut head);
    Ok(socket.write_both(&head[..head_len], payload)?)
}

/// With permessage-deflate agreed: RSV1 set, and the payload in stored blocks (see
/// `deflate.rs`), all in one `writev`.
fn write_stored(socket: &mut Socket, opcode: u8, payload: &[u8]) -> Result<(), Error> {
    let stored = Stored::new(payload.len());
    let mut head = [0u8; MAX_HEADER];
    let wire_len = stored.wire_len(payload.len()) as u64;
    let head_len = Header::reply(opcode, true, wire_len).write(&mut head);
    let blocks = stored.slices(payload).map(IoSlice::new);
    let mut slices: Vec<IoSlice> = std::iter::once(IoSlice::new(&head[..head_len]))
        .chain(blocks)
        .collect();
    Ok(socket.write_slices(&mut slices)?)
}

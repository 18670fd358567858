//! One open WebSocket as the application sees it: `receive`, `send`, `close`.
//!
//! Underneath, it keeps the connection honest so the application does not have to: a Ping
//! after `ping_interval` of silence, close 1011 when a second interval passes with nothing
//! heard, the right close code for a protocol fault (1002), invalid UTF-8 or compressed data
//! (1007) or an oversized message (1009), close 1013 for a message the memory budget has no
//! room for, close 1001 when the server shuts down (1012 for a restart), close 1008 for a client
//! past its message rate (`Config::max_messages_per_second`), and counts of what went each way.

use crate::net::http::{self, Head};
use crate::net::stream::discard_until;
use crate::ops::config::Config;
use crate::ops::metrics::{LiveTraffic, Metrics, Reason, Traffic};
use crate::ops::shutdown::Shutdown;
use crate::protocol::deflate::{self, STORED_END, Stored};
use crate::protocol::frame::{self, BINARY, CLOSE, Header, MAX_HEADER, PING, PONG, TEXT};
use crate::protocol::outbox::{Interruption, Outbox, Sender};
use crate::protocol::reader::{Fault, OverBudget};
use crate::protocol::room::{Room, Rooms};
use crate::protocol::socket::Socket;
use log::warn;
use std::fmt;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::error::ProtocolError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Error, Message};

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

/// What `Connection::receive_or_watched` saw.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A text or binary message from the client.
    Message(Message),
    /// The connection has closed (as `receive` returning `None`).
    Closed,
    /// Watched descriptors are readable or hung up: bit `i` for the `i`th.
    Watched(u8),
}

/// Who a connection is: set at the upgrade, read by the application.
pub(crate) struct About {
    pub id: u64,
    pub peer: SocketAddr,
    pub path: String,
    pub protocol: Option<String>,
    /// The upgrade request's head, for its query and headers.
    pub head: Head,
    /// The `sub` of its token (`Config::jwt_key`), if it brought one that has it.
    pub subject: Option<String>,
}

/// One open WebSocket, owned by its thread: receive whole messages, send, close.
pub struct Connection {
    socket: Socket,
    about: About,
    shutdown: Shutdown,
    /// Set when a keepalive Ping went out and nothing has been heard since.
    ping_outstanding: bool,
    /// Set by `close`: wait for the client's close frame before hanging up.
    await_close_reply: bool,
    /// Most bytes a `Sender` may have queued for this client.
    max_queue: usize,
    /// What went each way so far, read by `/metrics` while the connection is open.
    traffic: Arc<LiveTraffic>,
    metrics: Arc<Metrics>,
    ending: Ending,
    /// The client stopped reading and was given up on: no lingering for it at the end.
    given_up: bool,
    /// The server's named rooms.
    rooms: Rooms,
}

impl Connection {
    /// Wrap an upgraded socket, with `config`'s keepalive, queue limit and message rate. Its
    /// read timeout is the keepalive tick, so it is set here.
    pub(crate) fn new(
        mut socket: Socket,
        about: About,
        config: &Config,
        shutdown: Shutdown,
        metrics: Arc<Metrics>,
        rooms: Rooms,
    ) -> std::io::Result<Connection> {
        let ping_interval = config.ping_interval;
        if let Some(per_second) = config.max_messages_per_second {
            socket.reader().limit_rate(per_second);
        }
        socket.set_read_timeout(Some(ping_interval))?;
        // A client that stops reading for two intervals is as gone as a silent one.
        socket.wire().set_write_timeout(Some(ping_interval * 2))?;
        Ok(Connection {
            socket,
            about,
            shutdown,
            ping_outstanding: false,
            await_close_reply: false,
            max_queue: config.max_queue,
            traffic: metrics.track(),
            metrics,
            ending: Ending::Open,
            given_up: false,
            rooms,
        })
    }

    /// The next text or binary message, fragments already joined; `Ok(None)` once the
    /// connection has closed (by either side, with the close handshake done or under way).
    /// `Err` means it broke (a network error, or the client vanished without a close).
    pub fn receive(&mut self) -> Result<Option<Message>, Error> {
        match self.next_incoming()? {
            Incoming::Message(message) => Ok(Some(message)),
            // Nothing is watched outside `receive_or_watched`.
            Incoming::Closed | Incoming::Watched(_) => Ok(None),
        }
    }

    /// As `receive`, but also return `Incoming::Watched` as soon as one of `watched` (at most
    /// two descriptors, such as a program's stdout and stderr, see `wake::watch`) is ready, while
    /// the connection goes on as in `receive` (keepalive, queued sends, closes) meanwhile.
    pub(crate) fn receive_or_watched(
        &mut self,
        watched: &[libc::pollfd],
    ) -> Result<Incoming, Error> {
        // The outbox is what waits on the socket and the watched descriptors together.
        let outbox = self.sender();
        outbox.outbox().watch(watched);
        let incoming = self.next_incoming();
        outbox.outbox().watch(&[]);
        incoming
    }

    // Inlined into each caller, so that `receive` hands a message straight into its own
    // result: a call returning `Incoming` cost 30 instructions per echo (callgrind).
    #[inline(always)]
    fn next_incoming(&mut self) -> Result<Incoming, Error> {
        // Whatever the application was handed before, it has dealt with.
        self.socket.reader().release_delivered();
        loop {
            if self.ending != Ending::Open {
                return Ok(Incoming::Closed);
            }
            if self.shutdown.is_triggered() {
                let (code, reason) = shutdown_close(&self.shutdown);
                self.close(code, reason)?;
                return Ok(Incoming::Closed);
            }
            match self.socket.next() {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                    self.ping_outstanding = false;
                    self.traffic.received(message.len());
                    return Ok(Incoming::Message(message));
                }
                Ok(Message::Close(frame)) => {
                    let code = frame.map_or(1005, |frame| u16::from(frame.code));
                    self.ending = Ending::ClosedByClient(code);
                    // The reply carries the client's code back; none if it gave none.
                    let reply = match code {
                        1005 => Vec::new(),
                        code => frame::close_payload(code, ""),
                    };
                    self.write_close(&reply)?;
                    return Ok(Incoming::Closed);
                }
                Ok(Message::Ping(data)) => {
                    self.ping_outstanding = false;
                    self.write_control(PONG, &data)?;
                }
                // Pongs just prove life.
                Ok(_) => self.ping_outstanding = false,
                Err(Fault::Timeout) => self.keepalive_tick()?,
                Err(Fault::Interrupted) => {
                    let Some(outbox) = self.socket.outbox() else {
                        continue;
                    };
                    if let Some(interruption) = outbox.interruption() {
                        self.interrupted(interruption)?;
                        return Ok(Incoming::Closed);
                    }
                    let ready = outbox.take_watched_ready();
                    if ready != 0 {
                        return Ok(Incoming::Watched(ready));
                    }
                }
                Err(fault) => {
                    self.fail(fault)?;
                    return Ok(Incoming::Closed);
                }
            }
        }
    }

    /// Send one message, whole, and flush it. A close message starts the close handshake.
    // Inlined into each handler, as `receive` is: a call cost 23 instructions per echo.
    #[inline(always)]
    pub fn send(&mut self, message: Message) -> Result<(), Error> {
        if self.ending != Ending::Open {
            return Err(Error::AlreadyClosed);
        }
        match message {
            Message::Text(text) => self.send_message(TEXT, text.as_bytes()),
            Message::Binary(data) => self.send_message(BINARY, &data),
            Message::Ping(data) => self.send_control(PING, &data),
            Message::Pong(data) => self.send_control(PONG, &data),
            Message::Close(None) => self.close(CloseCode::Normal, ""),
            Message::Close(Some(close)) => self.close(close.code, &close.reason),
            Message::Frame(_) => Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "send a text, binary, ping, pong or close message, not a raw frame",
            ))),
        }
    }

    /// A control frame the application sends: at most 125 bytes, as the protocol says.
    fn send_control(&mut self, opcode: u8, payload: &[u8]) -> Result<(), Error> {
        if payload.len() > frame::MAX_CONTROL {
            return Err(Error::Protocol(ProtocolError::ControlFrameTooBig));
        }
        self.write_control(opcode, payload)
    }

    /// Write a data message's frame, header and payload in one `writev`, straight from the
    /// message, held against the memory budget while it goes out.
    fn send_message(&mut self, opcode: u8, payload: &[u8]) -> Result<(), Error> {
        let len = payload.len();
        if !self.socket.reader().hold_for_writing(len) {
            let refusal = OverBudget::now(len as u64, self.socket.budget());
            self.refuse(&refusal)?;
            return Err(Error::Io(std::io::Error::other(refusal.to_string())));
        }
        // Counted before it goes: a scrape that follows the client's receipt sees it.
        self.traffic.sent(len);
        let written = match self.socket.reader().deflate() {
            false => write_frame(&mut self.socket, opcode, payload),
            true => write_stored(&mut self.socket, opcode, payload),
        };
        self.socket.reader().written(len);
        written.map_err(|error| self.broke("could not send a message", error))
    }

    /// Write a control frame (a pong, a ping, a close). A client that cannot take it within
    /// the write timeout has stopped reading: the connection is dropped.
    fn write_control(&mut self, opcode: u8, payload: &[u8]) -> Result<(), Error> {
        write_frame(&mut self.socket, opcode, payload)
            .map_err(|error| self.broke("could not send a control frame", error))
    }

    /// A write failed: the connection is dropped.
    fn broke(&mut self, what: &str, error: Error) -> Error {
        if matches!(self.ending, Ending::Open | Ending::ClosedByServer(..)) {
            self.ending = Ending::Dropped(format!("{what}: {error}"));
        }
        error
    }

    /// A handle that sends to this client from any thread, never waiting for it (see
    /// [`Sender`]); what it has queued goes out while this connection waits in `receive`.
    pub fn sender(&mut self) -> Sender {
        if let Some(outbox) = self.socket.outbox() {
            return Sender::new(Arc::clone(outbox));
        }
        let budget = Arc::clone(self.socket.budget());
        let traffic = Arc::clone(&self.traffic);
        let outbox = Outbox::new(
            self.about.id,
            self.socket.stream(),
            self.max_queue,
            budget,
            traffic,
        );
        self.socket.link(Arc::clone(&outbox));
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
        self.write_close(&frame::close_payload(code.into(), reason))
    }

    /// Write our close frame, the last frame of the connection: no message from a `Sender`
    /// may follow it.
    fn write_close(&mut self, payload: &[u8]) -> Result<(), Error> {
        if let Some(outbox) = self.socket.outbox() {
            outbox.closing();
        }
        self.write_control(CLOSE, payload)
    }

    /// The server's room called `name`: the same room for every connection and for
    /// [`Server::room`](crate::Server::room), made on first use; with `Config::redis`, the room
    /// of that name on every instance.
    pub fn room(&self, name: &str) -> Room {
        self.rooms.room(name)
    }

    /// Whether the server is shutting down (the connection then closes with 1001).
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown.is_triggered()
    }

    /// The server's number for this connection, as in its log lines.
    pub fn id(&self) -> u64 {
        self.about.id
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.about.peer
    }

    /// Who the client's token says it is: the `sub` claim of the signed token it connected
    /// with, when `Config::jwt_key` requires one (`None` without, or when it has no `sub`).
    pub fn subject(&self) -> Option<&str> {
        self.about.subject.as_deref()
    }

    /// The path it connected to (the route), without the query.
    pub fn path(&self) -> &str {
        &self.about.path
    }

    /// The subprotocol chosen at the upgrade, if the route speaks one the client offered.
    pub fn protocol(&self) -> Option<&str> {
        self.about.protocol.as_deref()
    }

    /// The query string after `?` in the upgrade request, as sent (not decoded); empty when
    /// there is none.
    pub fn query(&self) -> &str {
        http::query_of(self.about.head.target())
    }

    /// The first value of the upgrade request's header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let fields = self.about.head.fields();
        fields
            .into_iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// Every header of the upgrade request, name and value, in the order sent.
    pub fn headers(&self) -> Vec<(&str, &str)> {
        self.about.head.fields()
    }

    /// The address the client connected to (`None` for a `TestClient`'s connection).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.socket.wire().local_addr()
    }

    /// Whether the connection speaks TLS (`wss://`).
    pub fn is_tls(&self) -> bool {
        self.socket.is_tls()
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
    /// so that our close frame is read before the socket goes. Returns how it ended.
    pub(crate) fn finish(mut self, linger: Duration) -> Ending {
        if self.ending == Ending::Open {
            let _ = self.close(CloseCode::Normal, "");
        }
        let deadline = Instant::now() + linger;
        if self.await_close_reply {
            // Until the client's close arrives; data still in flight is read and let go, and
            // anything else (a fault, a timeout, the end) ends the wait as well.
            while self.socket.set_timeout_until(deadline) {
                self.socket.reader().release_delivered();
                match self.socket.next() {
                    Ok(Message::Close(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        let stream = &mut self.socket;
        // A broken connection, or a client given up on for not reading, will not read our
        // last words: no waiting for it.
        let hang_up = self.given_up || matches!(self.ending, Ending::Dropped(_));
        let _ = stream.close_write(if hang_up { Instant::now() } else { deadline });
        if !hang_up {
            discard_until(stream, deadline, usize::MAX);
        }
        std::mem::replace(&mut self.ending, Ending::Open)
    }

    fn interrupted(&mut self, interruption: Interruption) -> Result<(), Error> {
        let (code, reason) = match interruption {
            Interruption::CloseRequested(code, reason) => {
                return self.close(code, &reason);
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
            self.metrics.refused(Reason::Memory);
        }
        warn!(
            "#{} closing with {}: {reason}",
            self.about.id,
            u16::from(code)
        );
        // The client is not reading: say goodbye only if it fits now, then hang up.
        if let Some(outbox) = self.socket.outbox() {
            outbox.close_now(code, &reason);
        }
        self.given_up = true;
        self.ending = Ending::ClosedByServer(code.into(), reason);
        Ok(())
    }

    /// A message had no room in the memory budget: close with 1013, and log why.
    fn refuse(&mut self, refusal: &OverBudget) -> Result<(), Error> {
        self.metrics.refused(Reason::Memory);
        warn!(
            "#{} closing with 1013: {refusal}; other connections carry on (`memory_budget` sets it)",
            self.about.id
        );
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
        self.write_control(PING, &[])
    }

    /// Reading failed: close with the code the fault calls for, or report the break.
    fn fail(&mut self, fault: Fault) -> Result<(), Error> {
        let (code, reason) = match fault {
            Fault::Ended if self.shutdown.is_triggered() => {
                // Our own wake-up at shutdown: everything the client sent has been read.
                let (code, reason) = shutdown_close(&self.shutdown);
                (code, reason.to_string())
            }
            Fault::Ended => {
                let error = Error::Protocol(ProtocolError::ResetWithoutClosingHandshake);
                self.ending = Ending::Dropped(error.to_string());
                return Err(error);
            }
            Fault::Io(error) => {
                self.ending = Ending::Dropped(error.to_string());
                return Err(Error::Io(error));
            }
            Fault::OverBudget(refusal) => return self.refuse(&refusal),
            Fault::TooBig { .. } => (CloseCode::Size, fault.to_string()),
            Fault::Utf8 | Fault::BadDeflate(_) => (CloseCode::Invalid, fault.to_string()),
            Fault::Protocol(what) => (CloseCode::Protocol, what.to_string()),
            Fault::RateLimit { .. } => {
                warn!(
                    "#{} {} on {}: {fault} (`max_messages_per_second`); closing it with 1008",
                    self.about.id, self.about.peer, self.about.path
                );
                self.metrics.refused(Reason::RateLimit);
                // As `close`: the client's reply is awaited.
                return self.close(CloseCode::Policy, "message rate limit");
            }
            // Handled where reading goes on.
            Fault::Timeout | Fault::Interrupted => return Ok(()),
        };
        self.send_close(code, &reason)
    }
}

impl Drop for Connection {
    /// Its traffic joins the server's totals (also when its handler panicked).
    fn drop(&mut self) {
        self.metrics.ended(&self.traffic);
    }
}

/// A frame as it is: header and payload in one `writev`.
fn write_frame(socket: &mut Socket, opcode: u8, payload: &[u8]) -> Result<(), Error> {
    let mut head = [0u8; MAX_HEADER];
    let head_len = Header::server(opcode, false, payload.len() as u64).write(&mut head);
    Ok(socket.write_both(&head[..head_len], payload)?)
}

/// With permessage-deflate agreed: RSV1 set, and the payload in stored blocks (see
/// `deflate.rs`), all in one `writev`.
fn write_stored(socket: &mut Socket, opcode: u8, payload: &[u8]) -> Result<(), Error> {
    if let Some(block) = deflate::single_block(payload.len()) {
        let mut head = [0u8; MAX_HEADER];
        let wire_len = (payload.len() + block.len() + STORED_END.len()) as u64;
        let head_len = Header::server(opcode, true, wire_len).write(&mut head);
        let mut slices = [
            IoSlice::new(&head[..head_len]),
            IoSlice::new(&block),
            IoSlice::new(payload),
            IoSlice::new(&STORED_END),
        ];
        return Ok(socket.write_slices(&mut slices)?);
    }
    let stored = Stored::new(payload.len());
    let mut head = [0u8; MAX_HEADER];
    let wire_len = stored.wire_len(payload.len()) as u64;
    let head_len = Header::server(opcode, true, wire_len).write(&mut head);
    let blocks = stored.slices(payload).map(IoSlice::new);
    let mut slices: Vec<IoSlice> = std::iter::once(IoSlice::new(&head[..head_len]))
        .chain(blocks)
        .collect();
    Ok(socket.write_slices(&mut slices)?)
}

/// The close a client gets at shutdown: 1012 when the server restarts, else 1001.
fn shutdown_close(shutdown: &Shutdown) -> (CloseCode, &'static str) {
    if shutdown.is_restart() {
        (CloseCode::Restart, "server restarting")
    } else {
        (CloseCode::Away, "server shutting down")
    }
}

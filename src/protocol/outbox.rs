//! The way to one client from any thread: a cloneable [`Sender`] whose sends never wait for the
//! client, and the outgoing queue behind it that the connection's own thread writes out.
//!
//! A send writes the frame to the socket at once, without blocking, when nothing is queued
//! before it; whatever the socket does not take is queued (the frame shared, not copied) and
//! the connection's thread is nudged (see `wake.rs`) to write it when the client reads. The
//! queue is bounded in bytes: a send that would overflow it closes the connection (1008, the
//! client reads too slowly), frees the queue, and tells the sender. A queued frame is also
//! held against the server's memory budget, once however many queues share it; no room there
//! closes the connection with 1013. The connection's thread
//! writes its own frames (tungstenite's) through the same place, so frames never interleave:
//! whoever writes first finishes its frame before anyone else's bytes go out.
//!
//! A connection gets an outbox only when its handler asks for a `Sender`; until then reads and
//! writes go straight to the socket, as for `/echo`.

use crate::net::stream::Stream;
use crate::net::wake::{self, MAX_WATCHED, ThreadHandle, Woken};
use crate::ops::budget::{Budget, Holding};
use crate::ops::metrics::LiveTraffic;
use crate::protocol::frame::{self, BINARY, CLOSE, PING, PONG, TEXT};
use crate::protocol::reader::Fault;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

/// Sends to one client from any thread; clone it freely. Encoded from one `Sender` (or from
/// clones used one after another) reach the client in the order sent.
#[derive(Clone)]
pub struct Sender {
    outbox: Arc<Outbox>,
}

/// Why a send did not go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The connection has ended (or is closing).
    Closed,
    /// The client reads too slowly: its queue overflowed, and the connection is being closed
    /// with 1008.
    TooSlow,
    /// The server's memory budget had no room to queue the frame: the connection is being
    /// closed with 1013 (try again later).
    OverBudget,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed => write!(f, "the connection is closed"),
            SendError::TooSlow => write!(f, "the client reads too slowly; it is being closed"),
            SendError::OverBudget => write!(
                f,
                "the server's memory budget has no room to queue this; the client is being closed"
            ),
        }
    }
}

impl std::error::Error for SendError {}

/// A frame, encoded once, to be sent to one client or many.
#[derive(Clone)]
pub struct Encoded(Arc<Payload>);

struct Payload {
    bytes: Box<[u8]>,
    /// For a text or binary message, its payload's length (for `/metrics`).
    message_len: Option<usize>,
    /// Taken from the memory budget once, when some client's queue first keeps the frame;
    /// given back when the last clone goes. `None` inside: the budget had no room.
    held: OnceLock<Option<Holding>>,
}

impl Encoded {
    /// Encode `message` as one unmasked server frame.
    pub fn encode(message: &Message) -> Encoded {
        let message_len =
            matches!(message, Message::Text(_) | Message::Binary(_)).then(|| message.len());
        let out = match message {
            Message::Text(text) => frame::encode(TEXT, text.as_bytes()),
            Message::Binary(data) => frame::encode(BINARY, data),
            Message::Ping(data) => frame::encode(PING, data),
            Message::Pong(data) => frame::encode(PONG, data),
            Message::Close(close) => frame::encode(CLOSE, &close_payload(close.as_ref())),
            Message::Frame(frame) => {
                let mut out = Vec::with_capacity(frame.len());
                // Writing to a Vec cannot fail.
                let _ = frame.clone().format(&mut out);
                out
            }
        };
        Encoded(Arc::new(Payload {
            bytes: out.into(),
            message_len,
            held: OnceLock::new(),
        }))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0.bytes
    }

    /// Count the frame against `budget` while anyone keeps it; false if it has no room.
    fn hold(&self, budget: &Arc<Budget>) -> bool {
        self.0
            .held
            .get_or_init(|| Holding::take(budget, self.0.bytes.len()))
            .is_some()
    }
}

impl Sender {
    /// Send a text or binary message (or a ping). Never waits for the client. A close message
    /// asks for the close handshake, as [`Sender::close`] does (1000 when it has no code).
    pub fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        match message.into() {
            Message::Close(None) => self.close(CloseCode::Normal, ""),
            Message::Close(Some(close)) => self.close(close.code, &close.reason),
            message => self.send_encoded(&Encoded::encode(&message)),
        }
    }

    /// Send a frame encoded once for many clients (see `Room::broadcast`).
    pub fn send_encoded(&self, frames: &Encoded) -> Result<(), SendError> {
        self.outbox.push(frames)
    }

    /// Ask the connection to close with `code` and `reason`; its thread does the closing
    /// handshake. Never waits.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        let mut state = self.outbox.lock();
        state.usable()?;
        if state.close_request.is_none() {
            state.close_request = Some((code, reason.to_string()));
            state.nudge();
        }
        Ok(())
    }

    /// The connection's number, as in the server's log lines.
    pub fn id(&self) -> u64 {
        self.outbox.id
    }

    /// Whether sends can still go out.
    pub fn is_open(&self) -> bool {
        self.outbox.lock().usable().is_ok()
    }

    pub(crate) fn new(outbox: Arc<Outbox>) -> Sender {
        Sender { outbox }
    }

    pub(crate) fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sender(#{})", self.outbox.id)
    }
}

/// Something a connection belongs to (a room), told when the connection ends.
pub(crate) trait LeavesOnEnd: Send + Sync {
    fn forget(&self, id: u64);
}

/// Why the connection's thread must stop reading and act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Interruption {
    /// The queue overflowed: close with 1008.
    TooSlow { limit: usize },
    /// The memory budget had no room for the queue: close with 1013.
    OverBudget { limit: usize },
    /// A `Sender` asked to close.
    CloseRequested(CloseCode, String),
}

pub(crate) struct Outbox {
    id: u64,
    stream: Arc<Stream>,
    /// Most bytes queued at once.
    limit: usize,
    /// What queued frames are held against.
    budget: Arc<Budget>,
    /// The connection's counts, for `/metrics`.
    traffic: Arc<LiveTraffic>,
    state: Mutex<State>,
}

struct State {
    queue: VecDeque<Chunk>,
    /// Bytes in `queue` not yet sent.
    queued: usize,
    /// The connection's thread has written part of a frame: nobody else writes until it ends.
    owner_mid_frame: bool,
    status: Status,
    close_request: Option<(CloseCode, String)>,
    /// The connection's thread while it waits, to be nudged.
    waiter: Option<ThreadHandle>,
    /// Descriptors the connection's thread also waits on while it reads (`watched[..watching]`).
    watched: [RawFd; MAX_WATCHED],
    watching: usize,
    /// One of them was ready: the thread's read stopped for it (see `take_watched_ready`).
    watched_ready: bool,
    rooms: Vec<Weak<dyn LeavesOnEnd>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Open,
    TooSlow,
    OverBudget,
    Ended,
}

struct Chunk {
    frames: Encoded,
    sent: usize,
}

impl State {
    fn usable(&self) -> Result<(), SendError> {
        match self.status {
            Status::Open if self.close_request.is_none() => Ok(()),
            Status::TooSlow => Err(SendError::TooSlow),
            Status::OverBudget => Err(SendError::OverBudget),
            _ => Err(SendError::Closed),
        }
    }

    /// The connection's thread must stop waiting and close.
    fn must_act(&self) -> bool {
        matches!(self.status, Status::TooSlow | Status::OverBudget)
            || self.close_request.is_some()
            || self.watched_ready
    }

    fn nudge(&self) {
        if let Some(thread) = self.waiter {
            wake::nudge(thread);
        }
    }

    /// Keep only a frame already partly sent (the stream must stay well framed); free the rest.
    fn drop_unsent(&mut self) {
        let keep = self.queue.front().is_some_and(|chunk| chunk.sent > 0);
        self.queue.truncate(usize::from(keep));
        self.queued = self
            .queue
            .front()
            .map_or(0, |chunk| chunk.frames.bytes().len() - chunk.sent);
    }
}

impl Outbox {
    pub(crate) fn new(
        id: u64,
        stream: Arc<Stream>,
        limit: usize,
        budget: Arc<Budget>,
        traffic: Arc<LiveTraffic>,
    ) -> Arc<Outbox> {
        wake::install();
        Arc::new(Outbox {
            id,
            stream,
            limit,
            budget,
            traffic,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued: 0,
                owner_mid_frame: false,
                status: Status::Open,
                close_request: None,
                waiter: None,
                watched: [-1; MAX_WATCHED],
                watching: 0,
                watched_ready: false,
                rooms: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From any thread: write `frame` now if the socket takes it, else queue what is left.
    fn push(&self, frames: &Encoded) -> Result<(), SendError> {
        let frame = frames.bytes();
        let mut state = self.lock();
        state.usable()?;
        // Counted as it goes, so that a scrape after the client has it sees it; a frame the
        // connection then fails on is counted too, as one the server tried to send.
        if let Some(len) = frames.0.message_len {
            self.traffic.pushed(len);
        }
        let mut sent = 0;
        if state.queue.is_empty() && !state.owner_mid_frame {
            sent = match send_now(&self.stream, frame) {
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => 0,
                // A session's client reads too slowly (see `Sink`): as a full queue here.
                Err(error) if error.kind() == io::ErrorKind::QuotaExceeded => {
                    state.status = Status::TooSlow;
                    state.nudge();
                    return Err(SendError::TooSlow);
                }
                // Broken: the connection's thread finds out and ends it.
                Err(_) => return Err(SendError::Closed),
            };
            if sent == frame.len() {
                if self.stream.has_pending_output() {
                    // TLS holds part of it encrypted: the connection's thread writes it out.
                    state.nudge();
                }
                return Ok(());
            }
        }
        let left = frame.len() - sent;
        let refused = if state.queued + left > self.limit {
            Some((Status::TooSlow, SendError::TooSlow))
        } else if !frames.hold(&self.budget) {
            Some((Status::OverBudget, SendError::OverBudget))
        } else {
            None
        };
        if let Some((status, error)) = refused {
            state.status = status;
            state.drop_unsent();
            state.nudge();
            return Err(error);
        }
        if state.queue.is_empty() {
            // The connection's thread may be waiting only to read: it must write this.
            state.nudge();
        }
        state.queue.push_back(Chunk {
            frames: frames.clone(),
            sent,
        });
        state.queued += left;
        Ok(())
    }

    /// Write out what is queued without waiting; true when nothing is left.
    fn flush(&self, state: &mut State) -> io::Result<bool> {
        if !self.stream.flush_now()? {
            return Ok(false);
        }
        while let Some(chunk) = state.queue.front_mut() {
            let bytes = chunk.frames.bytes();
            match send_now(&self.stream, &bytes[chunk.sent..]) {
                Ok(n) if n > 0 => {
                    chunk.sent += n;
                    state.queued -= n;
                    if chunk.sent < bytes.len() {
                        return Ok(false);
                    }
                    state.queue.pop_front();
                }
                Ok(_) => return Ok(false),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(error) => return Err(error),
            }
        }
        Ok(true)
    }

    /// The connection's thread: read what the client sent, writing out the queue meanwhile.
    /// Fails with `Fault::Interrupted` when the thread must act instead (see `interruption`),
    /// and with `Fault::Timeout` after `timeout`, like a socket with that read timeout.
    pub(crate) fn read(&self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize, Fault> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        loop {
            let queued = {
                let mut state = self.lock();
                if state.must_act() {
                    return Err(Fault::Interrupted);
                }
                // Never between the halves of our own frame (a write that failed midway).
                !state.owner_mid_frame && !self.flush(&mut state)?
            };
            match self.stream.recv_now(buf) {
                Ok(n) => return Ok(n),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(Fault::Io(error)),
            }
            // Reading can give TLS something to answer.
            self.wait(true, queued || self.stream.has_pending_output(), deadline)?;
        }
    }

    /// The connection's thread: write its own bytes (whole frames, from tungstenite or from
    /// `Connection::send`, whose big frames come as a header and a payload), after whatever is
    /// queued before them, waiting (at most `timeout`) while the client is slow.
    pub(crate) fn write(
        &self,
        bufs: &[IoSlice<'_>],
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|buf| buf.len()).sum();
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        loop {
            {
                let mut state = self.lock();
                if state.owner_mid_frame || self.flush(&mut state)? {
                    let n = match self.stream.send_now(bufs) {
                        Ok(n) => n,
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => 0,
                        Err(error) => return Err(error),
                    };
                    if n > 0 {
                        state.owner_mid_frame = n < total;
                        return Ok(n);
                    }
                }
            }
            self.wait(false, true, deadline)?;
        }
    }

    /// Wait for the socket or a nudge, registered as the thread to nudge.
    fn wait(&self, readable: bool, writable: bool, deadline: Option<Instant>) -> io::Result<()> {
        let timeout = wake::time_left(deadline)?;
        wake::prepare();
        let (mut watched, mut watching) = ([-1; MAX_WATCHED], 0);
        {
            let mut state = self.lock();
            // Queued or asked for since we looked: go round again instead of sleeping.
            let to_write = (!state.queue.is_empty() && !state.owner_mid_frame)
                || self.stream.has_pending_output();
            if (!writable && to_write) || state.must_act() {
                return Ok(());
            }
            state.waiter = Some(wake::current_thread());
            if readable {
                watched = state.watched;
                watching = state.watching;
            }
        }
        let fd = self.stream.wire().as_raw_fd();
        let woken = wake::wait(fd, readable, writable, &watched[..watching], timeout);
        let mut state = self.lock();
        state.waiter = None;
        match woken? {
            Woken::TimedOut => Err(io::ErrorKind::WouldBlock.into()),
            Woken::Watched => {
                state.watched_ready = true;
                Ok(())
            }
            Woken::Ready | Woken::Nudged => Ok(()),
        }
    }

    /// The connection's thread: while it reads, also wait on `fds` (at most `MAX_WATCHED`),
    /// and stop reading with `Fault::Interrupted` once one is ready; `&[]` stops watching.
    pub(crate) fn watch(&self, fds: &[RawFd]) {
        let mut state = self.lock();
        let fds = &fds[..fds.len().min(MAX_WATCHED)];
        state.watched[..fds.len()].copy_from_slice(fds);
        state.watching = fds.len();
        state.watched_ready = false;
    }

    /// Whether a watched descriptor stopped the read (asked once).
    pub(crate) fn take_watched_ready(&self) -> bool {
        std::mem::take(&mut self.lock().watched_ready)
    }

    /// What the connection's thread must do, once a read failed with `Fault::Interrupted`; a
    /// close request is taken (asked once).
    pub(crate) fn interruption(&self) -> Option<Interruption> {
        let mut state = self.lock();
        match state.status {
            Status::TooSlow => return Some(Interruption::TooSlow { limit: self.limit }),
            Status::OverBudget => {
                let limit = self.budget.limit();
                return Some(Interruption::OverBudget { limit });
            }
            Status::Open | Status::Ended => {}
        }
        let (code, reason) = state.close_request.take()?;
        // Closing from here on: further sends are refused.
        state.status = Status::Ended;
        Some(Interruption::CloseRequested(code, reason))
    }

    /// The connection's thread is about to write its close frame: from here on sends are
    /// refused, so that no message follows the close (RFC 6455 section 5.5.1; a browser fails a
    /// connection that sends one with 1006). What is queued already goes out before it.
    pub(crate) fn closing(&self) {
        let mut state = self.lock();
        if state.status == Status::Open {
            state.status = Status::Ended;
        }
    }

    /// The connection's thread, giving up on a client that does not read (sends are already
    /// refused): send a close frame if the socket takes it now, and free the queue.
    pub(crate) fn close_now(&self, code: CloseCode, reason: &str) {
        let mut state = self.lock();
        if !state.owner_mid_frame && self.flush(&mut state).unwrap_or(false) {
            let frame = frame::encode(CLOSE, &frame::close_payload(code.into(), reason));
            let _ = send_now(&self.stream, &frame);
            let _ = self.stream.flush_now();
        }
        state.queue.clear();
        state.queued = 0;
    }

    /// Remember a room to leave when the connection ends; false if it already has.
    pub(crate) fn joined(&self, room: Weak<dyn LeavesOnEnd>) -> bool {
        let mut state = self.lock();
        if state.status == Status::Ended {
            return false;
        }
        state.rooms.push(room);
        true
    }

    /// Forget a room left while the connection goes on.
    pub(crate) fn left(&self, room: &Weak<dyn LeavesOnEnd>) {
        self.lock().rooms.retain(|joined| !joined.ptr_eq(room));
    }

    /// The connection is over: refuse sends, free the queue, leave every room.
    pub(crate) fn end(&self) {
        let rooms = {
            let mut state = self.lock();
            state.status = Status::Ended;
            state.queue.clear();
            state.queued = 0;
            std::mem::take(&mut state.rooms)
        };
        for room in rooms.iter().filter_map(Weak::upgrade) {
            room.forget(self.id);
        }
    }
}

/// A close frame's payload: empty without a code.
fn close_payload(close: Option<&CloseFrame>) -> Vec<u8> {
    close.map_or_else(Vec::new, |close| {
        frame::close_payload(close.code.into(), close.reason.as_str())
    })
}

/// `Stream::send_now` of one buffer.
fn send_now(stream: &Stream, buf: &[u8]) -> io::Result<usize> {
    stream.send_now(&[IoSlice::new(buf)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_shared_by_many_queues_counts_once_until_the_last_lets_go() {
        let budget = Budget::new(100_000);
        let frames = Encoded::encode(&Message::binary(vec![0u8; 60_000]));
        let queued: Vec<Encoded> = (0..5).map(|_| frames.clone()).collect();
        assert!(queued.iter().all(|frame| frame.hold(&budget)));
        assert_eq!(budget.in_use(), frames.bytes().len());
        let other = Encoded::encode(&Message::binary(vec![0u8; 60_000]));
        assert!(!other.hold(&budget), "a second frame does not fit");
        drop(frames);
        drop(queued);
        assert_eq!(budget.in_use(), 0);
    }
}

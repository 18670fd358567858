//! The way to one client from any thread: a cloneable [`Sender`] whose sends never wait for the
//! client, and the outgoing queue behind it that the connection's own thread writes out.
//!
//! A send writes the frame to the socket at once, without blocking, when nothing is queued
//! before it and nobody is writing; a frame sent while another thread writes leaves with that
//! thread's next `writev` (see `queue.rs`). Whatever the socket does not take stays queued (the
//! frame shared, not copied) and the connection's thread is nudged (see `wake.rs`) to write it
//! when the client reads. The
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
use crate::ops::budget::Budget;
use crate::ops::metrics::LiveTraffic;
use crate::protocol::encoded::Encoded;
use crate::protocol::frame::{self, CLOSE};
use crate::protocol::reader::Fault;
use queue::Chunk;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

mod queue;
#[cfg(test)]
pub(crate) mod testing;

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
        self.queue(frames)?;
        self.write_queued()
    }

    /// Queue a frame without writing it yet: a broadcast queues to every member first, then
    /// writes, so that a member's frames queued meanwhile by other broadcasts leave together.
    pub(crate) fn queue(&self, frames: &Encoded) -> Result<(), SendError> {
        self.outbox.enqueue(frames)
    }

    /// Write what is queued (unless another thread is writing it already).
    pub(crate) fn write_queued(&self) -> Result<(), SendError> {
        self.outbox.write_queued()
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
    /// Frames waiting for the socket, oldest first (not those a writer has taken out).
    queue: VecDeque<Chunk>,
    /// Bytes in `queue` not yet sent.
    queued: usize,
    /// A thread is writing frames it took from `queue`, with the lock released: nobody else
    /// writes until it is done, and what is queued meanwhile leaves with its next `writev`.
    writing: bool,
    /// Bytes that writer holds.
    in_flight: usize,
    /// The connection's thread waits for that writer to finish (to write its own frame).
    owner_waits: bool,
    /// The connection's thread has written part of a frame: nobody else writes until it ends.
    owner_mid_frame: bool,
    status: Status,
    close_request: Option<(CloseCode, String)>,
    /// The connection's thread while it waits, to be nudged.
    waiter: Option<ThreadHandle>,
    /// Descriptors the connection's thread also waits on while it reads (`watched[..watching]`).
    watched: [libc::pollfd; MAX_WATCHED],
    watching: usize,
    /// Which of them were ready (bit `i` for `watched[i]`): the thread's read stopped for
    /// them (see `take_watched_ready`).
    watched_ready: u8,
    rooms: Vec<Weak<dyn LeavesOnEnd>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Open,
    TooSlow,
    OverBudget,
    /// Our close frame is next: sends are refused, what is queued still goes out.
    Closing,
    /// The connection is over: nothing more goes out.
    Ended,
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
            || self.watched_ready != 0
    }

    /// Queued frames can be written now, by whoever comes.
    fn writable_queue(&self) -> bool {
        !self.queue.is_empty() && !self.writing && !self.owner_mid_frame
    }

    fn nudge(&self) {
        if let Some(thread) = self.waiter {
            wake::nudge(thread);
        }
    }

    /// Stop taking frames: keep only one already partly sent (the stream must stay well
    /// framed); free the rest.
    fn refuse(&mut self, status: Status) {
        self.status = status;
        let keep = self.queue.front().is_some_and(|chunk| chunk.sent > 0);
        self.queue.truncate(usize::from(keep));
        self.queued = self
            .queue
            .front()
            .map_or(0, |chunk| chunk.frames.bytes().len() - chunk.sent);
        self.nudge();
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
                writing: false,
                in_flight: 0,
                owner_waits: false,
                owner_mid_frame: false,
                status: Status::Open,
                close_request: None,
                waiter: None,
                watched: [wake::watch(-1, false); MAX_WATCHED],
                watching: 0,
                watched_ready: 0,
                rooms: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection's thread: read what the client sent, writing out the queue meanwhile.
    /// Fails with `Fault::Interrupted` when the thread must act instead (see `interruption`),
    /// and with `Fault::Timeout` after `timeout`, like a socket with that read timeout.
    pub(crate) fn read(&self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize, Fault> {
        let mut deadline = None;
        let mut waited = false;
        loop {
            let (queued, watching) = {
                let state = self.lock();
                if state.must_act() {
                    return Err(Fault::Interrupted);
                }
                let watching = state.watching > 0;
                // Never between the halves of our own frame (a write that failed midway), nor
                // beside another writer (which hands back what the socket leaves).
                let queued = state.writable_queue() && !self.drain(state).1?;
                (queued, watching)
            };
            // Watching a program's output, the thread has just given the program a line or the
            // client a reply: the client has nothing to send yet, and a read first would fail
            // (one system call in ten of a program's round trip). The wait sees both.
            if waited || !watching {
                match self.stream.recv_now(buf) {
                    Ok(n) => return Ok(n),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => return Err(Fault::Io(error)),
                }
            }
            waited = true;
            let deadline = *deadline.get_or_insert_with(|| timeout.map(|t| Instant::now() + t));
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
            let another_writes = {
                let mut state = self.lock();
                state.owner_waits = state.writing;
                if state.writing {
                    true
                } else {
                    let (mut state, flushed) = if state.owner_mid_frame {
                        (state, Ok(true))
                    } else {
                        self.drain(state)
                    };
                    if flushed? {
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
                    false
                }
            };
            // Beside another writer, wait for it to finish (it nudges); else for the socket.
            self.wait(false, !another_writes, deadline)?;
        }
    }

    /// Wait for the socket or a nudge, registered as the thread to nudge.
    fn wait(&self, readable: bool, writable: bool, deadline: Option<Instant>) -> io::Result<()> {
        let timeout = wake::time_left(deadline)?;
        wake::prepare();
        let (mut watched, mut watching) = ([wake::watch(-1, false); MAX_WATCHED], 0);
        {
            let mut state = self.lock();
            // Queued or asked for since we looked, or the writer we waited for is done: go
            // round again instead of sleeping.
            let to_write = state.writable_queue() || self.stream.has_pending_output();
            let writer_done = state.owner_waits && !state.writing;
            if (!writable && to_write) || writer_done || state.must_act() {
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
            Woken::Watched(ready) => {
                state.watched_ready = ready;
                Ok(())
            }
            Woken::Ready | Woken::Nudged => Ok(()),
        }
    }

    /// The connection's thread: while it reads, also wait on `fds` (at most `MAX_WATCHED`, see
    /// `wake::watch`), and stop reading with `Fault::Interrupted` once one is ready; `&[]`
    /// stops watching.
    pub(crate) fn watch(&self, fds: &[libc::pollfd]) {
        let mut state = self.lock();
        let fds = &fds[..fds.len().min(MAX_WATCHED)];
        state.watched[..fds.len()].copy_from_slice(fds);
        state.watching = fds.len();
        state.watched_ready = 0;
    }

    /// Which watched descriptors stopped the read, bit `i` for the `i`th (asked once).
    pub(crate) fn take_watched_ready(&self) -> u8 {
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
            Status::Open | Status::Closing | Status::Ended => {}
        }
        let (code, reason) = state.close_request.take()?;
        // Closing from here on: further sends are refused.
        if state.status == Status::Open {
            state.status = Status::Closing;
        }
        Some(Interruption::CloseRequested(code, reason))
    }

    /// The connection's thread is about to write its close frame: from here on sends are
    /// refused, so that no message follows the close (RFC 6455 section 5.5.1; a browser fails a
    /// connection that sends one with 1006). What is queued already goes out before it.
    pub(crate) fn closing(&self) {
        let mut state = self.lock();
        if state.status == Status::Open {
            state.status = Status::Closing;
        }
    }

    /// The connection's thread, giving up on a client that does not read (sends are already
    /// refused): send a close frame if the socket takes it now, and free the queue. (Beside
    /// another writer there is no room for it: that writer hands back nothing more.)
    pub(crate) fn close_now(&self, code: CloseCode, reason: &str) {
        let mut state = self.lock();
        if !state.writing && !state.owner_mid_frame {
            let (drained, flushed) = self.drain(state);
            state = drained;
            if flushed.unwrap_or(false) {
                let frame = frame::encode(CLOSE, &frame::close_payload(code.into(), reason));
                let _ = self.stream.send_now(&[IoSlice::new(&frame)]);
                let _ = self.stream.flush_now();
            }
        }
        state.queue.clear();
        state.queued = 0;
    }

    /// Remember a room to leave when the connection ends; false if it already has.
    pub(crate) fn joined(&self, room: Weak<dyn LeavesOnEnd>) -> bool {
        let mut state = self.lock();
        if matches!(state.status, Status::Closing | Status::Ended) {
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

#[cfg(test)]
mod tests {
    use super::testing::{Recorder, sender_to};
    use crate::protocol::fault::Fault;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;
    use std::time::Duration;

    const PATIENCE: Duration = Duration::from_secs(10);

    #[test]
    fn a_read_takes_what_is_there_and_times_out_after_the_timeout_it_is_given() {
        let (sender, mut client) = sender_to(1, &Arc::new(Recorder::default()), 1 << 16);
        let timeout = Some(Duration::from_millis(20));
        client.write_all(b"hello").unwrap();
        let mut buf = [0u8; 16];
        let n = sender.outbox().read(&mut buf, timeout).unwrap();
        assert_eq!(&buf[..n], b"hello");
        let waited = sender.outbox().read(&mut buf, timeout);
        assert!(matches!(waited, Err(Fault::Timeout)), "{waited:?}");
    }

    #[test]
    fn watching_a_quiet_descriptor_a_read_still_takes_what_the_client_sent() {
        // Watching, a read waits before it reads: what is already there must still come.
        let (sender, mut client) = sender_to(1, &Arc::new(Recorder::default()), 1 << 16);
        let (quiet, _other_end) = UnixStream::pair().unwrap();
        sender
            .outbox()
            .watch(&[crate::net::wake::watch(quiet.as_raw_fd(), true)]);
        client.write_all(b"hello").unwrap();
        let mut buf = [0u8; 16];
        let n = sender.outbox().read(&mut buf, Some(PATIENCE)).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(sender.outbox().take_watched_ready(), 0);
    }
}

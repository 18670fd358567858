//! Sessions: what a handler holds as a [`Connection`](crate::Connection), carried by whatever
//! reaches the client (a WebSocket, or HTTP on the page port when a proxy breaks the upgrade),
//! and kept for a while when the carrier drops, so that the client can come back and miss
//! nothing.
//!
//! The handler's connection is an ordinary one: it reads the client's messages from a Unix
//! socket pair (see `link.rs`), and what it writes comes to the session in memory (`sink.rs`),
//! which numbers each message and keeps it until the client has said it got it, and answers
//! the connection's pings. The session's own thread (`pump.rs`) waits for the end, and ends
//! the session when no carrier has come for `resume_window`. Carriers come and go: each takes
//! the records after the last one the client has (see `records.rs`), and a newer carrier
//! replaces an older one. While a WebSocket or a streaming HTTP carrier waits, the handler's
//! own thread hands each record to it as it comes (`streaming.rs` for HTTP). What is kept is
//! bounded by `max_queue` (past it the handler's sends are refused, and its connection is cut
//! off as a WebSocket client that does not read would be) and held against the memory budget.

pub mod link;
mod pump;
pub mod records;
mod sink;
mod streaming;
pub mod websocket;

use crate::net::http::{Refusal, Request};
use crate::net::stream::{Sink, Stream};
use crate::ops::budget::Holding;
use crate::ops::metrics::Metrics;
use crate::ops::shutdown::Shutdown;
use crate::protocol::outbox::Sender;
use link::LinkWriter;
use records::Kind;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How often a waiting carrier or the pump looks at the clock and the shutdown signal.
const TICK: Duration = Duration::from_millis(500);

/// Starts a handler for a session: given the request (its target the route's), the client, the
/// socket its connection reads from and the sink its writes go to; or the refusal to answer.
pub type Starter = Box<
    dyn Fn(&Request, SocketAddr, UnixStream, Arc<dyn Sink>) -> Result<(), Refusal> + Send + Sync,
>;

/// What carries a session's messages down to its client, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// One long HTTP response per many messages.
    Streaming,
    /// One HTTP response per batch of messages.
    Polling,
    /// A WebSocket (subprotocol `wsecho.session`, see `websocket.rs`).
    WebSocket,
}

impl Carrier {
    pub fn name(self) -> &'static str {
        match self {
            Carrier::Streaming => "http-streaming",
            Carrier::Polling => "http-polling",
            Carrier::WebSocket => "websocket",
        }
    }
}

/// The open sessions, by id.
pub struct Sessions {
    open: Mutex<HashMap<String, Arc<Session>>>,
    start: Starter,
    /// How long a session waits for a carrier.
    pub window: Duration,
    max_queue: usize,
    /// How long a write to a handler's connection may wait.
    write_timeout: Duration,
    pub metrics: Arc<Metrics>,
    pub shutdown: Shutdown,
}

/// One session.
pub struct Session {
    id: String,
    owner: IpAddr,
    down: Mutex<Down>,
    changed: Condvar,
    up: Mutex<Up>,
    window: Duration,
    max_queue: usize,
    metrics: Arc<Metrics>,
}

/// What the handler sent, kept until the client has it.
struct Down {
    /// Records `next_seq - kept.len()` to `next_seq - 1`.
    kept: VecDeque<(Kind, Vec<u8>)>,
    next_seq: u64,
    kept_bytes: usize,
    holding: Holding,
    /// The close record's payload, once the handler's connection has ended: numbered
    /// `next_seq`, after everything kept.
    end: Option<Vec<u8>>,
    /// The client has said it has the close record.
    end_delivered: bool,
    /// Bumped by each carrier that comes: a carrier whose number is not this one's has been
    /// replaced.
    carrier: u64,
    attached: bool,
    detached_since: Instant,
    /// The client's close went to the handler: nobody waits for the close record.
    closed_by_client: bool,
    /// The carriers used so far (a bit each), to count each once.
    carriers_used: u8,
    /// The connection's close could not be answered at once: the session's thread answers it.
    answer_owed: bool,
    /// A WebSocket carrier, whose records are pushed to it as they come: its number, and its
    /// connection's sender.
    pusher: Option<(u64, Sender)>,
    /// A streaming HTTP carrier waiting in `take`, whose socket records are written to as they
    /// come (see `streaming.rs`).
    streaming: Option<streaming::Waiting>,
}

/// What a carrier's `take` got.
#[derive(Debug, Default)]
pub struct Taken {
    /// Records for the carrier to send, encoded.
    pub records: Vec<u8>,
    /// How many records `records` holds.
    pub count: u64,
    /// The number of the next record the client is to get.
    pub next: u64,
    /// Bytes of records written to the carrier's socket meanwhile (by the handler's thread).
    pub pushed: usize,
    /// The end of a record's chunk the socket did not take: the carrier writes it first.
    pub unsent: Vec<u8>,
}

/// What the client sends, on its way to the handler.
struct Up {
    writer: LinkWriter,
    next_seq: u64,
}

/// Why a carrier's request for records got none.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// A newer carrier took over.
    Replaced,
    /// The session has ended and the client has every record.
    Ended,
    /// The server is shutting down.
    ShuttingDown,
}

/// Why records from the client could not be delivered.
#[derive(Debug, PartialEq, Eq)]
pub enum UpError {
    /// A record numbered past the next one expected.
    Gap { expected: u64, got: u64 },
    /// The handler's connection is gone.
    Gone,
}

impl fmt::Display for UpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpError::Gap { expected, got } => write!(
                f,
                "message {got} came before message {expected}: send them in order"
            ),
            UpError::Gone => write!(f, "the session has ended"),
        }
    }
}

impl Sessions {
    pub fn new(
        start: Starter,
        window: Duration,
        max_queue: usize,
        write_timeout: Duration,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
    ) -> Arc<Sessions> {
        Arc::new(Sessions {
            open: Mutex::default(),
            start,
            window,
            max_queue,
            write_timeout,
            metrics,
            shutdown,
        })
    }

    /// Open a session for `request` (its target a route's) from `client`: the handler starts,
    /// and the session waits for its first carrier.
    pub fn open(
        self: &Arc<Self>,
        request: &Request,
        client: SocketAddr,
    ) -> Result<Arc<Session>, Refusal> {
        let id = random_id().map_err(|error| {
            Refusal::new(
                503,
                format!("server cannot make a session id ({error}); try again later"),
            )
        })?;
        let (link, theirs) = UnixStream::pair().map_err(|error| {
            Refusal::new(
                503,
                format!("server cannot make a socket for the session ({error}); try again later"),
            )
        })?;
        let refuse = |error: std::io::Error| {
            let _ = link.shutdown(std::net::Shutdown::Both);
            Refusal::new(
                503,
                format!("server cannot start the session ({error}); try again later"),
            )
        };
        let writer = LinkWriter::new(link.try_clone().map_err(&refuse)?, self.write_timeout)
            .map_err(&refuse)?;
        let session = Arc::new(Session {
            id: id.clone(),
            owner: client.ip(),
            down: Mutex::new(Down {
                kept: VecDeque::new(),
                next_seq: 1,
                kept_bytes: 0,
                holding: Holding::new(self.metrics.budget()),
                end: None,
                end_delivered: false,
                carrier: 0,
                attached: false,
                detached_since: Instant::now(),
                closed_by_client: false,
                carriers_used: 0,
                pusher: None,
                streaming: None,
                answer_owed: false,
            }),
            changed: Condvar::new(),
            up: Mutex::new(Up {
                writer,
                next_seq: 1,
            }),
            window: self.window,
            max_queue: self.max_queue,
            metrics: Arc::clone(&self.metrics),
        });
        let sink = Arc::new(sink::SessionSink(Arc::clone(&session)));
        (self.start)(request, client, theirs, sink)?;
        lock(&self.open).insert(id, Arc::clone(&session));
        self.metrics.session_opened();
        // Without its thread the session cannot end: it is refused, and its connection, whose
        // socket goes with the thread that never started, ends at once.
        if let Err(error) = pump::start(Arc::clone(self), Arc::clone(&session), link, TICK) {
            self.forget(&session);
            let why = format!("server busy: no thread for your session ({error}), try again later");
            return Err(Refusal::new(503, why));
        }
        Ok(session)
    }

    /// The session `id`, if it is open and belongs to `client`: a session is bound to the
    /// address that opened it, and to any other it does not exist.
    pub fn find(&self, id: &str, client: IpAddr) -> Option<Arc<Session>> {
        lock(&self.open)
            .get(id)
            .filter(|session| session.owner == client)
            .cloned()
    }

    fn forget(&self, session: &Session) {
        lock(&self.open).remove(&session.id);
        self.metrics.session_closed();
    }
}

impl Session {
    /// The session's id, as the client names it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A carrier comes, the client having every record before `from`: those are let go, and
    /// any older carrier is replaced. Returns the carrier's number for `take` and `leave`, or
    /// `None` when `from` is past what was ever sent. `resumed`: the client says it comes back
    /// after a failure.
    pub fn attach(&self, from: u64, carrier: Carrier, resumed: bool) -> Option<u64> {
        let number = self.attach_locked(&mut self.lock_down(), from, carrier, resumed)?;
        self.changed.notify_all();
        Some(number)
    }

    /// As `attach`, for a WebSocket carrier: `hello` (given how many of the client's records
    /// were delivered) goes first, then every record from `from` on, then each as it comes,
    /// all through `sender`. `None` when `from` is past what was ever sent.
    pub fn attach_pushing(
        &self,
        from: u64,
        sender: Sender,
        resumed: bool,
        hello: impl FnOnce(u64) -> String,
    ) -> Option<u64> {
        let received = lock(&self.up).next_seq - 1;
        let mut down = self.lock_down();
        let number = self.attach_locked(&mut down, from, Carrier::WebSocket, resumed)?;
        let _ = sender.send(tungstenite::Message::text(hello(received)));
        let first = down.next_seq - down.kept.len() as u64;
        for (n, (kind, bytes)) in down.kept.iter().enumerate() {
            push(&sender, *kind, first + n as u64, bytes);
        }
        if let Some(end) = &down.end {
            let sent = push(&sender, Kind::Close, down.next_seq, end);
            down.end_delivered |= sent;
        }
        down.pusher = Some((number, sender));
        drop(down);
        self.changed.notify_all();
        Some(number)
    }

    fn attach_locked(
        &self,
        down: &mut Down,
        from: u64,
        carrier: Carrier,
        resumed: bool,
    ) -> Option<u64> {
        if from > down.last() {
            return None;
        }
        release_before(down, from);
        let bit = 1 << carrier as u8;
        if down.carriers_used & bit == 0 {
            down.carriers_used |= bit;
            self.metrics.session_carried(carrier.name());
        }
        if resumed {
            self.metrics.session_resumed();
        }
        down.carrier += 1;
        down.attached = true;
        down.pusher = None;
        down.streaming = None;
        Some(down.carrier)
    }

    /// The client has every record before `from` (a WebSocket carrier's acknowledgement).
    pub fn acknowledge(&self, from: u64) {
        release_before(&mut self.lock_down(), from);
        self.changed.notify_all();
    }

    /// The client went away for good, saying `code`: the handler's connection is closed with
    /// it, unless the session has ended already.
    pub fn client_left(&self, code: u16) {
        {
            let down = self.lock_down();
            if down.closed_by_client || down.end.is_some() {
                return;
            }
        }
        let close = records::close_payload(code, "");
        let seq = self.received() + 1;
        let record = records::Record {
            kind: Kind::Close,
            seq,
            payload: &close,
        };
        let _ = self.deliver(&[record]);
    }

    /// How many of the client's records the handler has been given.
    pub fn received(&self) -> u64 {
        lock(&self.up).next_seq - 1
    }

    /// The carrier `carrier` is gone: the window starts, unless a newer one came.
    pub fn leave(&self, carrier: u64) {
        let mut down = self.lock_down();
        if down.carrier == carrier {
            down.attached = false;
            down.pusher = None;
            down.streaming = None;
            down.detached_since = Instant::now();
        }
    }

    /// The records from `from` on, encoded, up to about `max_bytes` (at least one), waiting
    /// until `deadline` for the first; none at the deadline. Also ends early (with what it
    /// has) when the session ends, the carrier is replaced or the server shuts down. With
    /// `push_to` (a streaming carrier's socket), records that come while it waits are written
    /// to it by the handler's thread, and it ends early when that thread cannot go on.
    pub fn take(
        &self,
        carrier: u64,
        from: u64,
        max_bytes: usize,
        deadline: Instant,
        shutdown: &Shutdown,
        push_to: Option<&Arc<Stream>>,
    ) -> Result<Taken, Stop> {
        let mut down = self.lock_down();
        let mut deadline = deadline;
        loop {
            if shutdown.is_triggered() {
                // The handler's connection is closing with 1001: wait for that record a
                // little, not for the whole deadline.
                deadline = deadline.min(Instant::now() + 4 * TICK);
            }
            if down.carrier != carrier {
                return Err(Stop::Replaced);
            }
            let mut waiting = down.streaming.take();
            let (from, pushed) = waiting.as_ref().map_or((from, 0), |w| (w.next, w.pushed));
            let mut taken = Taken {
                next: from,
                pushed,
                ..Taken::default()
            };
            if let Some(stalled) = waiting.take_if(|waiting| waiting.stalled) {
                taken.unsent = stalled.unsent;
                return Ok(taken);
            }
            let first = down.next_seq - down.kept.len() as u64;
            if from < down.last() {
                let mut seq = from.max(first);
                for (kind, bytes) in down.kept.iter().skip((seq - first) as usize) {
                    records::write(&mut taken.records, *kind, seq, bytes);
                    seq += 1;
                    if taken.records.len() + pushed >= max_bytes {
                        break;
                    }
                }
                if seq == down.next_seq
                    && let Some(end) = &down.end
                {
                    records::write(&mut taken.records, Kind::Close, seq, end);
                    seq += 1;
                    // Sent: the session need not wait longer for the client to come for it.
                    down.end_delivered = true;
                }
                (taken.count, taken.next) = (seq - from.max(first), seq);
                return Ok(taken);
            }
            if down.end.is_some() {
                return Err(Stop::Ended);
            }
            let now = Instant::now();
            if now >= deadline && shutdown.is_triggered() {
                return Err(Stop::ShuttingDown);
            }
            if now >= deadline {
                return Ok(taken);
            }
            down.streaming = waiting.or_else(|| {
                let room = max_bytes.saturating_sub(pushed);
                push_to.and_then(|stream| streaming::Waiting::new(stream, from, room))
            });
            let wait = (deadline - now).min(TICK);
            down = self
                .changed
                .wait_timeout(down, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Hand the client's records to the handler, in order, each once: a record numbered
    /// before the next expected was delivered already (a retried request) and is skipped.
    pub fn deliver(&self, received: &[records::Record]) -> Result<(), UpError> {
        let mut up = lock(&self.up);
        for record in received {
            if record.kind == Kind::Keepalive || record.seq < up.next_seq {
                continue;
            }
            if record.seq > up.next_seq {
                return Err(UpError::Gap {
                    expected: up.next_seq,
                    got: record.seq,
                });
            }
            let written = match record.kind {
                Kind::Text => up.writer.text(record.payload),
                Kind::Binary => up.writer.binary(record.payload),
                Kind::Close => {
                    self.lock_down().closed_by_client = true;
                    let (code, reason) = records::parse_close(record.payload);
                    up.writer.close(code, &reason)
                }
                Kind::Keepalive => Ok(()),
            };
            if written.is_err() {
                // A connection that cannot take a frame within the write timeout is as gone
                // as a client that stopped reading; a frame cut in half leaves nothing to save.
                let _ = up.writer.stream().shutdown(std::net::Shutdown::Both);
                return Err(UpError::Gone);
            }
            up.next_seq += 1;
        }
        Ok(())
    }

    fn lock_down(&self) -> MutexGuard<'_, Down> {
        lock(&self.down)
    }
}

impl Down {
    /// The number after the last record, the close record included.
    fn last(&self) -> u64 {
        self.next_seq + u64::from(self.end.is_some())
    }
}

/// Let go of the records before `from`: the client has them (the close record too, when
/// `from` is just past it).
fn release_before(down: &mut Down, from: u64) {
    down.end_delivered |= down.end.is_some() && from == down.last();
    let first = down.next_seq - down.kept.len() as u64;
    let done = from.saturating_sub(first).min(down.kept.len() as u64) as usize;
    let freed: usize = down.kept.drain(..done).map(|(_, bytes)| bytes.len()).sum();
    down.kept_bytes -= freed;
    down.holding.shrink(freed);
}

/// Send one record to a WebSocket carrier, as a binary message; false when it cannot take it.
fn push(sender: &Sender, kind: Kind, seq: u64, payload: &[u8]) -> bool {
    let mut record = Vec::with_capacity(payload.len() + 24);
    records::write(&mut record, kind, seq, payload);
    sender.send(tungstenite::Message::binary(record)).is_ok()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// 128 random bits from the kernel, as 32 hex digits.
fn random_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: getrandom writes at most the length given into the buffer given.
        let got = unsafe {
            libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
        };
        if got < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(error);
            }
            continue;
        }
        filled += got as usize;
    }
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn session_ids_are_32_hex_digits_and_differ() {
        let a = super::random_id().unwrap();
        let b = super::random_id().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}

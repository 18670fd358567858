//! What the server counts, for `GET /metrics` on the page port (the Prometheus text format):
//! open connections and totals by route, refusals by reason, messages and bytes each way,
//! closes by code, page requests, the memory budget, and the build.
//!
//! Counters are plain atomics, touched once per connection, refusal or close. Messages and
//! bytes are counted by each connection in a `LiveTraffic` of its own, which only its thread
//! writes (no shared cache line, no locked instruction per message); a scrape adds up those of
//! the connections open now and the totals of those that have ended, so it is exact up to the
//! moment it is taken.
//!
//! Every label takes a bounded set of values: routes are the server's own, reasons and closers
//! are fixed words, and close codes are those the RFC and IANA registry name, the rest in
//! buckets (see `close_code_label`).

use crate::ops::budget::Budget;
use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Messages and payload bytes each way.
#[derive(Debug, Default, Clone, Copy)]
pub struct Traffic {
    /// Text and binary messages received.
    pub messages_in: u64,
    /// Their payload bytes.
    pub bytes_in: u64,
    /// Text and binary messages sent.
    pub messages_out: u64,
    /// Their payload bytes.
    pub bytes_out: u64,
}

impl std::ops::AddAssign for Traffic {
    fn add_assign(&mut self, more: Traffic) {
        self.messages_in += more.messages_in;
        self.bytes_in += more.bytes_in;
        self.messages_out += more.messages_out;
        self.bytes_out += more.bytes_out;
    }
}

impl fmt::Display for Traffic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "in {} msgs/{} B, out {} msgs/{} B",
            self.messages_in, self.bytes_in, self.messages_out, self.bytes_out
        )
    }
}

/// One open connection's messages and payload bytes each way. Written by its own thread alone
/// (a plain load and store: no read-modify-write is shared with anyone), read by scrapes.
///
/// A cache line of its own: two connections' counts side by side would bounce one line between
/// the cores their threads run on.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct LiveTraffic {
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    /// Messages `Sender`s gave the connection's outbox, counted under the outbox's lock (so
    /// by one thread at a time).
    pushed: AtomicU64,
    pushed_bytes: AtomicU64,
}

impl LiveTraffic {
    /// A text or binary message of `len` payload bytes came in.
    pub fn received(&self, len: usize) {
        add(&self.messages_in, 1);
        add(&self.bytes_in, len as u64);
    }

    /// A text or binary message of `len` payload bytes is going out.
    pub fn sent(&self, len: usize) {
        add(&self.messages_out, 1);
        add(&self.bytes_out, len as u64);
    }

    /// A `Sender` gave the outbox a text or binary message of `len` payload bytes, on its way
    /// to the socket. Only under the outbox's lock.
    pub fn pushed(&self, len: usize) {
        add(&self.pushed, 1);
        add(&self.pushed_bytes, len as u64);
    }

    /// The counts so far.
    pub fn now(&self) -> Traffic {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Traffic {
            messages_in: load(&self.messages_in),
            bytes_in: load(&self.bytes_in),
            messages_out: load(&self.messages_out) + load(&self.pushed),
            bytes_out: load(&self.bytes_out) + load(&self.pushed_bytes),
        }
    }
}

/// Add to a counter that only the calling thread writes.
fn add(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

/// The traffic of connections that have ended, and the live counts of those still open (by
/// the address of their `LiveTraffic`, unique while it lives).
#[derive(Default)]
struct Tally {
    ended: Traffic,
    open: HashMap<usize, Arc<LiveTraffic>>,
}

/// The server's counts, shared by every thread.
pub struct Metrics {
    /// By route path: open now, and opened in all.
    routes: BTreeMap<String, (AtomicI64, AtomicU64)>,
    refusals: Mutex<BTreeMap<&'static str, u64>>,
    /// By close code and by who closed.
    closes: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    traffic: Mutex<Tally>,
    page_requests: AtomicU64,
    publishes: AtomicU64,
    published_bytes: AtomicU64,
    sessions: SessionCounts,
    budget: Arc<Budget>,
}

/// Sessions (see `session/`): open now, carriers taken, resumes, and sessions lost.
#[derive(Default)]
struct SessionCounts {
    open: AtomicI64,
    /// By carrier: sessions that used it (each carrier once per session).
    carried: Mutex<BTreeMap<&'static str, u64>>,
    resumes: AtomicU64,
    lost: AtomicU64,
}

impl Metrics {
    pub fn new(routes: impl IntoIterator<Item = String>, budget: Arc<Budget>) -> Arc<Metrics> {
        Arc::new(Metrics {
            routes: routes
                .into_iter()
                .map(|path| (path, (AtomicI64::new(0), AtomicU64::new(0))))
                .collect(),
            refusals: Mutex::default(),
            closes: Mutex::default(),
            traffic: Mutex::default(),
            page_requests: AtomicU64::new(0),
            publishes: AtomicU64::new(0),
            published_bytes: AtomicU64::new(0),
            sessions: SessionCounts::default(),
            budget,
        })
    }

    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// A WebSocket opened on `route`.
    pub fn opened(&self, route: &str) {
        if let Some((open, total)) = self.routes.get(route) {
            open.fetch_add(1, Ordering::Relaxed);
            total.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A WebSocket on `route` ended with `code`, closed `by` the client, the server, or nobody
    /// (dropped, 1006).
    pub fn closed(&self, route: &str, code: u16, by: Closer) {
        let by = by.label();
        if let Some((open, _)) = self.routes.get(route) {
            open.fetch_sub(1, Ordering::Relaxed);
        }
        *lock(&self.closes)
            .entry((close_code_label(code), by))
            .or_default() += 1;
    }

    /// A connection was turned away (or a message refused) for `reason`.
    pub fn refused(&self, reason: Reason) {
        *lock(&self.refusals).entry(reason.label()).or_default() += 1;
    }

    /// The counts of a connection that has opened, for it to keep up to date; scrapes read
    /// them until it hands them back with `ended`.
    pub fn track(&self) -> Arc<LiveTraffic> {
        let live = Arc::new(LiveTraffic::default());
        let key = Arc::as_ptr(&live) as usize;
        lock(&self.traffic).open.insert(key, Arc::clone(&live));
        live
    }

    /// The connection counting into `live` has ended: its counts join the totals, in the same
    /// step that takes them out of the open ones, so no scrape counts them twice or not at all.
    pub fn ended(&self, live: &Arc<LiveTraffic>) {
        let mut tally = lock(&self.traffic);
        if tally.open.remove(&(Arc::as_ptr(live) as usize)).is_some() {
            tally.ended += live.now();
        }
    }

    /// Every connection's traffic so far: those that ended and those open now.
    fn traffic(&self) -> Traffic {
        let tally = lock(&self.traffic);
        tally.open.values().fold(tally.ended, |mut sum, live| {
            sum += live.now();
            sum
        })
    }

    pub fn page_request(&self) {
        self.page_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A message of `bytes` published to a room (`POST /publish/NAME`).
    pub fn published(&self, bytes: usize) {
        self.publishes.fetch_add(1, Ordering::Relaxed);
        self.published_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A session opened.
    pub fn session_opened(&self) {
        self.sessions.open.fetch_add(1, Ordering::Relaxed);
    }

    /// A session ended.
    pub fn session_closed(&self) {
        self.sessions.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// A session used the carrier `name` for the first time.
    pub fn session_carried(&self, name: &'static str) {
        *lock(&self.sessions.carried).entry(name).or_default() += 1;
    }

    /// A session's client came back after its carrier dropped.
    pub fn session_resumed(&self) {
        self.sessions.resumes.fetch_add(1, Ordering::Relaxed);
    }

    /// A session ended because no carrier came within the resume window.
    pub fn session_lost(&self) {
        self.sessions.lost.fetch_add(1, Ordering::Relaxed);
    }

    fn render_sessions(&self, out: &mut String) {
        let sessions = &self.sessions;
        family(
            out,
            "wsecho_sessions_open",
            "gauge",
            "Sessions open now (a WebSocket connection with resume, or the HTTP carrier).",
            [(String::new(), sessions.open.load(Ordering::Relaxed))],
        );
        let carried: Vec<_> = lock(&sessions.carried)
            .iter()
            .map(|(name, &count)| (format!("{{carrier=\"{name}\"}}"), count as i64))
            .collect();
        family(
            out,
            "wsecho_sessions_total",
            "counter",
            "Sessions by the carriers they used (a session that switched counts under each).",
            carried,
        );
        for (name, help, counter) in [
            (
                "wsecho_session_resumes_total",
                "Sessions whose client came back after its carrier dropped.",
                &sessions.resumes,
            ),
            (
                "wsecho_sessions_lost_total",
                "Sessions ended because no carrier came back within the resume window.",
                &sessions.lost,
            ),
        ] {
            let value = counter.load(Ordering::Relaxed) as i64;
            family(out, name, "counter", help, [(String::new(), value)]);
        }
    }

    /// Everything, in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let version = format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
        family(
            &mut out,
            "wsecho_build_info",
            "gauge",
            "Always 1; the version is a label.",
            [(version, 1)],
        );
        let by_route = |pick: fn(&(AtomicI64, AtomicU64)) -> i64| {
            self.routes
                .iter()
                .map(move |(route, counts)| (format!("{{route=\"{route}\"}}"), pick(counts)))
        };
        family(
            &mut out,
            "wsecho_open_connections",
            "gauge",
            "WebSockets open now, by route.",
            by_route(|(open, _)| open.load(Ordering::Relaxed)),
        );
        family(
            &mut out,
            "wsecho_connections_total",
            "counter",
            "WebSockets opened, by route.",
            by_route(|(_, total)| total.load(Ordering::Relaxed) as i64),
        );
        let refusals: Vec<_> = lock(&self.refusals)
            .iter()
            .map(|(reason, &count)| (format!("{{reason=\"{reason}\"}}"), count as i64))
            .collect();
        family(
            &mut out,
            "wsecho_refusals_total",
            "counter",
            "Admissions turned away, and messages refused for memory, by reason.",
            refusals,
        );
        let closes: Vec<_> = lock(&self.closes)
            .iter()
            .map(|((code, by), &count)| (format!("{{code=\"{code}\",by=\"{by}\"}}"), count as i64))
            .collect();
        family(
            &mut out,
            "wsecho_closes_total",
            "counter",
            "WebSockets ended, by close code (those the RFC and IANA name; the rest as 3xxx, \
             4xxx or other) and by who closed (1006: nobody, it dropped).",
            closes,
        );
        let traffic = self.traffic();
        let page_requests = self.page_requests.load(Ordering::Relaxed);
        for (name, help, value) in [
            (
                "wsecho_messages_received_total",
                "Text and binary messages received, open connections' included.",
                traffic.messages_in,
            ),
            (
                "wsecho_received_bytes_total",
                "Their payload bytes.",
                traffic.bytes_in,
            ),
            (
                "wsecho_messages_sent_total",
                "Text and binary messages sent (pushes and broadcasts included), open connections' included.",
                traffic.messages_out,
            ),
            (
                "wsecho_sent_bytes_total",
                "Their payload bytes.",
                traffic.bytes_out,
            ),
            (
                "wsecho_page_requests_total",
                "Requests answered on the page port.",
                page_requests,
            ),
            (
                "wsecho_publishes_total",
                "Messages published to rooms through POST /publish/NAME.",
                self.publishes.load(Ordering::Relaxed),
            ),
            (
                "wsecho_published_bytes_total",
                "Bytes of the messages published through POST /publish/NAME.",
                self.published_bytes.load(Ordering::Relaxed),
            ),
        ] {
            family(
                &mut out,
                name,
                "counter",
                help,
                [(String::new(), value as i64)],
            );
        }
        self.render_sessions(&mut out);
        let in_use = self.budget.in_use() as i64;
        let help = "Bytes of messages in flight held against the memory budget.";
        family(
            &mut out,
            "wsecho_memory_budget_in_use_bytes",
            "gauge",
            help,
            [(String::new(), in_use)],
        );
        let limit = self.budget.limit() as i64;
        family(
            &mut out,
            "wsecho_memory_budget_bytes",
            "gauge",
            "The memory budget: most bytes of messages in flight, all connections together.",
            [(String::new(), limit)],
        );
        out
    }
}

/// The label of a close code: the codes the RFC and the IANA registry name (1000-1015, 1004
/// reserved and never sent, but named), and a bucket for the rest, which clients may choose
/// freely (3000-3999 registered by libraries and frameworks, 4000-4999 private), so no client
/// can grow the scrape.
fn close_code_label(code: u16) -> &'static str {
    const NAMED: [&str; 16] = [
        "1000", "1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010",
        "1011", "1012", "1013", "1014", "1015",
    ];
    match code {
        1000..=1015 => NAMED[usize::from(code - 1000)],
        3000..=3999 => "3xxx",
        4000..=4999 => "4xxx",
        _ => "other",
    }
}

/// One metric family: its HELP and TYPE lines, then a sample per label set.
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, i64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
/// Who closed a WebSocket: the `by` label of `wsecho_closes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closer {
    Client,
    Server,
    /// Nobody: the connection dropped without a close handshake (1006).
    Nobody,
}

impl Closer {
    fn label(self) -> &'static str {
        match self {
            Closer::Client => "client",
            Closer::Server => "server",
            Closer::Nobody => "nobody",
        }
    }
}

/// Why a connection was turned away, or a message refused: the `reason` label of
/// `wsecho_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// 400: a malformed request.
    BadRequest,
    /// 401 from a route's check.
    Unauthorized,
    /// 403 from a route's check.
    Forbidden,
    /// 403: an Origin the server does not allow.
    Origin,
    /// 404: no such path.
    Path,
    /// 405: not GET (or HEAD on the page).
    Method,
    /// 408: the request head did not arrive in time.
    Timeout,
    /// 413: a request with a body.
    Body,
    /// 421: a Host the server does not answer for.
    Host,
    /// 426: plain HTTP on the WebSocket port.
    NotWebsocket,
    /// 431: a request head over 8 KiB.
    HeadTooLarge,
    /// 503 for any other reason.
    Busy,
    /// Any other status.
    Other,
    /// The TLS handshake failed.
    Tls,
    /// The memory budget had no room (close 1013).
    Memory,
    /// A client sent past its message rate (close 1008).
    RateLimit,
    /// No thread could be had for the connection (503).
    Threads,
    /// No descriptor could be had for the connection (503).
    Descriptors,
    /// The port's connection cap (503).
    Cap,
    /// The per-address cap (503).
    PerAddress,
    /// The openers' pool (503).
    Openings,
    /// The server is shutting down (503).
    ShuttingDown,
}

impl Reason {
    /// The reason an HTTP refusal's status means, unless told otherwise.
    pub fn of_status(status: u16) -> Reason {
        match status {
            400 => Reason::BadRequest,
            401 => Reason::Unauthorized,
            403 => Reason::Forbidden,
            404 => Reason::Path,
            405 => Reason::Method,
            408 => Reason::Timeout,
            413 => Reason::Body,
            421 => Reason::Host,
            426 => Reason::NotWebsocket,
            431 => Reason::HeadTooLarge,
            503 => Reason::Busy,
            _ => Reason::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Reason::BadRequest => "bad_request",
            Reason::Unauthorized => "unauthorized",
            Reason::Forbidden => "forbidden",
            Reason::Origin => "origin",
            Reason::Path => "path",
            Reason::Method => "method",
            Reason::Timeout => "timeout",
            Reason::Body => "body",
            Reason::Host => "host",
            Reason::NotWebsocket => "not_websocket",
            Reason::HeadTooLarge => "head_too_large",
            Reason::Busy => "busy",
            Reason::Other => "other",
            Reason::Tls => "tls",
            Reason::Memory => "memory",
            Reason::RateLimit => "rate_limit",
            Reason::Threads => "threads",
            Reason::Descriptors => "descriptors",
            Reason::Cap => "cap",
            Reason::PerAddress => "per_address",
            Reason::Openings => "openings",
            Reason::ShuttingDown => "shutting_down",
        }
    }
}

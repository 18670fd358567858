//! The HTTP carrier of sessions, on the page port: for clients whose network breaks the
//! WebSocket upgrade (a proxy that strips `Upgrade`, or answers it with 403), since whatever
//! passes the page passes this. Three requests, each with the session's records (see
//! `session/records.rs`):
//!
//! - `POST /session/open/ROUTE?QUERY` opens a session on the WebSocket route `/ROUTE?QUERY`, its
//!   handler seeing this request's headers as an upgrade's; the answer is
//!   `{"session":"ID","window":SECS}`.
//! - `GET /session/ID/down?from=N&mode=stream` answers with the records from number `N` on, the
//!   client having every one before (they are let go): `mode=stream` keeps the response open
//!   and sends each record as it comes (chunked, a keepalive record every 10 s; when they come
//!   faster than one write each, they gather for 25 ms and go together), ending after
//!   25 s or 64 KiB so the client comes back with a new `from`; `mode=poll` answers as soon as
//!   there is something, or empty after 25 s. A newer down request replaces an older one. A
//!   stream's first bytes are a keepalive record: a client that does not see it soon is behind
//!   a proxy that buffers, and polls instead.
//! - `POST /session/ID/up` with records from the client, numbered from 1: answered 204 once the
//!   handler's connection has them; a record already delivered (a retried request) is skipped.
//!
//! A session is bound to the address that opened it (404 from any other, as for an id that
//! does not exist), requests with an Origin are judged as upgrades are (403), and `resumed=1`
//! on a down request says the client came back after a failure (for `/metrics`).

use crate::net::http::{self, Refusal, Request};
use crate::net::proxy::Client;
use crate::net::stream::Stream;
use crate::ops::budget::Holding;
use crate::ops::escape::escape;
use crate::ops::metrics::Reason;
use crate::protocol::handshake::check_origin;
use crate::session::records::{self, Kind};
use crate::session::{Carrier, Session, Sessions, Stop, UpError};
use log::{debug, warn};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The path prefix this answers.
pub const PREFIX: &str = "/session/";

/// How a session is opened: this, then the route's path.
const OPEN: &str = "/session/open/";

/// Longest a down response lasts: well under the idle timeouts of common proxies (nginx's
/// `proxy_read_timeout` is 60 s).
const HOLD: Duration = Duration::from_secs(25);

/// A streaming response sends a keepalive record after this long without one.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// Most bytes of records one down response carries (at least one record, however big): the
/// client then comes back saying what it has, and the server lets that go.
const MOST_PER_RESPONSE: usize = 64 * 1024;

/// How long a stream lets records gather once they come faster than it writes them.
const GATHER: Duration = Duration::from_millis(25);

/// Records a POST may carry beyond one message of `max_message_size`: their heads.
const UP_OVERHEAD: usize = 4096;

/// What the carrier needs.
pub struct Carrying {
    pub sessions: Arc<Sessions>,
    pub allowed_origins: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub max_message_size: usize,
    /// How long a request body may take to arrive.
    pub timeout: Duration,
}

/// Answer one session request. `Some` with the bytes after it when the connection stays open
/// for the next request (if `keep_alive` allows); `None` when it is done.
pub fn serve(
    stream: &Arc<Stream>,
    client: Client,
    request: Request,
    carrying: &Carrying,
    keep_alive: bool,
) -> Option<Vec<u8>> {
    let answered = http::check_host(&request, &carrying.allowed_hosts)
        .and_then(|()| check_origin(&request, &carrying.allowed_origins).map(drop))
        .and_then(|()| route(stream, client, &request, carrying, keep_alive));
    match answered {
        Ok(rest) => rest,
        Err(refusal) => {
            carrying.sessions.metrics.refused(refusal.reason);
            warn!(
                "page: refused {client} {}: {} {}: {}",
                refusal.status,
                request.method(),
                escape(request.path()),
                refusal.message
            );
            refusal.send_and_linger(stream);
            None
        }
    }
}

/// `Ok(Some)` with the bytes after the request when the connection stays open for the next.
fn route(
    stream: &Arc<Stream>,
    client: Client,
    request: &Request,
    carrying: &Carrying,
    keep_alive: bool,
) -> Result<Option<Vec<u8>>, Refusal> {
    let after = |kept_open: bool| kept_open.then(|| request.rest().to_vec());
    let path = request.path();
    if let Some(route) = path.strip_prefix(OPEN) {
        return open(stream, client, request, route, carrying, keep_alive).map(after);
    }
    let (id, what) = path[PREFIX.len()..].split_once('/').unwrap_or(("", ""));
    let session = carrying
        .sessions
        .find(id, client.addr.ip())
        .ok_or_else(|| {
            Refusal::new(
                404,
                "no such session (it ended, or was opened from another address): open a new one",
            )
        })?;
    let query = http::query_of(request.target());
    match (request.method(), what) {
        ("GET", "down") => down(stream, &session, query, carrying, keep_alive).map(after),
        ("POST", "up") => up(stream, &session, request, carrying, keep_alive),
        _ => Err(Refusal::new(
            405,
            "a session takes GET /session/ID/down and POST /session/ID/up",
        )),
    }
}

fn open(
    stream: &Stream,
    client: Client,
    request: &Request,
    route: &str,
    carrying: &Carrying,
    keep_alive: bool,
) -> Result<bool, Refusal> {
    if request.method() != "POST" {
        return Err(Refusal::new(405, "open a session with POST").with_header("Allow: POST"));
    }
    if request
        .header("Content-Length")
        .is_some_and(|length| length.trim() != "0")
        || request.header("Transfer-Encoding").is_some()
    {
        return Err(Refusal::new(413, "opening a session takes no body"));
    }
    let query = http::query_of(request.target());
    let target = match query {
        "" => format!("/{route}"),
        query => format!("/{route}?{query}"),
    };
    let as_upgrade = request
        .with_target("GET", &target)
        .ok_or_else(|| Refusal::new(400, "the route's path is not a request target"))?;
    let session = carrying.sessions.open(&as_upgrade, client.addr)?;
    debug!("page: {client} opened session for {}", escape(&target));
    let body = format!(
        "{{\"session\":\"{}\",\"window\":{}}}\n",
        session.id(),
        carrying.sessions.window.as_secs()
    );
    Ok(send(
        stream,
        200,
        "application/json",
        body.as_bytes(),
        keep_alive,
    ))
}

/// `GET /session/ID/down?from=N&mode=stream|poll`.
fn down(
    stream: &Arc<Stream>,
    session: &Session,
    query: &str,
    carrying: &Carrying,
    keep_alive: bool,
) -> Result<bool, Refusal> {
    let from = param(query, "from")
        .and_then(|from| from.parse::<u64>().ok())
        .ok_or_else(|| Refusal::new(400, "say from=N: the number of the next record you want"))?;
    let carrier = match param(query, "mode") {
        Some("stream") => Carrier::Streaming,
        Some("poll") => Carrier::Polling,
        _ => return Err(Refusal::new(400, "say mode=stream or mode=poll")),
    };
    let resumed = param(query, "resumed") == Some("1");
    let Some(number) = session.attach(from, carrier, resumed) else {
        return Err(Refusal::new(400, "from=N is past every record sent"));
    };
    let sessions = &carrying.sessions;
    let kept_open = match carrier {
        Carrier::Polling => {
            let deadline = Instant::now() + HOLD;
            let body = match session.take(
                number,
                from,
                MOST_PER_RESPONSE,
                deadline,
                &sessions.shutdown,
                None,
            ) {
                Ok(taken) => taken.records,
                Err(Stop::Replaced | Stop::ShuttingDown) => Vec::new(),
                Err(Stop::Ended) => {
                    session.leave(number);
                    return Err(Refusal::new(410, "the session has ended").because(Reason::Other));
                }
            };
            send(stream, 200, "application/octet-stream", &body, keep_alive)
        }
        _ => stream_down(stream, session, number, from, carrying, keep_alive),
    };
    session.leave(number);
    Ok(kept_open)
}

/// One streaming response: a keepalive record at once, then records as they come, chunked.
fn stream_down(
    stream: &Arc<Stream>,
    session: &Session,
    number: u64,
    mut from: u64,
    carrying: &Carrying,
    keep_alive: bool,
) -> bool {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\
         Cache-Control: no-store\r\nX-Accel-Buffering: no\r\nX-Content-Type-Options: nosniff\r\n\
         Connection: {}\r\n\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    );
    let mut keepalive = Vec::new();
    records::write(&mut keepalive, Kind::Keepalive, 0, b"");
    let mut out: &Stream = stream;
    if out.write_all(head.as_bytes()).is_err() || !chunk(stream, &keepalive) {
        return false;
    }
    let end = Instant::now() + HOLD;
    let mut sent = 0;
    while sent < MOST_PER_RESPONSE {
        let deadline = end.min(Instant::now() + KEEPALIVE);
        let shutdown = &carrying.sessions.shutdown;
        let room = MOST_PER_RESPONSE - sent;
        // While this waits, the handler's thread writes records to the socket itself.
        let Ok(taken) = session.take(number, from, room, deadline, shutdown, Some(stream)) else {
            break;
        };
        // The rest of a chunk the socket did not take from that thread, before anything else.
        if out.write_all(&taken.unsent).is_err() {
            return false;
        }
        sent += taken.pushed;
        from = taken.next;
        if !taken.records.is_empty() {
            if !chunk(stream, &taken.records) {
                return false;
            }
            sent += taken.records.len();
            // More than one was waiting: they come faster than one write each. Let the next
            // ones gather for a moment and go in one write, rather than one write and one
            // wake-up each (as a poll gathers them while the client comes back); a record that
            // comes alone still goes at once.
            if taken.count > 1 {
                std::thread::sleep(GATHER);
            }
        } else if Instant::now() >= end {
            break;
        } else if taken.pushed == 0 && Instant::now() >= deadline && !chunk(stream, &keepalive) {
            return false;
        }
    }
    out.write_all(b"0\r\n\r\n").is_ok() && keep_alive
}

/// One chunk of a chunked response; false when the client is gone.
fn chunk(stream: &Stream, bytes: &[u8]) -> bool {
    let framed = [
        http::chunk_head(bytes.len()).as_bytes(),
        bytes,
        http::CHUNK_END,
    ]
    .concat();
    let mut out = stream;
    out.write_all(&framed).is_ok()
}

/// `POST /session/ID/up`: the client's records, to the handler.
fn up(
    stream: &Stream,
    session: &Session,
    request: &Request,
    carrying: &Carrying,
    keep_alive: bool,
) -> Result<Option<Vec<u8>>, Refusal> {
    let length = http::body_length(request, carrying.max_message_size + UP_OVERHEAD)?;
    // Held against the budget from before its first byte is read until it is delivered.
    let mut holding = Holding::new(carrying.sessions.metrics.budget());
    if !holding.grow(length) {
        return Err(
            Refusal::new(503, "the server's memory budget is full; try again later")
                .because(Reason::Memory),
        );
    }
    let mut received = request.rest().to_vec();
    let deadline = Instant::now() + carrying.timeout;
    if let Err(error) = http::read_body(stream, &mut received, length, deadline) {
        debug!("page: session {}: body cut short: {error}", session.id());
        return Ok(None);
    }
    let records = records::parse(&received[..length])
        .map_err(|malformed| Refusal::new(400, malformed.to_string()))?;
    match session.deliver(&records) {
        Ok(()) => {}
        Err(error @ UpError::Gap { .. }) => return Err(Refusal::new(409, error.to_string())),
        Err(UpError::Gone) => return Err(Refusal::new(410, "the session has ended")),
    }
    drop(holding);
    // What came after the body belongs to the next request.
    let rest = received.split_off(length);
    Ok(send(stream, 204, "text/plain", b"", keep_alive).then_some(rest))
}

/// Write a whole answer; true when the connection stays open.
fn send(stream: &Stream, status: u16, content_type: &str, body: &[u8], keep_alive: bool) -> bool {
    let head = http::response_head(status, content_type, body.len() as u64, keep_alive, None);
    let mut answer = head.into_bytes();
    answer.extend_from_slice(body);
    let mut out = stream;
    out.write_all(&answer).is_ok() && keep_alive
}

/// The value of `name` in a query (not decoded).
fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

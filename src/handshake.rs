//! The opening bytes of a connection on the WebSocket (or policy) port: read them within the
//! handshake deadline, tell a Flash policy request from an HTTP request, and decide whether an
//! HTTP request may upgrade. Every refusal is a short plain-text HTTP answer saying what to do.
//!
//! We read and answer the upgrade request ourselves (instead of tungstenite's `accept`) so
//! that the policy request, a plain HTTP request (426), a wrong path (404) and a refused Origin
//! (403) all get a clear answer; tungstenite then runs the WebSocket protocol on the same socket.

use crate::config::WEBSOCKET_PATH;
use crate::policy;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The largest request head we read; larger gets 431.
const MAX_HEAD_LEN: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;

/// What a client opened with.
// The request stays on the stack, unboxed: a heap copy would outlive the handshake in the
// thread's malloc cache.
#[allow(clippy::large_enum_variant)]
pub enum Opening {
    PolicyRequest,
    Http(Request),
}

/// A parsed HTTP request head. It keeps the bytes as read and only the offsets of their parts:
/// no allocation per header, as every connection's thread keeps what it freed in its own
/// malloc cache.
pub struct Request {
    /// The head, then whatever the client sent after it.
    received: Vec<u8>,
    head_len: usize,
    method: Span,
    target: Span,
    headers: [(Span, Span); MAX_HEADERS],
    header_count: usize,
}

/// Where a part of the head lies in `Request::received`.
#[derive(Clone, Copy, Default)]
struct Span {
    start: u16,
    end: u16,
}

/// Why the opening could not be read.
#[derive(Debug)]
pub enum OpeningError {
    TimedOut,
    /// The client closed before finishing its request.
    Closed,
    TooLarge,
    /// Began like a Flash policy request (`<`) but is not one.
    UnknownPolicyRequest,
    Malformed(String),
    Io(io::Error),
}

impl fmt::Display for OpeningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpeningError::TimedOut => write!(f, "no complete request within the handshake timeout"),
            OpeningError::Closed => write!(f, "client closed before finishing its request"),
            OpeningError::TooLarge => write!(f, "request head larger than {MAX_HEAD_LEN} bytes"),
            OpeningError::UnknownPolicyRequest => write!(f, "not a Flash policy request"),
            OpeningError::Malformed(why) => write!(f, "malformed request: {why}"),
            OpeningError::Io(error) => write!(f, "read failed: {error}"),
        }
    }
}

impl Request {
    fn text(&self, span: Span) -> &str {
        // Method, target and names are ASCII tokens (httparse checked); a value that is not
        // UTF-8 reads as empty.
        std::str::from_utf8(&self.received[span.start as usize..span.end as usize]).unwrap_or("")
    }

    pub fn method(&self) -> &str {
        self.text(self.method)
    }

    /// Path and query, as sent.
    pub fn target(&self) -> &str {
        self.text(self.target)
    }

    fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers[..self.header_count]
            .iter()
            .map(|&(name, value)| (self.text(name), self.text(value)))
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.fields()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// Whether header `name` lists `token` among its comma-separated values.
    fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.fields()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .flat_map(|(_, value)| value.split(','))
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    }

    pub fn path(&self) -> &str {
        self.target().split('?').next().unwrap_or_default()
    }

    /// Bytes the client sent after the head without waiting for our answer (early frames).
    pub fn rest(&self) -> &[u8] {
        &self.received[self.head_len..]
    }
}

/// Read until a complete policy request or HTTP request head, all within `timeout`: a client
/// trickling bytes cannot hold the thread longer than that.
pub fn read_opening(mut stream: &TcpStream, timeout: Duration) -> Result<Opening, OpeningError> {
    let deadline = Instant::now() + timeout;
    let mut received = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(opening) = parse_opening(&mut received)? {
            return Ok(opening);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(OpeningError::TimedOut);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(OpeningError::Io)?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err(OpeningError::Closed),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(error) if is_timeout(&error) => return Err(OpeningError::TimedOut),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(OpeningError::Io(error)),
        }
    }
}

/// Whether an I/O error is a read or write timeout (Linux reports `WouldBlock`).
pub fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// `Ok(None)` while more bytes are needed.
/// On success the bytes move into the `Request`.
fn parse_opening(received: &mut Vec<u8>) -> Result<Option<Opening>, OpeningError> {
    if received.first() == Some(&b'<') {
        return match received.iter().position(|&byte| byte == 0) {
            Some(nul) if policy::is_request(&received[..=nul]) => Ok(Some(Opening::PolicyRequest)),
            Some(_) => Err(OpeningError::UnknownPolicyRequest),
            None if received.len() >= policy::MAX_REQUEST_LEN => {
                Err(OpeningError::UnknownPolicyRequest)
            }
            None => Ok(None),
        };
    }
    let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if received.len() > MAX_HEAD_LEN {
            Err(OpeningError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let head_len = end + 4;
    if head_len > MAX_HEAD_LEN {
        return Err(OpeningError::TooLarge);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&received[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(OpeningError::Malformed("incomplete request head".into()));
        }
        Err(httparse::Error::TooManyHeaders) => return Err(OpeningError::TooLarge),
        Err(error) => return Err(OpeningError::Malformed(error.to_string())),
    }
    // The head is at most MAX_HEAD_LEN (8 KiB) long, so every offset fits a u16.
    let span = |part: &[u8]| {
        let start = part.as_ptr() as usize - received.as_ptr() as usize;
        Span {
            start: start as u16,
            end: (start + part.len()) as u16,
        }
    };
    let mut fields = [(Span::default(), Span::default()); MAX_HEADERS];
    for (field, header) in fields.iter_mut().zip(parsed.headers.iter()) {
        *field = (span(header.name.as_bytes()), span(header.value));
    }
    Ok(Some(Opening::Http(Request {
        method: span(parsed.method.unwrap_or_default().as_bytes()),
        target: span(parsed.path.unwrap_or_default().as_bytes()),
        headers: fields,
        header_count: parsed.headers.len(),
        head_len,
        received: std::mem::take(received),
    })))
}

/// An upgrade we accept.
pub struct Upgrade {
    pub accept_key: String,
    pub origin: Option<String>,
    /// web-socket-js's Flash bridge sends an Origin but no User-Agent; browsers send both.
    pub looks_like_flash: bool,
}

/// An HTTP answer refusing the connection.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    /// One line for the client and the log: what happened and what to do.
    pub message: String,
    extra_header: Option<&'static str>,
}

impl Refusal {
    pub fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
            extra_header: None,
        }
    }

    /// Write the answer; the caller closes the connection afterwards.
    pub fn write_to(&self, mut out: impl Write) -> io::Result<()> {
        let extra = self
            .extra_header
            .map_or(String::new(), |h| format!("{h}\r\n"));
        let body = format!("{}\n", self.message);
        let response = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            self.status,
            reason_phrase(self.status),
            body.len()
        );
        out.write_all(response.as_bytes())?;
        out.flush()
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// The refusal owed to a client whose opening could not be read, if any is worth sending.
pub fn refusal_for(error: &OpeningError) -> Option<Refusal> {
    match error {
        OpeningError::TimedOut => Some(Refusal::new(408, "request not completed in time")),
        OpeningError::TooLarge => Some(Refusal::new(431, error.to_string())),
        OpeningError::Malformed(_) => Some(Refusal::new(400, error.to_string())),
        // Not HTTP, so an HTTP answer would mean nothing to it.
        OpeningError::UnknownPolicyRequest | OpeningError::Closed | OpeningError::Io(_) => None,
    }
}

/// Decide whether `request` may become a WebSocket. `allowed_origins` widens the default rule
/// (no Origin, or an Origin on the host the client connected to).
pub fn check_upgrade(request: &Request, allowed_origins: &[String]) -> Result<Upgrade, Refusal> {
    if request.path() != WEBSOCKET_PATH {
        return Err(Refusal::new(
            404,
            format!(
                "no WebSocket at {}: connect to {WEBSOCKET_PATH}",
                request.path()
            ),
        ));
    }
    if !request.header_has_token("Upgrade", "websocket") {
        let mut refusal = Refusal::new(
            426,
            format!(
                "this port speaks WebSocket only: connect a WebSocket client to {WEBSOCKET_PATH}, \
                 or open the page on the HTTP port"
            ),
        );
        refusal.extra_header = Some("Upgrade: websocket");
        return Err(refusal);
    }
    if request.method() != "GET" {
        return Err(Refusal::new(405, "a WebSocket upgrade must use GET"));
    }
    if request.header("Sec-WebSocket-Version").map(str::trim) != Some("13") {
        let mut refusal = Refusal::new(426, "unsupported WebSocket version: use version 13");
        refusal.extra_header = Some("Sec-WebSocket-Version: 13");
        return Err(refusal);
    }
    if !request.header_has_token("Connection", "upgrade") {
        return Err(Refusal::new(
            400,
            "the Connection header must include Upgrade",
        ));
    }
    let key = request.header("Sec-WebSocket-Key").map(str::trim);
    let Some(key) = key.filter(|key| is_valid_key(key)) else {
        return Err(Refusal::new(400, "missing or invalid Sec-WebSocket-Key"));
    };
    let origin = request.header("Origin").map(str::to_string);
    if let Some(origin) = &origin
        && !origin_allowed(origin, request.header("Host"), allowed_origins)
    {
        return Err(Refusal::new(
            403,
            format!(
                "origin {origin} is not allowed: serve the page from this host, \
                 or start wsecho with --allow-origin {origin}"
            ),
        ));
    }
    Ok(Upgrade {
        accept_key: tungstenite::handshake::derive_accept_key(key.as_bytes()),
        looks_like_flash: origin.is_some() && request.header("User-Agent").is_none(),
        origin,
    })
}

/// The answer that completes the upgrade.
pub fn switching_protocols(accept_key: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept_key}\r\n\r\n"
    )
}

/// RFC 6455: the key is the base64 encoding of 16 bytes, so 22 characters and `==`, the last
/// character carrying only 2 bits (one of `AQgw`).
fn is_valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.len() == 24
        && key.ends_with("==")
        && bytes[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        && b"AQgw".contains(&bytes[21])
}

fn origin_allowed(origin: &str, host_header: Option<&str>, allowed: &[String]) -> bool {
    if allowed
        .iter()
        .any(|entry| entry == "*" || entry.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let origin_host = origin
        .split_once("://")
        .map(|(_, authority)| host_of(authority));
    match (origin_host, host_header) {
        (Some(origin_host), Some(host)) => origin_host.eq_ignore_ascii_case(host_of(host.trim())),
        _ => false,
    }
}

/// The host of an authority (`host`, `host:port`, `[v6]:port`), without the port.
fn host_of(authority: &str) -> &str {
    let authority = authority.trim_end_matches('/');
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_on_the_same_host_is_allowed_on_any_port() {
        assert!(origin_allowed(
            "http://localhost:8080",
            Some("localhost:8087"),
            &[]
        ));
        assert!(origin_allowed("http://[::1]:8080", Some("[::1]:8087"), &[]));
        assert!(origin_allowed(
            "http://Example.COM",
            Some("example.com:8087"),
            &[]
        ));
        assert!(!origin_allowed(
            "http://evil.test:8080",
            Some("localhost:8087"),
            &[]
        ));
        assert!(!origin_allowed("null", Some("localhost:8087"), &[]));
        assert!(!origin_allowed("http://localhost:8080", None, &[]));
    }

    #[test]
    fn allow_origin_entries_widen_the_rule() {
        let allowed = vec!["http://app.test:3000".to_string()];
        assert!(origin_allowed(
            "http://app.test:3000",
            Some("ws.test"),
            &allowed
        ));
        assert!(!origin_allowed(
            "http://app.test:3001",
            Some("ws.test"),
            &allowed
        ));
        assert!(origin_allowed("null", Some("ws.test"), &["*".to_string()]));
    }

    #[test]
    fn keys_must_encode_sixteen_bytes() {
        assert!(is_valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZR=="));
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25j*Q=="));
    }

    #[test]
    fn opening_waits_for_a_whole_head_and_keeps_early_bytes() {
        let mut partial = b"GET /echo HTTP/1.1\r\n".to_vec();
        assert!(matches!(parse_opening(&mut partial), Ok(None)));
        let mut partial_policy = b"<policy-file-".to_vec();
        assert!(matches!(parse_opening(&mut partial_policy), Ok(None)));
        let mut whole = b"GET /echo?a=1 HTTP/1.1\r\nHost: h\r\n\r\nXY".to_vec();
        let Ok(Some(Opening::Http(request))) = parse_opening(&mut whole) else {
            panic!("expected a request");
        };
        assert_eq!(request.path(), "/echo");
        assert_eq!(request.rest(), b"XY");
        assert_eq!(request.method(), "GET");
        assert_eq!(request.target(), "/echo?a=1");
        assert_eq!(request.header("host"), Some("h"));
    }
}

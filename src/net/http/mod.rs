//! HTTP/1.1 request heads as both our ports read them; the answers are in `answer.rs`.
//!
//! A head is at most 8 KiB and must arrive before a deadline; it is parsed by httparse into
//! offsets into the bytes as read (no allocation per header: every connection's thread keeps
//! what it freed in its own malloc cache). A body is read only when a route asks (`read_body`).

mod answer;

pub use answer::{Refusal, response_head};

use crate::net::stream::Stream;
use crate::net::wire;
use std::fmt;
use std::io::{self, Read};
use std::time::Instant;

/// The largest request head we read; larger gets 431.
pub const MAX_HEAD_LEN: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;

/// How much one read takes: small, so a head over the limit is noticed after at most this
/// much more.
const READ_CHUNK: usize = 1024;

/// The head of one chunk of a chunked body (its length in hex); `CHUNK_END` follows the bytes.
pub fn chunk_head(len: usize) -> String {
    format!("{len:x}\r\n")
}
pub const CHUNK_END: &[u8] = b"\r\n";

/// A parsed request head. It keeps the bytes as read and only the offsets of their parts.
pub struct Request {
    /// The head, then whatever the client sent after it.
    received: Vec<u8>,
    head_len: usize,
    method: Span,
    target: Span,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    minor_version: u8,
    headers: [(Span, Span); MAX_HEADERS],
    header_count: usize,
}

/// Where a part of the head lies in `Request::received`.
#[derive(Clone, Copy, Default)]
struct Span {
    start: u16,
    end: u16,
}

/// Why no request head could be read.
#[derive(Debug)]
pub enum HeadError {
    TimedOut,
    /// The client closed before finishing its request.
    Closed,
    TooLarge,
    Malformed(String),
    Io(io::Error),
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TimedOut => write!(f, "no complete request within the handshake timeout"),
            HeadError::Closed => write!(f, "client closed before finishing its request"),
            HeadError::TooLarge => write!(f, "request head larger than {MAX_HEAD_LEN} bytes"),
            HeadError::Malformed(why) => write!(f, "malformed request: {why}"),
            HeadError::Io(error) => write!(f, "read failed: {error}"),
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

    pub fn path(&self) -> &str {
        self.target().split('?').next().unwrap_or_default()
    }

    /// Whether this is HTTP/1.0 rather than 1.1.
    pub fn is_http10(&self) -> bool {
        self.minor_version == 0
    }

    /// Every header, name and value, in the order sent.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
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
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.fields()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .flat_map(|(_, value)| value.split(','))
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    }

    /// Bytes the client sent after the head without waiting for our answer (early frames, or
    /// pipelined requests).
    pub fn rest(&self) -> &[u8] {
        &self.received[self.head_len..]
    }

    /// The same request with another method and target (a session's request, as its route
    /// sees it): the headers are kept.
    pub fn with_target(&self, method: &str, target: &str) -> Option<Request> {
        let head = &self.received[..self.head_len];
        let first_line_end = head.windows(2).position(|pair| pair == b"\r\n")?;
        let mut bytes = format!("{method} {target} HTTP/1.1").into_bytes();
        bytes.extend_from_slice(&head[first_line_end..]);
        parse_head(&mut bytes).ok().flatten()
    }

    /// The bytes after the head, reusing the buffer they were read into.
    pub fn into_rest(mut self) -> Vec<u8> {
        self.received.drain(..self.head_len);
        self.received
    }
}

/// The query of a request target (path and query, as sent): after `?`, not decoded; empty
/// when there is none.
pub fn query_of(target: &str) -> &str {
    target.split_once('?').map_or("", |(_, query)| query)
}

/// A request head kept for the application once the connection is upgraded (its query and
/// headers): only its bytes, parsed again when asked, which is rare, so that an idle
/// connection holds no more than the bytes.
pub struct Head(Box<[u8]>);

impl Head {
    pub fn of(request: &Request) -> Head {
        Head(request.received[..request.head_len].into())
    }

    /// Path and query, as sent.
    pub fn target(&self) -> &str {
        let line = self.0.split(|&b| b == b'\r').next().unwrap_or_default();
        let target = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
        std::str::from_utf8(target).unwrap_or_default()
    }

    /// Every header, name and value, in the order sent (a value that is not UTF-8 reads as
    /// empty).
    pub fn fields(&self) -> Vec<(&str, &str)> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        // It parsed when it arrived; a failure now leaves no headers rather than a panic.
        if parsed.parse(&self.0).is_err() {
            return Vec::new();
        }
        let fields = parsed.headers.iter();
        fields
            .map(|header| (header.name, std::str::from_utf8(header.value).unwrap_or("")))
            .collect()
    }
}

/// Read once more from `stream` into `received`, waiting no later than `deadline`.
pub fn read_more(
    mut stream: &Stream,
    received: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(), HeadError> {
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::TimedOut);
        }
        stream
            .wire()
            .set_read_timeout(Some(left))
            .map_err(HeadError::Io)?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => {
                received.extend_from_slice(&chunk[..n]);
                return Ok(());
            }
            Err(error) if wire::is_timeout(&error) => return Err(HeadError::TimedOut),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(HeadError::Io(error)),
        }
    }
}

/// The request head at the start of `received`: `Ok(None)` while more bytes are needed.
/// On success the bytes move into the `Request`.
pub fn parse_head(received: &mut Vec<u8>) -> Result<Option<Request>, HeadError> {
    let Some(head_len) = head_end(received) else {
        return if received.len() > MAX_HEAD_LEN {
            Err(HeadError::TooLarge)
        } else {
            Ok(None)
        };
    };
    if head_len > MAX_HEAD_LEN {
        return Err(HeadError::TooLarge);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&received[..head_len]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(HeadError::Malformed("incomplete request head".into()));
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(error) => return Err(HeadError::Malformed(error.to_string())),
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
    // RFC 9112 section 3.2: an HTTP/1.1 request without Host, or with more than one, gets 400.
    let hosts = parsed
        .headers
        .iter()
        .filter(|header| header.name.eq_ignore_ascii_case("Host"))
        .count();
    if parsed.version == Some(1) && hosts != 1 {
        let why = if hosts == 0 {
            "an HTTP/1.1 request needs a Host header"
        } else {
            "a request may have one Host header, not several"
        };
        return Err(HeadError::Malformed(why.into()));
    }
    Ok(Some(Request {
        method: span(parsed.method.unwrap_or_default().as_bytes()),
        target: span(parsed.path.unwrap_or_default().as_bytes()),
        minor_version: parsed.version.unwrap_or(1),
        headers: fields,
        header_count: parsed.headers.len(),
        head_len,
        received: std::mem::take(received),
    }))
}

/// The length of the head at the start of `received` (up to and including the empty line that
/// ends it), once it is all there. Lines end with CRLF, or with a lone LF, which RFC 9112
/// (section 2.2) lets a server take as a line's end; either way the head is complete at once.
/// Empty lines before the request line are skipped, as RFC 9112 (section 2.2) asks.
fn head_end(received: &[u8]) -> Option<usize> {
    let (mut line_start, mut lines) = (0, 0);
    for (at, &byte) in received.iter().enumerate() {
        if byte != b'\n' {
            continue;
        }
        let line = &received[line_start..at];
        let empty = line.is_empty() || line == b"\r";
        if empty && lines > 0 {
            return Some(at + 1);
        }
        lines += usize::from(!empty);
        line_start = at + 1;
    }
    None
}

/// The host of an authority (`host`, `host:port`, `[v6]:port`), without the port.
pub fn host_of(authority: &str) -> &str {
    let authority = authority.trim_end_matches('/');
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// With an allow-list of host names (`--host`), refuse (421) a request for any other host: a
/// page on a rebound DNS name then reaches nothing. An empty list allows every host.
pub fn check_host(request: &Request, allowed: &[String]) -> Result<(), Refusal> {
    if allowed.is_empty() {
        return Ok(());
    }
    let host = request.header("Host").map(|host| host_of(host.trim()));
    if host.is_some_and(|host| allowed.iter().any(|name| name.eq_ignore_ascii_case(host))) {
        return Ok(());
    }
    Err(Refusal::new(
        421,
        format!(
            "this server answers only for {}, not for {}: use that name in the address",
            allowed.join(", "),
            host.unwrap_or("a request without Host")
        ),
    ))
}

/// How much one read of a body takes.
const BODY_CHUNK: usize = 64 * 1024;

/// Read until `received` holds `length` bytes, by `deadline`.
pub fn read_body(
    mut stream: &Stream,
    received: &mut Vec<u8>,
    length: usize,
    deadline: Instant,
) -> io::Result<()> {
    received.reserve(length.saturating_sub(received.len()));
    let mut chunk = vec![0u8; BODY_CHUNK.min(length)];
    while received.len() < length {
        if !wire::set_timeout_until(stream.wire(), deadline) {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let want = chunk.len().min(length - received.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The length of the body `request` declares, at most `max`: a `Content-Length` is required
/// (411 without one, or for chunked), and a body over `max` is refused (413) before it is read.
pub fn body_length(request: &Request, max: usize) -> Result<usize, Refusal> {
    if request.header("Transfer-Encoding").is_some() {
        return Err(Refusal::new(
            411,
            "send the body with a Content-Length, not chunked",
        ));
    }
    let length = match request
        .header("Content-Length")
        .map(|v| v.trim().parse::<u64>())
    {
        None => return Err(Refusal::new(411, "send the body with a Content-Length")),
        Some(Err(_)) => return Err(Refusal::new(400, "malformed Content-Length header")),
        Some(Ok(length)) => length,
    };
    if length > max as u64 {
        return Err(Refusal::new(
            413,
            format!("a message is at most {max} bytes (`max_message_size`), not {length}"),
        ));
    }
    Ok(length as usize)
}

/// The refusal owed to a client whose request head could not be read, if any is worth
/// sending (a client that left gets none).
pub fn refusal_for(error: &HeadError) -> Option<Refusal> {
    match error {
        HeadError::TimedOut => Some(Refusal::new(408, "request not completed in time")),
        HeadError::TooLarge => Some(Refusal::new(431, error.to_string())),
        HeadError::Malformed(_) => Some(Refusal::new(400, error.to_string())),
        HeadError::Closed | HeadError::Io(_) => None,
    }
}

/// `%XX` decoding (URL paths, Redis URLs); `None` for a malformed escape or a result that is not UTF-8.
pub fn percent_decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(head: &[u8]) -> Result<Option<Request>, HeadError> {
        parse_head(&mut head.to_vec())
    }

    #[test]
    fn percent_decoding_rejects_broken_escapes() {
        assert_eq!(percent_decode("/a%2e%2E/b").as_deref(), Some("/a../b"));
        assert_eq!(percent_decode("/%zz"), None);
        assert_eq!(percent_decode("/%4"), None);
        assert_eq!(percent_decode("/%ff"), None);
    }

    #[test]
    fn host_is_required_once_in_http_1_1_as_rfc_9112_says() {
        let refused = |head: &[u8]| match parsed(head) {
            Err(error @ HeadError::Malformed(_)) => refusal_for(&error).map(|r| r.status),
            _ => None,
        };
        assert_eq!(refused(b"GET / HTTP/1.1\r\n\r\n"), Some(400));
        assert_eq!(
            refused(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
            Some(400)
        );
        assert!(matches!(
            parsed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok(Some(_))
        ));
        // HTTP/1.0 had no Host.
        assert!(matches!(parsed(b"GET / HTTP/1.0\r\n\r\n"), Ok(Some(_))));
    }

    #[test]
    fn lines_may_end_with_a_lone_lf_and_empty_lines_before_the_request_are_skipped() {
        let Ok(Some(request)) = parsed(b"GET /chat HTTP/1.1\nHost: h\nX-A: 1\n\nrest") else {
            panic!("a head with LF line ends is complete at once");
        };
        assert_eq!(request.path(), "/chat");
        assert_eq!(request.header("X-A"), Some("1"));
        assert_eq!(request.rest(), b"rest");
        let Ok(Some(request)) = parsed(b"\r\n\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n") else {
            panic!("empty lines before the request line are skipped");
        };
        assert_eq!(request.path(), "/x");
        assert!(matches!(parsed(b"GET / HTTP/1.1\nHost: h\n"), Ok(None)));
    }

    #[test]
    fn a_head_is_parsed_once_whole_and_keeps_what_follows() {
        let mut partial = b"GET /echo HTTP/1.1\r\n".to_vec();
        assert!(matches!(parse_head(&mut partial), Ok(None)));
        let mut whole = b"GET /echo?a=1 HTTP/1.0\r\nHost: h\r\n\r\nXY".to_vec();
        let Ok(Some(request)) = parse_head(&mut whole) else {
            panic!("expected a request");
        };
        assert_eq!(request.path(), "/echo");
        assert_eq!(request.rest(), b"XY");
        assert_eq!(request.method(), "GET");
        assert_eq!(request.target(), "/echo?a=1");
        assert_eq!(request.header("host"), Some("h"));
        assert!(request.is_http10());
        assert_eq!(request.into_rest(), b"XY");
    }

    #[test]
    fn a_head_over_the_limit_is_refused_without_its_end() {
        let mut endless = vec![b'a'; MAX_HEAD_LEN + 1];
        assert!(matches!(parse_head(&mut endless), Err(HeadError::TooLarge)));
    }
}

//! The opening bytes of a connection on the WebSocket (or policy) port: read them within the
//! handshake deadline, tell a Flash policy request from an HTTP request, and decide whether an
//! HTTP request may upgrade. Every refusal is a short plain-text HTTP answer saying what to do.
//!
//! We read and answer the upgrade request ourselves (instead of tungstenite's `accept`) so
//! that the policy request, a plain HTTP request (426), a wrong path (404) and a refused Origin
//! (403) all get a clear answer; tungstenite then runs the WebSocket protocol on the same socket.

use crate::net::http::{self, HeadError, Refusal, Request, host_of};
use crate::net::stream::Stream;
use crate::ops::metrics::Reason;
use crate::protocol::deflate;
use crate::protocol::policy;
use crate::protocol::routes::{Route, Routes, UpgradeRequest};
use crate::protocol::token;
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

/// What a client opened with.
// The request stays on the stack, unboxed: a heap copy would outlive the handshake in the
// thread's malloc cache.
#[allow(clippy::large_enum_variant)]
pub enum Opening {
    PolicyRequest,
    Http(Request),
}

/// Why the opening could not be read.
#[derive(Debug)]
pub enum OpeningError {
    Head(HeadError),
    /// Began like a Flash policy request (`<`) but is not one.
    UnknownPolicyRequest,
}

impl From<HeadError> for OpeningError {
    fn from(error: HeadError) -> Self {
        OpeningError::Head(error)
    }
}

impl fmt::Display for OpeningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpeningError::Head(error) => error.fmt(f),
            OpeningError::UnknownPolicyRequest => write!(f, "not a Flash policy request"),
        }
    }
}

/// Read until a complete policy request or HTTP request head, all by `deadline`: a client
/// trickling bytes cannot hold the thread longer than that.
pub fn read_opening(stream: &Stream, deadline: Instant) -> Result<Opening, OpeningError> {
    let mut received = Vec::with_capacity(1024);
    loop {
        if let Some(opening) = parse_opening(&mut received)? {
            return Ok(opening);
        }
        http::read_more(stream, &mut received, deadline)?;
    }
}

/// `Ok(None)` while more bytes are needed.
pub(crate) fn parse_opening(received: &mut Vec<u8>) -> Result<Option<Opening>, OpeningError> {
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
    Ok(http::parse_head(received)?.map(Opening::Http))
}

/// The refusal owed to a client whose opening could not be read, if any is worth sending.
pub fn refusal_for(error: &OpeningError) -> Option<Refusal> {
    match error {
        OpeningError::Head(error) => http::refusal_for(error),
        // Not HTTP, so an HTTP answer would mean nothing to it.
        OpeningError::UnknownPolicyRequest => None,
    }
}

/// An upgrade we accept.
pub struct Upgrade {
    /// The route that serves it.
    pub route: Route,
    /// The path that route was given for (`/rooms/*` for `/rooms/news`), for the metrics.
    pub route_path: String,
    /// The subprotocol chosen, answered in `Sec-WebSocket-Protocol`.
    pub protocol: Option<String>,
    pub accept_key: String,
    pub origin: Option<String>,
    /// web-socket-js's Flash bridge sends an Origin but no User-Agent; browsers send both.
    pub looks_like_flash: bool,
    /// Our `Sec-WebSocket-Extensions` answer when permessage-deflate is agreed.
    pub deflate: Option<String>,
    /// The `sub` of the client's token, when tokens are required and it has one.
    pub subject: Option<String>,
}

/// Decide whether `request` may become a WebSocket, and on which route. `allowed_origins`
/// widens the default Origin rule (no Origin, or an Origin on the host the client connected
/// to); then the route judges the request and picks its subprotocol. With `deflate`, the
/// client's first permessage-deflate offer we can honour is accepted.
pub fn check_upgrade(
    request: &Request,
    peer: SocketAddr,
    routes: &Routes,
    allowed_origins: &[String],
    allowed_hosts: &[String],
    deflate: bool,
    jwt_key: Option<&[u8]>,
) -> Result<Upgrade, Refusal> {
    http::check_host(request, allowed_hosts)?;
    let Some((route_path, route)) = routes.find(request.path()) else {
        return Err(Refusal::new(
            404,
            format!(
                "no WebSocket at {}: connect to {}",
                request.path(),
                routes.paths()
            ),
        ));
    };
    if !request.header_has_token("Upgrade", "websocket") {
        return Err(Refusal::new(
            426,
            format!(
                "this port speaks WebSocket only: connect a WebSocket client to {}, \
                 or open the page on the HTTP port",
                request.path()
            ),
        )
        .with_header("Upgrade: websocket"));
    }
    if request.method() != "GET" {
        return Err(Refusal::new(405, "a WebSocket upgrade must use GET"));
    }
    if request.header("Sec-WebSocket-Version").map(str::trim) != Some("13") {
        return Err(
            Refusal::new(426, "unsupported WebSocket version: use version 13")
                .with_header("Sec-WebSocket-Version: 13"),
        );
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
    let origin = check_origin(request, allowed_origins)?;
    let upgrade_request = UpgradeRequest::new(request, peer);
    let subject = token::subject(&upgrade_request, jwt_key)?;
    let protocol = route
        .judge(&upgrade_request)
        .map_err(|refused| Refusal::new(refused.status, refused.reason))?;
    Ok(Upgrade {
        route: route.clone(),
        route_path: route_path.to_string(),
        protocol,
        accept_key: tungstenite::handshake::derive_accept_key(key.as_bytes()),
        looks_like_flash: origin.is_some() && request.header("User-Agent").is_none(),
        origin,
        deflate: deflate
            .then(|| {
                let offers = request
                    .fields()
                    .filter(|(name, _)| name.eq_ignore_ascii_case("Sec-WebSocket-Extensions"));
                deflate::negotiate(offers.map(|(_, value)| value))
            })
            .flatten(),
        subject,
    })
}

/// The request's Origin, if it may come from there: none (not a browser), an Origin on the
/// host the client connected to, or one `allowed_origins` lists (`*`: any); 403 otherwise.
pub fn check_origin(
    request: &Request,
    allowed_origins: &[String],
) -> Result<Option<String>, Refusal> {
    let origin = request.header("Origin").map(str::to_string);
    if let Some(origin) = &origin
        && !origin_allowed(origin, request.header("Host"), allowed_origins)
    {
        return Err(Refusal::new(
            403,
            format!(
                "origin {origin} is not allowed: serve the page from this host, \
                 or let the server allow it (`allowed_origins`: {origin})"
            ),
        )
        .because(Reason::Origin));
    }
    Ok(origin)
}

/// The answer that completes the upgrade.
pub fn switching_protocols(upgrade: &Upgrade) -> String {
    let protocol = upgrade.protocol.as_ref().map_or(String::new(), |name| {
        format!("Sec-WebSocket-Protocol: {name}\r\n")
    });
    let extensions = upgrade.deflate.as_ref().map_or(String::new(), |answer| {
        format!("Sec-WebSocket-Extensions: {answer}\r\n")
    });
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{protocol}{extensions}\r\n",
        upgrade.accept_key
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_opened_from_a_file_is_refused_unless_null_is_allowed() {
        // A file:// page sends `Origin: null`, whatever the host.
        assert!(!origin_allowed("null", Some("localhost:8087"), &[]));
        assert!(origin_allowed(
            "null",
            Some("localhost:8087"),
            &["null".to_string()]
        ));
    }

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
    fn opening_tells_a_policy_request_from_an_http_head() {
        let mut partial_policy = b"<policy-file-".to_vec();
        assert!(matches!(parse_opening(&mut partial_policy), Ok(None)));
        let mut policy = b"<policy-file-request/>\0".to_vec();
        assert!(matches!(
            parse_opening(&mut policy),
            Ok(Some(Opening::PolicyRequest))
        ));
        let mut whole = b"GET /echo HTTP/1.1\r\nHost: h\r\n\r\nXY".to_vec();
        let Ok(Some(Opening::Http(request))) = parse_opening(&mut whole) else {
            panic!("expected a request");
        };
        assert_eq!(request.rest(), b"XY");
    }
}

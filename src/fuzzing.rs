//! Entry points for the fuzz targets (`fuzz/`, run by `make fuzz`) and for the replay of their
//! regression inputs (`tests/fuzz_regressions.rs`). Each takes any bytes at all, must return
//! without panicking or hanging, and asserts what must hold whatever a client sends.

use crate::net::http::{self, MAX_HEAD_LEN, Refusal};
use crate::ops::budget::{Budget, Holding};
use crate::page::server as page;
use crate::protocol::frame::Header;
use crate::protocol::handshake::{self, Opening};
use crate::protocol::reader::{Fault, Reader, Source};
use crate::protocol::routes::{Refused, Route, Routes};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tungstenite::error::ProtocolError;
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tungstenite::{Error, Message};

/// The first bytes a client sends on the WebSocket port, arriving in pieces (the first byte
/// sets their size): a policy request, an HTTP head, or a clear refusal, and never more than
/// a head's worth held while waiting.
pub fn opening(bytes: &[u8]) {
    let Some((&split, bytes)) = bytes.split_first() else {
        return;
    };
    let mut received = Vec::new();
    for piece in bytes.chunks(usize::from(split).max(1)) {
        received.extend_from_slice(piece);
        match handshake::parse_opening(&mut received) {
            Ok(None) => assert!(
                received.len() <= MAX_HEAD_LEN,
                "{} bytes held for an unfinished opening",
                received.len()
            ),
            Ok(Some(Opening::PolicyRequest)) => return,
            Ok(Some(Opening::Http(request))) => {
                let _ = (request.method(), request.target(), request.path());
                assert!(request.fields().count() <= 32);
                return;
            }
            Err(error) => {
                if let Some(refusal) = handshake::refusal_for(&error) {
                    assert_plain(&refusal);
                }
                return;
            }
        }
    }
}

/// A whole request head judged as an upgrade, by routes with a check, subprotocols and a
/// Host allow-list: accepted with a well-formed 101, or refused in one plain line.
pub fn upgrade(bytes: &[u8]) {
    let mut received = bytes.to_vec();
    let Ok(Some(request)) = http::parse_head(&mut received) else {
        return;
    };
    let routes = Routes::new()
        .route("/echo", |_: &mut crate::Connection| Ok(()))
        .route(
            "/game",
            Route::new(|_: &mut crate::Connection| Ok(()))
                .protocols(&["v2.game", "v1.game"])
                .require_protocol()
                .check(|upgrade| match upgrade.query_param("token") {
                    Some("secret") => Ok(()),
                    Some(_) => Err(Refused::forbidden("wrong token")),
                    None => Err(Refused::unauthorized("add ?token=")),
                }),
        );
    let peer: SocketAddr = ([127, 0, 0, 1], 40_000).into();
    let origins = ["http://allowed.test".to_string()];
    let hosts = ["localhost".to_string(), "127.0.0.1".to_string()];
    match handshake::check_upgrade(&request, peer, &routes, &origins, &hosts, true, None) {
        Ok(upgrade) => {
            let reply = handshake::switching_protocols(&upgrade);
            let head = reply
                .strip_suffix("\r\n\r\n")
                .expect("the 101 ends its head");
            for line in head.split("\r\n") {
                assert!(
                    !line.is_empty() && line.chars().all(|c| c == ' ' || c.is_ascii_graphic()),
                    "a 101 line carries raw client bytes: {line:?}"
                );
            }
        }
        Err(refusal) => assert_plain(&refusal),
    }
}

/// A URL path on the page port: whatever it names is a file inside the page folder, and
/// nothing hidden.
pub fn page_path(bytes: &[u8]) {
    let Ok(path) = std::str::from_utf8(bytes) else {
        return;
    };
    let root = page_root();
    if let Some(file) = page::resolve(&root, path) {
        let inside = file
            .strip_prefix(&root)
            .expect("a file outside the page folder");
        assert!(
            !inside
                .iter()
                .any(|part| part.as_encoded_bytes().starts_with(b".")),
            "a hidden file: {file:?}"
        );
    }
}

/// Raw client bytes after the handshake, read in pieces whose sizes come from the first
/// bytes (a 0 is a read that times out): the reader must make of them what tungstenite makes
/// of them read whole (the same messages, then the same kind of failure).
pub fn frames(bytes: &[u8]) {
    let Some((sizes, stream)) = read_sizes(bytes) else {
        return;
    };
    let max = 1 << 20;
    let tungstenite =
        as_the_reader_sees_it(replay(Replay::new(stream, vec![usize::MAX]), max), stream);
    let budget = Budget::new(usize::MAX);
    let reader = Reader::new(Holding::new(&budget), max, false);
    let ours = read_all(reader, Replay::new(stream, sizes));
    assert_eq!(tungstenite.0, ours.0, "different messages from the reader");
    // The reader checks a message's size at each frame's header: where the bytes stop
    // mid-frame, tungstenite sees only the end.
    let found_sooner = tungstenite.1 == ENDED && ends_mid_frame(stream);
    if !found_sooner {
        assert_eq!(tungstenite.1, ours.1, "a different failure from the reader");
    }
}

/// Raw client bytes after an upgrade that agreed permessage-deflate, read in pieces as in
/// `frames`: whatever comes, compressed or not, the reading ends (with messages, then a
/// failure) without a panic or a hang, no message is bigger than the limit, however small its
/// compressed form, and nothing stays held against the memory budget once the reader is gone.
pub fn inflated_frames(bytes: &[u8]) {
    let Some((sizes, stream)) = read_sizes(bytes) else {
        return;
    };
    // Small, so that a bomb reaches it soon.
    let max = 1 << 16;
    let budget = Budget::new(usize::MAX);
    let reader = Reader::new(Holding::new(&budget), max, true);
    let (messages, _) = read_all(reader, Replay::new(stream, sizes));
    for message in &messages {
        assert!(message.len() <= max, "a message of {} bytes", message.len());
    }
    assert_eq!(budget.in_use(), 0, "held after the connection is gone");
}

/// The read sizes the first four bytes give (7 times each; a 0 is a read that times out, and
/// four of them read a byte at a time), and the stream after them.
fn read_sizes(bytes: &[u8]) -> Option<(Vec<usize>, &[u8])> {
    let (sizes, stream) = bytes.split_at_checked(4)?;
    let mut sizes: Vec<usize> = sizes.iter().map(|&size| usize::from(size) * 7).collect();
    if sizes.iter().all(|&size| size == 0) {
        sizes = vec![1];
    }
    Some((sizes, stream))
}

/// Whether the last frame in `stream` is cut short.
fn ends_mid_frame(stream: &[u8]) -> bool {
    !whole_frames(stream).1.is_empty()
}

/// The whole frames `stream` begins with, each header with the frame's bytes, and what is left
/// after them (empty unless the last frame is cut short).
fn whole_frames(mut stream: &[u8]) -> (Vec<(Header, &[u8])>, &[u8]) {
    let mut frames = Vec::new();
    while let Some(header) = Header::parse(stream) {
        let end = (header.size as u64).saturating_add(header.payload);
        let Some(frame) = usize::try_from(end).ok().and_then(|end| stream.get(..end)) else {
            break;
        };
        frames.push((header, frame));
        stream = &stream[frame.len()..];
    }
    (frames, stream)
}

/// How reading ends: the client hangs up without a close frame.
const ENDED: &str = "ended";

fn assert_plain(refusal: &Refusal) {
    let mut out = Vec::new();
    refusal.write_to(&mut out).expect("written to memory");
    let text = String::from_utf8(out).expect("a refusal is UTF-8");
    for c in text.chars() {
        assert!(
            c == '\r' || c == '\n' || !c.is_control(),
            "a control character in a refusal: {text:?}"
        );
    }
    assert!(!refusal.message.contains(['\r', '\n']), "{refusal:?}");
}

fn page_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("www")
        .canonicalize()
        .expect("the page folder")
}

/// Messages tungstenite reads from `stream` until it fails, and what kind of failure.
fn replay(stream: impl Read + Write, max: usize) -> (Vec<Message>, String) {
    let config = WebSocketConfig::default()
        .read_buffer_size(1024)
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    let mut ws = WebSocket::from_raw_socket(stream, Role::Server, Some(config));
    let mut messages = Vec::new();
    // Bounded: every message takes at least two bytes of the input, and a read that times
    // out is followed by one that does not.
    let failure = loop {
        match ws.read() {
            Ok(message) => messages.push(message),
            Err(Error::Io(error)) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => break kind(&error),
        }
    };
    (messages, failure)
}

/// tungstenite hands over a close with a code the protocol forbids as a close (with that code,
/// or with its own 1002 reply in its place); the reader reports it as the protocol error it is.
fn as_the_reader_sees_it(
    (mut messages, mut failure): (Vec<Message>, String),
    stream: &[u8],
) -> (Vec<Message>, String) {
    let forbidden = first_close_code(stream).is_some_and(|code| {
        !tungstenite::protocol::frame::coding::CloseCode::from(code).is_allowed()
    });
    if forbidden && matches!(messages.last(), Some(Message::Close(Some(_)))) {
        messages.pop();
        failure = "protocol".to_string();
    }
    (messages, failure)
}

/// The code the first whole close frame in `stream` carries, unmasked, if it carries one.
fn first_close_code(stream: &[u8]) -> Option<u16> {
    let (frames, _) = whole_frames(stream);
    let (header, frame) = frames
        .into_iter()
        .find(|(header, _)| header.opcode == 0x8)?;
    let code = frame.get(header.size..header.size + 2)?;
    let key = header.mask.unwrap_or_default();
    Some(u16::from_be_bytes([code[0] ^ key[0], code[1] ^ key[1]]))
}

/// Messages the reader makes of `source` until it fails, and what kind of failure (as `kind`
/// names tungstenite's). Delivered messages are never released: they stay held, as they
/// would while the application had them.
pub(crate) fn read_all(mut reader: Reader, mut source: Replay) -> (Vec<Message>, String) {
    let mut messages = Vec::new();
    // Bounded as `replay` is.
    let failure = loop {
        match reader.next(&mut source) {
            Ok(message @ Message::Close(_)) => {
                messages.push(message);
                break "closed".to_string();
            }
            Ok(message) => messages.push(message),
            Err(Fault::Timeout) => {}
            Err(Fault::Ended) => break ENDED.to_string(),
            Err(Fault::Protocol(_)) => break "protocol".to_string(),
            Err(Fault::Utf8) => break "utf-8".to_string(),
            Err(Fault::TooBig { .. }) => break "capacity".to_string(),
            Err(Fault::OverBudget(_)) => break "budget".to_string(),
            Err(Fault::BadDeflate(_)) => break "deflate".to_string(),
            Err(Fault::Io(error)) => break format!("io {:?}", error.kind()),
            Err(Fault::Interrupted) => break "interrupted".to_string(),
            // The fuzzed readers have no rate limit.
            Err(Fault::RateLimit { .. }) => break "rate limit".to_string(),
        }
    };
    (messages, failure)
}

/// A failure's kind: where the same fault is found, its details may differ (an invalid UTF-8
/// sequence is seen in a smaller piece, a size limit by a later check).
fn kind(error: &Error) -> String {
    match error {
        Error::Io(error) => format!("io {:?}", error.kind()),
        Error::Capacity(_) => "capacity".to_string(),
        Error::Utf8(_) => "utf-8".to_string(),
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => ENDED.to_string(),
        Error::Protocol(_) => "protocol".to_string(),
        Error::ConnectionClosed | Error::AlreadyClosed => "closed".to_string(),
        other => other.to_string(),
    }
}

/// Bytes given in reads of the sizes listed, over and over (a 0 times out, the first time
/// round); writes go nowhere. Also the client of `reader.rs`'s unit tests.
pub(crate) struct Replay<'a> {
    bytes: &'a [u8],
    at: usize,
    sizes: Vec<usize>,
    turn: usize,
}

impl<'a> Replay<'a> {
    pub(crate) fn new(bytes: &'a [u8], sizes: Vec<usize>) -> Replay<'a> {
        Replay {
            bytes,
            at: 0,
            sizes,
            turn: 0,
        }
    }
}

impl Source for Replay<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Fault> {
        let mut size = self.sizes[self.turn % self.sizes.len()];
        self.turn += 1;
        if size == 0 {
            // A timeout, on the first round of sizes only: the same ones over and over would
            // starve a reader that needs more bytes, where time brings them in real life.
            if self.turn <= self.sizes.len() {
                return Err(Fault::Timeout);
            }
            size = 1;
        }
        let n = buf.len().min(size).min(self.bytes.len() - self.at);
        buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }

    /// On a turn of even size (not 0), up to that many bytes, as held in a buffer; on the
    /// others none, and the turn is left to the `read` that follows.
    fn take_held(&mut self, max: usize) -> &[u8] {
        let size = self.sizes[self.turn % self.sizes.len()];
        if size == 0 || size % 2 == 1 {
            return &[];
        }
        self.turn += 1;
        let from = self.at;
        self.at += max.min(size).min(self.bytes.len() - from);
        &self.bytes[from..self.at]
    }

    fn unread(&mut self, tail: &[u8]) {
        assert!(tail.len() <= self.at, "unread more than was read");
        assert_eq!(&self.bytes[self.at - tail.len()..self.at], tail);
        self.at -= tail.len();
    }
}

impl Read for Replay<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Source::read(self, buf).map_err(|_| io::ErrorKind::WouldBlock.into())
    }
}

impl Write for Replay<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Every input kept under `fuzz/regressions/` (the seeds, and each crash or hang `make fuzz`
/// ever found, once fixed) replayed through its fuzz target's checks, on the stable toolchain.
#[cfg(test)]
mod regressions {
    use std::path::Path;

    fn replay(target: &str, check: fn(&[u8])) {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/regressions")
            .join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&folder)
            .unwrap_or_else(|error| panic!("{}: {error}", folder.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "no inputs in {}", folder.display());
        for input in inputs {
            let bytes = std::fs::read(&input).unwrap();
            let replayed = std::panic::catch_unwind(|| check(&bytes));
            assert!(replayed.is_ok(), "{} fails again", input.display());
        }
    }

    #[test]
    fn openings() {
        replay("opening", super::opening);
    }

    #[test]
    fn upgrades() {
        replay("upgrade", super::upgrade);
    }

    #[test]
    fn page_paths() {
        replay("page_path", super::page_path);
    }

    #[test]
    fn frames() {
        replay("frames", super::frames);
    }

    #[test]
    fn inflated_frames() {
        replay("inflated_frames", super::inflated_frames);
    }
}

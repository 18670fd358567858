//! The answers our ports write: a response head, and the refusal that ends a connection
//! with one line of plain text saying what happened and what to do.

use crate::net::stream::{self, Stream};
use crate::ops::escape::escape;
use crate::ops::metrics::Reason;
use std::io::{self, IoSlice, Write};
use std::time::{Duration, Instant};

/// The status line and headers of an answer, up to and including the blank line.
pub fn response_head(
    status: u16,
    content_type: &str,
    content_length: u64,
    keep_alive: bool,
    extra_header: Option<&str>,
) -> String {
    let extra = extra_header.map_or(String::new(), |h| format!("{h}\r\n"));
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\n\
         Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nConnection: {}\r\n{extra}\r\n",
        reason_phrase(status),
        if keep_alive { "keep-alive" } else { "close" },
    )
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        421 => "Misdirected Request",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// After a refusal, how long and how much the client may still send us before we close: read
/// and thrown away into a fixed buffer, so that closing with unread bytes does not reset the
/// connection before the client has read the answer.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// An HTTP answer refusing a request; the connection closes after it.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    /// One line for the client and the log: what happened and what to do.
    pub message: String,
    /// Why, in a word, for `/metrics`.
    pub reason: Reason,
    extra_header: Option<&'static str>,
}

impl Refusal {
    /// `message` may quote the client (a path, an Origin): it is escaped here, for the client
    /// and the log alike.
    pub fn new(status: u16, message: impl Into<String>) -> Refusal {
        let message = message.into();
        Refusal {
            status,
            message: escape(&message).into_owned(),
            reason: Reason::of_status(status),
            extra_header: None,
        }
    }

    /// The same refusal, counted under `reason` instead of the status's.
    pub fn because(mut self, reason: Reason) -> Refusal {
        self.reason = reason;
        self
    }

    /// The same refusal with one more header line (`Name: value`).
    pub fn with_header(mut self, header: &'static str) -> Refusal {
        self.extra_header = Some(header);
        self
    }

    /// The whole answer: head and one-line body.
    fn to_bytes(&self) -> Vec<u8> {
        let body = format!("{}\n", self.message);
        let head = response_head(
            self.status,
            "text/plain; charset=utf-8",
            body.len() as u64,
            false,
            self.extra_header,
        );
        (head + &body).into_bytes()
    }

    /// Write the answer in one write; the caller closes the connection afterwards.
    pub fn write_to(&self, mut out: impl Write) -> io::Result<()> {
        out.write_all(&self.to_bytes())?;
        out.flush()
    }

    /// Write the answer, then close our side and let the client read it: whatever the client
    /// still sends is thrown away, up to `LINGER_BYTES` within `LINGER_TIME`.
    pub fn send_and_linger(&self, stream: &Stream) {
        let deadline = Instant::now() + LINGER_TIME;
        if self.write_to(stream).is_err() || stream.close_write(deadline).is_err() {
            return;
        }
        stream::discard_until(&mut &*stream, deadline, LINGER_BYTES);
    }

    /// Answer without ever blocking (from an accept thread, say): a fresh socket's send
    /// buffer is empty, and whatever the client already sent is read away so the close is a
    /// clean FIN.
    pub fn send_without_blocking(&self, stream: &Stream) {
        let _ = stream.send_now(&[IoSlice::new(&self.to_bytes())]);
        let _ = stream.flush_now();
        let mut sink = [0u8; 1024];
        for _ in 0..8 {
            if !matches!(stream.recv_now(&mut sink), Ok(n) if n > 0) {
                break;
            }
        }
    }
}

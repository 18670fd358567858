//! The stream modes (`stream`, `deflate`): one connection, 64 KiB messages, 16 in flight, on
//! one thread, counting echoes without keeping them: MB/s.

use super::{Options, frame, frame_head, open, open_with_head, process_cpu_seconds};
use crate::conn::{self, Conn};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

const STREAM_MESSAGE: usize = 64 * 1024;
const STREAM_IN_FLIGHT: usize = 16;
/// How many of the stream mode's messages one write may carry: a client that had to write each
/// message on its own (and often wake the server for it) spent more per message than wsecho,
/// and the figure measured the client.
const STREAM_BATCH: usize = 4;

pub fn stream(options: &Options, duration: Duration) -> io::Result<String> {
    let stream = open(options)?;
    let message = frame(0x2, &vec![0xa5; STREAM_MESSAGE]);
    let (echoed, secs) = stream_through(stream, &message, duration)?;
    let megabytes = (echoed * STREAM_MESSAGE as u64) as f64 / 1e6;
    Ok(format!(
        "messages={echoed} mb_per_s={:.1}",
        megabytes / secs
    ))
}

/// What the deflate mode offers. Without `client_max_window_bits` (which browsers add), no
/// server may ask for a smaller window than the 15 bits this client's compressor uses.
const DEFLATE_OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate\r\n";

pub fn deflate(options: &Options, duration: Duration) -> io::Result<String> {
    let request = String::from_utf8_lossy(&options.request).replacen(
        "\r\n\r\n",
        &format!("\r\n{DEFLATE_OFFER}\r\n"),
        1,
    );
    let offering = Options {
        request: request.into_bytes(),
        mode: options.mode.clone(),
        tls: options.tls.clone(),
        ..*options
    };
    let (stream, head) = open_with_head(&offering)?;
    if !head
        .to_ascii_lowercase()
        .contains("sec-websocket-extensions: permessage-deflate")
    {
        return Err(io::Error::other(
            "the server did not agree to permessage-deflate",
        ));
    }
    let text = compressible_text(STREAM_MESSAGE);
    let squeezed = compressed(text.as_bytes())?;
    let mut message = frame(0x1, &squeezed);
    message[0] |= 0x40; // RSV1: this message is compressed
    let cpu_before = options.pid.and_then(process_cpu_seconds);
    let (echoed, secs) = stream_through(stream, &message, duration)?;
    let megabytes = (echoed * STREAM_MESSAGE as u64) as f64 / 1e6;
    let cpu_per_mb = match (options.pid.and_then(process_cpu_seconds), cpu_before) {
        (Some(after), Some(before)) if megabytes > 0.0 => {
            format!(
                " server_cpu_ms_per_mb={:.2}",
                (after - before) * 1000.0 / megabytes
            )
        }
        _ => String::new(),
    };
    Ok(format!(
        "messages={echoed} mb_per_s={:.1} compressed_bytes={}{cpu_per_mb}",
        megabytes / secs,
        squeezed.len()
    ))
}

/// `len` bytes of text that compresses like chat or JSON traffic does (about 8 to 1).
fn compressible_text(len: usize) -> String {
    let mut text = String::with_capacity(len + 100);
    let mut id = 0u32;
    while text.len() < len {
        id += 1;
        text += &format!(
            "{{\"id\":{id},\"user\":\"user-{}\",\"text\":\"message {id} from the load client\"}}\n",
            id % 97
        );
    }
    text.truncate(len);
    text
}

/// `payload` as a permessage-deflate sender sends it: raw deflate, flushed, without the
/// `00 00 ff ff` the flush ends with.
fn compressed(payload: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(payload)?;
    encoder.flush()?;
    let mut out = encoder.finish()?;
    // finish() adds a final empty block after the flush's 00 00 ff ff: cut back to the flush.
    let end = out
        .windows(4)
        .rposition(|w| w == [0x00, 0x00, 0xff, 0xff])
        .ok_or_else(|| io::Error::other("no sync flush marker"))?;
    out.truncate(end);
    Ok(out)
}

/// Send `message` over and over, `STREAM_IN_FLIGHT` at a time and up to `STREAM_BATCH` in a
/// write, counting echoes (any data frame) for `duration`: (echoes, seconds).
///
/// One thread writes and reads, on a non-blocking socket. A reader and a writer thread, as
/// this client had, made three busy threads with the server's one on the bench host's two
/// cores, and which two the scheduler put together decided a round: wsecho's tls build
/// measured about 650 or 1,100 MB/s by that draw, 2026-12-07. One client thread and one server
/// thread each keep a core, and the server's work per message decides the figure.
fn stream_through(mut stream: Conn, message: &[u8], duration: Duration) -> io::Result<(u64, f64)> {
    stream.tcp().set_nonblocking(true)?;
    let mut counter = Counter::new();
    // The messages on their way out (sealed into records for wss), and how much of them left.
    let mut outgoing = Vec::with_capacity(STREAM_BATCH * (message.len() + 1024));
    let mut sent = 0;
    let (mut in_flight, mut echoed) = (0usize, 0u64);
    let start = Instant::now();
    let end = start + duration;
    while Instant::now() < end {
        if sent == outgoing.len() {
            // The last batch has left: the next takes as many as may be in flight, up to
            // STREAM_BATCH.
            outgoing.clear();
            sent = 0;
            while outgoing.len() < STREAM_BATCH * message.len() && in_flight < STREAM_IN_FLIGHT {
                stream.seal_into(message, &mut outgoing)?;
                in_flight += 1;
            }
        }
        let mut moved = false;
        if sent < outgoing.len() {
            match stream.tcp().write(&outgoing[sent..]) {
                Ok(n) => {
                    sent += n;
                    moved = n > 0;
                }
                Err(e) if would_wait(&e) => {}
                Err(e) => return Err(e),
            }
        }
        match counter.pull(&mut stream) {
            Ok(echoes) => {
                echoed += echoes as u64;
                in_flight = in_flight.saturating_sub(echoes);
                moved = true;
            }
            Err(e) if would_wait(&e) => {}
            Err(e) => return Err(e),
        }
        if !moved && !stream.has_buffered() {
            let writing = if sent < outgoing.len() {
                libc::POLLOUT
            } else {
                0
            };
            conn::wait_for(
                stream.tcp(),
                libc::POLLIN | writing,
                Duration::from_millis(100),
            )?;
        }
    }
    Ok((echoed, start.elapsed().as_secs_f64()))
}

fn would_wait(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Counts the data frames a socket gives without keeping them: the stream modes' reader, where
/// copying every 64 KiB reply (as `Inbox` does) would make this client the bottleneck rather
/// than the server. Reads big, skips payloads where they lie.
struct Counter {
    buf: Vec<u8>,
    /// A frame header arriving in pieces.
    head: Vec<u8>,
    /// Payload bytes of the current frame still to come, and whether it is a data frame.
    skip: u64,
    data: bool,
}

impl Counter {
    fn new() -> Counter {
        Counter {
            buf: vec![0; 256 * 1024],
            head: Vec::with_capacity(14),
            skip: 0,
            data: false,
        }
    }

    /// Read what the socket has; the number of data frames it completed.
    fn pull(&mut self, stream: &mut Conn) -> io::Result<usize> {
        let n = match stream.read(&mut self.buf)? {
            0 => return Err(io::Error::other("the server closed the connection")),
            n => n,
        };
        let (mut at, mut frames) = (0, 0);
        while at < n {
            if self.skip > 0 {
                let taken = self.skip.min((n - at) as u64);
                self.skip -= taken;
                at += taken as usize;
                frames += usize::from(self.skip == 0 && self.data);
                continue;
            }
            self.head.push(self.buf[at]);
            at += 1;
            let Some((opcode, size, payload)) = frame_head(&self.head) else {
                continue;
            };
            if self.head.len() < size {
                continue;
            }
            if opcode == 0x8 {
                return Err(io::Error::other("the server sent a close frame"));
            }
            self.head.clear();
            self.data = opcode == 0x1 || opcode == 0x2;
            self.skip = payload;
            frames += usize::from(payload == 0 && self.data);
        }
        Ok(frames)
    }
}

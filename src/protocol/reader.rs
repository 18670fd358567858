//! The client's frames made into messages: the one reader every connection's bytes go through,
//! plain or compressed, small or big, in one frame or many.
//!
//! - **Checked as RFC 6455 says**, each fault typed by the close code it calls for
//!   ([`Fault`]): a protocol error (1002), text that is not UTF-8 or data that does not
//!   inflate (1007), a message over the size limit (1009), no room in the memory budget (1013).
//! - **Counted against the memory budget as each frame's header arrives**, before its payload
//!   is read; what a message holds is given back once the application is done with it
//!   (`release_delivered`), or when the connection ends.
//! - **Read with as few copies and system calls as it can**: a small message that arrives
//!   whole is made from one read (512 bytes on the stack); a bigger one is read straight into
//!   its own buffer, or, while data streams in, appended from the socket's spill buffer
//!   (`Source::take_held`), unmasked as it is copied, with no zeroed room made for it first
//!   (`wsload stream`: 12% less server CPU per 64 KiB message than zeroing it); a compressed
//!   one (permessage-deflate) is inflated straight into its message as its frames arrive,
//!   with the `00 00 ff ff` the sender took off put back at the end.
//! - **Resumable**: a read that times out (the keepalive tick) or is interrupted (a `Sender`
//!   needs the thread) leaves everything in place, and the next call goes on from there.

use crate::ops::budget::{Budget, Holding};
use crate::protocol::deflate::TAIL;
pub use crate::protocol::fault::{Fault, OverBudget};
use crate::protocol::frame::{
    self, BINARY, CLOSE, CONTINUATION, Header, MAX_CONTROL, PING, PONG, RSV1, TEXT,
};
use crate::protocol::inflate::{INFLATING_BYTES, Inflater};
use crate::protocol::rate_limit::RateLimit;
use assembling::{Assembling, COMPRESSED_READ, check_utf8, inflate};
use tungstenite::Message;

mod assembling;

/// The most a header read takes: a small message must arrive whole within it to be made from
/// that one read.
const DIRECT_READ: usize = 512;

/// Where the client's bytes come from, able to take back the end of what it gave last.
pub trait Source {
    /// Like `Read::read` (0 at the end of the stream), with the socket's conditions typed.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Fault>;
    /// Give `tail`, the last bytes of the latest `read`, again on the next one.
    fn unread(&mut self, tail: &[u8]);
    /// Up to `max` bytes the source holds in a buffer of its own (or takes into one now,
    /// without waiting), taken as a `read` would take them: the reader copies them into the
    /// message itself. Empty when a `read` straight into the message is better (the source
    /// holds nothing, and what comes next is big or must be waited for).
    fn take_held(&mut self, _max: usize) -> &[u8] {
        &[]
    }
}

/// The frame being read: its header is in, its payload still coming.
struct InFrame {
    opcode: u8,
    fin: bool,
    /// Payload bytes still to read.
    rest: u64,
    /// The mask key, turned to the next byte to read.
    key: [u8; 4],
}

/// Messages from a client's frames; see the module docs.
pub struct Reader {
    max_message_size: usize,
    holding: Holding,
    /// permessage-deflate was agreed at the upgrade.
    deflate: bool,
    frame: Option<InFrame>,
    message: Option<Assembling>,
    /// The payload of the control frame under way (at most 125 bytes).
    control: Vec<u8>,
    /// Compressed bytes of the current frame, read and waiting to be inflated.
    compressed: Vec<u8>,
    /// Bytes of messages handed to the application and still held for it: it may be echoing
    /// them (see `hold_for_writing`).
    handed_over: usize,
    /// A fault ended the reading: nothing more is read.
    broken: bool,
    /// The client's message rate limit, if one is set: checked as each message is made, before
    /// it exists, so that a connection without one pays a single test (boxed: a bigger reader
    /// cost the echo path a few instructions more).
    rate_limit: Option<Box<RateLimit>>,
}

impl Reader {
    /// `deflate`: permessage-deflate was agreed at the upgrade.
    pub fn new(holding: Holding, max_message_size: usize, deflate: bool) -> Reader {
        Reader {
            max_message_size,
            holding,
            deflate,
            frame: None,
            message: None,
            control: Vec::new(),
            compressed: Vec::new(),
            handed_over: 0,
            broken: false,
            rate_limit: None,
        }
    }

    /// Let the client send at most `per_second` messages a second (a burst of as many at
    /// once); the next one is `Fault::RateLimit`.
    pub fn limit_rate(&mut self, per_second: u32) {
        self.rate_limit = Some(Box::new(RateLimit::new(
            per_second,
            std::time::Instant::now(),
        )));
    }

    /// Whether the client may send one more message now (counting it). Out of line: a
    /// connection without a limit never calls it.
    #[cold]
    #[inline(never)]
    fn over_rate(&mut self) -> Option<Fault> {
        let limit = self.rate_limit.as_mut()?;
        let per_second = limit.per_second();
        (!limit.allow()).then_some(Fault::RateLimit { per_second })
    }

    /// The memory budget this connection's messages are held against.
    pub fn budget(&self) -> &std::sync::Arc<Budget> {
        self.holding.budget()
    }

    /// permessage-deflate was agreed at the upgrade.
    pub fn deflate(&self) -> bool {
        self.deflate
    }

    /// The application has finished with the messages it was handed (it asks for the next).
    pub fn release_delivered(&mut self) {
        self.holding.shrink(std::mem::take(&mut self.handed_over));
    }

    /// Hold `bytes` of an outgoing message while it is written: taken over from a message
    /// handed over (an echo holds no more than the message it answers), the rest from the
    /// budget. False if the budget has no room.
    pub fn hold_for_writing(&mut self, bytes: usize) -> bool {
        let reused = self.handed_over.min(bytes);
        if !self.holding.grow(bytes - reused) {
            return false;
        }
        self.handed_over -= reused;
        true
    }

    /// An outgoing message held by `hold_for_writing` is written (or given up).
    pub fn written(&mut self, bytes: usize) {
        self.holding.shrink(bytes);
    }

    /// The next message or control frame. Text and binary messages stay held against the
    /// budget until `release_delivered`.
    pub fn next(&mut self, source: &mut impl Source) -> Result<Message, Fault> {
        if self.broken {
            return Err(Fault::Ended);
        }
        let next = self.read_on(source);
        if let Err(fault) = &next
            && !matches!(fault, Fault::Timeout | Fault::Interrupted)
        {
            // What the message under way holds stays held until the connection is gone (its
            // close takes a moment): a client refused for want of room must not make room
            // for more of its own kind meanwhile.
            self.broken = true;
        }
        next
    }

    fn read_on(&mut self, source: &mut impl Source) -> Result<Message, Fault> {
        loop {
            if self.frame.is_none() {
                let mut buf = [0u8; DIRECT_READ];
                let (header, end) = read_header(source, &mut buf)?;
                if let Some(message) = self.whole_message(&header, &buf[..end], source)? {
                    return Ok(message);
                }
                self.begin_frame(&header)?;
                let at = header.size;
                let n = (self.frame_rest() as usize).min(end - at);
                if n > 0 {
                    self.payload_in_header_read(&mut buf[at..at + n])?;
                }
                source.unread(&buf[at + n..end]);
            }
            while self.frame_rest() > 0 {
                if self.appends() {
                    let held = source.take_held(self.frame_rest() as usize);
                    if !held.is_empty() {
                        self.append_payload(held);
                        continue;
                    }
                }
                let n = source.read(self.payload_target())?;
                if n == 0 {
                    return Err(Fault::Ended);
                }
                self.payload_arrived(n)?;
            }
            if let Some(message) = self.end_frame()? {
                return Ok(message);
            }
        }
    }

    /// If the frame at the start of `read` is a whole message in itself, uncompressed and
    /// within the limit (nearly every message is), the message, made from this one read.
    fn whole_message(
        &mut self,
        header: &Header,
        read: &[u8],
        source: &mut impl Source,
    ) -> Result<Option<Message>, Fault> {
        let one_frame = header.fin
            && header.rsv == 0
            && matches!(header.opcode, TEXT | BINARY)
            && self.message.is_none()
            && header.payload <= self.max_message_size as u64;
        let (Some(key), true) = (header.mask, one_frame) else {
            return Ok(None);
        };
        let end = header.size as u64 + header.payload;
        if end > read.len() as u64 {
            return Ok(None);
        }
        let end = end as usize;
        if self.rate_limit.is_some()
            && let Some(fault) = self.over_rate()
        {
            return Err(fault);
        }
        let mut payload = read[header.size..end].to_vec();
        let len = payload.len();
        frame::unmask(&mut payload, key);
        // Made here rather than through a helper shared with `end_frame`: that helper cost
        // this path about 50 instructions per message (callgrind, tests/bench/instructions.py).
        let message = match header.opcode {
            TEXT => Message::text(String::from_utf8(payload).map_err(|_| Fault::Utf8)?),
            _ => Message::binary(payload),
        };
        if !self.holding.grow(len) {
            return Err(self.over_budget(header.payload));
        }
        self.handed_over += len;
        source.unread(&read[end..]);
        Ok(Some(message))
    }

    /// Check a new frame's header as RFC 6455 says (in the order tungstenite checks, so that
    /// the differential fuzz target sees the same faults), hold its payload against the
    /// budget, and set up its reading.
    fn begin_frame(&mut self, header: &Header) -> Result<(), Fault> {
        if matches!(header.opcode, 0x3..=0x7 | 0xb..=0xf) {
            return Err(Fault::Protocol("unknown opcode"));
        }
        if header.payload > self.max_message_size as u64 {
            return Err(self.too_big());
        }
        let compressed_start = self.deflate
            && header.rsv == RSV1
            && matches!(header.opcode, TEXT | BINARY)
            && self.message.is_none();
        if header.rsv != 0 && !compressed_start {
            return Err(Fault::Protocol("reserved bits set"));
        }
        let Some(key) = header.mask else {
            return Err(Fault::Protocol("unmasked frame from a client"));
        };
        if header.is_control() {
            if !header.fin {
                return Err(Fault::Protocol("fragmented control frame"));
            }
            if header.payload > MAX_CONTROL as u64 {
                return Err(Fault::Protocol("control frame over 125 bytes"));
            }
            self.control.clear();
            self.control.resize(header.payload as usize, 0);
        } else {
            match (header.opcode, &self.message) {
                (CONTINUATION, None) => {
                    return Err(Fault::Protocol(
                        "continuation frame with no message to continue",
                    ));
                }
                (TEXT | BINARY, Some(_)) => {
                    return Err(Fault::Protocol("new message before the last one ended"));
                }
                _ => {}
            }
            if header.opcode != CONTINUATION {
                self.message = Some(self.begin_message(header.opcode, compressed_start)?);
            }
            self.begin_data(header.payload)?;
        }
        self.frame = Some(InFrame {
            opcode: header.opcode,
            fin: header.fin,
            rest: header.payload,
            key,
        });
        Ok(())
    }

    /// A new data message; a compressed one takes an inflater, held against the budget.
    fn begin_message(&mut self, opcode: u8, compressed: bool) -> Result<Assembling, Fault> {
        let mut message = Assembling {
            opcode,
            data: Vec::new(),
            end: 0,
            checked: 0,
            inflater: None,
            held: 0,
        };
        if compressed {
            if !self.holding.grow(INFLATING_BYTES) {
                return Err(self.over_budget(0));
            }
            message.held = INFLATING_BYTES;
            message.inflater = Some(Inflater::new());
        }
        Ok(message)
    }

    /// A data frame of `payload` bytes begins: an uncompressed one is checked against the
    /// size limit and held against the budget now (its bytes are appended as they arrive).
    fn begin_data(&mut self, payload: u64) -> Result<(), Fault> {
        let Some(message) = &mut self.message else {
            return Ok(());
        };
        if message.inflater.is_some() {
            return Ok(());
        }
        let total = message.data.len() as u64 + payload;
        if total > self.max_message_size as u64 {
            return Err(self.too_big());
        }
        if !self.holding.grow(payload as usize) {
            return Err(self.over_budget(total));
        }
        message.held += payload as usize;
        message.end = total as usize;
        Ok(())
    }

    fn frame_rest(&self) -> u64 {
        self.frame.as_ref().map_or(0, |frame| frame.rest)
    }

    /// Where the current frame's next payload bytes go: the control frame's payload, the
    /// message's bytes, or (compressed) the input to inflate.
    fn payload_target(&mut self) -> &mut [u8] {
        let Some(frame) = &self.frame else {
            return &mut [];
        };
        let rest = frame.rest as usize;
        if frame.opcode >= CLOSE {
            let len = self.control.len();
            return &mut self.control[len - rest..];
        }
        let Some(message) = &mut self.message else {
            return &mut [];
        };
        match message.inflater {
            Some(_) => {
                self.compressed.resize(rest.min(COMPRESSED_READ), 0);
                &mut self.compressed
            }
            None => {
                // Zeroed once per frame, only for reads straight from the socket.
                message.data.resize(message.end, 0);
                &mut message.data[message.end - rest..]
            }
        }
    }

    /// `n` bytes were put at the start of `payload_target`: unmask them, and inflate them if
    /// compressed.
    fn payload_arrived(&mut self, n: usize) -> Result<(), Fault> {
        if self.inflating() {
            let mut compressed = std::mem::take(&mut self.compressed);
            let arrived = self.compressed_arrived(&mut compressed[..n]);
            self.compressed = compressed;
            return arrived;
        }
        let Some(frame) = &mut self.frame else {
            return Ok(());
        };
        let start = frame.rest as usize;
        let key = frame.key;
        frame.key.rotate_left(n % 4);
        frame.rest -= n as u64;
        if frame.opcode >= CLOSE {
            let at = self.control.len() - start;
            frame::unmask(&mut self.control[at..at + n], key);
            return Ok(());
        }
        let Some(message) = &mut self.message else {
            return Ok(());
        };
        let at = message.end - start;
        frame::unmask(&mut message.data[at..at + n], key);
        Ok(())
    }

    /// `bytes`, the first of the frame's payload, came in the read that brought its header.
    fn payload_in_header_read(&mut self, bytes: &mut [u8]) -> Result<(), Fault> {
        if self.inflating() {
            // Inflated from here: no buffer for the compressed bytes is made.
            return self.compressed_arrived(bytes);
        }
        if self.appends() {
            self.append_payload(bytes);
            return Ok(());
        }
        self.payload_target()[..bytes.len()].copy_from_slice(bytes);
        self.payload_arrived(bytes.len())
    }

    /// The current frame's payload is appended to the message as it comes (see `append_payload`):
    /// a data frame, not compressed.
    fn appends(&self) -> bool {
        self.data_compressed() == Some(false)
    }

    /// For a data frame of the message under way, whether that message is compressed.
    fn data_compressed(&self) -> Option<bool> {
        self.frame.as_ref().filter(|frame| frame.opcode < CLOSE)?;
        Some(self.message.as_ref()?.inflater.is_some())
    }

    /// `bytes`, the current frame's next payload bytes (`appends`), arrived in someone else's
    /// buffer: into the message, unmasked as they are copied.
    fn append_payload(&mut self, bytes: &[u8]) {
        let (Some(frame), Some(message)) = (&mut self.frame, &mut self.message) else {
            return;
        };
        // Room a read straight from the socket made and did not fill goes first.
        message.data.truncate(message.end - frame.rest as usize);
        // Room for the rest of the frame at its first bytes (held against the budget since
        // `begin_data`): a 64 KiB frame read from the spill buffer in pieces was moved to a
        // bigger block at each piece. Amortised, so a message of many small frames is not.
        message.data.reserve(frame.rest as usize);
        frame::unmask_onto(&mut message.data, bytes, frame.key);
        frame.key.rotate_left(bytes.len() % 4);
        frame.rest -= bytes.len() as u64;
    }

    /// The current frame is part of a compressed message.
    fn inflating(&self) -> bool {
        self.data_compressed() == Some(true)
    }

    /// `input`, the current frame's next payload bytes in a compressed message, arrived:
    /// unmask and inflate them.
    fn compressed_arrived(&mut self, input: &mut [u8]) -> Result<(), Fault> {
        let (Some(frame), Some(message)) = (&mut self.frame, &mut self.message) else {
            return Ok(());
        };
        frame::unmask(input, frame.key);
        frame.key.rotate_left(input.len() % 4);
        frame.rest -= input.len() as u64;
        inflate(message, input, &mut self.holding, self.max_message_size)
    }

    /// The current frame's payload is all in: a control frame is the next item; the last
    /// frame of a message makes it whole.
    fn end_frame(&mut self) -> Result<Option<Message>, Fault> {
        let Some(frame) = self.frame.take() else {
            return Ok(None);
        };
        match frame.opcode {
            PING => return Ok(Some(Message::Ping(self.control.clone().into()))),
            PONG => return Ok(Some(Message::Pong(self.control.clone().into()))),
            CLOSE => {
                return frame::parse_close(&self.control).map(|close| Some(Message::Close(close)));
            }
            _ => {}
        }
        let Some(message) = &mut self.message else {
            return Ok(None);
        };
        if !frame.fin {
            check_utf8(message)?;
            return Ok(None);
        }
        // A compressed message: all the input is in. The tail the sender took off goes in,
        // then whatever the inflater still holds comes out; the data must end there.
        inflate(message, &TAIL, &mut self.holding, self.max_message_size)?;
        if let Some(inflater) = &message.inflater {
            inflater.finish().map_err(Fault::BadDeflate)?;
        }
        let Some(message) = self.message.take() else {
            return Ok(None);
        };
        let mut held = message.held;
        if message.inflater.is_some() {
            self.holding.shrink(INFLATING_BYTES);
            held -= INFLATING_BYTES;
            // No compressed bytes are kept between messages.
            self.compressed = Vec::new();
        }
        if self.rate_limit.is_some()
            && let Some(fault) = self.over_rate()
        {
            self.holding.shrink(held);
            return Err(fault);
        }
        let whole = match message.opcode {
            TEXT => String::from_utf8(message.data).map(Message::text),
            _ => Ok(Message::binary(message.data)),
        };
        let Ok(whole) = whole else {
            self.holding.shrink(held);
            return Err(Fault::Utf8);
        };
        self.handed_over += held;
        Ok(Some(whole))
    }

    fn too_big(&self) -> Fault {
        Fault::TooBig {
            limit: self.max_message_size,
        }
    }

    fn over_budget(&self, message_bytes: u64) -> Fault {
        Fault::OverBudget(OverBudget::now(message_bytes, self.holding.budget()))
    }
}

/// Read until a whole frame header is in `buf`; the header and how many bytes were read. A
/// failed read gives back what was read so far, for the next call.
fn read_header(source: &mut impl Source, buf: &mut [u8]) -> Result<(Header, usize), Fault> {
    let mut end = 0;
    loop {
        if let Some(header) = Header::parse(&buf[..end]) {
            return Ok((header, end));
        }
        match source.read(&mut buf[end..]) {
            Ok(0) => return Err(Fault::Ended),
            Ok(n) => end += n,
            Err(fault) => {
                source.unread(&buf[..end]);
                return Err(fault);
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! The client's frames on their way to tungstenite: every data frame's bytes are taken from the
//! memory budget as soon as its header arrives, and big frames are handed over cut into pieces.
//!
//! Why cut: tungstenite makes room for a whole frame in its read buffer before reading it, and
//! that buffer keeps its size for the rest of the connection. One 15 MiB frame would leave an
//! idle connection holding 15 MiB. Cut into `PIECE`-sized fragments of the same message
//! (same opcode first, then continuations; the mask key rotated to each piece's offset, so the
//! payload passes untouched), no frame tungstenite sees is bigger than a piece; it joins them
//! into the message as it would join the client's own fragments, checking UTF-8 and the size
//! limit on the way.
//!
//! Only well-formed data frames within `--max-message-size` are counted or cut. Anything else
//! (control frames, reserved bits or opcodes, unmasked frames, frames over the limit) passes
//! through untouched, for tungstenite to answer as the protocol says.
//!
//! Messages that come in one frame (nearly all do) skip tungstenite: between messages,
//! `read_direct` reads the next frame itself, and when it is a whole data frame makes it the
//! message there and then: a small one from the read at hand (valid UTF-8 if text), a bigger one
//! read on straight into its own buffer. Anything else is put back for tungstenite.
//! To make "between messages" knowable, tungstenite is handed one frame at most per read.
//!
//! Compressed messages (permessage-deflate, once negotiated) are inflated here too: tungstenite
//! knows no extensions and refuses RSV1. A message whose first frame has RSV1 is read frame by
//! frame, unmasked, inflated (with the `00 00 ff ff` the sender took off put back at its end)
//! and handed over as plain fragments of at most `PIECE`, masked with a zero key. tungstenite
//! still checks their UTF-8 and the size limit as they come, so a zip bomb stops at the limit,
//! and answers control frames between them. RSV1 anywhere else passes untouched, for
//! tungstenite to refuse (1002); data that does not inflate fails the read with `BadDeflate`.

use crate::ops::budget::{Budget, Holding};
use crate::protocol::deflate::{self, INFLATING_BYTES, Inflater, TAIL};
use std::fmt;
use std::io;
use tungstenite::Message;
use tungstenite::error::ProtocolError;

/// The biggest frame tungstenite is handed.
pub const PIECE: usize = 16 * 1024;

/// The longest frame header: 2 bytes, 8 of extended length, 4 of mask key.
pub const MAX_HEADER: usize = 14;

/// The most `read_direct` reads: a message must arrive whole within it to be read that way.
const DIRECT_READ: usize = 512;

/// Where the client's raw bytes come from, able to take back the end of what it gave last.
pub trait Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Give `tail`, the last bytes of the latest `read`, again on the next one.
    fn unread(&mut self, tail: &[u8]);
}

/// A message the budget has no room for: the connection is closed with 1013.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverBudget {
    /// The message's size so far, with the frame that did not fit.
    pub message_bytes: u64,
    /// What every connection together held at the time.
    pub in_use: usize,
    pub limit: usize,
}

impl OverBudget {
    /// A message of `message_bytes` that `budget` has no room for now.
    pub fn now(message_bytes: u64, budget: &Budget) -> OverBudget {
        OverBudget {
            message_bytes,
            in_use: budget.in_use(),
            limit: budget.limit(),
        }
    }
}

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a message of {} bytes does not fit in the server's memory budget now ({} of {} bytes in use)",
            self.message_bytes, self.in_use, self.limit
        )
    }
}

impl std::error::Error for OverBudget {}

/// The budget refusal inside an I/O error, if that is what it is.
pub fn over_budget(error: &io::Error) -> Option<&OverBudget> {
    error.get_ref()?.downcast_ref::<OverBudget>()
}

/// A frame header as the client sent it (or as the server sends one: `reply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Bytes of the header itself.
    pub size: usize,
    pub payload: u64,
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
}

impl Header {
    /// The header at the start of `bytes`, or `None` while it is incomplete.
    pub fn parse(bytes: &[u8]) -> Option<Header> {
        let (&first, &second) = (bytes.first()?, bytes.get(1)?);
        let extended = match second & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let masked = second & 0x80 != 0;
        let size = 2 + extended + if masked { 4 } else { 0 };
        let header = bytes.get(..size)?;
        let payload = match extended {
            0 => u64::from(second & 0x7f),
            _ => header[2..2 + extended]
                .iter()
                .fold(0, |length, &byte| (length << 8) | u64::from(byte)),
        };
        let mask = masked.then(|| {
            let key = &header[size - 4..];
            [key[0], key[1], key[2], key[3]]
        });
        Some(Header {
            size,
            payload,
            fin: first & 0x80 != 0,
            rsv: first & 0x70,
            opcode: first & 0x0f,
            mask,
        })
    }

    fn is_data(&self) -> bool {
        self.opcode <= 2
    }

    /// The header of a whole message the server sends: FIN, no mask, RSV1 when `compressed`.
    pub fn reply(opcode: u8, compressed: bool, payload: u64) -> Header {
        Header {
            size: 0,
            payload,
            fin: true,
            rsv: if compressed { 0x40 } else { 0 },
            opcode,
            mask: None,
        }
    }

    /// Encode into `out`, with the shortest length form; returns the length used.
    pub fn write(&self, out: &mut [u8; MAX_HEADER]) -> usize {
        out[0] = u8::from(self.fin) << 7 | self.rsv | self.opcode;
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = match self.payload {
            0..=125 => {
                out[1] = mask_bit | self.payload as u8;
                2
            }
            126..=0xffff => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(self.payload as u16).to_be_bytes());
                4
            }
            _ => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&self.payload.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        at
    }
}

/// Whether tungstenite, after this read, holds no bytes of a frame, so `read_direct` may read
/// the next message: it returned a message, and not the close (which ends the reading).
pub(crate) fn leaves_tungstenite_idle(read: &tungstenite::Result<Message>) -> bool {
    matches!(
        read,
        Ok(Message::Text(_) | Message::Binary(_) | Message::Ping(_) | Message::Pong(_))
    )
}

/// XOR `payload` with the client's mask `key` (the payload starts at offset 0), eight bytes
/// at a time.
fn unmask(payload: &mut [u8], key: [u8; 4]) {
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = payload.chunks_exact_mut(8);
    for chunk in &mut words {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (byte, key) in words.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= key;
    }
}

/// A data frame's payload, unmasked, as the message it is (text must be UTF-8).
#[inline]
fn into_message(
    opcode: u8,
    mut payload: Vec<u8>,
    key: [u8; 4],
) -> Result<Message, std::string::FromUtf8Error> {
    unmask(&mut payload, key);
    Ok(match opcode {
        1 => Message::text(String::from_utf8(payload)?),
        _ => Message::binary(payload),
    })
}

/// A one-frame message being read straight into its bytes, masked until whole.
struct Partial {
    opcode: u8,
    key: [u8; 4],
    /// The payload, `filled` bytes of it read so far.
    bytes: Vec<u8>,
    filled: usize,
}

/// How much of a compressed frame is read from the source at a time.
const COMPRESSED_READ: usize = 8 * 1024;

/// A compressed message on its way: its frames' payloads inflated into `output`, one fragment
/// at a time, each handed over behind a header of its own.
struct Inflating {
    inflater: Inflater,
    /// The opcode of the message's first fragment until that is handed over, then 0.
    opcode: u8,
    /// Compressed bytes of the current frame still to read from the source.
    frame_rest: u64,
    /// The current frame's mask key, turned to the next byte to read.
    mask: [u8; 4],
    /// The current frame is the message's last.
    last_frame: bool,
    /// `TAIL` has been put after the last frame's bytes.
    tail_added: bool,
    /// Compressed bytes read and unmasked; from `input_at` on, not yet inflated.
    input: Vec<u8>,
    input_at: usize,
    /// The fragment being filled, then handed over from `output_at` on.
    output: Vec<u8>,
    output_at: usize,
    /// `output` is a whole fragment, its header set: being handed over.
    handing: bool,
    /// The fragment in `output` is the message's last.
    finished: bool,
}

/// What `Inflating::fill` came to.
enum Filled {
    /// A fragment is ready in `output`.
    Fragment,
    /// The current frame is all inflated and gave nothing to hand over yet: the message goes on
    /// in the client's next frame.
    Nothing,
    /// The stream ended in the middle of a frame.
    Ended,
}

impl Inflating {
    /// `None` if no inflater could be had.
    fn new(opcode: u8, payload: u64, mask: [u8; 4], fin: bool) -> Option<Box<Inflating>> {
        Some(Box::new(Inflating {
            inflater: Inflater::take()?,
            opcode,
            frame_rest: payload,
            mask,
            last_frame: fin,
            tail_added: false,
            input: Vec::new(),
            input_at: 0,
            output: Vec::with_capacity(PIECE),
            output_at: 0,
            handing: false,
            finished: false,
        }))
    }

    /// The message's next frame (a continuation) begins.
    fn next_frame(&mut self, payload: u64, mask: [u8; 4], fin: bool) {
        self.frame_rest = payload;
        self.mask = mask;
        self.last_frame = fin;
    }

    /// Done with the current frame, nothing on hand: the next one comes from the client.
    fn wants_frame(&self) -> bool {
        !self.handing
            && !self.last_frame
            && self.frame_rest == 0
            && self.input_at == self.input.len()
            && self.output.is_empty()
    }

    /// Fill `output` with the next fragment (at most `PIECE`), reading the current frame as
    /// needed. A read that fails (a timeout) leaves everything in place to go on from.
    fn fill(&mut self, source: &mut impl Source) -> io::Result<Filled> {
        loop {
            if self.output.len() >= PIECE {
                return Ok(Filled::Fragment);
            }
            if self.input_at < self.input.len() {
                let room = self.output.len();
                let used = self
                    .inflater
                    .inflate(&self.input[self.input_at..], &mut self.output)
                    .map_err(io::Error::other)?;
                if used == 0 && self.output.len() == room {
                    // Cannot happen with input and room on hand; never spin if it does.
                    let stuck = deflate::BadDeflate::stuck();
                    return Err(io::Error::other(stuck));
                }
                self.input_at += used;
                continue;
            }
            if self.frame_rest > 0 {
                if !self.read_input(source)? {
                    return Ok(Filled::Ended);
                }
                continue;
            }
            if !self.last_frame {
                // The first fragment goes over even empty: tungstenite must know a message
                // has begun, to refuse a new one before its end.
                let first = self.opcode != 0;
                return Ok(if first || !self.output.is_empty() {
                    Filled::Fragment
                } else {
                    Filled::Nothing
                });
            }
            if !self.tail_added {
                self.tail_added = true;
                self.input.clear();
                self.input.extend_from_slice(&TAIL);
                self.input_at = 0;
                continue;
            }
            // All the input is in: what the inflater still holds comes out, then the end.
            let before = self.output.len();
            self.inflater
                .inflate(&[], &mut self.output)
                .map_err(io::Error::other)?;
            if self.output.len() == before {
                self.finished = true;
                return Ok(Filled::Fragment);
            }
        }
    }

    /// Read the next compressed bytes of the current frame, unmasked; false at the stream's end.
    fn read_input(&mut self, source: &mut impl Source) -> io::Result<bool> {
        let want = self.frame_rest.min(COMPRESSED_READ as u64) as usize;
        self.input.clear();
        self.input.resize(want, 0);
        self.input_at = 0;
        let n = match source.read(&mut self.input) {
            Ok(n) => n,
            Err(error) => {
                self.input.clear();
                return Err(error);
            }
        };
        self.input.truncate(n);
        unmask(&mut self.input, self.mask);
        self.mask.rotate_left(n % 4);
        self.frame_rest -= n as u64;
        Ok(n > 0)
    }
}

/// The rest of a big frame being handed over in pieces.
struct Cut {
    /// Payload bytes of the current piece still to hand over.
    piece: usize,
    /// Payload bytes after the current piece.
    rest: u64,
    /// The frame's own FIN, for its last piece.
    fin: bool,
    mask: Option<[u8; 4]>,
    /// Payload bytes in the pieces so far, the current one included (for the mask key's
    /// rotation).
    offset: u64,
}

pub struct Inbound {
    max_message_size: usize,
    holding: Holding,
    /// permessage-deflate was negotiated: messages may come compressed.
    deflate: bool,
    inflating: Option<Box<Inflating>>,
    /// A one-frame message being read by `read_direct`.
    partial: Option<Partial>,
    /// Payload bytes of the current frame (passed through whole) still to come.
    skip: u64,
    cut: Option<Cut>,
    /// A piece's header not yet handed over: `header[header_at..header_len]`.
    header: [u8; MAX_HEADER],
    header_at: usize,
    header_len: usize,
    /// Payload bytes of the message under way (data frames since the last final one).
    message: u64,
    /// A data frame without FIN has been handed over: its message is not finished.
    unfinished: bool,
    /// Bytes of messages handed to the application and still held for it: the application
    /// may be echoing them (see `hold_for_writing`).
    handed_over: usize,
    /// The budget refused a message: fail the next read with this.
    refusal: Option<OverBudget>,
    /// After a refusal (or a stream that ended mid-header): bytes pass untouched, uncounted.
    stopped: bool,
}

impl Inbound {
    /// `deflate`: permessage-deflate was negotiated at the upgrade.
    pub fn new(holding: Holding, max_message_size: usize, deflate: bool) -> Inbound {
        Inbound {
            max_message_size,
            holding,
            deflate,
            inflating: None,
            partial: None,
            skip: 0,
            cut: None,
            header: [0; MAX_HEADER],
            header_at: 0,
            header_len: 0,
            message: 0,
            unfinished: false,
            handed_over: 0,
            refusal: None,
            stopped: false,
        }
    }

    pub fn holding(&self) -> &Holding {
        &self.holding
    }

    /// permessage-deflate was agreed at the upgrade.
    pub fn deflate(&self) -> bool {
        self.deflate
    }

    /// The application has been handed a message of `bytes`: held until `release_delivered`.
    pub fn delivered(&mut self, bytes: usize) {
        self.handed_over += bytes;
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

    /// The next bytes for tungstenite.
    pub fn read(&mut self, source: &mut impl Source, buf: &mut [u8]) -> io::Result<usize> {
        if self.stopped || buf.is_empty() {
            return source.read(buf);
        }
        if let Some(refusal) = self.refusal.take() {
            self.stopped = true;
            return Err(io::Error::other(refusal));
        }
        if self.header_at < self.header_len {
            let n = buf.len().min(self.header_len - self.header_at);
            buf[..n].copy_from_slice(&self.header[self.header_at..self.header_at + n]);
            self.header_at += n;
            self.after_handing();
            return Ok(n);
        }
        if self
            .inflating
            .as_ref()
            .is_some_and(|inflating| !inflating.wants_frame())
        {
            return self.inflate(source, buf);
        }
        match &mut self.cut {
            Some(cut) => {
                let want = buf.len().min(cut.piece);
                let n = source.read(&mut buf[..want])?;
                cut.piece -= n;
                if n > 0 && cut.piece == 0 {
                    self.next_piece();
                }
                Ok(n)
            }
            None => self.pass(source, buf),
        }
    }

    /// The next message read straight from the source, past tungstenite, if it comes in one
    /// frame: tungstenite would take three times the instructions for a small one, and copy a
    /// big one three times more. A small one (valid UTF-8 if text) arrives whole in one read;
    /// a bigger one is read on straight into its message (`Partial`), across read timeouts,
    /// and fails the read with tungstenite's own error if it is not UTF-8 or the stream ends.
    /// `None`, with every byte put back for tungstenite, for anything else: a control frame, a
    /// fragment, a small message that is not UTF-8, whatever breaks the protocol.
    ///
    /// Only while tungstenite holds no bytes of a frame: before its first read, and after a
    /// read that returned a message (`pass` hands it one frame at most, so it has then used
    /// every byte it was handed). Between the fragments of a message it answers `None`.
    pub fn read_direct(
        &mut self,
        source: &mut impl Source,
    ) -> Result<Option<Message>, tungstenite::Error> {
        if self.partial.is_some() {
            return self.read_partial(source);
        }
        let between_messages = self.skip == 0
            && self.cut.is_none()
            && self.inflating.is_none()
            && self.header_at == self.header_len
            && !self.unfinished
            && !self.stopped
            && self.refusal.is_none();
        if !between_messages {
            return Ok(None);
        }
        let mut buf = [0u8; DIRECT_READ];
        let end = source.read(&mut buf)?;
        let read = &buf[..end];
        let Some(header) = Header::parse(read) else {
            source.unread(read);
            return Ok(None);
        };
        if let Some((message, frame)) = self.whole_message(&header, read) {
            source.unread(&read[frame..]);
            return Ok(Some(message));
        }
        if self.begin_partial(&header, read) {
            return self.read_partial(source);
        }
        source.unread(read);
        Ok(None)
    }

    /// The mask key of a frame that is a whole message `read_direct` may read: a masked data
    /// frame with FIN, no reserved bits, within `--max-message-size`.
    fn one_frame_key(&self, header: &Header) -> Option<[u8; 4]> {
        let wanted = header.fin
            && header.rsv == 0
            && matches!(header.opcode, 1 | 2)
            && header.payload <= self.max_message_size as u64;
        header.mask.filter(|_| wanted)
    }

    /// The message in the frame at the start of `read`, and the frame's size, if it is one
    /// `read_direct` may take (held against the budget); nothing changes otherwise.
    fn whole_message(&mut self, header: &Header, read: &[u8]) -> Option<(Message, usize)> {
        let key = self.one_frame_key(header)?;
        let frame = header.size + usize::try_from(header.payload).ok()?;
        let payload = read.get(header.size..frame)?;
        let message = into_message(header.opcode, payload.to_vec(), key).ok()?;
        // Counted only now that it is taken: a refusal is then reported by the next `read`.
        self.admit(header).then_some((message, frame))
    }

    /// If `header` begins a one-frame message that `read` holds only the start of, set it up
    /// to be read on straight into its own buffer (held against the budget).
    fn begin_partial(&mut self, header: &Header, read: &[u8]) -> bool {
        let Some(key) = self.one_frame_key(header) else {
            return false;
        };
        let whole = header.size as u64 + header.payload <= read.len() as u64;
        if whole || !self.admit(header) {
            // Whole, it was not taken (text, not UTF-8); a refusal is reported by the next
            // read, tungstenite's.
            return false;
        }
        // Zeroed once: the source reads into initialised bytes.
        let mut bytes = vec![0; header.payload as usize];
        let start = &read[header.size..];
        bytes[..start.len()].copy_from_slice(start);
        self.partial = Some(Partial {
            opcode: header.opcode,
            key,
            filled: start.len(),
            bytes,
        });
        true
    }

    /// Read on into the message under way; once it is whole, it is the message.
    fn read_partial(
        &mut self,
        source: &mut impl Source,
    ) -> Result<Option<Message>, tungstenite::Error> {
        let Some(partial) = self.partial.as_mut() else {
            return Ok(None);
        };
        while partial.filled < partial.bytes.len() {
            match source.read(&mut partial.bytes[partial.filled..])? {
                0 => {
                    // As tungstenite says of a stream that ends mid-frame.
                    self.partial = None;
                    self.stopped = true;
                    return Err(ProtocolError::ResetWithoutClosingHandshake.into());
                }
                n => partial.filled += n,
            }
        }
        let Some(Partial {
            opcode, key, bytes, ..
        }) = self.partial.take()
        else {
            return Ok(None);
        };
        into_message(opcode, bytes, key).map(Some).map_err(|error| {
            self.stopped = true;
            tungstenite::Error::Utf8(error.to_string())
        })
    }

    /// Hand over what the source gives, up to the end of one frame at most: so tungstenite never
    /// holds bytes past the frame it is reading, and once it has returned a message it holds
    /// none (see `read_direct`).
    fn pass(&mut self, source: &mut impl Source, buf: &mut [u8]) -> io::Result<usize> {
        let mut end = source.read(buf)?;
        if self.skip > 0 || end == 0 {
            // The rest of a frame under way.
            let n = self.skip.min(end as u64) as usize;
            self.skip -= n as u64;
            if n < end {
                source.unread(&buf[n..end]);
            }
            return Ok(n);
        }
        let header = loop {
            if let Some(header) = Header::parse(&buf[..end]) {
                break header;
            }
            // Only part of a header so far: wait for the rest behind it.
            let more = match buf.get_mut(end..) {
                Some(room) if !room.is_empty() => match source.read(room) {
                    Ok(more) => more,
                    Err(error) => {
                        // A timeout, say: the caller drops `buf`, so keep its bytes.
                        source.unread(&buf[..end]);
                        return Err(error);
                    }
                },
                _ => 0,
            };
            if more == 0 {
                // The stream ended (or the caller's buffer is tiny): stop minding frames.
                self.stopped = true;
                return Ok(end);
            }
            end += more;
        };
        if self.takes_compressed(&header) {
            source.unread(&buf[header.size..end]);
            return self.read(source, buf);
        }
        if !self.admit(&header) {
            source.unread(&buf[..end]);
            return self.read(source, buf);
        }
        if self.cuttable(&header) {
            source.unread(&buf[header.size..end]);
            self.cut = Some(Cut {
                piece: 0,
                rest: header.payload,
                fin: header.fin,
                mask: header.mask,
                offset: 0,
            });
            self.next_piece_as(header.opcode);
            return self.read(source, buf);
        }
        let frame = (header.size as u64).saturating_add(header.payload);
        if frame < end as u64 {
            source.unread(&buf[frame as usize..end]);
            end = frame as usize;
        }
        self.skip = frame - end as u64;
        Ok(end)
    }

    /// If `header` begins a compressed message, or goes on with the one under way, set up its
    /// inflating (true); a frame inflating does not take passes untouched (false).
    fn takes_compressed(&mut self, header: &Header) -> bool {
        let Some(mask) = header.mask else {
            return false;
        };
        if let Some(inflating) = &mut self.inflating {
            // RSV1 belongs on the first frame only; tungstenite refuses it anywhere else.
            if header.opcode != 0 || header.rsv != 0 {
                return false;
            }
            inflating.next_frame(header.payload, mask, header.fin);
            return true;
        }
        let begins = self.deflate
            && header.rsv == 0x40
            && matches!(header.opcode, 1 | 2)
            && !self.unfinished;
        if !begins {
            return false;
        }
        let room = self.holding.grow(INFLATING_BYTES);
        let inflating = room
            .then(|| Inflating::new(header.opcode, header.payload, mask, header.fin))
            .flatten();
        let Some(inflating) = inflating else {
            if room {
                // No inflater to be had (the server is out of threads): the room goes back.
                self.holding.shrink(INFLATING_BYTES);
            }
            // Refused by the next read, before the frame's bytes are handed over: 1013.
            self.refusal = Some(OverBudget::now(header.payload, self.holding.budget()));
            return true;
        };
        self.message = 0;
        self.unfinished = true;
        self.inflating = Some(inflating);
        true
    }

    /// Hand over the compressed message under way: the rest of the fragment being handed over,
    /// or the next one, inflated from the client's frames.
    fn inflate(&mut self, source: &mut impl Source, buf: &mut [u8]) -> io::Result<usize> {
        let Some(inflating) = self.inflating.as_deref_mut() else {
            return self.pass(source, buf);
        };
        if inflating.handing {
            let rest = &inflating.output[inflating.output_at..];
            let n = buf.len().min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            inflating.output_at += n;
            self.after_handing();
            return Ok(n);
        }
        match inflating.fill(source) {
            Ok(Filled::Fragment) => {
                self.set_fragment();
                self.read(source, buf)
            }
            Ok(Filled::Nothing) => self.read(source, buf),
            Ok(Filled::Ended) => {
                // tungstenite sees the stream end mid-frame, as it would have.
                self.stopped = true;
                Ok(0)
            }
            Err(error) => {
                if deflate::bad_deflate(&error).is_some() {
                    self.stopped = true;
                }
                Err(error)
            }
        }
    }

    /// The fragment in `output` is ready: count it against the budget and set its header.
    fn set_fragment(&mut self) {
        let Some(inflating) = self.inflating.as_deref_mut() else {
            return;
        };
        let len = inflating.output.len();
        self.message = self.message.saturating_add(len as u64);
        // Past the limit tungstenite refuses the message on seeing this: nothing to count.
        if self.message <= self.max_message_size as u64 && !self.holding.grow(len) {
            self.refusal = Some(OverBudget::now(self.message, self.holding.budget()));
            return;
        }
        let header = Header {
            size: 0,
            payload: len as u64,
            fin: inflating.finished,
            rsv: 0,
            opcode: inflating.opcode,
            // A client's frame must be masked: a zero key leaves the bytes as they are.
            mask: Some([0; 4]),
        };
        inflating.opcode = 0;
        inflating.handing = true;
        inflating.output_at = 0;
        self.header_len = header.write(&mut self.header);
        self.header_at = 0;
    }

    /// After handing bytes over: once a fragment is all handed, make room for the next; once
    /// the last one is, the message is done and its inflater goes back to the pool.
    fn after_handing(&mut self) {
        if self.header_at < self.header_len {
            return;
        }
        let Some(inflating) = self.inflating.as_deref_mut() else {
            return;
        };
        if !inflating.handing || inflating.output_at < inflating.output.len() {
            return;
        }
        if inflating.finished {
            self.inflating = None;
            self.unfinished = false;
            self.holding.shrink(INFLATING_BYTES);
            return;
        }
        inflating.handing = false;
        inflating.output.clear();
        inflating.output_at = 0;
    }

    /// Count a data frame's payload against the budget; false (with the refusal set) if it
    /// does not fit.
    fn admit(&mut self, header: &Header) -> bool {
        if !header.is_data() {
            return true;
        }
        self.message = match header.opcode {
            0 => self.message.saturating_add(header.payload),
            _ => header.payload,
        };
        self.unfinished = !header.fin;
        // Past the limit tungstenite refuses the message before holding it: nothing to count.
        if self.message > self.max_message_size as u64 {
            return true;
        }
        if self.holding.grow(header.payload as usize) {
            return true;
        }
        self.refusal = Some(OverBudget::now(self.message, self.holding.budget()));
        false
    }

    fn cuttable(&self, header: &Header) -> bool {
        header.is_data()
            && header.rsv == 0
            && header.mask.is_some()
            && header.payload > PIECE as u64
            && self.message <= self.max_message_size as u64
    }

    /// The current piece is handed over: set up the next one, or go back to passing frames.
    fn next_piece(&mut self) {
        const CONTINUATION: u8 = 0;
        self.next_piece_as(CONTINUATION);
    }

    fn next_piece_as(&mut self, opcode: u8) {
        let Some(cut) = &mut self.cut else { return };
        if cut.rest == 0 {
            self.cut = None;
            return;
        }
        let size = cut.rest.min(PIECE as u64);
        let rotation = (cut.offset % 4) as usize;
        let header = Header {
            size: 0,
            payload: size,
            fin: cut.fin && cut.rest == size,
            rsv: 0,
            opcode,
            mask: cut
                .mask
                .map(|key| std::array::from_fn(|i| key[(rotation + i) % 4])),
        };
        cut.rest -= size;
        cut.offset += size;
        cut.piece = size as usize;
        self.header_len = header.write(&mut self.header);
        self.header_at = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::{Layered, Replay};
    use std::sync::Arc;
    use tungstenite::protocol::{Role, WebSocket};
    use tungstenite::{Error, Message};

    /// One masked client frame.
    fn frame(opcode: u8, fin: bool, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let header = Header {
            size: 0,
            payload: payload.len() as u64,
            fin,
            rsv: 0,
            opcode,
            mask: Some(key),
        };
        let mut head = [0; MAX_HEADER];
        let size = header.write(&mut head);
        let mut out = head[..size].to_vec();
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        out
    }

    fn server<'a>(
        bytes: &'a [u8],
        sizes: &[usize],
        budget: usize,
        max: usize,
    ) -> WebSocket<Layered<'a>> {
        let inbound = Inbound::new(Holding::new(&Budget::new(budget)), max, false);
        server_over(inbound, bytes, sizes, max)
    }

    fn server_over<'a>(
        inbound: Inbound,
        bytes: &'a [u8],
        sizes: &[usize],
        max: usize,
    ) -> WebSocket<Layered<'a>> {
        let wire = Layered::new(inbound, Replay::new(bytes, sizes.to_vec()));
        let config = tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(1024)
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        WebSocket::from_raw_socket(wire, Role::Server, Some(config))
    }

    /// Every frame header in what tungstenite was handed.
    fn frames_handed(mut bytes: &[u8]) -> Vec<Header> {
        let mut headers = Vec::new();
        while let Some(header) = Header::parse(bytes) {
            bytes = &bytes[header.size + header.payload as usize..];
            headers.push(header);
        }
        assert!(bytes.is_empty(), "handed bytes end mid-frame");
        headers
    }

    #[test]
    fn big_messages_arrive_whole_whatever_the_reads_with_no_frame_past_a_piece() {
        let text: String = "héllo wörld ✓ ".repeat(3_000); // multi-byte characters cut anywhere
        let binary: Vec<u8> = (0..100_003u32).map(|i| (i % 251) as u8).collect();
        let part = vec![9u8; 20_001];
        let mut bytes = frame(1, true, text.as_bytes(), [1, 2, 3, 4]);
        bytes.extend(frame(2, true, &binary, [0xa0, 0x0b, 0xc0, 0x0d]));
        bytes.extend(frame(1, true, b"small", [5, 6, 7, 8]));
        bytes.extend(frame(2, false, &part, [7, 7, 1, 2]));
        bytes.extend(frame(9, true, b"ping!", [3, 3, 3, 3]));
        bytes.extend(frame(0, true, &binary[..30_000], [4, 0, 0, 4]));
        for sizes in [&[usize::MAX][..], &[1, 7, 1024, 3, 65_536, 14], &[13, 2]] {
            let mut ws = server(&bytes, sizes, 1 << 30, 1 << 20);
            assert_eq!(ws.read().unwrap(), Message::text(text.clone()));
            assert_eq!(ws.read().unwrap(), Message::binary(binary.clone()));
            assert_eq!(ws.read().unwrap(), Message::text("small"));
            assert_eq!(ws.read().unwrap(), Message::Ping("ping!".into()));
            let mut joined = part.clone();
            joined.extend_from_slice(&binary[..30_000]);
            assert_eq!(ws.read().unwrap(), Message::binary(joined));
            let headers = frames_handed(&ws.get_ref().handed);
            assert!(
                headers.iter().all(|h| h.payload <= PIECE as u64),
                "{sizes:?}"
            );
            assert!(headers.len() > 6, "big frames were cut");
        }
    }

    #[test]
    fn read_timeouts_anywhere_lose_no_byte() {
        let binary: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
        let mut bytes = frame(2, true, &binary, [1, 2, 3, 4]);
        bytes.extend(frame(1, true, b"after", [5, 6, 7, 8]));
        // Reads of 1 and 3 bytes with timeouts between: headers arrive in parts.
        let mut ws = server(&bytes, &[1, 0, 3, 0, 0, 5000, 0], 1 << 30, 1 << 20);
        let mut read = || loop {
            match ws.read() {
                Err(Error::Io(error)) if error.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other.unwrap(),
            }
        };
        assert_eq!(read(), Message::binary(binary.clone()));
        assert_eq!(read(), Message::text("after"));
    }

    #[test]
    fn a_message_the_budget_cannot_hold_fails_the_read_and_nothing_stays_held() {
        let budget_bytes = 50_000;
        let mut bytes = frame(2, true, &[1; 1000], [1, 1, 1, 1]);
        bytes.extend(frame(2, false, &[2; 30_000], [1, 1, 1, 1]));
        bytes.extend(frame(0, true, &[3; 30_000], [1, 1, 1, 1]));
        let mut ws = server(&bytes, &[4096], budget_bytes, 1 << 20);
        let first = ws.read().unwrap();
        ws.get_mut().inbound.delivered(first.len());
        ws.get_mut().inbound.release_delivered();
        let Err(Error::Io(error)) = ws.read() else {
            panic!("a message past the budget was read")
        };
        let refusal = over_budget(&error).expect("the refusal says why");
        assert_eq!(refusal.message_bytes, 60_000);
        assert_eq!(refusal.limit, budget_bytes);
        let budget = Arc::clone(ws.get_ref().inbound.holding().budget());
        assert_eq!(budget.in_use(), 30_000 - crate::ops::budget::ALLOWANCE);
        drop(ws);
        assert_eq!(
            budget.in_use(),
            0,
            "a closed connection gives everything back"
        );
    }

    #[test]
    fn a_delivered_message_is_given_back_to_the_budget() {
        let mut bytes = Vec::new();
        for _ in 0..5 {
            bytes.extend(frame(2, true, &[7; 40_000], [9, 8, 7, 6]));
        }
        // Five 40 KB messages through a 50 KB budget: each is handed on before the next.
        let mut ws = server(&bytes, &[65_536], 50_000, 1 << 20);
        for _ in 0..5 {
            let message = ws.read().unwrap();
            assert_eq!(message.len(), 40_000);
            ws.get_mut().inbound.delivered(message.len());
            ws.get_mut().inbound.release_delivered();
        }
    }

    #[test]
    fn what_tungstenite_must_refuse_passes_untouched() {
        // Over the size limit: refused as too big, without holding it.
        let too_big = frame(2, true, &[0; 70_000], [1, 2, 3, 4]);
        let mut ws = server(&too_big, &[1024], 1000, 65_536);
        assert!(matches!(ws.read(), Err(Error::Capacity(_))));
        assert_eq!(ws.get_ref().inbound.holding().budget().in_use(), 0);
        // RSV1 on a continuation: a protocol error, not cut into pieces.
        let mut bytes = frame(2, false, &[1; 100], [1, 2, 3, 4]);
        let mut bad = frame(0, true, &[2; 40_000], [1, 2, 3, 4]);
        bad[0] |= 0x40;
        bytes.extend(&bad);
        let mut ws = server(&bytes, &[usize::MAX], 1 << 30, 1 << 20);
        assert!(matches!(ws.read(), Err(Error::Protocol(_))));
        // Unmasked: refused as the protocol says.
        let mut unmasked = frame(2, true, &[], [0; 4]);
        unmasked[1] &= 0x7f;
        unmasked.truncate(2);
        let mut ws = server(&unmasked, &[usize::MAX], 1 << 30, 1 << 20);
        assert!(matches!(ws.read(), Err(Error::Protocol(_))));
    }

    /// Read as `Connection` does (see `fuzzing::replay_as_connection`): the messages, how the
    /// reading ended, and how many messages came past tungstenite.
    fn read_as_connection(
        bytes: &[u8],
        sizes: &[usize],
        budget: usize,
        max: usize,
    ) -> (Vec<Message>, String, usize) {
        read_deflated(bytes, sizes, budget, max, false)
    }

    /// The same, with permessage-deflate agreed or not.
    fn read_deflated(
        bytes: &[u8],
        sizes: &[usize],
        budget: usize,
        max: usize,
        deflate: bool,
    ) -> (Vec<Message>, String, usize) {
        let inbound = Inbound::new(Holding::new(&Budget::new(budget)), max, deflate);
        let layered = Layered::new(inbound, Replay::new(bytes, sizes.to_vec()));
        crate::fuzzing::replay_as_connection(layered, max)
    }

    const ENDED: &str = "WebSocket protocol error: Connection reset without closing handshake";

    #[test]
    fn one_frame_messages_skip_tungstenite_and_the_rest_reach_it_in_order() {
        let big: Vec<u8> = (0..40_000u32).map(|i| (i % 249) as u8).collect();
        let mut bytes = frame(1, true, "héllo ✓".as_bytes(), [1, 2, 3, 4]);
        bytes.extend(frame(2, true, &[0, 1, 2, 3, 4, 5, 6], [9, 9, 9, 9]));
        bytes.extend(frame(9, true, b"ping", [3, 1, 4, 1]));
        bytes.extend(frame(1, true, b"after the ping", [5, 9, 2, 6]));
        // Fragments, with a ping and a would-be message between them: only tungstenite may
        // read those (a data frame there is a protocol error it must see).
        bytes.extend(frame(1, false, b"frag", [1, 1, 2, 2]));
        bytes.extend(frame(10, true, b"pong", [7, 7, 7, 7]));
        bytes.extend(frame(0, true, b"ments", [2, 2, 1, 1]));
        bytes.extend(frame(2, true, &big, [4, 3, 2, 1]));
        bytes.extend(frame(1, true, b"last", [8, 8, 8, 8]));
        let expected = vec![
            Message::text("héllo ✓"),
            Message::binary(vec![0, 1, 2, 3, 4, 5, 6]),
            Message::Ping("ping".into()),
            Message::text("after the ping"),
            Message::Pong("pong".into()),
            Message::text("fragments"),
            Message::binary(big.clone()),
            Message::text("last"),
        ];
        // All there at once, as when a client sends faster than it is read: every one-frame
        // message goes direct.
        let (messages, ended, direct) = read_as_connection(&bytes, &[usize::MAX], 1 << 30, 1 << 20);
        assert_eq!((messages, ended.as_str()), (expected.clone(), ENDED));
        assert_eq!(
            direct, 5,
            "héllo, the 7 bytes, after the ping, the 40,000, last"
        );
        // Whatever the reads, the same messages in the same order.
        for sizes in [
            &[usize::MAX][..],
            &[1, 7, 1024, 3, 65_536, 14],
            &[13, 0, 2],
            &[600],
        ] {
            let (messages, ended, _) = read_as_connection(&bytes, sizes, 1 << 30, 1 << 20);
            assert_eq!(
                (messages, ended.as_str()),
                (expected.clone(), ENDED),
                "{sizes:?}"
            );
        }
    }

    #[test]
    fn a_big_one_frame_message_read_past_tungstenite_fails_as_tungstenite_would() {
        let text = "ünïcode ✓ ".repeat(5_000);
        let mut bytes = frame(1, true, text.as_bytes(), [1, 2, 3, 4]);
        let mut broken = text.clone().into_bytes();
        broken[30_000] = 0xff;
        bytes.extend(frame(1, true, &broken, [4, 3, 2, 1]));
        for sizes in [&[usize::MAX][..], &[700, 0, 9000, 0], &[1]] {
            let (messages, ended, direct) = read_as_connection(&bytes, sizes, 1 << 30, 1 << 20);
            assert_eq!(
                (messages, ended.as_str()),
                (vec![Message::text(text.clone())], "utf-8")
            );
            assert!(direct >= 1 || sizes == [1], "{sizes:?}");
        }
        // The stream ends in the middle of one.
        let cut = &bytes[..bytes.len() - 10];
        let (messages, ended, _) = read_as_connection(cut, &[4096], 1 << 30, 1 << 20);
        assert_eq!((messages.len(), ended.as_str()), (1, ENDED));
    }

    #[test]
    fn what_a_direct_read_must_refuse_it_leaves_to_tungstenite() {
        // Invalid UTF-8 in a small text: tungstenite's error, so the close is 1007.
        let mut bytes = frame(1, true, b"fine", [1, 2, 3, 4]);
        bytes.extend(frame(1, true, &[b'a', 0xff, b'b'], [1, 2, 3, 4]));
        let (messages, ended, direct) = read_as_connection(&bytes, &[usize::MAX], 1 << 30, 1000);
        assert_eq!(
            (messages, ended.as_str(), direct),
            (vec![Message::text("fine")], "utf-8", 1)
        );
        // Over --max-message-size, however small: 1009.
        let bytes = frame(2, true, &[7; 100], [1, 2, 3, 4]);
        let (messages, ended, _) = read_as_connection(&bytes, &[usize::MAX], 1 << 30, 99);
        assert_eq!((messages.len(), ended.as_str()), (0, "capacity"));
        // RSV1 without an extension: 1002.
        let mut bytes = frame(1, true, b"squeezed?", [1, 2, 3, 4]);
        bytes[0] |= 0x40;
        let (messages, ended, _) = read_as_connection(&bytes, &[usize::MAX], 1 << 30, 1000);
        assert!(messages.is_empty());
        assert!(ended.contains("Reserved bits are non-zero"), "{ended}");
        // No room in the memory budget (none of these is ever delivered, so all are held):
        // refused, and nothing stays held.
        let bytes = frame(2, true, &[7; 300], [1, 2, 3, 4]).repeat(20);
        let inbound = Inbound::new(Holding::new(&Budget::new(1000)), 1000, false);
        let budget = Arc::clone(inbound.holding().budget());
        let layered = Layered::new(inbound, Replay::new(&bytes, vec![usize::MAX]));
        let (messages, ended, direct) = crate::fuzzing::replay_as_connection(layered, 1000);
        let fit = (crate::ops::budget::ALLOWANCE + 1000) / 300;
        assert_eq!(
            (messages.len(), direct, ended.as_str()),
            (fit, fit, "io Other")
        );
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn a_direct_message_is_held_against_the_budget_until_delivered() {
        let bytes = frame(2, true, &[7; 300], [1, 2, 3, 4]);
        let inbound = Inbound::new(Holding::new(&Budget::new(1 << 20)), 1000, false);
        let mut layered = Layered::new(inbound, Replay::new(&bytes, vec![usize::MAX]));
        let message = layered.read_direct().unwrap().expect("read directly");
        assert_eq!(message, Message::binary(vec![7; 300]));
        let budget = Arc::clone(layered.inbound.holding().budget());
        assert_eq!(
            budget.in_use(),
            300 - crate::ops::budget::ALLOWANCE.min(300)
        );
        layered.inbound.delivered(message.len());
        layered.inbound.release_delivered();
        assert_eq!(budget.in_use(), 0);
    }

    /// `payload` compressed as a permessage-deflate client sends it: raw deflate, flushed,
    /// without the `00 00 ff ff` the flush ends with.
    fn compress(payload: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), Default::default());
        encoder.write_all(payload).unwrap();
        encoder.flush().unwrap();
        let mut out = encoder.get_ref().clone();
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - TAIL.len());
        out
    }

    /// A masked frame with RSV1: the first (or only) frame of a compressed message.
    fn compressed(opcode: u8, fin: bool, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let mut bytes = frame(opcode, fin, payload, key);
        bytes[0] |= 0x40;
        bytes
    }

    #[test]
    fn compressed_messages_inflate_whatever_the_reads_with_pings_between_fragments() {
        let text = "héllo wörld ✓ ".repeat(3_000);
        let squeezed = compress(text.as_bytes());
        let third = squeezed.len() / 3;
        let binary: Vec<u8> = (0..200_000u32).map(|i| (i / 7 % 251) as u8).collect();
        let mut bytes = compressed(1, false, &squeezed[..third], [1, 2, 3, 4]);
        bytes.extend(frame(9, true, b"between", [5, 5, 5, 5]));
        bytes.extend(frame(0, false, &squeezed[third..2 * third], [6, 7, 8, 9]));
        bytes.extend(frame(0, true, &squeezed[2 * third..], [9, 8, 7, 6]));
        bytes.extend(compressed(
            2,
            true,
            &compress(&binary),
            [0xa0, 0x0b, 0xc0, 0x0d],
        ));
        bytes.extend(frame(1, true, b"plain, uncompressed", [1, 1, 1, 1]));
        bytes.extend(compressed(1, true, &compress(b"small"), [2, 4, 6, 8]));
        bytes.extend(compressed(2, true, &compress(b""), [3, 3, 3, 3]));
        // A final deflate block ends the data; the tail put after it is ignored.
        bytes.extend(compressed(
            1,
            true,
            &[0x01, 0x02, 0x00, 0xfd, 0xff, b'o', b'k'],
            [0; 4],
        ));
        let expected = vec![
            Message::Ping("between".into()),
            Message::text(text.clone()),
            Message::binary(binary.clone()),
            Message::text("plain, uncompressed"),
            Message::text("small"),
            Message::binary(Vec::new()),
            Message::text("ok"),
        ];
        for sizes in [
            &[usize::MAX][..],
            &[1, 7, 1024, 3, 65_536, 14],
            &[13, 0, 2],
            &[600, 0],
        ] {
            let (messages, ended, _) = read_deflated(&bytes, sizes, 1 << 30, 1 << 20, true);
            assert_eq!(
                (messages, ended.as_str()),
                (expected.clone(), ENDED),
                "{sizes:?}"
            );
        }
        // No fragment tungstenite is handed is bigger than a piece.
        let inbound = Inbound::new(Holding::new(&Budget::new(1 << 30)), 1 << 20, true);
        let mut ws = server_over(inbound, &bytes, &[usize::MAX], 1 << 20);
        while ws.read().is_ok() {}
        let headers = frames_handed(&ws.get_ref().handed);
        assert!(
            headers
                .iter()
                .all(|h| h.payload <= PIECE as u64 && h.rsv == 0)
        );
        assert!(headers.len() > 10, "the big messages came in pieces");
    }

    #[test]
    fn rsv1_anywhere_else_is_a_protocol_error() {
        let squeezed = compress(b"hello");
        // Not agreed at the upgrade.
        let bytes = compressed(1, true, &squeezed, [1, 2, 3, 4]);
        let (messages, ended, _) = read_deflated(&bytes, &[usize::MAX], 1 << 30, 1000, false);
        assert!(messages.is_empty());
        assert!(ended.contains("Reserved bits are non-zero"), "{ended}");
        // On a continuation frame.
        let mut bytes = compressed(1, false, &squeezed[..2], [1, 2, 3, 4]);
        bytes.extend(compressed(0, true, &squeezed[2..], [1, 2, 3, 4]));
        let (messages, ended, _) = read_deflated(&bytes, &[usize::MAX], 1 << 30, 1000, true);
        assert!(messages.is_empty());
        assert!(ended.contains("Reserved bits are non-zero"), "{ended}");
        // A new message before the compressed one has ended.
        let mut bytes = compressed(1, false, &squeezed, [1, 2, 3, 4]);
        bytes.extend(frame(1, true, b"too soon", [1, 2, 3, 4]));
        let (messages, ended, _) = read_deflated(&bytes, &[usize::MAX], 1 << 30, 1000, true);
        assert!(messages.is_empty());
        assert!(
            ended.contains("While waiting for more fragments"),
            "{ended}"
        );
    }

    #[test]
    fn data_that_does_not_inflate_fails_the_read_with_bad_deflate() {
        let mut bytes = compressed(1, true, &compress(b"fine"), [1, 2, 3, 4]);
        bytes.extend(compressed(2, true, &[0xff, 0xff, 0xff, 0xff], [1, 2, 3, 4]));
        let inbound = Inbound::new(Holding::new(&Budget::new(1 << 30)), 1000, true);
        let mut ws = server_over(inbound, &bytes, &[usize::MAX], 1000);
        assert_eq!(ws.read().unwrap(), Message::text("fine"));
        let Err(Error::Io(error)) = ws.read() else {
            panic!("corrupt data was read")
        };
        assert!(deflate::bad_deflate(&error).is_some(), "{error}");
    }

    #[test]
    fn a_small_message_inflating_past_the_limit_stops_there_in_bounded_memory() {
        let max = 1 << 20;
        let bomb = compress(&vec![0; 8 << 20]);
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        let bytes = compressed(2, true, &bomb, [1, 2, 3, 4]);
        let inbound = Inbound::new(Holding::new(&Budget::new(1 << 30)), max, true);
        let mut ws = server_over(inbound, &bytes, &[usize::MAX], max);
        assert!(matches!(ws.read(), Err(Error::Capacity(_))));
        let handed = ws.get_ref().handed.len();
        assert!(handed <= max + 2 * PIECE, "{handed} bytes inflated");
        let held = ws.get_ref().inbound.holding().budget().in_use();
        assert!(held <= max + INFLATING_BYTES, "{held} bytes held");
    }

    #[test]
    fn a_compressed_message_is_held_against_the_budget_and_given_back() {
        let text = "abc".repeat(10_000);
        let bytes = compressed(1, true, &compress(text.as_bytes()), [1, 2, 3, 4]);
        let inbound = Inbound::new(Holding::new(&Budget::new(1 << 20)), 1 << 20, true);
        let budget = Arc::clone(inbound.holding().budget());
        let mut ws = server_over(inbound, &bytes, &[usize::MAX], 1 << 20);
        let message = ws.read().unwrap();
        assert_eq!(message, Message::text(text));
        // The message is held (less the connection's own allowance); the inflater is not.
        assert_eq!(budget.in_use(), 30_000 - crate::ops::budget::ALLOWANCE);
        ws.get_mut().inbound.delivered(message.len());
        ws.get_mut().inbound.release_delivered();
        assert_eq!(budget.in_use(), 0);
        // A budget with no room for an inflater refuses the message: 1013.
        let inbound = Inbound::new(Holding::new(&Budget::new(1000)), 1 << 20, true);
        let mut ws = server_over(inbound, &bytes, &[usize::MAX], 1 << 20);
        let Err(Error::Io(error)) = ws.read() else {
            panic!("read without room for it")
        };
        assert!(over_budget(&error).is_some(), "{error}");
    }

    #[test]
    fn many_connections_inflate_at_once() {
        let text = "many at once ".repeat(2_000);
        let mut bytes = Vec::new();
        for _ in 0..20 {
            bytes.extend(compressed(
                1,
                true,
                &compress(text.as_bytes()),
                [7, 1, 7, 1],
            ));
        }
        std::thread::scope(|scope| {
            for _ in 0..16 {
                scope.spawn(|| {
                    let (messages, _, _) = read_deflated(&bytes, &[4096], 1 << 30, 1 << 20, true);
                    assert_eq!(messages, vec![Message::text(text.clone()); 20]);
                });
            }
        });
        assert!(deflate::pooled() <= 8, "the pool keeps a few, not all");
    }
}

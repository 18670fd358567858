//! DEFLATE decoding (RFC 1951), as permessage-deflate needs it: one message's compressed bytes,
//! arriving in pieces, inflated straight into the message's own buffer.
//!
//! Every connection agrees `client_no_context_takeover` (see `deflate.rs`), so a message's
//! back-references reach only into the message itself: the message's buffer is the window, and
//! no 32 KiB dictionary is kept, copied or zeroed. A block with the fixed codes (what a browser
//! sends for a short message) decodes with tables built once per process; a block with its own
//! codes builds its tables in the inflater, in proportion to the codes, not to a worst case.
//! So a small message costs about what its bytes do, and an inflater costs nothing until a
//! message arrives, and is dropped with it.
//!
//! Input may stop anywhere (a TCP read, a frame's end). A step (a block header, a symbol with
//! its length and distance) either completes or is undone; the bytes it needed and did not have
//! are kept (`carry`, at most a block header's worth) for the next piece.

mod bits;
mod codes;

use bits::{BitReader, Mark};
use codes::{Codes, END_OF_BLOCK, fixed_codes, read_own_codes};
use std::fmt;

/// Lengths 3..=258 of symbols 257..=285: base, and extra bits.
const LENGTH_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// Distances 1..=32768 of symbols 0..=29: base, and extra bits.
const DISTANCE_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DISTANCE_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// A compressed message that does not inflate: the connection is closed with 1007.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadDeflate(&'static str);

impl fmt::Display for BadDeflate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid compressed data: {}", self.0)
    }
}

impl std::error::Error for BadDeflate {}

impl BadDeflate {
    /// The inflater took no input and gave no output: never spin on it.
    pub fn stuck() -> BadDeflate {
        BadDeflate("the inflater made no progress")
    }
}

/// Heap a message being inflated may take besides its own bytes, at most: its codes' tables
/// (about 50 KB for the worst a block's header can ask) and the input kept between pieces.
/// Held against the memory budget while the message arrives.
pub const INFLATING_BYTES: usize = 64 * 1024;

/// Where the inflater is in the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Next: a block's header.
    BlockStart,
    /// Inside a stored block: `left` bytes to copy.
    Stored { left: usize, last: bool },
    /// Inside a block of codes (the fixed ones, or the block's own in `own`).
    Codes { fixed: bool, last: bool },
    /// Inside a block of codes, a match partly copied (the output had no more room).
    Copying {
        fixed: bool,
        last: bool,
        left: usize,
        distance: usize,
    },
    /// The final block has ended: whatever follows is ignored.
    Done,
}

/// One message's inflater. Made for the message, dropped with it.
pub struct Inflater {
    state: State,
    /// Bits taken from the input and not yet used, the next one lowest.
    bits: u64,
    count: u32,
    /// Input a step needed more than, kept until the next piece comes.
    carry: Vec<u8>,
    /// The current block's own codes (none for stored and fixed blocks).
    own: Option<Box<Codes>>,
}

/// Why decoding stopped short of the input's end.
enum Stop {
    /// The next step needs bits not yet here: it starts again at this point.
    NeedInput(Mark),
    /// The output has no more room.
    Full(Mark),
    /// The final block ended.
    Done,
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    /// An inflater for one message (raw DEFLATE, no zlib header).
    pub fn new() -> Inflater {
        Inflater {
            state: State::BlockStart,
            bits: 0,
            count: 0,
            carry: Vec::new(),
            own: None,
        }
    }

    /// Inflate `input` into `output`'s spare capacity (never growing it); returns how many
    /// bytes of `input` were used (all of them unless the output filled up first). Once the
    /// final block has ended, input is all used and nothing comes out.
    pub fn inflate(&mut self, input: &[u8], output: &mut Vec<u8>) -> Result<usize, BadDeflate> {
        if self.state == State::Done {
            return Ok(input.len());
        }
        if self.carry.is_empty() {
            let stop = self.run(input, output)?;
            return Ok(match stop {
                Stop::NeedInput(mark) => {
                    self.carry.extend_from_slice(&input[mark.at..]);
                    self.keep(mark);
                    input.len()
                }
                Stop::Full(mark) => {
                    self.keep(mark);
                    mark.at
                }
                Stop::Done => input.len(),
            });
        }
        // What was kept, then this piece, as one input.
        let mut joined = std::mem::take(&mut self.carry);
        joined.extend_from_slice(input);
        let kept_from = match self.run(&joined, output)? {
            Stop::NeedInput(mark) | Stop::Full(mark) => {
                self.keep(mark);
                mark.at
            }
            Stop::Done => joined.len(),
        };
        joined.drain(..kept_from);
        if !joined.is_empty() {
            self.carry = joined;
        }
        Ok(input.len())
    }

    /// All the data is in: it must end where a message may, between blocks or after the
    /// final one. (A message's data ends with an empty stored block, once its tail is put
    /// back.)
    pub fn finish(&self) -> Result<(), BadDeflate> {
        match self.state {
            State::Done => Ok(()),
            State::BlockStart if self.carry.is_empty() => Ok(()),
            _ => Err(BadDeflate("the data ends inside a block")),
        }
    }

    fn keep(&mut self, mark: Mark) {
        self.bits = mark.bits;
        self.count = mark.count;
    }

    /// Decode from `input` (after the bits already taken) until it runs out, the output is
    /// full, or the final block ends.
    fn run(&mut self, input: &[u8], output: &mut Vec<u8>) -> Result<Stop, BadDeflate> {
        let mut reader = BitReader {
            input,
            at: 0,
            bits: self.bits,
            count: self.count,
        };
        loop {
            let mark = reader.mark();
            self.state = match self.state {
                State::Done => return Ok(Stop::Done),
                State::BlockStart => match self.block_header(&mut reader)? {
                    Some(state) => state,
                    None => return Ok(Stop::NeedInput(mark)),
                },
                State::Stored { left, last } => {
                    let left = left - reader.copy_bytes(left, output);
                    match left {
                        0 => next_block(last),
                        _ if output.len() == output.capacity() => {
                            self.state = State::Stored { left, last };
                            return Ok(Stop::Full(reader.mark()));
                        }
                        _ => {
                            self.state = State::Stored { left, last };
                            return Ok(Stop::NeedInput(reader.mark()));
                        }
                    }
                }
                State::Codes { fixed, last } => {
                    let codes = match (fixed, &self.own) {
                        (false, Some(own)) => own,
                        _ => fixed_codes(),
                    };
                    match decode_codes(&mut reader, codes, output)? {
                        Decoded::EndOfBlock => next_block(last),
                        Decoded::Stopped(stop) => return Ok(stop),
                        Decoded::Copying { left, distance } => {
                            self.state = State::Copying {
                                fixed,
                                last,
                                left,
                                distance,
                            };
                            return Ok(Stop::Full(reader.mark()));
                        }
                    }
                }
                State::Copying {
                    fixed,
                    last,
                    left,
                    distance,
                } => {
                    let left = left - copy_match(output, left, distance);
                    if left > 0 {
                        self.state = State::Copying {
                            fixed,
                            last,
                            left,
                            distance,
                        };
                        return Ok(Stop::Full(mark));
                    }
                    State::Codes { fixed, last }
                }
            };
        }
    }

    /// A block's header, and (a block with its own codes) its tables; `None` if the input
    /// ends first.
    fn block_header(&mut self, reader: &mut BitReader) -> Result<Option<State>, BadDeflate> {
        let Some(head) = reader.take(3) else {
            return Ok(None);
        };
        let last = head & 1 == 1;
        match head >> 1 {
            0 => {
                reader.align();
                let Some(lengths) = reader.take(32) else {
                    return Ok(None);
                };
                let (left, complement) = (lengths & 0xffff, lengths >> 16);
                if left != !complement & 0xffff {
                    return Err(BadDeflate("a stored block's length does not check"));
                }
                Ok(Some(State::Stored {
                    left: left as usize,
                    last,
                }))
            }
            1 => Ok(Some(State::Codes { fixed: true, last })),
            2 => {
                let own = self.own.get_or_insert_with(|| {
                    Box::new(Codes {
                        literal_length: Vec::new(),
                        distance: Vec::new(),
                    })
                });
                Ok(read_own_codes(reader, own)?.map(|()| State::Codes { fixed: false, last }))
            }
            _ => Err(BadDeflate("block type 3 does not exist")),
        }
    }
}

fn next_block(last: bool) -> State {
    if last { State::Done } else { State::BlockStart }
}

/// How a run of codes ended.
enum Decoded {
    EndOfBlock,
    Stopped(Stop),
    /// The output filled up in the middle of a match.
    Copying {
        left: usize,
        distance: usize,
    },
}

/// Decode literals and matches into `output` until the block ends, the input runs out or the
/// output is full.
fn decode_codes(
    reader: &mut BitReader,
    codes: &Codes,
    output: &mut Vec<u8>,
) -> Result<Decoded, BadDeflate> {
    loop {
        let mark = reader.mark();
        if output.len() == output.capacity() {
            return Ok(Decoded::Stopped(Stop::Full(mark)));
        }
        let Some(symbol) = codes::symbol(reader, &codes.literal_length)? else {
            return Ok(Decoded::Stopped(Stop::NeedInput(mark)));
        };
        if symbol < END_OF_BLOCK {
            output.push(symbol as u8);
            continue;
        }
        if symbol == END_OF_BLOCK {
            return Ok(Decoded::EndOfBlock);
        }
        let Some(&base) = LENGTH_BASE.get(usize::from(symbol - 257)) else {
            return Err(BadDeflate("a length code that does not exist (286 or 287)"));
        };
        let extra = LENGTH_EXTRA[usize::from(symbol - 257)];
        let Some(more) = reader.take(u32::from(extra)) else {
            return Ok(Decoded::Stopped(Stop::NeedInput(mark)));
        };
        let length = usize::from(base) + more as usize;
        let Some(code) = codes::symbol(reader, &codes.distance)? else {
            return Ok(Decoded::Stopped(Stop::NeedInput(mark)));
        };
        let Some(&base) = DISTANCE_BASE.get(usize::from(code)) else {
            return Err(BadDeflate("a distance code that does not exist (30 or 31)"));
        };
        let Some(more) = reader.take(u32::from(DISTANCE_EXTRA[usize::from(code)])) else {
            return Ok(Decoded::Stopped(Stop::NeedInput(mark)));
        };
        let distance = usize::from(base) + more as usize;
        if distance > output.len() {
            return Err(BadDeflate("a distance before the message's start"));
        }
        let copied = copy_match(output, length, distance);
        if copied < length {
            return Ok(Decoded::Copying {
                left: length - copied,
                distance,
            });
        }
    }
}

/// Append up to `length` bytes, each the one `distance` before it, within `output`'s spare
/// capacity; returns how many.
fn copy_match(output: &mut Vec<u8>, length: usize, distance: usize) -> usize {
    let length = length.min(output.capacity() - output.len());
    if distance == 1 {
        // A run of one byte (what a short repetitive message mostly is).
        let byte = output[output.len() - 1];
        output.resize(output.len() + length, byte);
        return length;
    }
    let begin = output.len() - distance;
    let mut left = length;
    while left > 0 {
        // From `begin` on, the bytes repeat every `distance`: copy as many whole periods as
        // are already there (one, then two, four...).
        let span = output.len() - begin;
        let take = left.min(span - span % distance);
        let from = output.len() - take.div_ceil(distance) * distance;
        output.extend_from_within(from..from + take);
        left -= take;
    }
    length
}

#[cfg(test)]
mod tests;

//! A data message on its way: its bytes so far, inflated as they come when compressed, and
//! checked for UTF-8 as they come when text. The reader (`reader.rs`) owns it.

use crate::ops::budget::Holding;
use crate::protocol::fault::{Fault, OverBudget};
use crate::protocol::frame::TEXT;
use crate::protocol::inflate::{BadDeflate, Inflater};

/// How much of a compressed frame is read at a time; also the most room an inflate step makes
/// for its output at once, before doubling.
pub(super) const COMPRESSED_READ: usize = 8 * 1024;

/// A data message on its way, from its first frame to its last.
pub(super) struct Assembling {
    /// `TEXT` or `BINARY`.
    pub(super) opcode: u8,
    /// The payload so far (inflated, if compressed). Uncompressed, the current frame's
    /// payload is appended as it arrives; a read straight from the socket first makes room
    /// for all of it, zeroed, up to `end`.
    pub(super) data: Vec<u8>,
    /// Uncompressed: the length of `data` once the current frame's payload is all in.
    pub(super) end: usize,
    /// How much of `data` has been found to be UTF-8 (text only).
    pub(super) checked: usize,
    /// Compressed: its inflater.
    pub(super) inflater: Option<Inflater>,
    /// Bytes held against the budget for it.
    pub(super) held: usize,
}

/// Inflate `input` into `message`, within the size `limit` and the budget `holding` draws on.
pub(super) fn inflate(
    message: &mut Assembling,
    mut input: &[u8],
    holding: &mut Holding,
    limit: usize,
) -> Result<(), Fault> {
    loop {
        let Some(inflater) = &mut message.inflater else {
            return Ok(());
        };
        let before = message.data.len();
        if before == message.data.capacity() {
            // Room for the next piece (a guess from the input's size, then doubling), and one
            // byte past the limit to see it crossed.
            let guess = (input.len() * 4).clamp(64, COMPRESSED_READ);
            message.data.reserve((limit + 1 - before).min(guess));
        }
        let used = inflater
            .inflate(input, &mut message.data)
            .map_err(Fault::BadDeflate)?;
        let grown = message.data.len() - before;
        input = &input[used..];
        if message.data.len() > limit {
            return Err(Fault::TooBig { limit });
        }
        if grown > 0 {
            if !holding.grow(grown) {
                let total = message.data.len() as u64;
                return Err(Fault::OverBudget(OverBudget::now(total, holding.budget())));
            }
            message.held += grown;
            check_utf8(message)?;
        }
        if input.is_empty() && (grown == 0 || message.data.len() < message.data.capacity()) {
            // All the input is in, and the inflater stopped with room to spare.
            return Ok(());
        }
        if used == 0 && grown == 0 {
            // Cannot happen with input and room on hand; never spin if it does.
            return Err(Fault::BadDeflate(BadDeflate::stuck()));
        }
    }
}

/// Fail fast on text that cannot become UTF-8, whatever follows: checks what arrived since the
/// last call; an unfinished character at the end waits for the rest (the whole message is
/// checked again when it is made).
pub(super) fn check_utf8(message: &mut Assembling) -> Result<(), Fault> {
    if message.opcode != TEXT {
        return Ok(());
    }
    match std::str::from_utf8(&message.data[message.checked..]) {
        Ok(_) => message.checked = message.data.len(),
        Err(error) if error.error_len().is_none() => {
            message.checked += error.valid_up_to();
        }
        Err(_) => return Err(Fault::Utf8),
    }
    Ok(())
}

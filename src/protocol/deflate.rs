//! permessage-deflate (RFC 7692), the receiving side: which offer a client makes at the upgrade
//! we accept and what we answer, and the inflaters the reader turns a compressed message's
//! frames into its bytes with.
//!
//! Every offer we accept is answered with `client_no_context_takeover`: the client then
//! compresses each message on its own, so no inflate state outlives a message and an idle
//! connection holds none. A message being inflated borrows an inflater from a small pool
//! shared by every connection.
//!
//! What a connection sends it does not compress: its replies go out in DEFLATE *stored* blocks
//! (`Stored`), the bytes as they are behind 5 bytes of block head per 64 KiB. They refer to
//! nothing before them, so whatever a client asks of our side (`server_no_context_takeover`,
//! any `server_max_window_bits`) is honoured, at the cost of a copy-free `writev`. (Plain
//! frames would do as well by RFC 7692, and broadcasts, one frame shared by every member, stay
//! plain; but some clients, Autobahn's kosoku among them, take a message without RSV1 on a
//! compressing connection for text.)

use flate2::{Decompress, FlushDecompress, Status};
use std::fmt;
use std::sync::{Mutex, PoisonError};

/// The extension's name in `Sec-WebSocket-Extensions`.
const NAME: &str = "permessage-deflate";

/// What a message's compressed bytes end with on the wire once the sender's final
/// `00 00 ff ff` has been taken off (RFC 7692 section 7.2.2): put back before inflating.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Heap a message being inflated takes besides its own bytes: the inflater (its 32 KiB window
/// and tables) and its buffers. Held against the memory budget while the message arrives.
pub const INFLATING_BYTES: usize = 64 * 1024;

/// Inflaters kept for the next compressed message; more in use at once are made and dropped.
const POOL_KEPT: usize = 8;

static POOL: Mutex<Vec<Decompress>> = Mutex::new(Vec::new());

/// Our `Sec-WebSocket-Extensions` answer to the first permessage-deflate offer in `offers`
/// (the header's values, in order) that we can honour; `None` declines them all.
pub fn negotiate<'a>(offers: impl IntoIterator<Item = &'a str>) -> Option<String> {
    offers
        .into_iter()
        .flat_map(|value| value.split(','))
        .find_map(answer)
}

/// The answer to one offer, or `None` if it is not permessage-deflate or asks what we cannot
/// give (an unknown or repeated parameter, a window size out of 8..=15).
fn answer(offer: &str) -> Option<String> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut answer = format!("{NAME}; client_no_context_takeover");
    let mut seen: Vec<&str> = Vec::new();
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim())?)),
            None => (param, None),
        };
        if seen.contains(&name) {
            return None;
        }
        seen.push(name);
        match (name, value) {
            // What our answer asks of the client anyway.
            ("client_no_context_takeover", None) => {}
            // Whatever window the client compresses with, a 15-bit inflater reads it.
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(bits)) if is_window_bits(bits) => {}
            // We never compress: no context to take over, no window to exceed.
            ("server_no_context_takeover", None) => {
                answer.push_str("; server_no_context_takeover");
            }
            ("server_max_window_bits", Some(bits)) if is_window_bits(bits) => {
                answer.push_str("; server_max_window_bits=");
                answer.push_str(bits);
            }
            _ => return None,
        }
    }
    Some(answer)
}

/// A parameter's value, without the quotes a quoted-string form may have.
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"'),
        None => Some(value),
    }
}

/// 8 to 15, written without leading zeros, as RFC 7692 has window sizes.
fn is_window_bits(value: &str) -> bool {
    !value.starts_with('0') && matches!(value.parse::<u8>(), Ok(8..=15))
}

/// Most bytes one stored block holds (its length field is 16 bits).
const STORED_MAX: usize = 0xffff;

/// The head of the empty stored block that ends a message: its other four bytes are `TAIL`,
/// which the receiver puts back.
const STORED_END: [u8; 1] = [0x00];

/// A message's payload framed as DEFLATE stored blocks: each block's head (not final, type 0,
/// then the length and its complement, little-endian), and the closing empty block's head.
pub struct Stored {
    heads: Vec<[u8; 5]>,
}

impl Stored {
    /// The block heads for a payload of `len` bytes.
    pub fn new(len: usize) -> Stored {
        let heads = (0..len.div_ceil(STORED_MAX))
            .map(|block| {
                let size = (len - block * STORED_MAX).min(STORED_MAX) as u16;
                let [low, high] = size.to_le_bytes();
                [0x00, low, high, !low, !high]
            })
            .collect();
        Stored { heads }
    }

    /// The framed size of a payload of `len` bytes.
    pub fn wire_len(&self, len: usize) -> usize {
        len + 5 * self.heads.len() + STORED_END.len()
    }

    /// `payload` framed: each block's head then its bytes, and the end.
    pub fn slices<'a>(&'a self, payload: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
        self.heads
            .iter()
            .zip(payload.chunks(STORED_MAX))
            .flat_map(|(head, bytes)| [&head[..], bytes])
            .chain([&STORED_END[..]])
    }
}

/// A compressed message that does not inflate: the connection is closed with 1007.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadDeflate(String);

impl fmt::Display for BadDeflate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid compressed data: {}", self.0)
    }
}

impl BadDeflate {
    /// The inflater took no input and gave no output: never spin on it.
    pub fn stuck() -> BadDeflate {
        BadDeflate("the inflater made no progress".to_string())
    }
}

impl std::error::Error for BadDeflate {}

/// One message's inflater, borrowed from the pool and given back, reset, when dropped.
pub struct Inflater {
    inflate: Option<Decompress>,
    /// The compressed data ended (a final deflate block): whatever follows is ignored.
    ended: bool,
}

impl Inflater {
    /// One from the pool, or a new one; `None` if none could be made (no thread to make it
    /// on: the server is out of resources).
    pub fn take() -> Option<Inflater> {
        let pooled = POOL.lock().unwrap_or_else(PoisonError::into_inner).pop();
        Some(Inflater {
            inflate: Some(pooled.or_else(made_apart)?),
            ended: false,
        })
    }

    /// Inflate `input` into `output`'s spare capacity (never growing it); returns how many
    /// bytes of `input` were used. Once the compressed data has ended, input is all used and
    /// nothing comes out.
    pub fn inflate(&mut self, input: &[u8], output: &mut Vec<u8>) -> Result<usize, BadDeflate> {
        let Some(inflate) = self.inflate.as_mut().filter(|_| !self.ended) else {
            return Ok(input.len());
        };
        let before = inflate.total_in();
        let status = inflate
            .decompress_vec(input, output, FlushDecompress::Sync)
            .map_err(|error| BadDeflate(error.to_string()))?;
        self.ended = status == Status::StreamEnd;
        let used = (inflate.total_in() - before) as usize;
        Ok(if self.ended { input.len() } else { used })
    }
}

/// A new inflater (raw deflate, no zlib header; a 15-bit window, the most a client may use),
/// made on a short-lived thread of its own: miniz_oxide builds its 43 KiB state on the stack
/// before moving it to the heap, which would overflow a connection thread's small stack, or
/// leave those pages resident with the thread for good.
/// `None` when the host has no thread to spare (the connection is then refused with 1013).
fn made_apart() -> Option<Decompress> {
    let (made, inflater) = crossbeam_channel::bounded(1);
    let make = move |()| {
        let _ = made.send(Decompress::new(false));
    };
    crate::net::threads::spawn(c"inflater", INFLATER_STACK, (), make).ok()?;
    inflater.recv().ok()
}

/// Room for miniz_oxide's state on the stack while an inflater is made, in any build.
const INFLATER_STACK: usize = 512 * 1024;

impl Drop for Inflater {
    fn drop(&mut self) {
        let Some(mut inflate) = self.inflate.take() else {
            return;
        };
        let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOL_KEPT {
            inflate.reset(false);
            pool.push(inflate);
        }
    }
}

/// Inflaters waiting in the pool now.
#[cfg(test)]
pub fn pooled() -> usize {
    POOL.lock().unwrap_or_else(PoisonError::into_inner).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_offer_we_can_honour_is_answered_and_the_rest_declined() {
        // Chrome, Firefox and Python websockets offer this one.
        assert_eq!(
            negotiate(["permessage-deflate; client_max_window_bits"]).as_deref(),
            Some("permessage-deflate; client_no_context_takeover")
        );
        // Autobahn 13.x: what it asks of our side is answered, as we honour it.
        assert_eq!(
            negotiate([
                "permessage-deflate; client_no_context_takeover; client_max_window_bits; \
                 server_no_context_takeover; server_max_window_bits=9"
            ])
            .as_deref(),
            Some(
                "permessage-deflate; client_no_context_takeover; server_no_context_takeover; \
                 server_max_window_bits=9"
            )
        );
        // Offers split over headers and commas; the first that is sound wins.
        assert_eq!(
            negotiate([
                "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=7",
                "permessage-deflate; client_max_window_bits=\"10\", permessage-deflate",
            ])
            .as_deref(),
            Some("permessage-deflate; client_no_context_takeover")
        );
        for unsound in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; mystery",
            "permessage-deflate; client_max_window_bits=\"15",
            "deflate-frame",
            "",
        ] {
            assert_eq!(negotiate([unsound]), None, "{unsound}");
        }
    }

    #[test]
    fn stored_blocks_inflate_to_the_payload_whatever_its_size() {
        for len in [0, 1, 200, STORED_MAX, STORED_MAX + 1, 3 * STORED_MAX + 17] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let stored = Stored::new(len);
            let mut wire: Vec<u8> = stored.slices(&payload).flatten().copied().collect();
            assert_eq!(wire.len(), stored.wire_len(len));
            wire.extend_from_slice(&TAIL);
            let mut inflater = Inflater::take().unwrap();
            let mut output = Vec::with_capacity(len + 1);
            assert_eq!(inflater.inflate(&wire, &mut output), Ok(wire.len()));
            assert_eq!(output, payload, "{len}");
        }
    }

    #[test]
    fn a_bad_stream_is_an_error_and_an_ended_one_takes_no_more() {
        let mut inflater = Inflater::take().unwrap();
        let mut output = Vec::with_capacity(100);
        // Block type 3 does not exist.
        let error = inflater
            .inflate(&[0xff, 0xff, 0xff], &mut output)
            .unwrap_err();
        assert!(
            error.to_string().starts_with("invalid compressed data"),
            "{error}"
        );

        // A final stored block holding "hi", then bytes that are ignored.
        let mut inflater = Inflater::take().unwrap();
        let stream = [0x01, 0x02, 0x00, 0xfd, 0xff, b'h', b'i', 0x12, 0x34];
        assert_eq!(inflater.inflate(&stream, &mut output), Ok(stream.len()));
        assert_eq!(output, b"hi");
        assert_eq!(inflater.inflate(&TAIL, &mut output), Ok(TAIL.len()));
        assert_eq!(output, b"hi");
    }
}

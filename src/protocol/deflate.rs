//! permessage-deflate (RFC 7692): which offer a client makes at the upgrade we accept and what
//! we answer, and how our own messages are framed for it. (Inflating what clients send is
//! `inflate.rs`.)
//!
//! Every offer we accept is answered with `client_no_context_takeover`: the client then
//! compresses each message on its own, so no inflate state outlives a message and an idle
//! connection holds none.
//!
//! What a connection sends it does not compress: its replies go out in DEFLATE *stored* blocks
//! (`Stored`), the bytes as they are behind 5 bytes of block head per 64 KiB. They refer to
//! nothing before them, so whatever a client asks of our side (`server_no_context_takeover`,
//! any `server_max_window_bits`) is honoured, at the cost of a copy-free `writev`. (Plain
//! frames would do as well by RFC 7692, and broadcasts, one frame shared by every member, stay
//! plain; but some clients, Autobahn's kosoku among them, take a message without RSV1 on a
//! compressing connection for text.)

/// The extension's name in `Sec-WebSocket-Extensions`.
const NAME: &str = "permessage-deflate";

/// What a message's compressed bytes end with on the wire once the sender's final
/// `00 00 ff ff` has been taken off (RFC 7692 section 7.2.2): put back before inflating.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

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
pub const STORED_END: [u8; 1] = [0x00];

/// A stored block's head (not final, type 0, then the length and its complement,
/// little-endian).
fn block_head(size: u16) -> [u8; 5] {
    let [low, high] = size.to_le_bytes();
    [0x00, low, high, !low, !high]
}

/// The head of the one stored block a payload of `len` bytes fits in, if it fits in one (the
/// blocks of nearly every message, made without `Stored`'s allocation).
pub fn single_block(len: usize) -> Option<[u8; 5]> {
    u16::try_from(len).ok().map(block_head)
}

/// A message's payload framed as DEFLATE stored blocks: each block's head (not final, type 0,
/// then the length and its complement, little-endian), and the closing empty block's head.
pub struct Stored {
    heads: Vec<[u8; 5]>,
}

impl Stored {
    /// The block heads for a payload of `len` bytes.
    pub fn new(len: usize) -> Stored {
        let heads = (0..len.div_ceil(STORED_MAX))
            .map(|block| block_head((len - block * STORED_MAX).min(STORED_MAX) as u16))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::inflate::Inflater;

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
            let mut inflater = Inflater::new();
            let mut output = Vec::with_capacity(len + 1);
            assert_eq!(inflater.inflate(&wire, &mut output), Ok(wire.len()));
            assert_eq!(output, payload, "{len}");
            assert_eq!(inflater.finish(), Ok(()));
        }
    }
}

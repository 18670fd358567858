//! Frame headers, both directions (RFC 6455 section 5.2): parsed from what a client sends,
//! written for what the server sends, and the masking every client frame carries.
//!
//! The server's frames are whole messages or control frames (never fragmented), unmasked,
//! with RSV1 set on a message when permessage-deflate was agreed (see `deflate.rs`).

use crate::protocol::fault::Fault;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

/// The longest frame header: 2 bytes, 8 of extended length, 4 of mask key.
pub const MAX_HEADER: usize = 14;

/// Frame opcodes.
pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xa;

/// RSV1: the message is compressed (permessage-deflate), on its first frame only.
pub const RSV1: u8 = 0x40;

/// The most a control frame may carry.
pub const MAX_CONTROL: usize = 125;

/// A frame header as the client sent it (or as the server sends one: `server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Bytes of the header itself.
    pub size: usize,
    pub payload: u64,
    pub fin: bool,
    /// RSV1-3 as they stand in the first byte (`0x70` masks them).
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
}

impl Header {
    /// The header at the start of `bytes`, or `None` while it is incomplete.
    // Inlined into the frame reader every message goes through, whoever else calls it: a call
    // cost 47 instructions per echo (callgrind).
    #[inline(always)]
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

    /// A control frame (close, ping, pong, or a reserved control opcode).
    pub fn is_control(&self) -> bool {
        self.opcode >= 0x8
    }

    /// The header of a whole frame the server sends: FIN, no mask, RSV1 when `compressed`.
    pub fn server(opcode: u8, compressed: bool, payload: u64) -> Header {
        Header {
            size: 0,
            payload,
            fin: true,
            rsv: if compressed { RSV1 } else { 0 },
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

/// A whole server frame in one buffer: for frames encoded once and shared (broadcasts) and
/// for control frames.
pub fn encode(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut head = [0u8; MAX_HEADER];
    let head_len = Header::server(opcode, false, payload.len() as u64).write(&mut head);
    let mut frame = Vec::with_capacity(head_len + payload.len());
    frame.extend_from_slice(&head[..head_len]);
    frame.extend_from_slice(payload);
    frame
}

/// A close frame's payload: the code, then the reason (cut to fit a control frame, at a
/// character boundary).
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CONTROL - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    payload
}

/// A close frame's payload as the close it is: none, or a code the protocol allows and a
/// UTF-8 reason.
pub fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, Fault> {
    match payload {
        [] => Ok(None),
        [_] => Err(Fault::Protocol("a close frame of one byte")),
        [high, low, reason @ ..] => {
            // The reason first, as tungstenite checks them (the differential fuzz target).
            let reason = std::str::from_utf8(reason).map_err(|_| Fault::Utf8)?;
            let code = CloseCode::from(u16::from_be_bytes([*high, *low]));
            if !code.is_allowed() {
                return Err(Fault::Protocol("a close code the protocol does not allow"));
            }
            Ok(Some(CloseFrame {
                code,
                reason: reason.into(),
            }))
        }
    }
}

/// XOR `payload` with the client's mask `key` (the payload starts at offset 0 of the key):
/// sixteen bytes at a time on x86-64, then eight, then one.
pub fn unmask(payload: &mut [u8], key: [u8; 4]) {
    let rest = unmask_wide(payload, key);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = rest.chunks_exact_mut(8);
    for chunk in &mut words {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (byte, key) in words.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= key;
    }
}

/// Unmask `payload` sixteen bytes at a time with SSE2 (every x86-64 has it), returning the
/// bytes left over. Written out because the release build is optimised for size, which
/// leaves loops unvectorised: eight bytes a step made unmasking 8% of the server's time in a
/// wss stream of 64 KiB messages. A lane is a multiple of 4 bytes, so what is left starts at
/// the key's first byte.
#[cfg(target_arch = "x86_64")]
fn unmask_wide(payload: &mut [u8], key: [u8; 4]) -> &mut [u8] {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_set1_epi32, _mm_storeu_si128, _mm_xor_si128,
    };
    // SAFETY: SSE2 is part of x86-64, so every x86-64 machine runs it.
    let mask = unsafe { _mm_set1_epi32(i32::from_ne_bytes(key)) };
    let mut lanes = payload.chunks_exact_mut(16);
    for lane in &mut lanes {
        let lane = lane.as_mut_ptr().cast::<__m128i>();
        // SAFETY: as above for SSE2; `lane` points at 16 bytes this function holds
        // exclusively, and the unaligned load and store take any alignment.
        unsafe { _mm_storeu_si128(lane, _mm_xor_si128(_mm_loadu_si128(lane), mask)) };
    }
    lanes.into_remainder()
}

/// Append `masked` to `out`, unmasked with `key` (the payload starts at offset 0 of the key),
/// with no zeroed room made for it first. How a big message's payload leaves the spill buffer
/// it was read into (`reader.rs`).
pub fn unmask_onto(out: &mut Vec<u8>, masked: &[u8], key: [u8; 4]) {
    let wide = unmask_wide_onto(out, masked, key);
    let at = out.len();
    out.extend_from_slice(&masked[wide..]);
    unmask(&mut out[at..], key);
}

/// Append the first whole sixteen-byte lanes of `masked` to `out`, unmasked, in one pass with
/// SSE2: each lane is loaded, XORed and stored in `out`'s spare room. A copy and then an
/// unmask in place went over a 64 KiB message twice. Returns how many bytes it took (a
/// multiple of 16, so what is left starts at the key's first byte).
#[cfg(target_arch = "x86_64")]
fn unmask_wide_onto(out: &mut Vec<u8>, masked: &[u8], key: [u8; 4]) -> usize {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_set1_epi32, _mm_storeu_si128, _mm_xor_si128,
    };
    let wide = masked.len() - masked.len() % 16;
    out.reserve(wide);
    // SAFETY: SSE2 is part of x86-64, so every x86-64 machine runs it.
    let mask = unsafe { _mm_set1_epi32(i32::from_ne_bytes(key)) };
    let room = out.spare_capacity_mut();
    for (to, from) in room.chunks_exact_mut(16).zip(masked.chunks_exact(16)) {
        let (to, from) = (
            to.as_mut_ptr().cast::<__m128i>(),
            from.as_ptr().cast::<__m128i>(),
        );
        // SAFETY: as above for SSE2; `from` is 16 bytes of `masked`, `to` 16 bytes of room
        // this function holds exclusively, and the unaligned load and store take any
        // alignment.
        unsafe { _mm_storeu_si128(to, _mm_xor_si128(_mm_loadu_si128(from), mask)) };
    }
    // SAFETY: `reserve` made room for `wide` bytes, and the loop wrote all of them (it ran
    // once for each of the `wide / 16` lanes of `masked`).
    unsafe { out.set_len(out.len() + wide) };
    wide
}

/// Elsewhere the eight-byte steps do it all.
#[cfg(not(target_arch = "x86_64"))]
fn unmask_wide(payload: &mut [u8], _key: [u8; 4]) -> &mut [u8] {
    payload
}

#[cfg(not(target_arch = "x86_64"))]
fn unmask_wide_onto(_out: &mut Vec<u8>, _masked: &[u8], _key: [u8; 4]) -> usize {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_written_parses_back_with_every_length_form() {
        for payload in [0, 1, 125, 126, 0xffff, 0x1_0000, 1 << 40] {
            for (fin, rsv, opcode, mask) in [
                (true, 0, TEXT, Some([1, 2, 3, 4])),
                (false, RSV1, BINARY, None),
                (true, 0, PING, Some([0, 0, 0, 0])),
            ] {
                let header = Header {
                    size: 0,
                    payload,
                    fin,
                    rsv,
                    opcode,
                    mask,
                };
                let mut out = [0u8; MAX_HEADER];
                let len = header.write(&mut out);
                let parsed = Header::parse(&out[..len]).unwrap();
                assert_eq!(
                    parsed,
                    Header {
                        size: len,
                        ..header
                    }
                );
                assert_eq!(Header::parse(&out[..len - 1]), None, "incomplete");
            }
        }
    }

    #[test]
    fn a_close_payload_is_cut_to_a_control_frame_at_a_character_boundary() {
        let reason = "é".repeat(100);
        let payload = close_payload(1001, &reason);
        assert!(payload.len() <= MAX_CONTROL);
        assert_eq!(&payload[..2], &[0x03, 0xe9]);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
        assert_eq!(close_payload(1000, ""), vec![0x03, 0xe8]);
    }

    #[test]
    fn unmasking_twice_gives_the_bytes_back_at_any_length() {
        for len in (0..140).chain([4096, 65_537]) {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut masked = bytes.clone();
            unmask(&mut masked, [9, 8, 7, 6]);
            for (i, byte) in masked.iter().enumerate() {
                assert_eq!(*byte, bytes[i] ^ [9, 8, 7, 6][i % 4]);
            }
            unmask(&mut masked, [9, 8, 7, 6]);
            assert_eq!(masked, bytes);
        }
    }

    #[test]
    fn unmasking_onto_a_message_appends_what_unmasking_in_place_gives() {
        for len in (0..140).chain([4096, 65_537]) {
            let masked: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
            let mut expected = masked.clone();
            unmask(&mut expected, [1, 2, 3, 4]);
            let mut message = b"before".to_vec();
            unmask_onto(&mut message, &masked, [1, 2, 3, 4]);
            assert_eq!(&message[..6], b"before", "{len}");
            assert_eq!(&message[6..], &expected[..], "{len}");
        }
    }
}

//! permessage-deflate end to end: what the upgrade agrees to, compressed messages echoed (plain),
//! and the close codes for compressed data that does not inflate or inflates too big.
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use wsecho::Config;

/// What Chrome, Firefox and Python websockets offer.
const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
const AGREED: &str =
    "\r\nSec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n";

/// `payload` compressed as a client sends it: raw deflate, flushed, without the final
/// `00 00 ff ff`.
fn deflated(payload: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), Default::default());
    encoder.write_all(payload).unwrap();
    encoder.flush().unwrap();
    let mut out = encoder.get_ref().clone();
    out.truncate(out.len() - 4);
    out
}

/// A masked client frame of a compressed message: RSV1 set.
fn compressed_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = client_frame(opcode, &deflated(payload));
    frame[0] |= 0x40;
    frame
}

/// The next message from the server: (opcode, payload), inflated if it came compressed (RSV1).
fn read_message(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).expect("a frame");
    assert_eq!(head[0] & 0x80, 0x80, "one frame per message");
    let len = match head[1] & 0x7f {
        126 => {
            let mut extended = [0u8; 2];
            stream.read_exact(&mut extended).unwrap();
            u16::from_be_bytes(extended) as usize
        }
        127 => {
            let mut extended = [0u8; 8];
            stream.read_exact(&mut extended).unwrap();
            u64::from_be_bytes(extended) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).unwrap();
    if head[0] & 0x40 != 0 {
        payload.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
        // wsecho does not compress (stored blocks): what comes out is no bigger.
        let mut inflated = Vec::with_capacity(payload.len());
        let mut inflater = flate2::Decompress::new(false);
        inflater
            .decompress_vec(&payload, &mut inflated, flate2::FlushDecompress::Sync)
            .expect("inflates");
        assert_eq!(
            inflater.total_in(),
            payload.len() as u64,
            "all of it inflated"
        );
        payload = inflated;
    }
    (head[0] & 0x0f, payload)
}

/// The close code the server's last frame carries, once it hangs up.
fn close_code(stream: &mut TcpStream) -> u16 {
    let frames = parse_server_frames(&read_to_close(stream));
    let (_, opcode, payload) = frames.last().expect("a close frame");
    assert_eq!(*opcode, 0x8, "{frames:?}");
    u16::from_be_bytes([payload[0], payload[1]])
}

#[test]
fn an_offer_is_agreed_to_and_compressed_messages_come_back_whole() {
    let server = start(config());
    let mut stream = tcp(server.ws_addr());
    let head = upgrade_with(&mut stream, OFFER);
    assert!(head.contains(AGREED), "{head}");
    let text = "compressible text, over and over; ".repeat(5_000);
    let binary: Vec<u8> = (0..300_000u32).map(|i| (i / 3 % 256) as u8).collect();
    let messages: [(u8, &[u8], bool); 5] = [
        (0x1, text.as_bytes(), true),
        (0x2, &binary, true),
        (0x1, b"small", true),
        (0x1, b"sent uncompressed", false),
        (0x2, b"", true),
    ];
    for (opcode, payload, compress) in messages {
        let frame = if compress {
            compressed_frame(opcode, payload)
        } else {
            client_frame(opcode, payload)
        };
        stream.write_all(&frame).unwrap();
        assert_eq!(read_message(&mut stream), (opcode, payload.to_vec()));
    }
    server.shutdown();
}

#[test]
fn without_an_offer_or_with_no_deflate_nothing_is_agreed_and_rsv1_is_refused() {
    let server = start(config());
    let mut stream = tcp(server.ws_addr());
    let head = upgrade_with(&mut stream, "");
    assert!(!head.contains("Sec-WebSocket-Extensions"), "{head}");
    server.shutdown();

    let server = start(Config {
        deflate: false,
        ..config()
    });
    let mut stream = tcp(server.ws_addr());
    let head = upgrade_with(&mut stream, OFFER);
    assert!(!head.contains("Sec-WebSocket-Extensions"), "{head}");
    stream.write_all(&compressed_frame(0x1, b"hello")).unwrap();
    assert_eq!(close_code(&mut stream), 1002);
    server.shutdown();
}

#[test]
fn data_that_does_not_inflate_gets_1007_and_a_bomb_1009_and_others_carry_on() {
    let server = start(Config {
        max_message_size: 1 << 20,
        ..config()
    });
    let mut bystander = tcp(server.ws_addr());
    upgrade_with(&mut bystander, OFFER);

    let mut corrupt = tcp(server.ws_addr());
    upgrade_with(&mut corrupt, OFFER);
    let mut frame = client_frame(0x2, &[0xff, 0xff, 0xff, 0xff]);
    frame[0] |= 0x40;
    corrupt.write_all(&frame).unwrap();
    assert_eq!(close_code(&mut corrupt), 1007);

    // 4 MiB of zeros in a few KB: stopped at the 1 MiB limit.
    let mut bomber = tcp(server.ws_addr());
    upgrade_with(&mut bomber, OFFER);
    bomber
        .write_all(&compressed_frame(0x2, &vec![0; 4 << 20]))
        .unwrap();
    assert_eq!(close_code(&mut bomber), 1009);

    bystander
        .write_all(&compressed_frame(0x1, b"still here"))
        .unwrap();
    assert_eq!(read_message(&mut bystander), (0x1, b"still here".to_vec()));
    server.shutdown();
}

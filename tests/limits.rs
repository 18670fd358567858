//! Limits and timeouts: oversized messages, silent or slow clients, keepalive.
mod common;

use common::*;
use std::io::{Read, Write};
use std::time::Duration;
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;
use wsecho::Config;

#[test]
fn an_oversized_message_gets_1009_and_nobody_else_notices() {
    let server = start(Config {
        max_message_size: 1000,
        ..config()
    });
    let mut bystander = connect(&server);
    let mut offender = connect(&server);
    bystander.send(Message::text("before")).unwrap();
    assert_eq!(next_message(&mut bystander), Message::text("before"));

    offender.send(Message::binary(vec![7u8; 1000])).unwrap();
    assert_eq!(
        next_message(&mut offender),
        Message::binary(vec![7u8; 1000]),
        "the limit itself is fine"
    );
    offender.send(Message::binary(vec![7u8; 1001])).unwrap();
    assert_eq!(expect_close(&mut offender), CloseCode::Size);

    bystander.send(Message::text("after")).unwrap();
    assert_eq!(next_message(&mut bystander), Message::text("after"));
    server.shutdown();
}

#[test]
fn an_oversized_fragmented_message_gets_1009_too() {
    use tungstenite::protocol::frame::Frame;
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    let server = start(Config {
        max_message_size: 1000,
        ..config()
    });
    let mut client = connect(&server);
    for (opcode, fin) in [
        (Data::Text, false),
        (Data::Continue, false),
        (Data::Continue, true),
    ] {
        let fragment = Frame::message("x".repeat(400), OpCode::Data(opcode), fin);
        client.write(Message::Frame(fragment)).unwrap();
    }
    client.flush().unwrap();
    assert_eq!(expect_close(&mut client), CloseCode::Size);
    server.shutdown();
}

/// Send `bytes` on a fresh upgraded connection; return the code of the server's close frame.
fn close_code_after(bytes: &[u8]) -> u16 {
    let server = start(config());
    let mut stream = raw_upgraded(server.ws_addr());
    stream.write_all(bytes).unwrap();
    let frames = parse_server_frames(&read_to_close(&mut stream));
    server.shutdown();
    let (_, opcode, payload) = frames.last().expect("a close frame");
    assert_eq!(*opcode, 0x8, "{frames:?}");
    u16::from_be_bytes([payload[0], payload[1]])
}

#[test]
fn invalid_utf8_in_text_gets_1007() {
    assert_eq!(
        close_code_after(&client_frame(0x1, &[0x68, 0xff, 0x69])),
        1007
    );
}

#[test]
fn a_protocol_violation_gets_1002() {
    // An unmasked frame from a client is forbidden.
    assert_eq!(close_code_after(&[0x81, 0x02, b'h', b'i']), 1002);
}

#[test]
fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let server = start(Config {
        handshake_timeout: Duration::from_millis(300),
        ..config()
    });
    let mut silent = tcp(server.ws_addr());
    let answer = read_to_close(&mut silent);
    assert_eq!(status_of(&answer), 408);

    let mut half = tcp(server.ws_addr());
    half.write_all(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    assert_eq!(status_of(&read_to_close(&mut half)), 408);
    server.shutdown();
}

#[test]
fn a_client_trickling_its_request_cannot_outlast_the_handshake_timeout() {
    let server = start(Config {
        handshake_timeout: Duration::from_millis(500),
        ..config()
    });
    let mut trickler = tcp(server.ws_addr());
    trickler
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut answer = Vec::new();
    // Up to 100 bytes, one per 100 ms: without an overall deadline this would take 10 s and
    // the request would still be incomplete.
    for byte in b"GET /echo HTTP/1.1\r\nX-Slow: ".iter().cycle().take(100) {
        if trickler.write_all(&[*byte]).is_err() {
            break;
        }
        let mut chunk = [0u8; 512];
        match trickler.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
    }
    assert_eq!(status_of(&answer), 408);
    server.shutdown();
}

#[test]
fn a_client_that_never_answers_pings_is_closed_with_1011() {
    let server = start(Config {
        ping_interval: Duration::from_millis(200),
        ..config()
    });
    let mut mute = raw_upgraded(server.ws_addr());
    let frames = parse_server_frames(&read_to_close(&mut mute));
    let pings = frames
        .iter()
        .filter(|(_, opcode, _)| *opcode == 0x9)
        .count();
    assert_eq!(pings, 1, "one ping, then the close: {frames:?}");
    let (_, opcode, payload) = frames.last().unwrap();
    assert_eq!(*opcode, 0x8);
    assert_eq!(&payload[..2], &1011u16.to_be_bytes());
    server.shutdown();
}

#[test]
fn a_client_that_answers_pings_stays_connected() {
    let server = start(Config {
        ping_interval: Duration::from_millis(100),
        ..config()
    });
    let mut client = connect(&server);
    // Six pings answered (reading sends tungstenite's automatic pong) span six intervals,
    // three times the silence that would close a mute client.
    for _ in 0..6 {
        assert!(matches!(client.read().unwrap(), Message::Ping(_)));
    }
    client.send(Message::text("still here")).unwrap();
    assert_eq!(next_message(&mut client), Message::text("still here"));
    server.shutdown();
}

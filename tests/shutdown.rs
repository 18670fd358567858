//! Shutdown from the library: every connection, whatever it is doing, is woken and finishes.
mod common;

use common::*;
use std::io::Write;
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

#[test]
fn echoes_before_the_1001_are_whole_and_in_order() {
    let server = start(config());
    let mut client = connect(&server);
    for i in 0..200 {
        client.write(Message::text(format!("message {i}"))).unwrap();
    }
    client.flush().unwrap();
    assert_eq!(next_message(&mut client), Message::text("message 0"));
    let summary = server.shutdown();
    // Whatever was echoed is a prefix of what was sent; then the server says goodbye.
    let mut expected = 1;
    loop {
        match client.read().expect("echoes, then a close frame") {
            Message::Text(text) => {
                assert_eq!(text.as_str(), format!("message {expected}"));
                expected += 1;
            }
            Message::Close(frame) => {
                assert_eq!(frame.unwrap().code, CloseCode::Away);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(summary.closed_at_shutdown, 1);
    assert_eq!(summary.stragglers, 0);
}

#[test]
fn connections_still_in_their_opening_are_woken_too() {
    let server = start(config());
    // Silent, half-sent, and idle-after-upgrade connections: none may hold shutdown up for
    // its timeout (10 s handshake, 30 s ping), which would leave it unfinished.
    let _silent = tcp(server.ws_addr());
    let mut half = tcp(server.ws_addr());
    half.write_all(b"GET /echo HTTP/1.1\r\n").unwrap();
    let mut idle = connect(&server);
    assert!(eventually(|| server.open_connections() == 3));
    let summary = server.shutdown();
    assert_eq!(summary.closed_at_shutdown, 3);
    assert_eq!(summary.stragglers, 0);
    assert_eq!(expect_close(&mut idle), CloseCode::Away);
}

#[test]
fn page_connections_are_woken_too() {
    let server = start(config());
    // An idle keep-alive connection and a half-sent request would each hold the page for the
    // handshake timeout (10 s), which would leave them unfinished.
    let mut kept = tcp(server.http_addr().unwrap());
    kept.write_all(b"GET /favicon.svg HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = [0u8; 15];
    std::io::Read::read_exact(&mut kept, &mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200 OK");
    let mut half = tcp(server.http_addr().unwrap());
    half.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    assert!(eventually(|| server.open_page_connections() == 2));
    let summary = server.shutdown();
    assert_eq!(summary.stragglers, 0);
}

#[test]
fn after_shutdown_nothing_listens() {
    let server = start(config());
    let (ws, http) = (server.ws_addr(), server.http_addr().unwrap());
    server.shutdown();
    // Every listener is closed by the time shutdown returns.
    assert!(std::net::TcpStream::connect(ws).is_err());
    assert!(std::net::TcpStream::connect(http).is_err());
}

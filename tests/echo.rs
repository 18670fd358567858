//! Echo semantics: byte-exact, in order, any size, fragmented or not; pings; quit; close.
mod common;

use common::*;
use std::io::Write;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::{Error, Message};

const SIZES: [usize; 7] = [0, 1, 125, 126, 65535, 65536, 1 << 20];

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn text_comes_back_as_text_at_every_size() {
    let server = start(config());
    let mut client = connect(&server);
    for size in SIZES {
        let text: String = (0..size).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        client.send(Message::text(text.clone())).unwrap();
        match next_message(&mut client) {
            Message::Text(echo) => assert_eq!(echo.as_str(), text, "size {size}"),
            other => panic!("size {size}: expected text, got {other:?}"),
        }
    }
    server.shutdown();
}

#[test]
fn binary_comes_back_as_binary_at_every_size() {
    let server = start(config());
    let mut client = connect(&server);
    for size in SIZES {
        client.send(Message::binary(pattern(size))).unwrap();
        match next_message(&mut client) {
            Message::Binary(echo) => assert_eq!(echo.as_ref(), pattern(size), "size {size}"),
            other => panic!("size {size}: expected binary, got {other:?}"),
        }
    }
    server.shutdown();
}

#[test]
fn a_thousand_messages_come_back_in_order() {
    let server = start(config());
    let mut client = connect(&server);
    for i in 0..1000 {
        client.write(Message::text(format!("message {i}"))).unwrap();
    }
    client.flush().unwrap();
    for i in 0..1000 {
        assert_eq!(
            next_message(&mut client),
            Message::text(format!("message {i}"))
        );
    }
    server.shutdown();
}

#[test]
fn fragmented_messages_come_back_whole_with_pings_between_fragments() {
    let server = start(config());
    let mut client = connect(&server);
    let fragments = [
        Frame::message("Hel", OpCode::Data(Data::Text), false),
        Frame::ping(b"mid".to_vec()),
        Frame::message("lo, ", OpCode::Data(Data::Continue), false),
        Frame::message("world", OpCode::Data(Data::Continue), true),
    ];
    for fragment in fragments {
        client.write(Message::Frame(fragment)).unwrap();
    }
    client.flush().unwrap();
    assert_eq!(
        client.read().unwrap(),
        Message::Pong(b"mid".to_vec().into())
    );
    assert_eq!(next_message(&mut client), Message::text("Hello, world"));

    let binary = [
        Frame::message(vec![1, 2], OpCode::Data(Data::Binary), false),
        Frame::message(vec![3], OpCode::Data(Data::Continue), true),
    ];
    for fragment in binary {
        client.write(Message::Frame(fragment)).unwrap();
    }
    client.flush().unwrap();
    assert_eq!(next_message(&mut client), Message::binary(vec![1, 2, 3]));
    server.shutdown();
}

#[test]
fn pings_are_answered_with_the_same_payload() {
    let server = start(config());
    let mut client = connect(&server);
    client
        .send(Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    assert_eq!(
        client.read().unwrap(),
        Message::Pong(b"are you there".to_vec().into())
    );
    server.shutdown();
}

#[test]
fn quit_closes_with_1000_and_is_not_echoed() {
    let server = start(config());
    let mut client = connect(&server);
    client.send(Message::text("before")).unwrap();
    assert_eq!(next_message(&mut client), Message::text("before"));
    client.send(Message::text("quit")).unwrap();
    assert_eq!(expect_close(&mut client), CloseCode::Normal);
    // Our reply completes the handshake; the server then ends the TCP connection.
    match client.read() {
        Err(Error::ConnectionClosed) => {}
        Ok(message) => panic!("nothing may follow the close, got {message:?}"),
        Err(error) => panic!("close handshake did not complete cleanly: {error}"),
    }
    server.shutdown();
}

#[test]
fn quit_in_binary_or_with_extra_text_is_echoed() {
    let server = start(config());
    let mut client = connect(&server);
    for message in [Message::binary(b"quit".to_vec()), Message::text("quit ")] {
        client.send(message.clone()).unwrap();
        assert_eq!(next_message(&mut client), message);
    }
    server.shutdown();
}

#[test]
fn a_close_from_the_client_completes_the_handshake() {
    let server = start(config());
    let mut client = connect(&server);
    client.close(None).unwrap();
    loop {
        match client.read() {
            Ok(Message::Close(_)) => continue,
            Err(Error::ConnectionClosed) => break,
            other => panic!("expected the close handshake to complete, got {other:?}"),
        }
    }
    server.shutdown();
}

#[test]
fn frames_sent_right_behind_the_request_are_not_lost() {
    let server = start(config());
    let mut stream = tcp(server.ws_addr());
    let mut bytes = upgrade_request("/echo", "").into_bytes();
    bytes.extend(client_frame(0x1, b"eager"));
    bytes.extend(client_frame(0x1, b"quit"));
    // The reply to the server's close, as a browser sends it.
    bytes.extend(client_frame(0x8, &1000u16.to_be_bytes()));
    stream.write_all(&bytes).unwrap();
    let received = read_to_close(&mut stream);
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(status_of(&received), 101);
    let frames = parse_server_frames(&received[head_end..]);
    assert_eq!(frames[0], (true, 0x1, b"eager".to_vec()));
    assert_eq!(frames[1].1, 0x8, "then the close for quit");
    assert_eq!(&frames[1].2[..2], &1000u16.to_be_bytes());
    server.shutdown();
}

#[test]
fn after_quit_the_server_waits_for_the_close_reply_before_hanging_up() {
    use std::io::Read;
    use std::time::Duration;
    let server = start(config());
    let mut stream = raw_upgraded(server.ws_addr());
    stream.write_all(&client_frame(0x1, b"quit")).unwrap();
    let mut close = [0u8; 8];
    stream.read_exact(&mut close[..2]).unwrap();
    assert_eq!(close[0], 0x88, "a close frame");
    let len = close[1] as usize;
    stream.read_exact(&mut close[2..2 + len]).unwrap();
    assert_eq!(&close[2..4], &1000u16.to_be_bytes());
    // The connection stays up for our reply (a Flash client sends it through a bridge that
    // would drop it if the server hung up first)...
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let early = stream.read(&mut close);
    assert!(
        early.is_err(),
        "the server hung up before the reply: {early:?}"
    );
    // ...and ends once it has it.
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
        .write_all(&client_frame(0x8, &1000u16.to_be_bytes()))
        .unwrap();
    assert!(read_to_close(&mut stream).is_empty());
    server.shutdown();
}

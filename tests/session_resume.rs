//! Sessions carried by a WebSocket (subprotocol `wsecho.session`): a client that offers it gets
//! a session, one that does not gets today's protocol; a WebSocket that drops leaves the
//! session waiting, and the client that comes back within the window gets exactly what it
//! missed, in order, once, while the handler notices nothing.
mod common;

use common::session::{Record, parse, records};
use common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};
use wsecho::Config;

type Ws = WebSocket<std::net::TcpStream>;

/// A WebSocket to `path` offering the session subprotocol; the subprotocol answered.
fn offering(addr: SocketAddr, path: &str) -> (Ws, Option<String>) {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "wsecho.session".parse().unwrap());
    let (socket, response) = tungstenite::client::client(request, tcp(addr)).unwrap();
    let protocol = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|value| value.to_str().unwrap().to_string());
    (socket, protocol)
}

/// Say `first` (open, or resume) and read the hello.
fn hello(socket: &mut Ws, first: &str) -> Value {
    socket.send(Message::text(first)).unwrap();
    match next_message(socket) {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected the hello, got {other:?}"),
    }
}

/// The next record (each comes in a binary message of its own).
fn next_record(socket: &mut Ws) -> Record {
    match next_message(socket) {
        Message::Binary(bytes) => parse(&bytes).remove(0),
        other => panic!("expected a record, got {other:?}"),
    }
}

fn chat_text(record: &Record) -> Value {
    serde_json::from_str(&record.text()).unwrap()
}

#[test]
fn a_client_offering_wsecho_session_gets_one_and_any_other_gets_plain_websocket() {
    let server = start(config());
    let (mut socket, protocol) = offering(server.ws_addr(), "/echo");
    assert_eq!(protocol.as_deref(), Some("wsecho.session"));
    let hello = hello(&mut socket, "open");
    assert_eq!(hello["session"].as_str().unwrap().len(), 32);
    assert_eq!(
        (hello["window"].clone(), hello["received"].clone()),
        (json!(30), json!(0))
    );
    socket
        .send(Message::binary(records(&[
            ('t', 1, b"hi"),
            ('b', 2, &[7, 8]),
        ])))
        .unwrap();
    let (first, second) = (next_record(&mut socket), next_record(&mut socket));
    assert_eq!(
        (first.kind, first.seq, first.text()),
        ('t', 1, "hi".to_string())
    );
    assert_eq!((second.kind, second.payload), ('b', vec![7, 8]));
    socket.send(Message::text("ack 3")).unwrap();
    assert_eq!(next_message(&mut socket), Message::text("received 2"));
    let mut plain = connect(&server);
    plain.send(Message::text("plain")).unwrap();
    assert_eq!(next_message(&mut plain), Message::text("plain"));
}

#[test]
fn a_dropped_websocket_comes_back_for_exactly_what_it_missed() {
    let server = start(config());
    let (mut away, _) = offering(server.ws_addr(), "/chat");
    let id = hello(&mut away, "open")["session"]
        .as_str()
        .unwrap()
        .to_string();
    let join = json!({"type": "join", "name": "away"}).to_string();
    away.send(Message::binary(records(&[('t', 1, join.as_bytes())])))
        .unwrap();
    let welcome = next_record(&mut away);
    assert_eq!(chat_text(&welcome)["type"], "welcome");
    let mut talker = connect_to(server.ws_addr(), "/chat").unwrap();
    talker
        .send(Message::text(
            json!({"type": "join", "name": "talker"}).to_string(),
        ))
        .unwrap();
    assert_eq!(
        chat_text_of(&mut talker)["members"],
        json!(["away", "talker"])
    );
    let joined = next_record(&mut away);
    assert_eq!(chat_text(&joined)["type"], "joined");
    // The network drops: no close frame.
    away.get_ref().shutdown(std::net::Shutdown::Both).unwrap();
    drop(away);
    for n in 1..=20 {
        let say = json!({"type": "say", "text": format!("while away {n}")});
        talker.send(Message::text(say.to_string())).unwrap();
        assert_eq!(chat_text_of(&mut talker)["type"], "said");
    }
    let (mut back, _) = offering(server.ws_addr(), "/chat");
    let hello = hello(&mut back, &format!("resume {id} {}", joined.seq + 1));
    assert_eq!(hello["received"], json!(1), "the join was delivered");
    let missed: Vec<Value> = (0..20)
        .map(|_| chat_text(&next_record(&mut back)))
        .collect();
    let texts: Vec<&str> = missed.iter().map(|m| m["text"].as_str().unwrap()).collect();
    let expected: Vec<String> = (1..=20).map(|n| format!("while away {n}")).collect();
    assert_eq!(texts, expected);
    // Nobody saw it leave: the talker's next message is its own, and the room still has two.
    back.send(Message::binary(records(&[(
        't',
        2,
        json!({"type": "say", "text": "back"})
            .to_string()
            .as_bytes(),
    )])))
    .unwrap();
    let said = chat_text_of(&mut talker);
    assert_eq!(
        (said["type"].clone(), said["from"].clone()),
        (json!("said"), json!("away"))
    );
    assert_eq!(server.room("chat").len(), 2);
    assert_eq!(metric_of(&server, "wsecho_session_resumes_total"), 1);
}

#[test]
fn a_closed_websocket_ends_its_session_and_a_resume_elsewhere_or_too_late_is_refused() {
    let server = start(Config {
        resume_window: Duration::from_secs(1),
        ..config()
    });
    let (mut leaving, _) = offering(server.ws_addr(), "/chat");
    hello(&mut leaving, "open");
    let join = json!({"type": "join", "name": "leaving"}).to_string();
    leaving
        .send(Message::binary(records(&[('t', 1, join.as_bytes())])))
        .unwrap();
    next_record(&mut leaving);
    let mut witness = connect_to(server.ws_addr(), "/chat").unwrap();
    witness
        .send(Message::text(
            json!({"type": "join", "name": "witness"}).to_string(),
        ))
        .unwrap();
    chat_text_of(&mut witness);
    // A page that goes away closes its WebSocket: the member leaves at once.
    leaving.close(None).unwrap();
    let left = chat_text_of(&mut witness);
    assert_eq!(
        (left["type"].clone(), left["name"].clone()),
        (json!("left"), json!("leaving"))
    );

    let (mut dropped, _) = offering(server.ws_addr(), "/echo");
    let id = hello(&mut dropped, "open")["session"]
        .as_str()
        .unwrap()
        .to_string();
    dropped
        .get_ref()
        .shutdown(std::net::Shutdown::Both)
        .unwrap();
    // From another address: no such session.
    let mut request = format!("ws://{}/echo", server.ws_addr())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "wsecho.session".parse().unwrap());
    let elsewhere = tcp_from(std::net::Ipv4Addr::new(127, 0, 0, 3), server.ws_addr());
    let (mut thief, _) = tungstenite::client::client(request, elsewhere).unwrap();
    thief.send(Message::text(format!("resume {id} 1"))).unwrap();
    assert_eq!(u16::from(expect_close(&mut thief)), 4404);
    // Past the window: gone.
    assert!(eventually(|| metric_of(
        &server,
        "wsecho_sessions_lost_total"
    ) == 1));
    let (mut late, _) = offering(server.ws_addr(), "/echo");
    late.send(Message::text(format!("resume {id} 1"))).unwrap();
    assert_eq!(u16::from(expect_close(&mut late)), 4404);
}

fn chat_text_of(client: &mut Client) -> Value {
    serde_json::from_str(next_message(client).to_text().unwrap()).unwrap()
}

fn metric_of(server: &wsecho::Server, name: &str) -> i64 {
    let answer = common::session::request(server.http_addr().unwrap(), "GET", "/metrics", "", b"");
    answer
        .text()
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |value| value.trim().parse().unwrap())
}

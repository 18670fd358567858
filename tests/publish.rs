//! Publishing from a backend: `POST /publish/NAME` on the page port reaches every member of
//! room NAME (`/rooms/NAME` on the WebSocket port) once and in order, and nobody else; the
//! token, the body's length and the size limit are checked before the body is read.
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::SocketAddr;
use tungstenite::Message;
use wsecho::{Config, Server};

const TOKEN: &str = "s3cret-token";

fn publishing() -> Config {
    Config {
        publish_token: Some(TOKEN.to_string()),
        ..config()
    }
}

/// One HTTP request to the page; the status and the body of the answer.
fn post(page: SocketAddr, name: &str, headers: &str, body: &[u8]) -> (u16, String) {
    let mut stream = tcp(page);
    let head = format!(
        "POST /publish/{name} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Length: {}\r\n{headers}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let answer = read_to_close(stream);
    let text = String::from_utf8_lossy(&answer).to_string();
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status_of(&answer), body)
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

fn member(server: &Server, room: &str) -> Client {
    connect_to(server.ws_addr(), &format!("/rooms/{room}")).unwrap()
}

#[test]
fn every_member_hears_each_published_message_once_in_order_and_other_rooms_hear_nothing() {
    let server = start(publishing());
    let page = server.http_addr().unwrap();
    let mut members: Vec<Client> = (0..3).map(|_| member(&server, "news")).collect();
    let mut elsewhere = member(&server, "sport");
    assert!(eventually(|| server.room("news").len() == 3));
    assert!(eventually(|| server.room("sport").len() == 1));
    for n in 0..20 {
        let (status, body) = post(page, "news", &bearer(TOKEN), format!("item {n}").as_bytes());
        assert_eq!(status, 200, "{body}");
        assert_eq!(body.trim(), r#"{"room":"news","members":3}"#);
    }
    for member in &mut members {
        for n in 0..20 {
            assert_eq!(next_message(member), Message::text(format!("item {n}")));
        }
    }
    // The other room's first message is its own: none of the news reached it.
    let (status, _) = post(page, "sport", &bearer(TOKEN), b"goal");
    assert_eq!(status, 200);
    assert_eq!(next_message(&mut elsewhere), Message::text("goal"));
    // Binary when the backend says so.
    let headers = format!(
        "{}Content-Type: application/octet-stream\r\n",
        bearer(TOKEN)
    );
    assert_eq!(post(page, "news", &headers, &[0, 159, 255]).0, 200);
    assert_eq!(
        next_message(&mut members[0]),
        Message::binary(vec![0u8, 159, 255])
    );
    // Counted.
    let metrics = raw_exchange(
        page,
        b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("wsecho_publishes_total 22"), "{metrics}");
    server.shutdown();
}

#[test]
fn a_backend_may_publish_again_on_the_same_connection() {
    let server = start(publishing());
    let mut listener = member(&server, "feed");
    assert!(eventually(|| server.room("feed").len() == 1));
    let mut stream = tcp(server.http_addr().unwrap());
    let one = format!(
        "POST /publish/feed HTTP/1.1\r\nHost: x\r\n{}Content-Length: 3\r\n\r\none",
        bearer(TOKEN)
    );
    let two = format!(
        "POST /publish/feed HTTP/1.1\r\nHost: x\r\n{}Content-Length: 3\r\nConnection: close\r\n\r\ntwo",
        bearer(TOKEN)
    );
    // Both at once: the second request follows the first body in the same read.
    stream.write_all(format!("{one}{two}").as_bytes()).unwrap();
    let answers = String::from_utf8_lossy(&read_to_close(stream)).to_string();
    assert_eq!(answers.matches("HTTP/1.1 200").count(), 2, "{answers}");
    assert_eq!(next_message(&mut listener), Message::text("one"));
    assert_eq!(next_message(&mut listener), Message::text("two"));
    server.shutdown();
}

#[test]
fn a_wrong_or_missing_token_gets_401_and_no_token_file_means_404() {
    let server = start(publishing());
    let page = server.http_addr().unwrap();
    let mut listener = member(&server, "news");
    assert_eq!(post(page, "news", &bearer("guess"), b"x").0, 401);
    assert_eq!(post(page, "news", &bearer(&TOKEN[..5]), b"x").0, 401);
    assert_eq!(post(page, "news", "", b"x").0, 401);
    assert_eq!(post(page, "bad name!", &bearer(TOKEN), b"x").0, 400);
    assert_eq!(post(page, "bad!name", &bearer(TOKEN), b"x").0, 404);
    // Nothing got through: the first message it hears is this one.
    assert_eq!(post(page, "news", &bearer(TOKEN), b"real").0, 200);
    assert_eq!(next_message(&mut listener), Message::text("real"));
    server.shutdown();

    let server = start(config());
    assert_eq!(
        post(server.http_addr().unwrap(), "news", &bearer(TOKEN), b"x").0,
        404
    );
    // And no room to listen to either.
    assert!(connect_to(server.ws_addr(), "/rooms/news").is_err());
    server.shutdown();
}

#[test]
fn a_body_over_the_limit_gets_413_before_it_is_read() {
    let server = start(Config {
        max_message_size: 1 << 20,
        memory_budget: 8 << 20,
        ..publishing()
    });
    let mut stream = tcp(server.http_addr().unwrap());
    let head = format!(
        "POST /publish/news HTTP/1.1\r\nHost: x\r\n{}Content-Length: {}\r\n\r\n",
        bearer(TOKEN),
        20 << 20
    );
    stream.write_all(head.as_bytes()).unwrap();
    // Not one byte of the 20 MiB body sent: the answer comes anyway.
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413");
    // Chunked or lengthless bodies are refused too.
    let mut stream = tcp(server.http_addr().unwrap());
    let head = format!(
        "POST /publish/news HTTP/1.1\r\nHost: x\r\n{}Transfer-Encoding: chunked\r\n\r\n",
        bearer(TOKEN)
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 411");
    server.shutdown();
}

#[test]
fn a_room_name_outside_the_rules_is_not_a_room() {
    let server = start(publishing());
    let too_long = "x".repeat(65);
    for path in [
        "/rooms/",
        "/rooms/a%20b",
        &format!("/rooms/{too_long}"),
        "/rooms/a/b",
    ] {
        let error = connect_to(server.ws_addr(), path).err();
        assert!(error.is_some(), "{path} was accepted");
    }
    assert!(connect_to(server.ws_addr(), "/rooms/ok.name-1_2").is_ok());
    server.shutdown();
}

//! Request heads as RFC 9112 has them, on both ports: an HTTP/1.1 request without Host or with
//! two gets 400, and a head whose lines end with a lone LF is answered at once.
mod common;

use common::*;
use std::time::Duration;

const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

#[test]
fn without_host_or_with_two_both_ports_answer_400() {
    let server = start(config());
    let (ws, page) = (server.ws_addr(), server.http_addr().unwrap());
    for (addr, head) in [
        (ws, format!("GET /echo HTTP/1.1\r\n{UPGRADE}\r\n")),
        (
            ws,
            format!("GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n{UPGRADE}\r\n"),
        ),
        (
            page,
            "GET / HTTP/1.1\r\nConnection: close\r\n\r\n".to_string(),
        ),
        (
            page,
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n".to_string(),
        ),
    ] {
        let answer = String::from_utf8_lossy(&raw_exchange(addr, head.as_bytes())).into_owned();
        assert!(answer.starts_with("HTTP/1.1 400"), "{head:?}: {answer}");
        assert!(answer.contains("Host"), "{answer}");
    }
}

#[test]
fn a_head_with_lone_lf_line_ends_is_answered_at_once() {
    // Were the head not seen as complete, the server would wait this long for the rest, and
    // the client's own patience (10 s) would run out first.
    let server = start(wsecho::Config {
        handshake_timeout: Duration::from_secs(60),
        ..config()
    });
    let page = raw_exchange(
        server.http_addr().unwrap(),
        b"GET / HTTP/1.1\nHost: localhost\nConnection: close\n\n",
    );
    assert_eq!(status_of(&page), 200);
    let upgrade =
        format!("GET /echo HTTP/1.1\r\nHost: localhost\r\n{UPGRADE}\r\n").replace("\r\n", "\n");
    let answer = upgrade_answer(server.ws_addr(), upgrade.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
}

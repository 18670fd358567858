//! `--trusted-proxy`: behind a reverse proxy at 127.0.0.2, the client its `X-Forwarded-For`
//! names counts for `--max-per-address` and appears in the log, on both ports; from any other
//! address the header is ignored.
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Instant;

const PROXY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

fn spawn() -> Running {
    spawn_binary_with(
        env!("CARGO_BIN_EXE_wsecho"),
        &["--trusted-proxy", "127.0.0.2", "--max-per-address", "2"],
    )
}

/// Send `request` from `from` and return the answer head; the connection stays open.
fn ask(from: Ipv4Addr, to: SocketAddr, request: &str) -> (TcpStream, String) {
    let mut stream = tcp_from(from, to);
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let mut answer = String::from_utf8_lossy(&head).into_owned();
    if !answer.starts_with("HTTP/1.1 101") && !answer.starts_with("HTTP/1.1 200") {
        answer.push_str(&String::from_utf8_lossy(&read_to_close(&mut stream)));
    }
    (stream, answer)
}

fn upgrade_for(client: &str) -> String {
    upgrade_request("/echo", &format!("X-Forwarded-For: {client}\r\n"))
}

fn page_for(client: &str) -> String {
    format!("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: {client}\r\n\r\n")
}

/// Wait (bounded) for a log line containing `needle`.
fn logged(server: &Running, needle: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match server.log.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("no log line contains {needle:?}: {seen:#?}"),
        }
    }
}

#[test]
fn the_client_a_trusted_proxy_names_takes_the_place_and_the_log_line() {
    let server = spawn();
    let mut held = Vec::new();
    // Two from one client through the proxy: its share.
    for _ in 0..2 {
        let (stream, answer) = ask(PROXY, server.ws, &upgrade_for("203.0.113.7"));
        assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
        held.push(stream);
    }
    logged(&server, "open 203.0.113.7 via 127.0.0.2:");
    let (_, answer) = ask(PROXY, server.ws, &upgrade_for("203.0.113.7"));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("too many connections from your address"),
        "{answer}"
    );
    logged(&server, "refused 203.0.113.7 via 127.0.0.2:");
    // Other clients through the same proxy are not held back by it: the proxy has no share.
    for other in ["203.0.113.8", "203.0.113.9", "2001:db8::5"] {
        let (stream, answer) = ask(PROXY, server.ws, &upgrade_for(other));
        assert!(answer.starts_with("HTTP/1.1 101"), "{other}: {answer}");
        held.push(stream);
    }

    // The page port counts the same way.
    for _ in 0..2 {
        let (stream, answer) = ask(PROXY, server.http, &page_for("198.51.100.1"));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        held.push(stream);
    }
    let (_, answer) = ask(PROXY, server.http, &page_for("198.51.100.1"));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    logged(&server, "refused 198.51.100.1 via 127.0.0.2:");
    let (_, answer) = ask(PROXY, server.http, &page_for("198.51.100.2"));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn from_anyone_else_the_header_is_ignored() {
    let server = spawn();
    let mut held = Vec::new();
    let direct = Ipv4Addr::LOCALHOST;
    for client in ["203.0.113.1", "203.0.113.2"] {
        let (stream, answer) = ask(direct, server.ws, &upgrade_for(client));
        assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
        held.push(stream);
    }
    logged(&server, "open 127.0.0.1:");
    // A third from 127.0.0.1 is over its share, whatever it claims to be.
    let (_, answer) = ask(direct, server.ws, &upgrade_for("203.0.113.3"));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
}

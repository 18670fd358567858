//! The Flash bridge at the byte level: what Flash Player and web-socket-js 1.0's
//! WebSocketMain.swf send, byte for byte, and the checks they make on every answer.
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::SocketAddr;
use wsecho::{Config, Server};

fn flash_server() -> Server {
    start(Config {
        policy_port: Some(0),
        ..config()
    })
}

/// Flash's policy exchange: the request and its NUL; the reply is one XML document and a NUL,
/// then the server closes.
fn fetch_policy(addr: SocketAddr) -> String {
    let reply = raw_exchange(addr, b"<policy-file-request/>\0");
    let (nul, document) = reply.split_last().expect("a policy reply");
    assert_eq!(*nul, 0, "the policy must end with a NUL");
    String::from_utf8(document.to_vec()).expect("an ASCII policy")
}

/// The ports a policy served from `served_from` lets Flash open, checked the way Flash does:
/// a policy from a port >= 1024 may only grant ports >= 1024.
fn granted_ports(policy: &str, served_from: u16) -> Vec<u16> {
    let document = roxmltree::Document::parse(policy).expect("the policy parses as XML");
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "cross-domain-policy");
    let mut ports = Vec::new();
    for grant in root
        .children()
        .filter(|n| n.has_tag_name("allow-access-from"))
    {
        assert_eq!(grant.attribute("domain"), Some("*"));
        for entry in grant.attribute("to-ports").expect("to-ports").split(',') {
            let port: u16 = entry
                .trim()
                .parse()
                .expect("a single port, not a range or *");
            if served_from >= 1024 {
                assert!(
                    port >= 1024,
                    "a policy from port {served_from} cannot grant {port}"
                );
            }
            ports.push(port);
        }
    }
    ports
}

#[test]
fn the_policy_flash_reads_grants_the_websocket_port_on_both_ports() {
    let server = flash_server();
    let ws_port = server.ws_addr().port();
    let policy_addr = server.policy_addr().unwrap();
    for served_from in [policy_addr, server.ws_addr()] {
        let policy = fetch_policy(served_from);
        assert_eq!(granted_ports(&policy, served_from.port()), vec![ws_port]);
    }
    server.shutdown();
}

/// A Sec-WebSocket-Key like the SWF's: the base64 of 16 bytes each in 0..127 (this one is
/// "the sample nonce", RFC 6455's example).
const SWF_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The SWF's handshake, exactly as observed: no User-Agent, `Cookie:` even when empty.
fn swf_handshake(server: &Server, key: &str) -> String {
    let ws = server.ws_addr();
    let origin = format!("http://127.0.0.1:{}", server.http_addr().unwrap().port());
    format!(
        "GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nOrigin: {origin}\r\nSec-WebSocket-Version: 13\r\n\
         Cookie: \r\n\r\n",
        ws.port()
    )
}

/// The checks WebSocketMain.swf makes on the answer before it fires `onopen`.
fn assert_swf_accepts(head: &str, key: &str) {
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let header = |name: &str| {
        head.lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} header in {head}"))
    };
    assert!(header("Upgrade").eq_ignore_ascii_case("websocket"));
    // One token only: the SWF rejects `Upgrade, keep-alive`.
    assert!(header("Connection").eq_ignore_ascii_case("upgrade"));
    let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
    assert_eq!(header("Sec-WebSocket-Accept"), expected);
}

#[test]
fn the_swf_handshake_echo_and_empty_close_work_and_only_whole_text_frames_come_back() {
    let server = flash_server();
    let key = SWF_KEY;
    let mut stream = tcp(server.ws_addr());
    stream
        .write_all(swf_handshake(&server, key).as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert_swf_accepts(&String::from_utf8(head).unwrap(), key);

    // Masked text frames only, as the SWF sends them; one longer than a 64 KiB frame length.
    let long = "x".repeat(70_000);
    let messages = ["hello flash", "ünïcode ✓", long.as_str()];
    for message in messages {
        stream
            .write_all(&client_frame(0x1, message.as_bytes()))
            .unwrap();
    }
    // The SWF closes with an empty close frame (the server sees 1005).
    stream.write_all(&client_frame(0x8, b"")).unwrap();
    let frames = parse_server_frames(&read_to_close(&mut stream));

    let (close, data) = frames.split_last().expect("frames");
    assert_eq!(close.1, 0x8, "the close handshake completes");
    assert!(close.2.is_empty() || close.2[..2] == 1000u16.to_be_bytes());
    assert_eq!(data.len(), messages.len());
    for ((fin, opcode, payload), message) in data.iter().zip(messages) {
        // The SWF closes with 1003 on a binary frame, and cannot join fragments.
        assert!(*fin, "never fragmented");
        assert_eq!(*opcode, 0x1, "text only");
        assert_eq!(payload.as_slice(), message.as_bytes());
    }
    server.shutdown();
}

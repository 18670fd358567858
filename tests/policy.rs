//! The Flash socket policy: on its own port and inline on the WebSocket port.
mod common;

use common::*;
use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;
use wsecho::Config;

fn with_policy_port() -> Config {
    Config {
        policy_port: Some(0),
        ..config()
    }
}

/// The reply must be one NUL-terminated XML document granting exactly the WebSocket port.
fn assert_grants(reply: &[u8], ws_port: u16) {
    let (last, document) = reply.split_last().expect("a reply");
    assert_eq!(*last, 0, "the policy ends with one NUL");
    let document = std::str::from_utf8(document).expect("ASCII policy");
    assert!(!document.contains('\0'));
    assert!(document.starts_with("<?xml version=\"1.0\"?>"));
    assert!(
        document.contains("<cross-domain-policy>") && document.ends_with("</cross-domain-policy>")
    );
    assert!(
        document.contains(&format!(
            "<allow-access-from domain=\"*\" to-ports=\"{ws_port}\"/>"
        )),
        "{document}"
    );
}

#[test]
fn the_policy_port_answers_and_closes() {
    let server = start(with_policy_port());
    let policy = server.policy_addr().expect("a policy listener");
    let reply = raw_exchange(policy, b"<policy-file-request/>\0");
    assert_grants(&reply, server.ws_addr().port());
    server.shutdown();
}

#[test]
fn the_websocket_port_answers_inline() {
    let server = start(config());
    let reply = raw_exchange(server.ws_addr(), b"<policy-file-request/>\0");
    assert_grants(&reply, server.ws_addr().port());
    server.shutdown();
}

#[test]
fn the_flash_7_request_is_answered_too() {
    let server = start(with_policy_port());
    let reply = raw_exchange(server.policy_addr().unwrap(), b"<cross-domain-request/>\0");
    assert_grants(&reply, server.ws_addr().port());
    server.shutdown();
}

#[test]
fn the_domain_flag_is_granted() {
    let server = start(Config {
        policy_domain: "example.com".into(),
        ..config()
    });
    let reply = raw_exchange(server.ws_addr(), b"<policy-file-request/>\0");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("domain=\"example.com\""), "{text}");
    server.shutdown();
}

#[test]
fn the_policy_port_answers_nothing_else() {
    let server = start(with_policy_port());
    let policy = server.policy_addr().unwrap();
    assert!(raw_exchange(policy, upgrade_request("/echo", "").as_bytes()).is_empty());
    assert!(raw_exchange(policy, b"<not-a-policy-request/>\0").is_empty());
    server.shutdown();
}

#[test]
fn an_unfinished_policy_request_is_dropped_after_the_handshake_timeout() {
    let server = start(Config {
        handshake_timeout: Duration::from_millis(300),
        ..with_policy_port()
    });
    let mut stream = tcp(server.policy_addr().unwrap());
    stream.write_all(b"<policy-file-").unwrap();
    // No policy for half a request: the server hangs up (within PATIENCE, or this panics).
    let reply = read_to_close(&mut stream);
    assert!(
        !reply.contains(&0),
        "no policy was sent: {:?}",
        String::from_utf8_lossy(&reply)
    );
    server.shutdown();
}

#[test]
fn an_unavailable_policy_port_is_a_warning_not_a_failure() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = start(Config {
        policy_port: Some(taken.local_addr().unwrap().port()),
        ..config()
    });
    assert_eq!(server.policy_addr(), None);
    // Flash can still get its policy inline, and the page is told to ask there.
    let reply = raw_exchange(server.ws_addr(), b"<policy-file-request/>\0");
    assert_grants(&reply, server.ws_addr().port());
    let config_json = raw_exchange(
        server.http_addr().unwrap(),
        b"GET /config.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(String::from_utf8_lossy(&config_json).contains("\"policyPort\":null"));
    server.shutdown();
}

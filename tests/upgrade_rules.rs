//! What the WebSocket port says to requests it will not upgrade, and which Origins it accepts.
mod common;

use common::*;
use wsecho::Config;

fn answer(config: Config, request: &str) -> String {
    let server = start(config);
    let response = upgrade_answer(server.ws_addr(), request.as_bytes());
    server.shutdown();
    response
}

#[test]
fn only_the_served_paths_upgrade() {
    let response = answer(config(), &upgrade_request("/nope", ""));
    assert_eq!(status_of(response.as_bytes()), 404);
    assert!(response.contains("connect to /echo or /chat"), "{response}");
    let response = answer(config(), &upgrade_request("/chat", ""));
    assert_eq!(status_of(response.as_bytes()), 101);
}

#[test]
fn a_query_string_does_not_change_the_path() {
    let response = answer(config(), &upgrade_request("/echo?room=1", ""));
    assert_eq!(status_of(response.as_bytes()), 101);
}

#[test]
fn plain_http_gets_426_with_an_explanation() {
    let response = answer(config(), "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(status_of(response.as_bytes()), 426);
    assert!(response.contains("Upgrade: websocket\r\n"));
    assert!(response.contains("WebSocket only"), "{response}");
}

#[test]
fn only_get_upgrades() {
    let request = upgrade_request("/echo", "").replacen("GET", "POST", 1);
    assert_eq!(status_of(answer(config(), &request).as_bytes()), 405);
}

#[test]
fn other_protocol_versions_are_told_to_use_13() {
    let request = upgrade_request("/echo", "").replace("Version: 13", "Version: 8");
    let response = answer(config(), &request);
    assert_eq!(status_of(response.as_bytes()), 426);
    assert!(response.contains("Sec-WebSocket-Version: 13\r\n"));
}

#[test]
fn a_bad_key_or_connection_header_gets_400() {
    let bad_key = upgrade_request("/echo", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "short");
    assert_eq!(status_of(answer(config(), &bad_key).as_bytes()), 400);
    let no_connection =
        upgrade_request("/echo", "").replace("Connection: Upgrade", "Connection: keep-alive");
    assert_eq!(status_of(answer(config(), &no_connection).as_bytes()), 400);
}

#[test]
fn garbage_gets_400_and_an_endless_head_gets_431() {
    assert_eq!(
        status_of(answer(config(), "HELLO?\r\n\r\n").as_bytes()),
        400
    );
    let huge = format!(
        "GET /echo HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    assert_eq!(status_of(answer(config(), &huge).as_bytes()), 431);
}

#[test]
fn connection_header_may_list_several_tokens() {
    let request = upgrade_request("/echo", "")
        .replace("Connection: Upgrade", "Connection: keep-alive, Upgrade");
    assert_eq!(status_of(answer(config(), &request).as_bytes()), 101);
}

#[test]
fn no_origin_is_accepted() {
    assert_eq!(
        status_of(answer(config(), &upgrade_request("/echo", "")).as_bytes()),
        101
    );
}

#[test]
fn an_origin_on_the_same_host_is_accepted_on_any_port() {
    let request = upgrade_request("/echo", "Origin: http://127.0.0.1:8080\r\n");
    assert_eq!(status_of(answer(config(), &request).as_bytes()), 101);
}

#[test]
fn a_foreign_origin_gets_403_naming_the_fix() {
    let request = upgrade_request("/echo", "Origin: http://evil.example\r\n");
    let response = answer(config(), &request);
    assert_eq!(status_of(response.as_bytes()), 403);
    assert!(
        response.contains("`allowed_origins`: http://evil.example"),
        "{response}"
    );
}

#[test]
fn allow_origin_widens_the_rule() {
    let request = upgrade_request("/echo", "Origin: http://app.example:3000\r\n");
    let listed = Config {
        allowed_origins: vec!["http://app.example:3000".into()],
        ..config()
    };
    assert_eq!(status_of(answer(listed, &request).as_bytes()), 101);
    let any = Config {
        allowed_origins: vec!["*".into()],
        ..config()
    };
    assert_eq!(status_of(answer(any, &request).as_bytes()), 101);
}

#[test]
fn the_accept_key_is_the_rfc_value() {
    let response = answer(config(), &upgrade_request("/echo", ""));
    // RFC 6455 section 1.3's example key and its answer.
    assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(response.contains("Upgrade: websocket\r\n"));
    assert!(response.contains("Connection: Upgrade\r\n"));
}

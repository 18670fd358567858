//! Client text that could act on a terminal is escaped in answers and in the log; with an
//! allow-list of host names (`--host`), a request for any other host is refused on both ports.
mod common;

use common::*;
use std::net::SocketAddr;
use wsecho::Config;

/// A path with a C1 control (CSI) and a right-to-left override, as raw UTF-8.
const HOSTILE_PATH: &str = "/\u{9b}31m\u{202e}RED";

fn has_raw_controls(text: &str) -> bool {
    text.contains('\u{9b}') || text.contains('\u{202e}')
}

#[test]
fn a_hostile_path_is_escaped_in_the_answer_and_in_the_log() {
    let server = spawn_binary(env!("CARGO_BIN_EXE_wsecho"));
    let answer = upgrade_answer(server.ws, upgrade_request(HOSTILE_PATH, "").as_bytes());
    assert_eq!(status_of(answer.as_bytes()), 404);
    assert!(!has_raw_controls(&answer), "{answer:?}");
    assert!(answer.contains("/\\u{9b}31m\\u{202e}RED"), "{answer:?}");

    let page = String::from_utf8_lossy(&raw_exchange(
        server.http,
        format!("POST {HOSTILE_PATH} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    ))
    .into_owned();
    assert_eq!(status_of(page.as_bytes()), 405);

    let mut lines = Vec::new();
    while lines.len() < 2 {
        let line = server
            .log
            .recv_timeout(PATIENCE)
            .expect("the refusal lines");
        if line.contains("refused") {
            lines.push(line);
        }
    }
    for line in lines {
        assert!(!has_raw_controls(&line), "{line:?}");
        assert!(line.contains("\\u{9b}31m\\u{202e}RED"), "{line:?}");
    }
}

fn request_with_host(path: &str, host: &str, upgrade: bool) -> String {
    if upgrade {
        upgrade_request(path, &format!("Origin: http://{host}\r\n")).replacen(
            "Host: 127.0.0.1",
            &format!("Host: {host}"),
            1,
        )
    } else {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    }
}

fn status_for(addr: SocketAddr, request: &str) -> u16 {
    status_of(upgrade_answer(addr, request.as_bytes()).as_bytes())
}

#[test]
fn with_an_allow_list_other_hosts_are_refused_on_both_ports() {
    // A DNS-rebinding page: its own name for our address, and an Origin to match.
    let rebound = "rebind.evil.test";
    let open = start(config());
    assert_eq!(
        status_for(open.ws_addr(), &request_with_host("/echo", rebound, true)),
        101,
        "without --host every host is answered (the default)"
    );
    open.shutdown();

    let server = start(Config {
        allowed_hosts: vec!["localhost".into()],
        ..config()
    });
    let upgrade = request_with_host("/echo", rebound, true);
    let answer = upgrade_answer(server.ws_addr(), upgrade.as_bytes());
    assert_eq!(status_of(answer.as_bytes()), 421, "{answer}");
    assert!(answer.contains("answers only for localhost"), "{answer}");
    assert_eq!(
        status_for(
            server.ws_addr(),
            &request_with_host("/echo", rebound, false)
        ),
        421
    );
    let page = raw_exchange(
        server.http_addr().unwrap(),
        request_with_host("/", rebound, false).as_bytes(),
    );
    assert_eq!(status_of(&page), 421);

    let port = server.ws_addr().port();
    let local = format!("localhost:{port}");
    assert_eq!(
        status_for(server.ws_addr(), &request_with_host("/echo", &local, true)),
        101
    );
    let page = raw_exchange(
        server.http_addr().unwrap(),
        request_with_host("/", "LOCALHOST", false).as_bytes(),
    );
    assert_eq!(status_of(&page), 200);
    server.shutdown();
}

//! `jwt_key` (`--jwt-key-file`): every WebSocket upgrade and every session opened over HTTP
//! must bring a token signed with the key; its `sub` reaches handlers and `--run` programs.
//! Tokens are made here as README tells a user to: with its Python one-liner.
mod common;

use common::session::request;
use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use tungstenite::Message;
use wsecho::{Config, Connection, Error, Program, Routes, Server};

const KEY: &str = "a key of thirty-two bytes, or so";

/// README's one-liner, run as given, with the key file and the claims' `sub` (and an `exp`
/// an hour ahead). `extra` adds claims or overrides them, as Python dict members
/// (`"nbf":4000000000`).
fn token(subject: &str, extra: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let line = readme
        .lines()
        .find(|line| line.starts_with("python3 -c 'import base64,hashlib,hmac"))
        .expect("README's token one-liner");
    // Written once: tests run in parallel, and one rewriting the file while another's
    // one-liner reads it gave that one an empty key.
    static KEY_FILE: OnceLock<PathBuf> = OnceLock::new();
    let key = KEY_FILE.get_or_init(|| {
        let key = scratch("jwt").join("jwt.key");
        std::fs::write(&key, format!("{KEY}\n")).unwrap();
        key
    });
    let mut command = line.replace(" jwt.key alice", &format!(" {} {subject}", key.display()));
    if !extra.is_empty() {
        // Last, so that they win over the one-liner's own.
        let end = "+3600}";
        assert!(
            command.contains(end),
            "the one-liner's claims changed: {line}"
        );
        command = command.replace(end, &format!("+3600,{extra}}}"));
    }
    let made = run(Command::new("sh").args(["-c", &command]));
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    String::from_utf8(made.stdout).unwrap().trim().to_string()
}

/// Tells the client who its token says it is.
fn who(client: &mut Connection) -> Result<(), Error> {
    client.send(Message::text(client.subject().unwrap_or("nobody")))
}

fn server() -> Server {
    let config = Config {
        jwt_key: Some(KEY.as_bytes().to_vec()),
        programs: vec![Program {
            path: "/program".to_string(),
            command: vec![
                "sh".into(),
                "-c".into(),
                "echo \"$AUTH_TYPE $REMOTE_USER\"".into(),
            ],
            binary: false,
        }],
        ..config()
    };
    Server::start_with(config, Routes::new().route("/who", who)).expect("server starts")
}

/// The upgrade's answer: its status line and the rest of its head.
fn upgrade(server: &Server, target: &str, extra: &str) -> String {
    upgrade_answer(server.ws_addr(), upgrade_request(target, extra).as_bytes())
}

#[test]
fn a_valid_token_in_the_query_a_header_or_the_cookie_names_the_client() {
    let server = server();
    let alice = token("alice", "");
    let url = format!("ws://{}/who?token={alice}", server.ws_addr());
    let (mut client, _) = tungstenite::connect(url).expect("upgrade with a token");
    assert_eq!(next_message(&mut client), Message::text("alice"));

    for extra in [
        format!("Authorization: Bearer {alice}\r\n"),
        format!("Cookie: theme=dark; wsecho_token={alice}\r\n"),
    ] {
        let answer = upgrade(&server, "/who", &extra);
        assert!(answer.starts_with("HTTP/1.1 101"), "{extra}: {answer}");
    }

    let url = format!(
        "ws://{}/program?token={}",
        server.ws_addr(),
        token("bob", "")
    );
    let (mut program, _) = tungstenite::connect(url).expect("upgrade with a token");
    assert_eq!(next_message(&mut program), Message::text("Bearer bob"));
}

#[test]
fn a_missing_forged_expired_early_or_unsigned_token_gets_401_with_its_reason() {
    let server = server();
    let forged = {
        let good = token("mallory", "");
        let (signed, _) = good.rsplit_once('.').unwrap();
        format!("{signed}.{}", "A".repeat(43))
    };
    let unsigned = {
        let good = token("mallory", "");
        let payload = good.split('.').nth(1).unwrap().to_string();
        // {"alg":"none"}
        format!("eyJhbGciOiJub25lIn0.{payload}.")
    };
    for (target, says) in [
        ("/who".to_string(), "a token is required"),
        (format!("/who?token={forged}"), "signature does not match"),
        (
            format!("/who?token={}", token("eve", "\"exp\":1000")),
            "expired",
        ),
        (
            format!("/who?token={}", token("eve", "\"nbf\":4000000000")),
            "not valid yet",
        ),
        (format!("/who?token={unsigned}"), "only HS256"),
        ("/who?token=rubbish".to_string(), "not a JWT"),
    ] {
        let answer = upgrade(&server, &target, "");
        assert!(answer.starts_with("HTTP/1.1 401"), "{target}: {answer}");
        assert!(answer.contains("WWW-Authenticate: Bearer"), "{answer}");
        assert!(answer.contains(says), "{target}: {answer}");
    }
}

#[test]
fn a_session_over_http_needs_the_token_too() {
    let server = server();
    let page = server.http_addr().unwrap();
    let refused = request(page, "POST", "/session/open/who", "", b"");
    assert_eq!(refused.status, 401, "{}", refused.text());
    let target = format!("/session/open/who?token={}", token("carol", ""));
    let opened = request(page, "POST", &target, "", b"");
    assert_eq!(opened.status, 200, "{}", opened.text());
}

#[test]
fn the_binary_refuses_a_short_key_and_a_missing_file_with_the_fix() {
    let folder = scratch("jwt-key");
    let short = folder.join("short.key");
    std::fs::write(&short, "too short\n").unwrap();
    for (file, says) in [
        (short.display().to_string(), "at least 16 bytes"),
        (
            folder.join("missing.key").display().to_string(),
            "cannot read the key file",
        ),
    ] {
        let out = run(Command::new(env!("CARGO_BIN_EXE_wsecho")).args(["--jwt-key-file", &file]));
        assert_eq!(out.status.code(), Some(2));
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains(says), "{said}");
    }
}

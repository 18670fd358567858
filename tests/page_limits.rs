//! The page port under attack: bodies declared and never sent, huge lengths, endless and
//! unfinished heads, clients that pipeline and never read, a full cap. Whatever one client
//! does, the page keeps answering everyone else and the process lives.
mod common;

use common::*;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;
use tungstenite::Message;
use wsecho::Config;

/// `GET path` on a fresh connection that asks to close; the status and body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let response = String::from_utf8_lossy(&raw_exchange(addr, request.as_bytes())).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (status_of(head.as_bytes()), body.to_string())
}

/// Read one whole answer (head and `Content-Length` body) from a kept-alive connection.
fn read_answer(stream: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("an answer head");
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = text
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .expect("a content-length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0; length];
    stream.read_exact(&mut body).expect("the body");
    (status_of(&head), body)
}

fn assert_echoes(server: &wsecho::Server) {
    let mut client = connect(server);
    client.send(Message::text("still here")).unwrap();
    assert_eq!(next_message(&mut client), Message::text("still here"));
}

#[test]
fn a_huge_content_length_is_refused_without_reading_or_allocating_it() {
    let server = start(config());
    let request = b"GET /favicon.svg HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\n";
    let answer =
        String::from_utf8_lossy(&raw_exchange(server.http_addr().unwrap(), request)).into_owned();
    assert_eq!(status_of(answer.as_bytes()), 413, "{answer}");
    assert!(answer.contains("99999999999999 bytes"), "{answer}");
    // The process (this test) is still alive, and both ports still serve.
    assert_eq!(get(server.http_addr().unwrap(), "/").0, 200);
    assert_echoes(&server);
    server.shutdown();
}

#[test]
fn bodies_and_malformed_lengths_are_refused_with_one_line() {
    let server = start(config());
    for (extra, status) in [
        ("Content-Length: 5\r\n", 413),
        ("Transfer-Encoding: chunked\r\n", 413),
        ("Content-Length: -1\r\n", 400),
        ("Content-Length: 0\r\n", 200),
    ] {
        let request = format!("GET / HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
        let answer = raw_exchange(server.http_addr().unwrap(), request.as_bytes());
        assert_eq!(status_of(&answer), status, "{extra}");
        if status != 200 {
            let text = String::from_utf8_lossy(&answer).into_owned();
            let body = text.split_once("\r\n\r\n").unwrap().1;
            assert_eq!(body.lines().count(), 1, "{body}");
            assert!(text.contains("text/plain"), "{text}");
        }
    }
    server.shutdown();
}

#[test]
fn declared_bodies_never_sent_do_not_block_the_page() {
    let server = start(config());
    for attackers in [4, 40] {
        let mut held: Vec<TcpStream> = (0..attackers)
            .map(|_| {
                let mut stream = tcp(server.http_addr().unwrap());
                stream
                    .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
                    .unwrap();
                stream
            })
            .collect();
        // While every attacker still holds its connection open, a normal visitor is served.
        assert_eq!(
            get(server.http_addr().unwrap(), "/").0,
            200,
            "{attackers} attackers"
        );
        for stream in &mut held {
            let mut answer = [0u8; 12];
            stream.read_exact(&mut answer).expect("an answer");
            assert_eq!(&answer, b"HTTP/1.1 413");
        }
    }
    server.shutdown();
}

#[test]
fn a_client_that_pipelines_and_never_reads_stalls_nobody() {
    let server = start(Config {
        handshake_timeout: Duration::from_secs(1),
        ..config()
    });
    let mut greedy = tcp(server.http_addr().unwrap());
    let request = b"GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n";
    // 2000 requests (70 KB) fit in the socket buffers, so this write does not wait on us.
    greedy.write_all(&request.repeat(2000)).unwrap();
    for _ in 0..20 {
        let (status, body) = get(server.http_addr().unwrap(), "/");
        assert_eq!(status, 200);
        assert!(body.contains("app.js"));
    }
    // The greedy connection is dropped once its answers stop moving for the write timeout.
    assert!(
        eventually(|| server.open_page_connections() == 0),
        "the client that never reads is still connected"
    );
    server.shutdown();
}

#[test]
fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let server = start(config());
    let mut stream = tcp(server.http_addr().unwrap());
    stream
        .write_all(
            b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /nope HTTP/1.1\r\nHost: x\r\n\r\n\
              HEAD /app.js HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /config.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let (status, css) = read_answer(&mut stream);
    assert_eq!(status, 200);
    assert_eq!(css, fs::read(www().join("style.css")).unwrap());
    assert_eq!(read_answer(&mut stream).0, 404);
    // HEAD: the head announces the length, no body follows.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert_eq!(status_of(&head), 200);
    let (status, config) = read_answer(&mut stream);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&config).contains("wsPort"));
    // It asked to close, so the server closes.
    assert_eq!(read_to_close(&mut stream), b"");
    server.shutdown();
}

#[test]
fn a_head_over_8_kib_gets_431() {
    let server = start(config());
    let mut request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ".to_vec();
    request.extend(vec![b'a'; 9 * 1024]);
    let answer = raw_exchange(server.http_addr().unwrap(), &request);
    assert_eq!(status_of(&answer), 431);
    assert!(String::from_utf8_lossy(&answer).contains("8192 bytes"));
    server.shutdown();
}

#[test]
fn an_endless_request_line_is_cut_off_not_buffered() {
    let server = start(config());
    let mut stream = tcp(server.http_addr().unwrap());
    stream.write_all(b"GET /").unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    // The server stops reading after 8 KiB (and a bounded linger), then closes: writing
    // fails long before 64 MiB, where a server without a limit would take it all.
    let mut sent = 0usize;
    let refused = loop {
        match stream.write(&chunk) {
            Ok(n) => sent += n,
            Err(error) => break error,
        }
        assert!(
            sent < 64 << 20,
            "the server read 64 MiB of one request line"
        );
    };
    assert!(
        matches!(
            refused.kind(),
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
        ),
        "{refused}"
    );
    assert_eq!(get(server.http_addr().unwrap(), "/").0, 200);
    server.shutdown();
}

#[test]
fn an_unfinished_head_gets_408_after_the_timeout() {
    let server = start(Config {
        handshake_timeout: Duration::from_millis(300),
        ..config()
    });
    let answer = raw_exchange(
        server.http_addr().unwrap(),
        b"GET / HTTP/1.1\r\nHost: x\r\n",
    );
    assert_eq!(status_of(&answer), 408);
    server.shutdown();
}

/// A page folder with one large file: a client that asks for it and reads only the first bytes
/// keeps its connection busy (the server blocked writing), never idle.
fn site_with_a_large_file() -> PathBuf {
    let www = scratch("page-limits-large");
    fs::write(www.join("index.html"), "<h1>home</h1>").unwrap();
    // Far more than the socket buffers can hold (sparse: it costs no disk).
    let large = fs::File::create(www.join("large.bin")).unwrap();
    large.set_len(256 << 20).unwrap();
    www
}

#[test]
fn past_the_cap_with_nobody_idle_gets_503() {
    let www = site_with_a_large_file();
    let server = start(Config {
        www: Some(www.clone()),
        max_page_connections: 3,
        ..config()
    });
    let mut busy: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut stream = tcp(server.http_addr().unwrap());
            stream
                .write_all(b"GET /large.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            // Its answer has begun: the server is now writing, not waiting for a request.
            let mut status = [0u8; 12];
            stream.read_exact(&mut status).unwrap();
            assert_eq!(&status, b"HTTP/1.1 200");
            stream
        })
        .collect();
    assert_eq!(server.open_page_connections(), 3);
    let answer = String::from_utf8_lossy(&raw_exchange(
        server.http_addr().unwrap(),
        b"GET / HTTP/1.1\r\n\r\n",
    ))
    .into_owned();
    assert_eq!(status_of(answer.as_bytes()), 503, "{answer}");
    assert!(
        answer.contains("server busy: too many open connections"),
        "{answer}"
    );
    // WebSockets are counted apart: the page's full cap does not touch them.
    assert_echoes(&server);
    // Once a busy client leaves, a visitor gets in again.
    drop(busy.pop());
    assert!(eventually(|| get(server.http_addr().unwrap(), "/").0 == 200));
    drop(busy);
    server.shutdown();
    let _ = fs::remove_dir_all(www);
}

#[test]
fn dotfiles_and_dot_folders_are_not_served() {
    let www = scratch("page-dotfiles");
    fs::create_dir_all(www.join(".git")).unwrap();
    fs::write(www.join("index.html"), "<h1>home</h1>").unwrap();
    fs::write(www.join(".env"), "SECRET=1").unwrap();
    fs::write(www.join(".git/config"), "SECRET=2").unwrap();
    std::os::unix::fs::symlink(".env", www.join("env.txt")).unwrap();
    let server = start(Config {
        www: Some(www),
        ..config()
    });
    for path in [
        "/.env",
        "/%2eenv",
        "/.git/config",
        "/sub/../.env",
        "/env.txt",
    ] {
        let (status, body) = get(server.http_addr().unwrap(), path);
        assert_eq!(status, 404, "{path}");
        assert!(!body.contains("SECRET"), "{path} leaked");
    }
    assert_eq!(get(server.http_addr().unwrap(), "/").0, 200);
    server.shutdown();
}

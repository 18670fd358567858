//! Hundreds of idle page connections: the page still answers, they are closed after the
//! timeout, and their threads end. Alone in its file so the page threads counted are the
//! ones this test made.
mod common;

use common::*;
use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::Duration;
use wsecho::Config;

/// Threads of this process serving page connections (named `page-conn` by the server).
fn page_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "page-conn")
        .count()
}

/// What each page thread is doing (its kernel wait channel and system call), to tell why
/// one is still there.
fn page_thread_states() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let path = task.ok()?.path();
            let comm = std::fs::read_to_string(path.join("comm")).ok()?;
            (comm.trim() == "page-conn").then(|| {
                let read = |name| std::fs::read_to_string(path.join(name)).unwrap_or_default();
                format!("wchan={} syscall={}", read("wchan"), read("syscall").trim())
            })
        })
        .collect()
}

#[test]
fn idle_connections_cannot_keep_visitors_out_and_are_closed_after_the_timeout() {
    assert!(wsecho::raise_open_file_limit());
    let timeout = Duration::from_secs(3);
    // The default cap (256) is below the crowd: the idle ones make room for newcomers.
    let server = start(Config {
        handshake_timeout: timeout,
        ..config()
    });
    let mut idle: Vec<TcpStream> = (0..500).map(|_| tcp(server.http_addr().unwrap())).collect();
    let request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let answer = raw_exchange(server.http_addr().unwrap(), request);
    assert_eq!(
        status_of(&answer),
        200,
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // After the timeout every idle connection is closed, and its thread has ended.
    for stream in &mut idle {
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => {}
            Err(error) if error.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("an idle connection was not closed: {other:?}"),
        }
    }
    eventually(|| page_threads() == 0 && server.open_page_connections() == 0);
    assert_eq!(server.open_page_connections(), 0);
    assert_eq!(
        page_threads(),
        0,
        "page threads left after their connections closed: {:?}",
        page_thread_states()
    );
    server.shutdown();
}

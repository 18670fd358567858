//! `wsecho ping`: the binary against servers that echo, refuse, are absent, or do not echo.
mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tungstenite::{Error, Message};
use wsecho::{Connection, Routes, Server};

fn ping(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsecho"))
        .arg("ping")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (status.code(), text(stdout), text(stderr))
}

fn url(server: &Server, path: &str) -> String {
    format!("ws://{}{path}", server.ws_addr())
}

#[test]
fn every_echo_gets_a_line_and_the_summary_adds_them_up() {
    let server = start(config());
    let (code, out, _) = ping(&[
        &url(&server, "/echo"),
        "--count",
        "3",
        "--interval",
        "0.05",
        "--size",
        "100",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let replies: Vec<_> = out
        .lines()
        .filter(|l| l.starts_with("100 bytes from ws://"))
        .collect();
    assert_eq!(replies.len(), 3, "{out}");
    for (i, line) in replies.iter().enumerate() {
        assert!(
            line.contains(&format!("seq={} time=", i + 1)) && line.ends_with(" ms"),
            "{line}"
        );
    }
    assert!(out.contains("3 sent, 3 received, 0% lost"), "{out}");
    assert!(out.contains("rtt min/avg/max/mdev = "), "{out}");
    server.shutdown();
}

#[test]
fn a_refused_upgrade_an_absent_server_and_a_bad_url_are_explained() {
    let server = start(config());
    let (code, _, err) = ping(&[&url(&server, "/nope")]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("refused the WebSocket upgrade: HTTP 404"),
        "{err}"
    );
    server.shutdown();

    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, _, err) = ping(&[&format!("ws://{free}/echo")]);
    assert_eq!(code, Some(2));
    assert!(err.contains(&format!("cannot connect to {free}")), "{err}");
    assert!(err.contains("is the server running"), "{err}");

    let (code, _, err) = ping(&["http://127.0.0.1/echo"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("not a ws:// URL"), "{err}");
}

fn shouting(client: &mut Connection) -> Result<(), Error> {
    while let Some(message) = client.receive()? {
        client.send(Message::text(message.to_text()?.to_uppercase()))?;
    }
    Ok(())
}

fn mute(client: &mut Connection) -> Result<(), Error> {
    while client.receive()?.is_some() {}
    Ok(())
}

#[test]
fn a_server_that_does_not_echo_is_called_out() {
    let server = Server::start_with(config(), Routes::new().route("/echo", shouting)).unwrap();
    let (code, out, _) = ping(&[&url(&server, "/echo"), "--count", "2", "--interval", "0.05"]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("seq=1: the reply (32 bytes) is not what was sent: not an echo server?"),
        "{out}"
    );
    assert!(out.contains("2 replies were not echoes"), "{out}");
    server.shutdown();

    let server = Server::start_with(config(), Routes::new().route("/echo", mute)).unwrap();
    let (code, out, _) = ping(&[&url(&server, "/echo"), "--count", "5", "--timeout", "0.3"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("seq=1: no echo within 0.3 s"), "{out}");
    assert!(out.contains("1 sent, 0 received, 100% lost"), "{out}");
    server.shutdown();
}

#[test]
fn ctrl_c_prints_the_summary() {
    let server = start(config());
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsecho"))
        .args(["ping", &url(&server, "/echo"), "--interval", "0.05"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let next = || lines.recv_timeout(PATIENCE).expect("ping keeps printing");
    while !next().contains("seq=2 ") {}
    // SAFETY: kill(2) on our own child.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let mut rest = Vec::new();
    while let Ok(line) = lines.recv_timeout(PATIENCE) {
        rest.push(line);
    }
    assert!(child.wait().unwrap().success());
    let summary = rest.join("\n");
    assert!(summary.contains("ping statistics"), "{summary}");
    assert!(summary.contains("0% lost"), "{summary}");
    server.shutdown();
}

/// Echoes, then reports how the connection ended: the client's close code.
fn close_code(
    client: &mut Connection,
    heard: &std::sync::mpsc::Sender<Option<u16>>,
) -> Result<(), Error> {
    while let Some(message) = client.receive()? {
        client.send(message)?;
    }
    let code = match client.ending() {
        wsecho::Ending::ClosedByClient(code) => Some(*code),
        _ => None,
    };
    let _ = heard.send(code);
    Ok(())
}

#[test]
fn ping_ends_its_connection_with_a_normal_close() {
    let (heard, codes) = std::sync::mpsc::channel();
    let heard = std::sync::Mutex::new(heard);
    let routes = Routes::new().route("/echo", move |client: &mut Connection| {
        let heard = heard.lock().unwrap().clone();
        close_code(client, &heard)
    });
    let server = Server::start_with(config(), routes).unwrap();
    let (status, _, _) = ping(&["--count", "1", &url(&server, "/echo")]);
    assert_eq!(status, Some(0));
    assert_eq!(codes.recv_timeout(PATIENCE), Ok(Some(1000)));
}

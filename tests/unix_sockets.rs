//! Both ports on Unix stream sockets (`unix:PATH`), as behind nginx on the same host: the
//! echo and the page answer there, a proxy's `X-Forwarded-For` names the client when the
//! local peer is trusted, a restart closes clients with 1012, and the files go at exit.
mod common;

use common::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;
use wsecho::{Connection, Error, ListenAddr, Routes, Server};

/// A fresh folder for one test's sockets.
fn folder(name: &str) -> PathBuf {
    scratch(&format!("unix-{name}"))
}

fn on_unix_sockets(folder: &Path) -> wsecho::Config {
    wsecho::Config {
        ws: ListenAddr::Unix(folder.join("ws.sock")),
        http: Some(ListenAddr::Unix(folder.join("http.sock"))),
        // It would sit on the WebSocket port's IP, and there is none.
        policy_port: Some(0),
        ..config()
    }
}

fn unix(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path).expect("connect to the Unix socket");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

fn websocket(
    path: &Path,
    route: &str,
    headers: &[(&'static str, &str)],
) -> tungstenite::WebSocket<UnixStream> {
    use tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://localhost{route}")
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    let (client, _) = tungstenite::client(request, unix(path)).expect("upgrade over Unix");
    client
}

/// Tells the client its address as the server sees it.
fn tell_peer(client: &mut Connection) -> Result<(), Error> {
    client.send(Message::text(client.peer().to_string()))
}

#[test]
fn the_echo_and_the_page_answer_on_unix_sockets_and_their_files_go_at_shutdown() {
    let folder = folder("serve");
    let server = Server::start(on_unix_sockets(&folder)).expect("server starts");
    assert_eq!(
        server.ws_listen(),
        &ListenAddr::Unix(folder.join("ws.sock"))
    );
    assert_eq!(server.http_addr(), None);
    assert_eq!(server.policy_addr(), None);
    let mode = std::fs::metadata(folder.join("ws.sock")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o660
    );

    let mut client = websocket(&folder.join("ws.sock"), "/echo", &[]);
    client.send(Message::text("over a Unix socket")).unwrap();
    assert_eq!(
        next_message(&mut client),
        Message::text("over a Unix socket")
    );

    let mut page = unix(&folder.join("http.sock"));
    page.write_all(b"GET /config.json HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    page.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // No port of its own: the page connects through whatever serves it.
    assert!(answer.contains("\"wsPort\":null"), "{answer}");

    let summary = server.shutdown();
    assert_eq!(expect_close(&mut client), CloseCode::Away);
    assert_eq!(summary.closed_at_shutdown, 1);
    assert!(!folder.join("ws.sock").exists());
    assert!(!folder.join("http.sock").exists());
}

#[test]
fn behind_a_trusted_proxy_on_the_socket_the_client_is_the_one_it_names() {
    let folder = folder("proxy");
    let routes = Routes::new().route("/peer", tell_peer);
    let forwarded = [("X-Forwarded-For", "203.0.113.9")];

    let untrusted = Server::start_with(on_unix_sockets(&folder), routes.clone()).unwrap();
    let mut client = websocket(&folder.join("ws.sock"), "/peer", &forwarded);
    assert_eq!(next_message(&mut client), Message::text("127.0.0.1:0"));
    untrusted.shutdown();

    let trusting = wsecho::Config {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..on_unix_sockets(&folder)
    };
    let trusted = Server::start_with(trusting, routes).unwrap();
    let mut client = websocket(&folder.join("ws.sock"), "/peer", &forwarded);
    assert_eq!(next_message(&mut client), Message::text("203.0.113.9:0"));
    trusted.shutdown();
}

#[test]
fn a_restart_closes_every_client_with_1012() {
    let folder = folder("restart");
    let server = Server::start(on_unix_sockets(&folder)).unwrap();
    let mut clients: Vec<_> = (0..3)
        .map(|_| websocket(&folder.join("ws.sock"), "/echo", &[]))
        .collect();
    for client in &mut clients {
        client.send(Message::text("hi")).unwrap();
        assert_eq!(next_message(client), Message::text("hi"));
    }
    let trigger = server.trigger();
    trigger.will_restart();
    trigger.fire();
    let summary = server.wait();
    for client in &mut clients {
        assert_eq!(expect_close(client), CloseCode::Restart);
    }
    assert!(summary.restart);
    assert!(
        summary.to_string().contains("3 closed with 1012"),
        "{summary}"
    );
}

//! Routes: several paths with their own handlers and state, upgrades judged by the route
//! (tokens, cookies) and subprotocols chosen from what the client offers.
mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tungstenite::Message;
use wsecho::{Connection, Error, Refused, Route, Routes, Server, UpgradeRequest};

fn shout(client: &mut Connection) -> Result<(), Error> {
    while let Some(message) = client.receive()? {
        client.send(Message::text(message.to_text()?.to_uppercase()))?;
    }
    Ok(())
}

/// Says which subprotocol was chosen (or `none`), then echoes.
fn tell_protocol(client: &mut Connection) -> Result<(), Error> {
    let chosen = client.protocol().unwrap_or("none").to_string();
    client.send(Message::text(chosen))?;
    wsecho::handle_echo_client(client)
}

fn token_check(request: &UpgradeRequest) -> Result<(), Refused> {
    let token = request
        .query_param("token")
        .or_else(|| request.cookie("session"));
    match token {
        Some("letmein") => Ok(()),
        Some(_) => Err(Refused::forbidden("that token is not valid")),
        None => Err(Refused::unauthorized(
            "log in first: pass ?token=... or the session cookie",
        )),
    }
}

fn server() -> Server {
    let visits = Arc::new(AtomicUsize::new(0));
    let counter = move |client: &mut Connection| {
        let visit = visits.fetch_add(1, Ordering::SeqCst) + 1;
        client.send(Message::text(format!("visit {visit}")))
    };
    let routes = Routes::new()
        .route("/echo", wsecho::handle_echo_client)
        .route("/shout", shout)
        .route("/count", counter)
        .route("/private", Route::new(shout).check(token_check))
        .route(
            "/chat",
            Route::new(tell_protocol)
                .protocols(&["chat.v2", "chat.v1"])
                .require_protocol(),
        )
        .route("/maybe", Route::new(tell_protocol).protocols(&["fancy.v1"]));
    Server::start_with(config(), routes).expect("server starts")
}

#[test]
fn each_path_runs_its_own_handler_and_unknown_paths_name_the_others() {
    let server = server();
    let mut loud = connect_to(server.ws_addr(), "/shout").unwrap();
    loud.send(Message::text("hello")).unwrap();
    assert_eq!(next_message(&mut loud), Message::text("HELLO"));
    let mut echo = connect(&server);
    echo.send(Message::text("hello")).unwrap();
    assert_eq!(next_message(&mut echo), Message::text("hello"));

    let answer = upgrade_answer(server.ws_addr(), upgrade_request("/nope", "").as_bytes());
    assert_eq!(status_of(answer.as_bytes()), 404);
    assert!(
        answer.contains("connect to /echo, /shout, /count, /private, /chat or /maybe"),
        "{answer}"
    );
    server.shutdown();
}

#[test]
fn handler_state_is_shared_across_connections() {
    let server = server();
    let mut seen: Vec<String> = (0..5)
        .map(|_| {
            let mut client = connect_to(server.ws_addr(), "/count").unwrap();
            next_message(&mut client).to_text().unwrap().to_string()
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        ["visit 1", "visit 2", "visit 3", "visit 4", "visit 5"]
    );
    server.shutdown();
}

#[test]
fn a_route_judges_the_upgrade_before_answering() {
    let server = server();
    let status = |path: &str, extra: &str| {
        let answer = upgrade_answer(server.ws_addr(), upgrade_request(path, extra).as_bytes());
        (status_of(answer.as_bytes()), answer)
    };
    let (code, answer) = status("/private", "");
    assert_eq!(code, 401);
    assert!(answer.ends_with("log in first: pass ?token=... or the session cookie\n"));
    let (code, answer) = status("/private?token=guess", "");
    assert_eq!(code, 403);
    assert!(answer.ends_with("that token is not valid\n"), "{answer}");
    assert_eq!(status("/private?token=letmein", "").0, 101);
    assert_eq!(
        status("/private", "Cookie: theme=dark; session=letmein\r\n").0,
        101
    );
    let mut client = connect_to(server.ws_addr(), "/private?token=letmein").unwrap();
    client.send(Message::text("in")).unwrap();
    assert_eq!(next_message(&mut client), Message::text("IN"));
    server.shutdown();
}

#[test]
fn the_first_subprotocol_the_client_offers_that_the_route_speaks_is_chosen() {
    let server = server();
    let answer = upgrade_answer(
        server.ws_addr(),
        upgrade_request(
            "/chat",
            "Sec-WebSocket-Protocol: other, chat.v1, chat.v2\r\n",
        )
        .as_bytes(),
    );
    assert_eq!(status_of(answer.as_bytes()), 101);
    assert!(
        answer.contains("\r\nSec-WebSocket-Protocol: chat.v1\r\n"),
        "{answer}"
    );

    // A real client sees it, and so does the handler.
    let url = format!("ws://{}/chat", server.ws_addr());
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "chat.v2".parse().unwrap());
    let (mut client, response) =
        tungstenite::client(request, tcp(server.ws_addr())).expect("upgrade");
    assert_eq!(response.headers()["Sec-WebSocket-Protocol"], "chat.v2");
    assert_eq!(next_message(&mut client), Message::text("chat.v2"));

    // Required and none offered: 400 naming what the route speaks.
    let answer = upgrade_answer(server.ws_addr(), upgrade_request("/chat", "").as_bytes());
    assert_eq!(status_of(answer.as_bytes()), 400);
    assert!(answer.contains("chat.v2, chat.v1"), "{answer}");

    // Not required: accepted without a subprotocol.
    let answer = upgrade_answer(
        server.ws_addr(),
        upgrade_request("/maybe", "Sec-WebSocket-Protocol: other\r\n").as_bytes(),
    );
    assert_eq!(status_of(answer.as_bytes()), 101);
    assert!(!answer.contains("Sec-WebSocket-Protocol"), "{answer}");
    server.shutdown();
}

#[test]
fn a_handler_that_never_sends_still_answers_every_ping_at_once() {
    let heard = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&heard);
    let listen = move |client: &mut Connection| {
        while client.receive()?.is_some() {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    };
    let server = Server::start_with(config(), Routes::new().route("/listen", listen))
        .expect("server starts");
    let mut client = connect_to(server.ws_addr(), "/listen").expect("upgrade");
    for round in 0..3u8 {
        // A small message right behind the ping: the pong must not wait for the next read.
        client.write(Message::Ping(vec![round].into())).unwrap();
        client.write(Message::text("small")).unwrap();
        client.flush().unwrap();
        assert_eq!(
            client
                .read()
                .expect("the pong, before the client's read timeout"),
            Message::Pong(vec![round].into())
        );
    }
    assert!(eventually(|| heard.load(Ordering::SeqCst) == 3));
    server.shutdown();
}

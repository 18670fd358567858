//! Rooms: every member hears every broadcast, in each sender's order; members leave however
//! their connection ends; a member that does not read is dropped without holding up the rest;
//! shutdown closes every member with 1001. A server's named rooms are one room per name for its
//! handlers and the app's own threads, and the chat is one of them.
mod common;

use common::*;
use std::collections::HashMap;
use std::time::Duration;
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;
use wsecho::{Config, Connection, Error, Room, Routes, Server};

fn members(server: &Server, room: &Room, count: usize) -> Vec<Client> {
    let clients: Vec<Client> = (0..count)
        .map(|_| connect_to(server.ws_addr(), "/room").unwrap())
        .collect();
    assert!(eventually(|| room.len() == count), "{} joined", room.len());
    clients
}

#[test]
fn two_hundred_members_hear_every_message_in_each_senders_order() {
    assert!(wsecho::raise_open_file_limit());
    let (server, room) = room_server(config());
    let mut clients = members(&server, &room, 200);
    let talkers = 10;
    let each = 20;
    for n in 0..each {
        for (talker, client) in clients.iter_mut().take(talkers).enumerate() {
            client.send(Message::text(format!("{talker}:{n}"))).unwrap();
        }
    }
    for client in &mut clients {
        let mut next: HashMap<usize, usize> = HashMap::new();
        for _ in 0..talkers * each {
            let text = next_message(client).into_text().unwrap();
            let (talker, n) = text.split_once(':').unwrap();
            let expected = next.entry(talker.parse().unwrap()).or_default();
            assert_eq!(n.parse::<usize>().unwrap(), *expected, "{text}");
            *expected += 1;
        }
        assert!(next.values().all(|&n| n == each));
    }
    server.shutdown();
}

#[test]
fn members_leave_when_their_connection_ends_however_it_ends() {
    let (server, room) = room_server(config());
    let mut clients = members(&server, &room, 3);
    // One closes properly, one vanishes without a close frame.
    clients.pop().unwrap().close(None).unwrap();
    drop(clients.pop());
    assert!(eventually(|| room.len() == 1));
    clients[0].send(Message::text("anyone?")).unwrap();
    assert_eq!(next_message(&mut clients[0]), Message::text("anyone?"));
    server.shutdown();
}

#[test]
fn a_member_vanishing_mid_broadcast_stops_nobody_else() {
    let (server, room) = room_server(config());
    let mut clients = members(&server, &room, 10);
    let talker = 0;
    for n in 0..100 {
        clients[talker].send(Message::text(format!("{n}"))).unwrap();
        if n == 50 {
            drop(clients.remove(9));
        }
    }
    for client in &mut clients {
        for n in 0..100 {
            assert_eq!(next_message(client), Message::text(format!("{n}")));
        }
    }
    assert!(eventually(|| room.len() == 9));
    server.shutdown();
}

#[test]
fn a_member_that_never_reads_is_dropped_while_the_others_keep_hearing() {
    let (server, room) = room_server(Config {
        max_queue: 256 * 1024,
        ..config()
    });
    let mut clients = members(&server, &room, 4);
    let _deaf = clients.pop().unwrap();
    let big = "x".repeat(32 * 1024);
    // Several MiB to each member: more than the deaf one's socket buffers and queue hold.
    for round in 0..200 {
        clients[0]
            .send(Message::text(format!("{round} {big}")))
            .unwrap();
        for client in &mut clients {
            let text = next_message(client).into_text().unwrap();
            assert!(text.starts_with(&format!("{round} ")));
        }
    }
    assert!(eventually(|| room.len() == 3), "{} members", room.len());
    assert!(eventually(|| server.open_connections() == 3));
    server.shutdown();
}

#[test]
fn shutdown_closes_every_member_with_1001() {
    let (server, room) = room_server(Config {
        ping_interval: Duration::from_secs(60),
        ..config()
    });
    let mut clients = members(&server, &room, 20);
    let summary = server.shutdown();
    for client in &mut clients {
        assert_eq!(expect_close(client), CloseCode::Away);
    }
    assert_eq!(summary.closed_at_shutdown, 20);
    assert_eq!(summary.stragglers, 0);
    assert!(room.is_empty());
}

/// `/news`: join the server's room "news" and listen.
fn news_server() -> Server {
    let listener = |client: &mut Connection| -> Result<(), Error> {
        client.room("news").join(&client.sender());
        while client.receive()?.is_some() {}
        Ok(())
    };
    Server::start_with(config(), Routes::new().route("/news", listener)).unwrap()
}

#[test]
fn a_named_room_is_the_same_room_for_handlers_and_the_apps_own_threads() {
    let (server, other) = (news_server(), news_server());
    let mut clients: Vec<Client> = (0..3)
        .map(|_| connect_to(server.ws_addr(), "/news").unwrap())
        .collect();
    let mut elsewhere = connect_to(other.ws_addr(), "/news").unwrap();
    assert!(eventually(|| server.room("news").len() == 3));
    assert!(eventually(|| other.room("news").len() == 1));
    let delivery = server.room("news").broadcast("extra");
    assert_eq!(delivery.sent, 3);
    for client in &mut clients {
        assert_eq!(next_message(client), Message::text("extra"));
    }
    // Another server's room of the same name is another room (without `redis`).
    other.room("news").broadcast("other news");
    assert_eq!(next_message(&mut elsewhere), Message::text("other news"));
    assert!(server.room("elsewhere").is_empty());
    server.shutdown();
    other.shutdown();
}

#[test]
fn the_chat_is_the_servers_room_named_chat() {
    let server = start(config());
    let mut member = connect_to(server.ws_addr(), "/chat").unwrap();
    member
        .send(Message::text(r#"{"type":"join","name":"ann"}"#))
        .unwrap();
    let welcome = next_message(&mut member).into_text().unwrap();
    assert!(welcome.contains(r#""welcome""#), "{welcome}");
    assert_eq!(server.room("chat").len(), 1);
    server.room("chat").broadcast(r#"{"type":"notice"}"#);
    assert_eq!(
        next_message(&mut member),
        Message::text(r#"{"type":"notice"}"#)
    );
    server.shutdown();
}

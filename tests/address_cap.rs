//! `--max-per-address`: one address holding its share of places (slow openers on the WebSocket
//! and the policy port) is refused more, while clients from another address connect and echo;
//! and connections still opening share a smaller pool, so slow openers never keep others out.
//! The crowd comes from 127.0.0.2, the good clients from 127.0.0.1.
mod common;

use common::*;
use std::io::Write;
use std::net::{Ipv4Addr, TcpStream};
use tungstenite::Message;
use wsecho::Config;

/// The answer head to an upgrade already sent on `stream`.
fn upgrade_answer_on(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        std::io::Read::read_exact(stream, &mut byte).expect("an answer");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn one_address_at_its_cap_is_refused_while_others_connect() {
    let crowd = Ipv4Addr::new(127, 0, 0, 2);
    let server = start(Config {
        max_per_address: 30,
        policy_port: Some(0),
        ..config()
    });
    let policy = server.policy_addr().unwrap();
    // Thirty slow openers from one address: half on each port, none finishing.
    let mut slow: Vec<TcpStream> = (0..30)
        .map(|i| {
            let target = if i % 2 == 0 { server.ws_addr() } else { policy };
            let mut stream = tcp_from(crowd, target);
            stream.write_all(b"GET /ec").unwrap();
            stream
        })
        .collect();
    assert!(eventually(|| server.open_connections() == 30));

    // One more from that address, on either port, is turned away at once.
    let mut refused = tcp_from(crowd, server.ws_addr());
    let answer = String::from_utf8_lossy(&read_to_close(&mut refused)).into_owned();
    assert_eq!(status_of(answer.as_bytes()), 503, "{answer}");
    assert!(
        answer.contains("too many connections from your address"),
        "{answer}"
    );
    let mut refused_policy = tcp_from(crowd, policy);
    read_to_close(&mut refused_policy);

    // Everyone else gets in and is served (up to their own address's share).
    let mut clients: Vec<Client> = (0..20).map(|_| connect(&server)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(Message::text(format!("hello {i}"))).unwrap();
        assert_eq!(next_message(client), Message::text(format!("hello {i}")));
    }

    // A place the crowd gives back can be taken again by it.
    drop(slow.pop());
    assert!(eventually(|| server.open_connections() == 49));
    let mut again = tcp_from(crowd, server.ws_addr());
    again
        .write_all(upgrade_request("/echo", "").as_bytes())
        .unwrap();
    assert_eq!(status_of(upgrade_answer_on(&mut again).as_bytes()), 101);
    server.shutdown();
}

#[test]
fn slow_openers_share_a_small_pool_and_give_way_to_other_addresses() {
    let crowd = Ipv4Addr::new(127, 0, 0, 2);
    // A cap of 16: a quarter of it, 4, may be opening at once.
    let server = start(Config {
        max_connections: 16,
        max_per_address: 100,
        policy_port: Some(0),
        ..config()
    });
    let policy = server.policy_addr().unwrap();
    let mut silent: Vec<TcpStream> = (0..4).map(|_| tcp_from(crowd, policy)).collect();
    assert!(eventually(|| server.open_connections() == 4));
    // The crowd cannot open more while its openers fill the pool...
    let mut refused = tcp_from(crowd, server.ws_addr());
    let answer = String::from_utf8_lossy(&read_to_close(&mut refused)).into_owned();
    assert_eq!(status_of(answer.as_bytes()), 503, "{answer}");
    assert!(answer.contains("still opening"), "{answer}");

    // ...but clients from elsewhere get in, its oldest opener cut to make room.
    let mut clients: Vec<Client> = (0..8).map(|_| connect(&server)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(Message::text(format!("hello {i}"))).unwrap();
        assert_eq!(next_message(client), Message::text(format!("hello {i}")));
    }
    assert_eq!(
        read_to_close(&mut silent.remove(0)),
        b"",
        "the oldest opener was cut"
    );
    assert_eq!(server.open_connections(), 8 + 3);
    server.shutdown();
}

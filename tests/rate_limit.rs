//! `max_messages_per_second`: a client sending faster than the limit is closed with 1008 and
//! counted, while a polite client on the same server keeps echoing; the binary logs one line.
mod common;

use common::*;
use std::io::ErrorKind;
use std::thread;
use std::time::Duration;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Error, Message};
use wsecho::Config;

const LIMIT: u32 = 100;

fn limited() -> Config {
    Config {
        max_messages_per_second: Some(LIMIT),
        ..config()
    }
}

/// Send 1,000 messages at one a millisecond, taking whatever comes back between them; the
/// echoes counted and the close code, once the server sends one.
fn flood(client: &mut Client) -> (usize, Option<(CloseCode, String)>) {
    client.get_mut().set_nonblocking(true).unwrap();
    let mut echoes = 0;
    for n in 0..1000 {
        let _ = client.send(Message::text(format!("{n}")));
        loop {
            match client.read() {
                Ok(Message::Text(_)) => echoes += 1,
                Ok(Message::Close(Some(frame))) => {
                    return (echoes, Some((frame.code, frame.reason.to_string())));
                }
                Ok(_) => {}
                Err(Error::Io(error)) if error.kind() == ErrorKind::WouldBlock => break,
                Err(error) => panic!("after {echoes} echoes: {error}"),
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
    (echoes, None)
}

#[test]
fn a_client_past_the_rate_is_closed_1008_while_a_polite_one_keeps_echoing() {
    let server = start(limited());
    let ws = server.ws_addr();
    let polite = thread::spawn(move || {
        let mut client = connect_to(ws, "/echo").unwrap();
        for n in 0..20 {
            client.send(Message::text(format!("polite {n}"))).unwrap();
            assert_eq!(
                next_message(&mut client),
                Message::text(format!("polite {n}"))
            );
            thread::sleep(Duration::from_millis(50));
        }
    });
    let mut flooder = connect(&server);
    let (echoes, close) = flood(&mut flooder);
    assert_eq!(
        close,
        Some((CloseCode::Policy, "message rate limit".to_string()))
    );
    // The burst (one second's worth) and what the rate earned meanwhile, never the thousand.
    assert!(
        (LIMIT as usize..500).contains(&echoes),
        "{echoes} echoes before the close"
    );
    polite.join().expect("the polite client echoed throughout");

    let metrics = raw_exchange(
        server.http_addr().unwrap(),
        b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("wsecho_refusals_total{reason=\"rate_limit\"} 1"),
        "{metrics}"
    );
}

#[test]
fn without_a_limit_a_fast_client_is_never_closed() {
    let server = start(config());
    let mut client = connect(&server);
    let (echoes, close) = flood(&mut client);
    assert_eq!(close, None);
    client.get_mut().set_nonblocking(false).unwrap();
    // The last echoes may still be on their way.
    let mut echoes = echoes;
    while echoes < 1000 {
        assert!(matches!(next_message(&mut client), Message::Text(_)));
        echoes += 1;
    }
}

#[test]
fn the_binary_logs_one_line_for_a_client_past_its_rate() {
    let server = spawn_binary_with(
        env!("CARGO_BIN_EXE_wsecho"),
        &["--max-messages-per-second", "100"],
    );
    let mut client = connect_to(server.ws, "/echo").unwrap();
    let (_, close) = flood(&mut client);
    assert_eq!(close.map(|(code, _)| code), Some(CloseCode::Policy));
    let lines = server.log_until("more than 100 messages a second");
    let line = lines.last().unwrap();
    assert!(
        line.contains("--max-messages-per-second") && line.contains("1008"),
        "{line}"
    );
}

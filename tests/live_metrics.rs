//! `/metrics` as a dashboard reads it while clients are connected: the traffic of connections
//! still open counts up to the moment of the scrape, and no label takes whatever a client sends.
mod common;

use common::*;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

/// The body of `GET /metrics`.
fn scrape(server: &wsecho::Server) -> String {
    metrics(server.http_addr().unwrap())
}

/// Close with `frame` and see the handshake through: read until the server's reply has come and
/// the connection has ended, then hang up.
fn close_with(mut client: Client, frame: Option<CloseFrame>) {
    client.close(frame).unwrap();
    for _ in 0..10 {
        if client.read().is_err() {
            return;
        }
    }
    panic!("the server never ended the close handshake");
}

#[test]
fn echoes_on_a_connection_still_open_show_in_the_next_scrape_exactly() {
    let server = start(config());
    let mut client = connect(&server);
    for round in 1..=10u64 {
        let text = "x".repeat(round as usize);
        client.send(Message::text(text.clone())).unwrap();
        assert_eq!(next_message(&mut client), Message::text(text));
    }
    let body = scrape(&server);
    let bytes = (1..=10).sum::<u64>();
    assert_eq!(
        sample(&body, "wsecho_messages_received_total"),
        10,
        "{body}"
    );
    assert_eq!(sample(&body, "wsecho_received_bytes_total"), bytes);
    assert_eq!(sample(&body, "wsecho_messages_sent_total"), 10);
    assert_eq!(sample(&body, "wsecho_sent_bytes_total"), bytes);

    // Once it ends, its traffic is counted once, not twice and not lost.
    close_with(client, None);
    assert!(eventually(|| server.open_connections() == 0));
    let mut other = connect(&server);
    other.send(Message::text("one more")).unwrap();
    assert_eq!(next_message(&mut other), Message::text("one more"));
    let body = scrape(&server);
    assert_eq!(
        sample(&body, "wsecho_messages_received_total"),
        11,
        "{body}"
    );
    assert_eq!(sample(&body, "wsecho_sent_bytes_total"), bytes + 8);
    server.shutdown();
}

#[test]
fn three_hundred_client_close_codes_make_a_handful_of_series() {
    let server = start(config());
    let code = |code: u16| {
        Some(CloseFrame {
            code: CloseCode::from(code),
            reason: "".into(),
        })
    };
    for client_code in 3000..3300u16 {
        close_with(connect(&server), code(client_code));
    }
    close_with(connect(&server), code(4321));
    close_with(connect(&server), None);
    assert!(eventually(|| server.open_connections() == 0));

    let body = scrape(&server);
    let series: Vec<_> = body
        .lines()
        .filter(|line| line.starts_with("wsecho_closes_total{"))
        .collect();
    assert!(series.len() <= 4, "{series:#?}");
    assert_eq!(
        sample(&body, "wsecho_closes_total{code=\"3xxx\",by=\"client\"}"),
        300
    );
    assert_eq!(
        sample(&body, "wsecho_closes_total{code=\"4xxx\",by=\"client\"}"),
        1
    );
    assert_eq!(
        sample(&body, "wsecho_closes_total{code=\"1005\",by=\"client\"}"),
        1
    );
    server.shutdown();
}

#[test]
fn broadcasts_count_as_sent_to_each_member() {
    let (server, room) = room_server(config());
    let mut members: Vec<_> = (0..3)
        .map(|_| connect_to(server.ws_addr(), "/room").unwrap())
        .collect();
    assert!(eventually(|| room.len() == 3));
    members[0].send(Message::text("to all")).unwrap();
    for member in &mut members {
        assert_eq!(next_message(member), Message::text("to all"));
    }
    let body = scrape(&server);
    assert_eq!(sample(&body, "wsecho_messages_received_total"), 1, "{body}");
    assert_eq!(sample(&body, "wsecho_messages_sent_total"), 3, "{body}");
    assert_eq!(sample(&body, "wsecho_sent_bytes_total"), 3 * 6);
    server.shutdown();
}

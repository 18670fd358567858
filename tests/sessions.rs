//! Sessions over the HTTP carrier (`/session/` on the page port), without a browser: a handler
//! sees the same connection as over a WebSocket; records arrive in order, each once, whatever
//! request fails and is retried; sessions are bound to their address, judged by Origin, counted
//! against the caps, and end when abandoned or when their client does not read.
mod common;

use common::session::*;
use common::*;
use serde_json::{Value, json};
use std::io::BufReader;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tungstenite::Message;
use wsecho::{Config, Connection, Error, Routes, SendError, Server, default_routes};

fn texts(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.kind == 't')
        .map(Record::text)
        .collect()
}

#[test]
fn an_echo_session_over_polling_answers_text_and_binary_in_order() {
    let server = start(config());
    let page = server.http_addr().unwrap();
    let mut session = HttpSession::open(page, "/echo");
    assert_eq!(session.id.len(), 32);
    let body = records(&[
        ('t', 1, b"hello"),
        ('b', 2, &[0, 1, 255]),
        ('t', 3, "héllo".as_bytes()),
    ]);
    assert_eq!(session.post(&body), 204);
    let got = session.poll_messages(3);
    let kinds: Vec<(char, u64)> = got.iter().map(|r| (r.kind, r.seq)).collect();
    assert_eq!(kinds, [('t', 1), ('b', 2), ('t', 3)]);
    assert_eq!(got[0].text(), "hello");
    assert_eq!(got[1].payload, [0, 1, 255]);
    assert_eq!(got[2].text(), "héllo");
    let metrics = request(server.http_addr().unwrap(), "GET", "/metrics", "", b"").text();
    assert!(
        metrics.contains("wsecho_sessions_total{carrier=\"http-polling\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("wsecho_sessions_open 1\n"), "{metrics}");
}

#[test]
fn a_retried_post_is_delivered_once_and_a_gap_is_refused() {
    let server = start(config());
    let mut session = HttpSession::open(server.http_addr().unwrap(), "/echo");
    let first = records(&[('t', 1, b"a"), ('t', 2, b"b")]);
    assert_eq!(session.post(&first), 204);
    // The answer was lost, say: the client sends the same again, with the next one.
    let retried = records(&[('t', 1, b"a"), ('t', 2, b"b"), ('t', 3, b"c")]);
    assert_eq!(session.post(&retried), 204);
    assert_eq!(session.post(&records(&[('t', 5, b"e")])), 409);
    assert_eq!(texts(&session.poll_messages(3)), ["a", "b", "c"]);
}

#[test]
fn a_lost_stream_loses_nothing_the_next_request_gets_it_again() {
    let server = start(config());
    let page = server.http_addr().unwrap();
    let mut session = HttpSession::open(page, "/echo");
    for n in 1..=5 {
        session.send_text(&format!("m{n}"));
    }
    let mut stream = page_stream(page);
    let target = format!("/session/{}/down?from=1&mode=stream", session.id);
    send_request(&mut stream, "GET", &target, "", b"");
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    assert_eq!(status, 200);
    assert!(headers.contains(&("x-accel-buffering".into(), "no".into())));
    // First a keepalive (how the client knows the stream flows), then the five.
    let mut got = Vec::new();
    while got.iter().filter(|r: &&Record| r.kind == 't').count() < 5 {
        got.extend(parse(&read_chunk(&mut reader).expect("a chunk")));
    }
    assert_eq!(got[0].kind, 'k');
    assert_eq!(texts(&got), ["m1", "m2", "m3", "m4", "m5"]);
    // The client lost all of it on the way: it asks again from 1, and gets it all again.
    drop(reader);
    assert_eq!(
        texts(&session.poll_messages(5)),
        ["m1", "m2", "m3", "m4", "m5"]
    );
    session.send_text("m6");
    let next = session.poll_messages(1);
    assert_eq!((next[0].seq, next[0].text()), (6, "m6".to_string()));
}

#[test]
fn records_sent_while_a_stream_waits_come_down_it_whole_and_in_order() {
    let server = start(config());
    let page = server.http_addr().unwrap();
    let mut session = HttpSession::open(page, "/echo");
    let mut reader = BufReader::new(page_stream(page));
    let target = format!("/session/{}/down?from=1&mode=stream", session.id);
    send_request(reader.get_mut(), "GET", &target, "", b"");
    assert_eq!(read_head(&mut reader).0, 200);
    // The keepalive that opens the stream: the carrier now waits for records, and the
    // handler's thread writes them to this socket itself (as chunks of the response) until
    // the response is full; the carrier's thread sends the rest.
    assert_eq!(
        parse(&read_chunk(&mut reader).expect("a chunk"))[0].kind,
        'k'
    );
    let payloads: Vec<Vec<u8>> = (1..=6u8).map(|n| vec![n; 20_000]).collect();
    let list: Vec<(char, u64, &[u8])> = (1..)
        .zip(&payloads)
        .map(|(n, p)| ('b', n, &p[..]))
        .collect();
    assert_eq!(session.post(&records(&list)), 204);
    // What this response carries (it ends at 64 KiB of records), then polls for the rest.
    let mut body = Vec::new();
    while let Some(chunk) = read_chunk(&mut reader) {
        body.extend(chunk);
    }
    let streamed: Vec<Record> = parse(&body).into_iter().filter(|r| r.kind == 'b').collect();
    assert!(!streamed.is_empty(), "nothing came down the stream");
    for (record, n) in streamed.iter().zip(1..) {
        assert_eq!(record.seq, n, "in order");
        assert!(
            record.payload == payloads[n as usize - 1],
            "record {n} whole"
        );
    }
    session.next_down = streamed.len() as u64 + 1;
    let rest = session.poll_messages(6 - streamed.len());
    for (record, n) in rest.iter().zip(streamed.len() as u64 + 1..) {
        assert_eq!(record.seq, n);
        assert!(
            record.payload == payloads[n as usize - 1],
            "record {n} whole"
        );
    }
}

#[test]
fn large_binary_messages_come_back_whole() {
    let server = start(config());
    let mut session = HttpSession::open(server.http_addr().unwrap(), "/echo");
    let big: Vec<u8> = (0..1_000_000u32).map(|n| (n % 251) as u8).collect();
    assert_eq!(
        session.post(&records(&[('b', 1, &big), ('t', 2, b"after")])),
        204
    );
    let got = session.poll_messages(2);
    assert_eq!(got[0].payload, big);
    assert_eq!(got[1].text(), "after");
}

#[test]
fn the_handler_sees_the_route_query_headers_and_the_client_as_on_a_websocket() {
    let seen = Arc::new(Mutex::new(None));
    let record = Arc::clone(&seen);
    let routes = default_routes().route("/who", move |client: &mut Connection| {
        *record.lock().unwrap() = Some((
            client.path().to_string(),
            client.query().to_string(),
            client.header("X-Token").map(str::to_string),
            client.peer().ip(),
        ));
        client.send(Message::text("hi"))
    });
    let server = Server::start_with(config(), routes).unwrap();
    let page = server.http_addr().unwrap();
    let answer = request(
        page,
        "POST",
        "/session/open/who?room=7",
        "X-Token: t0k\r\n",
        b"",
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let json: Value = serde_json::from_slice(&answer.body).unwrap();
    let mut session = HttpSession {
        page,
        id: json["session"].as_str().unwrap().into(),
        next_up: 1,
        next_down: 1,
    };
    let got = session.poll_messages(2);
    assert_eq!(texts(&got), ["hi"]);
    // The handler returned: the session ends with 1000.
    assert_eq!((got[1].kind, got[1].text()), ('c', "1000 ".to_string()));
    assert_eq!(
        seen.lock().unwrap().clone(),
        Some((
            "/who".to_string(),
            "room=7".to_string(),
            Some("t0k".to_string()),
            "127.0.0.1".parse().unwrap()
        ))
    );
    let unknown = request(page, "POST", "/session/open/nowhere", "", b"");
    assert_eq!(unknown.status, 404);
    assert!(unknown.text().contains("/echo"), "{}", unknown.text());
}

#[test]
fn a_session_is_bound_to_its_address_and_ids_cannot_be_guessed() {
    let server = start(config());
    let page = server.http_addr().unwrap();
    let mut session = HttpSession::open(page, "/echo");
    session.send_text("mine");
    let target = format!("/session/{}/down?from=1&mode=poll", session.id);
    let other = Ipv4Addr::new(127, 0, 0, 2);
    let stolen = request_from(other, page, "GET", &target, "", b"");
    assert_eq!(stolen.status, 404, "{}", stolen.text());
    let up = format!("/session/{}/up", session.id);
    let body = records(&[('t', 2, b"injected")]);
    assert_eq!(
        request_from(other, page, "POST", &up, "", &body).status,
        404
    );
    let mut guessed = session.id.clone().into_bytes();
    guessed[0] = if guessed[0] == b'0' { b'1' } else { b'0' };
    let guess = format!(
        "/session/{}/down?from=1&mode=poll",
        String::from_utf8(guessed).unwrap()
    );
    assert_eq!(request(page, "GET", &guess, "", b"").status, 404);
    assert_eq!(texts(&session.poll_messages(1)), ["mine"]);
}

#[test]
fn a_post_from_another_origin_is_refused_and_the_pages_own_is_served() {
    let server = start(config());
    let page = server.http_addr().unwrap();
    let evil = request(
        page,
        "POST",
        "/session/open/echo",
        "Origin: http://evil.example\r\n",
        b"",
    );
    assert_eq!(evil.status, 403);
    assert!(evil.text().contains("allowed_origins"), "{}", evil.text());
    let own = format!("Origin: http://{page}\r\n");
    assert_eq!(
        request(page, "POST", "/session/open/echo", &own, b"").status,
        200
    );
    let session = HttpSession::open(page, "/echo");
    let up = format!("/session/{}/up", session.id);
    let body = records(&[('t', 1, b"x")]);
    let refused = request(page, "POST", &up, "Origin: http://evil.example\r\n", &body);
    assert_eq!(refused.status, 403);
}

#[test]
fn a_chat_member_over_http_and_one_over_a_websocket_hear_each_other() {
    let server = start(config());
    let mut session = HttpSession::open(server.http_addr().unwrap(), "/chat");
    session.send_text(&json!({"type": "join", "name": "http"}).to_string());
    let welcome: Value = serde_json::from_str(&session.poll_messages(1)[0].text()).unwrap();
    assert_eq!(welcome["type"], "welcome");
    let mut native = connect_to(server.ws_addr(), "/chat").unwrap();
    native
        .send(Message::text(
            json!({"type": "join", "name": "ws"}).to_string(),
        ))
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(next_message(&mut native).to_text().unwrap()).unwrap()["members"],
        json!(["http", "ws"])
    );
    session.send_text(&json!({"type": "say", "text": "over http"}).to_string());
    let said = loop {
        let heard: Value =
            serde_json::from_str(next_message(&mut native).to_text().unwrap()).unwrap();
        if heard["type"] == "said" {
            break heard;
        }
    };
    assert_eq!(
        (said["from"].clone(), said["text"].clone()),
        (json!("http"), json!("over http"))
    );
    native
        .send(Message::text(
            json!({"type": "say", "text": "over ws"}).to_string(),
        ))
        .unwrap();
    let mut heard = Vec::new();
    while !heard.iter().any(|v: &Value| v["text"] == "over ws") {
        let batch = session.poll_messages(1);
        assert!(!batch.is_empty(), "the HTTP member heard nothing");
        heard.extend(
            batch
                .iter()
                .map(|r| serde_json::from_str::<Value>(&r.text()).unwrap()),
        );
    }
    assert!(
        heard
            .iter()
            .any(|v| v["type"] == "joined" && v["name"] == "ws")
    );
}

#[test]
fn abandoned_sessions_end_at_the_window_and_free_everything() {
    let config = Config {
        resume_window: Duration::from_secs(1),
        max_connections: 2000,
        ..config()
    };
    let server = start(config);
    let page = server.http_addr().unwrap();
    let budget_before = metric(page, "wsecho_memory_budget_in_use_bytes");
    let sessions: Vec<HttpSession> = (0..1000)
        .map(|n| {
            let mut session = HttpSession::open(page, "/echo");
            if n % 10 == 0 {
                session.send_text("kept for nobody");
            }
            session
        })
        .collect();
    // Each was opened (200) and holds a handler; the first may already be ending while the
    // last are opened, so what counts is how they all end.
    assert!(eventually_within(Duration::from_secs(30), || {
        metric(page, "wsecho_sessions_open") == 0 && server.open_connections() == 0
    }));
    assert_eq!(metric(page, "wsecho_sessions_lost_total"), 1000);
    assert_eq!(
        metric(page, "wsecho_memory_budget_in_use_bytes"),
        budget_before
    );
    let gone = format!("/session/{}/down?from=1&mode=poll", sessions[0].id);
    assert_eq!(request(page, "GET", &gone, "", b"").status, 404);
}

#[test]
fn a_client_that_never_reads_its_session_is_cut_off_at_the_queue_limit() {
    let outcome = Arc::new(Mutex::new(None));
    let record = Arc::clone(&outcome);
    let routes = Routes::new().route(
        "/flood",
        move |client: &mut Connection| -> Result<(), Error> {
            let sender = client.sender();
            let chunk = vec![b'x'; 4096];
            for _ in 0..100_000 {
                if let Err(error) = sender.send(Message::binary(chunk.clone())) {
                    *record.lock().unwrap() = Some(error);
                    break;
                }
            }
            while client.receive()?.is_some() {}
            Ok(())
        },
    );
    let config = Config {
        max_queue: 64 * 1024,
        ..config()
    };
    let server = Server::start_with(config, routes).unwrap();
    let page = server.http_addr().unwrap();
    let mut session = HttpSession::open(page, "/flood");
    assert!(eventually(|| outcome.lock().unwrap().is_some()));
    assert_eq!(*outcome.lock().unwrap(), Some(SendError::TooSlow));
    // Everything kept for it is bounded by the queue limit, twice over (the session's and the
    // connection's), plus a message.
    assert!(metric(page, "wsecho_memory_budget_in_use_bytes") < 3 * 64 * 1024);
    // When it finally reads, it gets what was kept, then the end: as for a WebSocket client
    // that stopped reading, a close 1008 if the frame fit in the socket then, else the cut.
    let mut got = Vec::new();
    while !got.iter().any(|r: &Record| r.kind == 'c') {
        let batch = session.poll();
        assert!(!batch.is_empty());
        got.extend(batch);
    }
    let end = got.last().unwrap().text();
    assert!(
        end == "1006 connection lost" || end.starts_with("1008 client reads too slowly"),
        "{end}"
    );
    let kept: usize = got
        .iter()
        .filter(|r| r.kind == 'b')
        .map(|r| r.payload.len())
        .sum();
    assert!(kept >= 64 * 1024, "what was kept came through: {kept}");
}

/// A value from `/metrics` (without labels).
fn metric(page: std::net::SocketAddr, name: &str) -> i64 {
    let answer = request(page, "GET", "/metrics", "", b"");
    let text = answer.text();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |value| value.trim().parse().unwrap())
}

fn eventually_within(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    condition()
}

#[test]
fn a_program_per_connection_and_a_published_room_work_over_http_too() {
    let config = Config {
        programs: vec![wsecho::Program {
            path: "/cat".to_string(),
            // cat writes each line as it reads it (tr would hold its output back in a pipe).
            command: vec!["cat".to_string()],
            binary: false,
        }],
        publish_token: Some("t0ken".to_string()),
        ..config()
    };
    let server = Server::start(config).unwrap();
    let page = server.http_addr().unwrap();
    let mut program = HttpSession::open(page, "/cat");
    program.send_text("over http");
    assert_eq!(texts(&program.poll_messages(1)), ["over http"]);
    let mut listener = HttpSession::open(page, "/rooms/news");
    assert!(eventually(|| server.room("news").len() == 1));
    let published = request(
        page,
        "POST",
        "/publish/news",
        "Authorization: Bearer t0ken\r\n",
        b"extra!",
    );
    assert_eq!(published.status, 200, "{}", published.text());
    assert_eq!(texts(&listener.poll_messages(1)), ["extra!"]);
}

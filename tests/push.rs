//! Server push: a `Sender` reaches its client from any thread, in order, without waiting for
//! it, while the connection's own thread waits to read; a client that does not read is closed
//! once its queue overflows, and a closed connection is a clear error.
mod common;

use common::*;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;
use wsecho::{Config, Connection, Error, Routes, SendError, Sender, Server};

/// A server whose `/push` handler hands each connection's `Sender` to the test, then only
/// reads (answering nothing itself).
fn push_server(config: Config) -> (Server, mpsc::Receiver<Sender>) {
    let (senders, handed) = mpsc::channel();
    let senders = Mutex::new(senders);
    let handler = move |client: &mut Connection| -> Result<(), Error> {
        let sender = client.sender();
        let _ = senders.lock().unwrap().send(sender);
        while client.receive()?.is_some() {}
        Ok(())
    };
    let routes = Routes::new().route("/push", handler);
    (Server::start_with(config, routes).unwrap(), handed)
}

fn push_client(server: &Server, handed: &mpsc::Receiver<Sender>) -> (Client, Sender) {
    let client = connect_to(server.ws_addr(), "/push").unwrap();
    let sender = handed.recv_timeout(PATIENCE).expect("the handler's sender");
    (client, sender)
}

#[test]
fn a_timer_thread_pushes_to_a_client_whose_thread_waits_to_read() {
    // A ping interval far beyond the test's patience: nothing may wait for a keepalive tick.
    let (server, handed) = push_server(Config {
        ping_interval: Duration::from_secs(60),
        ..config()
    });
    let (mut client, sender) = push_client(&server, &handed);
    let timer = thread::spawn(move || {
        for tick in 0..5 {
            thread::sleep(Duration::from_millis(20));
            sender.send(Message::text(format!("tick {tick}"))).unwrap();
        }
    });
    for tick in 0..5 {
        assert_eq!(
            next_message(&mut client),
            Message::text(format!("tick {tick}"))
        );
    }
    timer.join().unwrap();
    server.shutdown();
}

#[test]
fn what_a_client_has_not_read_yet_is_queued_and_follows_in_order() {
    let (server, handed) = push_server(Config {
        ping_interval: Duration::from_secs(60),
        max_queue: 32 << 20,
        ..config()
    });
    let (mut client, sender) = push_client(&server, &handed);
    // 16 MiB while the client reads nothing: far more than the socket buffers take, so most
    // is queued, and the connection's thread must write it out as the client reads.
    let chunk = vec![b'x'; 64 * 1024];
    for i in 0..256u32 {
        let mut payload = chunk.clone();
        payload[..4].copy_from_slice(&i.to_be_bytes());
        sender
            .send(Message::binary(payload))
            .expect("queued, never waited for");
    }
    for i in 0..256u32 {
        let message = next_message(&mut client).into_data();
        assert_eq!(message.len(), chunk.len());
        assert_eq!(message[..4], i.to_be_bytes(), "message {i} out of order");
    }
    server.shutdown();
}

#[test]
fn frames_from_one_sender_keep_their_order_while_others_send_too() {
    let (server, handed) = push_server(config());
    let (mut client, sender) = push_client(&server, &handed);
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let sender = sender.clone();
            thread::spawn(move || {
                for n in 0..500 {
                    sender.send(Message::text(format!("{writer} {n}"))).unwrap();
                }
            })
        })
        .collect();
    let mut next = [0; 4];
    for _ in 0..2000 {
        let text = next_message(&mut client).into_text().unwrap();
        let (writer, n) = text.split_once(' ').unwrap();
        let writer: usize = writer.parse().unwrap();
        assert_eq!(n.parse::<usize>().unwrap(), next[writer], "{text}");
        next[writer] += 1;
    }
    for writer in writers {
        writer.join().unwrap();
    }
    server.shutdown();
}

#[test]
fn big_replies_and_pushes_from_other_threads_never_interleave_mid_frame() {
    // The handler answers each message with a big reply (written as header and payload)
    // while another thread pushes small frames through the same connection's Sender, as fast
    // as it can, until the replies are done.
    let handler = |client: &mut Connection| -> Result<(), Error> {
        let sender = client.sender();
        let replying = Arc::new(AtomicBool::new(true));
        let still_replying = Arc::clone(&replying);
        let pusher = thread::spawn(move || {
            let mut n = 0;
            while still_replying.load(Ordering::Relaxed)
                && sender.send(Message::text(format!("push {n}"))).is_ok()
            {
                n += 1;
            }
        });
        for _ in 0..50 {
            let Some(message) = client.receive()? else {
                break;
            };
            client.send(Message::binary(message.into_data().repeat(5000)))?;
        }
        replying.store(false, Ordering::Relaxed);
        pusher.join().unwrap();
        while client.receive()?.is_some() {}
        Ok(())
    };
    let server = Server::start_with(config(), Routes::new().route("/mixed", handler)).unwrap();
    let mut client = connect_to(server.ws_addr(), "/mixed").unwrap();
    let (mut pushes, mut replies) = (0, 0);
    for n in 0..50u8 {
        client.send(Message::binary(vec![n; 20])).unwrap();
        // Each reply, whole, then on to the next.
        loop {
            match next_message(&mut client) {
                Message::Text(text) => {
                    assert_eq!(text.as_str(), format!("push {pushes}"));
                    pushes += 1;
                }
                Message::Binary(data) => {
                    assert_eq!(data.len(), 100_000);
                    assert!(data.iter().all(|&byte| byte == replies), "reply {replies}");
                    replies += 1;
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(replies, 50);
    server.shutdown();
}

#[test]
fn a_client_that_never_reads_is_closed_when_its_queue_overflows() {
    let (server, handed) = push_server(Config {
        max_queue: 256 * 1024,
        ..config()
    });
    let (mut reader, reader_sender) = push_client(&server, &handed);
    let (_never_reads, sender) = push_client(&server, &handed);
    let chunk = Message::binary(vec![0u8; 64 * 1024]);
    // Bounded: the socket buffers and the queue take a few MiB at most.
    let overflow = (0..2000).find_map(|_| sender.send(chunk.clone()).err());
    assert_eq!(overflow, Some(SendError::TooSlow));
    // From then on nothing more is taken (TooSlow while it closes, Closed once it has).
    assert!(sender.send(Message::text("more")).is_err());
    // The slow one's connection ends; the other is served as before.
    assert!(eventually(|| server.open_connections() == 1));
    assert_eq!(sender.send(Message::text("late")), Err(SendError::Closed));
    reader_sender.send(Message::text("fine")).unwrap();
    assert_eq!(next_message(&mut reader), Message::text("fine"));
    server.shutdown();
}

#[test]
fn frames_queued_for_a_client_that_never_reads_count_against_the_memory_budget() {
    let (server, handed) = push_server(Config {
        max_queue: 1 << 30,
        memory_budget: 2 << 20,
        max_message_size: 1 << 20,
        ..config()
    });
    let (mut reader, reader_sender) = push_client(&server, &handed);
    let (mut never_reads, sender) = push_client(&server, &handed);
    let chunk = Message::binary(vec![0u8; 64 * 1024]);
    // Bounded: the socket buffers and the 2 MiB budget take a few MiB at most.
    let refused = (0..2000).find_map(|_| sender.send(chunk.clone()).err());
    assert_eq!(refused, Some(SendError::OverBudget));
    assert!(eventually(|| server.open_connections() == 1));
    // What reached it first is there to read; then the connection ends, with 1013 if the
    // close frame fitted in the socket (nothing waits on a client that does not read).
    let mut chunks = 0;
    loop {
        match never_reads.read() {
            Ok(Message::Binary(_)) => chunks += 1,
            Ok(Message::Close(frame)) => {
                assert_eq!(frame.map(|frame| frame.code), Some(CloseCode::Again));
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(chunks > 0);
    // The budget is free again for everyone else.
    reader_sender.send(chunk.clone()).unwrap();
    assert_eq!(next_message(&mut reader), chunk);
    server.shutdown();
}

#[test]
fn a_sender_can_close_its_connection_and_then_reports_it_closed() {
    let (server, handed) = push_server(config());
    let (mut client, sender) = push_client(&server, &handed);
    let closer = sender.clone();
    thread::spawn(move || closer.close(CloseCode::Library(4000), "game over"))
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(expect_close(&mut client), CloseCode::Library(4000));
    drop(client);
    assert!(eventually(|| !sender.is_open()));
    assert_eq!(sender.send(Message::text("hello?")), Err(SendError::Closed));
    server.shutdown();
}

#[test]
fn a_close_message_sent_through_a_sender_is_the_close_handshake() {
    let (server, handed) = push_server(config());
    let (mut client, sender) = push_client(&server, &handed);
    let close = Message::Close(Some(tungstenite::protocol::CloseFrame {
        code: CloseCode::Library(4001),
        reason: "bye".into(),
    }));
    sender.send(close).unwrap();
    // Closing from then on, as `Sender::close` is: nothing more is sent after the close.
    assert_eq!(sender.send(Message::text("after")), Err(SendError::Closed));
    // The client hears the close with its code, from the connection's own thread.
    assert_eq!(expect_close(&mut client), CloseCode::Library(4001));
    drop(client);
    assert!(eventually(|| !sender.is_open()));
    server.shutdown();
}

#[test]
fn with_a_sender_the_wait_for_a_close_reply_ends_at_the_linger_not_the_keepalive_tick() {
    // Reads go through the outbox once there is a Sender: the wait for the client's close
    // reply must still end at the linger (the handshake timeout), not at the read timeout the
    // connection had before (the keepalive tick, here far beyond the test's patience).
    let handler = |client: &mut Connection| -> Result<(), Error> {
        let _sender = client.sender();
        client.receive()?;
        Ok(())
    };
    let config = Config {
        ping_interval: Duration::from_secs(60),
        handshake_timeout: Duration::from_millis(300),
        ..config()
    };
    let server = Server::start_with(config, Routes::new().route("/echo", handler)).unwrap();
    let mut stream = raw_upgraded(server.ws_addr());
    stream.write_all(&client_frame(0x1, b"bye")).unwrap();
    // We never answer the close: the server hangs up on its own, well within PATIENCE.
    let frames = parse_server_frames(&read_to_close(&mut stream));
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].1, 0x8, "a close frame");
    assert_eq!(&frames[0].2[..2], &1000u16.to_be_bytes());
    server.shutdown();
}

//! Connection threads are reused: a thread whose connection ended serves the next one, so a
//! stream of short connections does not start a thread each. Alone in its file so that the
//! thread count of this process is the server's own.
mod common;

use common::*;
use std::collections::BTreeSet;
use std::time::Duration;
use tungstenite::{Error, Message};

fn thread_ids() -> BTreeSet<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[test]
fn twenty_connections_one_after_another_reuse_their_thread() {
    let server = start(config());
    let before = thread_ids();
    let mut seen = BTreeSet::new();
    for i in 0..20 {
        let mut client = connect(&server);
        client.send(Message::text(format!("hello {i}"))).unwrap();
        assert_eq!(
            next_message(&mut client),
            Message::text(format!("hello {i}"))
        );
        // The thread serving this connection is alive now: remember every thread there is.
        seen.extend(thread_ids());
        client.close(None).unwrap();
        while !matches!(client.read(), Err(Error::ConnectionClosed)) {}
        drop(client);
        // Let the server see the end, so the thread is free before the next connection.
        for _ in 0..200 {
            if server.open_connections() == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(server.open_connections(), 0);
    }
    let started = seen.difference(&before).count();
    assert!(
        started <= 3,
        "{started} threads were started for 20 sequential connections"
    );
    server.shutdown();
}

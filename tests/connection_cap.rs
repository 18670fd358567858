//! `--max-connections`: one more gets 503 from the accept thread, and no thread is left behind.
//! Alone in its file so that the thread count of this process is the server's own.
mod common;

use common::*;
use std::time::Duration;
use tungstenite::Message;
use wsecho::Config;

fn threads_in_process() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn connections_past_the_cap_get_503_and_leave_no_thread() {
    let server = start(Config {
        max_connections: 3,
        ..config()
    });
    let mut open: Vec<_> = (0..3).map(|_| connect(&server)).collect();
    assert_eq!(server.open_connections(), 3);
    let threads_before = threads_in_process();

    for _ in 0..20 {
        let answer = upgrade_answer(server.ws_addr(), upgrade_request("/echo", "").as_bytes());
        assert_eq!(status_of(answer.as_bytes()), 503, "{answer}");
        assert!(answer.contains("too many open connections"));
    }
    assert_eq!(
        threads_in_process(),
        threads_before,
        "refusals run no thread"
    );

    // Everyone admitted is still served.
    for client in &mut open {
        client.send(Message::text("hello")).unwrap();
        assert_eq!(next_message(client), Message::text("hello"));
    }

    // A freed place can be taken again once the server has seen the close.
    open.pop().unwrap().close(None).unwrap();
    let mut admitted = None;
    for _ in 0..100 {
        match connect_to(server.ws_addr(), "/echo") {
            Ok(client) => {
                admitted = Some(client);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let mut admitted = admitted.expect("a place frees up after a close");
    admitted.send(Message::text("in")).unwrap();
    assert_eq!(next_message(&mut admitted), Message::text("in"));
    server.shutdown();
}

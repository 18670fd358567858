//! TestClient: a handler unit-tested over an in-memory connection behaves as it does on a
//! server: messages both ways, pushes from other threads, its own close codes, a panic or an
//! error closing with 1011, the size limit, and how each connection ended.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use wsecho::{CloseCode, Config, Connection, Ending, Error, Message, SendError, TestClient};

fn echo(client: &mut Connection) -> Result<(), Error> {
    while let Some(message) = client.receive()? {
        client.send(message)?;
    }
    Ok(())
}

#[test]
fn messages_go_both_ways_and_the_clients_close_ends_it() {
    let mut client = TestClient::connect(echo, "/echo").unwrap();
    for text in ["one", "two", "three"] {
        client.send(Message::text(text)).unwrap();
        assert_eq!(client.receive().unwrap(), Some(Message::text(text)));
    }
    client.send(Message::binary(vec![0u8, 1, 2])).unwrap();
    assert_eq!(
        client.receive().unwrap(),
        Some(Message::binary(vec![0u8, 1, 2]))
    );
    assert_eq!(client.finish(), Ending::ClosedByClient(1000));
}

#[test]
fn the_handler_sees_its_path_and_a_loopback_peer() {
    let about = |client: &mut Connection| {
        let line = format!("{} {}", client.path(), client.peer().ip());
        client.send(Message::text(line))
    };
    let mut client = TestClient::connect(about, "/about").unwrap();
    assert_eq!(
        client.receive().unwrap(),
        Some(Message::text("/about 127.0.0.1"))
    );
    // It returned with the connection open: the server side closes it with 1000.
    assert_eq!(client.receive().unwrap(), None);
    assert_eq!(client.finish(), Ending::ClosedByServer(1000, String::new()));
}

#[test]
fn a_push_from_another_thread_arrives() {
    let pusher = |client: &mut Connection| {
        let sender = client.sender();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let _ = sender.send(Message::text("pushed"));
        });
        while client.receive()?.is_some() {}
        Ok(())
    };
    let mut client = TestClient::connect(pusher, "/push").unwrap();
    assert_eq!(client.receive().unwrap(), Some(Message::text("pushed")));
    assert_eq!(client.finish(), Ending::ClosedByClient(1000));
}

#[test]
fn nothing_from_another_thread_follows_the_close_frame() {
    // A message after the close frame breaks the protocol: a browser then reports 1006 and
    // never sees the close code. What was pushed before the close still arrives before it.
    let after_close = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&after_close);
    let closer = move |client: &mut Connection| {
        let sender = client.sender();
        let _ = sender.send(Message::text("before"));
        client.close(CloseCode::Away, "going")?;
        *seen.lock().unwrap() = Some(sender.send(Message::text("after")));
        Ok(())
    };
    let mut client = TestClient::connect(closer, "/closer").unwrap();
    assert_eq!(client.receive().unwrap(), Some(Message::text("before")));
    assert_eq!(client.receive().unwrap(), None);
    assert_eq!(
        client.finish(),
        Ending::ClosedByServer(1001, "going".to_string())
    );
    assert_eq!(*after_close.lock().unwrap(), Some(Err(SendError::Closed)));
}

#[test]
fn the_handlers_own_close_code_is_what_the_client_sees() {
    let strict = |client: &mut Connection| {
        while let Some(message) = client.receive()? {
            if message.is_binary() {
                return client.close(CloseCode::Unsupported, "text only");
            }
        }
        Ok(())
    };
    let mut client = TestClient::connect(strict, "/strict").unwrap();
    client.send(Message::binary(vec![1u8])).unwrap();
    assert_eq!(client.receive().unwrap(), None);
    assert_eq!(
        client.finish(),
        Ending::ClosedByServer(1003, "text only".to_string())
    );
}

#[test]
fn a_panicking_handler_closes_its_connection_with_1011() {
    let broken = |client: &mut Connection| -> Result<(), Error> {
        client.receive()?;
        panic!("a bug in the handler");
    };
    let mut client = TestClient::connect(broken, "/broken").unwrap();
    client.send(Message::text("poke")).unwrap();
    assert_eq!(client.receive().unwrap(), None);
    assert_eq!(
        client.finish(),
        Ending::ClosedByServer(1011, "internal error".to_string())
    );
}

#[test]
fn a_message_past_the_default_size_limit_gets_1009() {
    let mut client = TestClient::connect(echo, "/echo").unwrap();
    let too_big = vec![0u8; Config::default().max_message_size + 1];
    // The handler closes while the message is still arriving: the write may fail.
    let _ = client.send(Message::binary(too_big));
    assert_eq!(client.receive().unwrap(), None);
    assert!(matches!(client.finish(), Ending::ClosedByServer(1009, _)));
}

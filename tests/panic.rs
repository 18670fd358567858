//! A panic in one connection's handler closes that connection (1011) and nothing else.
mod common;

use common::*;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Error, Message};
use wsecho::{Connection, Routes, Server};

/// Echo, except that the text `panic` makes the handler panic.
fn fragile_echo(client: &mut Connection) -> Result<(), Error> {
    while let Some(message) = client.receive()? {
        if message.to_text().ok() == Some("panic") {
            panic!("the application hit a bug");
        }
        client.send(message)?;
    }
    Ok(())
}

#[test]
fn one_handler_panicking_leaves_the_others_echoing() {
    let server = Server::start_with(config(), Routes::new().route("/echo", fragile_echo)).unwrap();
    let mut others: Vec<_> = (0..3).map(|_| connect(&server)).collect();
    let mut victim = connect(&server);

    victim.send(Message::text("panic")).unwrap();
    assert_eq!(expect_close(&mut victim), CloseCode::Error);

    for (i, other) in others.iter_mut().enumerate() {
        other
            .send(Message::text(format!("still here {i}")))
            .unwrap();
        assert_eq!(
            next_message(other),
            Message::text(format!("still here {i}"))
        );
    }
    let mut newcomer = connect(&server);
    newcomer.send(Message::binary(vec![1, 2, 3])).unwrap();
    assert_eq!(next_message(&mut newcomer), Message::binary(vec![1, 2, 3]));
    let summary = server.shutdown();
    assert_eq!(summary.stragglers, 0);
}

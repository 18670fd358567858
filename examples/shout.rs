//! A room that broadcasts whatever any member says to every member, at `ws://127.0.0.1:8087/shout`,
//! beside the built-in `/echo` and `/chat` (README's "Your own app in Rust"). Its handler is
//! unit-tested below over in-memory connections (`TestClient`): `cargo test --example shout`.
//!
//! `cargo run --example shout`, then open the page at http://127.0.0.1:8080/ and connect to
//! `/shout` from two tabs' consoles: `new WebSocket("ws://127.0.0.1:8087/shout")`.

use wsecho::{Config, Connection, Error, Room, Server, default_routes};

/// `/shout`'s handler: join `room`, then broadcast whatever the client says to every member.
fn shout(room: Room) -> impl Fn(&mut Connection) -> Result<(), Error> + Send + Sync + 'static {
    move |client: &mut Connection| {
        room.join(&client.sender());
        while let Some(message) = client.receive()? {
            room.broadcast(message);
        }
        Ok(())
    }
}

fn main() {
    let routes = default_routes().route("/shout", shout(Room::new()));
    let server = Server::start_with(Config::default(), routes).expect("listening");
    println!("{}", server.wait());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};
    use wsecho::{Ending, Message, TestClient};

    #[test]
    fn every_member_hears_what_one_says_and_leaves_when_it_goes() {
        let room = Room::new();
        let mut ann = TestClient::connect(shout(room.clone()), "/shout").unwrap();
        let mut bob = TestClient::connect(shout(room.clone()), "/shout").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while room.len() < 2 {
            assert!(Instant::now() < deadline, "both join");
            std::thread::sleep(Duration::from_millis(1));
        }
        ann.send(Message::text("hello")).unwrap();
        assert_eq!(bob.receive().unwrap(), Some(Message::text("hello")));
        assert_eq!(ann.receive().unwrap(), Some(Message::text("hello")));
        assert_eq!(bob.finish(), Ending::ClosedByClient(1000));
        assert_eq!(room.len(), 1);
        ann.send(Message::text("alone")).unwrap();
        assert_eq!(ann.receive().unwrap(), Some(Message::text("alone")));
    }
}

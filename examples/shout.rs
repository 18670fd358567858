//! A room that broadcasts whatever any member says to every member, at `ws://127.0.0.1:8087/shout`,
//! beside the built-in `/echo` and `/chat` (README's "Your own app in Rust").
//!
//! `cargo run --example shout`, then open the page at http://127.0.0.1:8080/ and connect to
//! `/shout` from two tabs' consoles: `new WebSocket("ws://127.0.0.1:8087/shout")`.

use wsecho::{Config, Connection, Error, Room, Server, default_routes};

fn main() {
    let room = Room::default();
    let routes = default_routes().route("/shout", move |client: &mut Connection| {
        room.join(&client.sender());
        while let Some(message) = client.receive()? {
            room.broadcast(message);
        }
        Ok::<(), Error>(())
    });
    let server = Server::start_with(Config::default(), routes).expect("listening");
    println!("{}", server.wait());
}

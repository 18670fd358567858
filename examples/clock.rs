//! A clock room: every member of `ws://127.0.0.1:8087/clock` hears the time once a second,
//! from one thread of the app's own that stops when the server does (Ctrl-C).
//!
//! `cargo run --example clock`, then in a browser console on http://127.0.0.1:8080/:
//! `new WebSocket("ws://127.0.0.1:8087/clock").onmessage = e => console.log(e.data)`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wsecho::{Config, Connection, Error, Room, Routes, Server};

fn main() {
    let clock = Room::default();
    let members = clock.clone();
    let routes = Routes::new().route("/clock", move |client: &mut Connection| {
        members.join(&client.sender());
        // Members only listen; what they send is read and let go (and their close is seen).
        while client.receive()?.is_some() {}
        Ok::<(), Error>(())
    });
    let server = match Server::start_with(Config::default(), routes) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("clock: {error}");
            std::process::exit(1);
        }
    };
    let shutdown = server.on_shutdown();
    let ticker = std::thread::spawn(move || {
        while !shutdown.wait_timeout(Duration::from_secs(1)) {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            clock.broadcast(format!("tick {}", now.as_secs()));
        }
    });
    let trigger = server.trigger();
    // The example stops itself after a while when asked to (CI runs it that way).
    if let Some(seconds) = std::env::args().nth(1).and_then(|arg| arg.parse().ok()) {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(seconds));
            trigger.fire();
        });
    }
    println!("{}", server.wait());
    let _ = ticker.join();
}

//! A route that checks a token on the upgrade, before the 101: `ws://127.0.0.1:8087/private?token=letmein`
//! is let in (and echoes), anything else gets 401 or 403 with a one-line reason.
//!
//! `cargo run --example token`; the token comes from `WSECHO_TOKEN` (default `letmein`).

use wsecho::{Config, Refused, Route, Routes, Server, handle_echo_client};

fn main() {
    let token = std::env::var("WSECHO_TOKEN").unwrap_or_else(|_| "letmein".to_string());
    let private =
        Route::new(handle_echo_client).check(move |upgrade| match upgrade.query_param("token") {
            Some(given) if given == token => Ok(()),
            Some(_) => Err(Refused::forbidden("wrong token")),
            None => Err(Refused::unauthorized("add ?token= to the URL")),
        });
    let routes = Routes::new().route("/private", private);
    match Server::start_with(Config::default(), routes) {
        Ok(server) => println!("{}", server.wait()),
        Err(error) => {
            eprintln!("token: {error}");
            std::process::exit(1);
        }
    }
}

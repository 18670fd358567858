//! `POST /publish/NAME` on the page port: the app's own backend (Django, Flask, a cron job)
//! hands a message to every member of the server's room NAME, as Pusher's and centrifugo's
//! server APIs do. One request, one message: the body, as text (as binary with
//! `Content-Type: application/octet-stream`), delivered once to each member, through the same
//! `Room` a chat broadcast takes (and with `Config::redis`, to every instance's members).
//!
//! Only with `Config::publish_token`; without it the path does not exist (404). The token comes
//! as `Authorization: Bearer TOKEN`, compared in constant time (401 otherwise). The body needs a
//! `Content-Length` (411 without one, or chunked), at most `max_message_size` (413, unread), and
//! room in the memory budget while it is held (503).

use crate::net::http::{self, Refusal, Request};
use crate::net::proxy::Client;
use crate::net::stream::Stream;
use crate::ops::budget::Holding;
use crate::ops::metrics::Metrics;
use crate::ops::metrics::Reason;
use crate::protocol::room::{Rooms, valid_room_name};
use log::{debug, warn};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use tungstenite::Message;

/// The path prefix this answers.
pub const PREFIX: &str = "/publish/";

/// What publishing needs.
pub struct Publishing {
    /// The token a publisher must give; `None`: publishing is off (404).
    pub token: Option<String>,
    /// The server's named rooms.
    pub rooms: Rooms,
    /// Largest body taken.
    pub max_message_size: usize,
    /// How long a body may take to arrive.
    pub timeout: Duration,
    pub metrics: Arc<Metrics>,
}

/// Answer a publish request. `Some` with the bytes after its body when the connection stays
/// open for the next request (if `keep_alive` allows); `None` when it is done.
pub fn serve(
    stream: &Stream,
    peer: Client,
    request: Request,
    site: &Publishing,
    keep_alive: bool,
) -> Option<Vec<u8>> {
    let name = request.path()[PREFIX.len()..].to_string();
    let length = match check(&request, &name, site) {
        Ok(length) => length,
        Err(refusal) => {
            site.metrics.refused(refusal.reason);
            warn!(
                "page: refused {peer} {}: POST {}{}: {}",
                refusal.status,
                PREFIX,
                crate::ops::escape::escape(&name),
                refusal.message
            );
            refusal.send_and_linger(stream);
            return None;
        }
    };
    let binary = request
        .header("Content-Type")
        .is_some_and(|kind| kind.trim().starts_with("application/octet-stream"));
    // Held against the budget from before its first byte is read until it is delivered.
    let mut holding = Holding::new(site.metrics.budget());
    if !holding.grow(length) {
        let refusal = Refusal::new(503, "the server's memory budget is full; try again later")
            .because(Reason::Memory);
        site.metrics.refused(refusal.reason);
        warn!("page: refused {peer} 503: publish of {length} bytes: memory budget full");
        refusal.send_and_linger(stream);
        return None;
    }
    let mut received = request.into_rest();
    if let Err(error) =
        http::read_body(stream, &mut received, length, Instant::now() + site.timeout)
    {
        debug!("page: {peer}: publish body cut short: {error}");
        return None;
    }
    let rest = received.split_off(length);
    let message = match binary {
        true => Message::binary(received),
        false => match String::from_utf8(received) {
            Ok(text) => Message::text(text),
            Err(_) => {
                let refusal = Refusal::new(
                    400,
                    "the body is not UTF-8 text: send it with Content-Type: application/octet-stream",
                );
                site.metrics.refused(refusal.reason);
                refusal.send_and_linger(stream);
                return None;
            }
        },
    };
    let delivery = site.rooms.room(&name).broadcast(message);
    drop(holding);
    site.metrics.published(length);
    debug!(
        "page: {peer} published {length} bytes to {name}: {} members",
        delivery.sent
    );
    let body = format!(
        "{{\"room\":{},\"members\":{}}}\n",
        serde_json::Value::from(name.as_str()),
        delivery.sent
    );
    let head = http::response_head(200, "application/json", body.len() as u64, keep_alive, None);
    let mut out = stream;
    let sent = out.write_all((head + &body).as_bytes());
    (sent.is_ok() && keep_alive).then_some(rest)
}

/// The body's length, once everything before the body is in order.
fn check(request: &Request, name: &str, site: &Publishing) -> Result<usize, Refusal> {
    let Some(token) = &site.token else {
        return Err(Refusal::new(
            404,
            "publishing is off on this server: it needs a token (`publish_token`)",
        ));
    };
    if request.method() != "POST" {
        return Err(Refusal::new(405, "publish with POST").with_header("Allow: POST"));
    }
    if !valid_room_name(name) {
        return Err(Refusal::new(
            404,
            "a room name is 1 to 64 of A-Z a-z 0-9 _ . -",
        ));
    }
    let offered = request
        .header("Authorization")
        .and_then(|value| value.trim().strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    if !same_in_constant_time(offered.as_bytes(), token.as_bytes()) {
        return Err(Refusal::new(
            401,
            "wrong or missing token: send Authorization: Bearer TOKEN",
        ));
    }
    http::body_length(request, site.max_message_size)
}

/// Whether `a` and `b` are equal, taking as long whichever byte differs (the token's length is
/// not secret).
fn same_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let differences = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(differences) == 0
}

#[cfg(test)]
mod tests {
    use super::same_in_constant_time;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(same_in_constant_time(b"secret", b"secret"));
        assert!(!same_in_constant_time(b"secret", b"secreT"));
        assert!(!same_in_constant_time(b"secret", b"secret2"));
        assert!(!same_in_constant_time(b"", b"secret"));
    }
}

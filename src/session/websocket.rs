//! A session carried by a WebSocket: the client offers the subprotocol `wsecho.session`, and
//! the connection carries the session's records instead of being the handler's own.
//!
//! The client's first message is text: `open` (a new session on the route the WebSocket was
//! opened for) or `resume ID FROM` (the session ID, having every record before FROM). The
//! answer is text, `{"session":ID,"window":SECS,"received":N}` (N: how many of the client's
//! records the handler has been given; it sends the rest again), then every record the client
//! lacks and each new one, one per binary message. The client's records come in binary
//! messages too; `ack N` (text) says it has every record before N, answered with `received N`.
//!
//! A WebSocket that drops (no close frame) leaves the session waiting for the client to come
//! back over any carrier within the resume window; one the client closes ends the session
//! with its code, as a WebSocket without a session would.

use super::records;
use super::{Session, Sessions, UpError};
use crate::net::http::Request;
use crate::protocol::connection::{Connection, Ending};
use std::net::SocketAddr;
use std::sync::Arc;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Error, Message};

/// The subprotocol a client offers to carry a session.
pub const PROTOCOL: &str = "wsecho.session";

/// Carry a session over `connection`, opened for `route` (the upgrade request) by `client`.
pub fn carry(
    connection: &mut Connection,
    sessions: &Arc<Sessions>,
    route: &Request,
    client: SocketAddr,
) -> Result<(), Error> {
    let Some(first) = connection.receive()? else {
        return Ok(());
    };
    let first = first.to_text().unwrap_or_default().to_string();
    let words: Vec<&str> = first.split(' ').collect();
    let (session, from, resumed) = match words.as_slice() {
        ["open"] => match sessions.open(route, client) {
            Ok(session) => (session, 1, false),
            // 4000 + the HTTP status a carrier over HTTP would have had.
            Err(refusal) => return refuse(connection, 4000 + refusal.status, &refusal.message),
        },
        ["resume", id, from] => match (sessions.find(id, client.ip()), from.parse::<u64>()) {
            (Some(session), Ok(from)) => (session, from, true),
            (None, _) => return refuse(connection, 4404, "no such session: open a new one"),
            (_, Err(_)) => return refuse(connection, 4400, "resume ID FROM: FROM is a number"),
        },
        _ => return refuse(connection, 4400, "say open, or resume ID FROM"),
    };
    let window = sessions.window.as_secs();
    let hello = |received| {
        format!(
            "{{\"session\":\"{}\",\"window\":{window},\"received\":{received}}}",
            session.id()
        )
    };
    let Some(number) = session.attach_pushing(from, connection.sender(), resumed, hello) else {
        return refuse(connection, 4400, "FROM is past every record sent");
    };
    let outcome = relay(connection, &session);
    session.leave(number);
    if let Ending::ClosedByClient(code) = connection.ending() {
        // The page closed its WebSocket (it went away), not just lost it: the session ends
        // as the WebSocket did.
        session.client_left(if *code == 1005 { 1000 } else { *code });
    }
    outcome
}

/// Pass the client's records to the session until the WebSocket ends.
fn relay(connection: &mut Connection, session: &Session) -> Result<(), Error> {
    while let Some(message) = connection.receive()? {
        match message {
            Message::Binary(body) => {
                let Ok(received) = records::parse(&body) else {
                    return connection.close(CloseCode::Invalid, "malformed session record");
                };
                match session.deliver(&received) {
                    Ok(()) => {}
                    Err(error @ UpError::Gap { .. }) => {
                        return connection.close(CloseCode::Library(4409), &error.to_string());
                    }
                    Err(UpError::Gone) => return connection.close(CloseCode::Normal, ""),
                }
            }
            Message::Text(text) => {
                let Some(from) = text.strip_prefix("ack ").and_then(|n| n.parse().ok()) else {
                    return connection.close(CloseCode::Library(4400), "say ack N");
                };
                session.acknowledge(from);
                connection.send(Message::text(format!("received {}", session.received())))?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn refuse(connection: &mut Connection, code: u16, reason: &str) -> Result<(), Error> {
    connection.close(CloseCode::from(code), reason)
}

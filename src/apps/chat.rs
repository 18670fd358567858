//! The chat room on `/chat`: one room everyone joins, spoken to in JSON text messages.
//!
//! Client to server: `{"type":"join","name":NAME}` first (trimmed, 1-32 characters, made
//! unique with a number if taken), then `{"type":"say","text":TEXT}` (up to 4 KiB).
//! Server to the joiner: `{"type":"welcome","name":NAME_GIVEN,"members":[NAMES]}`; to everyone
//! else `{"type":"joined","name":NAME,"count":N}`, and `{"type":"left","name":NAME,"count":N}`
//! when a member leaves, however it leaves; to every member, the speaker too,
//! `{"type":"said","from":NAME,"text":TEXT,"at":UNIX_MILLIS}`. Anything wrong gets
//! `{"type":"error","reason":TEXT}`, to that client alone, and the connection stays open.
//! Extra fields are ignored.
//!
//! With `--redis` the room spans every instance: names, counts and the members list count
//! everyone on every live instance (names are made unique against those known at the join).
//!
//! Application code only, like `echo.rs`: the transport is the `Connection`, its `Sender` and
//! the `Room`.

use crate::apps::names;
use crate::protocol::connection::Connection;
use crate::protocol::outbox::Sender;
use crate::protocol::room::Room;
use crate::protocol::routes::Route;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};
use tungstenite::{Error, Message};

/// Longest name, in characters.
const MAX_NAME_CHARS: usize = 32;
/// Longest text of one `say`, in bytes.
const MAX_TEXT_BYTES: usize = 4096;

/// The server's room the chat is held in (`Server::room("chat")`), and its name among
/// instances.
pub const ROOM: &str = "chat";

/// The chat route: every connection to it meets in the server's room `ROOM`.
pub fn route() -> Route {
    let chat = Arc::new(Chat {
        names: Mutex::default(),
    });
    Route::new(move |client: &mut Connection| chat.serve(client))
}

struct Chat {
    /// Members' names here by connection id, in the order they joined.
    names: Mutex<BTreeMap<u64, String>>,
}

/// Leaves the room when dropped: when the handler returns, fails or panics.
struct Membership<'a> {
    chat: &'a Chat,
    room: &'a Room,
    me: Sender,
    name: String,
}

impl Drop for Membership<'_> {
    fn drop(&mut self) {
        let elsewhere = self.room.names_elsewhere();
        let mut names = self.chat.names();
        names.remove(&self.me.id());
        self.room.leave(&self.me);
        self.room.unannounce(&self.me);
        let left = format!(
            r#"{{"type":"left","name":{},"count":{}}}"#,
            quoted(&self.name),
            names.len() + elsewhere.len()
        );
        self.room.broadcast(Message::text(left));
    }
}

impl Chat {
    fn names(&self) -> MutexGuard<'_, BTreeMap<u64, String>> {
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn serve(&self, client: &mut Connection) -> Result<(), Error> {
        let me = client.sender();
        let room = client.room(ROOM);
        let mut membership: Option<Membership> = None;
        while let Some(message) = client.receive()? {
            let request = match parse(&message) {
                Ok(request) => request,
                Err(reason) => {
                    tell_error(&me, &reason);
                    continue;
                }
            };
            match (request, &membership) {
                (Request::Join(name), None) => membership = self.join(&room, &me, &name),
                (Request::Join(_), Some(member)) => {
                    tell_error(&me, &format!("already joined as {}", member.name))
                }
                (Request::Say(text), Some(member)) => {
                    let said = format!(
                        r#"{{"type":"said","from":{},"text":{},"at":{}}}"#,
                        quoted(&member.name),
                        quoted(&text),
                        now_millis()
                    );
                    room.broadcast(Message::text(said));
                }
                (Request::Say(_), None) => {
                    tell_error(&me, "join first: {\"type\":\"join\",\"name\":...}")
                }
            }
        }
        Ok(())
    }

    /// Give the member a free name, welcome it and tell everyone else.
    fn join<'a>(&'a self, room: &'a Room, me: &Sender, wanted: &str) -> Option<Membership<'a>> {
        let elsewhere = room.names_elsewhere();
        let mut names = self.names();
        let name = unique_name(wanted, names.values().chain(&elsewhere));
        names.insert(me.id(), name.clone());
        let greeting = welcome(&name, names.values().chain(&elsewhere));
        // The welcome comes first: no one else's message may reach the newcomer before it.
        if !room.join_with(me, Message::text(greeting)) {
            names.remove(&me.id());
            return None; // its connection has just ended
        }
        room.announce(me, &name);
        let joined = format!(
            r#"{{"type":"joined","name":{},"count":{}}}"#,
            quoted(&name),
            names.len() + elsewhere.len()
        );
        room.broadcast_except(Message::text(joined), me);
        Some(Membership {
            chat: self,
            room,
            me: me.clone(),
            name,
        })
    }
}

enum Request {
    Join(String),
    Say(String),
}

/// A client's message, checked; `Err` is the reason to tell it.
fn parse(message: &Message) -> Result<Request, String> {
    let Message::Text(text) = message else {
        return Err("send text messages: JSON objects with a \"type\"".into());
    };
    let value: Value =
        serde_json::from_str(text.as_str()).map_err(|error| format!("not JSON: {error}"))?;
    let field = |name: &str| value.get(name).and_then(Value::as_str);
    match field("type") {
        Some("join") => {
            let name = field("name")
                .ok_or("a join needs a \"name\" string")?
                .trim();
            let chars = name.chars().count();
            if chars == 0 || chars > MAX_NAME_CHARS {
                return Err(format!("a name has 1 to {MAX_NAME_CHARS} characters"));
            }
            if let Some(c) = names::forbidden(name) {
                return Err(format!(
                    "a name cannot contain invisible, control or text-direction characters \
                     (U+{:04X})",
                    u32::from(c)
                ));
            }
            Ok(Request::Join(name.to_string()))
        }
        Some("say") => {
            let text = field("text").ok_or("a say needs a \"text\" string")?;
            if text.len() > MAX_TEXT_BYTES {
                return Err(format!("a text is at most {MAX_TEXT_BYTES} bytes"));
            }
            Ok(Request::Say(text.to_string()))
        }
        Some(other) => Err(format!("unknown type {other:?}: use \"join\" or \"say\"")),
        None => Err("a message needs a \"type\" string".into()),
    }
}

/// `wanted`, or `wanted 2`, `wanted 3`, ... whichever is free (cut to fit 32 characters); a
/// name differing from a member's only in case is taken.
fn unique_name<'a>(wanted: &str, members: impl Iterator<Item = &'a String> + Clone) -> String {
    let taken = |candidate: &str| members.clone().any(|name| names::same(name, candidate));
    if !taken(wanted) {
        return wanted.to_string();
    }
    (2..)
        .map(|n| {
            let suffix = format!(" {n}");
            let room = MAX_NAME_CHARS - suffix.chars().count();
            let base: String = wanted.chars().take(room).collect();
            base + &suffix
        })
        .find(|candidate| !taken(candidate))
        .unwrap_or_default()
}

fn tell_error(me: &Sender, reason: &str) {
    let error = format!(r#"{{"type":"error","reason":{}}}"#, quoted(reason));
    let _ = me.send(Message::text(error));
}

/// `{"type":"welcome","name":NAME,"members":[NAMES]}`, written in one buffer: it is the only
/// message whose size grows with the room.
fn welcome<'a>(name: &str, members: impl Iterator<Item = &'a String> + Clone) -> String {
    let names_len: usize = members.clone().map(|member| member.len() + 3).sum();
    let mut out = Vec::with_capacity(64 + name.len() + names_len);
    out.extend_from_slice(br#"{"type":"welcome","name":"#);
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, name);
    out.extend_from_slice(br#","members":["#);
    for (i, member) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, member);
    }
    out.extend_from_slice(b"]}");
    String::from_utf8(out).unwrap_or_default()
}

/// `text` as a JSON string: quoted, and escaped so that no client's text can break out of it.
fn quoted(text: &str) -> String {
    // Serialising a string cannot fail.
    serde_json::to_string(text).unwrap_or_default()
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_names_get_the_first_free_number_and_stay_within_32_characters() {
        let names: BTreeMap<u64, String> = [(1, "ann".to_string()), (2, "ann 2".to_string())]
            .into_iter()
            .collect();
        assert_eq!(unique_name("bob", names.values()), "bob");
        assert_eq!(unique_name("ann", names.values()), "ann 3");
        // Case does not make another name.
        assert_eq!(unique_name("ANN", names.values()), "ANN 3");
        let long = "x".repeat(32);
        let names: BTreeMap<u64, String> = [(1, long.clone())].into_iter().collect();
        let given = unique_name(&long, names.values());
        assert_eq!(given.chars().count(), 32);
        assert!(given.ends_with(" 2"));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let reason = |text: &str| match parse(&Message::text(text)) {
            Err(reason) => reason,
            Ok(_) => panic!("{text} accepted"),
        };
        assert!(reason("{").starts_with("not JSON"));
        assert!(reason(r#"{"type":"dance"}"#).contains("unknown type"));
        assert!(reason(r#"{"type":"join","name":"   "}"#).contains("1 to 32"));
        assert!(reason(r#"{"type":"join"}"#).contains("\"name\""));
        for hidden in [r#"admin\u200b"#, r#"\u202eadmin"#, r#"\ufeff"#] {
            let said = reason(&format!(r#"{{"type":"join","name":"{hidden}"}}"#));
            assert!(said.contains("invisible"), "{hidden}: {said}");
        }
        assert!(
            reason(&format!(
                r#"{{"type":"say","text":"{}"}}"#,
                "a".repeat(4097)
            ))
            .contains("4096")
        );
        assert!(matches!(
            parse(&Message::text(r#"{"type":"join","name":" ann ","extra":1}"#)),
            Ok(Request::Join(name)) if name == "ann"
        ));
    }
}

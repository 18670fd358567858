//! Rooms: sets of connections that hear the same messages. A broadcast encodes its frame once
//! and queues it to every member's `Sender`, which never waits for a slow client (a member that
//! cannot keep up is closed with 1008 and leaves); one thread at a time writes the room's
//! queues out, so broadcasts that come faster than that leave together (`pass.rs`). A member
//! leaves when it asks, or when its connection ends, however it ends.
//!
//! A server's named rooms (`Server::room`, `Connection::room`) are one registry, `Rooms`; with
//! `Config::redis` each of them is also the room of that name on every instance (through a
//! `Link`, which `apps/cluster.rs` implements): its broadcasts are published for the others'
//! members.

use crate::net::threads;
use crate::protocol::encoded::Encoded;
use crate::protocol::outbox::{LeavesOnEnd, SendError, Sender};
use log::debug;
use pass::{After, Passes, WRITER_IDLE};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;
use tungstenite::Message;

mod pass;
#[cfg(test)]
mod tests;

/// The same rooms on the other instances (the Redis cluster): what a linked room hands its
/// broadcasts and its members' names to. Defined here so that rooms need not know Redis.
pub(crate) trait Link: Send + Sync {
    /// Deliver what other instances broadcast in room `name` to `here`.
    fn attach(&self, name: &str, here: Arc<dyn LocalRoom>);
    /// Publish `message` to room `name`'s members on the other instances. Never waits.
    fn publish(&self, name: &str, message: &Message);
    /// Connection `id` joined room `name` here, known to the others as `member`.
    fn joined(&self, name: &str, id: u64, member: &str);
    /// Connection `id` left room `name` here.
    fn left(&self, name: &str, id: u64);
    /// The names of room `name`'s members on the other instances; `None` while unknown.
    fn others(&self, name: &str) -> Option<Vec<String>>;
}

/// A room's members on this instance, to whom a `Link` delivers the other instances'
/// broadcasts.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) trait LocalRoom: Send + Sync {
    fn deliver(&self, message: &Message);
    /// Whether the room still exists (a forgotten one has nobody to deliver to).
    fn alive(&self) -> bool;
}

/// A room; clones are the same room. Share it between handlers (it is `Send + Sync`).
#[derive(Clone, Default)]
pub struct Room {
    members: Arc<Members>,
    /// With `Config::redis`: the same room on the other instances.
    across: Option<Arc<Across>>,
}

struct Across {
    link: Arc<dyn Link>,
    name: String,
}

/// A room's members on this instance, as the link delivers others' broadcasts to them.
struct Here(#[cfg_attr(not(feature = "redis"), allow(dead_code))] Weak<Members>);

impl LocalRoom for Here {
    fn deliver(&self, message: &Message) {
        if let Some(members) = self.0.upgrade() {
            members.send_to_all(&Encoded::encode(message), None);
        }
    }

    fn alive(&self) -> bool {
        self.0.strong_count() > 0
    }
}

#[derive(Default)]
struct Members {
    list: Mutex<BTreeMap<u64, Sender>>,
    /// Who writes out what broadcasts queued (see `pass.rs`).
    passes: Passes,
}

impl Members {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Sender>> {
        self.list.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LeavesOnEnd for Members {
    fn forget(&self, id: u64) {
        self.lock().remove(&id);
    }
}

/// Whether `name` may name a room a client joins or a backend publishes to: 1 to 64 of
/// `A-Z a-z 0-9 _ . -`.
pub fn valid_room_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A server's named rooms: one room per name, made on first use, linked to the other instances
/// when the server has a `Link`. Clones are the same registry. A room nobody holds any more
/// and without members is forgotten (its name may be asked for again, and is then a new room),
/// so names chosen by clients cannot grow it without bound.
#[derive(Clone, Default)]
pub(crate) struct Rooms {
    named: Arc<Mutex<Named>>,
    link: Option<Arc<dyn Link>>,
}

#[derive(Default)]
struct Named {
    rooms: HashMap<String, Room>,
    /// Forget the unused rooms when there are this many: twice what was left the last time,
    /// so forgetting costs a constant per room made.
    forget_at: usize,
}

impl Rooms {
    pub fn new(link: Option<Arc<dyn Link>>) -> Rooms {
        Rooms {
            named: Arc::default(),
            link,
        }
    }

    /// The room called `name`, the same one for every caller.
    pub fn room(&self, name: &str) -> Room {
        let mut named = self.named.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(room) = named.rooms.get(name) {
            return room.clone();
        }
        if named.rooms.len() >= named.forget_at.max(FORGET_FROM) {
            // Held here alone (no handler, no member, no app thread has it): nobody can tell.
            named
                .rooms
                .retain(|_, room| Arc::strong_count(&room.members) > 1 || !room.is_empty());
            named.forget_at = named.rooms.len() * 2;
        }
        let room = match &self.link {
            Some(link) => Room::across(Arc::clone(link), name),
            None => Room::new(),
        };
        named.rooms.insert(name.to_string(), room.clone());
        room
    }
}

/// Fewer named rooms than this are never looked through for unused ones.
const FORGET_FROM: usize = 256;

/// What a broadcast did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Members the message was sent (or queued) to.
    pub sent: usize,
    /// Members dropped instead: closed, or too slow (their connection is being closed).
    pub dropped: usize,
}

impl Room {
    /// An empty room.
    pub fn new() -> Room {
        Room::default()
    }

    /// An empty room named `name` on every instance `link` reaches.
    fn across(link: Arc<dyn Link>, name: &str) -> Room {
        let members = Arc::new(Members::default());
        link.attach(name, Arc::new(Here(Arc::downgrade(&members))));
        let name = name.to_string();
        Room {
            members,
            across: Some(Arc::new(Across { link, name })),
        }
    }

    /// Tell the other instances that `member` is in this room as `name` (for member lists).
    pub(crate) fn announce(&self, member: &Sender, name: &str) {
        if let Some(across) = &self.across {
            across.link.joined(&across.name, member.id(), name);
        }
    }

    /// Tell the other instances that `member` has left.
    pub(crate) fn unannounce(&self, member: &Sender) {
        if let Some(across) = &self.across {
            across.link.left(&across.name, member.id());
        }
    }

    /// The names announced by members on the other instances, as far as the link can tell now
    /// (none for a room of this instance alone).
    pub(crate) fn names_elsewhere(&self) -> Vec<String> {
        let across = self.across.as_ref();
        across
            .and_then(|across| across.link.others(&across.name))
            .unwrap_or_default()
    }

    /// Add the connection behind `member`; joining twice is joining once. False when its
    /// connection has already ended.
    pub fn join(&self, member: &Sender) -> bool {
        self.enter(member, None)
    }

    /// Join, with `greeting` sent to `member` first: nothing broadcast to the room reaches it
    /// before its greeting. False when its connection has already ended.
    pub fn join_with(&self, member: &Sender, greeting: impl Into<Message>) -> bool {
        self.enter(member, Some(greeting.into()))
    }

    fn enter(&self, member: &Sender, greeting: Option<Message>) -> bool {
        let mut members = self.members.lock();
        if !member.outbox().joined(self.membership()) {
            return false;
        }
        // Before it is listed (under the lock every broadcast takes to list the members).
        if let Some(greeting) = greeting {
            let _ = member.send(greeting);
        }
        members.insert(member.id(), member.clone());
        true
    }

    /// Remove the connection behind `member`.
    pub fn leave(&self, member: &Sender) {
        self.members.lock().remove(&member.id());
        member.outbox().left(&self.membership());
    }

    /// How a member's connection finds this room again when it ends.
    fn membership(&self) -> Weak<dyn LeavesOnEnd> {
        let strong: Arc<dyn LeavesOnEnd> = self.members.clone();
        Arc::downgrade(&strong)
    }

    /// How many members it has.
    pub fn len(&self) -> usize {
        self.members.lock().len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the connection behind `member` is in it.
    pub fn contains(&self, member: &Sender) -> bool {
        self.members.lock().contains_key(&member.id())
    }

    /// The members, in the order they connected.
    pub fn members(&self) -> Vec<Sender> {
        self.members.lock().values().cloned().collect()
    }

    /// Send `message` to every member. Never waits for a slow one, nor for another broadcast:
    /// written now when nobody is writing the room's queues out, else queued for the room's
    /// writer, whose next pass carries it (see `pass.rs`). (`Delivery` counts the members on
    /// this instance.)
    pub fn broadcast(&self, message: impl Into<Message>) -> Delivery {
        self.send(message.into(), None)
    }

    /// Send `message` to every member but `except` (usually the one it came from).
    pub fn broadcast_except(&self, message: impl Into<Message>, except: &Sender) -> Delivery {
        self.send(message.into(), Some(except.id()))
    }

    fn send(&self, message: Message, except: Option<u64>) -> Delivery {
        let delivery = self.members.send_to_all(&Encoded::encode(&message), except);
        // Here first, then the others: the same order for each sender everywhere.
        if let Some(across) = &self.across {
            across.link.publish(&across.name, &message);
        }
        delivery
    }
}

impl Members {
    fn send_to_all(self: &Arc<Self>, frames: &Encoded, except: Option<u64>) -> Delivery {
        // Queued outside the lock: writing to every member's socket under it kept every other
        // broadcast (and join and leave) of the room waiting, so a busy room used one core.
        // Each sender's broadcasts still reach every member in the order it made them.
        let members: Vec<Sender> = self
            .lock()
            .iter()
            .filter(|&(&id, _)| Some(id) != except)
            .map(|(_, member)| member.clone())
            .collect();
        // Members found closed or too slow (few: a list will do).
        let mut gone = Vec::new();
        for member in &members {
            if let Err(SendError::Closed | SendError::TooSlow | SendError::OverBudget) =
                member.queue(frames)
            {
                gone.push(member.id());
            }
        }
        // Queued to everyone first, then written in a pass, which also carries what other
        // broadcasts queued meanwhile: under load several frames per member per `writev`.
        if let Some(pass) = self.passes.take_turn() {
            self.write_everyone(&mut gone);
            if pass.end() == After::StartWriter {
                self.start_writer();
            }
        }
        let delivery = Delivery {
            sent: members.iter().filter(|m| !gone.contains(&m.id())).count(),
            dropped: gone.len(),
        };
        self.remove(&gone);
        delivery
    }

    /// One pass: what each member has queued, in one write each. Adds to `gone` the members
    /// found closed or too slow.
    fn write_everyone(&self, gone: &mut Vec<u64>) {
        let everyone: Vec<Sender> = self.lock().values().cloned().collect();
        for member in &everyone {
            if let Err(SendError::Closed | SendError::TooSlow | SendError::OverBudget) =
                member.write_queued()
                && !gone.contains(&member.id())
            {
                gone.push(member.id());
            }
        }
    }

    fn remove(&self, gone: &[u64]) {
        if !gone.is_empty() {
            let mut members = self.lock();
            for id in gone {
                members.remove(id);
            }
        }
    }

    /// Start the room's writer, which makes the passes owed while the room is busy (see
    /// `pass.rs`). Without a thread to be had, this thread makes them.
    fn start_writer(self: &Arc<Self>) {
        let serve = |members: Arc<Members>, idle| {
            members.passes.serve(idle, || {
                let mut gone = Vec::new();
                members.write_everyone(&mut gone);
                members.remove(&gone);
            })
        };
        if let Err((error, members)) = threads::spawn(
            c"room-writer",
            WRITER_STACK,
            Arc::clone(self),
            move |members| serve(members, WRITER_IDLE),
        ) {
            debug!("room: no thread for its writer ({error}); the broadcasting thread writes");
            serve(members, Duration::ZERO);
        }
    }
}

/// The writer's stack: it keeps little on it.
const WRITER_STACK: usize = 64 * 1024;

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Room({} members)", self.len())
    }
}

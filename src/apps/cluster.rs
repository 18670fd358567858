//! (feature `redis`) Rooms across several wsecho instances, through Redis pub/sub.
//!
//! A broadcast is delivered to the room's members on this instance at once, then published
//! once on the room's channel, `wsecho:room:NAME`; every other instance delivers it to its own
//! members, and the sender's instance skips its own (each member hears it exactly once). One
//! connection publishes everything, in the order given, so each sender's order holds across
//! instances. Broadcasting threads never wait for Redis: they hand the message to the
//! publishing thread through a bounded queue (full: dropped, counted in the log).
//!
//! Membership (`membership.rs`), for the room's list and count: each instance keeps a hash
//! `wsecho:room:NAME:members:INSTANCE` (connection id -> name) that expires `MEMBERS_TTL` after
//! its last refresh (every `HEARTBEAT`), and adds itself to the set
//! `wsecho:room:NAME:instances`. An instance that dies stops refreshing: its members vanish
//! within the expiry. One that stops cleanly deletes its hash.
//!
//! Redis away: this instance goes on serving its own members, logs one line, tries again with
//! backoff (`RETRY_FIRST` doubling up to `RETRY_LAST`), then writes its whole membership again
//! and resumes. Pub/sub is at most once: what was published while an instance was cut off is
//! lost to it.

use crate::net::resp::{self, Address, Commands, Connection};
use crate::protocol::room::{Link, LocalRoom};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use log::{info, warn};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::Message;

mod membership;

/// How often this instance refreshes its membership.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a membership outlives its last refresh.
const MEMBERS_TTL: Duration = Duration::from_secs(6);
/// Waiting for Redis to connect or answer.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// Waiting for Redis to say who is in a room, while a client waits to join or leave: past it,
/// Redis counts as down, and the room as this instance's members only.
const QUERY_TIMEOUT: Duration = Duration::from_millis(250);
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_LAST: Duration = Duration::from_secs(5);
/// Messages waiting for the publishing thread; past it, broadcasts stay local.
const QUEUE: usize = 4096;

/// This instance's link to the others.
pub struct Cluster {
    /// Where Redis is (shown in log lines without the password).
    address: Address,
    /// Most bytes one reply from Redis may take (see `resp`).
    reply_limit: usize,
    /// This process's name among the instances: random, new at every start.
    instance: String,
    jobs: Sender<Job>,
    rooms: Mutex<HashMap<String, Arc<dyn LocalRoom>>>,
    /// For the member lists that joining threads ask for.
    query: Mutex<Option<Connection>>,
    /// What the last query said, room by room: the answer for a join or leave that finds
    /// another one querying, rather than a wait in line behind it.
    known: Mutex<HashMap<String, Vec<String>>>,
    /// Redis is unreachable: everything stays local until it is back.
    down: AtomicBool,
    stopping: AtomicBool,
    /// Broadcasts not published because the queue was full.
    dropped: AtomicU64,
}

enum Job {
    Publish { room: String, payload: Vec<u8> },
    Joined { room: String, id: u64, name: String },
    Left { room: String, id: u64 },
    Stop,
}

impl Cluster {
    /// Connect to `url` (see `resp::Address`); an error only for a URL that is not one.
    /// A reply from Redis larger than `reply_limit` bytes drops the link, as if Redis were
    /// down. Returns once this instance hears the others (or, Redis being unreachable, after
    /// `REDIS_TIMEOUT`: that is logged, and retried in the background).
    pub fn start(url: &str, reply_limit: usize) -> Result<Arc<Cluster>, String> {
        let address = Address::parse(url)?;
        let (jobs, queue) = crossbeam_channel::bounded(QUEUE);
        let cluster = Arc::new(Cluster {
            address,
            reply_limit,
            instance: random_name(),
            jobs,
            rooms: Mutex::new(HashMap::new()),
            query: Mutex::new(None),
            known: Mutex::new(HashMap::new()),
            // Until the publishing thread has connected.
            down: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        });
        let publishing = Arc::clone(&cluster);
        let subscribing = Arc::clone(&cluster);
        // Each thread says once when it is through to Redis.
        let (through, ready) = crossbeam_channel::bounded(2);
        let subscribed = through.clone();
        let spawned = thread::Builder::new()
            .name("redis-publish".into())
            .spawn(move || publishing.publish_loop(queue, through))
            .and_then(|_| {
                thread::Builder::new()
                    .name("redis-subscribe".into())
                    .spawn(move || subscribing.subscribe_loop(subscribed))
            });
        spawned.map_err(|error| format!("cannot start the Redis threads: {error}"))?;
        let deadline = Instant::now() + REDIS_TIMEOUT * 2;
        for _ in 0..2 {
            let _ = ready.recv_deadline(deadline);
        }
        info!(
            "rooms shared through redis at {} as instance {}",
            cluster.address, cluster.instance
        );
        Ok(cluster)
    }

    /// Stop: this instance's memberships are deleted, its threads end.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let _ = self.jobs.send_timeout(Job::Stop, REDIS_TIMEOUT);
    }

    fn connect(&self) -> Result<Connection, resp::Error> {
        self.connect_within(REDIS_TIMEOUT)
    }

    fn connect_within(&self, timeout: Duration) -> Result<Connection, resp::Error> {
        self.address.connect(timeout, self.reply_limit)
    }

    /// Redis failed us: one line when it starts.
    fn lost(&self, error: &resp::Error) {
        if !self.down.swap(true, Ordering::Relaxed) {
            warn!(
                "redis at {} failed ({error}): rooms carry on with this instance's members \
                 only; trying again with backoff",
                self.address
            );
        }
    }

    /// The publishing thread: every write to Redis, in order, and the heartbeat.
    fn publish_loop(self: Arc<Self>, queue: Receiver<Job>, connected: Sender<()>) {
        let mut link: Option<Connection> = None;
        let mut retry = RETRY_FIRST;
        let mut next_try = Instant::now();
        let mut next_beat = Instant::now();
        // This instance's members, room by room, to write again after Redis comes back.
        let mut mirror: HashMap<String, BTreeMap<u64, String>> = HashMap::new();
        let mut first = true;
        loop {
            let wake_at = if link.is_some() { next_beat } else { next_try };
            let job = match queue.recv_deadline(wake_at) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if let Some(Job::Stop) = job {
                if let Some(connection) = link.as_mut() {
                    let _ = self.forget_all(connection, &mirror);
                }
                return;
            }
            let written = match (job, link.as_mut()) {
                (Some(job), connection) => self.apply(job, &mut mirror, connection),
                (None, _) => Ok(()),
            };
            if let Err(error) = written {
                self.lost(&error);
                link = None;
                next_try = Instant::now() + retry;
            }
            if link.is_none() && Instant::now() >= next_try {
                match self
                    .connect()
                    .and_then(|mut c| self.rewrite(&mut c, &mirror).map(|()| c))
                {
                    Ok(connection) => {
                        link = Some(connection);
                        retry = RETRY_FIRST;
                        next_beat = Instant::now() + HEARTBEAT;
                        if self.down.swap(false, Ordering::Relaxed) && !first {
                            info!(
                                "redis at {} reachable again: rooms span every instance again",
                                self.address
                            );
                        }
                        first = false;
                        let _ = connected.try_send(());
                    }
                    Err(error) => {
                        if first {
                            warn!(
                                "redis at {} failed ({error}): rooms carry on with this \
                                 instance's members only; trying again with backoff",
                                self.address
                            );
                            first = false;
                        }
                        next_try = Instant::now() + retry;
                        retry = (retry * 2).min(RETRY_LAST);
                    }
                }
            }
            if let Some(connection) = link.as_mut()
                && Instant::now() >= next_beat
            {
                next_beat = Instant::now() + HEARTBEAT;
                match self.heartbeat(connection, &mirror) {
                    Err(error) => {
                        self.lost(&error);
                        link = None;
                        next_try = Instant::now() + retry;
                    }
                    // A member-list query may have found Redis slow and marked it down.
                    Ok(()) if self.down.swap(false, Ordering::Relaxed) => info!(
                        "redis at {} answers again: rooms span every instance again",
                        self.address
                    ),
                    Ok(()) => {}
                }
            }
        }
    }

    /// Carry out one job: always on the mirror, on Redis when connected.
    fn apply(
        &self,
        job: Job,
        mirror: &mut HashMap<String, BTreeMap<u64, String>>,
        connection: Option<&mut Connection>,
    ) -> Result<(), resp::Error> {
        match job {
            Job::Publish { room, payload } => {
                let Some(connection) = connection else {
                    return Ok(());
                };
                let channel = channel(&room);
                connection.query(&Commands::one(&[b"PUBLISH", channel.as_bytes(), &payload]))?;
                Ok(())
            }
            Job::Joined { room, id, name } => {
                mirror
                    .entry(room.clone())
                    .or_default()
                    .insert(id, name.clone());
                let Some(connection) = connection else {
                    return Ok(());
                };
                connection.query(&self.joining(&room, id, &name))?;
                Ok(())
            }
            Job::Left { room, id } => {
                if let Some(members) = mirror.get_mut(&room) {
                    members.remove(&id);
                }
                let Some(connection) = connection else {
                    return Ok(());
                };
                connection.query(&self.leaving(&room, id))?;
                Ok(())
            }
            Job::Stop => Ok(()),
        }
    }

    /// The subscribing thread: what other instances publish, to this instance's members.
    fn subscribe_loop(self: Arc<Self>, subscribed: Sender<()>) {
        let mut retry = RETRY_FIRST;
        while !self.stopping.load(Ordering::Relaxed) {
            let failed = match self.connect().and_then(|mut connection| {
                let pattern = channel("*");
                let subscribe = Commands::one(&[b"PSUBSCRIBE", pattern.as_bytes()]);
                connection.send(&subscribe, Instant::now() + REDIS_TIMEOUT)?;
                connection.reply(Instant::now() + REDIS_TIMEOUT)?;
                Ok(connection)
            }) {
                Ok(mut connection) => {
                    let _ = subscribed.try_send(());
                    retry = RETRY_FIRST;
                    self.deliver_until_lost(&mut connection)
                }
                Err(error) => Some(error),
            };
            match failed {
                // A reply past the limit, or not Redis's: as loud as the publisher's failures.
                Some(error @ (resp::Error::TooLarge(_) | resp::Error::Protocol(_))) => {
                    self.lost(&error)
                }
                Some(error) => log::debug!("redis subscriber: {error}"),
                None => {}
            }
            if self.stopping.load(Ordering::Relaxed) {
                return;
            }
            thread::sleep(retry);
            retry = (retry * 2).min(RETRY_LAST);
        }
    }

    /// Deliver what comes on the subscription until it fails (the error) or this instance
    /// stops (`None`). The stop flag is looked at every `REDIS_TIMEOUT` at least.
    fn deliver_until_lost(&self, connection: &mut Connection) -> Option<resp::Error> {
        while !self.stopping.load(Ordering::Relaxed) {
            let message =
                connection
                    .wait_for_reply(REDIS_TIMEOUT)
                    .and_then(|arrived| match arrived {
                        true => connection.reply(Instant::now() + REDIS_TIMEOUT).map(Some),
                        false => Ok(None),
                    });
            match message {
                Ok(Some(reply)) => {
                    // `pmessage`, the pattern, the channel, the payload.
                    if let [kind, _, channel, payload] = &reply.into_strings()[..]
                        && kind == b"pmessage"
                    {
                        self.deliver(&String::from_utf8_lossy(channel), payload);
                    }
                }
                Ok(None) => {}
                Err(error) => return Some(error),
            }
        }
        None
    }

    /// One published message, to this instance's members of its room (unless it came from
    /// here, where they already have it).
    fn deliver(&self, channel_name: &str, payload: &[u8]) {
        let Some(room) = channel_name.strip_prefix(CHANNEL_PREFIX) else {
            return;
        };
        let Some((sender, rest)) = payload.split_at_checked(self.instance.len()) else {
            return;
        };
        if sender == self.instance.as_bytes() {
            return;
        }
        let message = match rest.split_first() {
            Some((b't', text)) => match std::str::from_utf8(text) {
                Ok(text) => Message::text(text),
                Err(_) => return,
            },
            Some((b'b', data)) => Message::binary(data.to_vec()),
            _ => return,
        };
        let local = lock(&self.rooms).get(room).cloned();
        if let Some(local) = local {
            local.deliver(&message);
        }
    }
}

impl Link for Cluster {
    /// Deliver what other instances publish on `name`'s channel to `room`'s members here.
    fn attach(&self, name: &str, here: Arc<dyn LocalRoom>) {
        let mut rooms = lock(&self.rooms);
        // Rooms forgotten here (see `Rooms`) go too, now and then: the map stays bounded.
        if rooms.len() >= 256 && rooms.len().is_power_of_two() {
            rooms.retain(|_, room| room.alive());
        }
        rooms.insert(name.to_string(), here);
    }

    /// Publish `message` to `room`'s members on the other instances. Never waits.
    fn publish(&self, name: &str, message: &Message) {
        let (kind, data): (u8, &[u8]) = match message {
            Message::Text(text) => (b't', text.as_bytes()),
            Message::Binary(data) => (b'b', data),
            _ => return,
        };
        if self.down.load(Ordering::Relaxed) {
            return;
        }
        let mut payload = Vec::with_capacity(self.instance.len() + 1 + data.len());
        payload.extend_from_slice(self.instance.as_bytes());
        payload.push(kind);
        payload.extend_from_slice(data);
        let job = Job::Publish {
            room: name.to_string(),
            payload,
        };
        if let Err(TrySendError::Full(_)) = self.jobs.try_send(job) {
            // Redis is slower than the room: say so once in a while, never wait.
            if self
                .dropped
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(1000)
            {
                warn!("redis cannot keep up: broadcasts stay on this instance until it does");
            }
        }
    }

    /// Connection `id` joined `room` as `name` here.
    fn joined(&self, name: &str, id: u64, member: &str) {
        let _ = self.jobs.try_send(Job::Joined {
            room: name.to_string(),
            id,
            name: member.to_string(),
        });
    }

    /// Connection `id` left `room` here.
    fn left(&self, name: &str, id: u64) {
        let _ = self.jobs.try_send(Job::Left {
            room: name.to_string(),
            id,
        });
    }

    /// The names of `room`'s members on the other live instances; `None` while Redis cannot
    /// say (then only this instance's members are known). Never waits long: a caller that
    /// finds another querying takes what the last query said, and a Redis that does not answer
    /// within `QUERY_TIMEOUT` is marked down by whoever notices first, until the publishing
    /// thread's next heartbeat gets through.
    fn others(&self, name: &str) -> Option<Vec<String>> {
        if self.down.load(Ordering::Relaxed) {
            return None;
        }
        let Ok(mut query) = self.query.try_lock() else {
            return lock(&self.known).get(name).cloned();
        };
        if query.is_none() {
            match self.connect_within(QUERY_TIMEOUT) {
                Ok(connection) => *query = Some(connection),
                Err(error) => {
                    self.lost(&error);
                    return None;
                }
            }
        }
        let connection = query.as_mut()?;
        match self.others_on(connection, name) {
            Ok(names) => {
                lock(&self.known).insert(name.to_string(), names.clone());
                Some(names)
            }
            Err(error) => {
                *query = None;
                self.lost(&error);
                None
            }
        }
    }
}

const CHANNEL_PREFIX: &str = "wsecho:room:";

fn channel(room: &str) -> String {
    format!("{CHANNEL_PREFIX}{room}")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// 16 hex digits from the system's random source (the time, should that fail).
fn random_name() -> String {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer we own.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    let value = if got == bytes.len() as isize {
        u64::from_ne_bytes(bytes)
    } else {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(0, |d| d.as_nanos() as u64) ^ u64::from(std::process::id())
    };
    format!("{value:016x}")
}

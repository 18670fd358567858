//! The registry of open connections on one port: admission under a cap, waking every
//! connection at shutdown, and waiting for them to finish.
//!
//! Each open connection holds a `Ticket` with a clone of a completion sender, so the channel
//! disconnects exactly when the last connection has finished (mini-redis's shape). The registry
//! also shares each connection's socket, so shutdown can wake a thread blocked in `read()`
//! (`shutdown(Read)` makes it return at once) instead of waiting for a timeout.
//!
//! One address may hold at most `max_per_address` of them, counted from accept (openings
//! included), so one client cannot take every place. IPv6 addresses count by their first
//! `ipv6_prefix` bits (64 by default): any IPv6 client owns at least a /64, and would otherwise
//! have 2^64 addresses to spread its connections over. A trusted proxy's connections are counted
//! only once its request names the client (`Ticket::count_as`): against that client.
//!
//! Admissions still in their opening (and Flash policy requests, which never go further) share
//! a smaller pool, `max_openings` (on the ports that have one): when it is full, the oldest opener of the address holding the
//! most openers is cut to let a newcomer from elsewhere in, and a newcomer from that address
//! itself is refused. Slow openers thus never keep out established clients or other addresses.
//!
//! A connection may say it is idle (waiting for a client that has not begun its next request).
//! When the cap is reached, the connection idle longest is closed to admit the new one, so a
//! crowd of idle connections cannot keep anyone else out.

use crate::net::stream::Stream;
use crate::ops::metrics::Reason;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, Shutdown};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum NotAdmitted {
    /// `max` connections are already open.
    Full { max: usize },
    /// The client's address already holds `max` of them.
    AddressFull { max: usize },
    /// `max` connections are still opening, the most of them from the newcomer's own address.
    OpeningsFull { max: usize },
    /// The server is shutting down.
    ShuttingDown,
}

impl NotAdmitted {
    /// Why, in a word, for `/metrics`.
    pub fn reason(&self) -> Reason {
        match self {
            NotAdmitted::Full { .. } => Reason::Cap,
            NotAdmitted::AddressFull { .. } => Reason::PerAddress,
            NotAdmitted::OpeningsFull { .. } => Reason::Openings,
            NotAdmitted::ShuttingDown => Reason::ShuttingDown,
        }
    }
}

/// The open connections: admission (the cap), waking them at shutdown, and waiting for them.
pub struct Admissions {
    state: Mutex<State>,
    finished: Receiver<()>,
    max: usize,
    max_per_address: usize,
    /// The openers' pool; `None`: connections count as established from accept.
    max_openings: Option<usize>,
    /// Addresses whose connections carry other clients (`--trusted-proxy`).
    trusted_proxies: Vec<IpAddr>,
    /// How many leading bits of an IPv6 address name its client.
    ipv6_prefix: u8,
}

struct State {
    open: HashMap<u64, Entry>,
    /// How many of `open` are idle.
    idle: usize,
    next_id: u64,
    /// The original completion sender; `None` once shutdown stopped admissions.
    completion: Option<Sender<()>>,
    /// Open connections by client address.
    per_address: HashMap<IpAddr, usize>,
    /// How many of `open` are still opening.
    openings: usize,
    /// The most open at once since memory was last given back (see `remove`).
    peak: usize,
}

/// A wave of at least this many connections, three quarters of it closed, gives its memory
/// back (`give_back`): what their threads and sessions took is not in the memory budget.
const WAVE: usize = 256;

struct Entry {
    socket: Arc<Stream>,
    /// Since when the connection has been waiting for its client; `None` while it works.
    idle_since: Option<Instant>,
    address: IpAddr,
    /// The address whose share it takes: its own, or for a trusted proxy's connection the
    /// client's once known (`None` until then).
    counted_as: Option<IpAddr>,
    /// When it was admitted, while it is still opening; `None` once established.
    opening_since: Option<Instant>,
}

/// Held by a connection's thread for as long as it runs; dropping it (also while unwinding
/// from a panic) removes the connection and signals its completion.
pub struct Ticket {
    pub id: u64,
    connections: Arc<Admissions>,
    _completion: Sender<()>,
}

impl Admissions {
    /// `max_openings` of `max` may be still opening at once; `None` for no openers' pool.
    pub fn new(
        max: usize,
        max_per_address: usize,
        max_openings: Option<usize>,
        trusted_proxies: Vec<IpAddr>,
        ipv6_prefix: u8,
    ) -> Arc<Admissions> {
        let (completion, finished) = crossbeam_channel::bounded(0);
        Arc::new(Admissions {
            state: Mutex::new(State {
                open: HashMap::new(),
                idle: 0,
                next_id: 1,
                completion: Some(completion),
                per_address: HashMap::new(),
                openings: 0,
                peak: 0,
            }),
            finished,
            max,
            max_per_address,
            max_openings,
            trusted_proxies,
            ipv6_prefix,
        })
    }

    /// Admit a connection from `address`, keeping its socket to wake it at shutdown. At the
    /// cap, the connection idle longest (if any) is closed to make room; an address at its own
    /// cap is refused first, so it cannot push others out.
    pub fn admit(
        self: &Arc<Self>,
        waker: Arc<Stream>,
        address: IpAddr,
    ) -> Result<Ticket, NotAdmitted> {
        let mut state = lock(&self.state);
        let Some(completion) = state.completion.clone() else {
            return Err(NotAdmitted::ShuttingDown);
        };
        let counted_as = (!self.trusted_proxies.contains(&address))
            .then(|| address_key(address, self.ipv6_prefix));
        if let Some(address) = counted_as {
            state.check_address(address, self.max_per_address)?;
        }
        let all_full = state.open.len() >= self.max && !state.evict_longest_idle();
        let pool_full = self.max_openings.filter(|&max| state.openings >= max);
        if (all_full || pool_full.is_some()) && !state.cut_opener(address) {
            return Err(match pool_full {
                Some(max) if !all_full => NotAdmitted::OpeningsFull { max },
                _ => NotAdmitted::Full { max: self.max },
            });
        }
        let id = state.next_id;
        state.next_id += 1;
        let entry = Entry {
            socket: waker,
            idle_since: None,
            address,
            counted_as,
            opening_since: self.max_openings.map(|_| Instant::now()),
        };
        state.openings += usize::from(entry.opening_since.is_some());
        state.open.insert(id, entry);
        state.peak = state.peak.max(state.open.len());
        if let Some(address) = counted_as {
            *state.per_address.entry(address).or_default() += 1;
        }
        Ok(Ticket {
            id,
            connections: Arc::clone(self),
            _completion: completion,
        })
    }

    /// The cap: most connections open at once.
    pub fn max(&self) -> usize {
        self.max
    }

    pub fn open_count(&self) -> usize {
        lock(&self.state).open.len()
    }

    /// How many connections were ever admitted.
    pub fn admitted_count(&self) -> u64 {
        lock(&self.state).next_id - 1
    }

    /// Stop admitting and wake every established connection: its blocked `read()` returns at
    /// once, while data already received stays readable, so no accepted message is lost.
    /// Connections still opening are woken by `wake_openers`, a moment later: a client accepted
    /// as shutdown began is answered and closed like the others, rather than cut off before
    /// its request has arrived.
    pub fn stop_and_wake(&self) {
        let mut state = lock(&self.state);
        state.completion = None;
        for entry in state.open.values() {
            if entry.opening_since.is_none() {
                let _ = entry.socket.wire().shutdown(Shutdown::Read);
            }
        }
    }

    /// Wake the connections still opening (after `stop_and_wake`).
    pub fn wake_openers(&self) {
        let state = lock(&self.state);
        for entry in state.open.values() {
            if entry.opening_since.is_some() {
                let _ = entry.socket.wire().shutdown(Shutdown::Read);
            }
        }
    }

    /// Wait until every admitted connection has finished or `deadline` passes; true if
    /// they all have.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        loop {
            match self.finished.recv_deadline(deadline) {
                Err(RecvTimeoutError::Disconnected) => return true,
                Err(RecvTimeoutError::Timeout) => return false,
                Ok(()) => {}
            }
        }
    }

    /// Wait until every admitted connection has finished or `timeout` passes; then cut the
    /// sockets of any left (a thread stuck writing to a client that does not read) and return
    /// how many were still open.
    pub fn wait_finished(&self, timeout: Duration) -> usize {
        if self.wait_until(Instant::now() + timeout) {
            return 0;
        }
        let state = lock(&self.state);
        for entry in state.open.values() {
            let _ = entry.socket.wire().shutdown(Shutdown::Both);
        }
        state.open.len()
    }
}

impl State {
    fn check_address(&self, address: IpAddr, max: usize) -> Result<(), NotAdmitted> {
        if self.per_address.get(&address).copied().unwrap_or(0) >= max {
            return Err(NotAdmitted::AddressFull { max });
        }
        Ok(())
    }

    /// Close the connection idle longest and forget it (its thread sees the close at once
    /// and ends). False when none is idle.
    fn evict_longest_idle(&mut self) -> bool {
        if self.idle == 0 {
            return false;
        }
        let longest = self
            .open
            .iter()
            .filter_map(|(&id, entry)| Some((entry.idle_since?, id)))
            .min();
        let Some((_, id)) = longest else {
            return false;
        };
        if let Some(entry) = self.remove(id) {
            let _ = entry.socket.wire().shutdown(Shutdown::Both);
        }
        true
    }

    /// Cut the oldest opener of the address holding the most openers, unless that is
    /// `newcomer`'s own (or it holds as many): false then, or when nobody is opening.
    fn cut_opener(&mut self, newcomer: IpAddr) -> bool {
        let mut by_address: HashMap<IpAddr, (usize, Instant, u64)> = HashMap::new();
        for (&id, entry) in &self.open {
            let Some(since) = entry.opening_since else {
                continue;
            };
            let slot = by_address.entry(entry.address).or_insert((0, since, id));
            slot.0 += 1;
            if since < slot.1 {
                (slot.1, slot.2) = (since, id);
            }
        }
        let own = by_address.get(&newcomer).map_or(0, |slot| slot.0);
        let Some(&(count, _, oldest)) = by_address.values().max_by_key(|slot| slot.0) else {
            return false;
        };
        if count <= own {
            return false;
        }
        if let Some(entry) = self.remove(oldest) {
            let _ = entry.socket.wire().shutdown(Shutdown::Both);
        }
        true
    }

    /// Whether a wave of `WAVE` or more connections is now three quarters closed; the next
    /// wave is counted from here.
    fn wave_over(&mut self) -> bool {
        let over = self.peak >= WAVE && self.open.len() <= self.peak / 4;
        if over {
            self.peak = self.open.len();
        }
        over
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.open.remove(&id)?;
        if entry.opening_since.is_some() {
            self.openings -= 1;
        }
        if entry.idle_since.is_some() {
            self.idle -= 1;
        }
        if let Some(address) = entry.counted_as
            && let Some(count) = self.per_address.get_mut(&address)
        {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&address);
            }
        }
        Some(entry)
    }
}

impl Ticket {
    /// The connection's opening is done (the upgrade answered): it leaves the openers' pool.
    pub fn established(&self) {
        let mut state = lock(&self.connections.state);
        let state = &mut *state;
        if let Some(entry) = state.open.get_mut(&self.id)
            && entry.opening_since.take().is_some()
        {
            state.openings -= 1;
        }
    }

    /// A trusted proxy's connection now knows its client: count it against that client's
    /// address (refused if it already holds its share). Any other connection is counted
    /// already, and this does nothing.
    pub fn count_as(&self, client: IpAddr) -> Result<(), NotAdmitted> {
        let client = address_key(client, self.connections.ipv6_prefix);
        let mut state = lock(&self.connections.state);
        let state = &mut *state;
        let max = self.connections.max_per_address;
        match state.open.get(&self.id) {
            Some(entry) if entry.counted_as.is_none() => state.check_address(client, max)?,
            _ => return Ok(()),
        }
        if let Some(entry) = state.open.get_mut(&self.id) {
            entry.counted_as = Some(client);
        }
        *state.per_address.entry(client).or_default() += 1;
        Ok(())
    }

    /// Say whether the connection is waiting for its client to begin a request; an idle one
    /// may be closed to admit another when the cap is reached.
    pub fn set_idle(&self, idle: bool) {
        let mut state = lock(&self.connections.state);
        let state = &mut *state;
        let Some(entry) = state.open.get_mut(&self.id) else {
            return; // already evicted
        };
        match (entry.idle_since.is_some(), idle) {
            (false, true) => {
                entry.idle_since = Some(Instant::now());
                state.idle += 1;
            }
            (true, false) => {
                entry.idle_since = None;
                state.idle -= 1;
            }
            _ => {}
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let wave_over = {
            let mut state = lock(&self.connections.state);
            state.remove(self.id);
            state.wave_over()
        };
        if wave_over {
            crate::ops::give_back::soon();
        }
    }
}

/// The address `address`'s connections are counted under: an IPv4 address as it is (also
/// when written as IPv6, `::ffff:a.b.c.d`), an IPv6 address cut to its first `prefix` bits.
pub fn address_key(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(prefix.min(128)))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
        },
    }
}

/// Lock, ignoring poisoning: every critical section here leaves the state consistent, and a
/// panicking connection thread must not take the registry down with it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(address: &str, prefix: u8) -> String {
        address_key(address.parse().unwrap(), prefix).to_string()
    }

    #[test]
    fn ipv6_clients_count_by_their_prefix_and_ipv4_ones_by_their_address() {
        assert_eq!(key("2001:db8:1:2:aaaa::1", 64), "2001:db8:1:2::");
        assert_eq!(
            key("2001:db8:1:2:ffff:ffff:ffff:ffff", 64),
            "2001:db8:1:2::"
        );
        assert_ne!(key("2001:db8:1:3::1", 64), key("2001:db8:1:2::1", 64));
        assert_eq!(key("2001:db8:1:2:aaaa::1", 48), "2001:db8:1::");
        assert_eq!(key("2001:db8::7", 128), "2001:db8::7");
        assert_eq!(key("2001:db8::7", 0), "::");
        assert_eq!(key("::1", 64), "::");
        assert_eq!(key("192.0.2.7", 64), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7", 64), "192.0.2.7");
    }
}

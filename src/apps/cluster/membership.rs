//! The cluster's membership in Redis: each instance's hash of its members per room, its place
//! in the room's set of instances, the heartbeat that keeps both alive, and the reading of the
//! other instances' members (see the parent module's notes).

use super::{Cluster, MEMBERS_TTL};
use crate::net::resp::{self, Commands, Connection, Reply};
use std::collections::{BTreeMap, HashMap};

impl Cluster {
    /// Connection `id` joined `room` here as `name`: into this instance's hash, kept alive.
    pub(super) fn joining(&self, room: &str, id: u64, name: &str) -> Commands {
        let key = members_key(room, &self.instance);
        let id = id.to_string();
        let mut pipe = Commands::one(&[b"HSET", key.as_bytes(), id.as_bytes(), name.as_bytes()]);
        self.keep_alive(&mut pipe, room);
        pipe
    }

    /// Connection `id` left `room` here.
    pub(super) fn leaving(&self, room: &str, id: u64) -> Commands {
        let key = members_key(room, &self.instance);
        Commands::one(&[b"HDEL", key.as_bytes(), id.to_string().as_bytes()])
    }

    pub(super) fn others_on(
        &self,
        connection: &mut Connection,
        room: &str,
    ) -> Result<Vec<String>, resp::Error> {
        let instances_key = instances_key(room);
        let instances = connection
            .query(&Commands::one(&[b"SMEMBERS", instances_key.as_bytes()]))?
            .pop()
            .map(Reply::into_strings)
            .unwrap_or_default();
        let others: Vec<Vec<u8>> = instances
            .into_iter()
            .filter(|instance| instance != self.instance.as_bytes())
            .collect();
        let mut pipe = Commands::default();
        for instance in &others {
            let key = members_key(room, &String::from_utf8_lossy(instance));
            pipe.add(&[b"HGETALL", key.as_bytes()]);
        }
        let hashes = connection.query(&pipe)?;
        let mut names = Vec::new();
        for (instance, hash) in others.iter().zip(hashes) {
            // Field, value, field, value: connection id, then name (in id order).
            let fields = hash.into_strings();
            let members: BTreeMap<u64, String> = fields
                .chunks_exact(2)
                .filter_map(|pair| {
                    let id = std::str::from_utf8(&pair[0]).ok()?.parse().ok()?;
                    Some((id, String::from_utf8_lossy(&pair[1]).into_owned()))
                })
                .collect();
            if members.is_empty() {
                // Expired (the instance died), or just empty: a live one adds itself again.
                let forget = Commands::one(&[b"SREM", instances_key.as_bytes(), instance]);
                let _ = connection.query(&forget);
            }
            names.extend(members.into_values());
        }
        Ok(names)
    }

    /// Keep this instance's membership of `room` (and its place among the instances) alive for
    /// another `MEMBERS_TTL`.
    fn keep_alive(&self, pipe: &mut Commands, room: &str) {
        let ttl = MEMBERS_TTL.as_millis().to_string();
        let key = members_key(room, &self.instance);
        pipe.add(&[b"PEXPIRE", key.as_bytes(), ttl.as_bytes()]);
        pipe.add(&[
            b"SADD",
            instances_key(room).as_bytes(),
            self.instance.as_bytes(),
        ]);
    }

    /// Keep every membership of this instance alive; also proves Redis is there when no room
    /// has anyone.
    pub(super) fn heartbeat(
        &self,
        connection: &mut Connection,
        mirror: &HashMap<String, BTreeMap<u64, String>>,
    ) -> Result<(), resp::Error> {
        self.beat(Commands::default(), connection, mirror)
    }

    /// `pipe`, then a heartbeat, in one round trip.
    fn beat(
        &self,
        mut pipe: Commands,
        connection: &mut Connection,
        mirror: &HashMap<String, BTreeMap<u64, String>>,
    ) -> Result<(), resp::Error> {
        for room in mirror.keys() {
            self.keep_alive(&mut pipe, room);
        }
        pipe.add(&[b"PING"]);
        connection.query(&pipe)?;
        Ok(())
    }

    /// Write every membership of this instance again (Redis may have lost them).
    pub(super) fn rewrite(
        &self,
        connection: &mut Connection,
        mirror: &HashMap<String, BTreeMap<u64, String>>,
    ) -> Result<(), resp::Error> {
        let mut pipe = Commands::default();
        for (room, members) in mirror {
            let key = members_key(room, &self.instance);
            pipe.add(&[b"DEL", key.as_bytes()]);
            if members.is_empty() {
                continue;
            }
            let ids: Vec<String> = members.keys().map(u64::to_string).collect();
            let mut parts: Vec<&[u8]> = vec![b"HSET", key.as_bytes()];
            for (id, name) in ids.iter().zip(members.values()) {
                parts.push(id.as_bytes());
                parts.push(name.as_bytes());
            }
            pipe.add(&parts);
        }
        self.beat(pipe, connection, mirror)
    }

    /// Stopping cleanly: this instance's members leave every list at once.
    pub(super) fn forget_all(
        &self,
        connection: &mut Connection,
        mirror: &HashMap<String, BTreeMap<u64, String>>,
    ) -> Result<(), resp::Error> {
        let mut pipe = Commands::default();
        for room in mirror.keys() {
            pipe.add(&[b"DEL", members_key(room, &self.instance).as_bytes()]);
            pipe.add(&[
                b"SREM",
                instances_key(room).as_bytes(),
                self.instance.as_bytes(),
            ]);
        }
        connection.query(&pipe)?;
        Ok(())
    }
}

fn members_key(room: &str, instance: &str) -> String {
    format!("wsecho:room:{room}:members:{instance}")
}

fn instances_key(room: &str) -> String {
    format!("wsecho:room:{room}:instances")
}

//! Built without the `redis` feature: no cluster can exist (the type has no values), so every
//! room is this instance's alone and `Config::redis` is refused at start with the way to get it.

use crate::apps::LocalRoom;
use std::sync::Arc;
use tungstenite::Message;

pub enum Cluster {}

impl Cluster {
    pub fn start(_url: &str) -> Result<Arc<Cluster>, String> {
        Err(
            "this wsecho was built without Redis: build it with `cargo build --release \
             --features redis` to share rooms across instances"
                .to_string(),
        )
    }

    pub fn attach(&self, _name: &str, _room: Arc<dyn LocalRoom>) {
        match *self {}
    }

    pub fn publish(&self, _room: &str, _message: &Message) {
        match *self {}
    }

    pub fn joined(&self, _room: &str, _id: u64, _name: &str) {
        match *self {}
    }

    pub fn left(&self, _room: &str, _id: u64) {
        match *self {}
    }

    pub fn others(&self, _room: &str) -> Option<Vec<String>> {
        match *self {}
    }

    pub fn stop(&self) {
        match *self {}
    }
}

//! Built without the `redis` feature: no cluster can exist (the type has no values), so every
//! room is this instance's alone and `Config::redis` is refused at start with the way to get it.

use crate::protocol::room::{Link, LocalRoom};
use std::sync::Arc;
use tungstenite::Message;

pub enum Cluster {}

impl Cluster {
    pub fn start(_url: &str, _reply_limit: usize) -> Result<Arc<Cluster>, String> {
        Err(
            "this wsecho was built without Redis: build it with `cargo build --release --locked \
             --features redis` (or `cargo install --path . --locked --features redis`) to share \
             rooms across instances"
                .to_string(),
        )
    }

    pub fn stop(&self) {
        match *self {}
    }
}

impl Link for Cluster {
    fn attach(&self, _name: &str, _here: Arc<dyn LocalRoom>) {
        match *self {}
    }

    fn publish(&self, _name: &str, _message: &Message) {
        match *self {}
    }

    fn joined(&self, _name: &str, _id: u64, _member: &str) {
        match *self {}
    }

    fn left(&self, _name: &str, _id: u64) {
        match *self {}
    }

    fn others(&self, _name: &str) -> Option<Vec<String>> {
        match *self {}
    }
}

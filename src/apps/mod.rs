//! The applications wsecho serves: echo, the chat room, rooms any app can broadcast to, and the
//! cluster that carries rooms across instances through Redis. They use `Connection`, `Sender`
//! and `Room`, never frames or sockets.

pub(crate) mod chat;
#[cfg(feature = "redis")]
pub(crate) mod cluster;
#[cfg(not(feature = "redis"))]
#[path = "no_cluster.rs"]
pub(crate) mod cluster;
pub(crate) mod echo;
pub(crate) mod room;

use tungstenite::Message;

/// A room's members on this instance, to whom the cluster delivers the other instances'
/// broadcasts: `room.rs` has the one kind there is, and the cluster (with or without Redis)
/// holds them by this, so that neither imports the other.
pub(crate) trait LocalRoom: Send + Sync {
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn deliver(&self, message: &Message);
}

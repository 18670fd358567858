//! The applications wsecho serves: echo, the chat room, programs per connection (`--run`), the
//! rooms a backend publishes to (`/rooms/NAME`), and the cluster that carries rooms across
//! instances through Redis. They use `Connection`, `Sender` and `Room`, never frames or
//! sockets.

pub(crate) mod chat;
pub(crate) mod child;
#[cfg(feature = "redis")]
pub(crate) mod cluster;
#[cfg(not(feature = "redis"))]
#[path = "no_cluster.rs"]
pub(crate) mod cluster;
pub(crate) mod echo;
pub(crate) mod names;
pub(crate) mod output_reader;
pub(crate) mod program;
pub(crate) mod subscribe;

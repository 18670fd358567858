//! The WebSocket protocol over a connection's socket: the opening handshake (and the Flash
//! policy answer), routes, frames in and out, permessage-deflate, and what an application
//! holds: `Connection`, the outbox behind its `Sender`, and rooms of senders.

pub(crate) mod connection;
pub(crate) mod deflate;
pub(crate) mod encoded;
pub(crate) mod fault;
pub(crate) mod frame;
pub(crate) mod handshake;
pub(crate) mod inflate;
pub(crate) mod outbox;
pub(crate) mod policy;
pub(crate) mod rate_limit;
pub(crate) mod reader;
pub(crate) mod room;
pub(crate) mod routes;
pub(crate) mod sha256;
pub(crate) mod socket;
pub(crate) mod token;

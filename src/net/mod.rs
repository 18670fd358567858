//! The network: listeners and their accept loops, a thread per connection, the admission
//! registry (caps in all and per address), sockets plain or TLS, wake-ups, HTTP request heads
//! and plain answers, the host's own limits, and the Redis client the cluster talks through.
//! Bytes in, bytes out; nothing here knows about WebSocket frames or applications.

pub(crate) mod accept;
pub(crate) mod activation;
pub(crate) mod host;
pub(crate) mod http;
pub(crate) mod listen;
pub(crate) mod proxy;
pub(crate) mod registry;
#[cfg(feature = "redis")]
pub(crate) mod resp;
pub(crate) mod stream;
pub(crate) mod threads;
#[cfg(feature = "tls")]
pub(crate) mod tls;
#[cfg(not(feature = "tls"))]
#[path = "no_tls.rs"]
pub(crate) mod tls;
pub(crate) mod wake;
pub(crate) mod wire;

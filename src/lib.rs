//! wsecho: a WebSocket echo server with a browser page and a Flash fallback, one thread per
//! connection on blocking sockets.
//!
//! ```no_run
//! let server = wsecho::Server::start(wsecho::Config::default()).expect("listening");
//! let summary = server.wait(); // until `server.trigger().fire()` (the binary: SIGINT/SIGTERM)
//! ```

#![warn(missing_docs)]

mod accept;
mod budget;
mod chat;
#[cfg(feature = "redis")]
mod cluster;
#[cfg(not(feature = "redis"))]
#[path = "no_cluster.rs"]
mod cluster;
mod config;
mod connection;
mod deflate;
mod echo;
mod embedded;
mod escape;
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
mod host;
mod http;
mod inbound;
mod metrics;
mod outbox;
mod page;
pub mod ping;
mod policy;
mod proxy;
mod registry;
mod room;
mod routes;
mod server;
mod shutdown;
mod socket;
mod stream;
mod threads;
#[cfg(feature = "tls")]
mod tls;
#[cfg(not(feature = "tls"))]
#[path = "no_tls.rs"]
mod tls;
mod wake;
mod websocket;

pub use config::{Config, TlsFiles};
pub use connection::{Connection, Ending};
pub use echo::handle_echo_client;
pub use metrics::Traffic;
pub use outbox::{Frames, SendError, Sender};
pub use room::{Delivery, Room};
pub use routes::{Handler, Refused, Route, Routes, UpgradeRequest};
pub use server::{Server, StartError, Summary, TlsReloader, default_routes};
pub use shutdown::Trigger;
pub use tungstenite::protocol::frame::coding::CloseCode;
pub use tungstenite::{Error, Message};

/// Each connection is a socket: lift the soft open-file limit (often 1024) to the hard one.
/// False when the limit could not be read or raised.
pub fn raise_open_file_limit() -> bool {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return false;
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            return libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0;
        }
    }
    true
}

/// Make glibc's malloc hand every big block (128 KiB or more) straight back to the system when
/// it is freed. By default glibc raises that threshold after each big free, up to 32 MiB, and
/// keeps what is freed below it in per-thread arenas: with a thread per connection, memory
/// that carried a few big messages would stay with the process long after the messages were
/// gone, and the memory budget would bound what is in use but not what the process holds.
pub fn return_big_frees_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a malloc tuning value; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

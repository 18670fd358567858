//! wsecho: a WebSocket echo server with a browser page and a Flash fallback, one thread per
//! connection on blocking sockets.
//!
//! ```no_run
//! let server = wsecho::Server::start(wsecho::Config::default()).expect("listening");
//! let summary = server.wait(); // until `server.trigger().fire()` (the binary: SIGINT/SIGTERM)
//! ```
//!
//! # Layout
//!
//! Each folder is one layer; arrows run one way, from the top of this list down:
//!
//! - `server/`: [`Server`] binds the listeners, starts their accept loops, and at shutdown
//!   closes every connection and reports a [`Summary`]. `server/websocket.rs` is a WebSocket
//!   connection's life on its thread, from its opening bytes to its close.
//! - `apps/`: what wsecho serves: echo, the chat room, [`Room`]s, and the Redis cluster that
//!   carries rooms across instances. They hold a [`Connection`] or a [`Sender`], never frames.
//! - `page/`: the page port's HTTP/1.1 server, the page embedded in the binary, `/config.json`,
//!   `/metrics`, `/healthz`.
//! - `protocol/`: the opening handshake (and the Flash policy answer), [`Routes`], frames in and
//!   out, permessage-deflate, [`Connection`] and the outbox behind [`Sender`].
//! - `net/`: listeners, accept loops, connection threads, the admission registry, sockets plain
//!   or TLS, wake-ups, HTTP heads and plain answers, the host's limits. Bytes, not messages.
//! - `ops/`: [`Config`], the memory budget, metrics, the shutdown signal, escaping.
//!
//! `fuzzing.rs` holds the fuzz targets' checks (feature `fuzzing`, for `fuzz/`). The binary,
//! `src/bin/wsecho/`, is the command line: flags, logging, signals and `wsecho ping`; it is built
//! with the `cli` feature (on by default), and a library user leaves it and its crates out with
//! `default-features = false`.

#![warn(missing_docs)]

mod apps;
// The fuzz targets' checks: for fuzz/ (feature `fuzzing`) and this crate's tests only.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod net;
mod ops;
mod page;
mod protocol;
mod server;

pub use apps::echo::handle_echo_client;
pub use apps::room::{Delivery, Room};
pub use ops::config::{Config, TlsFiles};
pub use ops::metrics::Traffic;
pub use ops::shutdown::Trigger;
pub use protocol::connection::{Connection, Ending};
pub use protocol::outbox::{Frames, SendError, Sender};
pub use protocol::routes::{Handler, Refused, Route, Routes, UpgradeRequest};
pub use server::{Server, StartError, Summary, TlsReloader, default_routes};
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

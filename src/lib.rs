//! wsecho: a WebSocket echo server with a browser page and a Flash fallback, one thread per
//! connection on blocking sockets, and a small library for real-time apps of your own.
//!
//! ```no_run
//! let server = wsecho::Server::start(wsecho::Config::default()).expect("listening");
//! let summary = server.wait(); // until `server.trigger().fire()` (the binary: SIGINT/SIGTERM)
//! ```
//!
//! # Guide
//!
//! **Handlers.** An app is a set of [`Routes`] on the WebSocket port, each a handler: any
//! closure or function `Fn(&mut Connection) -> Result<(), Error>`, with whatever state it
//! captures, run on the connection's own thread. [`handle_echo_client`] is the smallest:
//!
//! ```
//! use wsecho::{CloseCode, Connection, Error, Message};
//!
//! fn echo(client: &mut Connection) -> Result<(), Error> {
//!     while let Some(message) = client.receive()? {
//!         if matches!(&message, Message::Text(text) if text.as_str() == "quit") {
//!             return client.close(CloseCode::Normal, "bye");
//!         }
//!         client.send(message)?;
//!     }
//!     Ok(())
//! }
//! ```
//!
//! [`Connection::receive`] hands over whole messages and deals with pings, the keepalive, the
//! size limit, the memory budget and shutdown underneath; `path()`, `protocol()` and `peer()`
//! say who the handler is talking to.
//!
//! **Routes with state and checks.** A route may judge the upgrade before the 101 (path,
//! query, headers, cookies, the peer's address; refused with 401 or 403 and a one-line reason)
//! and name the subprotocols it speaks (the first one the client offers is chosen). A path with
//! no route gets 404 naming the paths that exist.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use wsecho::{Config, Connection, Error, Message, Refused, Route, Server, default_routes};
//!
//! let visits = Arc::new(AtomicU64::new(0));
//! let counter = Route::new(move |client: &mut Connection| {
//!     let n = visits.fetch_add(1, Ordering::Relaxed) + 1;
//!     client.send(Message::text(format!("visitor {n}")))
//! })
//! .protocols(&["count.v1"])
//! .check(|upgrade| match upgrade.cookie("session") {
//!     Some("valid") => Ok(()),
//!     _ => Err(Refused::unauthorized("log in first")),
//! });
//! let routes = default_routes().route("/count", counter); // beside /echo and /chat
//! let server = Server::start_with(Config::default(), routes)?;
//! # Ok::<(), wsecho::StartError>(())
//! ```
//!
//! **Push from any thread.** [`Connection::sender`] gives a [`Sender`]: clone it, keep it,
//! and send from any thread. A send never waits for the client: the frame goes out at once if
//! the socket takes it, otherwise into the connection's queue, which its own thread writes out
//! as the client reads. A queue past [`Config::max_queue`] closes the client with 1008 and the
//! send returns [`SendError::TooSlow`]; a send to a connection that has ended returns
//! [`SendError::Closed`].
//!
//! **Rooms.** A [`Room`] is a set of senders: `join`, `leave`, `broadcast`. A broadcast
//! encodes its frame once and hands it to every member's sender, so a slow member never holds
//! up the others; a member leaves by itself when its connection ends. A room of the app's own
//! is [`Room::new`]; the server's named rooms are [`Connection::room`] in a handler and
//! [`Server::room`] anywhere else, one room per name, and with [`Config::redis`] each is the
//! room of that name on every instance (the chat is `room("chat")`). An app's own threads stop
//! with the server through [`Server::on_shutdown`]: see `examples/clock.rs` for a room that
//! hears a tick every second, and `examples/token.rs` for a route that checks a token.
//!
//! **Other languages, other backends.** A [`Program`] in [`Config::programs`] serves its path
//! with a process per connection (lines on stdin and stdout, websocketd's model), and with
//! [`Config::publish_token`] a backend publishes to the server's named rooms with `POST
//! /publish/NAME` while clients listen on `/rooms/NAME`: docs/operating.md tells both.
//!
//! **Testing a handler.** [`TestClient::connect`] runs a handler on a thread of its own with a
//! [`Connection`] over an in-memory stream, as a server would run it, and is the client on the
//! other end: `send`, `receive`, and `finish`, which says how the connection ended (the close
//! code the handler chose, 1011 for a panic). No port, no server: see [`TestClient`], and
//! `examples/shout.rs` for a room's handler tested that way.
//!
//! **What `Server` does to the process.** Starting a server reads the host's limits (open
//! files, memory mappings, threads) and lowers [`Config::max_connections`] and
//! [`Config::max_page_connections`] to fit, with one warning. The first handler that takes a
//! [`Sender`] installs a SIGURG handler that does nothing (SIGURG is ignored by default; it
//! wakes a connection's thread for its queue). Two process-wide settings are left to the
//! program, which the `wsecho` binary calls at start: [`raise_open_file_limit`] and
//! [`return_big_frees_to_the_system`]. Logging goes through the `log` crate; messages name the
//! `Config` fields (`max_queue`) that change what they report.
//!
//! # Layout
//!
//! Each folder is one layer; arrows run one way, from the top of this list down:
//!
//! - `server/`: [`Server`] binds the listeners, starts their accept loops, and at shutdown
//!   closes every connection and reports a [`Summary`]. `server/websocket.rs` is a WebSocket
//!   connection's life on its thread, from its opening bytes to its close.
//! - `apps/`: what wsecho serves: echo, the chat room, programs per connection
//!   ([`Config::programs`]), the rooms a backend publishes to (`/rooms/NAME`), and the Redis
//!   cluster that carries rooms across instances. They hold a [`Connection`], a [`Sender`] or a
//!   [`Room`], never frames.
//! - `page/`: the page port's HTTP/1.1 server, the page embedded in the binary, `/config.json`,
//!   `/metrics`, `/healthz`, `POST /publish/NAME` ([`Config::publish_token`]), and the HTTP
//!   carrier of sessions (`/session/`, for clients whose network breaks the upgrade).
//! - `session/`: sessions, which outlive their carrier for [`Config::resume_window`]: the
//!   handler's ordinary [`Connection`], reading from an in-process socket and writing into the
//!   session in memory, what it sends numbered and kept until the client has it, the records
//!   every carrier moves, and the WebSocket that carries one (subprotocol `wsecho.session`).
//! - `protocol/`: the opening handshake (and the Flash policy answer), [`Routes`], frames in and
//!   out, permessage-deflate, [`Connection`], the outbox behind [`Sender`], and [`Room`]s (which
//!   reach other instances through a link the Redis cluster implements).
//! - `net/`: listeners (TCP or Unix, bound or passed by socket activation: [`ListenAddr`]),
//!   accept loops, connection threads, the admission registry, sockets plain or TLS, wake-ups,
//!   HTTP heads and plain answers, the host's limits. Bytes, not messages.
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
mod session;

pub use apps::echo::handle_echo_client;
pub use net::listen::ListenAddr;
pub use ops::config::{Config, ConfigError, Program, TlsFiles};
pub use ops::metrics::Traffic;
pub use ops::shutdown::{Shutdown, Trigger};
pub use protocol::connection::{Connection, Ending};
pub use protocol::encoded::Encoded;
pub use protocol::outbox::{SendError, Sender};
pub use protocol::room::{Delivery, Room};
pub use protocol::routes::{Handler, Refused, Route, Routes, UpgradeRequest};
pub use server::{Server, StartError, Summary, TestClient, TlsError, TlsReloader, default_routes};
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
///
/// An arena keeps up to 256 KiB free at its top (twice the default of 128 KiB): a 64 KiB
/// message over TLS frees about 150 KiB of records and buffers at once, and with the default
/// every such message gave those pages back (`madvise`) only for the next to fault them in
/// again, a fifth of the server's CPU in a wss stream. What this keeps is bounded by the arenas
/// (at most eight per core), not by the connections.
pub fn return_big_frees_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc tuning values; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 * 1024);
    }
}

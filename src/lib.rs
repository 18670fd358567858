//! wsecho: a WebSocket echo server with a browser page and a Flash fallback, one thread per
//! connection on blocking sockets.
//!
//! ```no_run
//! let server = wsecho::Server::start(wsecho::Config::default()).expect("listening");
//! let summary = server.wait(); // until `server.trigger().fire()` (the binary: SIGINT/SIGTERM)
//! ```

pub mod config;
pub mod connection;
pub mod echo;
mod handshake;
mod page;
pub mod ping;
pub mod policy;
pub mod server;
pub mod shutdown;
mod socket;
mod websocket;

pub use config::Config;
pub use connection::Connection;
pub use server::{Server, StartError, Summary};
pub use tungstenite::Message;
pub use tungstenite::protocol::frame::coding::CloseCode;
pub use websocket::Application;

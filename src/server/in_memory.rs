//! `TestClient`: a handler's unit tests without a server. The handler runs on a thread of its
//! own with a `Connection` over one end of an in-memory stream (a Unix socket pair: no address,
//! no port), exactly as a route's handler runs; the test is the client on the other end.

use super::websocket::run_handler;
use crate::net::http::{Head, parse_head};
use crate::net::listen::LOCAL_PEER;
use crate::net::stream::Stream;
use crate::ops::budget::{Budget, Holding};
use crate::ops::config::Config;
use crate::ops::metrics::Metrics;
use crate::ops::shutdown;
use crate::protocol::connection::{About, Connection, Ending};
use crate::protocol::room::Rooms;
use crate::protocol::routes::Handler;
use crate::protocol::socket::Socket;
use std::io;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocket};
use tungstenite::{Error, Message};

/// How long `receive` waits for the handler before it fails with a timeout.
const PATIENCE: Duration = Duration::from_secs(10);

/// The next test connection's id: unique in the process, as a room needs its members' to be.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The client end of one connection to a handler, for the handler's tests: send it messages,
/// read what it sends, and see how the connection ended.
///
/// The handler gets a [`Connection`] as on a server run with `Config::default()`: the same
/// limits, keepalive and close handshake, its own [`Sender`](crate::Sender) and rooms
/// ([`Connection::room`] is a room of this connection alone). Its `peer()` is `127.0.0.1:0`;
/// its `id()` counts the process's test connections from 1.
///
/// ```
/// use wsecho::{Connection, Error, Ending, Message, TestClient};
///
/// fn shout(client: &mut Connection) -> Result<(), Error> {
///     while let Some(message) = client.receive()? {
///         client.send(Message::text(message.into_text()?.to_uppercase()))?;
///     }
///     Ok(())
/// }
///
/// let mut client = TestClient::connect(shout, "/shout")?;
/// client.send(Message::text("hello"))?;
/// assert_eq!(client.receive()?, Some(Message::text("HELLO")));
/// assert_eq!(client.finish(), Ending::ClosedByClient(1000));
/// # Ok::<(), Error>(())
/// ```
pub struct TestClient {
    socket: WebSocket<UnixStream>,
    handler: Option<JoinHandle<Ending>>,
}

impl TestClient {
    /// Run `handler` on a new connection to `target` (a path, with a query if you like:
    /// `/count?from=3`), on a thread of its own. The request had only a `Host: localhost`.
    pub fn connect(handler: impl Handler, target: &str) -> io::Result<TestClient> {
        let mut request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes();
        let request = match parse_head(&mut request) {
            Ok(Some(request)) => request,
            _ => {
                let why = format!("{target:?} is not a request target: give a path such as /echo");
                return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
            }
        };
        let path = request.path().to_string();
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_read_timeout(Some(PATIENCE))?;
        let config = Config::default();
        let metrics = Metrics::new([path.clone()], Budget::new(config.memory_budget));
        let holding = Holding::new(metrics.budget());
        let stream = Arc::new(Stream::new(theirs));
        let socket = Socket::new(stream, Vec::new(), holding, config.max_message_size, false);
        let about = About {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            peer: LOCAL_PEER,
            path: path.clone(),
            protocol: None,
            head: Head::of(&request),
            subject: None,
        };
        // Nothing ever fires it: a test's connection never sees a server shut down.
        let (_, never) = shutdown::channel();
        let connection = Connection::new(socket, about, &config, never, metrics, Rooms::default())?;
        let linger = config.handshake_timeout;
        let handler = thread::Builder::new()
            .name(format!("test {path}"))
            .spawn(move || run_handler(connection, &handler, linger).0)?;
        Ok(TestClient {
            socket: WebSocket::from_raw_socket(ours, Role::Client, None),
            handler: Some(handler),
        })
    }

    /// Send one message to the handler.
    pub fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        self.socket.send(message.into())
    }

    /// The next text or binary message from the handler (pings are answered underneath);
    /// `Ok(None)` once the handler's side has closed. Fails after 10 seconds of silence.
    pub fn receive(&mut self) -> Result<Option<Message>, Error> {
        loop {
            match self.socket.read() {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => return Ok(Some(message)),
                Ok(Message::Close(_)) => return Ok(None),
                Ok(_) => {}
                Err(Error::ConnectionClosed | Error::AlreadyClosed) => return Ok(None),
                Err(error) => return Err(error),
            }
        }
    }

    /// End the test's side: close with 1000 if the connection is still open, read what is
    /// left, hang up, and wait for the handler to return. How the connection ended, as the
    /// server's log would say it (a panicking handler: closed by server with 1011).
    pub fn finish(mut self) -> Ending {
        if self.socket.can_write() {
            let normal = CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            };
            let _ = self.socket.close(Some(normal));
        }
        // Until the close handshake is done (tungstenite then says so), at most PATIENCE.
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline && self.socket.read().is_ok() {}
        let _ = self.socket.get_ref().shutdown(Shutdown::Both);
        match self.handler.take().map(JoinHandle::join) {
            Some(Ok(ending)) => ending,
            _ => Ending::Dropped("the handler's thread did not return".to_string()),
        }
    }
}

impl Drop for TestClient {
    /// Hang up without waiting: the handler's thread sees the connection end.
    fn drop(&mut self) {
        let _ = self.socket.get_ref().shutdown(Shutdown::Both);
    }
}

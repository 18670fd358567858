//! The WebSocket port (and the dedicated Flash policy port): a blocking accept loop that gives
//! every admitted connection its own thread. The thread reads the opening bytes, answers a
//! Flash policy request or checks the upgrade, then runs the application until the connection
//! ends, and logs one line when it opens and one when it ends.

use crate::config::Config;
use crate::connection::Connection;
use crate::handshake::{self, Opening, Refusal};
use crate::shutdown::{self, Connections, ShutdownSignal, Ticket};
use log::{error, info, warn};
use std::any::Any;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Error, WebSocket};

/// What runs on each open WebSocket; `echo::handle_echo_client` by default.
pub type Application = fn(&mut Connection) -> Result<(), Error>;

/// Stack for connection threads: they keep little on it, and an idle connection should cost
/// little more than a bare thread.
const CONNECTION_STACK: usize = 128 * 1024;

/// tungstenite's 128 KiB read buffer would be most of an idle connection's memory.
const READ_BUFFER: usize = 4 * 1024;

/// What a listener serves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// WebSocket upgrades, plus the Flash policy inline.
    WebSocket,
    /// Only the Flash policy.
    PolicyOnly,
}

/// Everything the connection threads share.
pub struct Shared {
    pub config: Config,
    pub policy_reply: Vec<u8>,
    pub connections: Arc<Connections>,
    pub shutdown: ShutdownSignal,
    pub app: Application,
}

/// Accept until shutdown, one thread per admitted connection.
pub fn accept_loop(listener: TcpListener, port: Port, shared: Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.shutdown.is_triggered() {
            return;
        }
        match accepted {
            Ok((stream, peer)) => admit(stream, peer, port, &shared),
            Err(error) => {
                warn!(
                    "accept failed: {error}; if it says 'too many open files', raise `ulimit -n` or lower --max-connections"
                );
                // Out of descriptors (or similar): give closing connections a moment.
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn admit(stream: TcpStream, peer: SocketAddr, port: Port, shared: &Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let waker = match stream.try_clone() {
        Ok(waker) => waker,
        Err(error) => {
            warn!("refused {peer}: cannot track the connection ({error})");
            return;
        }
    };
    let ticket = match shared.connections.admit(waker) {
        Ok(ticket) => ticket,
        Err(shutdown::Refusal::Full { max }) => {
            warn!("refused {peer}: {max} connections already open (--max-connections)");
            let message = "server busy: too many open connections, try again later";
            refuse_without_thread(stream, &Refusal::new(503, message));
            return;
        }
        Err(shutdown::Refusal::ShuttingDown) => {
            refuse_without_thread(stream, &Refusal::new(503, "server shutting down"));
            return;
        }
    };
    let id = ticket.id;
    let thread_shared = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name(format!("conn-{id}"))
        .stack_size(CONNECTION_STACK)
        .spawn(move || serve(stream, peer, port, ticket, &thread_shared));
    if let Err(error) = spawned {
        // The closure, the socket and the ticket are dropped: the client sees the close.
        warn!("#{id} refused {peer}: cannot start a thread ({error}); lower --max-connections");
    }
}

/// Answer from the accept thread itself, never blocking it: a fresh socket's send buffer is
/// empty, and whatever the client already sent is read away so the close is a clean FIN.
fn refuse_without_thread(mut stream: TcpStream, refusal: &Refusal) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let _ = refusal.write_to(&mut stream);
    let mut sink = [0u8; 1024];
    for _ in 0..8 {
        if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
}

/// One connection's whole life, on its own thread.
fn serve(mut stream: TcpStream, peer: SocketAddr, port: Port, ticket: Ticket, shared: &Shared) {
    let id = ticket.id;
    let config = &shared.config;
    let request = match handshake::read_opening(&mut stream, config.handshake_timeout) {
        Ok(Opening::PolicyRequest) => {
            let _ = stream.write_all(&shared.policy_reply);
            info!("#{id} {peer}: sent the Flash policy");
            return;
        }
        Ok(Opening::Http(_)) if port == Port::PolicyOnly => {
            warn!("#{id} {peer}: refused: the policy port answers only <policy-file-request/>");
            return;
        }
        Ok(Opening::Http(request)) => request,
        Err(error) => {
            warn!("#{id} {peer}: dropped: {error}");
            // The policy port never speaks HTTP.
            if let (Port::WebSocket, Some(refusal)) = (port, handshake::refusal_for(&error)) {
                let _ = refusal.write_to(&stream);
            }
            return;
        }
    };
    let upgrade = match handshake::check_upgrade(&request, &config.allowed_origins) {
        Ok(upgrade) => upgrade,
        Err(refusal) => {
            warn!(
                "#{id} {peer}: refused {}: {}",
                refusal.status, refusal.message
            );
            let _ = refusal.write_to(&stream);
            return;
        }
    };
    let reply = handshake::switching_protocols(&upgrade.accept_key);
    if let Err(error) = stream.write_all(reply.as_bytes()) {
        warn!("#{id} {peer}: dropped during the handshake: {error}");
        return;
    }
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size));
    let ws = WebSocket::from_partially_read(stream, request.rest, Role::Server, Some(ws_config));
    let mut connection = match Connection::new(
        ws,
        config.ping_interval,
        config.max_message_size,
        shared.shutdown.clone(),
    ) {
        Ok(connection) => connection,
        Err(error) => {
            warn!("#{id} {peer}: dropped: cannot set socket timeouts ({error})");
            return;
        }
    };
    info!(
        "#{id} open {peer} origin={} flash-bridge={}",
        upgrade.origin.as_deref().unwrap_or("-"),
        if upgrade.looks_like_flash {
            "likely"
        } else {
            "no"
        }
    );
    let opened = Instant::now();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| (shared.app)(&mut connection)));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(error)) => connection.application_failed(&error),
        Err(payload) => {
            error!(
                "#{id} the application panicked ({}); closing this connection with 1011, the server carries on",
                panic_message(&payload)
            );
            let _ = connection.close(CloseCode::Error, "internal error");
        }
    }
    let (ending, traffic) = (connection.ending().clone(), connection.traffic());
    connection.finish(config.handshake_timeout);
    info!(
        "#{id} {ending} after {:.3}s, {traffic}",
        opened.elapsed().as_secs_f64()
    );
}

fn panic_message(payload: &Box<dyn Any + Send>) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// Connect to our own listener so its blocked `accept()` returns and sees the shutdown.
pub fn wake_listener(addr: SocketAddr) -> io::Result<()> {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    TcpStream::connect_timeout(&target, Duration::from_secs(1)).map(drop)
}

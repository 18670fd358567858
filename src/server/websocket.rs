//! The WebSocket port (and the dedicated Flash policy port): a blocking accept loop that gives
//! every admitted connection a thread of its own (one left waiting by a finished connection,
//! or a new one). The thread reads the opening bytes, answers a Flash policy request or checks
//! the upgrade, then runs the application until the connection ends, and logs one line when
//! it opens and one when it ends.

use crate::net::accept::{self, Quiet};
use crate::net::http::{Head, Refusal, Request};
use crate::net::listen::Listener;
use crate::net::proxy::Client;
use crate::net::registry::{Admissions, Ticket};
use crate::net::stream::Stream;
use crate::net::threads::{self, Pool};
use crate::net::tls::Certificates;
use crate::net::wire::Wire;
use crate::ops::budget::Holding;
use crate::ops::config::{Config, seconds_text};
use crate::ops::escape::escape;
use crate::ops::metrics::{Closer, Metrics, Reason, Traffic};
use crate::ops::shutdown::Shutdown;
use crate::protocol::connection::{About, Connection, Ending};
use crate::protocol::handshake::{self, Opening};
use crate::protocol::room::Rooms;
use crate::protocol::routes::{Handler, Routes};
use crate::protocol::socket::Socket;
use crate::session::Sessions;
use crate::session::websocket::{self as session_carrier, PROTOCOL as SESSION_PROTOCOL};
use log::{error, info, warn};
use std::any::Any;
use std::io::Write;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;

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
    pub connections: Arc<Admissions>,
    pub shutdown: Shutdown,
    pub routes: Routes,
    pub threads: Arc<Pool<Job>>,
    pub metrics: Arc<Metrics>,
    /// With TLS on, the WebSocket port speaks it (the policy port never does).
    pub tls: Option<Arc<Certificates>>,
    /// Refusals for want of a thread: at most one log line a second.
    pub no_thread_log: Quiet,
    /// The server's named rooms, for `Connection::room`.
    pub rooms: Rooms,
    /// The server's sessions, for WebSockets that carry one (set once they exist).
    pub sessions: OnceLock<Arc<Sessions>>,
}

/// An admitted connection, on its way to a thread.
pub struct Job {
    /// Shared with the registry of open connections, which needs it to wake the thread at
    /// shutdown: one descriptor per connection (a `try_clone` would double them), and closed
    /// only once both have let go, so a shutdown never reaches a reused descriptor.
    stream: Arc<Stream>,
    peer: SocketAddr,
    port: Port,
    ticket: Ticket,
}

/// How the accept loops hand connections to threads.
pub type Handoff = threads::Handoff<Job>;

/// Accept until shutdown, one thread per admitted connection.
pub fn accept_loop(listener: Listener, port: Port, shared: Arc<Shared>, handoff: Handoff) {
    accept::accept_loop(
        listener,
        &shared.shutdown,
        &shared.metrics,
        "`max_connections`",
        |stream, peer| admit(stream, peer, port, &shared, &handoff),
    );
}

fn admit(wire: Wire, peer: SocketAddr, port: Port, shared: &Arc<Shared>, handoff: &Handoff) {
    let stream = Arc::new(Stream::new(wire));
    let ticket = match shared.connections.admit(Arc::clone(&stream), peer.ip()) {
        Ok(ticket) => ticket,
        Err(why) => {
            let metrics = &shared.metrics;
            accept::refuse(
                &stream,
                peer,
                why,
                metrics,
                "connections",
                "`max_connections`",
            );
            return;
        }
    };
    let id = ticket.id;
    let job = Job {
        stream,
        peer,
        port,
        ticket,
    };
    let thread_shared = Arc::clone(shared);
    let serve_job = move |job: Job| serve(job, &thread_shared);
    if let Err((error, job)) = shared.threads.run(handoff, job, serve_job) {
        let Job { stream, ticket, .. } = job;
        // Out of the count before the client hears it may try again.
        drop(ticket);
        let (metrics, log) = (&shared.metrics, &shared.no_thread_log);
        accept::refuse_without_thread(
            &stream,
            format!("#{id} {peer}"),
            &error,
            metrics,
            log,
            "connection",
        );
    }
}

/// One connection's whole life: its opening, then (if it upgraded) the application. Returns
/// its ticket, to be let go once the thread is ready for another.
fn serve(job: Job, shared: &Shared) -> Ticket {
    let Job {
        stream,
        peer,
        port,
        ticket,
    } = job;
    // Everything the opening needed is freed before the application runs, so an idle
    // connection holds no more than its socket and tungstenite's state.
    if let Some(opened) = open(stream, peer, port, &ticket, shared) {
        match opened.session_route {
            Some(route) => carry_session(opened.connection, route, shared),
            None => run(
                opened.connection,
                &*opened.handler,
                &opened.route_path,
                shared,
            ),
        }
    }
    ticket
}

/// An upgraded connection, ready for its handler.
struct Opened {
    connection: Connection,
    handler: Arc<dyn Handler>,
    /// The path its route was given for, for the metrics.
    route_path: String,
    /// When it carries a session instead (subprotocol `wsecho.session`): the upgrade request,
    /// for the session's handler (boxed: every connection's thread has this on its stack, and
    /// an idle connection costs the stack pages its thread ever touched).
    session_route: Option<Box<Request>>,
}

/// Read the opening: answer a policy request or a refused upgrade and return `None`, or
/// complete the upgrade and return the connection with the handler of its route.
// Never inlined into `serve`: the opening's request and upgrade then live in a frame that is
// gone before the handler runs. In one frame with the handler's, they took every connection's
// thread one page of stack deeper: 4 KiB more RSS per idle connection (`make bench`'s idle).
#[inline(never)]
fn open(
    stream: Arc<Stream>,
    peer: SocketAddr,
    port: Port,
    ticket: &Ticket,
    shared: &Shared,
) -> Option<Opened> {
    let (config, id) = (&shared.config, ticket.id);
    let deadline = Instant::now() + config.handshake_timeout;
    let tls = shared.tls.as_deref().filter(|_| port == Port::WebSocket);
    if let Some(certificates) = tls
        && let Err(error) = stream.accept_tls(certificates, deadline)
    {
        shared.metrics.refused(Reason::Tls);
        warn!("#{id} {peer}: dropped: {error}");
        return None;
    }
    let request = match handshake::read_opening(&stream, deadline) {
        Ok(Opening::PolicyRequest) => {
            let _ = (&*stream).write_all(&shared.policy_reply);
            info!("#{id} {peer}: sent the Flash policy");
            return None;
        }
        Ok(Opening::Http(_)) if port == Port::PolicyOnly => {
            warn!("#{id} {peer}: refused: the policy port answers only <policy-file-request/>");
            return None;
        }
        Ok(Opening::Http(request)) if tls.is_some() && !stream.is_tls() => {
            let refusal = Refusal::new(
                400,
                format!(
                    "this port speaks TLS: connect with wss://{}{}",
                    request.header("Host").unwrap_or("HOST:PORT"),
                    request.path()
                ),
            )
            .because(Reason::Tls);
            shared.metrics.refused(refusal.reason);
            warn!("#{id} {peer}: refused 400: plain HTTP on the TLS port");
            let _ = refusal.write_to(&*stream);
            return None;
        }
        Ok(Opening::Http(request)) => request,
        Err(error) => {
            warn!("#{id} {peer}: dropped: {error}");
            let refusal = handshake::refusal_for(&error);
            if let Some(refusal) = &refusal {
                shared.metrics.refused(refusal.reason);
            }
            // The policy port never speaks HTTP.
            if let (Port::WebSocket, Some(refusal)) = (port, refusal) {
                let _ = refusal.write_to(&*stream);
            }
            return None;
        }
    };
    // Behind a trusted proxy the client it names takes the place from here on.
    let client = Client::of(&request, peer, &config.trusted_proxies);
    if let Err(why) = ticket.count_as(client.addr.ip()) {
        let metrics = &shared.metrics;
        accept::refuse(
            &stream,
            client,
            why,
            metrics,
            "connections",
            "`max_connections`",
        );
        return None;
    }
    let mut upgrade = match handshake::check_upgrade(
        &request,
        client.addr,
        &shared.routes,
        &config.allowed_origins,
        &config.allowed_hosts,
        config.deflate,
        config.jwt_key.as_deref(),
    ) {
        Ok(upgrade) => upgrade,
        Err(refusal) => {
            shared.metrics.refused(refusal.reason);
            warn!(
                "#{id} {client}: refused {}: {}",
                refusal.status, refusal.message
            );
            let _ = refusal.write_to(&*stream);
            return None;
        }
    };
    // A client that offers to carry a session gets one, where the route chose no subprotocol.
    let session_route = (upgrade.protocol.is_none()
        && shared.sessions.get().is_some()
        && request.header_has_token("Sec-WebSocket-Protocol", SESSION_PROTOCOL))
    .then(|| request.with_target("GET", request.target()).map(Box::new))
    .flatten();
    if session_route.is_some() {
        upgrade.protocol = Some(SESSION_PROTOCOL.to_string());
    }
    let reply = handshake::switching_protocols(&upgrade);
    // Out of the openers' pool before the client can know it is in.
    ticket.established();
    if let Err(error) = (&*stream).write_all(reply.as_bytes()) {
        warn!("#{id} {client}: dropped during the handshake: {error}");
        return None;
    }
    let head = Head::of(&request);
    let early = request.rest().to_vec();
    let request_path = request.path().to_string();
    drop(request);
    let holding = Holding::new(shared.metrics.budget());
    let deflate = upgrade.deflate.is_some();
    let socket = Socket::new(stream, early, holding, config.max_message_size, deflate);
    let about = About {
        id,
        peer: client.addr,
        path: request_path,
        protocol: upgrade.protocol,
        head,
        subject: upgrade.subject,
    };
    match connection(socket, about, shared) {
        Ok(connection) => {
            info!(
                "#{id} open {client} {} origin={} flash-bridge={}",
                escape(connection.path()),
                escape(upgrade.origin.as_deref().unwrap_or("-")),
                if upgrade.looks_like_flash {
                    "likely"
                } else {
                    "no"
                }
            );
            Some(Opened {
                connection,
                handler: upgrade.route.handler,
                route_path: upgrade.route_path,
                session_route,
            })
        }
        Err(error) => {
            warn!("#{id} {client}: dropped: cannot set socket timeouts ({error})");
            None
        }
    }
}

/// A connection over `socket` as every route's handler gets one: the server's keepalive, queue
/// limit, shutdown signal, metrics and rooms.
pub(super) fn connection(
    socket: Socket,
    about: About,
    shared: &Shared,
) -> std::io::Result<Connection> {
    let config = &shared.config;
    Connection::new(
        socket,
        about,
        config,
        shared.shutdown.clone(),
        Arc::clone(&shared.metrics),
        shared.rooms.clone(),
    )
}

/// Run the application on an open connection, then close it and log how it ended (counted in
/// the metrics under `route_path`, the path its route was given for).
pub(super) fn run(
    connection: Connection,
    handler: &dyn Handler,
    route_path: &str,
    shared: &Shared,
) {
    let opened = Instant::now();
    let id = connection.id();
    shared.metrics.opened(route_path);
    let linger = shared.config.handshake_timeout;
    let (ending, traffic) = run_handler(connection, handler, linger);
    let (code, by) = match ending {
        Ending::ClosedByClient(code) => (code, Closer::Client),
        Ending::ClosedByServer(code, _) => (code, Closer::Server),
        Ending::Open | Ending::Dropped(_) => (1006, Closer::Nobody),
    };
    shared.metrics.closed(route_path, code, by);
    info!(
        "#{id} {ending} after {}s, {traffic}",
        seconds_text(opened.elapsed())
    );
}

/// Carry a session over `connection` (see `session/websocket.rs`), and log how it ended; the
/// session's own connection is what the metrics count.
fn carry_session(connection: Connection, route: Box<Request>, shared: &Shared) {
    let Some(sessions) = shared.sessions.get().cloned() else {
        return;
    };
    let (id, client, opened) = (connection.id(), connection.peer(), Instant::now());
    let carrier = move |connection: &mut Connection| {
        session_carrier::carry(connection, &sessions, &route, client)
    };
    let (ending, traffic) = run_handler(connection, &carrier, shared.config.handshake_timeout);
    info!(
        "#{id} session carrier {ending} after {}s, {traffic}",
        seconds_text(opened.elapsed())
    );
}

/// Run `handler` on `connection` as every route's handler runs: an error closes the connection
/// (1011 unless it broke), a panic closes it with 1011 and is logged, and one still open when
/// the handler returns is closed with 1000 (waiting at most `linger` for the client's reply).
/// Returns how it ended and what went each way.
pub(super) fn run_handler(
    mut connection: Connection,
    handler: &dyn Handler,
    linger: Duration,
) -> (Ending, Traffic) {
    // What the handshake touched of the thread's stack goes back before the connection
    // settles into its messages (an idle one costs its thread's stack). Over TLS the first
    // read that waits long does it (see `net/tls.rs`): a connection that comes and goes at
    // once then costs no `madvise` and no pages faulted back in.
    if !connection.is_tls() {
        threads::shed_stack();
    }
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| handler.handle(&mut connection)));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(error)) => connection.application_failed(&error),
        Err(payload) => {
            error!(
                "#{} the application panicked ({}); closing this connection with 1011, the server carries on",
                connection.id(),
                escape(panic_message(&payload))
            );
            let _ = connection.close(CloseCode::Error, "internal error");
        }
    }
    let traffic = connection.traffic();
    (connection.finish(linger), traffic)
}

fn panic_message(payload: &Box<dyn Any + Send>) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

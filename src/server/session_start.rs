//! How a session's handler starts: the route found and judged as for an upgrade, the
//! connection admitted under the same caps as a WebSocket (`max_connections`,
//! `max_per_address`), and the handler run on a thread of its own over one end of a Unix socket
//! pair, whose other end goes to the session, and with its writes going to the session's sink
//! (see `session/`).

use super::websocket::{Shared, connection, run};
use crate::net::accept;
use crate::net::http::{Head, Refusal, Request};
use crate::net::stream::{Sink, Stream};
use crate::net::threads;
use crate::ops::budget::Holding;
use crate::ops::escape::escape;
use crate::ops::metrics::Reason;
use crate::protocol::connection::About;
use crate::protocol::routes::UpgradeRequest;
use crate::protocol::socket::Socket;
use crate::protocol::token;
use log::info;
use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

/// Handler threads keep little on their stacks, as connection threads do.
const STACK: usize = 128 * 1024;

/// Start the handler of `request`'s route for a session of `client`, its connection reading
/// from `socket` and writing to `sink`; or the refusal to answer.
pub fn start(
    request: &Request,
    client: SocketAddr,
    socket: UnixStream,
    sink: Arc<dyn Sink>,
    shared: &Arc<Shared>,
) -> Result<(), Refusal> {
    let Some((route_path, route)) = shared.routes.find(request.path()) else {
        return Err(Refusal::new(
            404,
            format!(
                "no route at {}: open a session on {}",
                request.path(),
                shared.routes.paths()
            ),
        ));
    };
    let upgrade_request = UpgradeRequest::new(request, client);
    let subject = token::subject(&upgrade_request, shared.config.jwt_key.as_deref())?;
    let protocol = route
        .judge(&upgrade_request)
        .map_err(|refused| Refusal::new(refused.status, refused.reason))?;
    let stream = Arc::new(Stream::new(socket));
    stream.send_to(sink);
    let ticket = shared
        .connections
        .admit(Arc::clone(&stream), client.ip())
        .map_err(|why| {
            accept::refusal(
                client,
                why,
                &shared.metrics,
                "connections",
                "`max_connections`",
            )
        })?;
    ticket.established();
    let config = &shared.config;
    let holding = Holding::new(shared.metrics.budget());
    let socket = Socket::new(stream, Vec::new(), holding, config.max_message_size, false);
    let about = About {
        id: ticket.id,
        peer: client,
        path: request.path().to_string(),
        protocol,
        head: Head::of(request),
        subject,
    };
    let connection = connection(socket, about, shared).map_err(no_socket)?;
    info!(
        "#{} open {client} {} over a session",
        ticket.id,
        escape(connection.path())
    );
    let handler = Arc::clone(&route.handler);
    let route_path = route_path.to_string();
    let thread_shared = Arc::clone(shared);
    let payload = (connection, ticket);
    let serve = move |(connection, ticket)| {
        run(connection, &*handler, &route_path, &thread_shared);
        drop(ticket);
    };
    if let Err((error, _)) = threads::spawn(c"session-app", STACK, payload, serve) {
        shared.metrics.refused(Reason::Threads);
        return Err(Refusal::new(
            503,
            format!("server busy: no thread for your session ({error}), try again later"),
        ));
    }
    Ok(())
}

fn no_socket(error: io::Error) -> Refusal {
    Refusal::new(
        503,
        format!("server cannot make a socket for the session ({error}); try again later"),
    )
}

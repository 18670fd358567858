//! Which handler serves which path on the WebSocket port, and what a route asks of an upgrade
//! before it is accepted: a check of the request (a session cookie, a token) and the
//! subprotocols it speaks.
//!
//! ```no_run
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use wsecho::{Connection, Refused, Route, Routes};
//!
//! let visits = Arc::new(AtomicUsize::new(0));
//! let counter = move |client: &mut Connection| {
//!     let n = visits.fetch_add(1, Ordering::Relaxed) + 1;
//!     client.send(wsecho::Message::text(format!("you are visitor {n}")))
//! };
//! let routes = Routes::new()
//!     .route("/echo", wsecho::handle_echo_client)
//!     .route(
//!         "/count",
//!         Route::new(counter)
//!             .protocols(&["count.v1"])
//!             .check(|request| match request.cookie("session") {
//!                 Some(_) => Ok(()),
//!                 None => Err(Refused::unauthorized("log in first")),
//!             }),
//!     );
//! let server = wsecho::Server::start_with(wsecho::Config::default(), routes);
//! ```

use crate::net::http::{self, Request};
use crate::protocol::connection::Connection;
use std::net::SocketAddr;
use std::sync::Arc;
use tungstenite::Error;

/// What runs on each open WebSocket of a route, on that connection's own thread. Any
/// `Fn(&mut Connection) -> Result<(), Error>` closure is one, with whatever state it captures;
/// state shared by every connection lives behind an `Arc` (and a `Mutex` where it changes).
pub trait Handler: Send + Sync + 'static {
    /// Serve one connection until it ends; an `Err` closes it (1011 unless it broke).
    fn handle(&self, connection: &mut Connection) -> Result<(), Error>;
}

impl<F> Handler for F
where
    F: Fn(&mut Connection) -> Result<(), Error> + Send + Sync + 'static,
{
    fn handle(&self, connection: &mut Connection) -> Result<(), Error> {
        self(connection)
    }
}

/// An upgrade request as a route's check sees it, before the server answers.
pub struct UpgradeRequest<'a> {
    request: &'a Request,
    peer: SocketAddr,
}

impl<'a> UpgradeRequest<'a> {
    pub(crate) fn new(request: &'a Request, peer: SocketAddr) -> UpgradeRequest<'a> {
        UpgradeRequest { request, peer }
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.request.path()
    }

    /// The query string after `?`, as sent (not decoded); empty when there is none.
    pub fn query(&self) -> &str {
        http::query_of(self.request.target())
    }

    /// The value of `name=value` in the query, as sent (not decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query()
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request.header(name)
    }

    /// The value of cookie `name` from the `Cookie` headers.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.request
            .fields()
            .filter(|(key, _)| key.eq_ignore_ascii_case("Cookie"))
            .flat_map(|(_, value)| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

/// Why a route turns an upgrade away: the HTTP status and a one-line reason for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub(crate) status: u16,
    pub(crate) reason: String,
}

impl Refused {
    /// 401: the client has not said who it is (no cookie, no token).
    pub fn unauthorized(reason: impl Into<String>) -> Refused {
        Refused::new(401, reason.into())
    }

    /// 403: the client is known and may not connect.
    pub fn forbidden(reason: impl Into<String>) -> Refused {
        Refused::new(403, reason.into())
    }

    /// The reason is kept to one line: it is the body of the answer and a line of the log.
    /// 404: there is nothing at this path (a name the route does not serve).
    pub fn not_found(reason: impl Into<String>) -> Refused {
        Refused::new(404, reason.into())
    }

    fn new(status: u16, reason: String) -> Refused {
        let reason = reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Refused { status, reason }
    }
}

type Check = dyn Fn(&UpgradeRequest) -> Result<(), Refused> + Send + Sync;

/// One path's handler and what it asks of an upgrade.
#[derive(Clone)]
pub struct Route {
    pub(crate) handler: Arc<dyn Handler>,
    check: Option<Arc<Check>>,
    protocols: Vec<String>,
    protocol_required: bool,
}

impl Route {
    /// A route that accepts every upgrade and speaks no subprotocol.
    pub fn new(handler: impl Handler) -> Route {
        Route {
            handler: Arc::new(handler),
            check: None,
            protocols: Vec::new(),
            protocol_required: false,
        }
    }

    /// Judge each upgrade before it is accepted; an `Err` answers 401 or 403 with its reason.
    pub fn check(
        mut self,
        check: impl Fn(&UpgradeRequest) -> Result<(), Refused> + Send + Sync + 'static,
    ) -> Route {
        self.check = Some(Arc::new(check));
        self
    }

    /// The subprotocols this route speaks, in no particular order: of those a client offers in
    /// `Sec-WebSocket-Protocol`, the first it lists that is here is chosen and answered. A
    /// client that offers none of them is still accepted, without a subprotocol, unless
    /// `require_protocol` is set.
    pub fn protocols(mut self, names: &[&str]) -> Route {
        self.protocols = names.iter().map(|name| name.to_string()).collect();
        self
    }

    /// Refuse (400, naming the protocols) a client that offers none of `protocols`.
    pub fn require_protocol(mut self) -> Route {
        self.protocol_required = true;
        self
    }

    /// Run the route's check and choose its subprotocol: `Ok(Some(name))` to answer with.
    pub(crate) fn judge(&self, request: &UpgradeRequest) -> Result<Option<String>, Refused> {
        let offered = request
            .request
            .fields()
            .filter(|(key, _)| key.eq_ignore_ascii_case("Sec-WebSocket-Protocol"))
            .flat_map(|(_, value)| value.split(','))
            .map(str::trim);
        let mut chosen = None;
        for name in offered {
            if self.protocols.iter().any(|ours| ours == name) {
                chosen = Some(name.to_string());
                break;
            }
        }
        if chosen.is_none() && self.protocol_required {
            return Err(Refused::new(
                400,
                format!(
                    "{} speaks only the subprotocols {}: offer one in Sec-WebSocket-Protocol",
                    request.path(),
                    self.protocols.join(", ")
                ),
            ));
        }
        if let Some(check) = &self.check {
            check(request)?;
        }
        Ok(chosen)
    }
}

impl<H: Handler> From<H> for Route {
    fn from(handler: H) -> Route {
        Route::new(handler)
    }
}

/// The WebSocket port's paths, each with its route. A path not listed gets 404, naming those
/// that are.
#[derive(Clone, Default)]
pub struct Routes {
    routes: Vec<(String, Route)>,
}

impl Routes {
    /// No routes yet.
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Serve `path` (exactly, without query) with `route`: a `Route`, or just a handler.
    /// A path ending in `/*` serves every path one segment below it (`/rooms/*` serves
    /// `/rooms/news`; `Connection::path` says which). A path given twice keeps the last.
    pub fn route(mut self, path: &str, route: impl Into<Route>) -> Routes {
        self.routes.retain(|(existing, _)| existing != path);
        self.routes.push((path.to_string(), route.into()));
        self
    }

    /// The route for `path`, and the path it was given for: the one given for `path` exactly,
    /// else one given as `PREFIX/*` for `PREFIX/NAME` (a NAME of one segment).
    pub(crate) fn find(&self, path: &str) -> Option<(&str, &Route)> {
        let exact = self.routes.iter().find(|(candidate, _)| candidate == path);
        let any_name = || {
            self.routes.iter().find(|(candidate, _)| {
                let Some(prefix) = candidate.strip_suffix('*') else {
                    return false;
                };
                let name = path.strip_prefix(prefix).unwrap_or_default();
                prefix.ends_with('/') && !name.is_empty() && !name.contains('/')
            })
        };
        exact
            .or_else(any_name)
            .map(|(given, route)| (given.as_str(), route))
    }

    /// Every path served.
    pub(crate) fn each_path(&self) -> impl Iterator<Item = String> + '_ {
        self.routes.iter().map(|(path, _)| path.clone())
    }

    /// The paths served, for a 404 that says where to go.
    pub(crate) fn paths(&self) -> String {
        let paths: Vec<&str> = self.routes.iter().map(|(path, _)| path.as_str()).collect();
        match paths.as_slice() {
            [] => "nothing (no routes)".to_string(),
            [one] => one.to_string(),
            [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
        }
    }
}

//! Binds the three listeners (or takes those socket activation passed), runs their threads,
//! and on shutdown stops them, closes every connection with 1001 (1012 when the listening
//! sockets outlive the process: a restart), waits for the connection threads (bounded) and
//! reports a summary.

use crate::apps::chat;
use crate::apps::cluster::Cluster;
use crate::apps::echo;
use crate::apps::program;
use crate::apps::subscribe;
use crate::net::accept;
use crate::net::host;
use crate::net::listen::ListenAddr;
use crate::net::registry::Admissions;
use crate::net::threads;
use crate::net::tls::Certificates;
use crate::ops::budget::Budget;
use crate::ops::config::{self, CHAT_PATH, Config, TlsFiles, WEBSOCKET_PATH};
use crate::ops::metrics::Metrics;
use crate::ops::shutdown::{self, Shutdown, Trigger};
use crate::page::carrier::Carrying;
use crate::page::publish::Publishing;
use crate::page::server::{self as page, Site};
use crate::protocol::policy;
use crate::protocol::room::{Link, Room, Rooms};
use crate::protocol::routes::Routes;
use crate::session::Sessions;
mod in_memory;
mod ports;
mod session_start;
mod start_error;
mod websocket;

pub use in_memory::TestClient;
pub use start_error::{StartError, TlsError};

use log::{info, warn};
use ports::Ports;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use websocket::{Port, Shared};

/// How long shutdown waits for connection threads before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// How long shutdown lets connections still opening go on before it wakes them too: long
/// enough for the request of a client accepted as shutdown began to arrive, short against
/// `DRAIN_TIMEOUT` for one that sends nothing.
const OPENING_GRACE: Duration = Duration::from_millis(500);

/// A running server. Dropping it without `shutdown` leaves its threads running.
///
/// What it does to the process: at start it reads the host's limits (open files, memory
/// mappings, threads) and lowers the connection caps to fit, with one warning; its threads are
/// started without an alternate signal stack (two memory mappings each); the first handler
/// that takes a [`Sender`](crate::Sender) installs a SIGURG handler that does nothing (a
/// sender wakes the connection's thread with it). It leaves the open-file limit and malloc's
/// settings alone: [`raise_open_file_limit`](crate::raise_open_file_limit) and
/// [`return_big_frees_to_the_system`](crate::return_big_frees_to_the_system) are the
/// program's to call, as the `wsecho` binary does.
pub struct Server {
    ws: ListenAddr,
    http: Option<ListenAddr>,
    policy_addr: Option<SocketAddr>,
    trigger: Trigger,
    signal: Shutdown,
    connections: Arc<Admissions>,
    page_connections: Arc<Admissions>,
    threads: Vec<JoinHandle<()>>,
    tls: Option<Arc<Certificates>>,
    cluster: Option<Arc<Cluster>>,
    rooms: Rooms,
}

/// The server's sessions, whose handlers start as `session_start.rs` says.
fn sessions(shared: &Arc<Shared>) -> Arc<Sessions> {
    // Weak: the shared state holds the sessions, which must not keep it alive in turn.
    let starter = Arc::downgrade(shared);
    let config = &shared.config;
    Sessions::new(
        Box::new(
            move |request, client, socket, sink| match starter.upgrade() {
                Some(shared) => session_start::start(request, client, socket, sink, &shared),
                None => Err(crate::net::http::Refusal::new(503, "server shutting down")),
            },
        ),
        config.resume_window,
        config.max_queue,
        config.ping_interval * 2,
        Arc::clone(&shared.metrics),
        shared.shutdown.clone(),
    )
}

/// Reads the TLS certificate and key again (what SIGHUP does); clone it freely.
#[derive(Clone)]
pub struct TlsReloader(Arc<Certificates>);

impl TlsReloader {
    /// Read both files again. New handshakes use the new pair, connections already open keep
    /// theirs; on an error the pair in use stays. `Ok` gives the files read.
    pub fn reload(&self) -> Result<TlsFiles, TlsError> {
        self.0.reload().map_err(TlsError)?;
        Ok(self.0.files())
    }
}

/// What shutdown found.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Admissions admitted over the server's life (WebSocket and policy).
    pub served: u64,
    /// Admissions open when shutdown began; each was sent close 1001 (1012 for a restart).
    pub closed_at_shutdown: usize,
    /// Whether the shutdown was a restart (the listening sockets outlive the process).
    pub restart: bool,
    /// Connection threads still running when shutdown gave up waiting.
    pub stragglers: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stopped: {} connections served, {} closed with {} at shutdown, {} left unfinished",
            self.served,
            self.closed_at_shutdown,
            if self.restart { 1012 } else { 1001 },
            self.stragglers
        )
    }
}

impl Server {
    /// Start the echo server and the chat room (across instances with `config.redis`).
    pub fn start(config: Config) -> Result<Server, StartError> {
        Server::start_with(config, default_routes())
    }

    /// Start a server with your own routes (paths and their handlers) on the WebSocket port.
    /// With `config.redis`, its named rooms ([`Server::room`], [`Connection::room`]) are shared
    /// with every instance that uses the same Redis.
    ///
    /// [`Connection::room`]: crate::Connection::room
    ///
    /// `config.programs` are routes too, beside (and over) those given, and with
    /// `config.publish_token`, `/rooms/NAME` (and `POST /publish/NAME` on the page port).
    pub fn start_with(mut config: Config, routes: Routes) -> Result<Server, StartError> {
        config.validate().map_err(StartError::Config)?;
        let routes = with_configured_routes(routes, &config);
        let tls = match &config.tls {
            Some(files) => Some(
                Certificates::load(&files.cert, &files.key)
                    .map_err(|error| StartError::Tls(TlsError(error)))?,
            ),
            None => None,
        };
        let folder = match &config.www {
            Some(www) => Some(www.canonicalize().map_err(|source| StartError::Www {
                path: www.clone(),
                source,
            })?),
            None => None,
        };
        let ports = ports::open(&config)?;
        let (ws, http) = (ports.ws.local().clone(), ports.http_listen());
        let policy_addr = ports.policy_addr();
        let Ports {
            ws: ws_listener,
            http: http_listener,
            policy: policy_listener,
            restart,
        } = ports;
        fit_to_host(&mut config);

        let (trigger, signal) = shutdown::channel();
        if restart {
            trigger.will_restart();
        }
        let connections = Admissions::new(
            config.max_connections,
            config.max_per_address,
            Some(config::max_openings(config.max_connections)),
            config.trusted_proxies.clone(),
            config.ipv6_prefix,
        );
        // The page has no openers' pool: its idle connections make room instead.
        let page_connections = Admissions::new(
            config.max_page_connections,
            config.max_per_address,
            None,
            config.trusted_proxies.clone(),
            config.ipv6_prefix,
        );
        let paths: Vec<String> = routes.each_path().collect();
        let metrics = Metrics::new(paths.clone(), Budget::new(config.memory_budget));
        let flash_fallback = folder.as_deref().is_some_and(page::has_flash_fallback);
        // Last of what can fail, as it starts threads of its own.
        let cluster = match &config.redis {
            // A reply from Redis may carry a message of the largest size, and some more.
            Some(url) => Some(
                Cluster::start(url, config.max_message_size.saturating_add(1 << 20))
                    .map_err(StartError::Redis)?,
            ),
            None => None,
        };
        let link = cluster.clone().map(|cluster| cluster as Arc<dyn Link>);
        let rooms = Rooms::new(link);
        let serves_chat = routes.find(CHAT_PATH).is_some();
        let ws_port = ws.tcp().map(|addr| addr.port());
        let policy_reply = policy::reply(&config.policy_domain, ws_port);
        let (handoff, pool) = threads::pool();
        let shared = Arc::new(Shared {
            config,
            policy_reply,
            connections: Arc::clone(&connections),
            shutdown: signal.clone(),
            routes,
            threads: pool,
            metrics,
            tls: tls.clone(),
            no_thread_log: Default::default(),
            rooms: rooms.clone(),
            sessions: Default::default(),
        });
        let sessions = sessions(&shared);
        let _ = shared.sessions.set(Arc::clone(&sessions));

        let site = Arc::new(Site {
            folder,
            config_json: config::page_config_json(
                ws_port,
                policy_addr.map(|a| a.port()),
                flash_fallback,
                &paths,
            ),
            proxied_config_json: config::page_config_json(
                None,
                policy_addr.map(|a| a.port()),
                flash_fallback,
                &paths,
            ),
            connections: Arc::clone(&page_connections),
            shutdown: signal.clone(),
            timeout: shared.config.handshake_timeout,
            allowed_hosts: shared.config.allowed_hosts.clone(),
            trusted_proxies: shared.config.trusted_proxies.clone(),
            metrics: Arc::clone(&shared.metrics),
            tls: tls.clone(),
            no_thread_log: Default::default(),
            publishing: Publishing {
                token: shared.config.publish_token.clone(),
                rooms: rooms.clone(),
                max_message_size: shared.config.max_message_size,
                timeout: shared.config.handshake_timeout,
                metrics: Arc::clone(&shared.metrics),
            },
            carrying: Carrying {
                sessions,
                allowed_origins: shared.config.allowed_origins.clone(),
                allowed_hosts: shared.config.allowed_hosts.clone(),
                max_message_size: shared.config.max_message_size,
                timeout: shared.config.handshake_timeout,
            },
        });
        let mut threads = Vec::new();
        if let Some(listener) = policy_listener {
            let (policy_shared, policy_handoff) = (Arc::clone(&shared), handoff.clone());
            threads.push(spawn("policy-accept", move || {
                websocket::accept_loop(listener, Port::PolicyOnly, policy_shared, policy_handoff)
            })?);
        }
        let ws_shared = Arc::clone(&shared);
        threads.push(spawn("ws-accept", move || {
            websocket::accept_loop(ws_listener, Port::WebSocket, ws_shared, handoff)
        })?);
        if let Some(listener) = http_listener {
            let page_site = Arc::clone(&site);
            threads.push(spawn("page-accept", move || {
                page::accept_loop(listener, page_site)
            })?);
        }

        let scheme = if tls.is_some() { "https" } else { "http" };
        if restart {
            info!(
                "serving the listening sockets socket activation passed: a stop closes clients \
                 with 1012 (restart), and clients connecting meanwhile wait for the next process"
            );
        }
        match &http {
            Some(ListenAddr::Tcp(addr)) => {
                info!("page: {scheme}://{addr}/ (open this in a browser)")
            }
            Some(unix) => info!("page: {unix} ({scheme} through a proxy)"),
            None => info!("no page port (`http` is off)"),
        }
        let ws_scheme = if tls.is_some() { "wss" } else { "ws" };
        let ws_url = match &ws {
            ListenAddr::Tcp(addr) => format!("{ws_scheme}://{addr}"),
            unix => format!("{unix} ({ws_scheme} through a proxy), path "),
        };
        info!(
            "WebSocket: {ws_url}{}; the Flash policy is also answered here",
            paths_for_log(&shared.routes)
        );
        if let (true, Some(ListenAddr::Tcp(addr))) = (serves_chat, &http) {
            info!("chat room: {scheme}://{addr}/chat.html (WebSocket path {CHAT_PATH})");
        }
        if let Some(certificates) = &tls {
            let files = certificates.files();
            info!(
                "TLS with certificate {} and key {}; SIGHUP reloads them. The Flash fallback \
                 cannot speak this TLS: it needs a plain ws:// port",
                files.cert.display(),
                files.key.display()
            );
        }
        if let Some(addr) = policy_addr {
            info!("Flash policy: {addr}");
        }
        match (&site.folder, flash_fallback) {
            _ if http.is_none() => {}
            (_, true) => {}
            (Some(folder), false) => warn!(
                "Flash fallback unavailable: web-socket-js is not in {}/vendor; run `make assets` \
                 (browsers with native WebSocket are not affected)",
                folder.display()
            ),
            (None, false) => info!(
                "serving the built-in page; for the Flash fallback run `make assets` and serve \
                 the checkout's www/ (`www`; browsers with native WebSocket need neither)"
            ),
        }
        Ok(Server {
            ws,
            http,
            policy_addr,
            trigger,
            signal,
            connections,
            page_connections,
            threads,
            tls,
            cluster,
            rooms,
        })
    }

    /// The room called `name`: the same room for every caller here and for every handler's
    /// [`Connection::room`](crate::Connection::room), made on first use; with `config.redis`,
    /// the room of that name on every instance. (The chat room is `room("chat")`.)
    pub fn room(&self, name: &str) -> Room {
        self.rooms.room(name)
    }

    /// With TLS on, the handle that reloads its certificate and key.
    pub fn tls_reloader(&self) -> Option<TlsReloader> {
        self.tls.clone().map(TlsReloader)
    }

    /// Where the WebSocket port listens over TCP (the port actually bound, when 0 was asked
    /// for); `0.0.0.0:0` when it listens on a Unix socket (see [`Server::ws_listen`]).
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws.tcp().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Where the page listens over TCP; `None` when `Config::http` turned it off or it
    /// listens on a Unix socket (see [`Server::http_listen`]).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(ListenAddr::tcp)
    }

    /// Where the WebSocket port listens: a TCP address or a Unix socket.
    pub fn ws_listen(&self) -> &ListenAddr {
        &self.ws
    }

    /// Where the page listens: a TCP address or a Unix socket; `None` when it is off.
    pub fn http_listen(&self) -> Option<&ListenAddr> {
        self.http.as_ref()
    }

    /// The dedicated policy listener, if one is running.
    pub fn policy_addr(&self) -> Option<SocketAddr> {
        self.policy_addr
    }

    /// The cap on WebSocket connections in force: the one configured, or lower if the host
    /// cannot hold that many (see `host.rs`).
    pub fn max_connections(&self) -> usize {
        self.connections.max()
    }

    /// The cap on page connections in force.
    pub fn max_page_connections(&self) -> usize {
        self.page_connections.max()
    }

    /// Open connections right now (WebSocket, and policy requests being answered).
    pub fn open_connections(&self) -> usize {
        self.connections.open_count()
    }

    /// Open page connections right now.
    pub fn open_page_connections(&self) -> usize {
        self.page_connections.open_count()
    }

    /// Whether shutdown has begun, for an app's own threads to stop with the server (see
    /// [`Shutdown::wait_timeout`]).
    pub fn on_shutdown(&self) -> Shutdown {
        self.signal.clone()
    }

    /// A handle that begins shutdown from anywhere (a signal handler thread, a test).
    pub fn trigger(&self) -> Trigger {
        self.trigger.clone()
    }

    /// Begin shutdown and wait for it to finish.
    pub fn shutdown(self) -> Summary {
        self.trigger.fire();
        self.wait()
    }

    /// Run until shutdown is triggered, then stop everything and report.
    pub fn wait(self) -> Summary {
        self.signal.wait();
        // The accept loops stop first: with socket activation, whoever is queued on the
        // listening sockets stays there for the next process, and whoever was just accepted
        // is admitted, answered, and closed with the rest.
        for thread in &self.threads {
            accept::wake_accept_loop(thread);
        }
        for thread in self.threads {
            let _ = thread.join();
        }
        let closed_at_shutdown = self.connections.open_count();
        self.connections.stop_and_wake();
        self.page_connections.stop_and_wake();
        let drain_started = Instant::now();
        if !self.connections.wait_until(drain_started + OPENING_GRACE) {
            self.connections.wake_openers();
        }
        let stragglers = self.connections.wait_finished(DRAIN_TIMEOUT)
            + (self.page_connections)
                .wait_finished(DRAIN_TIMEOUT.saturating_sub(drain_started.elapsed()));
        // After the members' last words (their "left"), which went out through it.
        if let Some(cluster) = &self.cluster {
            cluster.stop();
        }
        Summary {
            served: self.connections.admitted_count(),
            closed_at_shutdown,
            restart: self.signal.is_restart(),
            stragglers,
        }
    }
}

/// What `wsecho` serves: the echo on `/echo`, the chat room on `/chat`.
pub fn default_routes() -> Routes {
    Routes::new()
        .route(WEBSOCKET_PATH, echo::handle_echo_client)
        .route(CHAT_PATH, chat::route())
}

/// `routes`, a route for each of `config.programs`, and `/rooms/*` with `publish_token`.
fn with_configured_routes(mut routes: Routes, config: &Config) -> Routes {
    if config.publish_token.is_some() {
        routes = routes.route(subscribe::ROOMS_PATH, subscribe::route());
    }
    if config.programs.is_empty() {
        return routes;
    }
    let passed = std::iter::once("PATH")
        .chain(config.passenv.iter().map(String::as_str))
        .filter_map(|name| Some((name.to_string(), std::env::var(name).ok()?)))
        .collect();
    let settings = Arc::new(program::Settings {
        grace: config.program_grace,
        passed,
        max_message_size: config.max_message_size,
        stdin_patience: config.ping_interval * 2,
    });
    for spec in &config.programs {
        let route = program::route(spec.clone(), Arc::clone(&settings));
        routes = routes.route(&spec.path, route);
    }
    routes
}

/// Where the WebSocket port's routes are, as the startup log shows them after its address: the
/// first route's path, then every path served (`/echo (serving /echo or /chat)`).
fn paths_for_log(routes: &Routes) -> String {
    let first = routes.each_path().next().unwrap_or_else(|| "/".to_string());
    format!("{first} (serving {})", routes.paths())
}

/// Keep both ports' caps within what the host can hold (see `host.rs`), with one warning line
/// when they must come down. The page keeps its cap unless that is over a quarter of the room.
fn fit_to_host(config: &mut Config) {
    let Some(limit) = host::tightest(host::limits(config.memory_budget)) else {
        return;
    };
    let room = usize::try_from(limit.connections).unwrap_or(usize::MAX);
    let (ws, page) = (config.max_connections, config.max_page_connections);
    if ws.saturating_add(page) <= room {
        return;
    }
    let fitted_page = page.min(room / 4).max(1);
    let fitted_ws = room.saturating_sub(fitted_page).max(1);
    warn!(
        "`max_connections` {ws} and `max_page_connections` {page} are more than this host can \
         hold: {limit}. Serving at most {fitted_ws} WebSocket and {fitted_page} page \
         connections (see docs/operating.md, \"Sizing a host\")"
    );
    config.max_connections = fitted_ws;
    config.max_page_connections = fitted_page;
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    thread::Builder::new().name(name.to_string()).spawn(body)
}

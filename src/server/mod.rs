//! Binds the three listeners, runs their threads, and on shutdown stops them, closes every
//! connection with 1001, waits for the connection threads (bounded) and reports a summary.

use crate::apps::chat;
use crate::apps::cluster::Cluster;
use crate::apps::echo;
use crate::apps::program;
use crate::apps::subscribe;
use crate::net::accept;
use crate::net::host;
use crate::net::listen;
use crate::net::registry::Admissions;
use crate::net::threads;
use crate::net::tls::Certificates;
use crate::ops::budget::Budget;
use crate::ops::config::{self, CHAT_PATH, Config, ConfigError, TlsFiles, WEBSOCKET_PATH};
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
mod session_start;
mod websocket;

pub use in_memory::TestClient;

use log::{info, warn};
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use websocket::{Port, Shared};

/// How long shutdown waits for connection threads before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

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
    ws_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
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

/// A TLS certificate or key that cannot be used (or a build without TLS): what is wrong and
/// what to do, in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration cannot work (see [`Config::validate`]).
    Config(ConfigError),
    /// A listener could not be bound.
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The `Config` field that sets it.
        field: &'static str,
        /// What the operating system said.
        source: io::Error,
    },
    /// The page folder is missing.
    Www {
        /// The folder asked for.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The TLS certificate or key cannot be used (or TLS was not built in).
    Tls(TlsError),
    /// `Config::redis` is not a Redis URL (or Redis was not built in).
    Redis(String),
    /// Anything else the operating system refused (threads, sockets).
    Io(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(error) => write!(f, "{error}"),
            StartError::Bind {
                what,
                addr,
                field,
                source,
            } => write!(
                f,
                "cannot listen on {addr} for the {what}: {source}; stop whatever uses it \
                 or pick another address (`{field}`)"
            ),
            StartError::Www { path, source } => write!(
                f,
                "cannot use the page folder {}: {source}; give `www` an existing folder, \
                 or leave `www` out to serve the built-in page",
                path.display()
            ),
            StartError::Tls(error) => write!(f, "{error}"),
            StartError::Redis(message) => write!(f, "{message}"),
            StartError::Io(source) => write!(f, "cannot start: {source}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<io::Error> for StartError {
    fn from(source: io::Error) -> Self {
        StartError::Io(source)
    }
}

/// What shutdown found.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Admissions admitted over the server's life (WebSocket and policy).
    pub served: u64,
    /// Admissions open when shutdown began; each was sent close 1001.
    pub closed_at_shutdown: usize,
    /// Connection threads still running when shutdown gave up waiting.
    pub stragglers: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stopped: {} connections served, {} closed with 1001 at shutdown, {} left unfinished",
            self.served, self.closed_at_shutdown, self.stragglers
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
        let ws_listener = bind(config.ws, "WebSocket listener", "ws")?;
        let ws_addr = ws_listener.local_addr()?;
        let policy_listener = config
            .policy_port
            .and_then(|port| bind_policy(SocketAddr::new(ws_addr.ip(), port)));
        let policy_addr = match &policy_listener {
            Some(listener) => Some(listener.local_addr()?),
            None => None,
        };
        let http_listener = match config.http {
            Some(addr) => Some(bind(addr, "page", "http")?),
            None => None,
        };
        let http_addr = match &http_listener {
            Some(listener) => Some(listener.local_addr()?),
            None => None,
        };
        fit_to_host(&mut config);

        let (trigger, signal) = shutdown::channel();
        let connections = Admissions::new(
            config.max_connections,
            config.max_per_address,
            Some(config::max_openings(config.max_connections)),
            config.trusted_proxies.clone(),
        );
        // The page has no openers' pool: its idle connections make room instead.
        let page_connections = Admissions::new(
            config.max_page_connections,
            config.max_per_address,
            None,
            config.trusted_proxies.clone(),
        );
        let paths: Vec<String> = routes.each_path().collect();
        let metrics = Metrics::new(paths.clone(), Budget::new(config.memory_budget));
        let flash_fallback = folder.as_deref().is_some_and(page::has_flash_fallback);
        // Last of what can fail, as it starts threads of its own.
        let cluster = match &config.redis {
            Some(url) => Some(Cluster::start(url).map_err(StartError::Redis)?),
            None => None,
        };
        let link = cluster.clone().map(|cluster| cluster as Arc<dyn Link>);
        let rooms = Rooms::new(link);
        let serves_chat = routes.find(CHAT_PATH).is_some();
        let policy_reply = policy::reply(&config.policy_domain, ws_addr.port());
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
                Some(ws_addr.port()),
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

        let (http, ws) = if tls.is_some() {
            ("https", "wss")
        } else {
            ("http", "ws")
        };
        match http_addr {
            Some(addr) => info!("page: {http}://{addr}/ (open this in a browser)"),
            None => info!("no page port (`http` is off)"),
        }
        info!(
            "WebSocket: {ws}://{ws_addr}{}; the Flash policy is also answered here",
            paths_for_log(&shared.routes)
        );
        if let (true, Some(addr)) = (serves_chat, http_addr) {
            info!("chat room: {http}://{addr}/chat.html (WebSocket path {CHAT_PATH})");
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
            _ if http_addr.is_none() => {}
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
            ws_addr,
            http_addr,
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

    /// Where the WebSocket port listens (the port actually bound, when 0 was asked for).
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws_addr
    }

    /// Where the page listens; `None` when `Config::http` turned it off.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
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
        let listeners = [Some(self.ws_addr), self.policy_addr, self.http_addr];
        for addr in listeners.into_iter().flatten() {
            if let Err(error) = accept::wake_listener(addr) {
                warn!("could not wake the listener on {addr}: {error}");
            }
        }
        let closed_at_shutdown = self.connections.open_count();
        self.connections.stop_and_wake();
        self.page_connections.stop_and_wake();
        let drain_started = Instant::now();
        let stragglers = self.connections.wait_finished(DRAIN_TIMEOUT)
            + (self.page_connections)
                .wait_finished(DRAIN_TIMEOUT.saturating_sub(drain_started.elapsed()));
        for thread in self.threads {
            let _ = thread.join();
        }
        // After the members' last words (their "left"), which went out through it.
        if let Some(cluster) = &self.cluster {
            cluster.stop();
        }
        Summary {
            served: self.connections.admitted_count(),
            closed_at_shutdown,
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

fn bind(
    addr: SocketAddr,
    what: &'static str,
    field: &'static str,
) -> Result<TcpListener, StartError> {
    listen::bind(addr).map_err(|source| StartError::Bind {
        what,
        addr,
        field,
        source,
    })
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

/// The policy port is a convenience: failing to bind it is a warning, not an error.
fn bind_policy(addr: SocketAddr) -> Option<TcpListener> {
    match listen::bind(addr) {
        Ok(listener) => Some(listener),
        Err(error) => {
            let fix = if error.kind() == io::ErrorKind::PermissionDenied {
                "ports below 1024 need root or `sudo setcap cap_net_bind_service=+ep <wsecho binary>`"
            } else {
                "another program holds it"
            };
            warn!(
                "no Flash policy listener on {addr}: {error} ({fix}). Flash clients still get \
                 the policy inline on the WebSocket port after a few seconds; \
                 without `policy_port` this listener is not started"
            );
            None
        }
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> io::Result<JoinHandle<()>> {
    thread::Builder::new().name(name.to_string()).spawn(body)
}

//! Everything a running server is told: listen addresses, the page folder, limits and
//! timeouts, with the defaults `wsecho --help` shows. Also the small JSON view of the bound
//! ports that the page fetches as `/config.json`.

use crate::net::listen::ListenAddr;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The path that upgrades to the echo WebSocket.
pub const WEBSOCKET_PATH: &str = "/echo";

/// The path of the chat room.
pub const CHAT_PATH: &str = "/chat";

/// Settings for one server. `Config::default()` is what `wsecho` runs with no flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the page (and `/config.json`, `/metrics`, `/healthz`) listens: a TCP address or
    /// a Unix socket; `None` runs no page port, for an app that serves only WebSockets.
    pub http: Option<ListenAddr>,
    /// Where WebSocket upgrades (and inline Flash policy requests) are answered: a TCP
    /// address or a Unix socket (`"unix:/run/wsecho/ws.sock".parse()`).
    pub ws: ListenAddr,
    /// Port of the dedicated Flash policy listener, on the `ws` address's IP (the page's if
    /// `ws` is a Unix socket; none if both are); `None` runs none. `Some(0)` picks a free
    /// port (tests use that).
    pub policy_port: Option<u16>,
    /// The `domain` the Flash policy grants.
    pub policy_domain: String,
    /// The folder the page is served from; `None`: the page built into the binary.
    pub www: Option<PathBuf>,
    /// Largest message (and frame) accepted; larger ones get close 1009. A compressed
    /// message counts at its inflated size.
    pub max_message_size: usize,
    /// Accept permessage-deflate when a client offers it: its messages may then come
    /// compressed (replies go out plain). `--no-deflate` turns it off.
    pub deflate: bool,
    /// Most bytes queued for one client by `Sender`s (pushes and broadcasts it has not read
    /// yet); a send past it closes the client with 1008.
    pub max_queue: usize,
    /// Most text and binary messages one connection may send a second, on every route (a
    /// burst of one second's worth at once is allowed); one more closes it with 1008
    /// ("message rate limit"). `None`: no limit (the default).
    pub max_messages_per_second: Option<u32>,
    /// Most bytes of messages in flight (incoming ones not yet handed to the application,
    /// outgoing ones not yet sent) held for all connections together; a message that would
    /// go past it closes its connection with 1013 (try again later).
    pub memory_budget: usize,
    /// Open WebSocket connections allowed at once; one more gets HTTP 503.
    pub max_connections: usize,
    /// Admissions one client address may hold on each port (the WebSocket and policy ports
    /// together, the page port apart), openings included; one more gets HTTP 503.
    pub max_per_address: usize,
    /// How many leading bits of an IPv6 address name one client for `max_per_address` (an
    /// IPv6 client owns at least a /64); 128 counts each address apart.
    pub ipv6_prefix: u8,
    /// Open page connections allowed at once, counted apart from WebSockets; one more closes
    /// the connection idle longest, or gets HTTP 503 when none is idle.
    pub max_page_connections: usize,
    /// How long a client may take to send a whole request head (either port), how long a page
    /// connection may idle between requests, and how long a write may make no progress.
    pub handshake_timeout: Duration,
    /// A Ping is sent after this much silence; two intervals of silence close the connection.
    pub ping_interval: Duration,
    /// Origins accepted besides those on the host the client connected to; `*` accepts any.
    pub allowed_origins: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` names the client, for the per-address cap and
    /// the logs (see `proxy.rs`).
    pub trusted_proxies: Vec<IpAddr>,
    /// Host names both ports answer for (the `Host` header, without port); any other gets 421.
    /// Empty: every host.
    pub allowed_hosts: Vec<String>,
    /// The certificate and key both ports speak TLS with (https://, wss://); `None`: plain.
    /// Needs the `tls` feature.
    pub tls: Option<TlsFiles>,
    /// `redis://HOST:PORT[/DB]`: the chat room and every named room span the instances linked
    /// to this Redis. Needs the `redis` feature.
    pub redis: Option<String>,
    /// Programs run per connection, each on its own path (see [`Program`]).
    pub programs: Vec<Program>,
    /// How long a program has to exit once its stdin is closed, and again after SIGTERM, before
    /// SIGKILL.
    pub program_grace: Duration,
    /// Variables of the server's own environment passed to programs, besides `PATH`.
    pub passenv: Vec<String>,
    /// The token a backend gives (`Authorization: Bearer TOKEN`) to publish to a room with
    /// `POST /publish/NAME` on the page port; clients hear a room on `/rooms/NAME`. `None`:
    /// neither exists.
    pub publish_token: Option<String>,
    /// The key of the signed tokens (JWT, HS256) every WebSocket upgrade and every session
    /// opened over HTTP must bring; `None`: no token required (see `protocol/token.rs`). At
    /// least 16 bytes; 32 random ones are usual.
    pub jwt_key: Option<Vec<u8>>,
    /// How long a session (the HTTP carrier's) waits for its client to come back after its
    /// carrier dropped, keeping what the handler sends (at most `max_queue`).
    pub resume_window: Duration,
}

/// A program per connection on a path, websocketd's model: each text message from the client
/// is a line on its stdin, each line it prints a text message to the client; its environment
/// describes the request (CGI's variables, and `HTTP_NAME` for each header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The WebSocket path it serves (`/count`).
    pub path: String,
    /// The program and its arguments; never run through a shell.
    pub command: Vec<String>,
    /// Bytes both ways without lines: each message from the client goes to stdin as it is,
    /// each read of stdout is one binary message.
    pub binary: bool,
}

/// Where the TLS certificate and key are: PEM files, read at start and on every reload.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// Its private key, PEM: PKCS#8, or the RSA (PKCS#1) and EC (SEC1) forms.
    pub key: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: Some(SocketAddr::from(([127, 0, 0, 1], 8080)).into()),
            ws: SocketAddr::from(([127, 0, 0, 1], 8087)).into(),
            policy_port: Some(843),
            policy_domain: "*".to_string(),
            www: None,
            max_message_size: 16 << 20,
            deflate: true,
            max_queue: 1 << 20,
            max_messages_per_second: None,
            memory_budget: 256 << 20,
            max_connections: 1024,
            max_page_connections: 256,
            max_per_address: 64,
            ipv6_prefix: 64,
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            trusted_proxies: Vec::new(),
            tls: None,
            redis: None,
            programs: Vec::new(),
            program_grace: Duration::from_secs(3),
            passenv: Vec::new(),
            publish_token: None,
            jwt_key: None,
            resume_window: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// Check that the settings can work together: every count and size at least 1, every
    /// duration within a day, and a message no larger than the memory budget that must hold
    /// it. `Server::start` checks; the error names the field (`max_queue`, ...) and what to do.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("max_message_size", self.max_message_size),
            ("max_queue", self.max_queue),
            ("memory_budget", self.memory_budget),
            ("max_connections", self.max_connections),
            ("max_per_address", self.max_per_address),
            ("max_page_connections", self.max_page_connections),
        ] {
            if value == 0 {
                return Err(ConfigError::new(
                    field,
                    format!("`{field}` must be at least 1"),
                ));
            }
        }
        for (field, value) in [
            ("handshake_timeout", self.handshake_timeout),
            ("ping_interval", self.ping_interval),
            ("resume_window", self.resume_window),
        ] {
            if value.is_zero() || value > MOST_SECONDS {
                return Err(ConfigError::new(
                    field,
                    format!(
                        "`{field}` takes seconds between 0 and {}, not {}",
                        MOST_SECONDS.as_secs(),
                        seconds_text(value)
                    ),
                ));
            }
        }
        if self.program_grace > MOST_SECONDS {
            return Err(ConfigError::new(
                "program_grace",
                format!(
                    "`program_grace` takes seconds up to {}, not {}",
                    MOST_SECONDS.as_secs(),
                    seconds_text(self.program_grace)
                ),
            ));
        }
        if let Some(token) = &self.publish_token
            && (token.is_empty()
                || token.len() > 4096
                || token.contains(|c: char| c.is_whitespace() || c.is_control()))
        {
            return Err(ConfigError::new(
                "publish_token",
                "`publish_token` must be 1 to 4096 characters without spaces or control characters"
                    .to_string(),
            ));
        }
        if self.jwt_key.as_ref().is_some_and(|key| key.len() < 16) {
            return Err(ConfigError::new(
                "jwt_key",
                "`jwt_key` must be at least 16 bytes (32 random ones are usual: \
                 head -c 32 /dev/urandom | base64 > jwt.key)"
                    .to_string(),
            ));
        }
        if self.ipv6_prefix > 128 {
            return Err(ConfigError::new(
                "ipv6_prefix",
                format!(
                    "`ipv6_prefix` is a number of bits, 0 to 128, not {}",
                    self.ipv6_prefix
                ),
            ));
        }
        for (n, program) in self.programs.iter().enumerate() {
            let fault = program.fault().or_else(|| {
                let twice = self.programs[..n].iter().any(|p| p.path == program.path);
                twice.then(|| format!("{} is given two programs: keep one", program.path))
            });
            if let Some(fault) = fault {
                return Err(ConfigError::new("programs", format!("`programs`: {fault}")));
            }
        }
        if self.max_message_size > self.memory_budget {
            return Err(ConfigError::new(
                "max_message_size",
                format!(
                    "`max_message_size` ({}) is larger than `memory_budget` ({}): such a message \
                     could never be held; lower the one or raise the other",
                    self.max_message_size, self.memory_budget
                ),
            ));
        }
        Ok(())
    }
}

impl Program {
    /// What makes it unusable, if anything: a path that is not one, no command, or a program
    /// that cannot be run (not found in `PATH`, not executable).
    fn fault(&self) -> Option<String> {
        let path = &self.path;
        if !path.starts_with('/') || path.contains(['?', '#']) || path.contains(char::is_whitespace)
        {
            return Some(format!("{path:?} is not a path: give one such as /count"));
        }
        let Some(name) = self.command.first() else {
            return Some(format!(
                "{path} has no command: give one such as {path}=./count.py"
            ));
        };
        match find_executable(name) {
            Ok(_) => None,
            Err(why) => Some(format!("{path} runs {name:?}, which {why}")),
        }
    }
}

/// Where the program `name` is: itself when it names a path to an executable file, else the
/// first executable of that name in `PATH`; `Err` says why neither.
pub(crate) fn find_executable(name: &str) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |path: &std::path::Path| {
        path.metadata()
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let path = std::path::Path::new(name);
        return match path.metadata() {
            Err(error) => Err(format!("cannot be found ({error})")),
            Ok(_) if runnable(path) => Ok(name.to_string()),
            Ok(_) => Err(
                "is not an executable file: `chmod +x` it, or name its interpreter \
                          first (python3 script.py)"
                    .to_string(),
            ),
        };
    }
    let search = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&search)
        .map(|dir| dir.join(name))
        .find(|path| runnable(path));
    found
        .map(|path| path.to_string_lossy().into_owned())
        .ok_or_else(|| {
            "is not found in PATH: give its full path, or ./name for one in the current folder"
                .to_string()
        })
}

/// The longest a duration setting may be: a day.
const MOST_SECONDS: Duration = Duration::from_secs(86_400);

/// A setting that cannot work: which field, and what is wrong with it and what to do (its
/// `Display`, naming fields in backticks, as every message of the library does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The `Config` field at fault.
    pub field: &'static str,
    message: String,
}

impl ConfigError {
    fn new(field: &'static str, message: String) -> ConfigError {
        ConfigError { field, message }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A duration as seconds with its milliseconds (`2.5`, `30`), without floating point: formatting
/// floats would cost the binary 10 KB.
pub fn seconds_text(duration: Duration) -> String {
    let (secs, millis) = (duration.as_secs(), duration.subsec_millis());
    match millis {
        0 => secs.to_string(),
        _ => format!("{secs}.{millis:03}")
            .trim_end_matches('0')
            .to_string(),
    }
}

/// How many WebSocket-port connections may be still opening (or asking for the Flash
/// policy) at once: a quarter of the cap, so slow openers never hold the places of
/// established clients.
pub fn max_openings(max_connections: usize) -> usize {
    (max_connections / 4).max(1)
}

/// What the page needs to know (`GET /config.json`): the bound WebSocket port (`null` behind a
/// trusted proxy: the page then connects to the host and port it came from, where the proxy
/// passes the WebSocket paths on), the echo's and the chat's paths; the policy port, `null`
/// when no policy listener runs (Flash must then ask the WebSocket port itself); and whether
/// the Flash fallback's files are there to be loaded; and every WebSocket path served.
pub fn page_config_json(
    ws_port: Option<u16>,
    policy_port: Option<u16>,
    flash_fallback: bool,
    paths: &[String],
) -> String {
    let json = |port: Option<u16>| port.map_or_else(|| "null".to_string(), |p| p.to_string());
    let (ws_port, policy) = (json(ws_port), json(policy_port));
    let paths = serde_json::to_string(paths).unwrap_or_else(|_| "[]".to_string());
    format!(
        "{{\"wsPort\":{ws_port},\"wsPath\":\"{WEBSOCKET_PATH}\",\"chatPath\":\"{CHAT_PATH}\",\
         \"policyPort\":{policy},\"flashFallback\":{flash_fallback},\"paths\":{paths}}}\n"
    )
}

#[cfg(test)]
mod validate_tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_each_impossible_setting_names_its_field() {
        assert_eq!(Config::default().validate(), Ok(()));
        type Spoil = fn(&mut Config);
        let cases: [(Spoil, &str, &str); 4] = [
            (
                |c| c.max_queue = 0,
                "max_queue",
                "`max_queue` must be at least 1",
            ),
            (
                |c| c.ping_interval = Duration::ZERO,
                "ping_interval",
                "between 0 and 86400",
            ),
            (
                |c| c.handshake_timeout = Duration::from_secs(90_000),
                "handshake_timeout",
                "not 90000",
            ),
            (
                |c| c.max_message_size = c.memory_budget + 1,
                "max_message_size",
                "larger than `memory_budget`",
            ),
        ];
        for (spoil, field, says) in cases {
            let mut config = Config::default();
            spoil(&mut config);
            let error = config.validate().unwrap_err();
            assert_eq!(error.field, field);
            assert!(error.to_string().contains(says), "{error}");
        }
    }
}

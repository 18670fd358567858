//! The page port: static files from the `www` folder, plus `/config.json`, over our own small
//! HTTP/1.1 server with the same bounds as the WebSocket port.
//!
//! One thread per connection, at most `--max-page-connections` of them (counted apart from
//! WebSockets; past the cap the connection idle longest is closed, or the newcomer gets 503).
//! Each request head is at most 8 KiB and must arrive within the handshake timeout (408 after
//! it, 431 over it); a connection that stays idle that long between requests is closed. GET and
//! HEAD only (405); a request that carries or declares a body is refused (413, or 400 for a
//! malformed length) and the body is never read. Pipelined requests are answered in order, one
//! at a time, so a client that does not read holds only its own thread, until the write
//! timeout. Nothing outside the folder is ever served, whatever the path says (`..`,
//! percent-encoded or not, absolute paths, symlinks that lead out), nor any name starting with
//! `.` (`.env`, `.git`).

use crate::net::accept::{self, Quiet};
use crate::net::http::{self, HeadError, Refusal, Request};
use crate::net::listen::Listener;
use crate::net::proxy::Client;
use crate::net::registry::{Admissions, Ticket};
use crate::net::stream::Stream;
use crate::net::threads;
use crate::net::tls::Certificates;
use crate::net::wire::Wire;
use crate::ops::escape::escape;
use crate::ops::metrics::{Metrics, Reason};
use crate::ops::shutdown::Shutdown;
use crate::page::carrier::{self, Carrying};
use crate::page::embedded;
use crate::page::publish::{self, Publishing};
use log::{debug, warn};
use std::fs::File;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Stack for page connection threads: they keep little on it.
const PAGE_STACK: usize = 128 * 1024;

/// Everything the page's threads share.
pub struct Site {
    /// The canonical page folder (`--www`); `None`: the page built into the binary.
    pub folder: Option<PathBuf>,
    /// The body of `/config.json`.
    pub config_json: String,
    /// The body of `/config.json` for a page loaded through a trusted proxy.
    pub proxied_config_json: String,
    /// Open page connections, apart from the WebSocket port's.
    pub connections: Arc<Admissions>,
    pub shutdown: Shutdown,
    /// Host names answered for; empty: any (`--host`).
    pub allowed_hosts: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed (`--trusted-proxy`).
    pub trusted_proxies: Vec<IpAddr>,
    /// What `/metrics` reports.
    pub metrics: Arc<Metrics>,
    /// How long a request head may take, and how long a connection may idle between requests
    /// or wait for the client to read.
    pub timeout: Duration,
    /// With TLS on, the page is served over https only.
    pub tls: Option<Arc<Certificates>>,
    /// Refusals for want of a thread: at most one log line a second.
    pub no_thread_log: Quiet,
    /// `POST /publish/NAME`.
    pub publishing: Publishing,
    /// Sessions over HTTP (`/session/`).
    pub carrying: Carrying,
}

/// web-socket-js, fetched by `make assets` into the page folder (never committed).
const FLASH_FALLBACK_FILES: [&str; 3] = [
    "vendor/web_socket.js",
    "vendor/swfobject.js",
    "vendor/WebSocketMain.swf",
];

/// Whether the Flash fallback's files are in the page folder.
pub fn has_flash_fallback(root: &Path) -> bool {
    FLASH_FALLBACK_FILES
        .iter()
        .all(|file| root.join(file).is_file())
}

/// Accept page connections until shutdown, one thread each.
pub fn accept_loop(listener: Listener, site: Arc<Site>) {
    accept::accept_loop(
        listener,
        &site.shutdown,
        &site.metrics,
        "`max_page_connections`",
        |stream, peer| admit(stream, peer, &site),
    );
}

/// (TCP connections come with TCP_NODELAY set: a response head and its file go out as two
/// writes, and the file must not wait for the client's delayed ACK of the head.)
fn admit(wire: Wire, peer: SocketAddr, site: &Arc<Site>) {
    let stream = Arc::new(Stream::new(wire));
    let ticket = match site.connections.admit(Arc::clone(&stream), peer.ip()) {
        Ok(ticket) => ticket,
        Err(why) => {
            accept::refuse(
                &stream,
                peer,
                why,
                &site.metrics,
                "page connections",
                "`max_page_connections`",
            );
            return;
        }
    };
    let thread_site = Arc::clone(site);
    let serve = move |(stream, ticket): (Arc<Stream>, Ticket)| {
        serve_connection(&stream, peer, &ticket, &thread_site)
    };
    if let Err((error, (stream, ticket))) =
        threads::spawn(c"page-conn", PAGE_STACK, (stream, ticket), serve)
    {
        // Out of the count before the client hears it may try again.
        drop(ticket);
        let (metrics, log) = (&site.metrics, &site.no_thread_log);
        accept::refuse_without_thread(&stream, peer, &error, metrics, log, "page connection");
    }
}

/// Answer one request after another until the client leaves, idles out, or asks to close.
fn serve_connection(stream: &Arc<Stream>, peer: SocketAddr, ticket: &Ticket, site: &Site) {
    if let Err(error) = stream.wire().set_write_timeout(Some(site.timeout)) {
        warn!("page: dropped {peer}: cannot set a write timeout ({error})");
        return;
    }
    if let Some(certificates) = &site.tls
        && let Err(error) = stream.accept_tls(certificates, Instant::now() + site.timeout)
    {
        // Browsers open spare connections and drop them unused: only a failed handshake is
        // worth a warning.
        if error.kind() == io::ErrorKind::InvalidData {
            site.metrics.refused(Reason::Tls);
            warn!("page: dropped {peer}: {error}");
        } else {
            debug!("page: dropped {peer}: {error}");
        }
        return;
    }
    let mut received = Vec::new();
    let mut first = true;
    loop {
        let request = match next_request(stream, received, ticket, site.timeout) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(error) => {
                if let Some(refusal) = http::refusal_for(&error) {
                    site.metrics.refused(refusal.reason);
                    warn!("page: refused {peer} {}: {error}", refusal.status);
                    refusal.send_and_linger(stream);
                } else {
                    debug!("page: {peer}: {error}");
                }
                return;
            }
        };
        let client = Client::of(&request, peer, &site.trusted_proxies);
        // A proxy's connection takes the place of the client its first request names.
        if first && let Err(why) = ticket.count_as(client.addr.ip()) {
            accept::refuse(
                stream,
                client,
                why,
                &site.metrics,
                "page connections",
                "`max_page_connections`",
            );
            return;
        }
        first = false;
        if site.tls.is_some() && !stream.is_tls() {
            to_https(stream, client, &request, site);
            return;
        }
        let path = request.path();
        if path.starts_with(publish::PREFIX) || path.starts_with(carrier::PREFIX) {
            site.metrics.page_request();
            // A POST's connection stays open only on HTTP/1.1 and unless asked to close.
            let keep_alive = !site.shutdown.is_triggered()
                && !request.header_has_token("Connection", "close")
                && !request.is_http10();
            let served = match path.starts_with(carrier::PREFIX) {
                true => carrier::serve(stream, client, request, &site.carrying, keep_alive),
                false => publish::serve(stream, client, request, &site.publishing, keep_alive),
            };
            match served {
                Some(rest) => {
                    received = rest;
                    continue;
                }
                None => return,
            }
        }
        match respond(stream, client, &request, site) {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                debug!("page: {client}: cannot send the answer: {error}");
                return;
            }
        }
        received = request.into_rest();
    }
}

/// The next request head; `Ok(None)` when the client left or stayed silent instead of
/// beginning one. While nothing of it has arrived the connection counts as idle.
fn next_request(
    stream: &Stream,
    mut received: Vec<u8>,
    ticket: &Ticket,
    timeout: Duration,
) -> Result<Option<Request>, HeadError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(request) = http::parse_head(&mut received)? {
            return Ok(Some(request));
        }
        let idle = received.is_empty();
        ticket.set_idle(idle);
        let read = http::read_more(stream, &mut received, deadline);
        ticket.set_idle(false);
        match read {
            Ok(()) => {}
            Err(HeadError::TimedOut | HeadError::Closed | HeadError::Io(_)) if idle => {
                return Ok(None);
            }
            Err(error) => return Err(error),
        }
    }
}

/// Answer one request. `Ok(true)` when the connection stays open for the next.
/// A plain http:// request on the https port: send the browser to the same URL over https.
fn to_https(stream: &Stream, peer: Client, request: &Request, site: &Site) {
    let Some(host) = request.header("Host").map(str::trim) else {
        site.metrics.refused(Reason::Tls);
        warn!("page: refused {peer} 400: plain http on the https port, without a Host");
        Refusal::new(400, "this port speaks https: open the page with https://")
            .because(Reason::Tls)
            .send_and_linger(stream);
        return;
    };
    let location = format!("https://{host}{}", request.target());
    debug!("page: {peer}: plain http, sent to {}", escape(&location));
    let body = format!("this port speaks https: open {location}\n");
    let head = http::response_head(
        302,
        "text/plain; charset=utf-8",
        body.len() as u64,
        false,
        Some(&format!("Location: {location}")),
    );
    let mut out = stream;
    if out.write_all((head + &body).as_bytes()).is_ok() {
        let _ = stream.close_write(Instant::now() + site.timeout);
    }
}

fn respond(stream: &Stream, peer: Client, request: &Request, site: &Site) -> io::Result<bool> {
    let (method, target) = (request.method(), escape(request.target()));
    let checked =
        http::check_host(request, &site.allowed_hosts).and_then(|()| check_request(request));
    if let Err(refusal) = checked {
        site.metrics.refused(refusal.reason);
        warn!(
            "page: refused {peer} {}: {method} {target}: {}",
            refusal.status, refusal.message
        );
        refusal.send_and_linger(stream);
        return Ok(false);
    }
    let keep_alive = wants_keep_alive(request) && !site.shutdown.is_triggered();
    site.metrics.page_request();
    let metrics;
    let answer = match request.path() {
        "/healthz" if site.shutdown.is_triggered() => Answer::text(503, "shutting down\n"),
        "/healthz" => Answer::text(200, "ok\n"),
        "/metrics" => {
            metrics = site.metrics.render();
            Answer {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: Body::Text(&metrics),
            }
        }
        path => answer(path, site, peer.proxy.is_some(), accepts_deflate(request)),
    };
    debug!("page: {peer} {method} {target} -> {}", answer.status);
    let length = match &answer.body {
        Body::Text(text) => text.len() as u64,
        Body::Deflated(bytes) => bytes.len() as u64,
        Body::Inflated(bytes) => bytes.len() as u64,
        Body::File(_, length) => *length,
    };
    let encoding = matches!(answer.body, Body::Deflated(_))
        .then_some("Content-Encoding: deflate\r\nVary: Accept-Encoding");
    let head = http::response_head(
        answer.status,
        answer.content_type,
        length,
        keep_alive,
        encoding,
    );
    let mut out = stream;
    match answer.body {
        _ if method == "HEAD" => out.write_all(head.as_bytes())?,
        Body::Text(text) => out.write_all((head + text).as_bytes())?,
        Body::Deflated(bytes) => {
            out.write_all(head.as_bytes())?;
            out.write_all(bytes)?;
        }
        Body::Inflated(bytes) => {
            out.write_all(head.as_bytes())?;
            out.write_all(&bytes)?;
        }
        Body::File(file, length) => {
            out.write_all(head.as_bytes())?;
            // A file, straight to the socket (sendfile on Linux, when plain); a write that
            // makes no progress within the write timeout ends the connection.
            if stream.send_file(file, length)? != length {
                return Err(io::Error::other("the file shrank while being sent"));
            }
        }
    }
    Ok(keep_alive)
}

/// GET and HEAD without a body; anything else is refused before its body is read.
fn check_request(request: &Request) -> Result<(), Refusal> {
    if !matches!(request.method(), "GET" | "HEAD") {
        return Err(
            Refusal::new(405, "only GET and HEAD are served here").with_header("Allow: GET, HEAD")
        );
    }
    if request.header("Transfer-Encoding").is_some() {
        return Err(Refusal::new(
            413,
            "request bodies are not accepted here: send GET or HEAD without one",
        ));
    }
    for (name, value) in request.fields() {
        if !name.eq_ignore_ascii_case("Content-Length") {
            continue;
        }
        match value.trim().parse::<u64>() {
            Ok(0) => {}
            Ok(length) => {
                return Err(Refusal::new(
                    413,
                    format!(
                        "a request body ({length} bytes) is not accepted here: send GET or HEAD without one"
                    ),
                ));
            }
            Err(_) => return Err(Refusal::new(400, "malformed Content-Length header")),
        }
    }
    Ok(())
}

/// HTTP/1.1 keeps the connection unless asked to close; HTTP/1.0 only when asked to keep it.
fn wants_keep_alive(request: &Request) -> bool {
    if request.header_has_token("Connection", "close") {
        false
    } else if request.is_http10() {
        request.header_has_token("Connection", "keep-alive")
    } else {
        true
    }
}

struct Answer<'a> {
    status: u16,
    content_type: &'static str,
    body: Body<'a>,
}

enum Body<'a> {
    Text(&'a str),
    /// A file built into the binary, compressed as it is kept there.
    Deflated(&'static [u8]),
    /// A file built into the binary, inflated for a client that does not take `deflate`.
    Inflated(Vec<u8>),
    /// A file and the length it had when opened.
    File(File, u64),
}

/// Whether the client takes `Content-Encoding: deflate` (every browser does).
fn accepts_deflate(request: &Request) -> bool {
    request.header_has_token("Accept-Encoding", "deflate")
}

/// The file or `/config.json` `path` names; `proxied`: the request came through a trusted
/// proxy; `deflate`: the client takes a built-in file as it is kept.
fn answer<'a>(path: &str, site: &'a Site, proxied: bool, deflate: bool) -> Answer<'a> {
    if path == "/config.json" {
        return Answer {
            status: 200,
            content_type: "application/json",
            body: Body::Text(if proxied {
                &site.proxied_config_json
            } else {
                &site.config_json
            }),
        };
    }
    let Some(root) = &site.folder else {
        return match embedded::find(path) {
            Some((name, bytes)) => Answer {
                status: 200,
                content_type: content_type(Path::new(name)),
                body: if deflate {
                    Body::Deflated(bytes)
                } else {
                    match embedded::inflate(bytes) {
                        Some(inflated) => Body::Inflated(inflated),
                        None => return Answer::text(503, "server busy: try again later\n"),
                    }
                },
            },
            None => not_found(),
        };
    };
    let opened = resolve(root, path).and_then(|file| {
        let opened = File::open(&file).ok()?;
        let length = opened.metadata().ok()?.len();
        Some((opened, length, content_type(&file)))
    });
    match opened {
        Some((file, length, content_type)) => Answer {
            status: 200,
            content_type,
            body: Body::File(file, length),
        },
        None => not_found(),
    }
}

fn not_found() -> Answer<'static> {
    Answer::text(404, "not found\n")
}

impl<'a> Answer<'a> {
    fn text(status: u16, text: &'a str) -> Answer<'a> {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Body::Text(text),
        }
    }
}

/// The file a URL path names, if it is a regular file inside `root`.
pub(crate) fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = http::percent_decode(url_path)?;
    let relative = decoded.strip_prefix('/')?;
    // Only plain names: nothing starting with `.` (so no `..`, `.`, `.env`), no backslashes,
    // no NULs; empty segments are skipped.
    let mut candidate = root.to_path_buf();
    for segment in relative.split('/') {
        match segment {
            "" => {}
            name if name.starts_with('.') || name.contains(['\\', '\0']) => return None,
            name => candidate.push(name),
        }
    }
    if decoded.ends_with('/') || candidate == root {
        candidate.push("index.html");
    }
    // A symlink may point anywhere: judge where it really leads (inside, and not hidden).
    let real = candidate.canonicalize().ok()?;
    let inside = real.strip_prefix(root).ok()?;
    let hidden = inside
        .iter()
        .any(|part| part.as_encoded_bytes().starts_with(b"."));
    (!hidden && real.is_file()).then_some(real)
}

fn content_type(file: &Path) -> &'static str {
    let extension = file.extension().and_then(|e| e.to_str()).unwrap_or("");
    match extension.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "swf" => "application/x-shockwave-flash",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

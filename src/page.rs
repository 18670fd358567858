//! The page: static files from the `www` folder over tiny_http, plus `/config.json`.
//! GET and HEAD only; nothing outside the folder is ever served, whatever the path says
//! (`..`, percent-encoded or not, absolute paths, symlinks that lead out).

use crate::shutdown::ShutdownSignal;
use log::{debug, warn};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tiny_http::{Header, Method, Request, Response, ResponseBox, Server};

/// What every page worker needs.
pub struct Site {
    /// The canonical page folder.
    pub root: PathBuf,
    /// The body of `/config.json`.
    pub config_json: String,
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

/// Serve requests until shutdown. Several workers may share one server.
pub fn serve(server: Arc<Server>, site: Arc<Site>, shutdown: ShutdownSignal) {
    loop {
        let request = server.recv();
        if shutdown.is_triggered() {
            return;
        }
        match request {
            Ok(request) => respond(request, &site),
            Err(error) => warn!("page server: {error}"),
        }
    }
}

fn respond(request: Request, site: &Site) {
    let method = request.method().clone();
    let url = request.url().to_string();
    let response = match method {
        Method::Get | Method::Head => answer(&url, site),
        _ => {
            text(405, "only GET and HEAD are served here").with_header(header("Allow", "GET, HEAD"))
        }
    };
    debug!("page {method} {url} -> {}", response.status_code().0);
    let _ = request.respond(
        response
            .with_header(header("Cache-Control", "no-cache"))
            .with_header(header("X-Content-Type-Options", "nosniff")),
    );
}

fn answer(url: &str, site: &Site) -> ResponseBox {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    if path == "/config.json" {
        return Response::from_string(site.config_json.clone())
            .with_header(header("Content-Type", "application/json"))
            .boxed();
    }
    let Some(file) = resolve(&site.root, path) else {
        return text(404, "not found");
    };
    match File::open(&file) {
        Ok(opened) => Response::from_file(opened)
            .with_header(header("Content-Type", content_type(&file)))
            .boxed(),
        Err(_) => text(404, "not found"),
    }
}

/// The file a URL path names, if it is a regular file inside `root`.
fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(url_path)?;
    let relative = decoded.strip_prefix('/')?;
    // Only plain names: no `..`, no `.`, no empty inner segments, no backslashes, no NULs.
    let mut candidate = root.to_path_buf();
    for segment in relative.split('/') {
        match segment {
            "" => {}
            "." | ".." => return None,
            name if name.contains(['\\', '\0']) => return None,
            name => candidate.push(name),
        }
    }
    if decoded.ends_with('/') || candidate == root {
        candidate.push("index.html");
    }
    // A symlink may point anywhere: judge where it really leads.
    let real = candidate.canonicalize().ok()?;
    (real.starts_with(root) && real.is_file()).then_some(real)
}

/// `%XX` decoding; `None` for a malformed escape or a result that is not UTF-8.
fn percent_decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
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

fn text(status: u16, body: &str) -> ResponseBox {
    Response::from_string(format!("{body}\n"))
        .with_status_code(status)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
        .boxed()
}

fn header(name: &str, value: &str) -> Header {
    // Both parts are our own ASCII literals, so this cannot fail.
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("ASCII header")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_rejects_broken_escapes() {
        assert_eq!(percent_decode("/a%2e%2E/b").as_deref(), Some("/a../b"));
        assert_eq!(percent_decode("/%zz"), None);
        assert_eq!(percent_decode("/%4"), None);
        assert_eq!(percent_decode("/%ff"), None);
    }
}

//! The page server: files, content types, methods, /config.json, and no way out of the folder.
mod common;

use common::*;
use std::fs;
use std::path::PathBuf;
use wsecho::Config;

/// A page folder with one file of each served type, beside a secret that must stay unseen.
fn site(name: &str) -> PathBuf {
    let base = scratch(&format!("page-{name}"));
    let www = base.join("www");
    fs::create_dir_all(www.join("sub")).unwrap();
    fs::write(base.join("secret.txt"), "TOP SECRET").unwrap();
    fs::write(www.join("index.html"), "<h1>home</h1>").unwrap();
    fs::write(www.join("sub/index.html"), "<h1>sub</h1>").unwrap();
    for file in [
        "a.js", "a.css", "a.json", "a.svg", "a.png", "a.ico", "a.swf",
    ] {
        fs::write(www.join(file), file).unwrap();
    }
    std::os::unix::fs::symlink(base.join("secret.txt"), www.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink("a.js", www.join("alias.js")).unwrap();
    www
}

fn get(server: &wsecho::Server, method: &str, path: &str) -> (u16, String, String) {
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let response = String::from_utf8_lossy(&raw_exchange(
        server.http_addr().unwrap(),
        request.as_bytes(),
    ))
    .into_owned();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (
        status_of(head.as_bytes()),
        head.to_ascii_lowercase(),
        body.to_string(),
    )
}

fn serve(name: &str) -> wsecho::Server {
    start(Config {
        www: Some(site(name)),
        ..config()
    })
}

#[test]
fn root_serves_index_html() {
    let server = serve("root");
    let (status, head, body) = get(&server, "GET", "/");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html; charset=utf-8"));
    assert_eq!(body, "<h1>home</h1>");
    assert_eq!(get(&server, "GET", "/sub/").2, "<h1>sub</h1>");
    assert_eq!(get(&server, "GET", "/index.html?v=2").2, "<h1>home</h1>");
    server.shutdown();
}

#[test]
fn each_file_type_gets_its_content_type() {
    let server = serve("types");
    for (file, expected) in [
        ("a.js", "text/javascript"),
        ("a.css", "text/css"),
        ("a.json", "application/json"),
        ("a.svg", "image/svg+xml"),
        ("a.png", "image/png"),
        ("a.ico", "image/x-icon"),
        ("a.swf", "application/x-shockwave-flash"),
    ] {
        let (status, head, body) = get(&server, "GET", &format!("/{file}"));
        assert_eq!(status, 200, "{file}");
        assert!(
            head.contains(&format!("content-type: {expected}")),
            "{file}: {head}"
        );
        assert_eq!(body, file);
    }
    server.shutdown();
}

#[test]
fn head_has_no_body_and_other_methods_get_405() {
    let server = serve("methods");
    let (status, head, body) = get(&server, "HEAD", "/a.js");
    assert_eq!(status, 200);
    assert!(head.contains("content-length: 4"), "{head}");
    assert!(body.is_empty());
    let (status, head, _) = get(&server, "POST", "/a.js");
    assert_eq!(status, 405);
    assert!(head.contains("allow: get, head"));
    assert_eq!(get(&server, "DELETE", "/a.js").0, 405);
    server.shutdown();
}

#[test]
fn missing_files_get_404() {
    let server = serve("missing");
    assert_eq!(get(&server, "GET", "/nope.html").0, 404);
    assert_eq!(get(&server, "GET", "/sub/nope/").0, 404);
    server.shutdown();
}

#[test]
fn nothing_outside_the_folder_is_served() {
    let server = serve("traversal");
    for path in [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/..%5csecret.txt",
        "//etc/passwd",
        "/%2Fetc%2Fpasswd",
        "/leak.txt",
        "/a.js%00.html",
        "/%zz",
    ] {
        let (status, _, body) = get(&server, "GET", path);
        assert!(
            !body.contains("TOP SECRET") && !body.contains("root:"),
            "{path} leaked"
        );
        assert_eq!(status, 404, "{path}");
    }
    // A symlink that stays inside the folder is fine.
    assert_eq!(get(&server, "GET", "/alias.js").2, "a.js");
    server.shutdown();
}

#[test]
fn config_json_tells_the_page_its_ports_paths_and_whether_flash_can_load() {
    let www = site("config");
    let server = start(Config {
        policy_port: Some(0),
        www: Some(www.clone()),
        ..config()
    });
    let (status, head, body) = get(&server, "GET", "/config.json");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"));
    let expected = format!(
        "{{\"wsPort\":{},\"wsPath\":\"/echo\",\"chatPath\":\"/chat\",\"policyPort\":{},\"flashFallback\":false,\"paths\":[\"/echo\",\"/chat\"]}}",
        server.ws_addr().port(),
        server.policy_addr().unwrap().port()
    );
    assert_eq!(body.trim(), expected);
    server.shutdown();

    fs::create_dir_all(www.join("vendor")).unwrap();
    for file in ["web_socket.js", "swfobject.js", "WebSocketMain.swf"] {
        fs::write(www.join("vendor").join(file), file).unwrap();
    }
    let server = start(Config {
        www: Some(www),
        ..config()
    });
    let body = get(&server, "GET", "/config.json").2;
    assert!(
        body.contains("\"policyPort\":null,\"flashFallback\":true"),
        "{body}"
    );
    server.shutdown();
}

#[test]
fn the_shipped_page_is_served() {
    let server = start(config());
    let (status, _, body) = get(&server, "GET", "/");
    assert_eq!(status, 200);
    assert!(body.contains("<script src=\"app.js\"></script>"));
    for asset in ["/app.js", "/style.css"] {
        assert_eq!(get(&server, "GET", asset).0, 200, "{asset}");
    }
    server.shutdown();
}

#[test]
fn healthz_answers_ok_and_metrics_speak_the_prometheus_format() {
    let server = serve("health");
    let (status, _, body) = get(&server, "GET", "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, head, body) = get(&server, "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(
        body.contains("wsecho_open_connections{route=\"/echo\"} 0\n"),
        "{body}"
    );
    // Counted before the answer: this request and the two before it.
    let (_, _, body) = get(&server, "GET", "/metrics");
    assert!(body.contains("wsecho_page_requests_total 3\n"), "{body}");
    server.shutdown();
}

#[test]
fn an_app_without_a_page_port_serves_its_websockets_alone() {
    let server = start(Config {
        http: None,
        ..config()
    });
    assert_eq!(server.http_addr(), None);
    let mut client = connect(&server);
    client
        .send(tungstenite::Message::text("still here"))
        .unwrap();
    assert_eq!(
        next_message(&mut client),
        tungstenite::Message::text("still here")
    );
    let summary = server.shutdown();
    assert_eq!(summary.stragglers, 0);
}

#[test]
fn the_built_in_page_goes_to_a_browser_compressed_and_to_other_clients_as_it_is() {
    let server = start(Config {
        www: None,
        ..config()
    });
    let on_disk = fs::read(www().join("style.css")).unwrap();
    let plain = raw_exchange(
        server.http_addr().unwrap(),
        b"GET /style.css HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    let split = plain.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(!String::from_utf8_lossy(&plain[..split]).contains("Content-Encoding"));
    assert_eq!(&plain[split + 4..], on_disk.as_slice());
    let browser = raw_exchange(
        server.http_addr().unwrap(),
        b"GET /style.css HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip, deflate, br\r\n\
          Connection: close\r\n\r\n",
    );
    let split = browser.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&browser[..split]).to_string();
    assert!(
        head.contains("Content-Encoding: deflate\r\nVary: Accept-Encoding"),
        "{head}"
    );
    let body = &browser[split + 4..];
    assert!(
        body.len() * 2 < on_disk.len(),
        "sent compressed: {} bytes",
        body.len()
    );
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(body), &mut inflated).unwrap();
    assert_eq!(inflated, on_disk);
    server.shutdown();
}

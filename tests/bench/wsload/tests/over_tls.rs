//! wsload over wss:// (`--ca`): each mode the bench runs over TLS completes against a small wss
//! echo made here (rustls in front of tungstenite, a thread per connection), with a
//! certificate made now by `openssl`. Figures are not judged, only that each mode runs.

mod common;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn certificate() -> (PathBuf, PathBuf) {
    // Under cargo's folder for test scratch (target/tmp), not the system's temp folder.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wsload-tls");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args([
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command (Debian's openssl package) makes the test certificate");
    assert!(made.status.success(), "{made:?}");
    (cert, key)
}

/// A wss echo on a loopback port: every text or binary message straight back.
fn wss_echo(cert: &PathBuf, key: &PathBuf) -> u16 {
    let chain = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || serve(tcp, config));
        }
    });
    port
}

fn serve(tcp: TcpStream, config: Arc<ServerConfig>) {
    let _ = tcp.set_nodelay(true);
    let Ok(session) = rustls::ServerConnection::new(config) else {
        return;
    };
    let Ok(mut ws) = tungstenite::accept(rustls::StreamOwned::new(session, tcp)) else {
        return;
    };
    while let Ok(message) = ws.read() {
        if (message.is_text() || message.is_binary()) && ws.send(message).is_err() {
            return;
        }
    }
}

fn wsload(mode: &str, url: &str, ca: &Path, extra: &[&str]) -> HashMap<String, f64> {
    let ca = ca.to_str().unwrap();
    common::wsload(mode, url, &[&["--ca", ca], extra].concat())
}

#[test]
fn every_mode_the_bench_runs_over_wss_completes() {
    let (cert, key) = certificate();
    let url = format!("wss://localhost:{}/echo", wss_echo(&cert, &key));

    let idle = wsload("idle", &url, &cert, &["--connections", "20"]);
    assert_eq!(idle["connections"], 20.0, "{idle:?}");

    let rtt = wsload("rtt", &url, &cert, &[]);
    assert!(
        rtt["messages"] > 100.0 && rtt["p99_us"] >= rtt["p50_us"],
        "{rtt:?}"
    );

    // 64 KiB messages, 16 in flight, a reading and a writing thread, each with its own half of
    // the TLS session.
    let stream = wsload("stream", &url, &cert, &[]);
    assert!(
        stream["messages"] > 16.0 && stream["mb_per_s"] > 0.0,
        "{stream:?}"
    );

    // Many connections under epoll, non-blocking reads through TLS.
    let conc = wsload("conc", &url, &cert, &["--connections", "20"]);
    assert!(conc["msgs_per_s"] > 100.0, "{conc:?}");

    let handshake = wsload("handshake", &url, &cert, &[]);
    assert!(handshake["handshakes"] > 5.0, "{handshake:?}");
}

#[test]
fn a_wss_url_without_a_certificate_to_trust_is_refused_with_a_hint() {
    let output = Command::new(env!("CARGO_BIN_EXE_wsload"))
        .args(["rtt", "wss://localhost:1/echo"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("--ca"), "{said}");
}

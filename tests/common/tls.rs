//! TLS clients for the tests of the `tls` build: certificates made by the `openssl` command,
//! rustls connections that trust whatever the server shows, and wss:// clients on them.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tungstenite::WebSocket;
use wsecho::TlsFiles;

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;
pub type WssClient = WebSocket<TlsStream>;

/// A fresh folder for one test's files (see `common::scratch`).
pub fn scratch(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    super::scratch(&format!("tls-{name}-{n}"))
}

/// A self-signed certificate for localhost and its key, made now by `openssl`.
pub fn make_pair(dir: &Path, name: &str) -> TlsFiles {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN={name}")])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command (Debian's openssl package) makes the test certificate");
    assert!(made.status.success(), "{made:?}");
    TlsFiles { cert, key }
}

pub fn der_of(files: &TlsFiles) -> Vec<u8> {
    CertificateDer::from_pem_file(&files.cert)
        .unwrap()
        .as_ref()
        .to_vec()
}

/// Trusts whatever certificate the server shows: the tests check which one it was.
#[derive(Debug)]
pub struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connection to `addr`, handshake done.
pub fn tls_to(addr: SocketAddr) -> TlsStream {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let connection = ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = super::tcp(addr);
    let mut stream = StreamOwned::new(connection, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("TLS handshake");
    }
    stream
}

/// The certificate the server showed.
pub fn shown(stream: &TlsStream) -> Vec<u8> {
    stream.conn.peer_certificates().unwrap()[0]
        .as_ref()
        .to_vec()
}

/// A wss:// client on `path`.
pub fn wss(addr: SocketAddr, path: &str) -> WssClient {
    let url = format!("wss://localhost:{}{path}", addr.port());
    let config = tungstenite::protocol::WebSocketConfig::default().max_message_size(None);
    match tungstenite::client::client_with_config(url.as_str(), tls_to(addr), Some(config)) {
        Ok((client, _response)) => client,
        Err(error) => panic!("wss upgrade: {error}"),
    }
}

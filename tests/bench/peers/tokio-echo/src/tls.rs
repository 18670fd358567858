//! wss for the tokio peers: `PORT CERT KEY` on the command line makes each accepted
//! connection a rustls server session (ring, as wsecho's `tls` build) before the upgrade.

use std::sync::Arc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The acceptor for `CERT KEY` (the 2nd and 3rd arguments), if given.
pub fn acceptor_from_args() -> Option<TlsAcceptor> {
    let cert = std::env::args().nth(2)?;
    let key = std::env::args().nth(3).expect("usage: PORT [CERT KEY]");
    let chain = CertificateDer::pem_file_iter(&cert)
        .expect("read the certificate")
        .collect::<Result<Vec<_>, _>>()
        .expect("parse the certificate");
    let key = PrivateKeyDer::from_pem_file(&key).expect("read the key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the certificate and key");
    Some(TlsAcceptor::from(Arc::new(config)))
}

//! A connection to the server, plain (ws://) or TLS (wss://, rustls with ring, as wsecho's `tls`
//! build), read and written the same way by every mode.
//!
//! A TLS connection keeps its rustls session behind a lock and its socket apart, so that a clone
//! can read while another writes (the stream mode's two threads) and so that a non-blocking
//! socket works under epoll: a read decrypts whatever the socket gave and keeps the plaintext it
//! did not hand out yet (`has_buffered`: read again before waiting on the socket); a write
//! encrypts, then writes the records whole, waiting for room if the socket is non-blocking.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What a wss:// connection needs: the trusted certificate (`--ca`) and the server's name.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl TlsClient {
    /// Trust the certificates in the PEM file `ca`, for a server called `host`.
    pub fn new(ca: &str, host: &str) -> Result<TlsClient, String> {
        let mut roots = RootCertStore::empty();
        let certificates = CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("--ca {ca}: {e}"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("--ca {ca}: {e}"))?;
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|e| format!("--ca {ca}: {e}"))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
        Ok(TlsClient {
            config: Arc::new(config),
            name,
        })
    }
}

pub struct Conn {
    tcp: TcpStream,
    tls: Option<Arc<Mutex<Session>>>,
    /// This clone's encrypted records on their way out, kept between writes so that a 64 KiB
    /// message costs no allocation (the client is this mode's bottleneck; malloc's trimming
    /// and regrowing the heap for each message cost it a tenth of its time).
    records: Vec<u8>,
}

struct Session {
    tls: ClientConnection,
    /// Decrypted, not yet read.
    plain: Vec<u8>,
    taken: usize,
}

impl Conn {
    /// Connect (blocking, TCP_NODELAY) and, for wss, finish the TLS handshake.
    pub fn connect(addr: SocketAddr, tls: Option<&TlsClient>) -> io::Result<Conn> {
        let mut tcp = TcpStream::connect(addr)?;
        tcp.set_nodelay(true)?;
        let Some(client) = tls else {
            return Ok(Conn {
                tcp,
                tls: None,
                records: Vec::new(),
            });
        };
        let mut session = ClientConnection::new(client.config.clone(), client.name.clone())
            .map_err(io::Error::other)?;
        // The stream mode writes 64 KiB messages, 16 ahead: rustls must take each whole.
        session.set_buffer_limit(None);
        while session.is_handshaking() {
            session.complete_io(&mut tcp)?;
        }
        let session = Session {
            tls: session,
            plain: Vec::new(),
            taken: 0,
        };
        Ok(Conn {
            tcp,
            tls: Some(Arc::new(Mutex::new(session))),
            records: Vec::new(),
        })
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The same connection, to read on one thread while another writes.
    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(Conn {
            tcp: self.tcp.try_clone()?,
            tls: self.tls.clone(),
            records: Vec::new(),
        })
    }

    /// Plaintext already decrypted and waiting: read it before waiting on the socket.
    pub fn has_buffered(&self) -> bool {
        self.tls.as_ref().is_some_and(|session| {
            let session = lock(session);
            session.taken < session.plain.len()
        })
    }
}

fn lock(session: &Mutex<Session>) -> MutexGuard<'_, Session> {
    session.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Session {
    /// Decrypt `raw` (as much as it takes, in rounds), keeping the plaintext.
    fn absorb(&mut self, mut raw: &[u8]) -> io::Result<()> {
        if self.taken == self.plain.len() {
            self.plain.clear();
            self.taken = 0;
        }
        while !raw.is_empty() {
            self.tls.read_tls(&mut raw)?;
            self.tls
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            // All the plaintext there is (read_to_end keeps what it read when it stops at
            // WouldBlock, and fills spare room without zeroing it first).
            match self.tls.reader().read_to_end(&mut self.plain) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(session) = &self.tls else {
            return self.tcp.read(buf);
        };
        loop {
            {
                let mut session = lock(session);
                let waiting = session.plain.len() - session.taken;
                if waiting > 0 {
                    let n = waiting.min(buf.len());
                    let at = session.taken;
                    buf[..n].copy_from_slice(&session.plain[at..at + n]);
                    session.taken += n;
                    return Ok(n);
                }
            }
            let mut raw = [0u8; 32 * 1024];
            let n = self.tcp.read(&mut raw)?;
            if n == 0 {
                return Ok(0);
            }
            lock(session).absorb(&raw[..n])?;
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(session) = &self.tls else {
            return self.tcp.write(buf);
        };
        self.records.clear();
        {
            let mut session = lock(session);
            session.tls.writer().write_all(buf)?;
            while session.tls.wants_write() {
                session.tls.write_tls(&mut self.records)?;
            }
        }
        write_whole(&self.tcp, &self.records)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Write all of `bytes`, waiting for room when the socket is non-blocking (a TLS record must
/// not be cut short).
fn write_whole(mut tcp: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match tcp.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_writable(tcp)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn wait_writable(tcp: &TcpStream) -> io::Result<()> {
    let mut poll = libc::pollfd {
        fd: tcp.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let timeout = Duration::from_secs(10).as_millis() as i32;
    // SAFETY: one pollfd we own, for the duration of the call.
    match unsafe { libc::poll(&mut poll, 1, timeout) } {
        0 => Err(io::Error::other("the server took nothing for 10 s")),
        n if n < 0 => Err(io::Error::last_os_error()),
        _ => Ok(()),
    }
}

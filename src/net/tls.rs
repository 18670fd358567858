//! (feature `tls`) TLS on the page and WebSocket ports, with rustls: the certificate and key
//! (PEM files) loaded at start and again on SIGHUP, and each connection's session.
//!
//! A reload that fails keeps the pair in use; a good one serves every handshake after it,
//! while connections already open keep the session they began with. A session is shared
//! between the connection's thread and its `Sender`s behind a mutex: every byte in either
//! direction passes through it, so records go out in the order their bytes were given.

use crate::net::threads;
use crate::net::wake;
use crate::net::wire::Wire;
use rustls::ServerConnection;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerConfig;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Most encrypted bytes a session holds for a client that has not taken them yet (rustls'
/// own default); past it, `send_now` takes nothing, like a full socket.
const PENDING_LIMIT: usize = 64 * 1024;

/// A read that waits longer than this gives back the stack its TLS work touched (see
/// `Session::read`): a connection that goes quiet costs about what a plain one does.
const QUIET: Duration = Duration::from_millis(100);

/// The certificate and key both ports serve, reloadable.
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    config: RwLock<Arc<ServerConfig>>,
}

impl Certificates {
    /// Load the PEM certificate chain in `cert` and the private key in `key`; the error is one
    /// line saying which file is wrong and how.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Certificates>, String> {
        let config = server_config(cert, key)?;
        Ok(Arc::new(Certificates {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            config: RwLock::new(config),
        }))
    }

    /// Read both files again; on any error the pair in use stays.
    pub fn reload(&self) -> Result<(), String> {
        let config = server_config(&self.cert, &self.key)?;
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    /// The files it reads.
    pub fn files(&self) -> crate::ops::config::TlsFiles {
        crate::ops::config::TlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }

    /// A session for one new connection, with the pair loaded last.
    pub fn session(&self) -> io::Result<Session> {
        let config = Arc::clone(&self.config.read().unwrap_or_else(PoisonError::into_inner));
        let mut tls = ServerConnection::new(config).map_err(io::Error::other)?;
        tls.set_buffer_limit(Some(PENDING_LIMIT));
        Ok(Session(Mutex::new(tls)))
    }
}

fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| {
            format!(
                "cannot read the TLS certificate {}: {error}; give `tls.cert` a PEM file",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "{} holds no certificate (no -----BEGIN CERTIFICATE----- block); give `tls.cert` \
             the PEM certificate chain",
            cert.display()
        ));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|error| {
        format!(
            "cannot read a private key from {}: {error}; give `tls.key` a PEM key \
             (PKCS#8, or BEGIN RSA/EC PRIVATE KEY)",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("cannot set up TLS: {error}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|error| {
            format!(
                "the key in {} does not go with the certificate in {}: {error}; give the \
                 certificate's own key",
                key.display(),
                cert.display()
            )
        })?;
    Ok(Arc::new(config))
}

/// One connection's TLS session.
pub struct Session(Mutex<ServerConnection>);

impl Session {
    fn lock(&self) -> MutexGuard<'_, ServerConnection> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Complete the handshake by `deadline`, leaving whatever the client sent after it unread.
    pub fn handshake(&self, wire: &Wire, deadline: Instant) -> io::Result<()> {
        let failed = |error: io::Error| match error.kind() {
            io::ErrorKind::WouldBlock => io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake not completed in time",
            ),
            io::ErrorKind::UnexpectedEof => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the client hung up during the TLS handshake",
            ),
            kind => io::Error::new(
                kind,
                format!("TLS handshake failed: {error} (wsecho speaks TLS 1.2 and 1.3)"),
            ),
        };
        loop {
            let (readable, writable) = {
                let mut tls = self.lock();
                write_out(&mut tls, wire).map_err(failed)?;
                if !tls.is_handshaking() && !tls.wants_write() {
                    return Ok(());
                }
                if tls.is_handshaking() {
                    match take_in(&mut tls, wire) {
                        Ok(0) => return Err(failed(io::ErrorKind::UnexpectedEof.into())),
                        Ok(_) => continue,
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                        Err(error) => return Err(failed(error)),
                    }
                }
                (tls.is_handshaking(), tls.wants_write())
            };
            wait(wire, readable, writable, Some(deadline)).map_err(failed)?;
        }
    }

    /// Decrypted bytes the client sent, reading what the socket holds without waiting;
    /// `WouldBlock` when there are none.
    pub fn recv_now(&self, wire: &Wire, buf: &mut [u8]) -> io::Result<usize> {
        recv_locked(&mut self.lock(), wire, buf)
    }

    /// Take what of `bufs` the session has room for and send what the socket takes now.
    pub fn send_now(&self, wire: &Wire, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut tls = self.lock();
        write_out(&mut tls, wire)?;
        let taken = tls.writer().write_vectored(bufs)?;
        write_out(&mut tls, wire)?;
        if taken == 0 && bufs.iter().any(|buf| !buf.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    pub fn flush_now(&self, wire: &Wire) -> io::Result<bool> {
        write_out(&mut self.lock(), wire)
    }

    pub fn has_pending_output(&self) -> bool {
        self.lock().wants_write()
    }

    /// Blocking read, within the socket's read timeout (`WouldBlock` after it, like the socket).
    /// The timeout is asked of the socket (a system call) only once the read has to wait; a
    /// wait past `QUIET` gives back the stack TLS work touched (`threads::shed_stack`).
    pub fn read(&self, wire: &Wire, buf: &mut [u8]) -> io::Result<usize> {
        let mut deadline = None;
        let mut quiet = true;
        loop {
            let writable = {
                let mut tls = self.lock();
                match recv_locked(&mut tls, wire, buf) {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => tls.wants_write(),
                    done => return done,
                }
            };
            let deadline = wake::deadline_once(&mut deadline, || wire.read_timeout())?;
            let soon = Instant::now() + QUIET;
            if quiet && deadline.is_none_or(|deadline| deadline > soon) {
                match wait(wire, true, writable, Some(soon)) {
                    Ok(()) => continue,
                    // Quiet: shed right before the long wait (a read first would go deep again).
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        quiet = false;
                        threads::shed_stack();
                    }
                    Err(error) => return Err(error),
                }
            }
            wait(wire, true, writable, deadline)?;
        }
    }

    /// Blocking write, within the socket's write timeout: returns once what it took is on the
    /// socket, as a plain socket's write does. (The timeout is asked of the socket only if the
    /// write has to wait.)
    pub fn write(&self, wire: &Wire, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut deadline = None;
        let taken = loop {
            match self.send_now(wire, bufs) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    let until = wake::deadline_once(&mut deadline, || wire.write_timeout())?;
                    wait(wire, false, true, until)?
                }
                done => break done?,
            }
        };
        if !self.flush_now(wire)? {
            let until = wake::deadline_once(&mut deadline, || wire.write_timeout())?;
            self.flush_until(wire, until)?;
        }
        Ok(taken)
    }

    /// Blocking flush, within the socket's write timeout.
    pub fn flush(&self, wire: &Wire) -> io::Result<()> {
        self.flush_until(wire, deadline_after(wire.write_timeout()?))
    }

    /// Say goodbye (close_notify) and get the last bytes out by `deadline`.
    pub fn close(&self, wire: &Wire, deadline: Instant) -> io::Result<()> {
        self.lock().send_close_notify();
        self.flush_until(wire, Some(deadline))
    }

    fn flush_until(&self, wire: &Wire, deadline: Option<Instant>) -> io::Result<()> {
        while !self.flush_now(wire)? {
            wait(wire, false, true, deadline)?;
        }
        Ok(())
    }
}

/// Under the session's lock: decrypted bytes into `buf`, first reading (without waiting)
/// what the socket holds when none are left. `Ok(0)` at the end, with or without the client's
/// close_notify (WebSocket has its own close handshake).
fn recv_locked(tls: &mut ServerConnection, wire: &Wire, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match tls.reader().read(buf) {
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            done => return done,
        }
        take_in(tls, wire)?;
    }
}

/// Read what the socket holds (without waiting) into the session and decrypt it, answering
/// whatever TLS itself needs answered. `Ok(0)` when the client hung up.
fn take_in(tls: &mut ServerConnection, wire: &Wire) -> io::Result<usize> {
    let n = tls.read_tls(&mut Now(wire))?;
    let processed = tls.process_new_packets();
    // Handshake replies, or the alert that tells the client why it failed.
    let written = write_out(tls, wire);
    if let Err(error) = processed {
        return Err(io::Error::new(io::ErrorKind::InvalidData, error));
    }
    written?;
    Ok(n)
}

/// Write what the session holds encrypted, without waiting; true when nothing is left.
fn write_out(tls: &mut ServerConnection, wire: &Wire) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(&mut Now(wire)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(true)
}

/// The socket as rustls reads and writes it: never waiting.
struct Now<'a>(&'a Wire);

impl Read for Now<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        crate::net::wire::recv_now(self.0, buf)
    }
}

impl Write for Now<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        crate::net::wire::send_now(self.0, &[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        crate::net::wire::send_now(self.0, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|timeout| Instant::now() + timeout)
}

/// Wait for the socket until `deadline` (`None`: for ever); `WouldBlock` when it passes, as a
/// socket timeout reports.
fn wait(wire: &Wire, readable: bool, writable: bool, deadline: Option<Instant>) -> io::Result<()> {
    let timeout = wake::time_left(deadline)?;
    match wake::wait(wire.as_raw_fd(), readable, writable, &[], timeout)? {
        wake::Woken::TimedOut => Err(io::ErrorKind::WouldBlock.into()),
        wake::Woken::Ready | wake::Woken::Nudged | wake::Woken::Watched(_) => Ok(()),
    }
}

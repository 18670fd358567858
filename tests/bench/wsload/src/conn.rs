//! A connection to the server, plain (ws://) or TLS (wss://, rustls with ring, as wsecho's `tls`
//! build), read and written the same way by every mode.
//!
//! A TLS connection does its handshake with rustls (TLS 1.3), then takes the session's keys and
//! keeps the record layer itself, beside the socket: a read decrypts whatever the socket gave in
//! place and keeps the plaintext it did not hand out yet (`has_buffered`: read again before
//! waiting on the socket); `seal_into` encrypts a message into records for the caller to write
//! when the socket has room (the stream mode, on one non-blocking thread); a write encrypts,
//! then writes the records whole, waiting for room if the socket is non-blocking.

use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, Iv, MessageDecrypter, MessageEncrypter, OutboundPlainMessage,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, ConnectionTrafficSecrets, ContentType, ProtocolVersion,
    RootCertStore, SupportedCipherSuite,
};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
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
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Each direction's keys go to its own record layer once the handshake is done.
        config.enable_secret_extraction = true;
        let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
        Ok(TlsClient {
            config: Arc::new(config),
            name,
        })
    }
}

pub struct Conn {
    tcp: TcpStream,
    tls: Option<Records>,
    /// This clone's encrypted records on their way out, kept between writes so that a 64 KiB
    /// message needs no buffer of its own (the client is this mode's bottleneck; malloc's
    /// trimming and regrowing the heap for each message cost it a tenth of its time). Each
    /// record still comes from rustls's encrypter in an allocation of its own, 16 KiB at most.
    records: Vec<u8>,
}

/// The record layer of a TLS 1.3 session once its handshake is done, each direction on its own.
struct Records {
    inbound: Inbound,
    outbound: Outbound,
}

struct Inbound {
    open: Box<dyn MessageDecrypter>,
    seq: u64,
    /// Encrypted bytes read (`..held`), not yet a whole record; allocated at the first read.
    raw: Vec<u8>,
    held: usize,
    /// Decrypted, not yet read.
    plain: Vec<u8>,
    taken: usize,
    /// The server's close_notify came.
    closed: bool,
}

struct Outbound {
    seal: Box<dyn MessageEncrypter>,
    seq: u64,
}

/// The most plaintext one TLS record carries.
const RECORD: usize = 16 * 1024;
/// A record's header: type, version, length.
const HEADER: usize = 5;
/// A connection's buffer for encrypted bytes: one read of the socket, and room for the start
/// of a record (at most 16 KiB and its overhead) left from the read before.
const READ: usize = 48 * 1024;

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
        while session.is_handshaking() {
            session.complete_io(&mut tcp)?;
        }
        Ok(Conn {
            tcp,
            tls: Some(Records::split(session)?),
            records: Vec::new(),
        })
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Plaintext already decrypted and waiting: read it before waiting on the socket.
    pub fn has_buffered(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|records| records.inbound.taken < records.inbound.plain.len())
    }

    /// Append `message` to `out` as it goes on the wire: as it is (ws), or sealed into records
    /// (wss), for the caller to write as the socket takes it.
    pub fn seal_into(&mut self, message: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        match &mut self.tls {
            Some(records) => records.outbound.seal_into(message, out),
            None => {
                out.extend_from_slice(message);
                Ok(())
            }
        }
    }
}

impl Outbound {
    /// Append `message` to `out` sealed into records of at most `RECORD` bytes each.
    fn seal_into(&mut self, message: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        for chunk in message.chunks(RECORD) {
            let plain = OutboundPlainMessage {
                typ: ContentType::ApplicationData,
                version: ProtocolVersion::TLSv1_2,
                payload: chunk.into(),
            };
            let sealed = self.seal.encrypt(plain, self.seq).map_err(tls_error)?;
            self.seq += 1;
            out.extend_from_slice(&sealed.encode());
        }
        Ok(())
    }
}

fn tls_error(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

impl Records {
    /// Take the keys of a finished TLS 1.3 handshake, one per direction.
    fn split(session: ClientConnection) -> io::Result<Records> {
        let Some(SupportedCipherSuite::Tls13(suite)) = session.negotiated_cipher_suite() else {
            return Err(io::Error::other("the server did not speak TLS 1.3"));
        };
        let secrets = session.dangerous_extract_secrets().map_err(tls_error)?;
        let aead = suite.aead_alg;
        let (tx_key, tx_iv) = key_and_iv(secrets.tx.1)?;
        let (rx_key, rx_iv) = key_and_iv(secrets.rx.1)?;
        Ok(Records {
            inbound: Inbound {
                open: aead.decrypter(rx_key, rx_iv),
                seq: secrets.rx.0,
                raw: Vec::new(),
                held: 0,
                plain: Vec::new(),
                taken: 0,
                closed: false,
            },
            outbound: Outbound {
                seal: aead.encrypter(tx_key, tx_iv),
                seq: secrets.tx.0,
            },
        })
    }
}

fn key_and_iv(secrets: ConnectionTrafficSecrets) -> io::Result<(AeadKey, Iv)> {
    match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv }
        | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => Ok((key, iv)),
        _ => Err(io::Error::other("a cipher this client does not know")),
    }
}

impl Inbound {
    /// Read what the socket gives (waiting as the socket does) and decrypt every whole record
    /// in it. `Ok(false)` at the end of the stream.
    fn fill(&mut self, mut tcp: &TcpStream) -> io::Result<bool> {
        if self.taken == self.plain.len() {
            self.plain.clear();
            self.taken = 0;
        }
        if self.raw.is_empty() {
            // Zeroed once: a read into spare room would need unsafe code.
            self.raw = vec![0; READ];
        }
        let n = tcp.read(&mut self.raw[self.held..])?;
        if n == 0 {
            return Ok(false);
        }
        self.held += n;
        let mut at = 0;
        while self.held - at >= HEADER {
            let len = u16::from_be_bytes([self.raw[at + 3], self.raw[at + 4]]) as usize;
            let end = at + HEADER + len;
            if end > self.held {
                break;
            }
            let typ = ContentType::from(self.raw[at]);
            let record = InboundOpaqueMessage::new(
                typ,
                ProtocolVersion::TLSv1_2,
                &mut self.raw[at + HEADER..end],
            );
            let message = self.open.decrypt(record, self.seq).map_err(tls_error)?;
            self.seq += 1;
            match message.typ {
                ContentType::ApplicationData => self.plain.extend_from_slice(message.payload),
                // The session tickets a server sends after the handshake: not used.
                ContentType::Handshake if message.payload.first() != Some(&KEY_UPDATE) => {}
                ContentType::Alert if message.payload == [1, 0] => self.closed = true,
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("a {other:?} record this client does not handle"),
                    ));
                }
            }
            at = end;
        }
        // The start of a record still coming moves to the front.
        self.raw.copy_within(at..self.held, 0);
        self.held -= at;
        Ok(true)
    }
}

/// TLS 1.3's KeyUpdate handshake message: a bench run is far from the record count that calls
/// for one, so this client refuses it rather than follow it.
const KEY_UPDATE: u8 = 24;

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(records) = &mut self.tls else {
            return self.tcp.read(buf);
        };
        let inbound = &mut records.inbound;
        loop {
            let waiting = inbound.plain.len() - inbound.taken;
            if waiting > 0 {
                let n = waiting.min(buf.len());
                let at = inbound.taken;
                buf[..n].copy_from_slice(&inbound.plain[at..at + n]);
                inbound.taken += n;
                return Ok(n);
            }
            if inbound.closed || !inbound.fill(&self.tcp)? {
                return Ok(0);
            }
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(records) = &mut self.tls else {
            return self.tcp.write(buf);
        };
        self.records.clear();
        records.outbound.seal_into(buf, &mut self.records)?;
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
    if wait_for(tcp, libc::POLLOUT, Duration::from_secs(10))? {
        Ok(())
    } else {
        Err(io::Error::other("the server took nothing for 10 s"))
    }
}

/// Wait at most `timeout` for one of `events` (`libc::POLLIN`, `POLLOUT`) on `tcp`: false when
/// the time ran out; true when one came, or a signal cut the wait short (the caller tries again).
pub fn wait_for(tcp: &TcpStream, events: libc::c_short, timeout: Duration) -> io::Result<bool> {
    let mut poll = libc::pollfd {
        fd: tcp.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one pollfd we own, for the duration of the call.
    match unsafe { libc::poll(&mut poll, 1, timeout.as_millis() as i32) } {
        n if n < 0 => {
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::Interrupted => Ok(true),
                _ => Err(error),
            }
        }
        n => Ok(n > 0),
    }
}

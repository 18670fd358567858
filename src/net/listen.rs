//! Listening sockets: where a port listens (`ListenAddr`: a TCP address or a Unix socket's
//! path), binding it, and accepting from it whichever it is.
//!
//! The standard library listens with a backlog of 128. When more clients than that connect
//! within the moment it takes the accept loop to catch up (every page reconnecting after a
//! restart, a load test opening thousands), the kernel drops the rest of their SYNs and each
//! of those clients waits a second or more for its retry. So the backlog is deepened to
//! `BACKLOG` right after binding (Linux lets `listen()` be called again on a listening
//! socket to change it); the kernel caps it at `net.core.somaxconn` (4096 by default since
//! Linux 5.4).
//!
//! A Unix socket's file is made with mode `UNIX_MODE` (its owner and group may connect), a
//! stale file (one nobody listens on any more) is replaced, and the file is removed when the
//! listener is dropped, unless another process has put its own socket there meanwhile.
//! Clients on a Unix socket are local processes: they appear as `LOCAL_PEER`.

use crate::net::wire::Wire;
use std::fmt;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The accept queue asked for; the kernel's `net.core.somaxconn` caps it.
pub const BACKLOG: i32 = 4096;

/// The mode of a Unix socket's file: its owner and group may connect, nobody else.
pub const UNIX_MODE: u32 = 0o660;

/// The address a client on a Unix socket has in limits, logs and [`Connection::peer`]: a
/// process on this host.
///
/// [`Connection::peer`]: crate::Connection::peer
pub const LOCAL_PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// Where a port listens: a TCP address, or a Unix stream socket.
///
/// Parsed from `HOST:PORT` (`127.0.0.1:8087`, `[::]:8087`) or `unix:PATH`
/// (`unix:/run/wsecho/ws.sock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix stream socket at this path.
    Unix(PathBuf),
}

impl ListenAddr {
    /// The TCP address, if it is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            ListenAddr::Tcp(addr) => Some(*addr),
            ListenAddr::Unix(_) => None,
        }
    }
}

impl From<SocketAddr> for ListenAddr {
    fn from(addr: SocketAddr) -> ListenAddr {
        ListenAddr::Tcp(addr)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl FromStr for ListenAddr {
    type Err = String;

    /// The error says what was wrong and what to give instead.
    fn from_str(text: &str) -> Result<ListenAddr, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(
                    "`unix:` needs the socket's path, like unix:/run/wsecho/ws.sock".into(),
                );
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(ListenAddr::Tcp(addr));
        }
        if let Ok(port) = text.parse::<u16>() {
            return Err(format!(
                "`{text}` is a port alone: give HOST:PORT (127.0.0.1:{port} for this host only, \
                 0.0.0.0:{port} for every interface) or unix:PATH"
            ));
        }
        Err(format!(
            "`{text}` is not an address: give HOST:PORT with an IP address (127.0.0.1:8087, \
             [::1]:8087) or unix:PATH"
        ))
    }
}

/// A listening socket, TCP or Unix.
pub struct Listener {
    socket: Socket,
    /// Where it listens (for TCP, the port actually bound).
    local: ListenAddr,
    /// The Unix socket's file this listener made, removed when it is dropped.
    _made: Option<SocketFile>,
}

enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Bind `addr` and listen with a backlog of `BACKLOG`.
    pub fn bind(addr: &ListenAddr) -> io::Result<Listener> {
        match addr {
            ListenAddr::Tcp(addr) => {
                let listener = TcpListener::bind(addr)?;
                deepen_backlog(listener.as_raw_fd())?;
                let local = ListenAddr::Tcp(listener.local_addr()?);
                Ok(Listener {
                    socket: Socket::Tcp(listener),
                    local,
                    _made: None,
                })
            }
            ListenAddr::Unix(path) => {
                clear_stale(path)?;
                let listener = UnixListener::bind(path)?;
                let made = SocketFile::of(path)?;
                fs::set_permissions(path, fs::Permissions::from_mode(UNIX_MODE))?;
                deepen_backlog(listener.as_raw_fd())?;
                Ok(Listener {
                    socket: Socket::Unix(listener),
                    local: ListenAddr::Unix(path.clone()),
                    _made: Some(made),
                })
            }
        }
    }

    /// A socket already listening, handed to this process (socket activation): TCP or Unix,
    /// whichever it is. Its file, if any, stays when the listener is dropped.
    pub fn inherited(fd: OwnedFd) -> io::Result<Listener> {
        let listening = socket_option(fd.as_raw_fd(), libc::SO_ACCEPTCONN)? == 1;
        let stream = socket_option(fd.as_raw_fd(), libc::SO_TYPE)? == libc::SOCK_STREAM;
        if !listening || !stream {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "it is not a listening stream socket (ListenStream= in the .socket unit)",
            ));
        }
        match socket_option(fd.as_raw_fd(), libc::SO_DOMAIN)? {
            libc::AF_UNIX => {
                let listener = UnixListener::from(fd);
                let address = listener.local_addr()?;
                let path = address.as_pathname().map(Path::to_path_buf);
                let path = path.unwrap_or_else(|| PathBuf::from("(unnamed)"));
                Ok(Listener {
                    socket: Socket::Unix(listener),
                    local: ListenAddr::Unix(path),
                    _made: None,
                })
            }
            libc::AF_INET | libc::AF_INET6 => {
                let listener = TcpListener::from(fd);
                let local = ListenAddr::Tcp(listener.local_addr()?);
                Ok(Listener {
                    socket: Socket::Tcp(listener),
                    local,
                    _made: None,
                })
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "it is neither a TCP nor a Unix socket",
            )),
        }
    }

    /// Where it listens (for TCP, the port actually bound).
    pub fn local(&self) -> &ListenAddr {
        &self.local
    }

    /// The next connection and its client's address (`LOCAL_PEER` on a Unix socket).
    pub fn accept(&self) -> io::Result<(Wire, SocketAddr)> {
        match &self.socket {
            Socket::Tcp(listener) => {
                let (stream, peer) = listener.accept()?;
                let _ = stream.set_nodelay(true);
                Ok((Wire::Tcp(stream), peer))
            }
            Socket::Unix(listener) => {
                let (stream, _) = listener.accept()?;
                Ok((Wire::Unix(stream), LOCAL_PEER))
            }
        }
    }

    pub fn as_raw_fd(&self) -> RawFd {
        match &self.socket {
            Socket::Tcp(listener) => listener.as_raw_fd(),
            Socket::Unix(listener) => listener.as_raw_fd(),
        }
    }
}

fn deepen_backlog(fd: RawFd) -> io::Result<()> {
    // SAFETY: `listen` on a descriptor the caller owns and keeps open for the call.
    let result = unsafe { libc::listen(fd, BACKLOG) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn socket_option(fd: RawFd, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: an int-sized option read into an int we own, with its length.
    let result = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if result == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Make way for a Unix socket at `path`: nothing there, or a socket nobody listens on (left by
/// a process that was killed), which is removed. Anything else is an error that says what.
fn clear_stale(path: &Path) -> io::Result<()> {
    let metadata = match fs::symlink_metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    if !metadata.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a file that is not a socket is there (remove it, or pick another path)",
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process listens on that socket",
        )),
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => fs::remove_file(path),
        Err(error) => Err(error),
    }
}

/// A Unix socket's file as this process made it, removed on drop if it is still that file.
struct SocketFile {
    path: PathBuf,
    device: u64,
    inode: u64,
}

impl SocketFile {
    fn of(path: &Path) -> io::Result<SocketFile> {
        let metadata = fs::symlink_metadata(path)?;
        Ok(SocketFile {
            path: path.to_path_buf(),
            device: metadata.dev(),
            inode: metadata.ino(),
        })
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = fs::symlink_metadata(&self.path)
            .is_ok_and(|now| now.dev() == self.device && now.ino() == self.inode);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests;

//! Why a server could not start (`StartError`, every variant saying what went wrong and which
//! setting or action fixes it, printed as one line), and `TlsError`, which a start and a
//! certificate reload both give.

use crate::net::listen::ListenAddr;
use crate::ops::config::ConfigError;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// A TLS certificate or key that cannot be used (or a build without TLS): what is wrong and
/// what to do, in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub(super) String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration cannot work (see [`Config::validate`](crate::Config::validate)).
    Config(ConfigError),
    /// A listener could not be bound.
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address asked for.
        addr: ListenAddr,
        /// The `Config` field that sets it.
        field: &'static str,
        /// What the operating system said.
        source: io::Error,
    },
    /// The sockets socket activation passed cannot be used (what is wrong, what to do).
    Activation(String),
    /// The page folder is missing.
    Www {
        /// The folder asked for.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The TLS certificate or key cannot be used (or TLS was not built in).
    Tls(TlsError),
    /// `Config::redis` is not a Redis URL (or Redis was not built in).
    Redis(String),
    /// Anything else the operating system refused (threads, sockets).
    Io(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(error) => write!(f, "{error}"),
            StartError::Bind {
                what,
                addr,
                field,
                source,
            } => write!(
                f,
                "cannot listen on {addr} for the {what}: {source}; stop whatever uses it \
                 or pick another address (`{field}`)"
            ),
            StartError::Www { path, source } => write!(
                f,
                "cannot use the page folder {}: {source}; give `www` an existing folder, \
                 or leave `www` out to serve the built-in page",
                path.display()
            ),
            StartError::Tls(error) => write!(f, "{error}"),
            StartError::Activation(message) | StartError::Redis(message) => {
                write!(f, "{message}")
            }
            StartError::Io(source) => write!(f, "cannot start: {source}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<io::Error> for StartError {
    fn from(source: io::Error) -> Self {
        StartError::Io(source)
    }
}

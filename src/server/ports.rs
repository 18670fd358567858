//! Where the three ports listen: the sockets socket activation passed (see
//! `net/activation.rs`), else sockets bound as the configuration says. The policy port is a
//! convenience: when it cannot be bound, a warning says why and the server runs without it.

use super::start_error::StartError;
use crate::net::activation;
use crate::net::listen::{ListenAddr, Listener};
use crate::ops::config::Config;
use log::warn;
use std::io;
use std::net::SocketAddr;

/// The listening sockets of one server.
pub struct Ports {
    pub ws: Listener,
    pub http: Option<Listener>,
    pub policy: Option<Listener>,
    /// Whether any was passed by socket activation: they outlive the process, so its stop is
    /// a restart as clients see it (they wait in the sockets' queues for the next process).
    pub restart: bool,
}

impl Ports {
    pub fn http_listen(&self) -> Option<ListenAddr> {
        self.http.as_ref().map(|listener| listener.local().clone())
    }

    pub fn policy_addr(&self) -> Option<SocketAddr> {
        self.policy
            .as_ref()
            .and_then(|listener| listener.local().tcp())
    }
}

/// Take the passed sockets and bind the rest.
pub fn open(config: &Config) -> Result<Ports, StartError> {
    let mut passed = activation::take(&config.ws, config.http.as_ref(), config.policy_port)
        .map_err(StartError::Activation)?;
    let restart = passed.any();
    let ws = match passed.ws.take() {
        Some(listener) => listener,
        None => bind(&config.ws, "WebSocket listener", "ws")?,
    };
    let http = match (passed.http.take(), &config.http) {
        (Some(listener), _) => Some(listener),
        (None, Some(addr)) => Some(bind(addr, "page", "http")?),
        (None, None) => None,
    };
    // On the WebSocket port's IP, or the page's when that is a Unix socket.
    let page_tcp = http.as_ref().and_then(|listener| listener.local().tcp());
    let policy_ip = ws.local().tcp().or(page_tcp).map(|addr| addr.ip());
    let policy = match (passed.policy.take(), config.policy_port, policy_ip) {
        (Some(listener), _, _) => Some(listener),
        (None, Some(port), Some(ip)) => bind_policy(SocketAddr::new(ip, port)),
        _ => None,
    };
    Ok(Ports {
        ws,
        http,
        policy,
        restart,
    })
}

fn bind(
    addr: &ListenAddr,
    what: &'static str,
    field: &'static str,
) -> Result<Listener, StartError> {
    Listener::bind(addr).map_err(|source| StartError::Bind {
        what,
        addr: addr.clone(),
        field,
        source,
    })
}

/// The policy port is a convenience: failing to bind it is a warning, not an error.
fn bind_policy(addr: SocketAddr) -> Option<Listener> {
    match Listener::bind(&addr.into()) {
        Ok(listener) => Some(listener),
        Err(error) => {
            let fix = if error.kind() == io::ErrorKind::PermissionDenied {
                "ports below 1024 need root or `sudo setcap cap_net_bind_service=+ep <wsecho binary>`"
            } else {
                "another program holds it"
            };
            warn!(
                "no Flash policy listener on {addr}: {error} ({fix}). Flash clients still get \
                 the policy inline on the WebSocket port after a few seconds; \
                 without `policy_port` this listener is not started"
            );
            None
        }
    }
}

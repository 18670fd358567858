//! Behind a reverse proxy: who the client really is. For a connection from an address given
//! with `--trusted-proxy`, the client is the address the proxy names in `X-Forwarded-For`; that
//! address, not the proxy's, counts against `--max-per-address` and appears in the logs. From
//! anyone else the header is the client's own word and is ignored.

use crate::net::http::Request;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The other end of a connection, as far as limits and logs are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The client's address; port 0 when a proxy named it (the header carries no port).
    pub addr: SocketAddr,
    /// The trusted proxy it came through, if it did.
    pub proxy: Option<SocketAddr>,
}

impl Client {
    /// A client connected directly.
    pub fn direct(peer: SocketAddr) -> Client {
        Client {
            addr: peer,
            proxy: None,
        }
    }

    /// The client `request` came from: the one the proxy names, when `peer` is a trusted
    /// proxy that named one; else `peer` itself.
    pub fn of(request: &Request, peer: SocketAddr, trusted: &[IpAddr]) -> Client {
        if !trusted.contains(&peer.ip()) {
            return Client::direct(peer);
        }
        match forwarded_for(request) {
            Some(ip) => Client {
                addr: SocketAddr::new(ip, 0),
                proxy: Some(peer),
            },
            // The proxy host itself, or a proxy not set up to say: the proxy is the client.
            None => Client::direct(peer),
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.proxy {
            Some(proxy) => write!(f, "{} via {proxy}", self.addr.ip()),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// The last address of the last `X-Forwarded-For` field: the one the proxy itself added
/// (anything before it is what the client claimed).
fn forwarded_for(request: &Request) -> Option<IpAddr> {
    let (_, value) = request
        .fields()
        .filter(|(name, _)| name.eq_ignore_ascii_case("x-forwarded-for"))
        .last()?;
    value.rsplit(',').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::http::parse_head;

    fn request(fields: &str) -> Request {
        let mut head = format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n").into_bytes();
        parse_head(&mut head).unwrap().unwrap()
    }

    #[test]
    fn only_a_trusted_proxy_is_believed_and_only_its_own_entry() {
        let proxy: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let trusted = [proxy.ip()];
        let forwarded = request("X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\n");
        let client = Client::of(&forwarded, proxy, &trusted);
        assert_eq!(client.addr.ip(), "203.0.113.7".parse::<IpAddr>().unwrap());
        assert_eq!(client.to_string(), "203.0.113.7 via 127.0.0.1:4000");
        // The last field counts, and IPv6 works.
        let two = request("X-Forwarded-For: 6.6.6.6\r\nx-forwarded-for: 2001:db8::1\r\n");
        let client = Client::of(&two, proxy, &trusted);
        assert_eq!(client.addr.ip(), "2001:db8::1".parse::<IpAddr>().unwrap());
        // From anyone else the header is ignored.
        let elsewhere: SocketAddr = "127.0.0.9:5000".parse().unwrap();
        assert_eq!(
            Client::of(&forwarded, elsewhere, &trusted),
            Client::direct(elsewhere)
        );
        // A trusted proxy naming nobody (or nonsense) is the client itself.
        for fields in ["", "X-Forwarded-For: unknown\r\n"] {
            assert_eq!(
                Client::of(&request(fields), proxy, &trusted),
                Client::direct(proxy)
            );
        }
    }
}

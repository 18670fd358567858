//! `wsecho ping URL`: like ping(8), for any `ws://` echo endpoint. One message per interval,
//! one line per echo with its round-trip time, and a summary after `--count` or on Ctrl-C.

use crate::client::{Client, Incoming, UpgradeError};
use std::fmt;
use std::io::Write;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// What to ping and how.
#[derive(Debug, Clone)]
pub struct PingOptions {
    /// The `ws://` endpoint.
    pub url: String,
    /// Time between messages.
    pub interval: Duration,
    /// Payload bytes of each text message.
    pub size: usize,
    /// Stop after this many; `None` runs until stopped.
    pub count: Option<u64>,
    /// How long to wait for each echo before counting it lost.
    pub timeout: Duration,
}

/// Why pinging could not start or go on.
#[derive(Debug)]
pub enum PingError {
    /// Not a `ws://host:port/path` URL.
    BadUrl(String),
    /// The host could not be resolved or connected to.
    Unreachable(String),
    /// The server answered the upgrade with something other than 101.
    Refused(String),
    /// The connection failed after the upgrade.
    Broken(String),
}

impl fmt::Display for PingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PingError::BadUrl(why) | PingError::Unreachable(why) => write!(f, "{why}"),
            PingError::Refused(why) => write!(f, "the server refused the WebSocket upgrade: {why}"),
            PingError::Broken(why) => write!(f, "the connection broke: {why}"),
        }
    }
}

/// Round trips seen so far, in milliseconds.
#[derive(Debug, Default)]
pub struct Tally {
    /// Messages sent.
    pub sent: u64,
    /// Echoes received back.
    pub received: u64,
    /// Replies that were not a byte-exact echo.
    pub mismatched: u64,
    /// Round-trip times, in microseconds.
    rtts: Vec<u64>,
}

impl Tally {
    /// ping(8)'s summary: counts, loss, and min/avg/max/mdev.
    pub fn summary(&self, url: &str, elapsed: Duration) -> String {
        let lost = self.sent - self.received;
        // Percent, rounded half up.
        let loss = (lost * 100 + self.sent / 2)
            .checked_div(self.sent)
            .unwrap_or(0);
        let mut text = format!(
            "--- {url} ping statistics ---\n{} sent, {} received, {loss}% lost, time {}ms\n",
            self.sent,
            self.received,
            elapsed.as_millis()
        );
        if self.mismatched > 0 {
            text += &format!(
                "{} replies were not echoes of what was sent\n",
                self.mismatched
            );
        }
        if !self.rtts.is_empty() {
            let n = self.rtts.len() as f64;
            let min = self.rtts.iter().copied().min().unwrap_or(0);
            let max = self.rtts.iter().copied().max().unwrap_or(0);
            let avg = self.rtts.iter().map(|&x| x as f64).sum::<f64>() / n;
            let mean_square = self
                .rtts
                .iter()
                .map(|&x| (x as f64) * (x as f64))
                .sum::<f64>()
                / n;
            let mdev = (mean_square - avg * avg).max(0.0).sqrt();
            let [min, avg, max, mdev] =
                [min, avg.round() as u64, max, mdev.round() as u64].map(millis);
            text += &format!("rtt min/avg/max/mdev = {min}/{avg}/{max}/{mdev} ms\n");
        }
        text
    }
}

/// Microseconds as milliseconds with three decimals (`1.234`).
fn millis(micros: u64) -> String {
    format!("{}.{:03}", micros / 1000, micros % 1000)
}

/// Where a `ws://` URL points: (host:port for connecting, the URL for the handshake).
fn parse_url(url: &str) -> Result<String, PingError> {
    let Some(rest) = url.strip_prefix("ws://") else {
        let why = if url.starts_with("wss://") {
            "wss:// (TLS) is not supported; use a ws:// URL".to_string()
        } else {
            format!("'{url}' is not a ws:// URL (for example ws://127.0.0.1:8087/echo)")
        };
        return Err(PingError::BadUrl(why));
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(PingError::BadUrl(format!("'{url}' names no host")));
    }
    let has_port = authority.rsplit_once(':').is_some_and(|(host, port)| {
        !host.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit())
    });
    Ok(if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    })
}

/// Connect and upgrade, with `timeout` for each step.
pub fn connect(url: &str, timeout: Duration) -> Result<Client, PingError> {
    let authority = parse_url(url)?;
    let addrs: Vec<_> = authority
        .to_socket_addrs()
        .map_err(|e| PingError::Unreachable(format!("cannot resolve {authority}: {e}")))?
        .collect();
    let mut last_error = None;
    let stream = addrs
        .iter()
        .find_map(|addr| match TcpStream::connect_timeout(addr, timeout) {
            Ok(stream) => Some(stream),
            Err(error) => {
                last_error = Some(format!("{addr}: {error}"));
                None
            }
        })
        .ok_or_else(|| {
            PingError::Unreachable(format!(
                "cannot connect to {}; is the server running, and the host and port right?",
                last_error.unwrap_or_else(|| authority.clone())
            ))
        })?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| PingError::Broken(e.to_string()))?;
    let target = target_of(url);
    let host = authority.trim_end_matches(":80");
    Client::upgrade(stream, host, &target).map_err(|error| match error {
        UpgradeError::Refused { status, body } => {
            let body = match body.is_empty() {
                true => String::new(),
                false => format!(" ({body})"),
            };
            PingError::Refused(format!("HTTP {status}{body}"))
        }
        UpgradeError::Failed(why) => {
            PingError::Refused(format!("{why}; is this a WebSocket endpoint?"))
        }
    })
}

/// The path and query of a `ws://` URL (the path `/` when it names none).
fn target_of(url: &str) -> String {
    let rest = url.strip_prefix("ws://").unwrap_or(url);
    match rest.find(['/', '?']) {
        Some(at) if rest[at..].starts_with('/') => rest[at..].to_string(),
        Some(at) => format!("/{}", &rest[at..]),
        None => "/".to_string(),
    }
}

/// The text sent as message `seq`: its number, padded to `size` bytes.
fn payload(seq: u64, size: usize) -> String {
    let mut text = format!("wsecho ping {seq} ");
    while text.len() < size {
        text.push('.');
    }
    text.truncate(size);
    text
}

/// Ping until `count` is reached, `stop` says so, or the connection fails (said in a line).
/// `stop` waits up to the given time and returns true when pinging should end (Ctrl-C); the
/// caller ends a wait for an echo early by shutting the socket down. Lines go to `out`.
pub fn run(
    options: &PingOptions,
    socket: &mut Client,
    stop: &dyn Fn(Duration) -> bool,
    out: &mut dyn Write,
) -> Tally {
    let mut tally = Tally::default();
    let mut seq = 0;
    while options.count.is_none_or(|count| seq < count) {
        seq += 1;
        let sent_at = Instant::now();
        let message = payload(seq, options.size);
        if let Err(error) = socket.send_text(&message) {
            let _ = writeln!(out, "{}", PingError::Broken(error.to_string()));
            break;
        }
        tally.sent += 1;
        match await_echo(socket) {
            Ok(Some(reply)) => {
                let rtt = sent_at.elapsed().as_micros() as u64;
                tally.received += 1;
                if reply == Incoming::Text(message) {
                    tally.rtts.push(rtt);
                    let _ = writeln!(
                        out,
                        "{} bytes from {}: seq={seq} time={} ms",
                        options.size,
                        options.url,
                        millis(rtt)
                    );
                } else {
                    tally.mismatched += 1;
                    let _ = writeln!(
                        out,
                        "seq={seq}: the reply ({} bytes) is not what was sent: not an echo server?",
                        match reply {
                            Incoming::Text(text) => text.len(),
                            Incoming::Binary(data) => data.len(),
                            Incoming::Close(_) => 0,
                        }
                    );
                }
            }
            Ok(None) => {
                let _ = writeln!(
                    out,
                    "seq={seq}: no echo within {} s: not an echo server, or too slow?",
                    crate::seconds_text(options.timeout)
                );
                // A late echo would be taken for the next one: start afresh is not possible
                // on the same connection, so stop here.
                break;
            }
            Err(error) => {
                if !stop(Duration::ZERO) {
                    let _ = writeln!(out, "{error}");
                }
                break;
            }
        }
        let _ = out.flush();
        if options.count == Some(seq) {
            break;
        }
        let next = sent_at + options.interval;
        if stop(next.saturating_duration_since(Instant::now())) {
            break;
        }
    }
    let _ = socket.close();
    let _ = socket.stream().shutdown(Shutdown::Both);
    tally
}

/// The next data message; `Ok(None)` when none came within the read timeout.
fn await_echo(socket: &mut Client) -> Result<Option<Incoming>, PingError> {
    match socket.read() {
        Ok(Incoming::Close(code)) => {
            let why = code.map_or("no code".to_string(), |code| format!("code {code}"));
            Err(PingError::Broken(format!(
                "the server closed the connection ({why})"
            )))
        }
        Ok(message) => Ok(Some(message)),
        Err(error) if is_timeout(&error) => Ok(None),
        Err(error) => Err(PingError::Broken(error.to_string())),
    }
}

/// Whether an I/O error is a read timeout (Linux reports `WouldBlock`).
fn is_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_ws_and_get_port_80_by_default() {
        assert_eq!(
            parse_url("ws://example.com/echo").unwrap(),
            "example.com:80"
        );
        assert_eq!(
            parse_url("ws://127.0.0.1:8087/echo").unwrap(),
            "127.0.0.1:8087"
        );
        assert_eq!(parse_url("ws://[::1]:9/x").unwrap(), "[::1]:9");
        assert!(
            parse_url("wss://example.com/")
                .unwrap_err()
                .to_string()
                .contains("wss://")
        );
        assert!(parse_url("http://example.com/").is_err());
        assert!(parse_url("ws:///echo").is_err());
    }

    #[test]
    fn the_handshake_asks_for_the_urls_path_and_query() {
        assert_eq!(target_of("ws://h:1/echo?x=1"), "/echo?x=1");
        assert_eq!(target_of("ws://h:1"), "/");
        assert_eq!(target_of("ws://h:1?x"), "/?x");
    }

    #[test]
    fn payloads_have_the_requested_size() {
        assert_eq!(payload(7, 32).len(), 32);
        assert_eq!(payload(7, 3), "wse");
        assert!(payload(12, 40).starts_with("wsecho ping 12 "));
    }

    #[test]
    fn the_summary_reports_loss_and_spread() {
        let tally = Tally {
            sent: 4,
            received: 3,
            mismatched: 0,
            rtts: vec![1000, 2000, 3000],
        };
        let text = tally.summary("ws://h/echo", Duration::from_millis(3003));
        assert!(
            text.contains("4 sent, 3 received, 25% lost, time 3003ms"),
            "{text}"
        );
        assert!(
            text.contains("rtt min/avg/max/mdev = 1.000/2.000/3.000/0.816 ms"),
            "{text}"
        );
    }
}

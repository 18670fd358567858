//! The smallest WebSocket client `wsecho ping` needs, over a blocking `TcpStream`: the opening
//! handshake (its key checked in the answer), masked text frames out, whole messages in
//! (fragments joined, pings answered, a close reported with its code). Written here rather than
//! taken from tungstenite's client, whose HTTP machinery would weigh more than the rest of the
//! command line together.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::net::TcpStream;

/// Longest answer head read to the upgrade.
const MAX_HEAD: usize = 8 * 1024;
/// Longest message taken from the server.
const MAX_MESSAGE: usize = 16 << 20;

/// What the server sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame, with its code (`None`: it gave none).
    Close(Option<u16>),
}

/// Why the upgrade failed.
#[derive(Debug)]
pub enum UpgradeError {
    /// The server answered with this status line and body instead of 101.
    Refused { status: String, body: String },
    /// Anything else: a broken answer, or the connection failing.
    Failed(String),
}

pub struct Client {
    stream: TcpStream,
}

impl Client {
    /// Upgrade `stream` to a WebSocket for `target` (path and query) on `host`.
    pub fn upgrade(
        mut stream: TcpStream,
        host: &str,
        target: &str,
    ) -> Result<Client, UpgradeError> {
        let failed = |error: io::Error| UpgradeError::Failed(error.to_string());
        let key = base64(&random_bytes::<16>());
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).map_err(failed)?;
        let (head, after) = read_head(&mut stream).map_err(failed)?;
        let status_line = head.lines().next().unwrap_or_default().to_string();
        if status_line.split(' ').nth(1) != Some("101") {
            let mut body = after;
            // The one-line reason a refusal carries, bounded.
            let _ = (&mut stream).take(4096).read_to_end(&mut body);
            let body = String::from_utf8_lossy(&body).trim().to_string();
            let status = status_line.trim_start_matches("HTTP/1.1 ").to_string();
            return Err(UpgradeError::Refused { status, body });
        }
        let accept = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("Sec-WebSocket-Accept")
                .then(|| value.trim().to_string())
        });
        if accept.as_deref() != Some(&tungstenite::handshake::derive_accept_key(key.as_bytes())) {
            return Err(UpgradeError::Failed(
                "the answer's Sec-WebSocket-Accept does not match our key".into(),
            ));
        }
        if !after.is_empty() {
            return Err(UpgradeError::Failed(
                "the server spoke before we did".into(),
            ));
        }
        Ok(Client { stream })
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    pub fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send(0x1, text.as_bytes())
    }

    /// Send a close frame with code 1000.
    pub fn close(&mut self) -> io::Result<()> {
        self.send(0x8, &1000u16.to_be_bytes())
    }

    /// One frame, masked as a client's must be, in one write.
    fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            len @ 0..=125 => frame.push(0x80 | len as u8),
            len @ 126..=0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        let mask = random_bytes::<4>();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        self.stream.write_all(&frame)
    }

    /// The next message (pings answered, pongs skipped on the way); a read timeout comes back
    /// as the `io::Error` it is.
    pub fn read(&mut self) -> io::Result<Incoming> {
        let mut message = Vec::new();
        let mut kind = None;
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head)?;
            let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0F);
            let len = match head[1] & 0x7F {
                126 => {
                    let mut bytes = [0u8; 2];
                    self.stream.read_exact(&mut bytes)?;
                    u64::from(u16::from_be_bytes(bytes))
                }
                127 => {
                    let mut bytes = [0u8; 8];
                    self.stream.read_exact(&mut bytes)?;
                    u64::from_be_bytes(bytes)
                }
                len => u64::from(len),
            };
            if head[1] & 0x80 != 0 || len as usize > MAX_MESSAGE - message.len().min(MAX_MESSAGE) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the server sent a masked or oversized frame",
                ));
            }
            let mut payload = vec![0u8; len as usize];
            self.stream.read_exact(&mut payload)?;
            match opcode {
                0x8 => {
                    let code = payload.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                    return Ok(Incoming::Close(code));
                }
                0x9 => self.send(0xA, &payload)?,
                0xA => {}
                0x0..=0x2 => {
                    kind = kind.or(Some(opcode));
                    message.extend_from_slice(&payload);
                    if fin {
                        return Ok(match kind {
                            Some(0x1) => Incoming::Text(String::from_utf8_lossy(&message).into()),
                            _ => Incoming::Binary(message),
                        });
                    }
                }
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the server sent a frame with unknown opcode {opcode}"),
                    ));
                }
            }
        }
    }
}

/// The answer's head (as text), and whatever came after it in the same reads.
fn read_head(stream: &mut TcpStream) -> io::Result<(String, Vec<u8>)> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let after = received.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&received).into_owned(), after));
        }
        if received.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "an answer head over 8 KiB",
            ));
        }
        match stream.read(&mut chunk)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => received.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Bytes no one can guess in advance (std's per-process random hash keys, mixed with the
/// clock): what a handshake key and a frame mask need, which is not secrecy.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    for chunk in bytes.chunks_mut(8) {
        let mut hasher = RandomState::new().build_hasher();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        hasher.write_u128(now.map_or(0, |since| since.as_nanos()));
        let word = hasher.finish().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    bytes
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let n = group.iter().fold(0u32, |n, &b| n << 8 | u32::from(b)) << (8 * (3 - group.len()));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_examples() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "{input}");
        }
    }

    #[test]
    fn a_key_is_sixteen_bytes_in_base64_and_keys_differ() {
        let (one, two) = (base64(&random_bytes::<16>()), base64(&random_bytes::<16>()));
        assert_eq!(one.len(), 24);
        assert_ne!(one, two);
    }
}

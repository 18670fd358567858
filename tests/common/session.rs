//! A client of the HTTP carrier of sessions (`/session/` on the page port), speaking raw
//! HTTP/1.1 as a browser behind a proxy would, one request per connection.

use super::{PATIENCE, tcp, tcp_from};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};

/// A record of the session protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: char,
    pub seq: u64,
    pub payload: Vec<u8>,
}

impl Record {
    pub fn text(&self) -> String {
        String::from_utf8(self.payload.clone()).unwrap()
    }
}

/// Encode records for a POST.
pub fn records(list: &[(char, u64, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, seq, payload) in list {
        out.extend_from_slice(format!("{kind}{seq} {}\n", payload.len()).as_bytes());
        out.extend_from_slice(payload);
    }
    out
}

/// Parse a run of records (panics on a malformed one: the server's are under test).
pub fn parse(mut body: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let newline = body
            .iter()
            .position(|&b| b == b'\n')
            .expect("a record head");
        let head = std::str::from_utf8(&body[..newline]).unwrap();
        let kind = head.chars().next().unwrap();
        let (seq, len) = head[1..].split_once(' ').unwrap();
        let len: usize = len.parse().unwrap();
        let payload = body[newline + 1..newline + 1 + len].to_vec();
        out.push(Record {
            kind,
            seq: seq.parse().unwrap(),
            payload,
        });
        body = &body[newline + 1 + len..];
    }
    out
}

/// An answer: status, headers (lowercase names), body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send one request on a new connection from `source` and read the whole answer (with a
/// Content-Length, or chunked to its end).
pub fn request_from(
    source: Ipv4Addr,
    page: SocketAddr,
    method: &str,
    target: &str,
    headers: &str,
    body: &[u8],
) -> Answer {
    let mut stream = tcp_from(source, page);
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    send_request(&mut stream, method, target, headers, body);
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked");
    let body = if chunked {
        let mut body = Vec::new();
        while let Some(chunk) = read_chunk(&mut reader) {
            body.extend_from_slice(&chunk);
        }
        body
    } else {
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        body
    };
    Answer {
        status,
        headers,
        body,
    }
}

pub fn request(page: SocketAddr, method: &str, target: &str, headers: &str, body: &[u8]) -> Answer {
    request_from(Ipv4Addr::LOCALHOST, page, method, target, headers, body)
}

pub fn send_request(
    stream: &mut TcpStream,
    method: &str,
    target: &str,
    headers: &str,
    body: &[u8],
) {
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n{headers}\r\n",
        stream.peer_addr().unwrap(),
        body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).unwrap();
}

/// Status and headers of an answer.
pub fn read_head(reader: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            return (status, headers);
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
}

/// The next chunk of a chunked body; `None` at its end.
pub fn read_chunk(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let size = usize::from_str_radix(line.trim(), 16).ok()?;
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk).ok()?;
    chunk.truncate(size);
    (size > 0).then_some(chunk)
}

/// One session over HTTP, from 127.0.0.1.
pub struct HttpSession {
    pub page: SocketAddr,
    pub id: String,
    /// The next number to send.
    pub next_up: u64,
    /// The next number wanted.
    pub next_down: u64,
}

impl HttpSession {
    /// Open a session on `route` (a path with a query, such as `/echo?x=1`).
    pub fn open(page: SocketAddr, route: &str) -> HttpSession {
        let answer = request(page, "POST", &format!("/session/open{route}"), "", b"");
        assert_eq!(answer.status, 200, "open {route}: {}", answer.text());
        let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        HttpSession {
            page,
            id: json["session"].as_str().unwrap().to_string(),
            next_up: 1,
            next_down: 1,
        }
    }

    /// Post records; the status.
    pub fn post(&self, body: &[u8]) -> u16 {
        let target = format!("/session/{}/up", self.id);
        request(self.page, "POST", &target, "", body).status
    }

    /// Send one text message, numbered.
    pub fn send_text(&mut self, text: &str) {
        let body = records(&[('t', self.next_up, text.as_bytes())]);
        assert_eq!(self.post(&body), 204);
        self.next_up += 1;
    }

    /// One poll from `next_down`: the records, with `next_down` moved past them.
    pub fn poll(&mut self) -> Vec<Record> {
        let target = format!(
            "/session/{}/down?from={}&mode=poll",
            self.id, self.next_down
        );
        let answer = request(self.page, "GET", &target, "", b"");
        assert_eq!(answer.status, 200, "poll: {}", answer.text());
        let got = parse(&answer.body);
        if let Some(last) = got.last() {
            self.next_down = last.seq + 1;
        }
        got
    }

    /// Poll until `n` message records (and any close) have come.
    pub fn poll_messages(&mut self, n: usize) -> Vec<Record> {
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + PATIENCE;
        while got.len() < n && std::time::Instant::now() < deadline {
            let records = self.poll();
            let ended = records.iter().any(|r| r.kind == 'c');
            got.extend(records);
            if ended {
                break;
            }
        }
        got
    }
}

/// A plain connection to the page, for tests that hold a response open.
pub fn page_stream(page: SocketAddr) -> TcpStream {
    tcp(page)
}

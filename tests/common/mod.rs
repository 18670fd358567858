//! Shared test helpers: a server on ephemeral loopback ports, WebSocket and raw clients.
//! Every read has a timeout, so a broken server fails a test instead of hanging it.
#![allow(dead_code)]

pub mod session;
#[cfg(feature = "tls")]
pub mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};
use wsecho::{Config, Server};

/// Upper bound for any single wait in a test.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub type Client = WebSocket<TcpStream>;

pub fn www() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("www")
}

/// A fresh folder for a test's files: `name` (the test's own) under cargo's folder for test
/// scratch, `target/tmp`, emptied first. Runs leave nothing in the system's temp folder, and
/// the next run reuses the same folders.
pub fn scratch(name: &str) -> PathBuf {
    let folder = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

/// Defaults, but on free loopback ports, with no policy listener, and no per-address cap (every
/// test client comes from 127.0.0.1; tests/address_cap.rs sets one).
pub fn config() -> Config {
    Config {
        http: Some("127.0.0.1:0".parse().unwrap()),
        ws: "127.0.0.1:0".parse().unwrap(),
        policy_port: None,
        www: Some(www()),
        max_per_address: usize::MAX,
        ..Config::default()
    }
}

pub fn start(config: Config) -> Server {
    Server::start(config).expect("server starts")
}

pub fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// A WebSocket client on `/echo`.
pub fn connect(server: &Server) -> Client {
    connect_to(server.ws_addr(), "/echo").expect("upgrade accepted")
}

pub fn connect_to(addr: SocketAddr, path: &str) -> Result<Client, tungstenite::Error> {
    let url = format!("ws://{addr}{path}");
    // Whatever the server sends back, however big: the server's limits are under test.
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    match tungstenite::client::client_with_config(url.as_str(), tcp(addr), Some(config)) {
        Ok((client, _response)) => Ok(client),
        Err(tungstenite::HandshakeError::Failure(error)) => Err(error),
        Err(tungstenite::HandshakeError::Interrupted(_)) => {
            panic!("blocking handshake interrupted")
        }
    }
}

/// The next data message, skipping pings and pongs.
pub fn next_message<S: Read + Write>(client: &mut WebSocket<S>) -> Message {
    // A read that a signal interrupted is read again, as `read_exact` would (a blocking read
    // with a timeout returns EINTR even for a handler installed with SA_RESTART, such as the
    // one glibc's threads answer set*id calls with); bounded all the same.
    let mut interruptions = 0;
    loop {
        match client.read() {
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(message) => return message,
            Err(tungstenite::Error::Io(error))
                if error.kind() == std::io::ErrorKind::Interrupted && interruptions < 100 =>
            {
                interruptions += 1;
            }
            Err(error) => panic!("a message: {error:?}"),
        }
    }
}

/// Poll `condition` every 10 ms until it holds; false if it still does not after PATIENCE.
pub fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

/// Read until the server's close frame; return its code.
pub fn expect_close<S: Read + Write>(client: &mut WebSocket<S>) -> CloseCode {
    loop {
        match client.read() {
            Ok(Message::Close(Some(frame))) => return frame.code,
            Ok(Message::Close(None)) => panic!("close frame without a code"),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(other) => {
                let start: String = format!("{other:?}").chars().take(80).collect();
                panic!(
                    "expected a close frame, got {start}... ({} bytes)",
                    other.len()
                )
            }
            Err(error) => panic!("expected a close frame, got error {error}"),
        }
    }
}

/// Send raw bytes and read everything until the server closes (bounded by PATIENCE).
pub fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = tcp(addr);
    stream.write_all(request).unwrap();
    read_to_close(&mut stream)
}

pub fn read_to_close(mut stream: impl Read) -> Vec<u8> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return received,
            // Over TLS: a server that hung up without close_notify. What came is all there is.
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return received,
            Err(error) => panic!("server did not close in time: {error}"),
        }
    }
}

/// An upgrade request with a valid key, plus `extra` header lines.
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// The resident memory of process `pid`, in MiB (`VmRSS` in `/proc`).
pub fn resident_mib(pid: u32) -> f64 {
    memory_kib(pid, "VmRSS") as f64 / 1024.0
}

/// How far over `baseline` (MiB) process `pid`'s RSS is once it has come down to `bound` MiB
/// over it, or, if it has not within `within`, as it stands then. (A bound of its own, not
/// `PATIENCE`: a test may need to look before idle threads end and give their memory back.)
pub fn resident_over(pid: u32, baseline: f64, bound: f64, within: Duration) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let over = resident_mib(pid) - baseline;
        if over <= bound || Instant::now() >= deadline {
            return over;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The body of `GET /metrics` on the page port `http`.
pub fn metrics(http: SocketAddr) -> String {
    let request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let response = String::from_utf8_lossy(&raw_exchange(http, request)).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert_eq!(status_of(head.as_bytes()), 200, "{head}");
    body.to_string()
}

/// The value of the sample named exactly `name` (labels included) in a `/metrics` body.
pub fn sample(body: &str, name: &str) -> u64 {
    let line = body
        .lines()
        .find(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' '))
        })
        .unwrap_or_else(|| panic!("no {name} in\n{body}"));
    line[name.len() + 1..].parse().unwrap()
}

/// The status code of a raw HTTP response.
pub fn status_of(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"))
}

/// A masked client frame (FIN set), as a browser would send it.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    client_fragment(opcode, true, payload)
}

/// A masked client frame, final or not.
pub fn client_fragment(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// A server frame: (fin, opcode, payload). Servers never mask.
pub fn parse_server_frames(mut bytes: &[u8]) -> Vec<(bool, u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let fin = bytes[0] & 0x80 != 0;
        let opcode = bytes[0] & 0x0f;
        assert_eq!(bytes[1] & 0x80, 0, "server frames must not be masked");
        let (len, header) = match bytes[1] & 0x7f {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        frames.push((fin, opcode, bytes[header..header + len].to_vec()));
        bytes = &bytes[header + len..];
    }
    assert!(bytes.is_empty(), "trailing partial frame");
    frames
}

/// Read one server frame from a raw socket: (fin, opcode, payload).
pub fn read_server_frame(stream: &mut TcpStream) -> std::io::Result<(bool, u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head)?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut extended = [0u8; 2];
            stream.read_exact(&mut extended)?;
            u16::from_be_bytes(extended) as usize
        }
        127 => {
            let mut extended = [0u8; 8];
            stream.read_exact(&mut extended)?;
            u64::from_be_bytes(extended) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload)?;
    Ok((head[0] & 0x80 != 0, head[0] & 0x0f, payload))
}

/// Memory mappings this process holds now (the lines of /proc/self/maps).
pub fn mappings_in_process() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// A field of /proc/PID/status in KiB, such as `VmRSS` or `VmHWM` (the peak).
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A TCP connection to `target` from `source` (any port).
pub fn tcp_from(source: Ipv4Addr, target: SocketAddr) -> TcpStream {
    tcp_socket(source, None, target)
}

/// A TCP connection whose receive buffer is a few KiB (autotuning off): a client that stops
/// reading soon stops the server's writes.
pub fn tcp_reading_little(target: SocketAddr) -> TcpStream {
    tcp_socket(Ipv4Addr::LOCALHOST, Some(4096), target)
}

fn tcp_socket(
    source: Ipv4Addr,
    receive_buffer: Option<libc::c_int>,
    target: SocketAddr,
) -> TcpStream {
    let SocketAddr::V4(target) = target else {
        panic!("IPv4 only")
    };
    let address = |addr: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let (local, remote) = (address(SocketAddrV4::new(source, 0)), address(target));
    let size = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a new socket we own, set up, bound and connected with values that outlive the
    // calls; the descriptor is handed to the TcpStream, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let stream = TcpStream::from_raw_fd(fd);
        if let Some(bytes) = receive_buffer {
            let option_size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            let set = libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&raw const bytes).cast(),
                option_size,
            );
            assert_eq!(set, 0, "SO_RCVBUF");
        }
        assert_eq!(
            libc::bind(fd, (&raw const local).cast(), size),
            0,
            "bind {source}"
        );
        assert_eq!(
            libc::connect(fd, (&raw const remote).cast(), size),
            0,
            "connect"
        );
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream
    }
}

/// Open a raw socket, upgrade it, and return it past the 101 answer.
pub fn raw_upgraded(addr: SocketAddr) -> TcpStream {
    upgraded(tcp(addr))
}

/// Upgrade a raw socket to /echo, and return it past the 101 answer.
pub fn upgraded(mut stream: TcpStream) -> TcpStream {
    upgrade_with(&mut stream, "");
    stream
}

/// Upgrade a raw socket to /echo with `extra` header lines; the 101's head, read up to its end.
pub fn upgrade_with(stream: &mut TcpStream, extra: &str) -> String {
    stream
        .write_all(upgrade_request("/echo", extra).as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("upgrade answer");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("a 101 head is text");
    assert_eq!(status_of(head.as_bytes()), 101, "{head}");
    head
}

/// Send `request` to the WebSocket port; return the answer: the head alone for a 101 (the
/// connection then stays open), else everything until the server closes.
pub fn upgrade_answer(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = tcp(addr);
    stream.write_all(request).unwrap();
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    while !received.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => received.push(byte[0]),
            Err(error) => panic!("no answer: {error}"),
        }
    }
    if !received.starts_with(b"HTTP/1.1 101 ") {
        received.extend(read_to_close(&mut stream));
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// The `wsecho` binary running on free ports, with its log lines arriving on a channel.
/// Killed when dropped, if it is still running.
pub struct Running {
    pub child: Child,
    pub ws: SocketAddr,
    pub http: SocketAddr,
    pub log: mpsc::Receiver<String>,
    /// The lines logged up to the one naming the WebSocket address.
    pub startup_log: Vec<String>,
}

impl Running {
    /// Log lines until one contains `needle` (bounded by PATIENCE per line).
    pub fn log_until(&self, needle: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self
                .log
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|_| panic!("no log line with {needle:?} in {lines:#?}"));
            let found = line.contains(needle);
            lines.push(line);
            if found {
                return lines;
            }
        }
    }

    /// Every line still to come, once the process has exited: read until its stderr closes
    /// (bounded by PATIENCE), so that none still on its way is missed.
    pub fn rest_of_log(&self) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return lines,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("the log did not end: {lines:#?}"),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `binary` (the test's `env!("CARGO_BIN_EXE_wsecho")`) on free loopback ports with no
/// policy listener, and wait (bounded) for the log line that names its WebSocket address.
pub fn spawn_binary(binary: &str) -> Running {
    spawn_binary_with(binary, &[])
}

/// `spawn_binary` with more options.
pub fn spawn_binary_with(binary: &str, options: &[&str]) -> Running {
    let mut command = Command::new(binary);
    command.args(["--www", &www().display().to_string()]);
    spawn_command(command, options)
}

/// The binary's flags for free loopback ports, with no policy listener.
pub const FREE_PORTS: [&str; 6] = [
    "--http",
    "127.0.0.1:0",
    "--ws",
    "127.0.0.1:0",
    "--policy-port",
    "0",
];

/// `command` (a `wsecho` binary) on free loopback ports with no policy listener, its
/// per-address cap lifted, and `options`; waits for its log to name its addresses.
pub fn spawn_command(mut command: Command, options: &[&str]) -> Running {
    let mut child = command
        .args(FREE_PORTS)
        // Every test client comes from 127.0.0.1.
        .args(["--max-per-address", "100000"])
        .args(options)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (sender, log) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    // The page's address is logged first, then the WebSocket's.
    let (mut http, mut ws) = (None, None);
    let mut startup_log = Vec::new();
    while ws.is_none() {
        let line = log.recv_timeout(PATIENCE).expect("the startup log");
        startup_log.push(line.clone());
        let address_after = |marker: &str| {
            let rest = line.split(marker).nth(1)?;
            rest.split('/').next()?.parse::<SocketAddr>().ok()
        };
        http = http
            .or(address_after("page: http://"))
            .or(address_after("page: https://"));
        ws = address_after("WebSocket: ws://").or(address_after("WebSocket: wss://"));
    }
    Running {
        child,
        ws: ws.unwrap(),
        http: http.expect("the page address is logged before the WebSocket address"),
        log,
        startup_log,
    }
}

/// `/room`: join the room, then broadcast whatever arrives to every member (sender included).
pub fn room_server(config: Config) -> (Server, wsecho::Room) {
    let room = wsecho::Room::new();
    let shared = room.clone();
    let handler = move |client: &mut wsecho::Connection| -> Result<(), wsecho::Error> {
        let me = client.sender();
        shared.join(&me);
        while let Some(message) = client.receive()? {
            shared.broadcast(message);
        }
        Ok(())
    };
    let routes = wsecho::Routes::new().route("/room", handler);
    (Server::start_with(config, routes).unwrap(), room)
}

/// Run a command that must finish by itself, bounded by PATIENCE.
pub fn run(command: &mut Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_bounded(&mut child);
    child.wait_with_output().unwrap()
}

/// Wait for `child` to exit, at most PATIENCE (then kill it and fail).
pub fn wait_bounded(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("wsecho did not exit within 10 s");
}

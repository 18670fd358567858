//! wsload: the load client behind `make bench`, for any `ws://` or `wss://` echo server.
//!
//! It speaks just enough WebSocket to measure: a fixed upgrade request, client frames with a
//! zero mask key (legal, and free to apply), server frames parsed in place. Many connections
//! are driven from one thread with epoll, so the client stays light next to the server; its
//! own CPU share is reported with every result, as is the server's when `--pid` names it.
//!
//! Output: one line of `key=value` fields, read by tests/bench/run.py.

use conn::{Conn, TlsClient};
use epoll::{EMPTY_EVENT, Epoll};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

mod conn;
mod epoll;
mod fanout;
mod stream;

const HELP: &str = "\
wsload: load for WebSocket echo servers (used by `make bench`)

Usage: wsload MODE URL [--seconds S] [--connections N] [--pid PID]

Modes:
  rtt        one connection, 32-byte text ping-pong: p50/p99 round trip
  conc       --connections ping-pong as fast as they can: messages/s, p50/p99
  paced      --connections each sending 10 messages/s (open loop): p50/p99/max
  stream     one connection, 64 KiB binary messages, 16 in flight, up to 4 a write: MB/s
  deflate    as stream, but permessage-deflate is offered and each message is 64 KiB of
             compressible text sent compressed: MB/s (uncompressed), and the server's CPU
             seconds per MB (with --pid); fails if the server does not agree to compress
  idle       --connections held open after one echo each: server RSS and threads per
             connection (needs --pid)
  handshake  connect, upgrade, close, one after another: handshakes/s
  fanout     --connections join one chat room (URL .../chat, wsecho's /chat protocol);
             10 of them each say --rate messages/s, a timestamp as the text: deliveries/s
             and delivery latency p50/p99/max over every member

URL: ws://HOST:PORT/PATH, or wss://HOST:PORT/PATH with --ca (the server's certificate, or the
one that signed it, in PEM; HOST must be a name it is for)

Options: --seconds S [default: 3]  --connections N [default: 100]  --pid PID (the server's)
         --ca FILE (wss: the certificate to trust)
         --rate R (fanout: messages per second per talker) [default: 10]
";

const SMALL: usize = 32;
const PACED_PERIOD: Duration = Duration::from_millis(100);

struct Options {
    mode: String,
    addr: SocketAddr,
    request: Vec<u8>,
    seconds: f64,
    connections: usize,
    pid: Option<u32>,
    rate: u32,
    tls: Option<TlsClient>,
}

fn main() -> ExitCode {
    match parse().and_then(|options| run(&options)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("wsload: {error}");
            ExitCode::from(1)
        }
    }
}

fn parse() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{HELP}");
        std::process::exit(0);
    }
    let mut positional = Vec::new();
    let (mut seconds, mut connections, mut pid, mut rate) = (3.0, 100, None, 10);
    let mut ca = None;
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| iter.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--seconds" => {
                seconds = value("--seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?
            }
            "--connections" => {
                connections = value("--connections")?
                    .parse()
                    .map_err(|e| format!("--connections: {e}"))?
            }
            "--rate" => {
                rate = value("--rate")?
                    .parse()
                    .ok()
                    .filter(|&rate| rate > 0)
                    .ok_or("--rate: a whole number of messages per second, at least 1")?
            }
            "--ca" => ca = Some(value("--ca")?),
            "--pid" => pid = Some(value("--pid")?.parse().map_err(|e| format!("--pid: {e}"))?),
            _ if arg.starts_with("--") => return Err(format!("unknown option {arg}")),
            _ => positional.push(arg),
        }
    }
    let [mode, url] =
        <[String; 2]>::try_from(positional).map_err(|_| "usage: wsload MODE URL".to_string())?;
    let (secure, rest) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err("the URL must start with ws:// or wss://".into()),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host);
    let tls = match (secure, ca) {
        (false, _) => None,
        (true, Some(ca)) => Some(TlsClient::new(&ca, host)?),
        (true, None) => return Err("a wss:// URL needs --ca FILE, the certificate to trust".into()),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or(format!("{authority}: no address"))?;
    let path = if path.is_empty() { "/" } else { path };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    Ok(Options {
        mode,
        addr,
        request,
        seconds,
        connections,
        pid,
        rate,
        tls,
    })
}

fn run(options: &Options) -> Result<String, String> {
    wsecho::raise_open_file_limit();
    let duration = Duration::from_secs_f64(options.seconds);
    let cpu = CpuMeter::start(options.pid);
    let fields = match options.mode.as_str() {
        "rtt" => rtt(options, duration),
        "conc" => conc(options, duration),
        "paced" => paced(options, duration),
        "stream" => stream::stream(options, duration),
        "deflate" => stream::deflate(options, duration),
        "idle" => idle(options),
        "handshake" => handshake(options, duration),
        "fanout" => fanout::fanout(options, duration),
        other => return Err(format!("unknown mode {other}; see --help")),
    }
    .map_err(|e| format!("{} against {}: {e}", options.mode, options.addr))?;
    Ok(format!("mode={} {fields} {}", options.mode, cpu.finish()))
}

// --- the wire ---------------------------------------------------------------------------

/// Connect and upgrade; the socket is left blocking, with TCP_NODELAY.
fn open(options: &Options) -> io::Result<Conn> {
    Ok(open_with_head(options)?.0)
}

/// As `open`, with the head of the server's 101 answer.
fn open_with_head(options: &Options) -> io::Result<(Conn, String)> {
    let mut stream = Conn::connect(options.addr, options.tls.as_ref())?;
    stream
        .tcp()
        .set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(&options.request)?;
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 || head.len() > 8192 {
            return Err(io::Error::other("no upgrade answer"));
        }
        head.extend_from_slice(&chunk[..n]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        let line = String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        return Err(io::Error::other(format!("upgrade refused: {line}")));
    }
    Ok((stream, String::from_utf8_lossy(&head).into_owned()))
}

/// A client frame (FIN set) with a zero mask key.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
    out
}

/// Bytes read but not yet consumed as frames.
#[derive(Default)]
struct Inbox {
    buf: Vec<u8>,
}

impl Inbox {
    /// Read what the socket has; count whole data frames (pings are ignored: none expected).
    /// A close frame is an error: no server closes during a measurement.
    fn pull(&mut self, stream: &mut Conn) -> io::Result<usize> {
        match self.pull_frames(stream)? {
            Pulled::Messages(n) => Ok(n),
            Pulled::Close => Err(io::Error::other("the server sent a close frame")),
        }
    }

    fn pull_frames(&mut self, stream: &mut Conn) -> io::Result<Pulled> {
        self.pull_payloads(stream, |_| {})
    }

    /// As `pull_frames`, handing each data frame's payload to `on_message` (server frames
    /// are unmasked).
    fn pull_payloads(
        &mut self,
        stream: &mut Conn,
        mut on_message: impl FnMut(&[u8]),
    ) -> io::Result<Pulled> {
        let mut chunk = [0u8; 16 * 1024];
        // One read, unless TLS decrypted more than it took (the socket would not wake us).
        loop {
            let n = match stream.read(&mut chunk) {
                Ok(0) => return Err(io::Error::other("the server closed the connection")),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            };
            self.buf.extend_from_slice(&chunk[..n]);
            if !stream.has_buffered() {
                break;
            }
        }
        let mut consumed = 0;
        let mut messages = 0;
        while let Some((opcode, header, payload)) = frame_head(&self.buf[consumed..]) {
            let len = header + payload as usize;
            if self.buf.len() - consumed < len {
                break;
            }
            if opcode == 0x8 {
                return Ok(Pulled::Close);
            }
            if opcode == 0x1 || opcode == 0x2 {
                messages += 1;
                on_message(&self.buf[consumed + header..consumed + len]);
            }
            consumed += len;
        }
        self.buf.drain(..consumed);
        Ok(Pulled::Messages(messages))
    }
}

enum Pulled {
    Messages(usize),
    Close,
}

/// The opcode, header size and payload length of the frame whose header starts `buf`, once
/// its length bytes are there. Masked frames are read too (their header counts the key): the
/// raw TCP floor echoes our own frames back verbatim.
fn frame_head(buf: &[u8]) -> Option<(u8, usize, u64)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (payload, size) = match b1 & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    Some((b0 & 0x0f, size + mask, payload))
}

// --- modes ------------------------------------------------------------------------------

fn rtt(options: &Options, duration: Duration) -> io::Result<String> {
    let mut stream = open(options)?;
    let message = frame(0x1, &[b'x'; SMALL]);
    let mut inbox = Inbox::default();
    let mut samples = Vec::new();
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let sent = Instant::now();
        stream.write_all(&message)?;
        while inbox.pull(&mut stream)? == 0 {}
        samples.push(sent.elapsed());
    }
    Ok(format!(
        "messages={} {}",
        samples.len(),
        percentiles(&mut samples)
    ))
}

/// Open `n` upgraded connections and register them, non-blocking, with a new epoll set.
fn open_many(options: &Options, n: usize) -> io::Result<(Epoll, Vec<Conn>)> {
    let epoll = Epoll::new()?;
    let mut streams = Vec::with_capacity(n);
    for i in 0..n {
        let stream = open(options)?;
        stream.tcp().set_nonblocking(true)?;
        epoll.add(stream.tcp(), i as u64)?;
        streams.push(stream);
    }
    Ok((epoll, streams))
}

fn conc(options: &Options, duration: Duration) -> io::Result<String> {
    let (epoll, mut streams) = open_many(options, options.connections)?;
    let message = frame(0x1, &[b'x'; SMALL]);
    let mut inboxes: Vec<Inbox> = streams.iter().map(|_| Inbox::default()).collect();
    let mut sent_at = vec![Instant::now(); streams.len()];
    for (i, stream) in streams.iter_mut().enumerate() {
        stream.write_all(&message)?;
        sent_at[i] = Instant::now();
    }
    let mut samples = Vec::with_capacity(1 << 20);
    let start = Instant::now();
    let end = start + duration;
    let mut events = vec![EMPTY_EVENT; 1024];
    while Instant::now() < end {
        for token in epoll.wait(&mut events, 50)? {
            let i = token as usize;
            let echoes = inboxes[i].pull(&mut streams[i])?;
            if echoes > 0 {
                let now = Instant::now();
                samples.push(now - sent_at[i]);
                streams[i].write_all(&message)?;
                sent_at[i] = now;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(format!(
        "connections={} messages={} msgs_per_s={:.0} {}",
        streams.len(),
        samples.len(),
        samples.len() as f64 / secs,
        percentiles(&mut samples)
    ))
}

fn paced(options: &Options, duration: Duration) -> io::Result<String> {
    let (epoll, mut streams) = open_many(options, options.connections)?;
    let n = streams.len();
    let message = frame(0x1, &[b'x'; SMALL]);
    let mut inboxes: Vec<Inbox> = streams.iter().map(|_| Inbox::default()).collect();
    let mut in_flight: Vec<VecDeque<Instant>> = vec![VecDeque::new(); n];
    // Sends are spread evenly: slot k goes to connection k % n at start + k * period / n.
    let slot = PACED_PERIOD / n as u32;
    let start = Instant::now();
    let end = start + duration;
    let (mut next_slot, mut sent) = (0u64, 0u64);
    let mut samples = Vec::new();
    let mut events = vec![EMPTY_EVENT; 1024];
    while Instant::now() < end {
        let now = Instant::now();
        while start + slot * next_slot as u32 <= now {
            let i = (next_slot % n as u64) as usize;
            streams[i].write_all(&message)?;
            in_flight[i].push_back(Instant::now());
            next_slot += 1;
            sent += 1;
        }
        // epoll waits in whole milliseconds: at least one, so sends go out in small batches
        // instead of the client spinning (its CPU would be taken from the server).
        let until_next =
            (start + slot * next_slot as u32).saturating_duration_since(Instant::now());
        let timeout_ms = until_next.as_millis().clamp(1, 50) as i32;
        for token in epoll.wait(&mut events, timeout_ms)? {
            let i = token as usize;
            let echoes = inboxes[i].pull(&mut streams[i])?;
            let now = Instant::now();
            for _ in 0..echoes {
                if let Some(sent_at) = in_flight[i].pop_front() {
                    samples.push(now - sent_at);
                }
            }
        }
    }
    let unanswered: usize = in_flight.iter().map(VecDeque::len).sum();
    Ok(format!(
        "connections={n} sent={sent} answered={} unanswered={unanswered} {}",
        samples.len(),
        percentiles(&mut samples)
    ))
}

fn idle(options: &Options) -> io::Result<String> {
    let pid = options
        .pid
        .ok_or_else(|| io::Error::other("idle needs --pid of the server"))?;
    let (rss_before, threads_before) = server_memory(pid)?;
    let host_before = host_memory()?;
    let message = frame(0x1, &[b'x'; SMALL]);
    let mut held = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        let mut stream = open(options)?;
        stream.write_all(&message)?;
        let mut inbox = Inbox::default();
        while inbox.pull(&mut stream)? == 0 {}
        held.push(stream);
    }
    std::thread::sleep(Duration::from_millis(500));
    let (rss_after, threads_after) = server_memory(pid)?;
    let host_after = host_memory()?;
    let n = held.len() as f64;
    // Host-wide: both ends of every connection (this client's sockets too, the same for every
    // server), and whatever else the host did meanwhile.
    let grown = |i: usize| (host_after[i] as f64 - host_before[i] as f64) / n;
    Ok(format!(
        "connections={} rss_per_conn_kib={:.1} threads_per_conn={:.2} \
         mem_available_drop_kib={:.1} kernel_stack_kib={:.1} slab_kib={:.1} page_tables_kib={:.2}",
        held.len(),
        (rss_after.saturating_sub(rss_before)) as f64 / n,
        (threads_after.saturating_sub(threads_before)) as f64 / n,
        -grown(0),
        grown(1),
        grown(2),
        grown(3),
    ))
}

/// The host's MemAvailable, KernelStack, Slab and PageTables, in KiB (/proc/meminfo).
fn host_memory() -> io::Result<[u64; 4]> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let mut values = [0; 4];
    for (value, name) in
        values
            .iter_mut()
            .zip(["MemAvailable:", "KernelStack:", "Slab:", "PageTables:"])
    {
        *value = meminfo
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no {name} in /proc/meminfo")))?;
    }
    Ok(values)
}

fn handshake(options: &Options, duration: Duration) -> io::Result<String> {
    let close = frame(0x8, &1000u16.to_be_bytes());
    let start = Instant::now();
    let end = start + duration;
    let mut count = 0u64;
    while Instant::now() < end {
        let mut stream = open(options)?;
        stream.write_all(&close)?;
        // Done at the server's close frame (or its end of the connection).
        let mut inbox = Inbox::default();
        while let Ok(Pulled::Messages(_)) = inbox.pull_frames(&mut stream) {}
        count += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(format!(
        "handshakes={count} per_s={:.0}",
        count as f64 / secs
    ))
}

// --- measurement ------------------------------------------------------------------------

fn percentiles(samples: &mut [Duration]) -> String {
    if samples.is_empty() {
        return "p50_us=nan p99_us=nan max_us=nan".into();
    }
    samples.sort_unstable();
    let at =
        |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    format!(
        "p50_us={:.1} p99_us={:.1} max_us={:.1}",
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

/// Server RSS (KiB) and thread count, from /proc.
fn server_memory(pid: u32) -> io::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no {name} in /proc/{pid}/status")))
    };
    Ok((field("VmRSS:")?, field("Threads:")?))
}

/// CPU used by this process and (with --pid) the server, as shares of the wall time.
struct CpuMeter {
    wall: Instant,
    own: f64,
    server_pid: Option<u32>,
    server: f64,
}

impl CpuMeter {
    fn start(server_pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            wall: Instant::now(),
            own: own_cpu_seconds(),
            server_pid,
            server: server_pid.and_then(process_cpu_seconds).unwrap_or(0.0),
        }
    }

    fn finish(&self) -> String {
        let wall = self.wall.elapsed().as_secs_f64();
        let mut text = format!("client_cpu={:.2}", (own_cpu_seconds() - self.own) / wall);
        if let Some(now) = self.server_pid.and_then(process_cpu_seconds) {
            text += &format!(" server_cpu={:.2}", (now - self.server) / wall);
        }
        text
    }
}

fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    Some(ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64)
}

//! (feature `redis`) The cluster's Redis client: its address, one connection, commands in
//! RESP2 (pipelined), and replies read within a size limit and a deadline.
//!
//! Our own rather than a crate's, because what Redis sends has to be bounded like what a
//! client sends: a reply may announce any length (`$4000000000`), any count (`*2147483647`)
//! or nesting, and trickle in slowly. Here a reply is refused as soon as it would pass the
//! caller's `limit` in bytes (announced or received), nests deeper than the cluster's own
//! replies do, or is not complete by the caller's deadline: the caller drops the link. Memory
//! for a reply grows with what has arrived, never with what was announced.

use crate::net::http::percent_decode;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Replies nest this deep at most: a pub/sub message or an `HGETALL` is an array of strings.
const MAX_DEPTH: usize = 2;
/// What each element of an array counts against the limit besides its bytes: a huge count
/// of tiny elements is refused before their `Reply`s pile up.
const ELEMENT_COST: usize = std::mem::size_of::<Reply>();
/// A `+`, `-`, `:`, `$` or `*` line longer than this is not Redis.
const MAX_LINE: usize = 64 * 1024;

/// Where Redis is, from `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` or
/// `unix:///PATH[?db=DB&pass=PASSWORD&user=USER]` (also spelled `redis+unix://`).
#[derive(Clone, Debug, PartialEq)]
pub struct Address {
    target: Target,
    user: Option<String>,
    password: Option<String>,
    db: u32,
}

#[derive(Clone, Debug, PartialEq)]
enum Target {
    /// `HOST:PORT`, as `ToSocketAddrs` takes it.
    Tcp(String),
    Unix(PathBuf),
}

impl Address {
    /// Parse a Redis URL; the error says what is wrong and the forms there are.
    pub fn parse(url: &str) -> Result<Address, String> {
        let bad = |why: &str| {
            format!(
                "`redis` {url}: {why}; give it as redis://HOST:PORT[/DB] (with a password: \
                 redis://:PASSWORD@HOST:PORT) or unix:///PATH"
            )
        };
        if let Some(rest) = url
            .strip_prefix("unix://")
            .or_else(|| url.strip_prefix("redis+unix://"))
        {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            if !path.starts_with('/') {
                return Err(bad("a Unix socket needs an absolute path"));
            }
            let mut address = Address {
                target: Target::Unix(PathBuf::from(path)),
                user: None,
                password: None,
                db: 0,
            };
            for pair in query.split('&').filter(|pair| !pair.is_empty()) {
                let decoded = |value| percent_decode(value).ok_or_else(|| bad("bad %-escape"));
                match pair.split_once('=') {
                    Some(("db", value)) => address.db = value.parse().map_err(|_| bad("bad db"))?,
                    Some(("pass", value)) => address.password = Some(decoded(value)?),
                    Some(("user", value)) => address.user = Some(decoded(value)?),
                    _ => return Err(bad("a socket path takes ?db=N&pass=PASSWORD&user=USER")),
                }
            }
            if address.user.is_some() && address.password.is_none() {
                return Err(bad("a user without a password"));
            }
            return Ok(address);
        }
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| bad("not a redis:// URL"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((credentials, host_port)) => (Some(credentials), host_port),
            None => (None, authority),
        };
        let (user, password) = match credentials.map(|c| c.split_once(':').unwrap_or((c, ""))) {
            None => (None, None),
            Some((user, password)) => {
                let user = percent_decode(user).ok_or_else(|| bad("bad %-escape"))?;
                let password = percent_decode(password).ok_or_else(|| bad("bad %-escape"))?;
                match (user.is_empty(), password.is_empty()) {
                    (_, true) => return Err(bad("a user without a password")),
                    (true, false) => (None, Some(password)),
                    (false, false) => (Some(user), Some(password)),
                }
            }
        };
        if host_port.is_empty() {
            return Err(bad("no host"));
        }
        // A port is what follows the last colon, unless that colon is inside [an IPv6 address].
        let target = match host_port.rsplit_once(':') {
            Some((_, port)) if !port.contains(']') => {
                port.parse::<u16>().map_err(|_| bad("bad port"))?;
                host_port.to_string()
            }
            _ => format!("{host_port}:6379"),
        };
        let db = match path.trim_end_matches('/') {
            "" => 0,
            db => db
                .parse()
                .map_err(|_| bad("the path must be a database number"))?,
        };
        Ok(Address {
            target: Target::Tcp(target),
            user,
            password,
            db,
        })
    }

    /// Connect, log in and choose the database, each step within `timeout`.
    pub fn connect(&self, timeout: Duration, limit: usize) -> Result<Connection, Error> {
        let stream = match &self.target {
            Target::Tcp(host_port) => Stream::Tcp(connect_tcp(host_port, timeout)?),
            Target::Unix(path) => Stream::Unix(UnixStream::connect(path)?),
        };
        let mut connection = Connection {
            reader: BufReader::with_capacity(16 * 1024, stream),
            limit,
            timeout,
        };
        let mut commands = Commands::default();
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => {
                commands.add(&[b"AUTH", user.as_bytes(), password.as_bytes()])
            }
            (None, Some(password)) => commands.add(&[b"AUTH", password.as_bytes()]),
            _ => &mut commands,
        };
        if self.db != 0 {
            commands.add(&[b"SELECT", self.db.to_string().as_bytes()]);
        }
        connection.query(&commands)?;
        Ok(connection)
    }
}

/// For log lines: where, never who or the password.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Tcp(host_port) => write!(f, "{host_port}")?,
            Target::Unix(path) => write!(f, "{}", path.display())?,
        }
        match self.db {
            0 => Ok(()),
            db => write!(f, " (database {db})"),
        }
    }
}

fn connect_tcp(host_port: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{host_port} has no address"),
    );
    for addr in host_port.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// What went wrong with Redis.
#[derive(Debug)]
pub enum Error {
    /// The socket failed, or Redis did not answer in time (`is_timeout`).
    Io(io::Error),
    /// A reply would have passed the limit (in bytes).
    TooLarge(usize),
    /// What came is not RESP2 as the cluster's commands are answered.
    Protocol(&'static str),
    /// Redis refused a command (`-ERR ...`).
    Refused(String),
}

impl Error {
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Io(error)
            if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Error {
        Error::Io(error)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(error) if self.is_timeout() => write!(f, "no answer in time ({error})"),
            Error::Io(error) => write!(f, "{error}"),
            Error::TooLarge(limit) => write!(
                f,
                "a reply larger than {limit} bytes (the limit: --max-message-size plus 1 MiB)"
            ),
            Error::Protocol(what) => write!(f, "not a Redis reply: {what}"),
            Error::Refused(message) => write!(f, "redis refused a command: {message}"),
        }
    }
}

/// One reply, as RESP2 has them.
#[derive(Debug, PartialEq)]
pub enum Reply {
    Status(String),
    /// An error reply; `Connection::query` turns it into `Error::Refused`.
    Failure(String),
    Integer(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
}

impl Reply {
    /// The strings of an array reply (`SMEMBERS`, `HGETALL`, a pub/sub message); anything
    /// else, or an element that is not a string, is none.
    pub fn into_strings(self) -> Vec<Vec<u8>> {
        match self {
            Reply::Array(items) => items
                .into_iter()
                .filter_map(|item| match item {
                    Reply::Bulk(bytes) => Some(bytes),
                    Reply::Status(text) => Some(text.into_bytes()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Commands to send in one go (a pipeline), encoded as they are added.
#[derive(Default)]
pub struct Commands {
    encoded: Vec<u8>,
    count: usize,
}

impl Commands {
    /// A pipeline of one command.
    pub fn one(parts: &[&[u8]]) -> Commands {
        let mut commands = Commands::default();
        commands.add(parts);
        commands
    }

    /// One command: its name, then its arguments.
    pub fn add(&mut self, parts: &[&[u8]]) -> &mut Commands {
        self.encoded
            .extend_from_slice(format!("*{}\r\n", parts.len()).as_bytes());
        for part in parts {
            self.encoded
                .extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
            self.encoded.extend_from_slice(part);
            self.encoded.extend_from_slice(b"\r\n");
        }
        self.count += 1;
        self
    }
}

/// One connection to Redis.
pub struct Connection {
    reader: BufReader<Stream>,
    /// Most bytes one reply may take.
    limit: usize,
    /// How long a command and its replies may take.
    timeout: Duration,
}

impl Connection {
    /// Send `commands`, read one reply for each (all of them, so that the connection stays in
    /// step), and give them back in order, or the first refusal. No commands: nothing is sent.
    pub fn query(&mut self, commands: &Commands) -> Result<Vec<Reply>, Error> {
        if commands.count == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + self.timeout;
        self.send(commands, deadline)?;
        let mut replies = Vec::with_capacity(commands.count);
        for _ in 0..commands.count {
            replies.push(self.reply(deadline)?);
        }
        match replies.iter().find_map(|reply| match reply {
            Reply::Failure(message) => Some(message.clone()),
            _ => None,
        }) {
            Some(message) => Err(Error::Refused(message)),
            None => Ok(replies),
        }
    }

    /// Send `commands` without reading their replies (a subscription's are messages).
    pub fn send(&mut self, commands: &Commands, deadline: Instant) -> Result<(), Error> {
        let stream = self.reader.get_mut();
        stream.set_write_timeout(Some(left(deadline)?))?;
        stream.write_all(&commands.encoded)?;
        Ok(())
    }

    /// Wait until a reply starts to arrive, at most `wait`; false when none did.
    pub fn wait_for_reply(&self, wait: Duration) -> Result<bool, Error> {
        if !self.reader.buffer().is_empty() {
            return Ok(true);
        }
        let fd = self.reader.get_ref().as_fd().as_raw_fd();
        Ok(crate::net::wake::readable_within(fd, wait)?)
    }

    /// The next reply, complete by `deadline`.
    pub fn reply(&mut self, deadline: Instant) -> Result<Reply, Error> {
        let mut budget = self.limit;
        self.value(deadline, &mut budget, 0)
    }

    fn value(
        &mut self,
        deadline: Instant,
        budget: &mut usize,
        depth: usize,
    ) -> Result<Reply, Error> {
        let line = self.line(deadline, budget)?;
        let (kind, rest) = line.split_first().ok_or(Error::Protocol("an empty line"))?;
        let text = || String::from_utf8_lossy(rest).into_owned();
        let number = || -> Result<i64, Error> {
            std::str::from_utf8(rest)
                .ok()
                .and_then(|digits| digits.parse().ok())
                .ok_or(Error::Protocol("a length or number that is not one"))
        };
        Ok(match kind {
            b'+' => Reply::Status(text()),
            b'-' => Reply::Failure(text()),
            b':' => Reply::Integer(number()?),
            b'$' => match number()? {
                -1 => Reply::Nil,
                length if length < 0 => return Err(Error::Protocol("a negative length")),
                length => Reply::Bulk(self.bulk(length as u64, deadline, budget)?),
            },
            b'*' => match number()? {
                -1 => Reply::Nil,
                count if count < 0 => return Err(Error::Protocol("a negative count")),
                _ if depth == MAX_DEPTH => return Err(Error::Protocol("arrays nested too deep")),
                count => {
                    let count = count as u64;
                    take(
                        budget,
                        count.saturating_mul(ELEMENT_COST as u64),
                        self.limit,
                    )?;
                    // Room for what has arrived, not for what was announced.
                    let mut items = Vec::with_capacity(count.min(64) as usize);
                    for _ in 0..count {
                        items.push(self.value(deadline, budget, depth + 1)?);
                    }
                    Reply::Array(items)
                }
            },
            _ => return Err(Error::Protocol("an unknown reply type")),
        })
    }

    /// One line, without its CRLF.
    fn line(&mut self, deadline: Instant, budget: &mut usize) -> Result<Vec<u8>, Error> {
        let mut line = Vec::new();
        loop {
            let available = self.fill(deadline)?;
            let (taken, done) = match available.iter().position(|&byte| byte == b'\n') {
                Some(at) => (at + 1, true),
                None => (available.len(), false),
            };
            line.extend_from_slice(&available[..taken]);
            self.reader.consume(taken);
            take(budget, taken as u64, self.limit)?;
            if line.len() > MAX_LINE {
                return Err(Error::Protocol("a line too long"));
            }
            if done {
                return match line.strip_suffix(b"\r\n") {
                    Some(content) => Ok(content.to_vec()),
                    None => Err(Error::Protocol("a line not ended by CRLF")),
                };
            }
        }
    }

    /// A bulk string's `length` bytes and its CRLF.
    fn bulk(
        &mut self,
        length: u64,
        deadline: Instant,
        budget: &mut usize,
    ) -> Result<Vec<u8>, Error> {
        take(budget, length.saturating_add(2), self.limit)?;
        let length = length as usize;
        let mut data = Vec::with_capacity(length.min(64 * 1024));
        while data.len() < length + 2 {
            let available = self.fill(deadline)?;
            let taken = available.len().min(length + 2 - data.len());
            data.extend_from_slice(&available[..taken]);
            self.reader.consume(taken);
        }
        if !data.ends_with(b"\r\n") {
            return Err(Error::Protocol("a bulk string not ended by CRLF"));
        }
        data.truncate(length);
        Ok(data)
    }

    /// What has arrived and is not yet taken, waiting (until `deadline`) when nothing has.
    fn fill(&mut self, deadline: Instant) -> Result<&[u8], Error> {
        if self.reader.buffer().is_empty() {
            let wait = left(deadline)?;
            self.reader.get_ref().set_read_timeout(Some(wait))?;
        }
        let available = self.reader.fill_buf()?;
        if available.is_empty() {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "redis closed the connection",
            )));
        }
        Ok(available)
    }
}

/// Count `bytes` against what is left of a reply's limit.
fn take(budget: &mut usize, bytes: u64, limit: usize) -> Result<(), Error> {
    match usize::try_from(bytes)
        .ok()
        .and_then(|b| budget.checked_sub(b))
    {
        Some(rest) => {
            *budget = rest;
            Ok(())
        }
        None => Err(Error::TooLarge(limit)),
    }
}

/// Time left until `deadline`; past it, a timeout.
fn left(deadline: Instant) -> Result<Duration, Error> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(wait) if !wait.is_zero() => Ok(wait),
        _ => Err(Error::Io(io::ErrorKind::TimedOut.into())),
    }
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.set_read_timeout(timeout),
            Stream::Unix(stream) => stream.set_read_timeout(timeout),
        }
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(stream) => stream.set_write_timeout(timeout),
            Stream::Unix(stream) => stream.set_write_timeout(timeout),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(stream) => stream.as_fd(),
            Stream::Unix(stream) => stream.as_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => stream.read(buf),
            Stream::Unix(stream) => stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => stream.write(buf),
            Stream::Unix(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;

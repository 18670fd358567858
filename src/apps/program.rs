//! Programs per connection (`--run PATH=COMMAND`), websocketd's model: each connection to the
//! path starts the program with a CGI-style environment describing the request; each text
//! message from the client is a line on its stdin, each line it prints is a text message
//! (binary mode: bytes both ways, each read of its stdout one binary message); its stderr goes
//! to the log. Still one thread per connection: it waits on the socket and the program's
//! stderr together. The program's stdout is read by threads that all programs share, one per
//! core (`output_reader.rs`), which send each line straight to its client: a busy server then
//! wakes one thread for many replies, where each connection's own woke for each of its replies.
//!
//! Endings: the program exits -> what it printed goes out, then close 1000 for status 0, 1011
//! otherwise. The client closes or vanishes, or the server shuts down -> stdin is closed and
//! the program ends (see `child.rs`). A line over `max_message_size` -> 1009; a program that
//! prints faster than its client reads -> the client's queue fills and closes it with 1008.

use crate::apps::child::{self, Child};
use crate::apps::output_reader::{Attached, Drain};
use crate::net::wake;
use crate::ops::config::{Program, find_executable};
use crate::ops::escape::escape;
use crate::protocol::connection::{Connection, Incoming};
use crate::protocol::outbox::Sender;
use crate::protocol::routes::Route;
use log::{info, warn};
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Error, Message};

/// What one read from a program's stdout or stderr takes.
const READ_CHUNK: usize = 16 * 1024;
/// Longest stderr line logged; the rest of it is cut.
const MAX_LOG_LINE: usize = 1024;
/// Stderr lines logged per connection and second; more are counted and said once.
const LOG_LINES_PER_SECOND: u32 = 20;
/// The grace a program gets at shutdown, whatever `program_grace` says: every connection
/// thread must be done within the server's drain.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// What every program route shares.
pub struct Settings {
    /// How long a program has to exit after its stdin closes, and again after SIGTERM.
    pub grace: Duration,
    /// Variables of wsecho's own environment the programs get (`PATH` always).
    pub passed: Vec<(String, String)>,
    /// Longest line (message) either way.
    pub max_message_size: usize,
    /// A program that takes none of its input for this long is given up on.
    pub stdin_patience: Duration,
}

/// The route that runs `program` for each connection.
pub fn route(mut program: Program, settings: Arc<Settings>) -> Route {
    // Found in PATH now, once: given a full path, the program starts through `posix_spawn` (a
    // clone that shares memory until the exec) rather than a fork of the whole server, which a
    // changed `PATH` would force: about twice the programs started per second.
    if let Some(name) = program.command.first_mut()
        && let Ok(found) = find_executable(name)
    {
        *name = found;
    }
    let program = Arc::new(program);
    Route::new(move |client: &mut Connection| serve(client, &program, &settings))
}

fn serve(client: &mut Connection, program: &Program, settings: &Settings) -> Result<(), Error> {
    let environment = environment(client, settings);
    let mut child = match Child::spawn(&program.command, environment) {
        Ok(child) => child,
        Err(error) => {
            warn!(
                "#{} cannot start {}: {error}",
                client.id(),
                escape(&program.command.join(" "))
            );
            return client.close(CloseCode::Error, &cut(&format!("cannot start: {error}")));
        }
    };
    let output = Output {
        sender: client.sender(),
        id: client.id(),
        binary: program.binary,
        max: settings.max_message_size,
        line: Vec::new(),
    };
    // Dropped before `child`, so before its stdout closes.
    let mut session = Session {
        id: client.id(),
        binary: program.binary,
        stdout: Attached::new(child.stdout_fd().unwrap_or(-1), output),
        chunk: Vec::new(),
        log: StderrLog::new(client.id()),
    };
    let outcome = session.run(client, &mut child, settings);
    // What it prints from now on is not sent.
    session.stdout.detach();
    let grace = if client.is_shutting_down() {
        SHUTDOWN_GRACE.min(settings.grace)
    } else {
        settings.grace
    };
    let status = child.end(grace);
    session.drain_stderr(&mut child);
    info!("#{} {}", session.id, child::describe(status));
    match outcome {
        Ok(Ending::ProgramClosed) => {
            session.stdout.lock().drain.flush_line();
            match status.success() {
                true => client.close(CloseCode::Normal, ""),
                false => client.close(CloseCode::Error, &child::describe(status)),
            }
        }
        Ok(Ending::Close(code, reason)) => client.close(code, &reason),
        Ok(Ending::ClientGone) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Why the exchange with a program stopped.
enum Ending {
    /// Its stdout closed (it exited, most likely).
    ProgramClosed,
    /// The connection closed, or broke.
    ClientGone,
    /// Close the connection with this code and reason.
    Close(CloseCode, String),
}

struct Session {
    id: u64,
    binary: bool,
    /// Stdout, read by the thread all programs share while it can (see `output_reader.rs`),
    /// and where it goes.
    stdout: Attached<Output>,
    /// Where stdout is read into by this thread, kept from one read to the next.
    chunk: Vec<u8>,
    log: StderrLog,
}

/// Where a program's stdout goes: its lines (or reads) as messages to the client.
struct Output {
    sender: Sender,
    id: u64,
    binary: bool,
    max: usize,
    /// Stdout since its last newline (text mode).
    line: Vec<u8>,
}

impl Session {
    fn run(
        &mut self,
        client: &mut Connection,
        child: &mut Child,
        settings: &Settings,
    ) -> Result<Ending, Error> {
        loop {
            if child.stdout_closed() {
                return Ok(Ending::ProgramClosed);
            }
            let watched = self.watched(child);
            match client.receive_or_watched(&watched)? {
                Incoming::Closed => return Ok(Ending::ClientGone),
                Incoming::Watched(ready) => {
                    if let Some(ending) = self.take_outputs(child, &watched, ready) {
                        return Ok(ending);
                    }
                }
                Incoming::Message(message) => {
                    let input = match (message, self.binary) {
                        (Message::Text(text), false) => {
                            let mut line = Vec::from(text.as_bytes());
                            line.push(b'\n');
                            line
                        }
                        (Message::Binary(data), true) => data.to_vec(),
                        (_, binary) => {
                            let wanted = if binary { "binary" } else { "text" };
                            let reason = format!("this path takes {wanted} messages");
                            return Ok(Ending::Close(CloseCode::Unsupported, reason));
                        }
                    };
                    if let Some(ending) = self.feed(child, &input, settings.stdin_patience) {
                        return Ok(ending);
                    }
                }
            }
        }
    }

    /// Write `input` to the program's stdin, reading its output meanwhile (a program blocked
    /// on a full stdout would never read on). `Some` when the exchange must stop.
    fn feed(&mut self, child: &mut Child, mut input: &[u8], patience: Duration) -> Option<Ending> {
        let mut deadline = Instant::now() + patience;
        while !input.is_empty() {
            match child.write_stdin(input) {
                Ok(n) => {
                    input = &input[n..];
                    deadline = Instant::now() + patience;
                    continue;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                // It closed its stdin: what it prints still counts, until its stdout closes.
                Err(_) => return None,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let reason = "the program does not read its input";
                warn!("#{} {reason}; closing with 1011", self.id);
                return Some(Ending::Close(CloseCode::Error, reason.to_string()));
            }
            let watched = self.watched(child);
            let ready = child.wait_for_stdin_or(&watched, left);
            if ready != 0 {
                if let Some(ending) = self.take_outputs(child, &watched, ready) {
                    return Some(ending);
                }
                if child.stdout_closed() {
                    return Some(Ending::ProgramClosed);
                }
            }
        }
        None
    }

    /// The program's pipes to wait on: stderr for what it holds, and stdout too, unless the
    /// shared thread reads it (then only for its hang-up).
    fn watched(&self, child: &Child) -> Vec<libc::pollfd> {
        let stdout = child.stdout_fd();
        let stdout = stdout.map(|fd| wake::watch(fd, !self.stdout.is_shared()));
        let stderr = child.stderr_fd().map(|fd| wake::watch(fd, true));
        stdout.into_iter().chain(stderr).collect()
    }

    /// Take what the program has printed, for the pipes of `watched` that `ready` says woke
    /// us (bit `i` for the `i`th): stdout to the client, stderr to the log.
    fn take_outputs(
        &mut self,
        child: &mut Child,
        watched: &[libc::pollfd],
        ready: u8,
    ) -> Option<Ending> {
        let woke = |fd: Option<RawFd>| {
            (0..watched.len()).any(|i| ready & 1 << i != 0 && Some(watched[i].fd) == fd)
        };
        let (stdout, stderr) = (woke(child.stdout_fd()), woke(child.stderr_fd()));
        if stdout && let Some(ending) = self.read_stdout(child) {
            return Some(ending);
        }
        if stderr {
            self.drain_stderr(child);
        }
        None
    }

    /// Read stdout on this thread: what it holds (not shared), or what is left once it hung
    /// up (taken back from the shared thread first).
    fn read_stdout(&mut self, child: &mut Child) -> Option<Ending> {
        self.stdout.detach();
        let mut output = self.stdout.lock();
        let chunk = &mut self.chunk;
        chunk.resize(READ_CHUNK, 0);
        loop {
            match child.read_stdout(chunk) {
                Ok(n @ 1..) => {
                    if let Some(ending) = output.drain.lines(&chunk[..n]) {
                        return Some(ending);
                    }
                    // A short read took all the pipe held: no need to ask again.
                    if n < chunk.len() {
                        return None;
                    }
                }
                _ => return None,
            }
        }
    }

    fn drain_stderr(&mut self, child: &mut Child) {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = child.read_stderr(&mut chunk) {
            self.log.take(&chunk[..n]);
        }
    }
}

impl Drain for Output {
    /// On the shared thread: as `lines`, asking the connection to close where the exchange
    /// must stop (its thread then ends the program).
    fn take(&mut self, bytes: &[u8]) -> bool {
        match self.lines(bytes) {
            None => true,
            Some(Ending::Close(code, reason)) => {
                let _ = self.sender.close(code, &reason);
                false
            }
            Some(_) => false,
        }
    }
}

impl Output {
    /// Stdout bytes: each line (text mode) or each read (binary mode) is one message.
    fn lines(&mut self, bytes: &[u8]) -> Option<Ending> {
        if self.binary {
            return self.send(Message::binary(bytes.to_vec()));
        }
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            if self.line.len() > self.max {
                return Some(self.too_long());
            }
            let line = std::mem::take(&mut self.line);
            if let Some(ending) = self.send(text_message(line)) {
                return Some(ending);
            }
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > self.max {
            return Some(self.too_long());
        }
        None
    }

    fn too_long(&self) -> Ending {
        let reason = format!("the program printed a line longer than {} bytes", self.max);
        warn!("#{} {reason}; closing with 1009", self.id);
        Ending::Close(CloseCode::Size, reason)
    }

    /// A message to the client, never waiting for it: a client that does not keep up is
    /// closed by its queue's limit (1008), and the exchange stops.
    fn send(&self, message: Message) -> Option<Ending> {
        match self.sender.send(message) {
            Ok(()) => None,
            Err(_) => Some(Ending::ClientGone),
        }
    }

    /// The unfinished last line of a program that has ended.
    fn flush_line(&mut self) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            let _ = self.sender.send(text_message(line));
        }
    }
}

/// A program's stderr in the log: one escaped line per line, prefixed with the connection, at
/// most `LOG_LINES_PER_SECOND`.
struct StderrLog {
    id: u64,
    partial: Vec<u8>,
    second: Instant,
    logged: u32,
    skipped: u64,
}

impl StderrLog {
    fn new(id: u64) -> StderrLog {
        StderrLog {
            id,
            partial: Vec::new(),
            second: Instant::now(),
            logged: 0,
            skipped: 0,
        }
    }

    fn take(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte == b'\n' {
                let line = std::mem::take(&mut self.partial);
                self.line(&line);
            } else if self.partial.len() < MAX_LOG_LINE {
                self.partial.push(byte);
            }
        }
    }

    /// One line for the lines not logged since the last such line, if any.
    fn say_skipped(&mut self) {
        if self.skipped > 0 {
            warn!(
                "#{} program stderr: {} lines not logged (more than {LOG_LINES_PER_SECOND} a second)",
                self.id, self.skipped
            );
            self.skipped = 0;
        }
    }

    fn line(&mut self, line: &[u8]) {
        if self.second.elapsed() >= Duration::from_secs(1) {
            self.say_skipped();
            (self.second, self.logged) = (Instant::now(), 0);
        }
        if self.logged >= LOG_LINES_PER_SECOND {
            self.skipped += 1;
            return;
        }
        self.logged += 1;
        let text = String::from_utf8_lossy(line);
        warn!("#{} program stderr: {}", self.id, escape(&text));
    }
}

impl Drop for StderrLog {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line);
        }
        self.say_skipped();
    }
}

/// The program's environment, as websocketd gives it (`man websocketd`): the request in CGI's
/// variables, each header as `HTTP_NAME`, and only the variables of wsecho's own that
/// `settings` passes.
fn environment(client: &Connection, settings: &Settings) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = settings.passed.clone();
    let peer = client.peer();
    let local = client.local_addr();
    let headers = client.headers();
    let host = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("Host"))
        .map(|(_, value)| crate::net::http::host_of(value));
    let server_name = match (host, local) {
        (Some(host), _) if !host.is_empty() => host.to_string(),
        (_, Some(local)) => local.ip().to_string(),
        _ => "localhost".to_string(),
    };
    let query = client.query();
    let target = match query {
        "" => client.path().to_string(),
        query => format!("{}?{query}", client.path()),
    };
    for (name, value) in [
        ("REMOTE_ADDR", peer.ip().to_string()),
        ("REMOTE_HOST", peer.ip().to_string()),
        ("REMOTE_PORT", peer.port().to_string()),
        ("SERVER_NAME", server_name),
        (
            "SERVER_PORT",
            local.map_or(0, |local| local.port()).to_string(),
        ),
        ("SERVER_PROTOCOL", "HTTP/1.1".to_string()),
        (
            "SERVER_SOFTWARE",
            format!("wsecho/{}", env!("CARGO_PKG_VERSION")),
        ),
        ("GATEWAY_INTERFACE", "websocketd-CGI/0.1".to_string()),
        ("REQUEST_METHOD", "GET".to_string()),
        ("REQUEST_URI", target),
        ("SCRIPT_NAME", client.path().to_string()),
        ("PATH_INFO", String::new()),
        ("QUERY_STRING", query.to_string()),
    ] {
        vars.push((name.to_string(), value));
    }
    if client.is_tls() {
        vars.push(("HTTPS".to_string(), "on".to_string()));
    }
    // CGI's names for who the client authenticated as: its token's `sub`.
    if let Some(subject) = client.subject() {
        vars.push(("AUTH_TYPE".to_string(), "Bearer".to_string()));
        vars.push(("REMOTE_USER".to_string(), subject.to_string()));
    }
    for (name, value) in headers {
        let Some(variable) = header_variable(name) else {
            continue;
        };
        match vars.iter_mut().find(|(existing, _)| *existing == variable) {
            // A header sent twice: its values joined, as HTTP reads them.
            Some((_, joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            None => vars.push((variable, value.to_string())),
        }
    }
    vars
}

/// `HTTP_` and the header's name in upper case with `-` as `_`; `None` for a name that would
/// make a strange variable (anything else than letters, digits and `-`).
fn header_variable(name: &str) -> Option<String> {
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    Some(format!(
        "HTTP_{}",
        name.to_ascii_uppercase().replace('-', "_")
    ))
}

/// A line as a text message; bytes that are not UTF-8 become U+FFFD.
fn text_message(line: Vec<u8>) -> Message {
    let text = String::from_utf8(line)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned());
    Message::text(text)
}

/// A close reason fits 123 bytes.
fn cut(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

#[cfg(test)]
mod tests;

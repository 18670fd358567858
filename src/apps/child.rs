//! One connection's program, as a process: started in a process group of its own with its
//! environment given whole, pipes for stdin, stdout and stderr that never block the connection's
//! thread, and ended however it ends (stdin closed, then SIGTERM to its whole group after a
//! grace period, then SIGKILL), always reaped: no zombie and no straggler is ever left.

use crate::net::wake;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often an ending program is looked at while it has time to exit.
const EXIT_POLL: Duration = Duration::from_millis(5);

/// A running program and its pipes (each `None` once closed).
pub struct Child {
    process: std::process::Child,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    /// Set once reaped.
    status: Option<ExitStatus>,
}

impl Child {
    /// Start `command` (a program and its arguments, never through a shell) with exactly
    /// `environment`.
    pub fn spawn(command: &[String], environment: Vec<(String, String)>) -> io::Result<Child> {
        let (program, arguments) = command
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no command"))?;
        let mut process = Command::new(program)
            .args(arguments)
            .env_clear()
            .envs(environment)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: ending it reaches whatever it started too.
            .process_group(0)
            .spawn()?;
        let (stdin, stdout, stderr) = (
            process.stdin.take(),
            process.stdout.take(),
            process.stderr.take(),
        );
        let pipes = [
            stdin.as_ref().map(AsRawFd::as_raw_fd),
            stdout.as_ref().map(AsRawFd::as_raw_fd),
            stderr.as_ref().map(AsRawFd::as_raw_fd),
        ];
        let mut child = Child {
            process,
            stdin,
            stdout,
            stderr,
            status: None,
        };
        for fd in pipes.into_iter().flatten() {
            if let Err(error) = set_nonblocking(fd) {
                child.kill_and_reap();
                return Err(error);
            }
        }
        Ok(child)
    }

    /// The stdout pipe, while open.
    pub fn stdout_fd(&self) -> Option<RawFd> {
        self.stdout.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// The stderr pipe, while open.
    pub fn stderr_fd(&self) -> Option<RawFd> {
        self.stderr.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// The stdin pipe, while open.
    pub fn stdin_fd(&self) -> Option<RawFd> {
        self.stdin.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// What stdout holds now: `Ok(0)` once it is closed (then it is let go), `WouldBlock` when
    /// nothing is there.
    pub fn read_stdout(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_pipe(&mut self.stdout, buf)
    }

    /// What stderr holds now, as `read_stdout`.
    pub fn read_stderr(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_pipe(&mut self.stderr, buf)
    }

    /// Whether stdout has been closed.
    pub fn stdout_closed(&self) -> bool {
        self.stdout.is_none()
    }

    /// Write what stdin takes now of `bytes`: `WouldBlock` when it takes nothing; `BrokenPipe`
    /// once the program has closed it.
    pub fn write_stdin(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let stdin = self.stdin.as_mut().ok_or(io::ErrorKind::BrokenPipe)?;
        loop {
            match stdin.write(bytes) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                written => return written,
            }
        }
    }

    /// Wait up to `timeout` until stdin takes bytes or one of `watched` (its output pipes, see
    /// `wake::watch`) is ready; which of `watched` are, bit `i` for the `i`th, to be read
    /// before stdin is tried again.
    pub fn wait_for_stdin_or(&self, watched: &[libc::pollfd], timeout: Duration) -> u8 {
        let stdin = self.stdin_fd().map(|fd| libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        });
        let mut polls: Vec<libc::pollfd> =
            stdin.into_iter().chain(watched.iter().copied()).collect();
        let millis = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: poll reads and writes only the pollfds we own, for the call.
        let ready = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, millis) };
        let outputs = &polls[usize::from(self.stdin.is_some())..];
        match ready {
            1.. => wake::ready_bits(outputs),
            _ => 0,
        }
    }

    /// End it: stdin is closed; it has `grace` to exit, then its group gets SIGTERM and
    /// another `grace`, then SIGKILL. Whatever is left of its group goes too, and it is reaped.
    pub fn end(&mut self, grace: Duration) -> ExitStatus {
        self.stdin = None;
        if !self.exits_within(grace) {
            self.signal_group(libc::SIGTERM);
            if !self.exits_within(grace) {
                self.signal_group(libc::SIGKILL);
            }
        }
        self.reap()
    }

    /// Whether it has exited by `wait` from now (looked at, not reaped: its process group
    /// cannot be reused while it is unreaped).
    fn exits_within(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            if self.has_exited() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(EXIT_POLL.min(deadline.saturating_duration_since(Instant::now())));
        }
    }

    fn has_exited(&self) -> bool {
        if self.status.is_some() {
            return true;
        }
        // SAFETY: waitid fills the siginfo we own; WNOWAIT leaves the child unreaped.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let found = libc::waitid(
                libc::P_PID,
                self.process.id() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            found == 0 && info.si_pid() != 0
        }
    }

    /// Signal its whole group, while it is unreaped (so the group's id is still its own).
    fn signal_group(&self, signal: libc::c_int) {
        if self.status.is_none() {
            // SAFETY: a signal to a process group we created; the leader is unreaped.
            unsafe {
                libc::kill(-(self.process.id() as libc::pid_t), signal);
            }
        }
    }

    /// Kill what is left of its group, then reap it (waiting, now that it must be ending).
    fn reap(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        self.signal_group(libc::SIGKILL);
        let status = self
            .process
            .wait()
            .unwrap_or_else(|_| ExitStatus::from_raw(libc::SIGKILL));
        self.status = Some(status);
        status
    }

    fn kill_and_reap(&mut self) {
        self.stdin = None;
        self.reap();
    }
}

impl Drop for Child {
    /// A handler that failed or panicked still leaves nothing running.
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

fn read_pipe(pipe: &mut Option<impl Read>, buf: &mut [u8]) -> io::Result<usize> {
    let Some(reader) = pipe.as_mut() else {
        return Ok(0);
    };
    loop {
        match reader.read(buf) {
            Ok(0) => {
                *pipe = None;
                return Ok(0);
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            read => return read,
        }
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, changing only its status flags.
    let done = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    };
    if done {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// How a program's end reads in a close reason and a log line.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("program exited with status {code}"),
        (None, Some(signal)) => format!("program killed by signal {signal}"),
        (None, None) => "program ended".to_string(),
    }
}

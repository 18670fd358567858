//! Waiting on one socket in a way another thread can interrupt: the connection's thread waits in
//! `ppoll`, and a thread that has queued something for it sends it SIGURG to come and write it.
//! The same wait can watch a few more descriptors (a program's output, see `apps/program.rs`).
//! `readable_within` is the plain wait for one descriptor, which no other thread interrupts.
//!
//! SIGURG is blocked in a waiting thread except inside `ppoll`, which unblocks it atomically:
//! a wake-up sent just before the wait is held pending and ends the wait at once, so none is
//! lost, and no other system call of that thread is ever interrupted. No descriptor is spent
//! per connection (an eventfd would double them). SIGURG is ignored by default, so one that
//! arrives anywhere else does no harm; its handler does nothing but interrupt.

use std::cell::Cell;
use std::io;
use std::os::fd::RawFd;
use std::sync::Once;
use std::time::{Duration, Instant};

/// A thread that can be woken.
pub type ThreadHandle = libc::pthread_t;

/// What a wait saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// The socket is ready for what was asked, or has failed or closed (the next call says).
    Ready,
    /// Another thread woke us.
    Nudged,
    /// The timeout passed.
    TimedOut,
    /// Some of the other descriptors watched are ready, or hung up: bit `i` for the `i`th.
    Watched(u8),
}

/// Most descriptors a wait watches besides its socket (a program's stdout and stderr).
pub const MAX_WATCHED: usize = 2;

/// `fd` to watch beside the socket: for what it holds to read (`data`), or only for its
/// hang-up or failure (which `poll` reports whatever it was asked).
pub fn watch(fd: RawFd, data: bool) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: if data { libc::POLLIN } else { 0 },
        revents: 0,
    }
}

/// Which of `polls` (after a `poll`) saw something: bit `i` for the `i`th.
pub fn ready_bits(polls: &[libc::pollfd]) -> u8 {
    (polls.iter().enumerate())
        .filter(|(_, poll)| poll.revents != 0)
        .fold(0, |ready, (i, _)| ready | 1 << i)
}

extern "C" fn interrupt_only(_signal: libc::c_int) {}

/// Install the SIGURG handler, once per process.
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: a handler that does nothing is async-signal-safe; no SA_RESTART, so the
        // signal ends the `ppoll` it arrives in.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = interrupt_only as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGURG, &action, std::ptr::null_mut());
        }
    });
}

/// This thread, for `nudge`.
pub fn current_thread() -> ThreadHandle {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() }
}

/// Wake `thread` from its `wait` (or make its next one return at once). The caller makes sure
/// the thread is alive: it nudges only a thread registered as waiting, under the lock the
/// thread takes to unregister.
pub fn nudge(thread: ThreadHandle) {
    // SAFETY: the thread is alive (above); SIGURG has a harmless handler.
    unsafe {
        libc::pthread_kill(thread, libc::SIGURG);
    }
}

thread_local! {
    /// This thread's signal mask with SIGURG unblocked, once SIGURG has been blocked here.
    static WAIT_MASK: Cell<Option<libc::sigset_t>> = const { Cell::new(None) };
}

/// Block SIGURG in this thread (once) and return the mask to wait with.
fn wait_mask() -> libc::sigset_t {
    if let Some(mask) = WAIT_MASK.get() {
        return mask;
    }
    // SAFETY: plain signal-set manipulation on values we own.
    let mask = unsafe {
        let mut urg: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut urg);
        libc::sigaddset(&mut urg, libc::SIGURG);
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &urg, &mut previous);
        libc::sigdelset(&mut previous, libc::SIGURG);
        previous
    };
    WAIT_MASK.set(Some(mask));
    mask
}

/// Prepare this thread to be nudged: after this, a nudge is never lost.
pub fn prepare() {
    wait_mask();
}

/// Wait until `fd` is readable (if asked), writable (if asked), one of `watched` has what its
/// `events` ask for (see `watch`), a nudge, or the timeout (`None`: no timeout).
pub fn wait(
    fd: RawFd,
    readable: bool,
    writable: bool,
    watched: &[libc::pollfd],
    timeout: Option<Duration>,
) -> io::Result<Woken> {
    let mask = wait_mask();
    let mut events = 0;
    if readable {
        events |= libc::POLLIN;
    }
    if writable {
        events |= libc::POLLOUT;
    }
    let mut polls = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 1 + MAX_WATCHED];
    polls[0] = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let watched = &watched[..watched.len().min(MAX_WATCHED)];
    polls[1..=watched.len()].copy_from_slice(watched);
    let count = 1 + watched.len();
    let timespec = timeout.map(|timeout| libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    });
    let timeout_ptr = timespec
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `count` pollfds we own, a timespec and a mask that outlive the call.
    let n = unsafe {
        libc::ppoll(
            polls.as_mut_ptr(),
            count as libc::nfds_t,
            timeout_ptr,
            &mask,
        )
    };
    if n < 0 {
        let error = io::Error::last_os_error();
        return match error.kind() {
            io::ErrorKind::Interrupted => Ok(Woken::Nudged),
            _ => Err(error),
        };
    }
    if n == 0 {
        return Ok(Woken::TimedOut);
    }
    let ready = ready_bits(&polls[1..count]);
    if ready != 0 {
        return Ok(Woken::Watched(ready));
    }
    Ok(Woken::Ready)
}

/// Wait up to `wait` until `fd` has something to read, or its end; `Ok(false)` when the time
/// passed or a signal ended the wait first. A wait, not a blocking read: a thread blocked
/// reading a Unix socket is also woken whenever its peer reads what this socket sent.
pub fn readable_within(fd: RawFd, wait: Duration) -> io::Result<bool> {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    let millis = wait.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one pollfd we own, for the length we give.
    match unsafe { libc::poll(&mut poll, 1, millis) } {
        0 => Ok(false),
        -1 => {
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::Interrupted => Ok(false),
                _ => Err(error),
            }
        }
        _ => Ok(true),
    }
}

/// The deadline in `deadline`, set from `timeout` (a socket's, a system call to ask) the first
/// time one is needed: a read or write that never waits never asks. (TLS's; a plain socket's
/// reads take the timeout from `Socket`, which knows it.)
#[cfg(feature = "tls")]
pub fn deadline_once(
    deadline: &mut Option<Option<Instant>>,
    timeout: impl FnOnce() -> io::Result<Option<Duration>>,
) -> io::Result<Option<Instant>> {
    if let Some(deadline) = *deadline {
        return Ok(deadline);
    }
    Ok(*deadline.insert(timeout()?.map(|timeout| Instant::now() + timeout)))
}

/// The timeout to wait with until `deadline` (`None`: no deadline, no timeout); `WouldBlock`
/// once it has passed, as a socket's timeout reports.
pub fn time_left(deadline: Option<Instant>) -> io::Result<Option<Duration>> {
    let Some(deadline) = deadline else {
        return Ok(None);
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    Ok(Some(left))
}

//! Connection threads, reused: each connection has a thread to itself, but a thread whose
//! connection ended waits a while for the next one, since starting a thread costs more than a
//! whole handshake.
//!
//! Every thread the server starts while it runs (connections, page connections, inflaters)
//! comes from `spawn`, which cannot take the process down when the host runs out: a thread
//! that cannot be had is an error its caller turns into a refusal (see `spawn`).
//!
//! A finished thread counts itself idle *before* it lets go of its connection (the value its
//! job returns, such as the registry ticket), so anyone who sees the connection gone also
//! finds the thread ready: an admission that claims an idle thread (one decrement of the
//! count) always has one to hand its job to. A thread that times out leaves only if it can
//! take itself back out of the count; if a job has claimed it meanwhile, it waits for that job.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::ffi::{CStr, c_void};
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A thread whose connection ended waits this long for another before it exits.
const KEEP_IDLE: Duration = Duration::from_secs(10);

/// At most this many threads wait for connections at once; the rest exit.
const MAX_IDLE: usize = 64;

/// Stack for connection threads: they keep little on it, and an idle connection should cost
/// little more than a bare thread.
const STACK: usize = 128 * 1024;

/// Memory mappings one thread from `spawn` costs the process: its stack and the guard page
/// below it (measured by `tests/connection_mappings.rs`). A thread from
/// `std::thread::spawn` costs two more, for the alternate signal stack and its guard.
pub const MAPPINGS_PER_THREAD: usize = 2;

/// Run `body(payload)` on a new thread of its own, named `name` (at most 15 bytes, as the
/// kernel keeps it), with `stack` bytes of stack; the thread is never joined.
///
/// Unlike `std::thread::spawn`, this gives the payload back when the host has no thread to
/// give (`pthread_create` fails: threads, PIDs or memory mappings used up), and does nothing
/// inside the new thread that can fail: std maps an alternate signal stack in every thread it
/// starts, and when that mapping is refused (at `vm.max_map_count`) the thread panics where no
/// panic can unwind, and the whole process aborts. The cost of going without: a thread that
/// overflows its stack dies by SIGSEGV instead of std's "has overflowed its stack" message;
/// both end the process, and connection threads keep little on their stacks.
pub fn spawn<T, F>(
    name: &'static CStr,
    stack: usize,
    payload: T,
    body: F,
) -> Result<(), (io::Error, T)>
where
    T: Send + 'static,
    F: FnOnce(T) + Send + 'static,
{
    let start = Box::into_raw(Box::new(Start {
        name,
        payload,
        body,
    }));
    // SAFETY: the attribute is initialised before use and destroyed after; `start` is handed to
    // exactly one thread, or taken back here when no thread was made.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let mut result = libc::pthread_attr_init(&mut attr);
        if result == 0 {
            let page = usize::try_from(libc::sysconf(libc::_SC_PAGESIZE)).unwrap_or(4096);
            let size = stack.max(libc::PTHREAD_STACK_MIN).next_multiple_of(page);
            result = libc::pthread_attr_setstacksize(&mut attr, size);
            if result == 0 {
                result =
                    libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
            }
            if result == 0 {
                let mut thread: libc::pthread_t = 0;
                result = libc::pthread_create(
                    &mut thread,
                    &attr,
                    run_started::<T, F>,
                    start.cast::<c_void>(),
                );
            }
            libc::pthread_attr_destroy(&mut attr);
        }
        if result == 0 {
            return Ok(());
        }
        let start = Box::from_raw(start);
        Err((io::Error::from_raw_os_error(result), start.payload))
    }
}

/// What a thread from `spawn` runs.
struct Start<T, F> {
    name: &'static CStr,
    payload: T,
    body: F,
}

extern "C" fn run_started<T, F: FnOnce(T)>(start: *mut c_void) -> *mut c_void {
    // SAFETY: `spawn` leaked this box for this thread alone.
    let Start {
        name,
        payload,
        body,
    } = *unsafe { Box::from_raw(start.cast::<Start<T, F>>()) };
    // SAFETY: a name of at most 15 bytes for this very thread; a longer one is refused (ERANGE)
    // and does no harm.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), name.as_ptr()) };
    // A panic may not unwind out of this function (it would abort): the panic hook has logged
    // it; the thread just ends, letting go of what it held.
    let _ = panic::catch_unwind(AssertUnwindSafe(move || body(payload)));
    std::ptr::null_mut()
}

/// Threads waiting for a job of type `J`.
pub struct Pool<J> {
    jobs: Receiver<J>,
    idle: AtomicUsize,
}

/// The accept loops' end of a pool: only they hold it, so it disconnects (and the waiting
/// threads exit) when they stop.
pub type Handoff<J> = Sender<J>;

/// A new pool and the handoff that feeds it.
pub fn pool<J>() -> (Handoff<J>, Arc<Pool<J>>) {
    // Room for a job per idle thread, and then some: a handoff never waits.
    let (handoff, jobs) = crossbeam_channel::bounded(2 * MAX_IDLE);
    let pool = Pool {
        jobs,
        idle: AtomicUsize::new(0),
    };
    (handoff, Arc::new(pool))
}

impl<J: Send + 'static> Pool<J> {
    /// Run `serve(job)` on an idle thread if one is waiting, else on a new one; that thread
    /// then serves whatever is handed over while it waits. What `serve` returns is dropped once
    /// the thread counts itself idle. When no thread can be had, the job comes back.
    pub fn run<R>(
        self: &Arc<Self>,
        handoff: &Handoff<J>,
        job: J,
        serve: impl Fn(J) -> R + Send + 'static,
    ) -> Result<(), (io::Error, J)> {
        let job = if self.take_idle() {
            match handoff.try_send(job) {
                Ok(()) => return Ok(()),
                // Full or stopping: give the claim back and serve it on a new thread.
                Err(error) => {
                    self.idle.fetch_add(1, Ordering::AcqRel);
                    error.into_inner()
                }
            }
        } else {
            job
        };
        let pool = Arc::clone(self);
        spawn(c"connection", STACK, job, move |job| {
            pool.serve_then_wait(job, serve)
        })
    }

    fn serve_then_wait<R>(&self, first: J, serve: impl Fn(J) -> R) {
        let mut job = first;
        loop {
            let finished = serve(job);
            let waiting = self.idle.fetch_add(1, Ordering::AcqRel);
            drop(finished);
            if waiting >= MAX_IDLE && self.take_idle() {
                return;
            }
            job = match self.jobs.recv_timeout(KEEP_IDLE) {
                Ok(next) => next,
                Err(RecvTimeoutError::Disconnected) => return, // the server is stopping
                Err(RecvTimeoutError::Timeout) if self.take_idle() => return,
                // Claimed as it timed out: its job is on the way.
                Err(RecvTimeoutError::Timeout) => match self.jobs.recv() {
                    Ok(next) => next,
                    Err(_) => return,
                },
            };
        }
    }

    /// Take one thread out of the idle count: an admission claiming it for its job, or a
    /// waiting thread leaving. False when none is left (a thread then finds its job is on the
    /// way).
    fn take_idle(&self) -> bool {
        self.idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |idle| {
                idle.checked_sub(1)
            })
            .is_ok()
    }
}

/// What `shed_stack` keeps below its own frame: room for its `madvise` call (a system call
/// stub, a return address deep). Calls after it fault back in the pages they go past.
/// (Measured from a local of a function it calls, so below all of its own frame, whatever
/// the build puts there.)
const STACK_KEPT_BELOW: usize = 512;

/// Give back to the host this thread's stack pages below the current frame (less a margin):
/// the pages deep calls touched (a TLS handshake, a record's decryption: about 12 KiB past a
/// plain connection's) otherwise stay resident for the thread's whole life, though nothing
/// lives there once the calls have returned. They come back zeroed when the thread goes that
/// deep again. For threads from `spawn` (the main thread's stack is found through /proc,
/// which is slow).
pub fn shed_stack() {
    let sp = below_caller();
    // SAFETY: the attribute is initialised by pthread_getattr_np before use and destroyed
    // after; madvise(MADV_DONTNEED) is given only whole pages of this thread's own stack below
    // its live frames (nothing in Rust refers to memory below the stack pointer), which read
    // back as zeroes if touched again.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return;
        }
        let (mut base, mut size) = (std::ptr::null_mut::<c_void>(), 0usize);
        let found = libc::pthread_attr_getstack(&attr, &mut base, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        let page = usize::try_from(libc::sysconf(libc::_SC_PAGESIZE)).unwrap_or(4096);
        let low = (base as usize).next_multiple_of(page);
        let high = sp.saturating_sub(STACK_KEPT_BELOW) / page * page;
        if found && low < high && sp < base as usize + size {
            libc::madvise(low as *mut c_void, high - low, libc::MADV_DONTNEED);
        }
    }
}

/// An address below the caller's whole frame: a local of a function it calls.
#[inline(never)]
fn below_caller() -> usize {
    let here = 0u8;
    std::hint::black_box(std::ptr::addr_of!(here)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_name() -> String {
        let mut name = [0u8; 16];
        // SAFETY: the buffer is as long as we say.
        unsafe { libc::pthread_getname_np(libc::pthread_self(), name.as_mut_ptr().cast(), 16) };
        let name = CStr::from_bytes_until_nul(&name).unwrap_or_default();
        name.to_string_lossy().into_owned()
    }

    #[test]
    fn a_spawned_thread_gets_its_payload_and_name_and_a_panic_ends_only_it() {
        let (done, finished) = crossbeam_channel::bounded(2);
        let body = move |payload: u32| {
            done.send((payload, own_name())).unwrap();
            panic!("ends this thread only");
        };
        assert!(spawn(c"spawn-test", STACK, 41, body).is_ok());
        let received = finished.recv_timeout(Duration::from_secs(10));
        assert_eq!(received, Ok((41, "spawn-test".to_string())));
        // The panic did not unwind out of the thread (that would abort): threads still start.
        let (done, finished) = crossbeam_channel::bounded(1);
        let body = move |()| done.send(()).unwrap();
        assert!(spawn(c"spawn-test", STACK, (), body).is_ok());
        assert_eq!(finished.recv_timeout(Duration::from_secs(10)), Ok(()));
    }

    /// Resident KiB of the mapping holding `address`, from /proc/self/smaps.
    fn resident_kib_around(address: usize) -> usize {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((start, end)) = range.split_once('-')
                && let (Ok(start), Ok(end)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                )
            {
                inside = (start..end).contains(&address);
            } else if inside && let Some(rss) = line.strip_prefix("Rss:") {
                return rss.trim().trim_end_matches(" kB").parse().unwrap();
            }
        }
        panic!("no mapping holds {address:x}");
    }

    /// Touches `depth` KiB of stack below the caller; returns a sum the optimiser cannot know.
    #[inline(never)]
    fn go_deep(depth: usize) -> u64 {
        let mut page = [0u8; 1024];
        page[depth % 1024] = depth as u8;
        let page = std::hint::black_box(page);
        let below = if depth > 1 { go_deep(depth - 1) } else { 0 };
        below + u64::from(page[depth % 1024])
    }

    #[test]
    fn a_thread_gives_back_the_stack_a_deep_call_touched_and_can_go_deep_again() {
        let (done, finished) = crossbeam_channel::bounded(1);
        let body = move |()| {
            let here = 0u8;
            let sp = std::ptr::addr_of!(here) as usize;
            let first = go_deep(24);
            let deep = resident_kib_around(sp);
            shed_stack();
            let shed = resident_kib_around(sp);
            // The pages come back zeroed where the thread goes deep again, and it runs on.
            let again = go_deep(24);
            done.send((deep, shed, first == again)).unwrap();
        };
        assert!(spawn(c"shed-test", STACK, (), body).is_ok());
        let (deep, shed, same) = finished.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(deep >= 24, "24 KiB deep touched {deep} KiB");
        assert!(
            shed + 16 <= deep,
            "{deep} KiB resident before, {shed} KiB after"
        );
        assert!(same);
    }
}

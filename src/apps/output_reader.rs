//! Programs' stdout, read by threads that all programs share (one per core): each waits on its
//! share of the pipes at once (epoll) and hands what it reads to that program's [`Drain`],
//! which sends it to the client from there (a `Sender` writes straight to the socket).
//!
//! Why not the connection's own thread: it would sleep twice per round trip, once for the
//! client's line and once for the program's reply. Reading replies here, a busy server wakes
//! one thread for many of them (`make bench`'s run mode: context switches per round trip).
//!
//! The connection's thread keeps the pipe and watches it only for its hang-up; then it
//! detaches it (waiting out a read under way, so nothing is sent twice or out of order) and
//! reads what is left itself. While no reading thread can be had (the host's thread limit), or
//! when the pipe cannot be added, the connection's thread reads stdout itself.

use crate::net::threads;
use log::warn;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What one read takes.
const READ_CHUNK: usize = 16 * 1024;
/// Reads of one pipe per turn: a program that prints without pause must not keep the thread
/// from the others (epoll reports it again next turn).
const READS_PER_TURN: usize = 4;
/// Readiness events taken per wait.
const EVENTS: usize = 64;
/// The thread keeps little on its stack; the read buffer is on the heap.
const STACK: usize = 64 * 1024;

/// Where a pipe's bytes go.
pub trait Drain: Send {
    /// Bytes read from the pipe; `false` to stop reading it (the exchange is over).
    fn take(&mut self, bytes: &[u8]) -> bool;
}

/// A pipe and its drain, shared by the reading thread and the connection's.
pub struct Entry<D: ?Sized> {
    fd: RawFd,
    /// Whether the reading thread reads it (it is in that thread's epoll); once false, never
    /// again.
    attached: bool,
    pub drain: D,
}

impl<D: ?Sized> Entry<D> {
    /// The reading thread reads it no more: out of its epoll (`attached` is whether it is in).
    fn let_go(&mut self, epoll: RawFd) {
        if std::mem::replace(&mut self.attached, false) {
            let _ = epoll_ctl(epoll, libc::EPOLL_CTL_DEL, self.fd, 0);
        }
    }
}

type Shared = Arc<Mutex<Entry<dyn Drain>>>;

/// The reading thread's side: its epoll and the pipes given to it, each registered with its
/// slot's index. A slot is reused once its pipe is taken back: an event still in hand for
/// the old pipe then reads the new one, which reads nothing or what it would have read anyway.
struct Reader {
    epoll: RawFd,
    slots: Mutex<Vec<Option<Shared>>>,
}

/// A pipe given to the reading thread (or, if it could not be, kept by its connection's).
pub struct Attached<D: ?Sized> {
    entry: Arc<Mutex<Entry<D>>>,
    slot: usize,
    reader: Option<&'static Reader>,
}

impl<D: Drain + 'static> Attached<D> {
    /// Have `fd` (non-blocking) read by the shared thread into `drain`, if it can be.
    pub fn new(fd: RawFd, drain: D) -> Attached<D> {
        let entry = Arc::new(Mutex::new(Entry {
            fd,
            attached: false,
            drain,
        }));
        let mut attached = Attached {
            entry,
            slot: 0,
            reader: None,
        };
        // Tests reach the connection's own reading through a thread named for it.
        if cfg!(test)
            && std::thread::current()
                .name()
                .is_some_and(|n| n.ends_with("/unshared"))
        {
            return attached;
        }
        let Some(reader) = reader() else {
            return attached;
        };
        let mut slots = lock(&reader.slots);
        attached.slot = slots
            .iter()
            .position(Option::is_none)
            .unwrap_or(slots.len());
        if attached.slot == slots.len() {
            slots.push(None);
        }
        slots[attached.slot] = Some(attached.entry.clone());
        lock(&attached.entry).attached = true;
        if epoll_ctl(reader.epoll, libc::EPOLL_CTL_ADD, fd, attached.slot).is_ok() {
            attached.reader = Some(reader);
        } else {
            slots[attached.slot] = None;
            lock(&attached.entry).attached = false;
        }
        attached
    }

    /// Whether the pipe was given to the shared thread (and not yet taken back by `detach`):
    /// its connection's thread then watches it only for its hang-up.
    pub fn is_shared(&self) -> bool {
        self.reader.is_some()
    }

    /// The pipe's entry, for its connection's thread to read the pipe itself after `detach`.
    pub fn lock(&self) -> MutexGuard<'_, Entry<D>> {
        lock(&self.entry)
    }
}

impl<D: ?Sized> Attached<D> {
    /// Take the pipe back from the shared thread, after any read of it under way.
    pub fn detach(&mut self) {
        let Some(reader) = self.reader.take() else {
            return;
        };
        lock(&self.entry).let_go(reader.epoll);
        lock(&reader.slots)[self.slot] = None;
    }
}

impl<D: ?Sized> Drop for Attached<D> {
    /// Before the pipe closes: the shared thread must never read a descriptor reused since.
    fn drop(&mut self) {
        self.detach();
    }
}

fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The reading threads: one per core, up to this many, started one by one as programs start
/// (one thread for all would hold a big host's programs to one core's worth of output).
const MAX_READERS: usize = 16;

/// The reading threads started so far.
struct Readers {
    running: Vec<&'static Reader>,
    /// How many are wanted (0 until asked).
    wanted: usize,
    /// One whose thread could not be started, to try again with.
    spare: Option<&'static Reader>,
    warned: bool,
}

/// A reading thread for the next pipe, round the threads in turn; `None` while none could be
/// started (the host's limits), one warning said.
fn reader() -> Option<&'static Reader> {
    static READERS: Mutex<Readers> = Mutex::new(Readers {
        running: Vec::new(),
        wanted: 0,
        spare: None,
        warned: false,
    });
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let mut readers = lock(&READERS);
    if readers.wanted == 0 {
        // SAFETY: sysconf has no preconditions. (std's `available_parallelism`, which also
        // reads cgroup quotas, cost the binary 13 KB.)
        let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        readers.wanted = usize::try_from(cores).unwrap_or(1).clamp(1, MAX_READERS);
    }
    if readers.running.len() < readers.wanted {
        readers.start();
    }
    let count = readers.running.len();
    (count > 0).then(|| readers.running[NEXT.fetch_add(1, Ordering::Relaxed) % count])
}

impl Readers {
    fn start(&mut self) {
        let reader = match self.spare.take() {
            Some(reader) => reader,
            None => {
                // SAFETY: epoll_create1 has no preconditions.
                let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
                if epoll < 0 {
                    return self.warn(std::io::Error::last_os_error());
                }
                Box::leak(Box::new(Reader {
                    epoll,
                    slots: Mutex::new(Vec::new()),
                }))
            }
        };
        match threads::spawn(c"program-output", STACK, reader, run) {
            Ok(()) => self.running.push(reader),
            Err((error, reader)) => {
                self.spare = Some(reader);
                self.warn(error);
            }
        }
    }

    fn warn(&mut self, error: std::io::Error) {
        if !std::mem::replace(&mut self.warned, true) {
            warn!(
                "cannot start a thread to read programs' output ({error}); until one starts, \
                 each program's connection reads its output on its own thread"
            );
        }
    }
}

fn run(reader: &'static Reader) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    loop {
        // SAFETY: `EVENTS` events we own, for the call.
        let n = unsafe { libc::epoll_wait(reader.epoll, events.as_mut_ptr(), EVENTS as i32, -1) };
        for event in &events[..n.max(0) as usize] {
            let slot = event.u64 as usize;
            let Some(entry) = lock(&reader.slots).get(slot).cloned().flatten() else {
                continue;
            };
            let mut entry = lock(&entry);
            if entry.attached && !read_into(&mut entry, &mut buf) {
                entry.let_go(reader.epoll);
            }
        }
    }
}

/// Read what the pipe holds into its drain; `false` once it is to be read no more here (its
/// end, a failure, or the drain's wish): its connection's thread sees the hang-up, or the
/// close the drain asked for.
fn read_into(entry: &mut Entry<dyn Drain>, buf: &mut [u8]) -> bool {
    let mut reads = 0;
    while reads < READS_PER_TURN {
        // SAFETY: reads into the buffer we own, at most its length.
        let n = unsafe { libc::read(entry.fd, buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            1.. => {
                let n = n as usize;
                reads += 1;
                if !entry.drain.take(&buf[..n]) {
                    return false;
                }
                // A short read took all the pipe held.
                if n < buf.len() {
                    return true;
                }
            }
            0 => return false,
            _ => match std::io::Error::last_os_error().kind() {
                std::io::ErrorKind::Interrupted => {}
                std::io::ErrorKind::WouldBlock => return true,
                _ => return false,
            },
        }
    }
    true
}

fn epoll_ctl(epoll: RawFd, op: libc::c_int, fd: RawFd, slot: usize) -> std::io::Result<()> {
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: slot as u64,
    };
    // SAFETY: one event we own, for the call.
    match unsafe { libc::epoll_ctl(epoll, op, fd, &mut event) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{Receiver, Sender, unbounded};
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    const PATIENCE: Duration = Duration::from_secs(10);

    /// Hands each read on, and stops after `reads_left` of them.
    struct Recording {
        reads: Sender<Vec<u8>>,
        reads_left: usize,
    }

    impl Drain for Recording {
        fn take(&mut self, bytes: &[u8]) -> bool {
            let _ = self.reads.send(bytes.to_vec());
            self.reads_left -= 1;
            self.reads_left > 0
        }
    }

    /// A pipe-like pair (epoll takes sockets as it takes pipes), its read end given away.
    fn attached(
        reads_left: usize,
    ) -> (
        Attached<Recording>,
        UnixStream,
        UnixStream,
        Receiver<Vec<u8>>,
    ) {
        let (read_end, write_end) = UnixStream::pair().unwrap();
        read_end.set_nonblocking(true).unwrap();
        let (reads, received) = unbounded();
        let drain = Recording { reads, reads_left };
        let attached = Attached::new(read_end.as_raw_fd(), drain);
        (attached, read_end, write_end, received)
    }

    /// Waits (bounded) until the shared thread has let go of the pipe.
    fn wait_let_go(attached: &Attached<Recording>) {
        let start = Instant::now();
        while attached.lock().attached {
            assert!(
                start.elapsed() < PATIENCE,
                "the shared thread still reads the pipe"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// `bytes`, written now, are read by whoever reads the pipe itself, not by the drain.
    fn left_to_us(
        read_end: &mut UnixStream,
        write_end: &mut UnixStream,
        bytes: &[u8],
        received: &Receiver<Vec<u8>>,
    ) {
        write_end.write_all(bytes).unwrap();
        let mut buf = [0u8; 16];
        read_end.set_nonblocking(false).unwrap();
        read_end.set_read_timeout(Some(PATIENCE)).unwrap();
        let n = read_end.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], bytes);
        assert!(received.try_recv().is_err());
    }

    #[test]
    fn the_shared_thread_reads_a_pipe_into_its_drain_until_taken_back() {
        let (mut attached, mut read_end, mut write_end, received) = attached(usize::MAX);
        assert!(attached.is_shared());
        write_end.write_all(b"one\n").unwrap();
        assert_eq!(received.recv_timeout(PATIENCE).unwrap(), b"one\n");
        attached.detach();
        assert!(!attached.is_shared());
        assert!(!attached.lock().attached);
        // Taken back, what comes is for the connection's thread to read.
        left_to_us(&mut read_end, &mut write_end, b"two\n", &received);
    }

    #[test]
    fn a_drain_that_has_had_enough_is_read_no_more() {
        let (attached, mut read_end, mut write_end, received) = attached(1);
        write_end.write_all(b"first").unwrap();
        assert_eq!(received.recv_timeout(PATIENCE).unwrap(), b"first");
        wait_let_go(&attached);
        left_to_us(&mut read_end, &mut write_end, b"second", &received);
    }

    #[test]
    fn a_pipe_that_hangs_up_is_let_go_after_what_it_held() {
        let (attached, _read_end, mut write_end, received) = attached(usize::MAX);
        write_end.write_all(b"last words").unwrap();
        drop(write_end);
        let mut got = Vec::new();
        while got.len() < b"last words".len() {
            got.extend(received.recv_timeout(PATIENCE).unwrap());
        }
        assert_eq!(got, b"last words");
        wait_let_go(&attached);
    }

    /// Refills its own pipe at each read, `READS` times, then says so: a program that prints
    /// without pause.
    struct Endless {
        refill: UnixStream,
        reads: usize,
        said: Sender<Vec<u8>>,
    }

    impl Endless {
        /// About 1.6 GB: seconds of reading.
        const READS: usize = 100_000;
    }

    impl Drain for Endless {
        fn take(&mut self, bytes: &[u8]) -> bool {
            let _ = self.refill.write(&vec![b'x'; bytes.len()]);
            self.reads += 1;
            if self.reads == Endless::READS {
                let _ = self.said.send(b"exhausted".to_vec());
            }
            self.reads < Endless::READS
        }
    }

    #[test]
    fn a_program_that_prints_without_pause_leaves_its_thread_to_the_others() {
        let (read_end, write_end) = UnixStream::pair().unwrap();
        read_end.set_nonblocking(true).unwrap();
        write_end.set_nonblocking(true).unwrap();
        let (said, heard) = unbounded();
        let drain = Endless {
            refill: write_end.try_clone().unwrap(),
            reads: 0,
            said: said.clone(),
        };
        let endless = Attached::new(read_end.as_raw_fd(), drain);
        // Another pipe, on the same thread.
        let mut pipes = Vec::new();
        let quiet = loop {
            let (quiet_read, quiet_write) = UnixStream::pair().unwrap();
            quiet_read.set_nonblocking(true).unwrap();
            let drain = Recording {
                reads: said.clone(),
                reads_left: usize::MAX,
            };
            let quiet = Attached::new(quiet_read.as_raw_fd(), drain);
            let same = std::ptr::eq(quiet.reader.unwrap(), endless.reader.unwrap());
            pipes.push((quiet, quiet_read, quiet_write));
            if same {
                break pipes.len() - 1;
            }
            assert!(
                pipes.len() <= MAX_READERS,
                "no two pipes on the same thread"
            );
        };
        (&write_end).write_all(&[b'x'; READ_CHUNK]).unwrap();
        (&pipes[quiet].2).write_all(b"heard").unwrap();
        assert_eq!(heard.recv_timeout(PATIENCE).unwrap(), b"heard");
    }

    #[test]
    fn many_pipes_share_the_thread_and_each_gets_its_own_bytes() {
        let pipes: Vec<_> = (0..50).map(|_| attached(usize::MAX)).collect();
        for (i, (_, _, write_end, _)) in pipes.iter().enumerate() {
            (&*write_end)
                .write_all(format!("pipe {i}").as_bytes())
                .unwrap();
        }
        for (i, (attached, _, _, received)) in pipes.iter().enumerate() {
            assert!(attached.is_shared());
            let expected = format!("pipe {i}");
            let mut got = Vec::new();
            while got.len() < expected.len() {
                got.extend(received.recv_timeout(PATIENCE).unwrap());
            }
            assert_eq!(String::from_utf8(got).unwrap(), expected);
        }
    }
}

//! Connection threads, reused: each connection has a thread to itself, but a thread whose
//! connection ended waits a while for the next one, since starting a thread costs more than a
//! whole handshake.
//!
//! A finished thread counts itself idle *before* it lets go of its connection (the value its
//! job returns, such as the registry ticket), so anyone who sees the connection gone also
//! finds the thread ready: an admission that claims an idle thread (one decrement of the
//! count) always has one to hand its job to. A thread that times out leaves only if it can
//! take itself back out of the count; if a job has claimed it meanwhile, it waits for that job.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

/// A thread whose connection ended waits this long for another before it exits.
const KEEP_IDLE: Duration = Duration::from_secs(10);

/// At most this many threads wait for connections at once; the rest exit.
const MAX_IDLE: usize = 64;

/// Stack for connection threads: they keep little on it, and an idle connection should cost
/// little more than a bare thread.
const STACK: usize = 128 * 1024;

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
    /// the thread counts itself idle.
    pub fn run<R>(
        self: &Arc<Self>,
        handoff: &Handoff<J>,
        job: J,
        serve: impl Fn(J) -> R + Send + 'static,
    ) -> io::Result<()> {
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
        thread::Builder::new()
            .name("connection".into())
            .stack_size(STACK)
            .spawn(move || pool.serve_then_wait(job, serve))
            .map(drop)
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

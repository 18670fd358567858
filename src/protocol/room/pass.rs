//! Who writes a room's broadcasts out. A broadcast queues its frame to every member first;
//! then one thread at a time makes a pass over the members, writing what each has queued with
//! one `writev`. In a quiet room the broadcasting thread makes the pass itself, at once. A
//! broadcast made while a pass runs only queues, and returns: another pass is owed, and it
//! carries every frame queued before it starts. The owed pass is made by the room's writer, a
//! thread that exists only while the room is busy (it ends after a second with nothing to
//! write), not by the thread whose pass just ended: that is a talker's, whose own client's
//! messages wait while it writes, so it writes at most one pass. So when broadcasts come
//! faster than a pass, each pass carries several frames per member per write, and talkers
//! never wait for one another's passes.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// A room's turns at writing.
#[derive(Default)]
pub(super) struct Passes {
    turns: Mutex<Turns>,
    /// The writer waits on this for a pass to make.
    handed: Condvar,
}

#[derive(Default)]
struct Turns {
    /// A thread is making a pass, or one is handed to the writer.
    writing: bool,
    /// Something was queued during the pass in progress: another pass is owed.
    again: bool,
    /// The room's writer thread exists.
    writer: bool,
    /// The writer is to make a pass.
    handed: bool,
}

/// The right to make a pass, until ended (or dropped).
pub(super) struct Pass<'a> {
    passes: &'a Passes,
}

/// What follows a pass.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum After {
    /// Nothing was queued during it.
    Done,
    /// The writer makes the owed pass.
    Handed,
    /// A pass is owed and the room has no writer: the caller starts one, which calls
    /// `Passes::serve` (or, if no thread can be had, calls it itself with no idle time).
    StartWriter,
}

/// How long the writer waits for another pass before it ends.
pub(super) const WRITER_IDLE: Duration = Duration::from_secs(1);

impl Passes {
    fn lock(&self) -> MutexGuard<'_, Turns> {
        self.turns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called once what a broadcast queued is in every member's queue: the pass to make now,
    /// or `None` when a pass is in progress (another is then owed, and carries what was
    /// queued).
    pub(super) fn take_turn(&self) -> Option<Pass<'_>> {
        let mut turns = self.lock();
        if turns.writing {
            turns.again = true;
            return None;
        }
        turns.writing = true;
        Some(Pass { passes: self })
    }

    /// The writer's life: make each pass handed to it, and the ones owed after, until it has
    /// had nothing to do for `idle` (at once when `idle` is zero).
    pub(super) fn serve(&self, idle: Duration, mut make_pass: impl FnMut()) {
        let mut turns = self.lock();
        loop {
            if turns.handed {
                turns.handed = false;
                loop {
                    // What is queued from here on sets `again`; what was queued before, this
                    // pass carries.
                    turns.again = false;
                    drop(turns);
                    make_pass();
                    turns = self.lock();
                    if !turns.again {
                        break;
                    }
                }
                turns.writing = false;
                continue;
            }
            if idle.is_zero() {
                break;
            }
            let (waited, timeout) = self
                .handed
                .wait_timeout(turns, idle)
                .unwrap_or_else(PoisonError::into_inner);
            turns = waited;
            if timeout.timed_out() && !turns.handed {
                break;
            }
        }
        turns.writer = false;
    }

    /// For tests: wait (at most 10 s) until no pass is in progress or owed.
    #[cfg(test)]
    pub(super) fn wait_until_written(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.lock().writing {
            assert!(
                std::time::Instant::now() < deadline,
                "the owed passes were never made"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Pass<'_> {
    /// The pass is made: hand the owed one on, if any.
    pub(super) fn end(self) -> After {
        let passes = self.passes;
        // Ended, not cut short: `Drop` is not for this.
        std::mem::forget(self);
        let mut turns = passes.lock();
        if !turns.again {
            turns.writing = false;
            return After::Done;
        }
        // `writing` stays: the owed pass is the writer's from now.
        turns.handed = true;
        if turns.writer {
            drop(turns);
            passes.handed.notify_one();
            After::Handed
        } else {
            turns.writer = true;
            After::StartWriter
        }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        // Only when a pass is cut short (a panic): the next broadcast writes.
        self.passes.lock().writing = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    #[test]
    fn with_nobody_writing_a_broadcast_writes_at_once() {
        let passes = Passes::default();
        let pass = passes.take_turn().expect("nobody is writing");
        assert_eq!(pass.end(), After::Done);
        assert!(passes.take_turn().is_some(), "the first pass has ended");
    }

    #[test]
    fn during_a_pass_broadcasts_return_at_once_and_one_pass_is_owed_to_a_new_writer() {
        let passes = Passes::default();
        let first = passes.take_turn().expect("nobody is writing");
        assert!(passes.take_turn().is_none(), "a pass is in progress");
        assert!(passes.take_turn().is_none(), "a pass is in progress");
        assert_eq!(first.end(), After::StartWriter);
        assert!(
            passes.take_turn().is_none(),
            "the owed pass is the writer's: a broadcast now rides with it"
        );
        let made = AtomicUsize::new(0);
        passes.serve(Duration::ZERO, || {
            made.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(
            made.load(Ordering::SeqCst),
            1,
            "one pass for all three broadcasts"
        );
        let pass = passes.take_turn().expect("the writer is done");
        assert_eq!(pass.end(), After::Done);
    }

    #[test]
    fn a_waiting_writer_is_handed_the_owed_pass_and_makes_the_ones_owed_after_it() {
        let passes = Arc::new(Passes::default());
        let first = passes.take_turn().expect("nobody is writing");
        assert!(passes.take_turn().is_none());
        assert_eq!(first.end(), After::StartWriter);
        let made = Arc::new(AtomicUsize::new(0));
        let writer = thread::spawn({
            let (passes, made) = (Arc::clone(&passes), Arc::clone(&made));
            move || {
                passes.serve(Duration::from_millis(300), || {
                    // A broadcast during the writer's first pass: one more is owed.
                    if made.fetch_add(1, Ordering::SeqCst) == 0 {
                        assert!(passes.take_turn().is_none(), "the writer is writing");
                    }
                })
            }
        });
        passes.wait_until_written();
        assert_eq!(
            made.load(Ordering::SeqCst),
            2,
            "the handed pass and the one owed after"
        );
        // The writer now waits for its idle time; a talker writes when nobody is writing.
        let pass = passes.take_turn().expect("nobody is writing");
        assert!(passes.take_turn().is_none());
        match pass.end() {
            // The writer was still waiting: it makes the pass.
            After::Handed => passes.wait_until_written(),
            // Its idle time had run out (a slow host): a new writer is the caller's to start.
            After::StartWriter => passes.serve(Duration::ZERO, || {
                made.fetch_add(1, Ordering::SeqCst);
            }),
            After::Done => panic!("a broadcast during the pass owed another"),
        }
        assert_eq!(made.load(Ordering::SeqCst), 3);
        writer.join().unwrap();
    }
}

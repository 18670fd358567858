//! Who writes a room's broadcasts out. A broadcast queues its frame to every member first;
//! then one thread at a time makes a pass over the members, writing what each has queued with
//! one `writev`. A broadcast made while a pass runs does not start its own: the first such
//! waits for the pass to end and makes the next one, and those after it only queue, their
//! frames leaving with that next pass. So when broadcasts come faster than a pass, each pass
//! carries several frames per member per write; when they come slowly, each is written at once
//! by the thread that made it, as before. Nobody waits longer than the pass in progress, and
//! no thread is kept for writing.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// A room's turns at writing.
#[derive(Default)]
pub(super) struct Passes {
    turns: Mutex<Turns>,
    pass_ended: Condvar,
}

#[derive(Default)]
struct Turns {
    /// A thread is making a pass.
    writing: bool,
    /// A thread waits to make the next pass: what is queued before it starts leaves with it.
    next_waits: bool,
}

/// The right to make a pass, until dropped.
pub(super) struct Pass<'a>(&'a Passes);

impl Passes {
    fn lock(&self) -> MutexGuard<'_, Turns> {
        self.turns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called once what a broadcast queued is in every member's queue: the pass to make now
    /// (after the one in progress, if any), or `None` when a thread already waits to make the
    /// next pass, which will carry what was queued.
    pub(super) fn take_turn(&self) -> Option<Pass<'_>> {
        let mut turns = self.lock();
        // A thread already waits: it has not started, so it carries this. Checked before
        // `writing`, so that a newcomer never takes the turn from the waiter between the end
        // of a pass and the waiter's waking.
        if turns.next_waits {
            return None;
        }
        if turns.writing {
            turns.next_waits = true;
            // Passes write without blocking, so this ends when the one in progress does.
            while turns.writing {
                turns = self
                    .pass_ended
                    .wait(turns)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            turns.next_waits = false;
        }
        turns.writing = true;
        Some(Pass(self))
    }

    /// For tests: wait (at most 5 s) until a thread waits to make the next pass.
    #[cfg(test)]
    pub(super) fn wait_for_next(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !self.lock().next_waits {
            assert!(
                std::time::Instant::now() < deadline,
                "no broadcast waited for the pass in progress"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.0.lock().writing = false;
        self.0.pass_ended.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn with_nobody_writing_a_broadcast_writes_at_once() {
        let passes = Passes::default();
        assert!(passes.take_turn().is_some());
        assert!(passes.take_turn().is_some(), "the first pass has ended");
    }

    #[test]
    fn once_a_pass_ends_a_newcomer_rides_with_the_thread_still_waking_to_make_the_next() {
        // The moment between a pass's end and its waiter's waking, held still.
        let passes = Passes::default();
        passes.lock().next_waits = true;
        assert!(
            passes.take_turn().is_none(),
            "the newcomer took the turn from the thread waiting for it"
        );
    }

    #[test]
    fn during_a_pass_the_first_broadcast_writes_next_and_the_others_ride_with_it() {
        let passes = Arc::new(Passes::default());
        let first = passes.take_turn();
        let (began, next_began) = mpsc::channel();
        let next = thread::spawn({
            let passes = Arc::clone(&passes);
            move || {
                let pass = passes.take_turn();
                began.send(pass.is_some()).unwrap();
            }
        });
        passes.wait_for_next();
        assert!(
            next_began.try_recv().is_err(),
            "the next pass waits for the one in progress"
        );
        assert!(
            passes.take_turn().is_none(),
            "a third broadcast rides with the next pass"
        );
        drop(first);
        assert_eq!(next_began.recv_timeout(Duration::from_secs(10)), Ok(true));
        next.join().unwrap();
        assert!(passes.take_turn().is_some(), "every pass has ended");
    }
}

//! The memory budget: one count, shared by every connection, of the bytes held for messages in
//! flight (incoming ones not yet handed to the application, outgoing ones not yet sent), so
//! that no number of clients can make the server hold more than `--memory-budget`.
//!
//! Whoever is about to hold message bytes takes them from the budget first and gives them back
//! once they are freed; a take that does not fit fails, and the connection it was for is closed
//! with 1013 (try again later) while everyone else carries on. A connection's first
//! `ALLOWANCE` bytes are its own, never taken from the budget: small messages, nearly all of
//! them, then never touch the shared count.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Bytes of messages in flight each connection holds without taking them from the budget: part
/// of a connection's baseline, like its socket buffers.
pub const ALLOWANCE: usize = 4096;

/// The shared count and its limit.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    in_use: AtomicUsize,
    /// Whether `TRIM_AFTER` or more was held at once since the budget was last empty.
    loaded: AtomicBool,
}

/// A load that held at least this much gives its memory back to the system when it is over
/// (see `give_back`).
const TRIM_AFTER: usize = 16 << 20;

impl Budget {
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            in_use: AtomicUsize::new(0),
            loaded: AtomicBool::new(false),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes taken now, by every connection together.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Take `bytes` if they fit under the limit.
    #[inline(never)]
    fn take(&self, bytes: usize) -> bool {
        let taken = self
            .in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |in_use| {
                in_use
                    .checked_add(bytes)
                    .filter(|&total| total <= self.limit)
            });
        if let Ok(before) = taken
            && before + bytes >= TRIM_AFTER
        {
            self.loaded.store(true, Ordering::Relaxed);
        }
        taken.is_ok()
    }

    /// Give `bytes` back. When that empties the budget after a load of `TRIM_AFTER` or more,
    /// the memory the load took goes back to the system too (`give_back`).
    ///
    /// Out of line (as `take`), so that `Holding::shrink` and `grow`, which call them only for
    /// bytes past a connection's allowance, stay small on the path of every small message.
    #[inline(never)]
    fn give_back(&self, bytes: usize) {
        let emptied = self.in_use.fetch_sub(bytes, Ordering::AcqRel) == bytes;
        if emptied && self.loaded.swap(false, Ordering::Relaxed) {
            crate::ops::give_back::soon();
        }
    }
}

/// What one holder (a connection, a queued frame) has taken; all of it goes back when dropped.
#[derive(Debug)]
pub struct Holding {
    budget: Arc<Budget>,
    /// Bytes held, the allowance included.
    bytes: usize,
    /// Bytes free of charge before the budget is touched.
    allowance: usize,
}

impl Holding {
    /// Nothing held yet, with a connection's allowance.
    pub fn new(budget: &Arc<Budget>) -> Holding {
        Holding::with_allowance(budget, ALLOWANCE)
    }

    /// Take exactly `bytes` now (no allowance), or `None` if they do not fit.
    pub fn take(budget: &Arc<Budget>, bytes: usize) -> Option<Holding> {
        let mut holding = Holding::with_allowance(budget, 0);
        holding.grow(bytes).then_some(holding)
    }

    fn with_allowance(budget: &Arc<Budget>, allowance: usize) -> Holding {
        Holding {
            budget: Arc::clone(budget),
            bytes: 0,
            allowance,
        }
    }

    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// Hold `more` bytes besides, if the budget has room; false (and nothing taken) if not.
    /// (Inlined: on every message's path, it costs a comparison unless the allowance is past.)
    #[inline(always)]
    pub fn grow(&mut self, more: usize) -> bool {
        let Some(bytes) = self.bytes.checked_add(more) else {
            return false;
        };
        let extra = self.charged(bytes) - self.charged(self.bytes);
        if extra > 0 && !self.budget.take(extra) {
            return false;
        }
        self.bytes = bytes;
        true
    }

    /// Hold `fewer` bytes less.
    #[inline(always)]
    pub fn shrink(&mut self, fewer: usize) {
        let bytes = self.bytes.saturating_sub(fewer);
        let freed = self.charged(self.bytes) - self.charged(bytes);
        if freed > 0 {
            self.budget.give_back(freed);
        }
        self.bytes = bytes;
    }

    /// How much of `bytes` is taken from the budget.
    fn charged(&self, bytes: usize) -> usize {
        bytes.saturating_sub(self.allowance)
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.shrink(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_only_what_fits_and_gives_it_all_back() {
        let budget = Budget::new(10_000);
        let mut first = Holding::new(&budget);
        assert!(first.grow(ALLOWANCE), "the allowance is free");
        assert_eq!(budget.in_use(), 0);
        assert!(first.grow(6_000));
        assert_eq!(budget.in_use(), 6_000);
        let mut second = Holding::new(&budget);
        assert!(second.grow(ALLOWANCE + 4_000));
        assert!(!second.grow(1), "the budget is spent");
        assert_eq!(budget.in_use(), 10_000, "a failed grow takes nothing");
        assert!(Holding::take(&budget, 1).is_none());
        first.shrink(1_000);
        assert_eq!(budget.in_use(), 9_000);
        let frame = Holding::take(&budget, 1_000).expect("freed room is taken again");
        drop(first);
        drop(second);
        assert_eq!(budget.in_use(), 1_000);
        drop(frame);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn never_overflows() {
        let budget = Budget::new(usize::MAX);
        let mut holding = Holding::new(&budget);
        assert!(holding.grow(usize::MAX - 1));
        assert!(!holding.grow(usize::MAX));
        holding.shrink(usize::MAX);
        assert_eq!(budget.in_use(), 0);
    }
}

//! Memory given back to the system once a load is over. With a thread per connection, what a
//! load allocated spreads over every malloc arena, and glibc returns only what is free at an
//! arena's top: the rest would stay with the process, and the memory budget would bound what is
//! in use but not what the process holds. `soon` asks glibc (`malloc_trim`) for every free
//! page, a moment after a load ends. Two things tell that one has: the budget empties after
//! holding at least 16 MiB (`budget`), and most of a wave of connections has closed
//! (`registry`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long after a load ends its memory is given back. Not at once: the connections that
/// ended it are still finishing then (their threads, inflaters and TLS sessions), and what they
/// free afterwards would stay. Measured with 1000 connections each holding an unfinished
/// 240 KB message: 20-30 MiB over the baseline right after they closed when trimmed at once,
/// 10 MiB when trimmed half a second later, 38-48 MiB never trimmed.
const DELAY: Duration = Duration::from_millis(500);

/// A give-back is on its way: another asked for meanwhile is the same one.
static PENDING: AtomicBool = AtomicBool::new(false);

/// Give free memory back `DELAY` from now, on a short-lived thread of its own (at once if the
/// host refuses the thread). Loads end rarely; never more than one such thread at a time.
pub fn soon() {
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    let later = std::thread::Builder::new()
        .name("give-back".into())
        .stack_size(64 * 1024)
        .spawn(|| {
            std::thread::sleep(DELAY);
            PENDING.store(false, Ordering::Release);
            now();
        });
    if later.is_err() {
        PENDING.store(false, Ordering::Release);
        now();
    }
}

/// Return malloc's free pages to the system (glibc; elsewhere nothing).
fn now() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it locks each arena as it goes.
    unsafe {
        libc::malloc_trim(0);
    }
}

//! The shutdown broadcast. The shape follows mini-redis: one `Sender<()>` is never used to
//! send; dropping it is the broadcast every `ShutdownSignal` sees as a disconnected channel.

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};

/// Fires the shutdown broadcast; cheap to clone, harmless to fire twice.
#[derive(Clone)]
pub struct Trigger(Arc<Mutex<Option<Sender<()>>>>);

/// Tells whether shutdown has begun, and can wait for it.
#[derive(Clone)]
pub struct ShutdownSignal(Receiver<()>);

/// A new trigger and the signal it drives.
pub fn channel() -> (Trigger, ShutdownSignal) {
    // Capacity 1, though nothing is ever sent: every connection checks the signal before each
    // read, and an array channel answers `try_recv` with plain atomic loads, where a
    // zero-capacity one takes a lock shared by all the threads.
    let (sender, receiver) = crossbeam_channel::bounded(1);
    (
        Trigger(Arc::new(Mutex::new(Some(sender)))),
        ShutdownSignal(receiver),
    )
}

impl Trigger {
    /// Begin shutdown: dropping the only sender disconnects every signal.
    pub fn fire(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

impl ShutdownSignal {
    pub fn is_triggered(&self) -> bool {
        matches!(self.0.try_recv(), Err(TryRecvError::Disconnected))
    }

    /// Block until shutdown begins.
    pub fn wait(&self) {
        // Nothing is ever sent: this returns only when the sender is dropped.
        let _ = self.0.recv();
    }
}

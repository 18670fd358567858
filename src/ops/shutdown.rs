//! The shutdown broadcast. The shape follows mini-redis: one `Sender<()>` is never used to
//! send; dropping it is the broadcast every `ShutdownSignal` sees as a disconnected channel.
//! A flag set just before says the same to the connections, which ask before every read:
//! one atomic load, where asking the channel costs about 70 instructions.

use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Fires the shutdown broadcast; cheap to clone, harmless to fire twice.
#[derive(Clone)]
pub struct Trigger {
    sender: Arc<Mutex<Option<Sender<()>>>>,
    fired: Arc<AtomicBool>,
}

/// Tells whether shutdown has begun, and can wait for it.
#[derive(Clone)]
pub struct ShutdownSignal {
    receiver: Receiver<()>,
    fired: Arc<AtomicBool>,
}

/// A new trigger and the signal it drives.
pub fn channel() -> (Trigger, ShutdownSignal) {
    let (sender, receiver) = crossbeam_channel::bounded(0);
    let fired = Arc::new(AtomicBool::new(false));
    (
        Trigger {
            sender: Arc::new(Mutex::new(Some(sender))),
            fired: Arc::clone(&fired),
        },
        ShutdownSignal { receiver, fired },
    )
}

impl Trigger {
    /// Begin shutdown: the flag is set, then dropping the only sender disconnects every signal.
    pub fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

impl ShutdownSignal {
    pub fn is_triggered(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// Block until shutdown begins.
    pub fn wait(&self) {
        // Nothing is ever sent: this returns only when the sender is dropped.
        let _ = self.receiver.recv();
    }
}

//! The shutdown broadcast. The shape follows mini-redis: one `Sender<()>` is never used to
//! send; dropping it is the broadcast every `Shutdown` sees as a disconnected channel.
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
    restart: Arc<AtomicBool>,
}

/// Tells whether the server's shutdown has begun, and can wait for it: for an app's own
/// threads (a timer, a feed) to stop with the server. From [`Server::on_shutdown`].
///
/// [`Server::on_shutdown`]: crate::Server::on_shutdown
#[derive(Clone)]
pub struct Shutdown {
    receiver: Receiver<()>,
    fired: Arc<AtomicBool>,
    restart: Arc<AtomicBool>,
}

/// A new trigger and the signal it drives.
pub(crate) fn channel() -> (Trigger, Shutdown) {
    let (sender, receiver) = crossbeam_channel::bounded(0);
    let fired = Arc::new(AtomicBool::new(false));
    let restart = Arc::new(AtomicBool::new(false));
    (
        Trigger {
            sender: Arc::new(Mutex::new(Some(sender))),
            fired: Arc::clone(&fired),
            restart: Arc::clone(&restart),
        },
        Shutdown {
            receiver,
            fired,
            restart,
        },
    )
}

impl Trigger {
    /// Say that the shutdown to come is a restart: clients are then closed with 1012 (service
    /// restart, come back soon) instead of 1001 (going away). The server says so itself when
    /// its listening sockets outlive it (socket activation).
    pub fn will_restart(&self) {
        self.restart.store(true, Ordering::SeqCst);
    }

    /// Begin shutdown: the flag is set, then dropping the only sender disconnects every signal.
    pub fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

impl Shutdown {
    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// Whether the shutdown is a restart (see [`Trigger::will_restart`]).
    pub fn is_restart(&self) -> bool {
        self.restart.load(Ordering::Acquire)
    }

    /// Block until shutdown begins.
    pub fn wait(&self) {
        // Nothing is ever sent: this returns only when the sender is dropped.
        let _ = self.receiver.recv();
    }

    /// Wait until shutdown begins, at most `timeout`; true if it has begun. A loop that does
    /// something every second and stops with the server: `while !shutdown.wait_timeout(..)`.
    pub fn wait_timeout(&self, timeout: std::time::Duration) -> bool {
        let _ = self.receiver.recv_timeout(timeout);
        self.is_triggered()
    }
}

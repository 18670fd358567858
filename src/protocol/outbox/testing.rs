//! For tests of what reaches a client's socket: a `Sender` whose socket is a `Recorder`, which
//! keeps every write (how many frames it carried, and its bytes) and can take less than given.

use super::{Outbox, Sender};
use crate::net::stream::{Sink, Stream};
use crate::ops::budget::Budget;
use crate::ops::metrics::LiveTraffic;
use std::io::{self, IoSlice};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

/// Takes at most `room` bytes per write (all when `None`), and records what each write
/// carried: its number of slices and its bytes.
#[derive(Default)]
pub(crate) struct Recorder {
    pub(crate) room: Mutex<Option<usize>>,
    pub(crate) writes: Mutex<Vec<(usize, Vec<u8>)>>,
}

impl Sink for Recorder {
    fn take(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let bytes: Vec<u8> = bufs.iter().flat_map(|buf| buf.iter().copied()).collect();
        let room = self.room.lock().unwrap().unwrap_or(bytes.len());
        let taken = bytes.len().min(room);
        if taken == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.writes
            .lock()
            .unwrap()
            .push((bufs.len(), bytes[..taken].to_vec()));
        Ok(taken)
    }
}

/// Connection `id`'s `Sender`, its queue holding at most `limit` bytes, writing to `recorder`;
/// and the other end of its (unused) socket, to keep it open.
pub(crate) fn sender_to(id: u64, recorder: &Arc<Recorder>, limit: usize) -> (Sender, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let stream = Arc::new(Stream::new(ours));
    stream.send_to(recorder.clone());
    let traffic = Arc::new(LiveTraffic::default());
    let outbox = Outbox::new(id, stream, limit, Budget::new(1 << 20), traffic);
    (Sender::new(outbox), theirs)
}

//! How queued frames reach the socket: whoever finds frames queued and nobody writing takes
//! up to `BATCH` of them out and writes them with one `writev`, the lock released meanwhile;
//! frames queued while it writes (by other broadcasts, on other threads) leave with its next
//! round. So a member whose deliveries come faster than one write each gets them several per
//! system call, with no thread of its own and no delay when they come slowly.

use super::{Outbox, SendError, State, Status};
use crate::protocol::encoded::Encoded;
use std::io::{self, IoSlice};
use std::sync::MutexGuard;

pub(super) struct Chunk {
    pub(super) frames: Encoded,
    pub(super) sent: usize,
    /// Held against the queue's limit and the memory budget. A frame that found nothing
    /// queued before it is let in without: as long as the socket takes it at once it is
    /// never kept, and only what the socket leaves is checked (see `Outbox::put_back`).
    pub(super) checked: bool,
}

/// Most frames one `writev` carries.
pub(super) const BATCH: usize = 32;

impl Outbox {
    /// From any thread: queue `frames` behind what waits, without writing. A queue that would
    /// pass its limit, or a frame the budget has no room for, ends the connection's sending.
    pub(super) fn enqueue(&self, frames: &Encoded) -> Result<(), SendError> {
        let mut state = self.lock();
        state.usable()?;
        // Counted as it goes, so that a scrape after the client has it sees it; a frame the
        // connection then fails on is counted too, as one the server tried to send.
        if let Some(len) = frames.message_len() {
            self.traffic.pushed(len);
        }
        let first = state.queue.is_empty() && !state.writing;
        let len = frames.bytes().len();
        if !first {
            if state.queued + state.in_flight + len > self.limit {
                state.refuse(Status::TooSlow);
                return Err(SendError::TooSlow);
            }
            if !frames.hold(&self.budget) {
                state.refuse(Status::OverBudget);
                return Err(SendError::OverBudget);
            }
        }
        state.queue.push_back(Chunk {
            frames: frames.clone(),
            sent: 0,
            checked: !first,
        });
        state.queued += len;
        Ok(())
    }

    /// From any thread: write what is queued unless someone else is writing (then it leaves
    /// with theirs). What the socket does not take waits for the connection's thread. Fails
    /// when the connection refused what was queued (it is being closed).
    pub(super) fn write_queued(&self) -> Result<(), SendError> {
        let mut state = self.lock();
        if state.writable_queue() {
            let (mut drained, result) = self.drain(state);
            match result {
                Ok(true) if !self.stream.has_pending_output() => {}
                // A session's client reads too slowly (see `Sink`): as a full queue.
                Err(error) if error.kind() == io::ErrorKind::QuotaExceeded => {
                    drained.refuse(Status::TooSlow)
                }
                // Left for the socket, TLS holding part of it, or broken (the connection's
                // thread finds out and ends it): its thread takes over.
                _ => drained.nudge(),
            }
            state = drained;
        }
        match state.status {
            Status::TooSlow => Err(SendError::TooSlow),
            Status::OverBudget => Err(SendError::OverBudget),
            Status::Open | Status::Closing | Status::Ended => Ok(()),
        }
    }

    /// Write out what is queued, up to `BATCH` frames per `writev`, with the lock released
    /// while the socket takes them: frames queued meanwhile leave with the next round.
    /// Returns the lock, and whether nothing is left. The caller made sure nobody else writes
    /// and no frame of the connection's own is half written.
    pub(super) fn drain<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
    ) -> (MutexGuard<'a, State>, io::Result<bool>) {
        loop {
            match self.stream.flush_now() {
                Ok(true) => {}
                done => return (state, done),
            }
            if state.queue.is_empty() {
                return (state, Ok(true));
            }
            let mut batch: [Option<Chunk>; BATCH] = Default::default();
            let mut taken = 0;
            for slot in &mut batch {
                let Some(chunk) = state.queue.pop_front() else {
                    break;
                };
                taken += chunk.frames.bytes().len() - chunk.sent;
                *slot = Some(chunk);
            }
            state.queued -= taken;
            state.in_flight = taken;
            state.writing = true;
            drop(state);
            let mut slices = [IoSlice::new(&[]); BATCH];
            let mut count = 0;
            for (slice, chunk) in slices.iter_mut().zip(batch.iter().flatten()) {
                *slice = IoSlice::new(&chunk.frames.bytes()[chunk.sent..]);
                count += 1;
            }
            let result = self.stream.send_now(&slices[..count]);
            state = self.lock();
            state.writing = false;
            state.in_flight = 0;
            if state.owner_waits {
                state.nudge();
            }
            let (written, outcome) = match result {
                Ok(n) => (n, Ok(n == taken)),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => (0, Ok(false)),
                Err(error) => (0, Err(error)),
            };
            self.put_back(&mut state, batch, written);
            match outcome {
                Ok(true) => {}
                done => return (state, done),
            }
        }
    }

    /// Put what the socket did not take of a writer's `batch` back first in line, as far as
    /// the connection still sends: everything while open or closing, only a frame already
    /// partly sent once it is refusing, nothing once it has ended. A frame let in unchecked
    /// is checked now that it waits.
    fn put_back(&self, state: &mut State, batch: [Option<Chunk>; BATCH], mut written: usize) {
        let mut left = Vec::new();
        for mut chunk in batch.into_iter().flatten() {
            let unsent = chunk.frames.bytes().len() - chunk.sent;
            if written >= unsent {
                written -= unsent;
                continue;
            }
            chunk.sent += written;
            written = 0;
            left.push(chunk);
        }
        let Some(partly_sent) = left.first().map(|chunk| chunk.sent > 0) else {
            return;
        };
        match state.status {
            Status::Open | Status::Closing => {}
            Status::TooSlow | Status::OverBudget if partly_sent => left.truncate(1),
            _ => return,
        }
        let refused = left
            .iter()
            .filter(|chunk| !chunk.checked)
            .find_map(|chunk| {
                let over = state.queued + chunk.frames.bytes().len() - chunk.sent > self.limit;
                if over {
                    Some(Status::TooSlow)
                } else if !chunk.frames.hold(&self.budget) {
                    Some(Status::OverBudget)
                } else {
                    None
                }
            });
        for chunk in left.into_iter().rev() {
            state.queued += chunk.frames.bytes().len() - chunk.sent;
            state.queue.push_front(Chunk {
                checked: true,
                ..chunk
            });
        }
        if let Some(status) = refused {
            state.refuse(status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::outbox::testing::{Recorder, sender_to};
    use std::sync::Arc;
    use tungstenite::Message;

    fn frame(text: &str) -> Encoded {
        Encoded::encode(&Message::text(text))
    }

    fn written(recorder: &Recorder) -> Vec<u8> {
        let writes = recorder.writes.lock().unwrap();
        writes.iter().flat_map(|(_, bytes)| bytes.clone()).collect()
    }

    #[test]
    fn a_lone_frame_is_written_by_the_sender_at_once() {
        let recorder = Arc::new(Recorder::default());
        let (sender, _peer) = sender_to(1, &recorder, 1 << 16);
        sender.send_encoded(&frame("now")).unwrap();
        assert_eq!(written(&recorder), frame("now").bytes());
    }

    #[test]
    fn frames_queued_before_a_write_leave_together_in_one_writev() {
        let recorder = Arc::new(Recorder::default());
        let (sender, _peer) = sender_to(1, &recorder, 1 << 16);
        let frames: Vec<Encoded> = (0..5).map(|i| frame(&format!("message {i}"))).collect();
        for frames in &frames {
            sender.queue(frames).unwrap();
        }
        assert!(
            recorder.writes.lock().unwrap().is_empty(),
            "queued, not written"
        );
        sender.write_queued().unwrap();
        let writes = recorder.writes.lock().unwrap();
        assert_eq!(writes.len(), 1, "one write for the five frames");
        assert_eq!(writes[0].0, 5, "one slice per frame");
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.bytes().to_vec()).collect();
        assert_eq!(writes[0].1, expected);
    }

    #[test]
    fn what_the_socket_leaves_goes_first_and_in_order_when_it_takes_more() {
        let recorder = Arc::new(Recorder::default());
        let (sender, _peer) = sender_to(1, &recorder, 1 << 16);
        *recorder.room.lock().unwrap() = Some(7);
        let frames: Vec<Encoded> = (0..3)
            .map(|i| frame(&format!("frame number {i}")))
            .collect();
        for frames in &frames {
            sender.queue(frames).unwrap();
        }
        sender.write_queued().unwrap();
        assert_eq!(written(&recorder).len(), 7, "the socket took 7 bytes");
        sender.send_encoded(&frame("later")).unwrap();
        *recorder.room.lock().unwrap() = None;
        sender.write_queued().unwrap();
        let mut expected: Vec<u8> = frames.iter().flat_map(|f| f.bytes().to_vec()).collect();
        expected.extend_from_slice(frame("later").bytes());
        assert_eq!(written(&recorder), expected);
    }

    #[test]
    fn a_frame_let_in_unchecked_is_held_to_the_limit_once_it_has_to_wait() {
        let recorder = Arc::new(Recorder::default());
        let big = frame(&"x".repeat(1000));
        // Past the limit, but the socket takes it at once: it is never kept, so never refused.
        let (sender, _peer) = sender_to(1, &recorder, 100);
        sender.send_encoded(&big).unwrap();
        assert_eq!(written(&recorder), big.bytes());
        // The socket takes 10 bytes of the next: the 990 left would pass the limit.
        *recorder.room.lock().unwrap() = Some(10);
        assert_eq!(sender.send_encoded(&big), Err(SendError::TooSlow));
        assert_eq!(sender.send_encoded(&frame("more")), Err(SendError::TooSlow));
    }
}

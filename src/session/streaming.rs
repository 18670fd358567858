//! A streaming HTTP carrier's socket, written by the handler's own thread while the carrier
//! waits: a record the handler sends leaves in the same system call, with no thread to wake
//! between the two (as a WebSocket carrier's records go straight to its outbox). The carrier's
//! thread takes over whenever the socket does not take a whole chunk at once, or the response
//! is full: it writes what is left of the chunk, then carries on as before. Plain sockets
//! only; under TLS the carrier's thread writes every record.

use super::records::{self, Kind};
use crate::net::http;
use crate::net::stream::Stream;
use std::io::{self, IoSlice};
use std::sync::Arc;

/// A streaming carrier waiting for records, and what was written to its socket meanwhile.
pub(super) struct Waiting {
    stream: Arc<Stream>,
    /// The next record's number: every one before it is written (the last perhaps only in
    /// part, the rest in `unsent`).
    pub next: u64,
    /// Bytes of records the response may still carry.
    room: usize,
    /// Bytes of records written.
    pub pushed: usize,
    /// The end of a chunk the socket did not take: the carrier writes it before anything else.
    pub unsent: Vec<u8>,
    /// No more is written here: the carrier's thread has to take over.
    pub stalled: bool,
}

/// What became of a record offered to a waiting carrier.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pushed {
    /// Written whole: the carrier need not wake.
    Whole,
    /// Written in part, or not at all: the carrier's thread must wake and take over.
    WakeCarrier,
}

impl Waiting {
    /// A carrier that waits for record `next` on, with `room` bytes left in its response;
    /// `None` under TLS. (A newer carrier's coming lets go of it: see `Session::attach`.)
    pub fn new(stream: &Arc<Stream>, next: u64, room: usize) -> Option<Waiting> {
        (!stream.is_tls()).then(|| Waiting {
            stream: Arc::clone(stream),
            next,
            room,
            pushed: 0,
            unsent: Vec::new(),
            stalled: false,
        })
    }

    /// Write record `seq` as one chunk of the response, if the socket takes it now.
    pub fn push(&mut self, kind: Kind, seq: u64, payload: &[u8]) -> Pushed {
        if self.stalled || seq != self.next {
            return Pushed::WakeCarrier;
        }
        let mut record = Vec::with_capacity(payload.len() + 24);
        records::write(&mut record, kind, seq, payload);
        if record.len() > self.room {
            self.stalled = true;
            return Pushed::WakeCarrier;
        }
        let head = http::chunk_head(record.len());
        let parts = [head.as_bytes(), &record, http::CHUNK_END];
        let total: usize = parts.iter().map(|part| part.len()).sum();
        let written = match self.stream.send_now(&parts.map(IoSlice::new)) {
            Ok(written) => written,
            Err(error) => {
                // Not a byte of it went: the carrier sends it (or finds the client gone).
                if error.kind() != io::ErrorKind::WouldBlock {
                    log::debug!("session stream: writing a record failed: {error}");
                }
                self.stalled = true;
                return Pushed::WakeCarrier;
            }
        };
        self.next += 1;
        self.room -= record.len();
        self.pushed += record.len();
        if written == total {
            return Pushed::Whole;
        }
        self.unsent = parts.concat().split_off(written);
        self.stalled = true;
        Pushed::WakeCarrier
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    fn waiting(room: usize) -> (Waiting, UnixStream) {
        let (ours, client) = UnixStream::pair().unwrap();
        let stream = Arc::new(Stream::new(ours));
        (Waiting::new(&stream, 3, room).unwrap(), client)
    }

    fn chunk_of(kind: Kind, seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut record = Vec::new();
        records::write(&mut record, kind, seq, payload);
        [
            format!("{:x}\r\n", record.len()).as_bytes(),
            &record,
            b"\r\n",
        ]
        .concat()
    }

    #[test]
    fn a_record_in_order_is_written_as_one_chunk_and_the_next_is_awaited() {
        let (mut waiting, mut client) = waiting(1024);
        assert_eq!(waiting.push(Kind::Text, 3, b"hello"), Pushed::Whole);
        let expected = chunk_of(Kind::Text, 3, b"hello");
        let mut got = vec![0; expected.len()];
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, expected);
        assert_eq!(waiting.next, 4);
        let mut record = Vec::new();
        records::write(&mut record, Kind::Text, 3, b"hello");
        assert_eq!(waiting.pushed, record.len());
    }

    #[test]
    fn a_record_out_of_order_or_past_the_response_is_left_to_the_carrier() {
        let (mut waiting, client) = waiting(16);
        assert_eq!(waiting.push(Kind::Text, 4, b"early"), Pushed::WakeCarrier);
        assert!(
            !waiting.stalled,
            "a record out of order is only passed over"
        );
        assert_eq!(
            waiting.push(Kind::Text, 3, b"more than sixteen bytes"),
            Pushed::WakeCarrier
        );
        assert!(waiting.stalled);
        assert_eq!(waiting.push(Kind::Text, 3, b"x"), Pushed::WakeCarrier);
        assert_eq!((waiting.next, waiting.pushed), (3, 0), "nothing written");
        client.set_nonblocking(true).unwrap();
        assert!(
            (&client).read(&mut [0; 64]).is_err(),
            "nothing on the socket"
        );
    }

    #[test]
    fn what_a_full_socket_does_not_take_is_kept_for_the_carrier_and_nothing_after_it_is_written() {
        let (mut waiting, mut client) = waiting(usize::MAX);
        let payload = vec![b'x'; 4 << 20];
        assert_eq!(waiting.push(Kind::Binary, 3, &payload), Pushed::WakeCarrier);
        assert!(waiting.stalled && !waiting.unsent.is_empty());
        assert_eq!(waiting.next, 4, "the record is the carrier's to finish");
        assert_eq!(waiting.push(Kind::Text, 4, b"after"), Pushed::WakeCarrier);
        // The socket's part, then the kept end, make the whole chunk.
        let expected = chunk_of(Kind::Binary, 3, &payload);
        let mut got = vec![0; expected.len() - waiting.unsent.len()];
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client.read_exact(&mut got).unwrap();
        got.extend_from_slice(&waiting.unsent);
        assert!(got == expected, "the chunk's bytes, in order");
    }
}

//! A frame encoded once for one client or many ([`Encoded`]), and the memory-budget share it
//! holds while any client's queue keeps it.

use crate::ops::budget::{Budget, Holding};
use crate::protocol::frame::{self, BINARY, CLOSE, PING, PONG, TEXT};
use std::sync::{Arc, OnceLock};
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;

/// A frame, encoded once, to be sent to one client or many.
#[derive(Clone)]
pub struct Encoded(Arc<Payload>);

struct Payload {
    bytes: Box<[u8]>,
    /// For a text or binary message, its payload's length (for `/metrics`).
    message_len: Option<usize>,
    /// Taken from the memory budget once, when some client's queue first keeps the frame;
    /// given back when the last clone goes. `None` inside: the budget had no room.
    held: OnceLock<Option<Holding>>,
}

impl Encoded {
    /// Encode `message` as one unmasked server frame.
    pub fn encode(message: &Message) -> Encoded {
        let message_len =
            matches!(message, Message::Text(_) | Message::Binary(_)).then(|| message.len());
        let out = match message {
            Message::Text(text) => frame::encode(TEXT, text.as_bytes()),
            Message::Binary(data) => frame::encode(BINARY, data),
            Message::Ping(data) => frame::encode(PING, data),
            Message::Pong(data) => frame::encode(PONG, data),
            Message::Close(close) => frame::encode(CLOSE, &close_payload(close.as_ref())),
            Message::Frame(frame) => {
                let mut out = Vec::with_capacity(frame.len());
                // Writing to a Vec cannot fail.
                let _ = frame.clone().format(&mut out);
                out
            }
        };
        Encoded(Arc::new(Payload {
            bytes: out.into(),
            message_len,
            held: OnceLock::new(),
        }))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0.bytes
    }

    /// For a text or binary message, its payload's length (for `/metrics`).
    pub(crate) fn message_len(&self) -> Option<usize> {
        self.0.message_len
    }

    /// Count the frame against `budget` while anyone keeps it; false if it has no room.
    pub(crate) fn hold(&self, budget: &Arc<Budget>) -> bool {
        self.0
            .held
            .get_or_init(|| Holding::take(budget, self.0.bytes.len()))
            .is_some()
    }
}

/// A close frame's payload: empty without a code.
fn close_payload(close: Option<&CloseFrame>) -> Vec<u8> {
    close.map_or_else(Vec::new, |close| {
        frame::close_payload(close.code.into(), close.reason.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_shared_by_many_queues_counts_once_until_the_last_lets_go() {
        let budget = Budget::new(100_000);
        let frames = Encoded::encode(&Message::binary(vec![0u8; 60_000]));
        let queued: Vec<Encoded> = (0..5).map(|_| frames.clone()).collect();
        assert!(queued.iter().all(|frame| frame.hold(&budget)));
        assert_eq!(budget.in_use(), frames.bytes().len());
        let other = Encoded::encode(&Message::binary(vec![0u8; 60_000]));
        assert!(!other.hold(&budget), "a second frame does not fit");
        drop(frames);
        drop(queued);
        assert_eq!(budget.in_use(), 0);
    }
}

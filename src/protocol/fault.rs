//! Why reading a client's frames stopped, typed: each fault carries what its close code and
//! log line need, and a timeout or an interruption (reading can go on) is told apart from a
//! failure without looking inside an `io::Error`.

use crate::net::wire::is_timeout;
use crate::ops::budget::Budget;
use crate::protocol::inflate::BadDeflate;
use std::fmt;
use std::io;

/// Why no message came.
#[derive(Debug)]
pub enum Fault {
    /// The read timed out: nothing was lost, reading goes on where it stopped.
    Timeout,
    /// A `Sender` needs the connection's thread (see `outbox.rs`): reading can go on after.
    Interrupted,
    /// The socket failed.
    Io(io::Error),
    /// The client hung up without a close frame.
    Ended,
    /// The client broke the protocol: close 1002.
    Protocol(&'static str),
    /// Text that is not UTF-8: close 1007.
    Utf8,
    /// Compressed data that does not inflate: close 1007.
    BadDeflate(BadDeflate),
    /// A message over the size limit: close 1009.
    TooBig { limit: usize },
    /// No room in the memory budget: close 1013.
    OverBudget(OverBudget),
    /// A message past the client's rate (`Config::max_messages_per_second`): close 1008.
    RateLimit { per_second: u32 },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Timeout => write!(f, "the read timed out"),
            Fault::Interrupted => write!(f, "the connection's thread is wanted"),
            Fault::Io(error) => write!(f, "{error}"),
            Fault::Ended => write!(f, "the client hung up without a close frame"),
            Fault::Protocol(what) => write!(f, "protocol error: {what}"),
            Fault::Utf8 => write!(f, "invalid UTF-8 in text"),
            Fault::BadDeflate(error) => write!(f, "{error}"),
            Fault::TooBig { limit } => write!(f, "message larger than {limit} bytes"),
            Fault::OverBudget(refusal) => write!(f, "{refusal}"),
            Fault::RateLimit { per_second } => {
                write!(f, "more than {per_second} messages a second")
            }
        }
    }
}

impl From<io::Error> for Fault {
    /// A timeout is the keepalive tick; anything else, the socket failing.
    fn from(error: io::Error) -> Fault {
        if is_timeout(&error) {
            Fault::Timeout
        } else {
            Fault::Io(error)
        }
    }
}

/// A message the budget has no room for: the connection is closed with 1013.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverBudget {
    /// The message's size so far, with the frame that did not fit.
    pub message_bytes: u64,
    /// What every connection together held at the time.
    pub in_use: usize,
    pub limit: usize,
}

impl OverBudget {
    /// A message of `message_bytes` that `budget` has no room for now.
    pub fn now(message_bytes: u64, budget: &Budget) -> OverBudget {
        OverBudget {
            message_bytes,
            in_use: budget.in_use(),
            limit: budget.limit(),
        }
    }
}

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a message of {} bytes does not fit in the server's memory budget now ({} of {} bytes in use)",
            self.message_bytes, self.in_use, self.limit
        )
    }
}

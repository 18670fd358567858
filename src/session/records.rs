//! The records a session's carrier moves, both ways: a line of ASCII, then the payload.
//!
//! ```text
//! t12 5\nhello      text message number 12, 5 bytes of UTF-8
//! b13 3\n<3 bytes>  binary message number 13
//! c14 8\n1000 bye   the session closed: its code, a space, the reason
//! k0 0\n            keepalive (no number): proves the carrier is alive
//! ```
//!
//! Messages each way are numbered from 1, with no gaps: a receiver that gets a number it has
//! already seen drops the record (a retried request), so nothing is lost or doubled when a
//! carrier fails and is tried again. The same records go down an HTTP response, up in a POST
//! body, and (for a session over a WebSocket) in WebSocket messages; the page's
//! `www/transport.js` reads and writes them.

use std::fmt;

/// What a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Binary,
    /// The end of the session, with a close code and reason.
    Close,
    /// Nothing: the carrier is alive.
    Keepalive,
}

impl Kind {
    fn letter(self) -> u8 {
        match self {
            Kind::Text => b't',
            Kind::Binary => b'b',
            Kind::Close => b'c',
            Kind::Keepalive => b'k',
        }
    }

    fn of(letter: u8) -> Option<Kind> {
        match letter {
            b't' => Some(Kind::Text),
            b'b' => Some(Kind::Binary),
            b'c' => Some(Kind::Close),
            b'k' => Some(Kind::Keepalive),
            _ => None,
        }
    }
}

/// One record read from a body.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: Kind,
    pub seq: u64,
    pub payload: &'a [u8],
}

/// Why a body is not a run of records.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(&'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed session record: {}", self.0)
    }
}

/// The longest record head: a letter, two numbers of at most 20 digits, a space, a newline.
const MAX_HEAD: usize = 44;

/// Append one record to `out`.
pub fn write(out: &mut Vec<u8>, kind: Kind, seq: u64, payload: &[u8]) {
    out.push(kind.letter());
    out.extend_from_slice(format!("{seq} {}\n", payload.len()).as_bytes());
    out.extend_from_slice(payload);
}

/// A close record's payload: `CODE REASON`.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    format!("{code} {reason}").into_bytes()
}

/// The code and reason of a close record's payload; 1005 (no code) when it has none.
pub fn parse_close(payload: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(payload);
    let (code, reason) = text.split_once(' ').unwrap_or((&text, ""));
    (code.parse().unwrap_or(1005), reason.to_string())
}

/// Every record in `body`, in order.
pub fn parse(mut body: &[u8]) -> Result<Vec<Record<'_>>, Malformed> {
    let mut records = Vec::new();
    while !body.is_empty() {
        let (record, rest) = parse_one(body)?;
        records.push(record);
        body = rest;
    }
    Ok(records)
}

fn parse_one(body: &[u8]) -> Result<(Record<'_>, &[u8]), Malformed> {
    let kind = Kind::of(body[0]).ok_or(Malformed("unknown kind (t, b, c or k)"))?;
    let newline = body
        .iter()
        .take(MAX_HEAD)
        .position(|&byte| byte == b'\n')
        .ok_or(Malformed("no newline after the record's numbers"))?;
    let head = std::str::from_utf8(&body[1..newline]).map_err(|_| Malformed("not ASCII"))?;
    let (seq, len) = head
        .split_once(' ')
        .ok_or(Malformed("a record's head is KIND SEQ LEN"))?;
    let number = |text: &str| {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<u64>().ok())
            .flatten()
            .ok_or(Malformed("a number is decimal digits"))
    };
    let (seq, len) = (number(seq)?, number(len)?);
    let rest = &body[newline + 1..];
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= rest.len())
        .ok_or(Malformed("the payload is shorter than its length"))?;
    let payload = &rest[..len];
    Ok((Record { kind, seq, payload }, &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_written_parse_back_in_order_whatever_their_payload() {
        let mut body = Vec::new();
        write(&mut body, Kind::Text, 1, "héllo\nworld".as_bytes());
        write(&mut body, Kind::Binary, 2, &[0, 10, 255]);
        write(&mut body, Kind::Keepalive, 0, b"");
        write(&mut body, Kind::Close, 3, &close_payload(1000, "bye now"));
        let records = parse(&body).unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(records[0].payload, "héllo\nworld".as_bytes());
        assert_eq!((records[1].kind, records[1].seq), (Kind::Binary, 2));
        assert_eq!(records[1].payload, &[0, 10, 255]);
        assert_eq!(records[2].kind, Kind::Keepalive);
        assert_eq!(parse_close(records[3].payload), (1000, "bye now".into()));
        assert_eq!(&body[..6], b"t1 12\n");
    }

    #[test]
    fn a_broken_body_is_refused_with_what_is_wrong() {
        assert_eq!(
            parse(b"x1 1\na"),
            Err(Malformed("unknown kind (t, b, c or k)"))
        );
        assert_eq!(
            parse(b"t1 5\nab"),
            Err(Malformed("the payload is shorter than its length"))
        );
        assert_eq!(
            parse(b"t1 -1\n"),
            Err(Malformed("a number is decimal digits"))
        );
        assert_eq!(
            parse(b"t1\n"),
            Err(Malformed("a record's head is KIND SEQ LEN"))
        );
        let endless = [b"t1 ".as_slice(), &[b'1'; 100]].concat();
        assert_eq!(
            parse(&endless),
            Err(Malformed("no newline after the record's numbers"))
        );
        assert_eq!(parse_close(b""), (1005, String::new()));
    }
}

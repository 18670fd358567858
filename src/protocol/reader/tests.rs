use super::*;
use crate::fuzzing::{Replay, read_all};
use crate::ops::budget::ALLOWANCE;
use std::sync::Arc;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

/// One masked client frame.
fn frame(opcode: u8, fin: bool, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let header = Header {
        size: 0,
        payload: payload.len() as u64,
        fin,
        rsv: 0,
        opcode,
        mask: Some(key),
    };
    let mut head = [0; frame::MAX_HEADER];
    let size = header.write(&mut head);
    let mut out = head[..size].to_vec();
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

fn reader(budget: usize, max: usize, deflate: bool) -> Reader {
    Reader::new(Holding::new(&Budget::new(budget)), max, deflate)
}

/// Every message `bytes` gives, read in pieces of `sizes`, and how the reading ended.
fn read(bytes: &[u8], sizes: &[usize], max: usize, deflate: bool) -> (Vec<Message>, String) {
    read_all(
        reader(1 << 30, max, deflate),
        Replay::new(bytes, sizes.to_vec()),
    )
}

/// The next message, through read timeouts.
fn next(reader: &mut Reader, source: &mut Replay) -> Result<Message, Fault> {
    loop {
        match reader.next(source) {
            Err(Fault::Timeout) => continue,
            other => return other,
        }
    }
}

const ENDED: &str = "ended";

#[test]
fn messages_arrive_whole_and_in_order_whatever_the_reads() {
    let text: String = "héllo wörld ✓ ".repeat(3_000); // multi-byte characters cut anywhere
    let binary: Vec<u8> = (0..100_003u32).map(|i| (i % 251) as u8).collect();
    let part = vec![9u8; 20_001];
    let mut bytes = frame(TEXT, true, text.as_bytes(), [1, 2, 3, 4]);
    bytes.extend(frame(BINARY, true, &binary, [0xa0, 0x0b, 0xc0, 0x0d]));
    bytes.extend(frame(TEXT, true, b"small", [5, 6, 7, 8]));
    bytes.extend(frame(BINARY, false, &part, [7, 7, 1, 2]));
    bytes.extend(frame(PING, true, b"ping!", [3, 3, 3, 3]));
    bytes.extend(frame(CONTINUATION, true, &binary[..30_000], [4, 0, 0, 4]));
    bytes.extend(frame(TEXT, false, b"frag", [1, 1, 2, 2]));
    bytes.extend(frame(PONG, true, b"pong", [7, 7, 7, 7]));
    bytes.extend(frame(CONTINUATION, true, b"ments", [2, 2, 1, 1]));
    let mut joined = part.clone();
    joined.extend_from_slice(&binary[..30_000]);
    let expected = vec![
        Message::text(text.clone()),
        Message::binary(binary.clone()),
        Message::text("small"),
        Message::Ping("ping!".into()),
        Message::binary(joined),
        Message::Pong("pong".into()),
        Message::text("fragments"),
    ];
    for sizes in [
        &[usize::MAX][..],
        &[1, 7, 1024, 3, 65_536, 14],
        &[13, 0, 2],
        &[600],
    ] {
        let (messages, ended) = read(&bytes, sizes, 1 << 20, false);
        assert_eq!(
            (messages, ended.as_str()),
            (expected.clone(), ENDED),
            "{sizes:?}"
        );
    }
}

/// A big frame handed over from someone else's buffer in pieces (the spill buffer) gets room
/// for all of it at its first bytes: growing the message piece by piece moved it to a bigger
/// block time and again (a memmove of what had come, 4% of the server in a 64 KiB stream).
#[test]
fn a_big_frame_arriving_in_pieces_is_given_its_whole_room_at_once() {
    let payload = vec![5u8; 65_536];
    // The first fragment of a message, then a pause: the message stays under way.
    let bytes = frame(BINARY, false, &payload, [1, 2, 3, 4]);
    // The header's read brings its first 502 bytes, then held pieces of 4 KiB bring the rest
    // (16 of them), then the next header's read finds nothing yet.
    let mut sizes = vec![512];
    sizes.extend([4096; 16]);
    sizes.push(0);
    let mut source = Replay::new(&bytes, sizes);
    let mut reader = reader(1 << 30, 1 << 20, false);
    assert!(matches!(reader.next(&mut source), Err(Fault::Timeout)));
    let data = &reader.message.as_ref().expect("a message under way").data;
    assert_eq!(data, &payload, "the fragment came whole");
    assert_eq!(
        data.capacity(),
        payload.len(),
        "the room was made once, for the whole frame"
    );
}

#[test]
fn read_timeouts_anywhere_lose_no_byte() {
    let binary: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    let mut bytes = frame(BINARY, true, &binary, [1, 2, 3, 4]);
    bytes.extend(frame(TEXT, true, b"after", [5, 6, 7, 8]));
    // Reads of 1 and 3 bytes with timeouts between: headers arrive in parts.
    let mut reader = reader(1 << 30, 1 << 20, false);
    let mut source = Replay::new(&bytes, vec![1, 0, 3, 0, 0, 5000, 0]);
    assert_eq!(
        next(&mut reader, &mut source).unwrap(),
        Message::binary(binary.clone())
    );
    assert_eq!(
        next(&mut reader, &mut source).unwrap(),
        Message::text("after")
    );
}

#[test]
fn a_message_the_budget_cannot_hold_fails_the_read_and_nothing_stays_held() {
    let budget_bytes = 50_000;
    let mut bytes = frame(BINARY, true, &[1; 1000], [1, 1, 1, 1]);
    bytes.extend(frame(BINARY, false, &[2; 30_000], [1, 1, 1, 1]));
    bytes.extend(frame(CONTINUATION, true, &[3; 30_000], [1, 1, 1, 1]));
    let mut reader = reader(budget_bytes, 1 << 20, false);
    let budget = Arc::clone(reader.budget());
    let mut source = Replay::new(&bytes, vec![4096]);
    next(&mut reader, &mut source).unwrap();
    reader.release_delivered();
    let Err(Fault::OverBudget(refusal)) = next(&mut reader, &mut source) else {
        panic!("a message past the budget was read")
    };
    assert_eq!(refusal.message_bytes, 60_000);
    assert_eq!(refusal.limit, budget_bytes);
    // Its first part stays held until the connection is gone.
    assert_eq!(budget.in_use(), 30_000 - ALLOWANCE);
    drop(reader);
    assert_eq!(
        budget.in_use(),
        0,
        "a closed connection gives everything back"
    );
}

#[test]
fn a_delivered_message_is_given_back_to_the_budget() {
    let mut bytes = Vec::new();
    for _ in 0..5 {
        bytes.extend(frame(BINARY, true, &[7; 40_000], [9, 8, 7, 6]));
    }
    // Five 40 KB messages through a 50 KB budget: each is handed on before the next.
    let mut reader = reader(50_000, 1 << 20, false);
    let mut source = Replay::new(&bytes, vec![65_536]);
    for _ in 0..5 {
        let message = next(&mut reader, &mut source).unwrap();
        assert_eq!(message.len(), 40_000);
        reader.release_delivered();
    }
}

#[test]
fn a_small_message_is_held_against_the_budget_until_released() {
    let bytes = frame(BINARY, true, &[7; 300], [1, 2, 3, 4]);
    let mut reader = reader(1 << 20, 1000, false);
    let budget = Arc::clone(reader.budget());
    let mut source = Replay::new(&bytes, vec![usize::MAX]);
    let message = next(&mut reader, &mut source).unwrap();
    assert_eq!(message, Message::binary(vec![7; 300]));
    assert_eq!(budget.in_use(), 300 - ALLOWANCE.min(300));
    reader.release_delivered();
    assert_eq!(budget.in_use(), 0);
}

#[test]
fn what_the_protocol_refuses_is_refused_with_its_own_fault() {
    // Invalid UTF-8 in a small text, and deep in a big one: 1007.
    let mut bytes = frame(TEXT, true, b"fine", [1, 2, 3, 4]);
    bytes.extend(frame(TEXT, true, &[b'a', 0xff, b'b'], [1, 2, 3, 4]));
    assert_eq!(
        read(&bytes, &[usize::MAX], 1000, false),
        (vec![Message::text("fine")], "utf-8".to_string())
    );
    let mut broken = "ünïcode ✓ ".repeat(5_000).into_bytes();
    broken[30_000] = 0xff;
    for sizes in [&[usize::MAX][..], &[700, 0, 9000, 0], &[1]] {
        let bytes = frame(TEXT, true, &broken, [4, 3, 2, 1]);
        assert_eq!(read(&bytes, sizes, 1 << 20, false).1, "utf-8");
    }
    // Over the size limit, however small, in one frame or in fragments: 1009, nothing held.
    let bytes = frame(BINARY, true, &[7; 100], [1, 2, 3, 4]);
    assert_eq!(read(&bytes, &[usize::MAX], 99, false).1, "capacity");
    let mut bytes = frame(BINARY, false, &[7; 60], [1, 2, 3, 4]);
    bytes.extend(frame(CONTINUATION, true, &[7; 60], [1, 2, 3, 4]));
    let mut reader = reader(1000, 99, false);
    let budget = Arc::clone(reader.budget());
    let mut source = Replay::new(&bytes, vec![usize::MAX]);
    assert!(matches!(
        next(&mut reader, &mut source),
        Err(Fault::TooBig { limit: 99 })
    ));
    drop(reader);
    assert_eq!(budget.in_use(), 0);
    // Reserved bits without an extension, an unknown opcode, no mask, a fragmented or big
    // control frame, a continuation of nothing, a new message inside another: 1002.
    let mut rsv = frame(TEXT, true, b"squeezed?", [1, 2, 3, 4]);
    rsv[0] |= 0x40;
    let mut unmasked = frame(BINARY, true, &[], [0; 4]);
    unmasked[1] &= 0x7f;
    unmasked.truncate(2);
    let mut nested = frame(TEXT, false, b"one", [1, 2, 3, 4]);
    nested.extend(frame(TEXT, true, b"two", [1, 2, 3, 4]));
    for bytes in [
        rsv,
        frame(0x3, true, b"?", [1, 2, 3, 4]),
        frame(0xb, true, b"?", [1, 2, 3, 4]),
        unmasked,
        frame(PING, false, b"", [1, 2, 3, 4]),
        frame(PING, true, &[0; 126], [1, 2, 3, 4]),
        frame(CONTINUATION, true, b"of what?", [1, 2, 3, 4]),
        nested,
        frame(CLOSE, true, &[3], [1, 2, 3, 4]),
        frame(CLOSE, true, &1005u16.to_be_bytes(), [1, 2, 3, 4]),
        frame(CLOSE, true, &999u16.to_be_bytes(), [1, 2, 3, 4]),
    ] {
        let (messages, ended) = read(&bytes, &[usize::MAX], 1000, false);
        assert_eq!(
            (messages.len(), ended.as_str()),
            (0, "protocol"),
            "{bytes:?}"
        );
    }
    // A close's reason must be UTF-8.
    let bytes = frame(CLOSE, true, &[0x03, 0xe8, 0xff], [1, 2, 3, 4]);
    assert_eq!(read(&bytes, &[usize::MAX], 1000, false).1, "utf-8");
}

#[test]
fn a_close_ends_the_reading_with_its_code_and_reason() {
    let mut payload = 4001u16.to_be_bytes().to_vec();
    payload.extend_from_slice("bye ✓".as_bytes());
    let mut bytes = frame(TEXT, true, b"last words", [1, 2, 3, 4]);
    bytes.extend(frame(CLOSE, true, &payload, [5, 6, 7, 8]));
    let (messages, ended) = read(&bytes, &[3], 1000, false);
    assert_eq!(ended, "closed");
    assert_eq!(
        messages,
        vec![
            Message::text("last words"),
            Message::Close(Some(CloseFrame {
                code: CloseCode::from(4001),
                reason: "bye ✓".into()
            }))
        ]
    );
    let (messages, _) = read(&frame(CLOSE, true, &[], [1, 2, 3, 4]), &[9], 1000, false);
    assert_eq!(messages, vec![Message::Close(None)]);
}

#[test]
fn no_room_in_the_budget_refuses_and_nothing_stays_held() {
    // None of these is ever released, so all are held until the budget is full.
    let bytes = frame(BINARY, true, &[7; 300], [1, 2, 3, 4]).repeat(20);
    let reader = reader(1000, 1000, false);
    let budget = Arc::clone(reader.budget());
    let (messages, ended) = read_all(reader, Replay::new(&bytes, vec![usize::MAX]));
    let fit = (ALLOWANCE + 1000) / 300;
    assert_eq!((messages.len(), ended.as_str()), (fit, "budget"));
    assert_eq!(budget.in_use(), 0);
}

/// `payload` compressed as a permessage-deflate client sends it: raw deflate, flushed,
/// without the `00 00 ff ff` the flush ends with.
fn compress(payload: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), Default::default());
    encoder.write_all(payload).unwrap();
    encoder.flush().unwrap();
    let mut out = encoder.get_ref().clone();
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - TAIL.len());
    out
}

/// A masked frame with RSV1: the first (or only) frame of a compressed message.
fn compressed(opcode: u8, fin: bool, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut bytes = frame(opcode, fin, payload, key);
    bytes[0] |= RSV1;
    bytes
}

#[test]
fn compressed_messages_inflate_whatever_the_reads_with_pings_between_fragments() {
    let text = "héllo wörld ✓ ".repeat(3_000);
    let squeezed = compress(text.as_bytes());
    let third = squeezed.len() / 3;
    let binary: Vec<u8> = (0..200_000u32).map(|i| (i / 7 % 251) as u8).collect();
    let mut bytes = compressed(TEXT, false, &squeezed[..third], [1, 2, 3, 4]);
    bytes.extend(frame(PING, true, b"between", [5, 5, 5, 5]));
    bytes.extend(frame(
        CONTINUATION,
        false,
        &squeezed[third..2 * third],
        [6, 7, 8, 9],
    ));
    bytes.extend(frame(
        CONTINUATION,
        true,
        &squeezed[2 * third..],
        [9, 8, 7, 6],
    ));
    bytes.extend(compressed(
        BINARY,
        true,
        &compress(&binary),
        [0xa0, 0x0b, 0xc0, 0x0d],
    ));
    bytes.extend(frame(TEXT, true, b"plain, uncompressed", [1, 1, 1, 1]));
    bytes.extend(compressed(TEXT, true, &compress(b"small"), [2, 4, 6, 8]));
    bytes.extend(compressed(BINARY, true, &compress(b""), [3, 3, 3, 3]));
    // A final deflate block ends the data; the tail put after it is ignored.
    bytes.extend(compressed(
        TEXT,
        true,
        &[0x01, 0x02, 0x00, 0xfd, 0xff, b'o', b'k'],
        [0; 4],
    ));
    let expected = vec![
        Message::Ping("between".into()),
        Message::text(text.clone()),
        Message::binary(binary.clone()),
        Message::text("plain, uncompressed"),
        Message::text("small"),
        Message::binary(Vec::new()),
        Message::text("ok"),
    ];
    for sizes in [
        &[usize::MAX][..],
        &[1, 7, 1024, 3, 65_536, 14],
        &[13, 0, 2],
        &[600, 0],
    ] {
        let (messages, ended) = read(&bytes, sizes, 1 << 20, true);
        assert_eq!(
            (messages, ended.as_str()),
            (expected.clone(), ENDED),
            "{sizes:?}"
        );
    }
}

#[test]
fn rsv1_anywhere_else_is_a_protocol_error() {
    let squeezed = compress(b"hello");
    // Not agreed at the upgrade.
    let bytes = compressed(TEXT, true, &squeezed, [1, 2, 3, 4]);
    assert_eq!(
        read(&bytes, &[usize::MAX], 1000, false),
        (vec![], "protocol".into())
    );
    // On a continuation frame.
    let mut bytes = compressed(TEXT, false, &squeezed[..2], [1, 2, 3, 4]);
    bytes.extend(compressed(CONTINUATION, true, &squeezed[2..], [1, 2, 3, 4]));
    assert_eq!(
        read(&bytes, &[usize::MAX], 1000, true),
        (vec![], "protocol".into())
    );
    // A new message before the compressed one has ended.
    let mut bytes = compressed(TEXT, false, &squeezed, [1, 2, 3, 4]);
    bytes.extend(frame(TEXT, true, b"too soon", [1, 2, 3, 4]));
    assert_eq!(
        read(&bytes, &[usize::MAX], 1000, true),
        (vec![], "protocol".into())
    );
}

#[test]
fn data_that_does_not_inflate_fails_the_read_with_bad_deflate() {
    let mut bytes = compressed(TEXT, true, &compress(b"fine"), [1, 2, 3, 4]);
    bytes.extend(compressed(
        BINARY,
        true,
        &[0xff, 0xff, 0xff, 0xff],
        [1, 2, 3, 4],
    ));
    assert_eq!(
        read(&bytes, &[usize::MAX], 1000, true),
        (vec![Message::text("fine")], "deflate".into())
    );
}

#[test]
fn a_small_message_inflating_past_the_limit_stops_there_in_bounded_memory() {
    let max = 1 << 20;
    let bomb = compress(&vec![0; 8 << 20]);
    assert!(bomb.len() < 20_000, "{}", bomb.len());
    let bytes = compressed(BINARY, true, &bomb, [1, 2, 3, 4]);
    let mut reader = reader(1 << 30, max, true);
    let budget = Arc::clone(reader.budget());
    let mut source = Replay::new(&bytes, vec![usize::MAX]);
    let mut most_held = 0;
    loop {
        match reader.next(&mut source) {
            Err(Fault::Timeout) => most_held = most_held.max(budget.in_use()),
            Err(Fault::TooBig { limit }) => break assert_eq!(limit, max),
            other => panic!("{other:?}"),
        }
    }
    let held = budget.in_use().max(most_held);
    assert!(held <= max + INFLATING_BYTES, "{held} bytes held");
    drop(reader);
    assert_eq!(
        budget.in_use(),
        0,
        "a closed connection gives everything back"
    );
}

#[test]
fn a_compressed_message_is_held_against_the_budget_and_given_back() {
    let text = "abc".repeat(10_000);
    let bytes = compressed(TEXT, true, &compress(text.as_bytes()), [1, 2, 3, 4]);
    let mut reader = reader(1 << 20, 1 << 20, true);
    let budget = Arc::clone(reader.budget());
    let mut source = Replay::new(&bytes, vec![usize::MAX]);
    assert_eq!(next(&mut reader, &mut source).unwrap(), Message::text(text));
    // The message is held (less the connection's own allowance); the inflater is not.
    assert_eq!(budget.in_use(), 30_000 - ALLOWANCE);
    reader.release_delivered();
    assert_eq!(budget.in_use(), 0);
    // A budget with no room for an inflater refuses the message: 1013.
    let (messages, ended) = read_all(
        Reader::new(Holding::new(&Budget::new(1000)), 1 << 20, true),
        Replay::new(&bytes, vec![usize::MAX]),
    );
    assert_eq!((messages.len(), ended.as_str()), (0, "budget"));
}

#[test]
fn many_connections_inflate_at_once() {
    let text = "many at once ".repeat(2_000);
    let mut bytes = Vec::new();
    for _ in 0..20 {
        bytes.extend(compressed(
            TEXT,
            true,
            &compress(text.as_bytes()),
            [7, 1, 7, 1],
        ));
    }
    std::thread::scope(|scope| {
        for _ in 0..16 {
            scope.spawn(|| {
                let (messages, _) = read(&bytes, &[4096], 1 << 20, true);
                assert_eq!(messages, vec![Message::text(text.clone()); 20]);
            });
        }
    });
}

#[test]
fn past_the_rate_limit_a_message_is_refused_whole_or_in_fragments_and_nothing_stays_held() {
    for fragmented in [false, true] {
        let mut bytes = Vec::new();
        for n in 0..3u8 {
            let payload = vec![n; 20_000];
            if fragmented {
                bytes.extend(frame(BINARY, false, &payload[..10_000], [1, 2, 3, 4]));
                bytes.extend(frame(CONTINUATION, true, &payload[10_000..], [1, 2, 3, 4]));
            } else {
                bytes.extend(frame(BINARY, true, &payload, [1, 2, 3, 4]));
            }
        }
        let mut reader = reader(1 << 20, 1 << 20, false);
        reader.limit_rate(2);
        let budget = Arc::clone(reader.budget());
        let mut source = Replay::new(&bytes, vec![usize::MAX]);
        for n in 0..2u8 {
            let message = next(&mut reader, &mut source).unwrap();
            assert_eq!(message, Message::binary(vec![n; 20_000]));
            reader.release_delivered();
        }
        let fault = next(&mut reader, &mut source);
        assert!(
            matches!(fault, Err(Fault::RateLimit { per_second: 2 })),
            "fragmented {fragmented}: {fault:?}"
        );
        assert_eq!(budget.in_use(), 0, "fragmented {fragmented}");
    }
}

use super::codes::CODE_LENGTH_ORDER;
use super::*;
use std::io::Write;

/// `data` compressed at `level` as one stream ending in a final block.
fn deflate(data: &[u8], level: u32) -> Vec<u8> {
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(level));
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// `data` as a permessage-deflate client sends it (sync flush), with the tail put back, as
/// the reader hands it over.
fn flushed(data: &[u8], level: u32) -> Vec<u8> {
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(level));
    encoder.write_all(data).unwrap();
    encoder.flush().unwrap();
    encoder.get_ref().clone()
}

/// Inflate `stream` given in pieces of the sizes in `pieces` (in turn), into an output that
/// grows by `step` whenever it is full, as the reader does; then `finish`.
fn inflate_in(stream: &[u8], pieces: &[usize], step: usize) -> Result<Vec<u8>, BadDeflate> {
    let mut inflater = Inflater::new();
    let mut output = Vec::new();
    let mut rest = stream;
    // Each round uses input or makes output: bounded by their sizes.
    let rounds = 10 * (stream.len() + 10) + 100_000_000 / step.max(1);
    for turn in 0..rounds {
        let size = pieces[turn % pieces.len()].min(rest.len());
        let mut piece = &rest[..size];
        rest = &rest[size..];
        loop {
            if output.len() == output.capacity() {
                output.reserve_exact(step);
            }
            let capacity = output.capacity();
            let before = output.len();
            let used = inflater.inflate(piece, &mut output)?;
            assert!(output.capacity() == capacity, "the output was grown");
            piece = &piece[used..];
            if piece.is_empty() && output.len() < output.capacity() {
                break;
            }
            assert!(used > 0 || output.len() > before, "no progress");
        }
        if rest.is_empty() {
            inflater.finish()?;
            return Ok(output);
        }
    }
    panic!("did not end");
}

/// A small deterministic generator for the tests' data.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Fewer than `most` bytes, how many at random.
    fn some_bytes(&mut self, most: usize) -> Vec<u8> {
        let n = self.below(most);
        self.bytes(n)
    }
}

fn samples() -> Vec<Vec<u8>> {
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let text = "The quick brown fox jumps over the lazy dog; héllo wörld ✓ ".repeat(400);
    let mut mixed = Vec::new();
    for i in 0..3000 {
        match i % 3 {
            0 => mixed.extend(random.some_bytes(40)),
            1 => mixed.extend(std::iter::repeat_n(i as u8, random.below(300))),
            _ => mixed.extend(&text.as_bytes()[i..i + random.below(200)]),
        }
    }
    vec![
        Vec::new(),
        b"x".repeat(32),
        b"Hello, world! Hello, world!".to_vec(),
        text.into_bytes(),
        random.bytes(70_000),
        vec![0; 300_000],
        b"ab".repeat(50_000),
        mixed,
    ]
}

#[test]
fn every_kind_of_block_inflates_to_what_was_compressed_whatever_the_pieces() {
    let mut kinds = [false; 3];
    for data in samples() {
        for level in [0, 1, 6, 9] {
            for stream in [deflate(&data, level), flushed(&data, level)] {
                kinds[usize::from((stream[0] >> 1) & 3)] = true;
                for (pieces, step) in [
                    (&[usize::MAX][..], 1 << 20),
                    (&[1][..], 4096),
                    (&[7, 1, 300][..], 1),
                    (&[64, 2][..], 13),
                ] {
                    if step == 1 && data.len() > 100_000 {
                        continue; // a byte of room at a time: slow, and the same code
                    }
                    let inflated = inflate_in(&stream, pieces, step);
                    assert!(
                        inflated.as_deref() == Ok(&data[..]),
                        "{} bytes at level {level}, pieces {pieces:?}, step {step}: {:?}",
                        data.len(),
                        inflated.map(|out| out.len())
                    );
                }
            }
        }
    }
    assert_eq!(kinds, [true; 3], "stored, fixed and own codes all seen");
}

#[test]
fn what_a_browser_sends_for_a_short_message_inflates_without_building_tables() {
    // zlib's raw deflate of 32 "x" and of a short sentence, sync-flushed: fixed codes, as
    // Chromium and Firefox send a short message.
    for (hex, message) in [
        ("aaa8c00f00000000ffff", b"x".repeat(32)),
        (
            "f248cdc9c9d75128cf2fca495154f040e601000000ffff",
            b"Hello, world! Hello, world!".to_vec(),
        ),
    ] {
        let stream: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).unwrap())
            .collect();
        let mut inflater = Inflater::new();
        let mut output = Vec::with_capacity(100);
        assert_eq!(inflater.inflate(&stream, &mut output), Ok(stream.len()));
        assert_eq!(output, message);
        assert_eq!(inflater.finish(), Ok(()));
        assert!(
            inflater.own.is_none(),
            "fixed codes need no tables of their own"
        );
    }
}

#[test]
fn the_output_never_grows_past_its_room_and_a_match_goes_on_where_it_stopped() {
    // 300,000 zeros are a few long matches: each call fills exactly the room it is given.
    let stream = deflate(&vec![0; 300_000], 9);
    let mut inflater = Inflater::new();
    let mut output = Vec::with_capacity(1000);
    let mut input = &stream[..];
    let mut rounds = 0;
    while output.len() < 300_000 {
        rounds += 1;
        assert!(rounds < 400, "no progress");
        let used = inflater.inflate(input, &mut output).unwrap();
        input = &input[used..];
        assert_eq!(output.len(), output.capacity().min(300_000));
        output.reserve_exact(1000);
    }
    assert!(output.iter().all(|&byte| byte == 0));
    assert_eq!(inflater.inflate(input, &mut output), Ok(input.len()));
    assert_eq!(inflater.finish(), Ok(()));
}

/// Bits written lowest first, as DEFLATE packs them; Huffman codes highest bit first.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    used: u32,
}

impl Bits {
    fn put(&mut self, value: u32, n: u32) -> &mut Self {
        for bit in 0..n {
            if self.used.is_multiple_of(8) {
                self.bytes.push(0);
            }
            let last = self.bytes.len() - 1;
            self.bytes[last] |= (((value >> bit) & 1) as u8) << (self.used % 8);
            self.used += 1;
        }
        self
    }

    fn code(&mut self, code: u32, n: u32) -> &mut Self {
        self.put(code.reverse_bits() >> (32 - n), n)
    }

    /// A symbol of the fixed literal/length code.
    fn fixed(&mut self, symbol: u32) -> &mut Self {
        match symbol {
            0..=143 => self.code(0x30 + symbol, 8),
            144..=255 => self.code(0x190 + symbol - 144, 9),
            256..=279 => self.code(symbol - 256, 7),
            _ => self.code(0xc0 + symbol - 280, 8),
        }
    }
}

fn inflate_all(stream: &[u8]) -> Result<Vec<u8>, BadDeflate> {
    let mut inflater = Inflater::new();
    let mut output = Vec::with_capacity(1 << 16);
    inflater.inflate(stream, &mut output)?;
    inflater.finish()?;
    Ok(output)
}

fn fails_with(stream: &[u8], why: &str) {
    match inflate_all(stream) {
        Err(error) => assert!(error.to_string().contains(why), "{error}, not {why}"),
        Ok(output) => panic!("inflated to {output:?}, not refused for {why}"),
    }
}

#[test]
fn data_that_breaks_the_format_is_refused_with_what_is_wrong() {
    fails_with(&[0xff, 0xff, 0xff], "block type 3");
    // A stored block whose length's complement is wrong.
    fails_with(
        &[0x01, 0x02, 0x00, 0x00, 0x00, b'h', b'i'],
        "length does not check",
    );
    // Fixed codes: a match two bytes back after one byte.
    let mut bits = Bits::default();
    bits.put(0b011, 3)
        .fixed(u32::from(b'a'))
        .fixed(257)
        .code(1, 5);
    fails_with(&bits.bytes, "before the message's start");
    // Length symbols 286 and 287, distance symbols 30 and 31 exist in the fixed code only.
    let mut bits = Bits::default();
    bits.put(0b011, 3).fixed(u32::from(b'a')).fixed(286);
    fails_with(&bits.bytes, "286 or 287");
    let mut bits = Bits::default();
    bits.put(0b011, 3)
        .fixed(u32::from(b'a'))
        .fixed(257)
        .code(30, 5);
    fails_with(&bits.bytes, "30 or 31");
    // Own codes: 288 literal/length codes where 286 is the most.
    let mut bits = Bits::default();
    bits.put(0b101, 3).put(31, 5).put(0, 5).put(15, 4);
    fails_with(&bits.bytes, "more length or distance codes");
    // A code-length code over-subscribed: three codes of one bit.
    let mut bits = Bits::default();
    bits.put(0b101, 3).put(0, 5).put(0, 5).put(0, 4);
    bits.put(1, 3).put(1, 3).put(1, 3).put(0, 3);
    fails_with(&bits.bytes, "more codes than their lengths allow");
    // The code-length code {0: "0", 16: "1"}; the first length says "repeat the previous".
    let mut bits = Bits::default();
    bits.put(0b101, 3).put(0, 5).put(0, 5).put(0, 4);
    bits.put(1, 3)
        .put(0, 3)
        .put(0, 3)
        .put(1, 3)
        .code(1, 1)
        .put(0, 2);
    fails_with(&bits.bytes, "none before it");
    // {1: "0", 18: "1"}: 257 zero lengths, then one distance code: no end-of-block code.
    let mut bits = Bits::default();
    bits.put(0b101, 3).put(0, 5).put(0, 5).put(14, 4);
    for symbol in &CODE_LENGTH_ORDER[..18] {
        bits.put(u32::from(matches!(symbol, 1 | 18)), 3);
    }
    bits.code(1, 1)
        .put(127, 7)
        .code(1, 1)
        .put(108, 7)
        .code(0, 1);
    fails_with(&bits.bytes, "without an end-of-block code");
    // Data cut inside a block, with nothing wrong in what came.
    let stream = flushed(&b"cut short ".repeat(100), 6);
    fails_with(&stream[..stream.len() / 2], "ends inside a block");
}

#[test]
fn a_final_block_ends_the_data_and_what_follows_is_ignored() {
    // A final stored block holding "hi", then bytes that are not DEFLATE.
    let mut inflater = Inflater::new();
    let mut output = Vec::with_capacity(100);
    let stream = [0x01, 0x02, 0x00, 0xfd, 0xff, b'h', b'i', 0x12, 0x34];
    assert_eq!(inflater.inflate(&stream, &mut output), Ok(stream.len()));
    assert_eq!(inflater.inflate(&[0xff; 4], &mut output), Ok(4));
    assert_eq!(output, b"hi");
    assert_eq!(inflater.finish(), Ok(()));
}

/// What flate2 (miniz_oxide) makes of `stream`, if it inflates without an error.
fn reference(stream: &[u8]) -> Option<Vec<u8>> {
    let mut inflater = flate2::Decompress::new(false);
    let mut output = Vec::with_capacity(1 << 20);
    inflater
        .decompress_vec(stream, &mut output, flate2::FlushDecompress::Sync)
        .ok()?;
    Some(output)
}

#[test]
fn damaged_or_random_data_never_panics_and_what_inflates_matches_another_inflater() {
    let mut random = Random(0x2545_f491_4f6c_dd1d);
    let valid: Vec<Vec<u8>> = samples()
        .into_iter()
        .map(|data| data[..data.len().min(3000)].to_vec())
        .flat_map(|data| [flushed(&data, 6), deflate(&data, 1)])
        .collect();
    let mut agreed = 0;
    for round in 0..3000 {
        let stream = match round % 3 {
            0 => random.some_bytes(300),
            _ => {
                let mut stream = valid[random.below(valid.len())].clone();
                for _ in 0..=random.below(3) {
                    if !stream.is_empty() {
                        let at = random.below(stream.len());
                        stream[at] ^= 1 << random.below(8);
                    }
                }
                stream
            }
        };
        let pieces = [1 + random.below(50), 1 + random.below(5)];
        let ours = inflate_in(&stream, &pieces, 1 + random.below(5000));
        if let (Ok(ours), Some(theirs)) = (&ours, reference(&stream)) {
            assert_eq!(ours, &theirs, "round {round}");
            agreed += 1;
        }
    }
    assert!(agreed > 500, "only {agreed} compared");
}

//! The Huffman codes of DEFLATE's blocks (RFC 1951 section 3.2): the fixed ones, built once
//! per process; a block's own, read from its header; and their decoding tables.

use super::BadDeflate;
use super::bits::BitReader;
use std::sync::OnceLock;

/// Bits looked up at once in a code's first table; longer codes go on in a second one.
const PRIMARY_BITS: u32 = 10;
/// The longest code DEFLATE allows.
const MAX_CODE_BITS: u32 = 15;
/// A table entry that points at a second-level table (its offset, and the bits it indexes).
const LINK: u32 = 1 << 31;

/// The order in which a block's header gives the code-length code's lengths.
pub const CODE_LENGTH_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];
/// The symbol that ends a block.
pub const END_OF_BLOCK: u16 = 256;

/// The decoding tables of one block's codes.
pub struct Codes {
    /// Literals, the end of the block, and lengths (symbols 0..=285).
    pub literal_length: Vec<u32>,
    /// Distances (symbols 0..=29).
    pub distance: Vec<u32>,
}

/// The next symbol of the code `table` decodes; `None` if the input ends first.
#[inline(always)]
pub fn symbol(reader: &mut BitReader, table: &[u32]) -> Result<Option<u16>, BadDeflate> {
    let (bits, count) = reader.peek(MAX_CODE_BITS);
    let mut entry = table[(bits & ((1 << PRIMARY_BITS) - 1)) as usize];
    if entry & LINK != 0 {
        let sub_bits = (entry >> 16) & 0xff;
        let index = (bits >> PRIMARY_BITS) & ((1 << sub_bits) - 1);
        entry = table[(entry & 0xffff) as usize + index as usize];
    }
    let length = (entry >> 16) & 0xff;
    if length == 0 {
        // No code starts with these bits; unless more may come that make one.
        return match count >= MAX_CODE_BITS {
            true => Err(BadDeflate("a code that the block's codes do not have")),
            false => Ok(None),
        };
    }
    if length > count {
        return Ok(None);
    }
    reader.skip(length);
    Ok(Some(entry as u16))
}

/// A block's own codes: its header after the first three bits. `None` if the input ends
/// first (the caller starts the block again once there is more).
pub fn read_own_codes(reader: &mut BitReader, own: &mut Codes) -> Result<Option<()>, BadDeflate> {
    let Some(counts) = reader.take(14) else {
        return Ok(None);
    };
    let literal_lengths = 257 + (counts & 0x1f) as usize;
    let distances = 1 + ((counts >> 5) & 0x1f) as usize;
    let code_lengths = 4 + (counts >> 10) as usize;
    if literal_lengths > 286 || distances > 30 {
        return Err(BadDeflate("more length or distance codes than exist"));
    }
    let mut lengths = [0u8; 19];
    for &symbol in &CODE_LENGTH_ORDER[..code_lengths] {
        let Some(length) = reader.take(3) else {
            return Ok(None);
        };
        lengths[symbol] = length as u8;
    }
    let mut table = Vec::new();
    build(&lengths, &mut table)?;
    let mut lengths = [0u8; 286 + 30];
    let total = literal_lengths + distances;
    let mut filled = 0;
    while filled < total {
        let Some(symbol) = symbol(reader, &table)? else {
            return Ok(None);
        };
        let (value, times) = match symbol {
            0..=15 => (symbol as u8, 1),
            16 => {
                let Some(&previous) = filled.checked_sub(1).map(|at| &lengths[at]) else {
                    return Err(BadDeflate("a repeated length with none before it"));
                };
                let Some(more) = reader.take(2) else {
                    return Ok(None);
                };
                (previous, 3 + more as usize)
            }
            17 => match reader.take(3) {
                Some(more) => (0, 3 + more as usize),
                None => return Ok(None),
            },
            _ => match reader.take(7) {
                Some(more) => (0, 11 + more as usize),
                None => return Ok(None),
            },
        };
        if filled + times > total {
            return Err(BadDeflate("code lengths past the codes' count"));
        }
        lengths[filled..filled + times].fill(value);
        filled += times;
    }
    if lengths[usize::from(END_OF_BLOCK)] == 0 {
        return Err(BadDeflate("a block without an end-of-block code"));
    }
    build(&lengths[..literal_lengths], &mut own.literal_length)?;
    build(&lengths[literal_lengths..total], &mut own.distance)?;
    Ok(Some(()))
}

/// The decoding table of the canonical code with these lengths (RFC 1951 section 3.2.2): a
/// first table indexed by the next `PRIMARY_BITS` bits, whose entries for longer codes link to
/// a second table indexed by the bits after them. An entry is the symbol and its code's
/// length; 0 where no code starts with those bits (an incomplete code).
fn build(lengths: &[u8], table: &mut Vec<u32>) -> Result<(), BadDeflate> {
    let mut per_length = [0u16; 16];
    for &length in lengths {
        per_length[usize::from(length)] += 1;
    }
    per_length[0] = 0;
    let mut left: i32 = 1;
    let mut next_code = [0u32; 16];
    let mut code = 0u32;
    for length in 1..16 {
        left = (left << 1) - i32::from(per_length[length]);
        if left < 0 {
            return Err(BadDeflate("more codes than their lengths allow"));
        }
        code = (code + u32::from(per_length[length - 1])) << 1;
        next_code[length] = code;
    }
    let longest = (1..16).rev().find(|&l| per_length[l] > 0).unwrap_or(0) as u32;
    let sub_bits = longest.saturating_sub(PRIMARY_BITS);
    table.clear();
    table.resize(1 << PRIMARY_BITS, 0);
    for (symbol, &length) in lengths.iter().enumerate() {
        let length = u32::from(length);
        if length == 0 {
            continue;
        }
        let code = next_code[length as usize];
        next_code[length as usize] += 1;
        let reversed = code.reverse_bits() >> (32 - length);
        let leaf = (length << 16) | symbol as u32;
        if length <= PRIMARY_BITS {
            let step = 1 << length;
            for index in (reversed as usize..1 << PRIMARY_BITS).step_by(step) {
                table[index] = leaf;
            }
            continue;
        }
        let low = (reversed & ((1 << PRIMARY_BITS) - 1)) as usize;
        if table[low] & LINK == 0 {
            table[low] = LINK | (sub_bits << 16) | table.len() as u32;
            table.resize(table.len() + (1 << sub_bits), 0);
        }
        let offset = (table[low] & 0xffff) as usize;
        let step = 1 << (length - PRIMARY_BITS);
        for index in ((reversed >> PRIMARY_BITS) as usize..1 << sub_bits).step_by(step) {
            table[offset + index] = leaf;
        }
    }
    Ok(())
}

/// The fixed codes (RFC 1951 section 3.2.6), built once.
pub fn fixed_codes() -> &'static Codes {
    static FIXED: OnceLock<Codes> = OnceLock::new();
    FIXED.get_or_init(|| {
        let mut lengths = [8u8; 288];
        lengths[144..256].fill(9);
        lengths[256..280].fill(7);
        let mut codes = Codes {
            literal_length: Vec::new(),
            distance: Vec::new(),
        };
        // Complete codes, by the RFC's construction: they build.
        let _ = build(&lengths, &mut codes.literal_length);
        let _ = build(&[5u8; 32], &mut codes.distance);
        codes
    })
}

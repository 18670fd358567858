//! The compressed input as bits, lowest first, as DEFLATE packs them; a step that finds the
//! input short goes back to a `Mark` and waits for more (see `inflate.rs`).

/// A point in the input: the next byte to take, and the bits taken and not yet used.
#[derive(Clone, Copy)]
pub struct Mark {
    pub at: usize,
    pub bits: u64,
    pub count: u32,
}

/// The input as bits, lowest first.
pub struct BitReader<'a> {
    pub input: &'a [u8],
    pub at: usize,
    pub bits: u64,
    pub count: u32,
}

impl BitReader<'_> {
    pub fn mark(&self) -> Mark {
        Mark {
            at: self.at,
            bits: self.bits,
            count: self.count,
        }
    }

    /// Take whole bytes into `bits` while they fit (at least 56 bits then, if the input has
    /// them). Reading eight bytes at once may leave bits of the next byte above `count`: the
    /// next refill puts the same bits there.
    #[inline(always)]
    pub fn refill(&mut self) {
        let rest = &self.input[self.at..];
        let mut word = [0u8; 8];
        let available = match rest.get(..8) {
            Some(eight) => {
                word.copy_from_slice(eight);
                8
            }
            None => {
                // Fewer than eight left (the end of a short message): a byte at a time is
                // cheaper than a call to copy them.
                for (at, &byte) in rest.iter().enumerate() {
                    word[at] = byte;
                }
                rest.len()
            }
        };
        self.bits |= u64::from_le_bytes(word) << self.count;
        let taken = (((63 - self.count) / 8) as usize).min(available);
        self.at += taken;
        self.count += 8 * taken as u32;
    }

    /// The next `n` bits (at most 32), or `None` if the input ends first.
    #[inline]
    pub fn take(&mut self, n: u32) -> Option<u32> {
        if self.count < n {
            self.refill();
            if self.count < n {
                return None;
            }
        }
        let value = (self.bits & ((1u64 << n) - 1)) as u32;
        self.bits >>= n;
        self.count -= n;
        Some(value)
    }

    /// Skip to the next byte boundary.
    pub fn align(&mut self) {
        let odd = self.count % 8;
        self.bits >>= odd;
        self.count -= odd;
    }

    /// Copy up to `n` bytes (of a stored block; aligned) into `output`'s spare capacity;
    /// returns how many.
    pub fn copy_bytes(&mut self, n: usize, output: &mut Vec<u8>) -> usize {
        let room = output.capacity() - output.len();
        let mut copied = 0;
        while self.count >= 8 && copied < n.min(room) {
            output.push(self.bits as u8);
            self.bits >>= 8;
            self.count -= 8;
            copied += 1;
        }
        let direct = (n - copied)
            .min(room - copied)
            .min(self.input.len() - self.at);
        if direct > 0 {
            // `bits` is empty, but may hold a copy of the next byte's bits above `count`
            // (see `refill`): that byte is taken here instead.
            self.bits = 0;
        }
        output.extend_from_slice(&self.input[self.at..self.at + direct]);
        self.at += direct;
        copied + direct
    }

    /// At least `wanted` bits, if the input has them: (the bits, how many are real).
    #[inline(always)]
    pub fn peek(&mut self, wanted: u32) -> (u64, u32) {
        if self.count < wanted {
            self.refill();
        }
        (self.bits, self.count)
    }

    /// Use `n` bits of those `peek` gave.
    #[inline(always)]
    pub fn skip(&mut self, n: u32) {
        self.bits >>= n;
        self.count -= n;
    }
}

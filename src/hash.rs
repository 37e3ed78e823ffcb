//! A small, fast, deterministic 64-bit hash for fingerprints and checksums.
//!
//! Not cryptographic: it detects accidental change (a different matrix, a
//! flipped byte in a checkpoint), not a forgery. Each 64-bit word costs one
//! multiply, so hashing the ~7M nonzeros of the demo matrix takes tens of
//! milliseconds. The result depends only on the words fed in, in order, so
//! it is the same on every platform and in every run.

/// Multiplier of the word mix (2^64 / golden ratio, odd).
const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// A streaming 64-bit hash.
///
/// ```
/// use l0::hash::Hash64;
/// let mut a = Hash64::new();
/// a.write_u64(1);
/// let mut b = Hash64::new();
/// b.write_u64(2);
/// assert_ne!(a.finish(), b.finish());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Hash64 {
    h: u64,
    words: u64,
}

impl Default for Hash64 {
    fn default() -> Self {
        Self::new()
    }
}

impl Hash64 {
    /// A hash of nothing yet.
    pub fn new() -> Self {
        Hash64 {
            h: 0x6c30_6669_6e67_6572,
            words: 0,
        }
    }

    /// Feeds one word. For a fixed state the map from word to new state is
    /// a bijection, and so is the map from state to new state for a fixed
    /// word: changing any single word always changes the result.
    #[inline(always)]
    pub fn write_u64(&mut self, x: u64) {
        let h = (self.h ^ x).wrapping_mul(K);
        self.h = h ^ (h >> 29);
        self.words += 1;
    }

    /// Feeds a slice of words.
    pub fn write_u64s(&mut self, xs: impl IntoIterator<Item = u64>) {
        for x in xs {
            self.write_u64(x);
        }
    }

    /// Feeds bytes: eight at a time (little-endian), the last word
    /// zero-padded, then the byte count (so padding is unambiguous).
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(w));
        }
        self.write_u64(bytes.len() as u64);
    }

    /// The hash of everything fed so far (the state is not consumed).
    pub fn finish(&self) -> u64 {
        // splitmix64's finaliser over the state and the word count.
        let mut z = self.h ^ self.words.wrapping_mul(K);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The hash of a byte string (see [`Hash64::write_bytes`]).
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = Hash64::new();
    h.write_bytes(bytes);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_sensitive() {
        assert_eq!(hash_bytes(b"abc"), hash_bytes(b"abc"));
        assert_ne!(hash_bytes(b"abc"), hash_bytes(b"abd"));
        // Zero padding is not confused with real zero bytes.
        assert_ne!(hash_bytes(b"a"), hash_bytes(b"a\0"));
        assert_ne!(hash_bytes(b""), hash_bytes(b"\0"));
        // A pinned value: the hash must never change between versions, or
        // old checkpoints would be refused.
        assert_eq!(hash_bytes(b"l0"), 0x9a41_da70_4620_e292);
    }
}

//! Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11).
//!
//! Gate noise must be the same on every backend and independent of how the
//! work is split over threads or GPU blocks, so it is not drawn from a
//! stateful generator but computed from a key and a counter:
//!
//! ```text
//! key     = (seed mod 2^32, seed >> 32)
//! block   = column / 4
//! counter = (block mod 2^32, block >> 32, step mod 2^32, step >> 32)
//! x       = Philox4x32-10(counter, key)[column mod 4]
//! u       = ((x >> 8) + 0.5) * 2^-24          (exact in f32, strictly in (0, 1))
//! ```
//!
//! One Philox evaluation serves four consecutive columns, which makes the
//! CPU backend's noise four times cheaper; a GPU thread simply picks its word.
//!
//! `kernels/common.cuh` implements the same function; a known-answer test
//! pins it to the Random123 reference vectors.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = (a as u64) * (b as u64);
    ((p >> 32) as u32, p as u32)
}

/// Philox4x32 with 10 rounds: maps a 128-bit counter and a 64-bit key to 128
/// pseudo-random bits.
#[inline(always)]
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// The four raw words of columns `4 block .. 4 block + 4` at noise counter `step`.
#[inline(always)]
pub fn gate_block(seed: u64, step: u64, block: u64) -> [u32; 4] {
    let key = [seed as u32, (seed >> 32) as u32];
    let counter = [
        block as u32,
        (block >> 32) as u32,
        step as u32,
        (step >> 32) as u32,
    ];
    philox4x32_10(counter, key)
}

/// Maps a raw 32-bit word to a uniform in (0, 1), exactly representable in f32.
#[inline(always)]
pub fn word_to_uniform(x: u32) -> f32 {
    ((x >> 8) as f32 + 0.5) * (1.0 / 16_777_216.0)
}

/// The uniform draw in (0, 1) for gate `column` at noise counter `step`.
#[inline]
pub fn gate_uniform(seed: u64, step: u64, column: u64) -> f32 {
    word_to_uniform(gate_block(seed, step, column >> 2)[(column & 3) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors from Random123's kat_vectors for philox4x32_10.
    #[test]
    fn random123_known_answers() {
        assert_eq!(
            philox4x32_10([0, 0, 0, 0], [0, 0]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn uniforms_are_inside_the_open_interval_and_look_uniform() {
        let n = 200_000u64;
        let mut sum = 0.0f64;
        let mut below_tenth = 0usize;
        for c in 0..n {
            let u = gate_uniform(42, 7, c);
            assert!(u > 0.0 && u < 1.0);
            sum += u as f64;
            below_tenth += (u < 0.1) as usize;
        }
        let mean = sum / n as f64;
        assert!((mean - 0.5).abs() < 0.003, "mean {mean}");
        let share = below_tenth as f64 / n as f64;
        assert!((share - 0.1).abs() < 0.003, "share below 0.1: {share}");
        // Four consecutive columns share one Philox block, in order.
        let block = gate_block(42, 7, 5);
        for k in 0..4 {
            assert_eq!(
                gate_uniform(42, 7, 20 + k),
                word_to_uniform(block[k as usize])
            );
        }
        // Different epochs and seeds give different streams.
        assert_ne!(gate_uniform(42, 7, 3), gate_uniform(42, 8, 3));
        assert_ne!(gate_uniform(42, 7, 3), gate_uniform(43, 7, 3));
    }
}

//! Dot products with gathered operands, `sum_k val[k] x[idx[k]]`, in f64:
//! the inner loops of the CPU backend's matrix products (a CSC column
//! against the residuals, a CSR row segment against the weights), written
//! once for one model or a group of models side by side ([`Lanes`]), with
//! an AVX2 twin of the single-model loop that does its four accumulators'
//! work in one register ([`dot`]). Every form sums in the same order, so
//! results are the same bits on every instruction set.

use super::simd::SimdPath;

/// With several models, each row of the per-row vectors (predictions,
/// residuals, forward accumulators) holds the models' values side by side
/// in groups of this many lanes (lanes past the last model stay zero).
pub(crate) const LANES: usize = 8;

/// Values that a dot product accumulates: one model's f64, or the
/// [`LANES`] models of a group side by side. Every lane is computed with
/// exactly the operations the scalar case does, so a model's sums have
/// the same bits alone or in a group.
pub(crate) trait Lanes: Copy {
    /// All zeros.
    fn zero() -> Self;
    /// The value (or [`LANES`] values) of `x` from index `i` on.
    fn load(x: &[f64], i: usize) -> Self;
    /// Writes the values to `out` from index `i` on.
    fn store(self, out: &mut [f64], i: usize);
    /// `self + v x`, lane by lane (a product, then a sum: never fused).
    fn add_product(self, v: f64, x: Self) -> Self;
    /// `self + o`, lane by lane.
    fn add(self, o: Self) -> Self;
    /// Whether every lane is zero.
    fn is_zero(self) -> bool;
    /// `acc[i..] += v x`, lane by lane.
    #[inline(always)]
    fn add_product_at(acc: &mut [f64], i: usize, v: f64, x: Self) {
        Self::load(acc, i).add_product(v, x).store(acc, i);
    }
}

impl Lanes for f64 {
    #[inline(always)]
    fn zero() -> Self {
        0.0
    }
    #[inline(always)]
    fn load(x: &[f64], i: usize) -> Self {
        x[i]
    }
    #[inline(always)]
    fn store(self, out: &mut [f64], i: usize) {
        out[i] = self;
    }
    #[inline(always)]
    fn add_product(self, v: f64, x: Self) -> Self {
        self + v * x
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self + o
    }
    #[inline(always)]
    fn is_zero(self) -> bool {
        self == 0.0
    }
}

impl Lanes for [f64; LANES] {
    #[inline(always)]
    fn zero() -> Self {
        [0.0; LANES]
    }
    #[inline(always)]
    fn load(x: &[f64], i: usize) -> Self {
        let mut out = [0.0; LANES];
        out.copy_from_slice(&x[i..i + LANES]);
        out
    }
    #[inline(always)]
    fn store(self, out: &mut [f64], i: usize) {
        out[i..i + LANES].copy_from_slice(&self);
    }
    #[inline(always)]
    fn add_product(mut self, v: f64, x: Self) -> Self {
        for l in 0..LANES {
            self[l] += v * x[l];
        }
        self
    }
    #[inline(always)]
    fn add(mut self, o: Self) -> Self {
        for l in 0..LANES {
            self[l] += o[l];
        }
        self
    }
    #[inline(always)]
    fn is_zero(self) -> bool {
        self.iter().all(|&x| x == 0.0)
    }
}

/// `sum_k val[k] x(idx[k])` in f64 (for one model, or a group of models
/// side by side, [`Lanes`]) with four interleaved accumulators
/// (`acc[k mod 4]`, tail into `acc[0..]`, combined as `(a0 + a1) + (a2 + a3)`),
/// which breaks the add latency chain; the order is fixed, so results do not
/// depend on threads.
#[inline(always)]
pub(crate) fn gather_dot<L: Lanes>(val: &[f32], idx: &[u32], x: impl Fn(usize) -> L) -> L {
    let mut acc = [L::zero(); 4];
    let (v4, vt) = val.split_at(val.len() & !3);
    let (i4, it) = idx.split_at(v4.len());
    for (v, i) in v4.chunks_exact(4).zip(i4.chunks_exact(4)) {
        for k in 0..4 {
            acc[k] = acc[k].add_product(v[k] as f64, x(i[k] as usize));
        }
    }
    for (k, (v, i)) in vt.iter().zip(it).enumerate() {
        acc[k] = acc[k].add_product(*v as f64, x(*i as usize));
    }
    acc[0].add(acc[1]).add(acc[2].add(acc[3]))
}

/// `sum_k val[k] x[idx[k]]` for one model ([`gather_dot`] with `x` a
/// slice), on `simd`'s instructions: with AVX2 the four interleaved
/// accumulators are one 4 x f64 register, filled by one gather
/// of four `x` values, one conversion of four `val` and one product and sum
/// per four nonzeros, in the same order as [`gather_dot`] (AVX-512 keeps
/// the generic loop, which its build already vectorises). Every `idx[k]`
/// must be below `x.len()` (a [`crate::matrix::SparseMatrix`]'s indices are
/// checked against its dimensions when it is built).
#[inline(always)]
pub(crate) fn dot(simd: SimdPath, val: &[f32], idx: &[u32], x: &[f64]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if simd == SimdPath::Avx2 && x.len() <= i32::MAX as usize {
        debug_assert!(idx.iter().all(|&i| (i as usize) < x.len()));
        // SAFETY: the path is only chosen on CPUs with AVX2
        // (`SimdPath::parse`), and every index is below `x.len()`, which
        // fits in the gather's i32 offsets (checked just above).
        return unsafe { dot_avx2(val, idx, x) };
    }
    let _ = simd;
    gather_dot(val, idx, |q| x[q])
}

/// [`dot`] with AVX2 gathers.
///
/// # Safety
/// The CPU must support AVX2, and every `idx[k]` must be below
/// `x.len() <= i32::MAX`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn dot_avx2(val: &[f32], idx: &[u32], x: &[f64]) -> f64 {
    use std::arch::x86_64::*;
    let n = val.len().min(idx.len());
    let n4 = n & !3;
    let mut acc = _mm256_setzero_pd();
    let mut k = 0;
    while k < n4 {
        // SAFETY: k + 4 <= n4 <= both lengths; the indices are in bounds of x.
        unsafe {
            let i = _mm_loadu_si128(idx.as_ptr().add(k) as *const __m128i);
            let v = _mm256_cvtps_pd(_mm_loadu_ps(val.as_ptr().add(k)));
            let g = _mm256_i32gather_pd::<8>(x.as_ptr(), i);
            acc = _mm256_add_pd(acc, _mm256_mul_pd(v, g));
        }
        k += 4;
    }
    let mut a = [0.0f64; 4];
    // SAFETY: `a` holds four f64.
    unsafe { _mm256_storeu_pd(a.as_mut_ptr(), acc) };
    for (t, (v, i)) in val[n4..n].iter().zip(&idx[n4..n]).enumerate() {
        a[t] += *v as f64 * x[*i as usize];
    }
    (a[0] + a[1]) + (a[2] + a[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path's single-model dot product has the bits of the generic
    /// loop, for every tail length and for values whose sums round.
    #[test]
    fn every_path_sums_in_the_same_order() {
        let x: Vec<f64> = (0..97).map(|i| 1.0 / (i as f64 + 0.3) - 0.25).collect();
        for len in 0..40usize {
            let idx: Vec<u32> = (0..len).map(|k| ((k * 37 + 11) % 97) as u32).collect();
            let val: Vec<f32> = (0..len).map(|k| (k as f32 * 0.731).sin() * 1e3).collect();
            let want = gather_dot(&val, &idx, |q| x[q]);
            for path in SimdPath::available() {
                let got = dot(path, &val, &idx, &x);
                assert_eq!(got.to_bits(), want.to_bits(), "{} len {len}", path.name());
            }
        }
    }
}

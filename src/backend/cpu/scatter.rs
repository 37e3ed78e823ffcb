//! The forward product scattered from the column passes: one row-length
//! f64 accumulator per slab ([`Scatter`]).

use super::columns::Chunk;
use crate::backend::dots::{Lanes, LANES};
use crate::matrix::Csr;

/// Where a pass that writes weights adds their forward product: a slab's
/// block of the forward accumulators ([`Columns::acc`]).
pub(super) struct Scatter<'s> {
    pub(super) csc: &'s Csr,
    pub(super) lanes: usize,
    pub(super) acc: &'s mut [f64],
}

impl Scatter<'_> {
    /// `acc_q += M_qi w_i` for the columns of the chunks `chs` (one per
    /// model, the same columns), in column order, products and sums in
    /// f64; row `q`'s value of model `k` is `acc[q * lanes + k]`. Zero
    /// weights are skipped (an accumulator that starts at +0 never becomes
    /// -0, so adding a zero product leaves its bits unchanged), which saves
    /// most of the work once the fit is sparse.
    #[inline(always)]
    pub(super) fn add(&mut self, chs: &[Chunk]) {
        if chs.len() == 1 {
            return self.add_one(&chs[0]);
        }
        for g in (0..chs.len()).step_by(LANES) {
            self.add_group(&chs[g..chs.len().min(g + LANES)], g);
        }
    }

    /// [`Scatter::add`] for a single model, out of line so that its loop
    /// has the registers to itself: inlined into the pass, it reloaded the
    /// block's address from the stack for every nonzero.
    #[inline(never)]
    fn add_one(&mut self, ch: &Chunk) {
        let ptr = self.csc.indptr();
        let (ptr, idx, val) = (ptr.raw_storage(), self.csc.indices(), self.csc.data());
        let acc = &mut *self.acc;
        for (j, &w) in ch.w.iter().enumerate() {
            if w == 0.0 {
                continue;
            }
            let (w, k) = (w as f64, ptr[ch.base + j]..ptr[ch.base + j + 1]);
            for (&q, &v) in idx[k.clone()].iter().zip(&val[k]) {
                acc[q as usize] += v as f64 * w;
            }
        }
    }

    /// [`Scatter::add_one`] for the training weights of `ch` and the
    /// deterministic weights `wd` (`wd[j]` for column `base + j`) at once,
    /// into `pair` (row `q`'s two sums at `2q` and `2q + 1`): each lane gets
    /// the additions a pass of its own would make (the zero products of a
    /// weight that is zero while the other is not leave an accumulator's
    /// bits unchanged, see [`Scatter::add`]).
    #[inline(never)]
    pub(super) fn add_pairs(&self, ch: &Chunk, wd: &[f32], pair: &mut [f64]) {
        let ptr = self.csc.indptr();
        let (ptr, idx, val) = (ptr.raw_storage(), self.csc.indices(), self.csc.data());
        for (j, (&w, &d)) in ch.w.iter().zip(wd).enumerate() {
            if w == 0.0 && d == 0.0 {
                continue;
            }
            let (w, d, k) = (w as f64, d as f64, ptr[ch.base + j]..ptr[ch.base + j + 1]);
            for (&q, &v) in idx[k.clone()].iter().zip(&val[k]) {
                let (i, v) = (2 * q as usize, v as f64);
                let p = &mut pair[i..i + 2];
                p[0] += v * w;
                p[1] += v * d;
            }
        }
    }

    /// [`Scatter::add`] for the models of one group: lanes `off..` of rows
    /// [`Scatter::lanes`] values apart, one [`LANES`]-wide operation per
    /// nonzero.
    #[inline(always)]
    fn add_group(&mut self, group: &[Chunk], off: usize) {
        let ptr = self.csc.indptr();
        let (ptr, idx, val) = (ptr.raw_storage(), self.csc.indices(), self.csc.data());
        let base = group[0].base;
        // A local borrow, so the loop keeps the block's address and length
        // in registers instead of reloading them through `self`.
        let (acc, stride) = (&mut *self.acc, self.lanes);
        for j in 0..group[0].len() {
            let mut wj = [0.0; LANES];
            for (w, c) in wj.iter_mut().zip(group) {
                *w = c.w[j] as f64;
            }
            if wj.is_zero() {
                continue;
            }
            let k = ptr[base + j]..ptr[base + j + 1];
            for (&q, &v) in idx[k.clone()].iter().zip(&val[k]) {
                Lanes::add_product_at(acc, q as usize * stride + off, v as f64, wj);
            }
        }
    }
}

//! The matrix products outside the column pass: the forward product over
//! CSR row segments ([`SegmentDots`]) and the backward product `M^T r`
//! over CSC columns ([`ColumnGradient`]).

use super::columns::ModelColumns;
use super::work::COLUMN_CHUNK;
use crate::backend::dots::{dot, gather_dot, Lanes, LANES};
use crate::backend::simd::{SimdPath, VectorWork};
use crate::matrix::{Csr, LongColumns, SparseMatrix};

/// The CSR row segments of the gathered forward product.
pub(super) struct Rows<'m> {
    pub(super) csr: &'m Csr,
    pub(super) seg: &'m crate::matrix::RowSegments,
}

/// Every model's weights, as the gathered forward product reads them.
pub(super) struct RowWeights<'w> {
    pub(super) cols: &'w [ModelColumns],
    /// With several models, their weights side by side
    /// (`CpuBackend::w_lanes`).
    pub(super) w_lanes: &'w [f64],
    pub(super) lanes: usize,
}

/// [`Rows::dots`] as [`VectorWork`].
pub(super) struct SegmentDots<'a> {
    pub(super) rows: Rows<'a>,
    pub(super) w: RowWeights<'a>,
    pub(super) first: usize,
    pub(super) out: &'a mut [f64],
}

impl VectorWork for SegmentDots<'_> {
    #[inline(always)]
    fn run(self) {
        self.rows.dots(self.first, &self.w, self.out)
    }
}

impl Rows<'_> {
    /// `out[j * models + k] = sum_{n in segment first + j} M_n w_k,col(n)`
    /// for the segments `first..` that `out` covers: for several models
    /// [`LANES`] at a time, each from one gathered row of `w.w_lanes`.
    #[inline(always)]
    fn dots(&self, first: usize, w: &RowWeights, out: &mut [f64]) {
        let (idx, val) = (self.csr.indices(), self.csr.data());
        let models = w.cols.len();
        for (j, o) in out.chunks_mut(models).enumerate() {
            let s = first + j;
            let r = self.seg.start[s]..self.seg.start[s + 1];
            let (val, idx) = (&val[r.clone()], &idx[r]);
            if models == 1 {
                o[0] = gather_dot(val, idx, |j| w.cols[0].w[j] as f64);
                continue;
            }
            for (g, o) in o.chunks_mut(LANES).enumerate() {
                let x = |j: usize| Lanes::load(w.w_lanes, j * w.lanes + g * LANES);
                let d: [f64; LANES] = gather_dot(val, idx, x);
                o.copy_from_slice(&d[..o.len()]);
            }
        }
    }
}

/// `g_w,i = (M^T r)_i = sum_{q in column i} M_qi r_q` of every model, in
/// f64, rounded to f32: a column of at most [`crate::matrix::SEGMENT_NNZ`]
/// nonzeros is summed whole (for several models, [`LANES`] at a time from
/// the side-by-side residuals), a longer one as the in-order sum of its
/// segments' partials (computed beforehand, in parallel, by
/// `CpuBackend::long_column_partials`).
pub(super) struct ColumnGradient<'m> {
    pub(super) csc: &'m Csr,
    pub(super) long: &'m LongColumns,
    pub(super) r: &'m [f64],
    pub(super) lanes: usize,
    pub(super) models: usize,
    pub(super) long_partials: &'m [f64],
    pub(super) simd: SimdPath,
}

impl<'m> ColumnGradient<'m> {
    /// The gradients of `models` models for residuals `r` laid out with
    /// `lanes` values per row, and long-column partials laid out as
    /// `CpuBackend::long_partials`.
    pub(super) fn new(
        m: &'m SparseMatrix,
        models: usize,
        r: &'m [f64],
        lanes: usize,
        long_partials: &'m [f64],
        simd: SimdPath,
    ) -> Self {
        ColumnGradient {
            simd,
            csc: m.csc(),
            long: m.long_columns(),
            r,
            lanes,
            models,
            long_partials,
        }
    }

    /// `out[k * COLUMN_CHUNK + j] = g_w` of model `k` at column `base + j`,
    /// for `j < n`.
    #[inline(always)]
    pub(super) fn fill(&self, base: usize, n: usize, out: &mut [f32]) {
        let (ptr, idx, val) = (self.csc.indptr(), self.csc.indices(), self.csc.data());
        let (ptr, r, long, models) = (ptr.raw_storage(), self.r, self.long, self.models);
        // The long columns inside this range, in order.
        let mut next = long.cols.partition_point(|&c| (c as usize) < base);
        for j in 0..n {
            let i = base + j;
            if long.cols.get(next) == Some(&(i as u32)) {
                let segs = long.seg_ptr[next]..long.seg_ptr[next + 1];
                next += 1;
                for k in 0..models {
                    let g = segs
                        .clone()
                        .fold(0.0, |acc, s| acc + self.long_partials[s * models + k]);
                    out[k * COLUMN_CHUNK + j] = g as f32;
                }
                continue;
            }
            let c = ptr[i]..ptr[i + 1];
            let (val, idx) = (&val[c.clone()], &idx[c]);
            if models == 1 {
                out[j] = dot(self.simd, val, idx, r) as f32;
                continue;
            }
            for g in (0..models).step_by(LANES) {
                let d: [f64; LANES] = gather_dot(val, idx, |q| Lanes::load(r, q * self.lanes + g));
                for (l, d) in d.iter().enumerate().take(models - g) {
                    out[(g + l) * COLUMN_CHUNK + j] = *d as f32;
                }
            }
        }
    }
}

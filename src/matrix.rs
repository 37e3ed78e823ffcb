//! The sparse matrix every model fits against, held twice: CSR for the
//! forward product `M w` and CSC for the transpose product `M^T r`.
//!
//! Values are stored as `f32` and indices as `u32` (8 bytes a nonzero a
//! copy); row and column pointers are `usize` so more than 2^32 nonzeros fit.
//! Construction validates everything a user can get wrong (shape, index
//! bounds, non-finite values, values beyond `f32` range) and sums duplicate
//! entries as scipy does. The forward product splits long rows into
//! segments of at most [`SEGMENT_NNZ`] nonzeros ([`RowSegments`]), so work is
//! balanced even when one row touches every column, and the result does not
//! depend on the number of threads; the transpose product splits long
//! columns the same way ([`LongColumns`]), so a regression with a few
//! features of millions of rows runs on every core.

use crate::error::{L0Error, Result};
use crate::par::Par;
use sprs::{CsMatI, TriMatI};

/// The matrix layout the backends read.
pub type Csr = CsMatI<f32, u32, usize>;

/// Longest run of nonzeros one forward-product task sums on its own.
pub const SEGMENT_NNZ: usize = 4096;

/// An nnz-balanced split of the CSR rows: segment `s` sums
/// `data[start[s]..start[s+1]]`, all inside row `row[s]`; the segments of row
/// `q` are `row_ptr[q]..row_ptr[q+1]`, summed in that order.
#[derive(Clone, Debug, PartialEq)]
pub struct RowSegments {
    /// First nonzero of each segment, plus a final entry equal to nnz.
    pub start: Vec<usize>,
    /// The row each segment belongs to.
    pub row: Vec<u32>,
    /// For each row, its first segment, plus a final entry equal to the segment count.
    pub row_ptr: Vec<usize>,
}

/// Calls `push(s, e)` for the pieces `s..e` of `start..end` of at most
/// `max_len` entries each, in order (none for an empty range).
fn split_range(start: usize, end: usize, max_len: usize, mut push: impl FnMut(usize, usize)) {
    let mut s = start;
    while s < end {
        let e = (s + max_len).min(end);
        push(s, e);
        s = e;
    }
}

impl RowSegments {
    fn plan(indptr: &[usize], max_len: usize) -> Self {
        let rows = indptr.len() - 1;
        let mut start = Vec::with_capacity(rows + indptr[rows] / max_len + 1);
        let mut row = Vec::with_capacity(start.capacity());
        let mut row_ptr = Vec::with_capacity(rows + 1);
        for q in 0..rows {
            row_ptr.push(row.len());
            split_range(indptr[q], indptr[q + 1], max_len, |s, _| {
                start.push(s);
                row.push(q as u32);
            });
        }
        row_ptr.push(row.len());
        start.push(indptr[rows]);
        RowSegments {
            start,
            row,
            row_ptr,
        }
    }

    /// Number of segments.
    pub fn len(&self) -> usize {
        self.row.len()
    }

    /// True when the matrix has no nonzeros.
    pub fn is_empty(&self) -> bool {
        self.row.is_empty()
    }
}

/// The CSC columns with more than [`SEGMENT_NNZ`] nonzeros, split into
/// segments of at most that many: column `cols[k]` is the sum of the
/// partials of segments `seg_ptr[k]..seg_ptr[k+1]` in order, segment `s`
/// covering CSC entries `ranges[s]`. Shorter columns (all of them in a
/// calibration problem) are summed whole and are not listed. The split
/// depends on the matrix alone, never on the thread count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LongColumns {
    /// The long columns, ascending.
    pub cols: Vec<u32>,
    /// For each long column, its first segment, plus a final entry equal to the segment count.
    pub seg_ptr: Vec<usize>,
    /// The CSC entries of each segment.
    pub ranges: Vec<std::ops::Range<usize>>,
}

impl LongColumns {
    fn plan(indptr: &[usize], max_len: usize) -> Self {
        let mut long = LongColumns::default();
        for (i, p) in indptr.windows(2).enumerate() {
            if p[1] - p[0] > max_len {
                long.cols.push(i as u32);
                long.seg_ptr.push(long.ranges.len());
                split_range(p[0], p[1], max_len, |s, e| long.ranges.push(s..e));
            }
        }
        long.seg_ptr.push(long.ranges.len());
        long
    }
}

/// A validated sparse matrix (rows = targets or samples, columns = records
/// or features) in both compressed layouts.
#[derive(Clone, Debug)]
pub struct SparseMatrix {
    csr: Csr,
    csc: Csr,
    segments: RowSegments,
    long_columns: LongColumns,
}

fn check_dims(rows: usize, cols: usize) -> Result<()> {
    if rows == 0 || cols == 0 {
        return Err(L0Error::config(format!(
            "the matrix must have at least one row and one column, got {rows} x {cols}"
        )));
    }
    let max = u32::MAX as usize;
    if rows > max || cols > max {
        return Err(L0Error::config(format!(
            "matrix dimensions {rows} x {cols} exceed the supported 2^32 - 1"
        )));
    }
    // Both layouts need a pointer per row and per column: refuse dimensions
    // whose pointer arrays cannot even be allocated, rather than abort.
    let mut probe: Vec<usize> = Vec::new();
    probe.try_reserve_exact(rows + cols + 2).map_err(|_| {
        L0Error::config(format!(
            "matrix dimensions {rows} x {cols} need more memory than is available"
        ))
    })?;
    Ok(())
}

fn to_f32(what: &str, index: usize, v: f64) -> Result<f32> {
    let x = v as f32;
    if x.is_finite() {
        Ok(x)
    } else {
        Err(L0Error::NonFinite {
            what: what.to_string(),
            index,
            value: if v.is_finite() { x as f64 } else { v },
        })
    }
}

/// An integer type that the index arrays of a compressed matrix may come
/// in: `u32`, `u64`, `usize`, `i32` or `i64` (scipy writes `int32` or `int64`).
pub trait SparseIndex: Copy + std::fmt::Display {
    /// The value as `u64`; None when it is negative.
    fn to_u64(self) -> Option<u64>;
}

macro_rules! sparse_index {
    ($($t:ty),*) => {$(
        impl SparseIndex for $t {
            fn to_u64(self) -> Option<u64> {
                u64::try_from(self).ok()
            }
        }
    )*};
}
sparse_index!(u32, u64, usize, i32, i64);

fn negative<I: SparseIndex>(what: &str, i: I, position: usize) -> L0Error {
    L0Error::config(format!("{what}: negative index {i} at position {position}"))
}

fn check_indices<I: SparseIndex>(what: &str, idx: &[I], bound: usize) -> Result<Vec<u32>> {
    idx.iter()
        .enumerate()
        .map(|(position, &i)| match i.to_u64() {
            Some(u) if (u as u128) < bound as u128 => Ok(u as u32),
            Some(index) => Err(L0Error::IndexOutOfRange {
                what: what.to_string(),
                index,
                position,
                bound: bound as u64,
            }),
            None => Err(negative(what, i, position)),
        })
        .collect()
}

fn check_indptr<I: SparseIndex>(
    what: &str,
    indptr: &[I],
    outer: usize,
    nnz: usize,
) -> Result<Vec<usize>> {
    let indptr = indptr
        .iter()
        .enumerate()
        .map(|(k, &p)| p.to_u64().ok_or_else(|| negative(what, p, k)))
        .collect::<Result<Vec<u64>>>()?;
    if indptr.len() != outer + 1 {
        return Err(L0Error::shape(
            format!("{what} length (outer dimension + 1)"),
            outer + 1,
            indptr.len(),
        ));
    }
    if indptr[0] != 0 || indptr[outer] != nnz as u64 {
        return Err(L0Error::config(format!(
            "{what} must start at 0 and end at nnz = {nnz}, got {} .. {}",
            indptr[0], indptr[outer]
        )));
    }
    if let Some(k) = indptr.windows(2).position(|p| p[1] < p[0]) {
        return Err(L0Error::config(format!(
            "{what} decreases at position {}: {} then {}",
            k + 1,
            indptr[k],
            indptr[k + 1]
        )));
    }
    Ok(indptr.iter().map(|&p| p as usize).collect())
}

impl SparseMatrix {
    /// Builds the matrix from coordinate triplets; duplicates are summed.
    pub fn from_triplets(
        rows: usize,
        cols: usize,
        row_idx: &[u64],
        col_idx: &[u64],
        values: &[f64],
    ) -> Result<Self> {
        check_dims(rows, cols)?;
        if row_idx.len() != values.len() || col_idx.len() != values.len() {
            return Err(L0Error::shape(
                "triplet arrays (row, col, value) must have equal lengths",
                values.len(),
                format!("{} rows and {} cols", row_idx.len(), col_idx.len()),
            ));
        }
        let r = check_indices("row indices", row_idx, rows)?;
        let c = check_indices("column indices", col_idx, cols)?;
        let v = values
            .iter()
            .enumerate()
            .map(|(i, &x)| to_f32("matrix values", i, x))
            .collect::<Result<Vec<f32>>>()?;
        let tri = TriMatI::<f32, u32>::from_triplets((rows, cols), r, c, v);
        Self::from_csr_matrix(tri.to_csr())
    }

    /// Builds the matrix from compressed sparse rows (scipy's `csr_matrix`
    /// arrays), with indices of any [`SparseIndex`] type and `f32` or `f64`
    /// values (read straight into the stored `f32`, with no `f64` copy).
    /// Unsorted column indices are sorted; duplicates are summed.
    pub fn from_csr<P: SparseIndex, J: SparseIndex, V: Copy + Into<f64>>(
        rows: usize,
        cols: usize,
        indptr: &[P],
        indices: &[J],
        values: &[V],
    ) -> Result<Self> {
        check_dims(rows, cols)?;
        Self::from_compressed(rows, cols, indptr, indices, values, false)
    }

    /// Builds the matrix from compressed sparse columns (scipy's
    /// `csc_matrix`), with indices of any [`SparseIndex`] type and `f32` or
    /// `f64` values.
    pub fn from_csc<P: SparseIndex, J: SparseIndex, V: Copy + Into<f64>>(
        rows: usize,
        cols: usize,
        indptr: &[P],
        indices: &[J],
        values: &[V],
    ) -> Result<Self> {
        check_dims(rows, cols)?;
        Self::from_compressed(rows, cols, indptr, indices, values, true)
    }

    fn from_compressed<P: SparseIndex, J: SparseIndex, V: Copy + Into<f64>>(
        rows: usize,
        cols: usize,
        indptr: &[P],
        indices: &[J],
        values: &[V],
        by_column: bool,
    ) -> Result<Self> {
        let (outer, inner) = if by_column {
            (cols, rows)
        } else {
            (rows, cols)
        };
        if indices.len() != values.len() {
            return Err(L0Error::shape(
                "indices and data of the compressed matrix",
                values.len(),
                indices.len(),
            ));
        }
        let ptr = check_indptr("indptr", indptr, outer, values.len())?;
        let idx = check_indices("indices", indices, inner)?;
        let v = values
            .iter()
            .enumerate()
            .map(|(i, &x)| to_f32("matrix values", i, x.into()))
            .collect::<Result<Vec<f32>>>()?;
        let shape = (rows, cols);
        let built = if by_column {
            CsMatI::new_from_unsorted_csc(shape, ptr, idx, v)
        } else {
            CsMatI::new_from_unsorted(shape, ptr, idx, v)
        };
        let m = match built {
            Ok(m) => m,
            // Sorting succeeded but duplicates remain: sum them via triplets.
            Err((ptr, idx, v, _)) => {
                let mut tri = TriMatI::<f32, u32>::with_capacity(shape, v.len());
                for o in 0..outer {
                    for k in ptr[o]..ptr[o + 1] {
                        let (r, c) = if by_column {
                            (idx[k] as usize, o)
                        } else {
                            (o, idx[k] as usize)
                        };
                        tri.add_triplet(r, c, v[k]);
                    }
                }
                tri.to_csr()
            }
        };
        let csr = if m.is_csr() { m } else { m.to_other_storage() };
        Self::from_csr_matrix(csr)
    }

    /// Builds the matrix from CSR arrays already in their final types, without
    /// copies when they are canonical (columns strictly increasing within
    /// each row, which is what scipy writes after `sum_duplicates`). Other
    /// input (unsorted, duplicates) goes through [`SparseMatrix::from_csr`].
    /// Values must already be finite and indices within bounds; pointers
    /// are checked. The CSC layout is built with `par`.
    pub fn from_csr_parts(
        rows: usize,
        cols: usize,
        indptr: Vec<usize>,
        indices: Vec<u32>,
        data: Vec<f32>,
        par: Par,
    ) -> Result<Self> {
        Self::from_parts(rows, cols, (indptr, indices, data), false, par)
    }

    /// As [`SparseMatrix::from_csr_parts`], from compressed sparse columns.
    pub fn from_csc_parts(
        rows: usize,
        cols: usize,
        indptr: Vec<usize>,
        indices: Vec<u32>,
        data: Vec<f32>,
        par: Par,
    ) -> Result<Self> {
        Self::from_parts(rows, cols, (indptr, indices, data), true, par)
    }

    fn from_parts(
        rows: usize,
        cols: usize,
        (indptr, indices, data): (Vec<usize>, Vec<u32>, Vec<f32>),
        by_column: bool,
        par: Par,
    ) -> Result<Self> {
        check_dims(rows, cols)?;
        let built = if by_column {
            CsMatI::try_new_csc((rows, cols), indptr, indices, data)
        } else {
            CsMatI::try_new((rows, cols), indptr, indices, data)
        };
        match built {
            Ok(m) if by_column => Self::from_layouts(transpose(&m, par), m),
            Ok(m) => {
                let csc = transpose(&m, par);
                Self::from_layouts(m, csc)
            }
            Err((p, i, d, _)) => Self::from_parts_slowly(rows, cols, &p, &i, &d, by_column),
        }
    }

    /// Non-canonical compressed arrays: sorted, duplicates summed (by the
    /// general path, which takes the narrow types as they are).
    fn from_parts_slowly(
        rows: usize,
        cols: usize,
        indptr: &[usize],
        indices: &[u32],
        data: &[f32],
        by_column: bool,
    ) -> Result<Self> {
        Self::from_compressed(rows, cols, indptr, indices, data, by_column)
    }

    /// Builds the matrix from a dense row-major array, keeping its nonzeros.
    pub fn from_dense(rows: usize, cols: usize, values: &[f64]) -> Result<Self> {
        check_dims(rows, cols)?;
        if values.len() != rows * cols {
            return Err(L0Error::shape(
                "dense matrix (rows x cols values)",
                format!("{rows} x {cols} = {}", rows * cols),
                values.len(),
            ));
        }
        let mut indptr = Vec::with_capacity(rows + 1);
        let (mut idx, mut v) = (Vec::new(), Vec::new());
        indptr.push(0usize);
        for (q, row) in values.chunks(cols).enumerate() {
            for (j, &x) in row.iter().enumerate() {
                if x != 0.0 {
                    idx.push(j as u32);
                    v.push(to_f32("dense matrix values", q * cols + j, x)?);
                }
            }
            indptr.push(idx.len());
        }
        let csr = CsMatI::try_new((rows, cols), indptr, idx, v)
            .map_err(|(_, _, _, e)| L0Error::config(format!("dense conversion: {e}")))?;
        Self::from_csr_matrix(csr)
    }

    /// The matrix of canonical `csr`, its CSC layout built on the current
    /// pool ([`Par::current`]).
    fn from_csr_matrix(csr: Csr) -> Result<Self> {
        let csc = transpose(&csr, Par::current());
        Self::from_layouts(csr, csc)
    }

    /// The matrix from both of its layouts (canonical CSR and CSC of the
    /// same entries: a CSC input is transposed once, not to CSR and back).
    fn from_layouts(csr: Csr, csc: Csr) -> Result<Self> {
        // Each value was finite, but summed duplicates can still overflow f32.
        if let Some(k) = csr.data().iter().position(|v| !v.is_finite()) {
            return Err(L0Error::config(format!(
                "duplicate matrix entries sum beyond the f32 range at stored entry {k}"
            )));
        }
        let segments = RowSegments::plan(csr.indptr().raw_storage(), SEGMENT_NNZ);
        let long_columns = LongColumns::plan(csc.indptr().raw_storage(), SEGMENT_NNZ);
        Ok(SparseMatrix {
            csr,
            csc,
            segments,
            long_columns,
        })
    }

    /// Number of rows (targets).
    pub fn rows(&self) -> usize {
        self.csr.rows()
    }

    /// Number of columns (records).
    pub fn cols(&self) -> usize {
        self.csr.cols()
    }

    /// Number of stored nonzeros.
    pub fn nnz(&self) -> usize {
        self.csr.nnz()
    }

    /// The row-major layout.
    pub fn csr(&self) -> &Csr {
        &self.csr
    }

    /// The column-major layout.
    pub fn csc(&self) -> &Csr {
        &self.csc
    }

    /// The nnz-balanced row split used by the forward product.
    pub fn segments(&self) -> &RowSegments {
        &self.segments
    }

    /// The columns the transpose product splits into segments.
    pub fn long_columns(&self) -> &LongColumns {
        &self.long_columns
    }

    /// Rows without a single nonzero (targets no weight can reach).
    pub fn empty_rows(&self) -> Vec<usize> {
        let p = self.csr.indptr();
        let p = p.raw_storage();
        (0..self.rows()).filter(|&q| p[q] == p[q + 1]).collect()
    }

    /// A 64-bit fingerprint of the matrix: [`crate::hash::Hash64`] over the
    /// shape, the nonzero count, the canonical CSR row pointers, column
    /// indices and the bits of the stored `f32` values. Deterministic across
    /// runs and platforms; since the CSR form is canonical (sorted, duplicates
    /// summed), the same matrix saved as csr, csc or coo has the same
    /// fingerprint. Linear in nnz, one multiply per word.
    pub fn fingerprint(&self) -> u64 {
        let mut h = crate::hash::Hash64::new();
        h.write_u64s([self.rows() as u64, self.cols() as u64, self.nnz() as u64]);
        h.write_u64s(self.csr.indptr().raw_storage().iter().map(|&p| p as u64));
        // Two 32-bit entries per word halves the multiplies.
        let pair = |c: &[u32]| c[0] as u64 | (c.get(1).copied().unwrap_or(0) as u64) << 32;
        h.write_u64s(self.csr.indices().chunks(2).map(pair));
        h.write_u64s(self.csr.data().chunks(2).map(|c| {
            let bits = [c[0].to_bits(), c.get(1).map_or(0, |v| v.to_bits())];
            pair(&bits)
        }));
        h.finish()
    }

    /// Bytes the two layouts occupy (what one epoch streams at least once).
    pub fn storage_bytes(&self) -> usize {
        2 * self.nnz() * 8 + (self.rows() + self.cols() + 2) * std::mem::size_of::<usize>()
    }

    /// The matrix of columns `columns` (in that order): column `k` of the
    /// result is column `columns[k]` of this one, with the same stored
    /// values. Refuses an index past the last column.
    pub fn select_columns(&self, columns: &[usize]) -> Result<SparseMatrix> {
        let csc = &self.csc;
        let (ptr, idx, val) = (csc.indptr(), csc.indices(), csc.data());
        let mut indptr = Vec::with_capacity(columns.len() + 1);
        let (mut indices, mut values) = (Vec::new(), Vec::new());
        indptr.push(0usize);
        for (position, &c) in columns.iter().enumerate() {
            if c >= self.cols() {
                return Err(L0Error::IndexOutOfRange {
                    what: "selected columns".into(),
                    index: c as u64,
                    position,
                    bound: self.cols() as u64,
                });
            }
            let range = ptr.outer_inds_sz(c);
            indices.extend_from_slice(&idx[range.clone()]);
            values.extend_from_slice(&val[range]);
            indptr.push(indices.len());
        }
        SparseMatrix::from_csc(self.rows(), columns.len(), &indptr, &indices, &values)
    }

    /// The matrix of rows `rows` (a range, in order), with the same stored
    /// values. Refuses a range past the last row.
    pub fn select_rows(&self, rows: std::ops::Range<usize>) -> Result<SparseMatrix> {
        if rows.start > rows.end || rows.end > self.rows() {
            return Err(L0Error::config(format!(
                "row range {}..{} is not within the matrix's {} rows",
                rows.start,
                rows.end,
                self.rows()
            )));
        }
        let ptr = self.csr.indptr();
        let ptr = ptr.raw_storage();
        let (lo, hi) = (ptr[rows.start], ptr[rows.end]);
        let indptr: Vec<usize> = ptr[rows.start..=rows.end].iter().map(|p| p - lo).collect();
        SparseMatrix::from_csr(
            rows.len(),
            self.cols(),
            &indptr,
            &self.csr.indices()[lo..hi],
            &self.csr.data()[lo..hi],
        )
    }

    /// `M x` in f64 (for predictions, reports and the refit's loss checks;
    /// the training loop uses the backends), on the current pool
    /// ([`SparseMatrix::mul_vec_par`] with [`Par::current`]).
    pub fn mul_vec(&self, x: &[f64]) -> Result<Vec<f64>> {
        self.mul_vec_par(x, Par::current())
    }

    /// `M x` in f64 with parallelism `par`: rows in parallel, each summed
    /// in order, so the same bits with any `par`.
    pub fn mul_vec_par(&self, x: &[f64], par: Par) -> Result<Vec<f64>> {
        if x.len() != self.cols() {
            return Err(L0Error::shape(
                "vector multiplied by the matrix (one entry per column)",
                self.cols(),
                x.len(),
            ));
        }
        let p = self.csr.indptr();
        let p = p.raw_storage();
        let (idx, val) = (self.csr.indices(), self.csr.data());
        Ok(par.map(self.rows(), |q| {
            // A fold from +0.0 (`sum` starts at -0.0, so an empty row
            // would print as "-0.0").
            (p[q]..p[q + 1])
                .map(|k| val[k] as f64 * x[idx[k] as usize])
                .fold(0.0, |acc, v| acc + v)
        }))
    }
}

/// Tasks of [`transpose`]'s fill, each a contiguous range of output slices.
const TRANSPOSE_TASKS: usize = 64;

/// The other compressed layout of `m` (CSR to CSC or back), as
/// `to_other_storage` computes it (indices strictly increasing within each
/// outer slice), built in parallel: counts of each output slice over fixed
/// chunks of the entries, then a fill in which each task owns a contiguous
/// range of output slices and walks the input slices in order, finding its
/// range in each by binary search, with parallelism `par`. The result is
/// canonical, so it does not depend on `par`; it is what sprs's
/// single-threaded `to_other_storage` gives.
fn transpose(m: &Csr, par: Par) -> Csr {
    let (outer, inner) = (m.outer_dims(), m.inner_dims());
    let ptr = m.indptr();
    let ptr = ptr.raw_storage();
    let (idx, val) = (m.indices(), m.data());
    // Entries per output slice: one count array per thread (at most 8),
    // added up; integer counts are exact in any order.
    let parts = par.threads().clamp(1, 8);
    let chunk = idx.len().div_ceil(parts).max(1 << 16);
    let partial = par.map(idx.len().div_ceil(chunk), |c| {
        let mut n = vec![0u32; inner];
        for &i in &idx[c * chunk..idx.len().min((c + 1) * chunk)] {
            n[i as usize] += 1;
        }
        n
    });
    let counts = partial
        .into_iter()
        .reduce(|mut a, b| {
            a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
            a
        })
        .unwrap_or_else(|| vec![0; inner]);
    let mut out_ptr = Vec::with_capacity(inner + 1);
    out_ptr.push(0usize);
    for &c in &counts {
        out_ptr.push(out_ptr.last().copied().unwrap_or(0) + c as usize);
    }
    drop(counts);
    // Contiguous ranges of output slices with about equal entries.
    let nnz = idx.len();
    let bounds: Vec<usize> = (0..=TRANSPOSE_TASKS)
        .map(|t| out_ptr.partition_point(|&p| p < nnz * t / TRANSPOSE_TASKS))
        .map(|b| b.min(inner))
        .collect();
    let (mut out_idx, mut out_val) = (vec![0u32; nnz], vec![0.0f32; nnz]);
    let mut pieces = Vec::with_capacity(TRANSPOSE_TASKS);
    let (mut rest_i, mut rest_v) = (&mut out_idx[..], &mut out_val[..]);
    for w in bounds.windows(2) {
        let len = out_ptr[w[1]] - out_ptr[w[0]];
        let (i, ri) = std::mem::take(&mut rest_i).split_at_mut(len);
        let (v, rv) = std::mem::take(&mut rest_v).split_at_mut(len);
        (rest_i, rest_v) = (ri, rv);
        pieces.push((w[0]..w[1], i, v));
    }
    par.for_each(pieces, |(range, oi, ov)| {
        if range.is_empty() {
            return;
        }
        let base = out_ptr[range.start];
        let mut next: Vec<usize> = out_ptr[range.clone()].iter().map(|p| p - base).collect();
        let (lo, hi) = (range.start as u32, range.end as u32);
        for o in 0..outer {
            let s = &idx[ptr[o]..ptr[o + 1]];
            let start = s.partition_point(|&i| i < lo);
            for (k, &i) in s[start..].iter().enumerate().take_while(|(_, &i)| i < hi) {
                let slot = &mut next[(i - lo) as usize];
                oi[*slot] = o as u32;
                ov[*slot] = val[ptr[o] + start + k];
                *slot += 1;
            }
        }
    });
    let shape = (m.rows(), m.cols());
    // Canonical by construction; `try_new` checks it once more in one pass.
    let built = if m.is_csr() {
        CsMatI::try_new_csc(shape, out_ptr, out_idx, out_val)
    } else {
        CsMatI::try_new(shape, out_ptr, out_idx, out_val)
    };
    match built {
        Ok(t) => t,
        Err(_) => unreachable!("a transpose of a valid matrix is valid"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_csc_and_triplets_agree_and_duplicates_sum() {
        // [[1, 0, 2], [0, 3, 0]] with the 2 split into a duplicate 1.5 + 0.5
        let a =
            SparseMatrix::from_triplets(2, 3, &[0, 1, 0, 0], &[0, 1, 2, 2], &[1.0, 3.0, 1.5, 0.5])
                .unwrap();
        let b = SparseMatrix::from_csr(2, 3, &[0, 2, 3], &[2, 0, 1], &[2.0, 1.0, 3.0]).unwrap();
        let c = SparseMatrix::from_csc(2, 3, &[0, 1, 2, 3], &[0, 1, 0], &[1.0, 3.0, 2.0]).unwrap();
        let d = SparseMatrix::from_dense(2, 3, &[1.0, 0.0, 2.0, 0.0, 3.0, 0.0]).unwrap();
        for m in [&a, &b, &c, &d] {
            assert_eq!(m.mul_vec(&[1.0, 10.0, 100.0]).unwrap(), vec![201.0, 30.0]);
            assert_eq!(m.csc().indptr().raw_storage(), &[0, 1, 2, 3]);
            assert_eq!(m.nnz(), 3);
        }
    }

    #[test]
    fn bad_input_is_named() {
        let e = SparseMatrix::from_csr(2, 3, &[0, 2, 3], &[2, 5, 1], &[2.0, 1.0, 3.0]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "index out of range in indices: 5 at position 1, but the bound is 3"
        );
        let e = SparseMatrix::from_csr(2, 3, &[0, 2], &[2, 0], &[2.0, 1.0]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "shape mismatch: indptr length (outer dimension + 1): expected 3, got 2"
        );
        let e = SparseMatrix::from_triplets(2, 3, &[0], &[1], &[f64::NAN]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "non-finite value in matrix values at index 0: NaN"
        );
        let e = SparseMatrix::from_triplets(2, 3, &[0, 0], &[1, 1], &[3e38, 3e38]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid configuration: duplicate matrix entries sum beyond the f32 range at stored entry 0"
        );
        let e = SparseMatrix::from_triplets(2, 3, &[0], &[1], &[1e39]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "non-finite value in matrix values at index 0: inf"
        );
        let e = SparseMatrix::from_csr(2, 3, &[0, 2, 1], &[2, 0], &[2.0, 1.0]).unwrap_err();
        assert!(e.to_string().contains("must start at 0 and end at nnz = 2"));
        assert!(SparseMatrix::from_dense(0, 3, &[]).is_err());
    }

    #[test]
    fn long_rows_are_split_into_segments() {
        let n = 3 * SEGMENT_NNZ + 5;
        let cols: Vec<u64> = (0..n as u64).collect();
        let rows = vec![1u64; n];
        let m = SparseMatrix::from_triplets(3, n, &rows, &cols, &vec![1.0; n]).unwrap();
        let s = m.segments();
        assert_eq!(s.len(), 4);
        assert_eq!(s.row_ptr, vec![0, 0, 4, 4]);
        assert_eq!(
            s.start,
            vec![0, SEGMENT_NNZ, 2 * SEGMENT_NNZ, 3 * SEGMENT_NNZ, n]
        );
        assert_eq!(m.empty_rows(), vec![0, 2]);
        assert!(m.long_columns().cols.is_empty());
    }

    #[test]
    fn parallel_transpose_equals_sprs() {
        // Random 300 x 200 (a row touching every column, empty rows and
        // columns), and its transpose back.
        let (rows, cols) = (300usize, 200usize);
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        let (mut r, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for q in 0..rows {
            for j in 0..cols {
                if q == 7 || (q % 5 != 0 && j % 7 != 0 && next() % 10 == 0) {
                    r.push(q as u64);
                    c.push(j as u64);
                    v.push((next() % 1000) as f64 / 8.0);
                }
            }
        }
        let m = SparseMatrix::from_triplets(rows, cols, &r, &c, &v).unwrap();
        let want: Csr = m.csr().to_other_storage();
        assert_eq!(m.csc(), &want);
        assert_eq!(&transpose(m.csc(), Par::current()), m.csr());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        assert_eq!(pool.install(|| transpose(m.csr(), Par::current())), want);
        assert_eq!(transpose(m.csr(), Par::Seq), want);
        assert_eq!(transpose(m.csr(), Par::new(Some(2))), want);
    }

    #[test]
    fn long_columns_are_split_into_segments() {
        // Column 1 has 2 * SEGMENT_NNZ + 3 nonzeros, columns 0 and 2 one each.
        let n = 2 * SEGMENT_NNZ + 3;
        let mut rows: Vec<u64> = (0..n as u64).collect();
        let mut cols = vec![1u64; n];
        rows.extend([0, 5]);
        cols.extend([0, 2]);
        let m = SparseMatrix::from_triplets(n, 3, &rows, &cols, &vec![1.0; n + 2]).unwrap();
        let long = m.long_columns();
        assert_eq!(long.cols, vec![1]);
        assert_eq!(long.seg_ptr, vec![0, 3]);
        assert_eq!(
            long.ranges,
            vec![
                1..1 + SEGMENT_NNZ,
                1 + SEGMENT_NNZ..1 + 2 * SEGMENT_NNZ,
                1 + 2 * SEGMENT_NNZ..n + 1
            ]
        );
        assert_eq!(long.cols, vec![1]);
    }
}

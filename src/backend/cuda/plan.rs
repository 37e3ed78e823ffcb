//! The device memory plan: the segmented sums of the forward product's rows
//! and the backward product's long columns ([`SegmentPlan`], on the device
//! [`DevicePlan`]), and the memory a problem needs ([`device_bytes`])
//! against what the device has free.

use super::driver::driver_err;
use super::launch::{blocks_for, cfg, shift_for, upload, zeros, MAX_REDUCE_BLOCKS};
use crate::error::Result;
use crate::matrix::{LongColumns, RowSegments, SparseMatrix, SEGMENT_NNZ};
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, PushKernelArg};
use std::sync::Arc;

/// Columns with more nonzeros than this are summed over fixed segments
/// before the fused step (the matrix's [`LongColumns`], as on the CPU), so
/// that one long column does not hold a warp for its whole length.
pub const LONG_COLUMN_NNZ: usize = SEGMENT_NNZ;

pub(super) const LONG_COLUMN_NNZ_U64: u64 = LONG_COLUMN_NNZ as u64;

/// A plan of segmented sums as the kernels `spmv_segments`/`spmtv_segments`
/// and `combine_segments` take it: segment `s` covers the nonzeros
/// `bounds[2 s] .. bounds[2 s + 1]`, output `k` sums segments
/// `ptr[k] .. ptr[k + 1]`. Rows of the forward product, and the long columns
/// of the backward product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentPlan {
    /// Two entries per segment: its first nonzero and one past its last.
    pub bounds: Vec<u64>,
    /// The order in which the kernel's groups take the segments (group `g`
    /// sums segment `order[g]`; the sums do not depend on it, only which
    /// segments run at the same time do).
    pub order: Vec<u64>,
    /// First segment of each output, plus a final entry (the segment count).
    pub ptr: Vec<u64>,
    /// Which column each output is (long-column plans only; sorted).
    pub cols: Vec<u32>,
}

impl SegmentPlan {
    /// The forward product's plan: the matrix's CSR row segments (`seg`,
    /// over the CSR column indices `cols`), taken in the order of their
    /// first column, so that the segments of different rows over the same
    /// columns (a national target's and an area's, say) run together and
    /// share the gathered weights in cache (the weights of a batch of 8
    /// models do not fit in the L2 cache of a GPU, so each row's sweep over
    /// them would otherwise read them from memory again).
    pub fn rows(seg: &RowSegments, cols: &[u32]) -> Self {
        let segments = seg.start.len().saturating_sub(1);
        let mut order: Vec<u64> = (0..segments as u64).collect();
        order.sort_by_key(|&s| cols.get(seg.start[s as usize]).copied());
        SegmentPlan {
            bounds: seg
                .start
                .windows(2)
                .flat_map(|w| [w[0] as u64, w[1] as u64])
                .collect(),
            order,
            ptr: seg.row_ptr.iter().map(|&x| x as u64).collect(),
            cols: Vec::new(),
        }
    }

    /// The backward product's plan for the long columns: the matrix's
    /// [`LongColumns`] (the CPU backend's split, columns of more than
    /// [`LONG_COLUMN_NNZ`] nonzeros cut into pieces of at most that many).
    pub fn long_columns(long: &LongColumns) -> Self {
        SegmentPlan {
            bounds: long
                .ranges
                .iter()
                .flat_map(|r| [r.start as u64, r.end as u64])
                .collect(),
            order: (0..long.ranges.len() as u64).collect(),
            ptr: long.seg_ptr.iter().map(|&x| x as u64).collect(),
            cols: long.cols.clone(),
        }
    }

    /// Number of segments.
    pub fn segments(&self) -> usize {
        self.bounds.len() / 2
    }

    /// Number of outputs (rows or long columns).
    pub fn outputs(&self) -> usize {
        self.ptr.len() - 1
    }

    /// Device bytes of the plan, its partial sums and (for long columns) the
    /// column list and sums, at `lanes` models side by side.
    fn device_bytes(&self, lanes: usize) -> usize {
        let segs = self.segments();
        segs * 24 + self.ptr.len() * 8 + segs * 8 * lanes + self.cols.len() * (4 + 8 * lanes)
    }
}

/// Device memory in bytes the backend allocates for `m` with the row and
/// long-column plans `plans`, training `models` models at `lanes` lanes
/// (1 and 1 for one model): both layouts (values, indices, CSC column
/// pointers), the two segment plans and their partial sums, per-column state
/// (per model six f32 parameters and moments, the gate's pre-stretch value
/// and M^T r; per lane the weight; two gradient outputs, the caps' bound and,
/// for a batch, one model's weights) and the per-row f64 vectors (targets,
/// weights, scales; per lane predictions and residuals).
pub fn device_bytes(
    m: &SparseMatrix,
    plans: [&SegmentPlan; 2],
    models: usize,
    lanes: usize,
) -> usize {
    let (nnz, rows, cols) = (m.nnz(), m.rows(), m.cols());
    let layouts = 2 * nnz * (4 + 4) + (cols + 1) * 8;
    let plans: usize = plans.iter().map(|p| p.device_bytes(lanes)).sum();
    let columns = cols * 4 * (8 * models + lanes + 3 + usize::from(lanes > 1));
    let row_vectors = rows * 8 * (3 + 2 * lanes);
    let scalars = (2 * MAX_REDUCE_BLOCKS + 4 + 1 + 3) * 8 * models + 2 * 8 + 7 * 8;
    layouts + plans + columns + row_vectors + scalars
}

/// Free and total memory of the device, read after the stream-ordered pool
/// has handed back what earlier fits in this process freed (a
/// synchronisation, then a trim of the device's default pool), so that a
/// second fit sees the memory the first one released.
pub(super) fn free_memory(ctx: &Arc<CudaContext>) -> Result<(usize, usize)> {
    use cudarc::driver::sys;
    ctx.synchronize()
        .map_err(driver_err("waiting for the device"))?;
    // SAFETY: plain driver calls on the current context's device; a
    // failure (no pool support) leaves nothing to trim.
    unsafe {
        let mut pool = std::ptr::null_mut();
        if sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) == sys::CUresult::CUDA_SUCCESS
        {
            let _ = sys::cuMemPoolTrimTo(pool, 0);
        }
    }
    ctx.mem_get_info()
        .map_err(driver_err("reading free device memory"))
}

/// Device memory kept free beyond what the problem needs: allocations are
/// rounded up to the allocator's granularity (2 MiB pages, some 30 buffers)
/// and the context and kernels take their share; 256 MiB or 1% of the card.
pub(super) fn memory_margin(total: usize) -> usize {
    (256usize << 20).max(total / 100)
}

pub(super) fn gib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// A [`SegmentPlan`] on the device, with its partial sums and the threads
/// per segment and per output (as shifts; not to be confused with `lanes`,
/// the models side by side).
pub(super) struct DevicePlan {
    pub(super) segments: u64,
    pub(super) outputs: u64,
    pub(super) seg_shift: u32,
    pub(super) out_shift: u32,
    /// Models side by side in the gathered vector, the partials and the sums.
    pub(super) lanes: usize,
    pub(super) order: CudaSlice<u64>,
    pub(super) bounds: CudaSlice<u64>,
    pub(super) ptr: CudaSlice<u64>,
    pub(super) partials: CudaSlice<f64>,
    /// The long columns, sorted (long-column plans only).
    pub(super) cols: CudaSlice<u32>,
    /// Their sums (long-column plans only).
    pub(super) sums: CudaSlice<f64>,
}

impl DevicePlan {
    /// Launches the segmented dot products (`kernel`: `spmv_segments` or
    /// `spmtv_segments`, for the gathered vector of `(idx, val, x)`) and then
    /// `combine` (`combine_segments` of the same width) into `out`, or into
    /// the plan's own sums when `None`; `icpt` = (the intercept states,
    /// whether to add them).
    pub(super) fn run<T: DeviceRepr>(
        &mut self,
        stream: &Arc<CudaStream>,
        (kernel, combine): (&CudaFunction, &CudaFunction),
        (idx, val, x): (&CudaSlice<u32>, &CudaSlice<f32>, &CudaSlice<T>),
        (icpt, has_icpt): (&CudaSlice<f32>, i32),
        out: Option<&mut CudaSlice<f64>>,
    ) -> Result<()> {
        if self.segments > 0 {
            let threads = (self.segments as usize) << self.seg_shift;
            let mut b = stream.launch_builder(kernel);
            b.arg(&self.segments)
                .arg(&self.seg_shift)
                .arg(&self.order)
                .arg(&self.bounds)
                .arg(idx)
                .arg(val)
                .arg(x)
                .arg(&mut self.partials);
            // SAFETY: the arguments match spmv_segments/spmtv_segments in
            // kernels/spmv.cu; the plan's buffers are sized for its segments.
            unsafe { b.launch(cfg(blocks_for(threads)?)) }
                .map_err(driver_err("launching the segmented dot products"))?;
        }
        if self.outputs == 0 {
            return Ok(());
        }
        let threads = ((self.outputs as usize) << self.out_shift) * self.lanes;
        let out = match out {
            Some(o) => o,
            None => &mut self.sums,
        };
        let mut b = stream.launch_builder(combine);
        b.arg(&self.outputs)
            .arg(&self.out_shift)
            .arg(&self.ptr)
            .arg(&self.partials)
            .arg(icpt)
            .arg(&has_icpt)
            .arg(out);
        // SAFETY: the arguments match combine_segments in kernels/spmv.cu;
        // `out` holds `lanes` values per output.
        unsafe { b.launch(cfg(blocks_for(threads)?)) }
            .map(|_| ())
            .map_err(driver_err("launching combine_segments"))
    }

    /// The plan run for `lanes` models side by side (at most the lanes its
    /// buffers were sized for).
    pub(super) fn at(mut self, lanes: usize) -> Self {
        self.lanes = lanes;
        self
    }

    /// The plan on the device, its sums sized for `lanes` models side by
    /// side.
    pub(super) fn new(
        s: &Arc<CudaStream>,
        plan: &SegmentPlan,
        nnz: usize,
        lanes: usize,
    ) -> Result<Self> {
        let (segs, outs) = (plan.segments(), plan.outputs());
        Ok(DevicePlan {
            segments: segs as u64,
            outputs: outs as u64,
            seg_shift: shift_for(nnz, segs),
            out_shift: shift_for(segs, outs),
            lanes,
            order: upload(s, &plan.order)?,
            bounds: upload(s, &plan.bounds)?,
            ptr: upload(s, &plan.ptr)?,
            partials: zeros(s, segs * lanes)?,
            cols: upload(s, &plan.cols)?,
            sums: zeros(s, plan.cols.len() * lanes)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn row_plan_takes_segments_in_the_order_of_their_first_column() {
        // Row 0 touches all 2 SEGMENT_NNZ + 2 columns (three segments, from
        // columns 0, SEGMENT_NNZ and 2 SEGMENT_NNZ); row 1 only the last
        // two columns, row 2 only column 1.
        let s = SEGMENT_NNZ;
        let n = 2 * s + 2;
        let mut rows = vec![0u64; n];
        let mut cols: Vec<u64> = (0..n as u64).collect();
        rows.extend([1, 1, 2]);
        cols.extend([n as u64 - 2, n as u64 - 1, 1]);
        let m = SparseMatrix::from_triplets(3, n, &rows, &cols, &vec![1.0; n + 3]).unwrap();
        let plan = SegmentPlan::rows(m.segments(), m.csr().indices());
        assert_eq!(plan.ptr, vec![0, 3, 4, 5]);
        // Segments 0, 1, 2 (row 0) start at columns 0, s, 2 s; segment 3
        // (row 1) at 2 s, segment 4 (row 2) at 1.
        assert_eq!(plan.order, vec![0, 4, 1, 2, 3]);
        let long = SegmentPlan::long_columns(m.long_columns());
        assert_eq!(long.order, Vec::<u64>::new());
    }

    #[test]
    pub(super) fn long_columns_plan_is_the_matrixs_split() {
        // Column 1 has 2 * SEGMENT_NNZ + 3 nonzeros, columns 0 and 2 one each.
        let s = SEGMENT_NNZ;
        let n = 2 * s + 3;
        let mut rows: Vec<u64> = (0..n as u64).collect();
        let mut cols = vec![1u64; n];
        rows.extend([0, 5]);
        cols.extend([0, 2]);
        let m = SparseMatrix::from_triplets(n, 3, &rows, &cols, &vec![1.0; n + 2]).unwrap();
        let plan = SegmentPlan::long_columns(m.long_columns());
        assert_eq!(plan.cols, vec![1]);
        let b = |x: usize| x as u64;
        assert_eq!(
            plan.bounds,
            vec![
                b(1),
                b(1 + s),
                b(1 + s),
                b(1 + 2 * s),
                b(1 + 2 * s),
                b(n + 1)
            ]
        );
        assert_eq!(plan.ptr, vec![0, 3]);
        assert_eq!(plan.order, vec![0, 1, 2]);
        assert_eq!((plan.segments(), plan.outputs()), (3, 1));
    }
}

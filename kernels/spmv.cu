// The forward product yhat = M w + b over the CSR row segments
// (matrix::RowSegments: at most SEGMENT_NNZ nonzeros each, so a row that
// touches every column is split into many equal pieces and the work stays
// balanced however skewed the rows are). CPU twin: CpuBackend::forward.
#include "common.cuh"

// One warp per segment s: partials[s] = sum_{t in segment} val[t] w[col[t]]
// in f64. Lane l sums t = start + l, start + l + 32, ... in order, then a
// fixed shuffle tree combines the lanes: deterministic for a given segment
// plan.
extern "C" __global__ void spmv_segments(u64 segments, const u64* __restrict__ seg_start,
                                         const u32* __restrict__ col,
                                         const float* __restrict__ val,
                                         const float* __restrict__ w,
                                         double* __restrict__ partials) {
    u64 s = ((u64)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    unsigned lane = threadIdx.x % 32;
    double acc = 0.0;
    if (s < segments) {
        u64 end = seg_start[s + 1];
        for (u64 t = seg_start[s] + lane; t < end; t += 32) {
            acc += (double)val[t] * (double)w[col[t]];
        }
    }
    acc = group_sum(acc, 32);
    if (s < segments && lane == 0) partials[s] = acc;
}

// One warp per row q: yhat_q = b + sum of row q's segment partials
// (row_ptr[q] .. row_ptr[q+1]); lane l sums segments l, l + 32, ... in
// order, then a fixed shuffle tree. b = icpt[0] when has_icpt, else 0.
extern "C" __global__ void spmv_combine(u64 rows, const u64* __restrict__ row_ptr,
                                        const double* __restrict__ partials,
                                        const float* __restrict__ icpt, int has_icpt,
                                        double* __restrict__ yhat) {
    u64 q = ((u64)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    unsigned lane = threadIdx.x % 32;
    double acc = 0.0;
    if (q < rows) {
        u64 end = row_ptr[q + 1];
        for (u64 s = row_ptr[q] + lane; s < end; s += 32) {
            acc += partials[s];
        }
    }
    acc = group_sum(acc, 32);
    if (q < rows && lane == 0) {
        double b = has_icpt ? (double)icpt[0] : 0.0;
        yhat[q] = b + acc;
    }
}

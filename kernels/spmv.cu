// Segmented sparse dot products: the forward product yhat = M w + b over the
// CSR row segments (matrix::RowSegments: at most SEGMENT_NNZ nonzeros each,
// so a row that touches every column is split into many equal pieces and the
// work stays balanced however skewed the rows are), and the same for the
// long columns of the backward product M^T r (CudaBackend's long-column
// plan). CPU twin: CpuBackend::forward.
#include "common.cuh"

// One group of 2^shift lanes per segment s (shift 0..5, chosen by the host
// from the mean segment length, so short segments share a warp):
// partials[s] = sum over t in [bounds[2 s], bounds[2 s + 1]) of
// val[t] x[idx[t]] in f64 (group_dot: a fixed order for a given plan).
template <typename T>
__device__ __forceinline__ void segment_dots(u64 segments, unsigned shift,
                                             const u64* __restrict__ bounds,
                                             const u32* __restrict__ idx,
                                             const float* __restrict__ val,
                                             const T* __restrict__ x,
                                             double* __restrict__ partials) {
    u64 s = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> shift;
    unsigned lane = threadIdx.x & 31;
    u64 begin = 0, end = 0;
    if (s < segments) {
        begin = bounds[2 * s];
        end = bounds[2 * s + 1];
    }
    double acc = group_dot(begin, end, lane, shift, idx, val, x);
    if (s < segments && (lane & ((1u << shift) - 1)) == 0) partials[s] = acc;
}

// Row segments of M times the weights w (f32).
extern "C" __global__ void spmv_segments(u64 segments, u32 shift, const u64* __restrict__ bounds,
                                         const u32* __restrict__ col,
                                         const float* __restrict__ val,
                                         const float* __restrict__ w,
                                         double* __restrict__ partials) {
    segment_dots(segments, shift, bounds, col, val, w, partials);
}

// Long-column segments of M^T times the residuals r (f64).
extern "C" __global__ void spmtv_segments(u64 segments, u32 shift,
                                          const u64* __restrict__ bounds,
                                          const u32* __restrict__ row,
                                          const float* __restrict__ val,
                                          const double* __restrict__ r,
                                          double* __restrict__ partials) {
    segment_dots(segments, shift, bounds, row, val, r, partials);
}

// One group of 2^shift lanes per output k: out[k] = b + the sum of
// partials[ptr[k] .. ptr[k + 1]); lane l of the group sums l, l + 2^shift,
// ... in order, then a fixed shuffle tree. b = icpt[0] when has_icpt, else 0.
// Rows: out = yhat; long columns: out = their M^T r.
extern "C" __global__ void combine_segments(u64 outputs, u32 shift, const u64* __restrict__ ptr,
                                            const double* __restrict__ partials,
                                            const float* __restrict__ icpt, int has_icpt,
                                            double* __restrict__ out) {
    u64 k = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> shift;
    unsigned l = threadIdx.x & ((1u << shift) - 1);
    double acc = 0.0;
    if (k < outputs) {
        u64 end = ptr[k + 1];
        for (u64 s = ptr[k] + l; s < end; s += (1u << shift)) acc += partials[s];
    }
    acc = group_sum(acc, shift);
    if (k < outputs && l == 0) out[k] = (has_icpt ? (double)icpt[0] : 0.0) + acc;
}

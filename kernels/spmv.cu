// Segmented sparse dot products: the forward product yhat = M w + b over the
// CSR row segments (matrix::RowSegments: at most SEGMENT_NNZ nonzeros each,
// so a row that touches every column is split into many equal pieces and the
// work stays balanced however skewed the rows are), and the same for the
// long columns of the backward product M^T r (CudaBackend's long-column
// plan). CPU twin: CpuBackend::forward.
//
// Every kernel here is compiled for L = 1, 2, 4 and 8 models side by side
// (suffix _l1 ... _l8): the gathered vector holds model k of column (or row)
// i at x[i L + k], each output likewise, so one pass over the matrix serves
// the L models of a batch (each lane gathers x[idx L .. idx L + L) at once),
// and model k's sums are formed in the order of a single model's.
#include "common.cuh"

// One group of 2^shift lanes per segment (shift 0..5, chosen by the host
// from the mean segment length, so short segments share a warp), group g
// doing segment s = order[g] (the host orders segments by their first
// column, so that groups running together gather nearby parts of x):
// partials[s L + k] = sum over t in [bounds[2 s], bounds[2 s + 1]) of
// val[t] x[idx[t] L + k] in f64 (group_dot: a fixed order for a given plan).
template <int L, typename T>
__device__ __forceinline__ void segment_dots(u64 segments, unsigned shift,
                                             const u64* __restrict__ order,
                                             const u64* __restrict__ bounds,
                                             const u32* __restrict__ idx,
                                             const float* __restrict__ val,
                                             const T* __restrict__ x,
                                             double* __restrict__ partials) {
    u64 g = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> shift;
    unsigned lane = threadIdx.x & 31;
    u64 s = 0, begin = 0, end = 0;
    if (g < segments) {
        s = order[g];
        begin = bounds[2 * s];
        end = bounds[2 * s + 1];
    }
    double acc[L];
    group_dot<L>(begin, end, lane, shift, idx, val, x, acc);
    if (g < segments && (lane & ((1u << shift) - 1)) == 0) {
#pragma unroll
        for (int k = 0; k < L; ++k) partials[s * L + k] = acc[k];
    }
}

// One group of 2^shift lanes per output o and model k (group o L + k):
// out[o L + k] = b_k + the sum of partials[s L + k] over s in
// ptr[o] .. ptr[o + 1]; lane l of the group sums s = ptr[o] + l,
// + 2^shift, ... in order, then a fixed shuffle tree. b_k = icpt[3 k]
// (model k's intercept state) when has_icpt, else 0. Rows: out = yhat; long
// columns: out = their M^T r.
template <int L>
__device__ __forceinline__ void combine(u64 outputs, unsigned shift, const u64* __restrict__ ptr,
                                       const double* __restrict__ partials,
                                       const float* __restrict__ icpt, int has_icpt,
                                       double* __restrict__ out) {
    u64 group = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> shift;
    u64 o = group >> log2_lanes<L>();
    unsigned k = group & (L - 1);
    unsigned l = threadIdx.x & ((1u << shift) - 1);
    double acc = 0.0;
    if (o < outputs) {
        u64 end = ptr[o + 1];
        for (u64 s = ptr[o] + l; s < end; s += (1u << shift)) acc += partials[s * L + k];
    }
    acc = group_sum(acc, shift);
    if (o < outputs && l == 0) out[o * L + k] = (has_icpt ? (double)icpt[3 * k] : 0.0) + acc;
}

#define L0_SPMV_KERNELS(L)                                                                     \
    /* Row segments of M times the weights w (f32). */                                         \
    extern "C" __global__ void spmv_segments_l##L(                                             \
        u64 segments, u32 shift, const u64* __restrict__ order,                                \
        const u64* __restrict__ bounds, const u32* __restrict__ col,                           \
        const float* __restrict__ val, const float* __restrict__ w,                            \
        double* __restrict__ partials) {                                                       \
        segment_dots<L>(segments, shift, order, bounds, col, val, w, partials);                \
    }                                                                                          \
    /* Long-column segments of M^T times the residuals r (f64). */                             \
    extern "C" __global__ void spmtv_segments_l##L(                                            \
        u64 segments, u32 shift, const u64* __restrict__ order,                                \
        const u64* __restrict__ bounds, const u32* __restrict__ row,                           \
        const float* __restrict__ val, const double* __restrict__ r,                           \
        double* __restrict__ partials) {                                                       \
        segment_dots<L>(segments, shift, order, bounds, row, val, r, partials);                \
    }                                                                                          \
    extern "C" __global__ void combine_segments_l##L(                                          \
        u64 outputs, u32 shift, const u64* __restrict__ ptr,                                   \
        const double* __restrict__ partials, const float* __restrict__ icpt, int has_icpt,     \
        double* __restrict__ out) {                                                            \
        combine<L>(outputs, shift, ptr, partials, icpt, has_icpt, out);                        \
    }
L0_FOR_LANES(L0_SPMV_KERNELS)

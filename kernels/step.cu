// Residual, data loss and the fused backward + Adam step. CPU twins:
// CpuBackend::residual, ::step and ::gradients.
#include "common.cuh"

// e_q = (y_q - yhat_q) / d_q, r_q = -2 g_q e_q / d_q (f64), over a
// grid-stride loop; block b writes partials[2 b] = sum g_q e_q^2 and
// partials[2 b + 1] = sum r_q (the intercept's gradient).
extern "C" __global__ void residual(u64 rows, const double* __restrict__ y,
                                    const double* __restrict__ g,
                                    const double* __restrict__ d,
                                    const double* __restrict__ yhat, double* __restrict__ r,
                                    double* __restrict__ partials) {
    __shared__ double buf[L0_BLOCK];
    double loss = 0.0, rsum = 0.0;
    u64 stride = (u64)gridDim.x * blockDim.x;
    for (u64 q = (u64)blockIdx.x * blockDim.x + threadIdx.x; q < rows; q += stride) {
        double e = (y[q] - yhat[q]) / d[q];
        double rq = -2.0 * g[q] * e / d[q];
        r[q] = rq;
        loss += g[q] * e * e;
        rsum += rq;
    }
    block_pair_partial(loss, rsum, buf, partials);
}

// One thread: scalars[0] = data loss, scalars[1] = sum r, summing the block
// partials in order; a non-finite loss records `step` in *bad_step unless
// an earlier step is already there (~0 means none).
extern "C" __global__ void residual_finalize(u32 blocks, const double* __restrict__ partials,
                                             double* __restrict__ scalars,
                                             u64* __restrict__ bad_step, u64 step) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    sum_pair_partials(blocks, partials, scalars);
    double loss = scalars[0];
    if (!finite_f64(loss) && *bad_step == ~0ull) *bad_step = step;
}

// One thread: Adam on the intercept state icpt = (value, m, v) with the
// gradient sum_q r_q (scalars[1], rounded to f32 as the CPU does).
extern "C" __global__ void intercept_adam(float* __restrict__ icpt,
                                          const double* __restrict__ scalars,
                                          float neg_step_size, float bc2_sqrt) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    adam_update(&icpt[0], &icpt[1], &icpt[2], (float)scalars[1], neg_step_size, bc2_sqrt);
}

// Position of column i in the sorted list long_cols[0 .. n_long) (i must be
// in it).
__device__ __forceinline__ u32 long_index(u64 i, u32 n_long, const u32* __restrict__ long_cols) {
    u32 lo = 0, hi = n_long;
    while (hi - lo > 1) {
        u32 mid = (lo + hi) / 2;
        if ((u64)long_cols[mid] <= i) lo = mid; else hi = mid;
    }
    return lo;
}

// g_w = M^T r (f64 sums, rounded to f32 as the CPU does before the chain
// rule), one group of 2^shift lanes per column i (shift chosen by the host
// so that a lane has about L0_DOT_UNROLL entries): a short column's CSC
// entries are summed by group_dot (lane l takes entries l, l + 2^shift, ...
// in storage order, then a fixed shuffle tree); a column with more than
// long_nnz nonzeros was summed beforehand over fixed segments
// (spmtv_segments + combine_segments into long_sums, in the order of the
// sorted long_cols), so that one long column does not hold a group for its
// whole length. A fixed order, but not the CPU's, so results agree with it
// to rounding, not bit for bit.
extern "C" __global__ void column_dots(u64 n, u32 shift, const u64* __restrict__ col_ptr,
                                       const u32* __restrict__ row,
                                       const float* __restrict__ val,
                                       const double* __restrict__ r, u64 long_nnz, u32 n_long,
                                       const u32* __restrict__ long_cols,
                                       const double* __restrict__ long_sums,
                                       float* __restrict__ gw) {
    u64 i = ((u64)blockIdx.x * blockDim.x + threadIdx.x) >> shift;
    unsigned lane = threadIdx.x & 31;
    u64 begin = 0, end = 0;
    if (i < n) {
        begin = col_ptr[i];
        end = col_ptr[i + 1];
    }
    bool is_long = end - begin > long_nnz;
    double g = group_dot(begin, is_long ? begin : end, lane, shift, row, val, r);
    if (i < n && (lane & ((1u << shift) - 1)) == 0) {
        gw[i] = (float)(is_long ? long_sums[long_index(i, n_long, long_cols)] : g);
    }
}

// The fused per-column step, one thread per column i: (dL/dp, dL/da) by the
// chain rule from g_w,i (column_dots) at the gate value s_i kept by the last
// sampling (the noise of `step`), Adam on p and a with the step's scalars,
// then with has_max_p the weight caps' projection p_i = min(p_i, max_p[i]);
// with sample_next, also w_i = m(p_i) z(a_i, u(seed, step + 1, i)) and its
// s_i for the next epoch.
extern "C" __global__ void step_columns(u64 n, const float* __restrict__ gw,
                                        float* __restrict__ p, float* __restrict__ a,
                                        float* __restrict__ m_p, float* __restrict__ v_p,
                                        float* __restrict__ m_a, float* __restrict__ v_a,
                                        float* __restrict__ w, float* __restrict__ s,
                                        const float* __restrict__ max_p, int has_max_p,
                                        Rule rule, u64 seed, u64 step, float neg_step_size,
                                        float bc2_sqrt, int sample_next) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float pi = p[i], ai = a[i];
    ColumnForward f = column_forward_s(rule, pi, ai, s[i]);
    float gp, ga;
    column_gradient(rule, f, ai, gw[i], &gp, &ga);
    float mp = m_p[i], vp = v_p[i], ma = m_a[i], va = v_a[i];
    adam_update(&pi, &mp, &vp, gp, neg_step_size, bc2_sqrt);
    adam_update(&ai, &ma, &va, ga, neg_step_size, bc2_sqrt);
    if (has_max_p) pi = fminf(pi, max_p[i]);
    p[i] = pi;
    a[i] = ai;
    m_p[i] = mp;
    v_p[i] = vp;
    m_a[i] = ma;
    v_a[i] = va;
    if (sample_next) {
        float si;
        w[i] = column_sample(rule, pi, ai, seed, step + 1, i, &si);
        s[i] = si;
    }
}

// The same backward pass without the update: gp_out[i] = dL/dp_i,
// ga_out[i] = dL/da_i from g_w,i at the gate value s_i of the last sampling
// (Backend::gradients).
extern "C" __global__ void gradient_columns(u64 n, const float* __restrict__ gw,
                                            const float* __restrict__ p,
                                            const float* __restrict__ a,
                                            const float* __restrict__ s, Rule rule,
                                            float* __restrict__ gp_out,
                                            float* __restrict__ ga_out) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float ai = a[i];
    ColumnForward f = column_forward_s(rule, p[i], ai, s[i]);
    column_gradient(rule, f, ai, gw[i], &gp_out[i], &ga_out[i]);
}

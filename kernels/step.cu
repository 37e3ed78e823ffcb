// Residual, data loss and the fused backward + Adam step. CPU twins:
// CpuBackend::residual, ::step and ::gradients.
//
// A backend trains `models` models together (a batch; 1 for one fit) at L
// lanes (models rounded up to 1, 2, 4 or 8): per-row vectors hold model k of
// row q at [q L + k], per-column state holds model k's vector at
// [k n, (k + 1) n), and the weights w, which the forward product gathers,
// hold model k of column i at [i L + k] (spmv.cu). Each model's numbers are
// formed exactly as they are for that model alone.
#include "common.cuh"

// One target's loss term and r = dl/dyhat (CPU twin: objective::target_term,
// src/objective.rs, where the formulas are written out): the difference
// y - yhat moved toward 0 by the band half-width b (0 inside the band; b = 0
// leaves it as it is), e = x / d; abs_cap < 0: l = g e^2, r = -2 g e / d;
// else l = g min(|e|, abs_cap), r = -g sign(e) / d while |e| < abs_cap, else 0.
__device__ __forceinline__ void target_term(double y, double yhat, double g, double d, double b,
                                            double abs_cap, double* l, double* r) {
    double diff = y - yhat;
    double x = diff;
    if (b > 0.0) x = diff > b ? diff - b : (diff < -b ? diff + b : diff * 0.0);
    double e = x / d;
    if (abs_cap < 0.0) {
        *l = g * e * e;
        *r = -2.0 * g * e / d;
        return;
    }
    double a = fabs(e);
    if (a >= abs_cap) {
        *l = g * abs_cap;
        *r = 0.0;
    } else {
        *l = g * a;  // NaN for a NaN e: the fit sees divergence
        *r = e > 0.0 ? -g / d : (e < 0.0 ? g / d : 0.0);
    }
}

// Model k = blockIdx.y: per target, target_term (band[q] when has_band),
// r_qk written (f64), over a grid-stride loop; block b writes
// partials[2 (k B + b)] = sum l_q and partials[2 (k B + b) + 1] =
// sum r_qk (the intercept's gradient), B = gridDim.x.
extern "C" __global__ void residual(u64 rows, u32 lanes, const double* __restrict__ y,
                                    const double* __restrict__ g,
                                    const double* __restrict__ d,
                                    const double* __restrict__ band, int has_band,
                                    double abs_cap, const double* __restrict__ yhat,
                                    double* __restrict__ r, double* __restrict__ partials) {
    __shared__ double buf[L0_BLOCK];
    u32 k = blockIdx.y;
    double loss = 0.0, rsum = 0.0;
    u64 stride = (u64)gridDim.x * blockDim.x;
    for (u64 q = (u64)blockIdx.x * blockDim.x + threadIdx.x; q < rows; q += stride) {
        u64 e_at = q * lanes + k;
        double lq, rq;
        target_term(y[q], yhat[e_at], g[q], d[q], has_band ? band[q] : 0.0, abs_cap, &lq, &rq);
        r[e_at] = rq;
        loss += lq;
        rsum += rq;
    }
    block_pair_partial(loss, rsum, buf, partials + 2 * (u64)k * gridDim.x);
}

// One thread per model k = blockIdx.y: scalars[2 k] = data loss,
// scalars[2 k + 1] = sum r, summing model k's block partials in order; a
// non-finite loss records `step` in bad_step[k] unless an earlier step is
// already there (~0 means none).
extern "C" __global__ void residual_finalize(u32 blocks, const double* __restrict__ partials,
                                             double* __restrict__ scalars,
                                             u64* __restrict__ bad_step, u64 step) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    u32 k = blockIdx.y;
    sum_pair_partials(blocks, partials + 2 * (u64)k * blocks, scalars + 2 * k);
    double loss = scalars[2 * k];
    if (!finite_f64(loss) && bad_step[k] == ~0ull) bad_step[k] = step;
}

// One thread per model k = blockIdx.y: Adam on the intercept state
// icpt[3 k ..] = (value, m, v) with the gradient sum_q r_qk
// (scalars[2 k + 1], rounded to f32 as the CPU does).
extern "C" __global__ void intercept_adam(float* __restrict__ icpt,
                                          const double* __restrict__ scalars,
                                          float neg_step_size, float bc2_sqrt) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    u32 k = blockIdx.y;
    adam_update(&icpt[3 * k], &icpt[3 * k + 1], &icpt[3 * k + 2], (float)scalars[2 * k + 1],
                neg_step_size, bc2_sqrt);
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
// rule) for each model k < models: gw[k n + i]. One group of 2^shift lanes
// per column i (shift chosen by the host so that a lane has about
// L0_DOT_UNROLL entries): a short column's CSC entries are summed by
// group_dot (lane l takes entries l, l + 2^shift, ... in storage order, then
// a fixed shuffle tree); a column with more than long_nnz nonzeros was summed
// beforehand over fixed segments (spmtv_segments + combine_segments into
// long_sums[j L + k], j in the order of the sorted long_cols), so that one
// long column does not hold a group for its whole length. A fixed order, but
// not the CPU's, so results agree with it to rounding, not bit for bit.
template <int L>
__device__ __forceinline__ void column_dots(u64 n, u32 shift, u32 models,
                                            const u64* __restrict__ col_ptr,
                                            const u32* __restrict__ row,
                                            const float* __restrict__ val,
                                            const double* __restrict__ r, u64 long_nnz,
                                            u32 n_long, const u32* __restrict__ long_cols,
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
    double g[L];
    group_dot<L>(begin, is_long ? begin : end, lane, shift, row, val, r, g);
    if (i < n && (lane & ((1u << shift) - 1)) == 0) {
        u64 j = is_long ? long_index(i, n_long, long_cols) : 0;
#pragma unroll
        for (int k = 0; k < L; ++k) {
            if (k < models) gw[k * n + i] = (float)(is_long ? long_sums[j * L + k] : g[k]);
        }
    }
}

#define L0_COLUMN_DOTS(L)                                                                      \
    extern "C" __global__ void column_dots_l##L(                                               \
        u64 n, u32 shift, u32 models, const u64* __restrict__ col_ptr,                         \
        const u32* __restrict__ row, const float* __restrict__ val,                            \
        const double* __restrict__ r, u64 long_nnz, u32 n_long,                                \
        const u32* __restrict__ long_cols, const double* __restrict__ long_sums,               \
        float* __restrict__ gw) {                                                              \
        column_dots<L>(n, shift, models, col_ptr, row, val, r, long_nnz, n_long, long_cols,    \
                       long_sums, gw);                                                         \
    }
L0_FOR_LANES(L0_COLUMN_DOTS)

// A conserved total's multiplier (constraints.rs) for model k: block
// partial sums in f64 of (w^2 g_w, w^2) over its sampled weights
// w[i lanes + k] and column sums gw[k n + i] (CPU twin:
// CpuBackend::multipliers).
extern "C" __global__ void multiplier_sums(u64 n, u32 lanes, u32 k, const float* __restrict__ w,
                                           const float* __restrict__ gw,
                                           double* __restrict__ partials) {
    __shared__ double buf[L0_BLOCK];
    double s1 = 0.0, s2 = 0.0;
    u64 stride = (u64)gridDim.x * blockDim.x;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        double wi = (double)w[i * lanes + k];
        double w2 = wi * wi;
        s1 += w2 * (double)gw[(u64)k * n + i];
        s2 += w2;
    }
    block_pair_partial(s1, s2, buf, partials);
}

// One thread: mu[k] = -sum w^2 g_w / sum w^2 (0 when every weight is 0),
// summing the block partials in order.
extern "C" __global__ void multiplier_finalize(u32 blocks, u32 k,
                                               const double* __restrict__ partials,
                                               float* __restrict__ mu) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double out[2];
    sum_pair_partials(blocks, partials, out);
    mu[k] = out[1] > 0.0 ? (float)(-out[0] / out[1]) : 0.0f;
}

// The fused per-column step, one thread per column i and, in turn, each
// model k < models (rules[k]; entry e = k n + i of the per-column state):
// (dL/dp, dL/da) by the chain rule from g_w (column_dots; plus the model's
// multiplier mu[k] when has_mu, a conserved total) at the gate value
// s kept by the last sampling (the noise of `step`), Adam on p and a with
// the step's scalars, then p held to its bounds (bound_p: the lower bounds
// of min_weight_ratio, the caps); with sample_next, also the weight
// w[i lanes + k] = m(p) z(a, u(seed, step + 1, i)) and its s for the next
// epoch, the noise drawn once for all models.
extern "C" __global__ void step_columns(u64 n, u32 models, u32 lanes,
                                        const float* __restrict__ gw,
                                        const float* __restrict__ mu, int has_mu,
                                        float* __restrict__ p, float* __restrict__ a,
                                        float* __restrict__ m_p, float* __restrict__ v_p,
                                        float* __restrict__ m_a, float* __restrict__ v_a,
                                        float* __restrict__ w, float* __restrict__ s,
                                        const float* __restrict__ min_p, int has_min_p,
                                        const float* __restrict__ max_p, int has_max_p,
                                        const Rule* __restrict__ rules, u64 seed, u64 step,
                                        float neg_step_size, float bc2_sqrt, int sample_next) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float logit = sample_next ? column_noise(rules[0], seed, step + 1, i) : 0.0f;
    for (u32 k = 0; k < models; ++k) {
        const Rule rule = rules[k];
        u64 e = (u64)k * n + i;
        float pi = p[e], ai = a[e];
        ColumnForward f = column_forward_s(rule, pi, ai, s[e]);
        float gp, ga;
        column_gradient(rule, f, ai, has_mu ? gw[e] + mu[k] : gw[e], &gp, &ga);
        float mp = m_p[e], vp = v_p[e], ma = m_a[e], va = v_a[e];
        adam_update(&pi, &mp, &vp, gp, neg_step_size, bc2_sqrt);
        adam_update(&ai, &ma, &va, ga, neg_step_size, bc2_sqrt);
        pi = bound_p(pi, min_p, has_min_p, max_p, has_max_p, i);
        p[e] = pi;
        a[e] = ai;
        m_p[e] = mp;
        v_p[e] = vp;
        m_a[e] = ma;
        v_a[e] = va;
        if (sample_next) {
            float si;
            w[i * lanes + k] = column_sample(rule, pi, ai, logit, &si);
            s[e] = si;
        }
    }
}

// The same backward pass without the update, for one model:
// gp_out[i] = dL/dp_i, ga_out[i] = dL/da_i from g_w,i at the gate value s_i
// of the last sampling (Backend::gradients).
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

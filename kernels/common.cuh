// Shared device code of the l0 CUDA kernels: Philox gate noise and the
// per-column Hard Concrete math, transcribed line by line from
// src/philox.rs and src/hard_concrete.rs. Every operation is done in the
// same precision and the same order as the Rust code (f32 for per-column
// math, f64 for sums); the kernels are compiled with --fmad=false so no
// multiply-add is contracted where Rust rounds twice.
//
// The Rust side pastes this file in place of `#include "common.cuh"` before
// handing each .cu source to NVRTC (no include path is needed).

typedef unsigned int u32;
typedef unsigned long long u64;

// Threads per block of every kernel; the block reductions assume it.
#define L0_BLOCK 256

// The f64 constants of hard_concrete.rs rounded to f32 once, as `Real::of`
// does (`(float)(1.0 - 0.9)` is formed in double and then rounded).
#define L0_LOG_ALPHA_BOUND 20.0f
#define L0_U_LO ((float)1e-6)
#define L0_U_HI ((float)(1.0 - 1e-6))
#define L0_ADAM_C1 ((float)(1.0 - 0.9))
#define L0_ADAM_B2 ((float)0.999)
#define L0_ADAM_C2 ((float)(1.0 - 0.999))
#define L0_ADAM_EPS ((float)1e-8)

// Mirrors `GpuRule` in src/backend/cuda.rs (#[repr(C)], nine 4-byte fields).
struct Rule {
    float beta;       // temperature
    float gamma;      // lower stretch bound
    float zeta;       // upper stretch bound
    float width;      // (zeta - gamma) formed in f64, rounded once
    float l0_shift;   // -beta ln(-gamma / zeta) in f32
    float lambda_l0;  // L0 strength
    float lambda_l2;  // L2 strength (0: the term is left out)
    int magnitude;    // 0: m(p) = exp(p), 1: m(p) = p
    int use_gates;    // 0: w = m(p)
};

// ---------------------------------------------------------------- Philox --

// Philox4x32-10 (Salmon et al., SC'11), as philox::philox4x32_10.
__device__ __forceinline__ void philox4x32_10(u32 c[4], u32 k0, u32 k1) {
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        u32 hi0 = __umulhi(0xD2511F53u, c[0]);
        u32 lo0 = 0xD2511F53u * c[0];
        u32 hi1 = __umulhi(0xCD9E8D57u, c[2]);
        u32 lo1 = 0xCD9E8D57u * c[2];
        u32 n0 = hi1 ^ c[1] ^ k0;
        u32 n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
    }
}

// philox::gate_uniform: key = (seed lo, seed hi), block = column / 4,
// counter = (block lo, block hi, step lo, step hi), x = word (column mod 4),
// u = ((x >> 8) + 0.5) 2^-24.
__device__ __forceinline__ float gate_uniform(u64 seed, u64 step, u64 column) {
    u64 block = column >> 2;
    u32 c[4] = {(u32)block, (u32)(block >> 32), (u32)step, (u32)(step >> 32)};
    philox4x32_10(c, (u32)seed, (u32)(seed >> 32));
    // Select the word without a runtime array index (which would spill the
    // counter to local memory).
    u32 lo = (column & 1) ? c[1] : c[0];
    u32 hi = (column & 1) ? c[3] : c[2];
    u32 x = (column & 2) ? hi : lo;
    return ((float)(x >> 8) + 0.5f) * (1.0f / 16777216.0f);
}

// ---------------------------------------------------------- scalar math --

// hard_concrete::clamp_mask: clamps to [lo, hi]; *inside is true only
// strictly inside (lo < x < hi), where torch lets the gradient through.
__device__ __forceinline__ float clamp_mask(float x, float lo, float hi, bool* inside) {
    if (x < lo) {
        *inside = false;
        return lo;
    }
    if (x > hi) {
        *inside = false;
        return hi;
    }
    *inside = x > lo && x < hi;
    return x;
}

// hard_concrete::sigmoid.
__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// Magnitude::eval: (m(p), m'(p)).
__device__ __forceinline__ void magnitude_eval(const Rule& r, float p, float* m, float* dm) {
    if (r.magnitude == 0) {
        // As hard_concrete::exp_f32: flush to 0 where expf would be subnormal.
        float e = (p < -87.33654f) ? 0.0f : expf(p);
        *m = e;
        *dm = e;
    } else {
        *m = p;
        *dm = 1.0f;
    }
}

// Gate::stretch: z = clamp(s width + gamma, 0, 1) and dz/da before the
// division by beta.
__device__ __forceinline__ void gate_stretch(const Rule& r, float s, bool pre_mask, float* z,
                                             float* dz_da) {
    float sbar = s * r.width + r.gamma;
    bool inside;
    *z = clamp_mask(sbar, 0.0f, 1.0f, &inside);
    float dz_ds = (inside && pre_mask) ? r.width : 0.0f;
    *dz_da = dz_ds * s * (1.0f - s);
}

// Gate::noise_logit: the part of the training gate that depends on the
// draw alone, ln u_c - ln(1 - u_c); models that share the noise (a batch)
// compute it once per column.
__device__ __forceinline__ float gate_noise_logit(float u) {
    bool u_in;
    float uc = clamp_mask(u, L0_U_LO, L0_U_HI, &u_in);
    return logf(uc) - logf(1.0f - uc);
}

// Gate::s_from_logit: the training gate's pre-stretch value
// s = sigmoid((logit + a_c) / beta) (Gate::noisy_s with the draw's logit).
__device__ __forceinline__ float gate_s_from_logit(const Rule& r, float a, float logit) {
    bool a_in;
    float ac = clamp_mask(a, -L0_LOG_ALPHA_BOUND, L0_LOG_ALPHA_BOUND, &a_in);
    return sigmoid((logit + ac) / r.beta);
}

// Gate::from_s: the training gate and dz/da from s and the logit a.
__device__ __forceinline__ void gate_from_s(const Rule& r, float a, float s, float* z,
                                            float* dz_da) {
    bool a_in;
    clamp_mask(a, -L0_LOG_ALPHA_BOUND, L0_LOG_ALPHA_BOUND, &a_in);
    gate_stretch(r, s, a_in, z, dz_da);
    *dz_da = *dz_da / r.beta;
}

// Gate::deterministic: test_gate 0 = sigmoid(a / beta), 1 = sigmoid(a).
__device__ __forceinline__ float gate_deterministic(const Rule& r, float a, int test_gate) {
    bool a_in;
    float ac = clamp_mask(a, -L0_LOG_ALPHA_BOUND, L0_LOG_ALPHA_BOUND, &a_in);
    float s = test_gate == 0 ? sigmoid(ac / r.beta) : sigmoid(ac);
    float z, dz;
    gate_stretch(r, s, true, &z, &dz);
    return z;
}

// Gate::l0_term: pi = sigmoid(a_c + l0_shift) and dpi/da.
__device__ __forceinline__ void l0_term(const Rule& r, float a, float* pi, float* dpi) {
    bool a_in;
    float ac = clamp_mask(a, -L0_LOG_ALPHA_BOUND, L0_LOG_ALPHA_BOUND, &a_in);
    *pi = sigmoid(ac + r.l0_shift);
    *dpi = a_in ? *pi * (1.0f - *pi) : 0.0f;
}

// ColumnForward.
struct ColumnForward {
    float w, m, dm, z, dz_da;
};

// ColumnRule::forward_s: the training weight w = m(p) z(a, s) from the
// gate's pre-stretch value s (ignored without gates). The kernels keep s per
// column from the sampling to the step, as the CPU backend does, instead of
// drawing the noise again.
__device__ __forceinline__ ColumnForward column_forward_s(const Rule& r, float p, float a,
                                                          float s) {
    ColumnForward f;
    magnitude_eval(r, p, &f.m, &f.dm);
    if (r.use_gates) {
        gate_from_s(r, a, s, &f.z, &f.dz_da);
    } else {
        f.z = 1.0f;
        f.dz_da = 0.0f;
    }
    f.w = f.m * f.z;
    return f;
}

// Column i's gate noise for `step` (Philox) as gate_noise_logit, drawn once
// per column for all the models of a batch (0 without gates; the models of
// one backend differ in lambda_l0 only).
__device__ __forceinline__ float column_noise(const Rule& r, u64 seed, u64 step, u64 i) {
    return r.use_gates ? gate_noise_logit(gate_uniform(seed, step, i)) : 0.0f;
}

// The training weight of a column from its noise (column_noise); stores the
// gate's pre-stretch value in *s for the step kernel. CPU twin:
// CpuBackend::sample_weights (noise_logit, s_from_logit, then forward_s).
__device__ __forceinline__ float column_sample(const Rule& r, float p, float a, float logit,
                                               float* s) {
    *s = r.use_gates ? gate_s_from_logit(r, a, logit) : 0.0f;
    return column_forward_s(r, p, a, *s).w;
}

// ColumnRule::deterministic_weight.
__device__ __forceinline__ float deterministic_weight(const Rule& r, float p, float a,
                                                      int test_gate) {
    float m, dm;
    magnitude_eval(r, p, &m, &dm);
    return r.use_gates ? m * gate_deterministic(r, a, test_gate) : m;
}

// GateMeans::at: E[z] of the training gate at logit a, read from the
// table of L0_GATE_MEAN_POINTS means on [-bound, bound] by linear
// interpolation in f32 (the table is built on the host from
// Gate::expected).
#define L0_GATE_MEAN_POINTS 16385
__device__ __forceinline__ float gate_mean(const float* __restrict__ table, float a) {
    const float last = (float)(L0_GATE_MEAN_POINTS - 1);
    const float bound = L0_LOG_ALPHA_BOUND;
    float x = (fminf(fmaxf(a, -bound), bound) + bound) * (last / (2.0f * bound));
    x = fminf(fmaxf(x, 0.0f), last);
    unsigned k = (unsigned)x;
    if (k > L0_GATE_MEAN_POINTS - 2) k = L0_GATE_MEAN_POINTS - 2;
    float t = x - (float)k;
    return table[k] + t * (table[k + 1] - table[k]);
}

// hard_concrete::kept_weight: a kept record's weight held to its lower
// bound (max(w, floor) when w > 0).
__device__ __forceinline__ float kept_weight(float w, float floor) {
    return (w > 0.0f && w < floor) ? floor : w;
}

// ColumnBounds::clamp_p: p of column i held to its bounds,
// min(max(p, min_p[i]), max_p[i]) (the cap wins should the two cross).
__device__ __forceinline__ float bound_p(float p, const float* __restrict__ min_p,
                                         int has_min_p, const float* __restrict__ max_p,
                                         int has_max_p, u64 i) {
    if (has_min_p) p = fmaxf(p, min_p[i]);
    if (has_max_p) p = fminf(p, max_p[i]);
    return p;
}

// ColumnRule::gradient: (dL/dp, dL/da) given g_w = dL_data/dw.
__device__ __forceinline__ void column_gradient(const Rule& r, const ColumnForward& f, float a,
                                                float g_w, float* gp, float* ga) {
    float p_grad = g_w * f.z * f.dm;
    if (r.lambda_l2 != 0.0f) {
        p_grad = p_grad + r.lambda_l2 * (2.0f * f.m) * f.dm;
    }
    float pi, dpi;
    l0_term(r, a, &pi, &dpi);
    *gp = p_grad;
    *ga = g_w * f.m * f.dz_da + r.lambda_l0 * dpi;
}

// ColumnRule::penalties: (pi, m(p)^2).
__device__ __forceinline__ void column_penalties(const Rule& r, float p, float a, float* pi,
                                                 float* m2) {
    float m, dm, dpi;
    magnitude_eval(r, p, &m, &dm);
    l0_term(r, a, pi, &dpi);
    *m2 = m * m;
}

// hard_concrete::adam_update with the step's scalars formed on the host in
// f64 and rounded to f32: neg_step_size = -lr / (1 - b1^t),
// bc2_sqrt = sqrt(1 - b2^t).
__device__ __forceinline__ void adam_update(float* p, float* m, float* v, float g,
                                            float neg_step_size, float bc2_sqrt) {
    *m = *m + L0_ADAM_C1 * (g - *m);
    *v = *v * L0_ADAM_B2 + L0_ADAM_C2 * g * g;
    float denom = sqrtf(*v) / bc2_sqrt + L0_ADAM_EPS;
    *p = *p + neg_step_size * *m / denom;
}

// ------------------------------------------------------------ reductions --

// Sums `x` over the block (L0_BLOCK threads) in a fixed tree order; the
// result is valid in thread 0. `buf` holds L0_BLOCK doubles of shared memory.
__device__ __forceinline__ double block_sum(double x, double* buf) {
    buf[threadIdx.x] = x;
    __syncthreads();
    for (unsigned off = L0_BLOCK / 2; off > 0; off >>= 1) {
        if (threadIdx.x < off) {
            buf[threadIdx.x] += buf[threadIdx.x + off];
        }
        __syncthreads();
    }
    double s = buf[0];
    __syncthreads();
    return s;
}

// Writes this block's sums of (a, b) as partials[2 blockIdx.x] and
// partials[2 blockIdx.x + 1] (the two-value reductions: loss and sum r;
// L0 and L2). Every thread of the block must call it.
__device__ __forceinline__ void block_pair_partial(double a, double b, double* buf,
                                                   double* __restrict__ partials) {
    a = block_sum(a, buf);
    b = block_sum(b, buf);
    if (threadIdx.x == 0) {
        partials[2 * blockIdx.x] = a;
        partials[2 * blockIdx.x + 1] = b;
    }
}

// One thread: out[0], out[1] = the pair partials of `blocks` blocks summed
// in block order (deterministic for a given grid).
__device__ __forceinline__ void sum_pair_partials(u32 blocks, const double* __restrict__ partials,
                                                  double* __restrict__ out) {
    double a = 0.0, b = 0.0;
    for (u32 k = 0; k < blocks; ++k) {
        a += partials[2 * k];
        b += partials[2 * k + 1];
    }
    out[0] = a;
    out[1] = b;
}

// Sums `x` over groups of 2^shift consecutive lanes of a warp (shift 0..5)
// in a fixed shuffle-tree order; valid in each group's first lane. Every lane
// of the warp must call it.
__device__ __forceinline__ double group_sum(double x, unsigned shift) {
    for (unsigned off = (1u << shift) / 2; off > 0; off >>= 1) {
        x += __shfl_down_sync(0xffffffffu, x, off, 1u << shift);
    }
    return x;
}

// The L values x[i L .. i L + L) (one per model of a batch, side by side)
// into out, in 16-byte loads where L allows.
template <int L>
__device__ __forceinline__ void load_lanes(const float* __restrict__ x, u64 i, float* out) {
    if (L % 4 == 0) {
        const float4* v = reinterpret_cast<const float4*>(x + i * L);
#pragma unroll
        for (int c = 0; c < L / 4; ++c) {
            float4 q = v[c];
            out[4 * c] = q.x;
            out[4 * c + 1] = q.y;
            out[4 * c + 2] = q.z;
            out[4 * c + 3] = q.w;
        }
    } else {
#pragma unroll
        for (int k = 0; k < L; ++k) out[k] = x[i * L + k];
    }
}
template <int L>
__device__ __forceinline__ void load_lanes(const double* __restrict__ x, u64 i, double* out) {
    if (L % 2 == 0) {
        const double2* v = reinterpret_cast<const double2*>(x + i * L);
#pragma unroll
        for (int c = 0; c < L / 2; ++c) {
            double2 q = v[c];
            out[2 * c] = q.x;
            out[2 * c + 1] = q.y;
        }
    } else {
#pragma unroll
        for (int k = 0; k < L; ++k) out[k] = x[i * L + k];
    }
}

// For each of L models k (a batch; L = 1 for one model), the sum of
// val[t] x[idx[t] L + k] over t in [begin, end) in f64 by one group of
// 2^shift lanes: lane l of the group takes t = begin + l, begin + l +
// 2^shift, ... in storage order, then group_sum. Valid in the group's first
// lane; every lane of the warp must call it (an empty range gives 0). Model
// k's sum has the same order for every L, so a model of a batch sums exactly
// as it does alone.
//
// Memory: each lane keeps up to L0_DOT_UNROLL products in flight (half as
// many for a batch, whose gathers are L wide; their loads are issued,
// predicated on the range, before any is added; each sum is still formed one
// product at a time in storage order, so the result does not depend on the
// unrolling), and the matrix's values and indices, read once per epoch, are
// loaded with the streaming hint so that the gathered vector x stays in
// cache. The host sizes groups so that a lane has about L0_DOT_UNROLL
// products (CudaBackend's shift_for).
#define L0_DOT_UNROLL 8
template <int L, typename T>
__device__ __forceinline__ void group_dot(u64 begin, u64 end, unsigned lane, unsigned shift,
                                          const u32* __restrict__ idx,
                                          const float* __restrict__ val,
                                          const T* __restrict__ x, double* acc) {
    constexpr int U = L == 1 ? L0_DOT_UNROLL : L0_DOT_UNROLL / 2;
    const u64 step = 1u << shift;
#pragma unroll
    for (int k = 0; k < L; ++k) acc[k] = 0.0;
    u64 t = begin + (lane & (step - 1));
    // Whole passes without predicates, then at most one predicated pass.
    for (; t + (U - 1) * step < end; t += U * step) {
        u32 ii[U];
        float vv[U];
        T xx[U][L];
#pragma unroll
        for (int j = 0; j < U; ++j) {
            ii[j] = __ldcs(&idx[t + j * step]);
            vv[j] = __ldcs(&val[t + j * step]);
        }
#pragma unroll
        for (int j = 0; j < U; ++j) load_lanes<L>(x, ii[j], xx[j]);
#pragma unroll
        for (int j = 0; j < U; ++j) {
#pragma unroll
            for (int k = 0; k < L; ++k) acc[k] += (double)vv[j] * (double)xx[j][k];
        }
    }
    if (t < end) {
        u32 ii[U];
        float vv[U];
        T xx[U][L];
#pragma unroll
        for (int j = 0; j < U; ++j) {
            bool in = t + j * step < end;
            ii[j] = in ? __ldcs(&idx[t + j * step]) : 0u;
            vv[j] = in ? __ldcs(&val[t + j * step]) : 0.0f;
        }
#pragma unroll
        for (int j = 0; j < U; ++j) {
            if (t + j * step < end) {
                load_lanes<L>(x, ii[j], xx[j]);
            } else {
#pragma unroll
                for (int k = 0; k < L; ++k) xx[j][k] = (T)0;
            }
        }
#pragma unroll
        for (int j = 0; j < U; ++j) {
            if (t + j * step < end) {
#pragma unroll
                for (int k = 0; k < L; ++k) acc[k] += (double)vv[j] * (double)xx[j][k];
            }
        }
    }
#pragma unroll
    for (int k = 0; k < L; ++k) acc[k] = group_sum(acc[k], shift);
}

// log2 of a batch width L (1, 2, 4 or 8).
template <int L>
__device__ __forceinline__ constexpr unsigned log2_lanes() {
    return L == 8 ? 3 : L == 4 ? 2 : L == 2 ? 1 : 0;
}

// Instantiates macro X for each batch width L the kernels are compiled for
// (the host rounds the models of a batch up to one of them; `lanes` in
// CudaBackend).
#define L0_FOR_LANES(X) X(1) X(2) X(4) X(8)

// True for a finite double (no NaN, no infinity).
__device__ __forceinline__ bool finite_f64(double x) { return isfinite(x); }

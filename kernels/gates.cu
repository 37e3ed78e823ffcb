// Per-column kernels: training and test-time weights (of all the models of
// a batch), the penalty sums and the weight summary (of one model). CPU
// twins: CpuBackend::sample_weights, ::deterministic_weights, ::losses
// (penalty part) and ::weight_summary.
#include "common.cuh"

// For each model k < models (rules[k]; its p, a and s at k n + i):
// w[i lanes + k] = m(p) z(a, u(seed, step, i)), keeping the gate's
// pre-stretch value s for the step; one thread per column i, the noise drawn
// once for all models (the per-row and per-column layouts: step.cu).
extern "C" __global__ void sample_weights(u64 n, u32 models, u32 lanes,
                                          const float* __restrict__ p,
                                          const float* __restrict__ a, float* __restrict__ w,
                                          float* __restrict__ s,
                                          const Rule* __restrict__ rules, u64 seed, u64 step) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float logit = column_noise(rules[0], seed, step, i);
    for (u32 k = 0; k < models; ++k) {
        u64 e = (u64)k * n + i;
        float si;
        w[i * lanes + k] = column_sample(rules[k], p[e], a[e], logit, &si);
        s[e] = si;
    }
}

// w[i lanes + k] = m(p) z_test(a) for each model k < models, a kept one
// held to floors[i] when has_floor (kept_weight); test_gate 0 = temperature,
// 1 = paper.
extern "C" __global__ void deterministic_weights(u64 n, u32 models, u32 lanes,
                                                 const float* __restrict__ p,
                                                 const float* __restrict__ a,
                                                 float* __restrict__ w,
                                                 const Rule* __restrict__ rules, int test_gate,
                                                 const float* __restrict__ floors, int has_floor) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float f = has_floor ? floors[i] : 0.0f;
    for (u32 k = 0; k < models; ++k) {
        u64 e = (u64)k * n + i;
        w[i * lanes + k] = kept_weight(deterministic_weight(rules[k], p[e], a[e], test_gate), f);
    }
}

// A conserved total (constraints.rs), for one model: ez[i] = E[z] of the
// training gate at a[i] (gate_mean over the host's table; 1 without
// gates). CPU twin: the first loop of CpuBackend::conserve.
extern "C" __global__ void expected_gates(u64 n, const float* __restrict__ a,
                                          const float* __restrict__ table, int use_gates,
                                          float* __restrict__ ez) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    ez[i] = use_gates ? gate_mean(table, a[i]) : 1.0f;
}

// Block partial sums in f64 of one model's mean weights m(clamp(p + c)) ez
// with every log-weight shifted by c and held to its bounds:
// partials[2 b] = all, partials[2 b + 1] = those at neither bound
// (ShiftSums; CPU twin CpuBackend::shift_sums). Summed by
// penalties_finalize.
extern "C" __global__ void conserve_sums(u64 n, const float* __restrict__ p,
                                         const float* __restrict__ ez,
                                         const float* __restrict__ min_p, int has_min_p,
                                         const float* __restrict__ max_p, int has_max_p,
                                         Rule rule, float c, double* __restrict__ partials) {
    __shared__ double buf[L0_BLOCK];
    double sum = 0.0, free_sum = 0.0;
    u64 stride = (u64)gridDim.x * blockDim.x;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float shifted = p[i] + c;
        float q = bound_p(shifted, min_p, has_min_p, max_p, has_max_p, i);
        float m, dm;
        magnitude_eval(rule, q, &m, &dm);
        double w = (double)(m * ez[i]);
        sum += w;
        if (q == shifted) free_sum += w;
    }
    block_pair_partial(sum, free_sum, buf, partials);
}

// p[i] = clamp(p[i] + c) for one model: the conserved total's shift (CPU
// twin: CpuBackend::conserve).
extern "C" __global__ void conserve_shift(u64 n, float* __restrict__ p,
                                          const float* __restrict__ min_p, int has_min_p,
                                          const float* __restrict__ max_p, int has_max_p,
                                          float c) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    p[i] = bound_p(p[i] + c, min_p, has_min_p, max_p, has_max_p, i);
}

// out[i] = x[i lanes + k]: model k's weights of a batch, for the per-model
// kernels below and the host.
extern "C" __global__ void take_lane(u64 n, u32 lanes, u32 k, const float* __restrict__ x,
                                     float* __restrict__ out) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    out[i] = x[i * lanes + k];
}

// Block partial sums of (pi_i, m(p_i)^2) in f64 over a grid-stride loop:
// partials[2 b] = sum of pi, partials[2 b + 1] = sum of m^2 for block b.
extern "C" __global__ void penalties_partial(u64 n, const float* __restrict__ p,
                                             const float* __restrict__ a, Rule rule,
                                             double* __restrict__ partials) {
    __shared__ double buf[L0_BLOCK];
    double l0 = 0.0, l2 = 0.0;
    u64 stride = (u64)gridDim.x * blockDim.x;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float pi, m2;
        column_penalties(rule, p[i], a[i], &pi, &m2);
        l0 += (double)pi;
        l2 += (double)m2;
    }
    block_pair_partial(l0, l2, buf, partials);
}

// One thread: out[0] = L0, out[1] = L2 (or conserve_sums' two sums),
// summing the block partials in order.
extern "C" __global__ void penalties_finalize(u32 blocks, const double* __restrict__ partials,
                                              double* __restrict__ out) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    sum_pair_partials(blocks, partials, out);
}

// WeightSummary over w: counts[0] = nonzero weights, counts[1 + k] = nonzero
// weights in bucket k of |w| by the bounds 0.01, 0.1, 1, 10, 1000 (compared
// in f64). Integer counts: block sums then one atomic add per block and
// counter, exact in any order. `counts` must be zeroed before the launch.
extern "C" __global__ void weight_summary(u64 n, const float* __restrict__ w,
                                          u64* __restrict__ counts) {
    __shared__ u64 c[7][L0_BLOCK];
    u64 local[7] = {0, 0, 0, 0, 0, 0, 0};
    u64 stride = (u64)gridDim.x * blockDim.x;
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float x = w[i];
        if (x != 0.0f) {
            double v = (double)fabsf(x);
            int b = (v >= 0.01) + (v >= 0.1) + (v >= 1.0) + (v >= 10.0) + (v >= 1000.0);
            local[0] += 1;
            // Unrolled compares keep `local` in registers (no dynamic index).
#pragma unroll
            for (int k = 0; k < 6; ++k) local[1 + k] += (b == k);
        }
    }
#pragma unroll
    for (int k = 0; k < 7; ++k) c[k][threadIdx.x] = local[k];
    __syncthreads();
    for (unsigned off = L0_BLOCK / 2; off > 0; off >>= 1) {
        if (threadIdx.x < off) {
            for (int k = 0; k < 7; ++k) c[k][threadIdx.x] += c[k][threadIdx.x + off];
        }
        __syncthreads();
    }
    if (threadIdx.x < 7 && c[threadIdx.x][0] != 0) {
        atomicAdd(&counts[threadIdx.x], c[threadIdx.x][0]);
    }
}

//! The rayon CPU backend: the executable specification of every kernel.
//!
//! Work is split into fixed-size pieces (slabs of column chunks, row and
//! long-column segments, targets) whose partial f64 sums are combined in a
//! fixed order, so results are bit-for-bit the same whatever the number of
//! threads. With at most 65,536 rows and more than 30,720 columns, an
//! epoch reads the matrix once: the pass over the CSC columns computes the
//! gradients, updates the parameters, samples the next weights and scatters
//! the next forward product into one accumulator per slab (see
//! [`CpuBackend::forward`](crate::backend::Backend::forward)). Per-column state is
//! kept as a structure of arrays and each chunk's per-column math runs as
//! straight loops over slices without branches (the f32 exponential and
//! logarithm are branch-free polynomials, see
//! [`crate::hard_concrete::exp_f32`]; the switches of a rule are fixed per
//! loop, `columns::fixed_switches`), which the compiler vectorises for the
//! instruction set [`SimdPath`](crate::backend::simd::SimdPath) picks at run time (AVX-512, AVX2 or the
//! baseline; `L0_SIMD` chooses). Products are never fused into FMAs, so
//! every path gives the same bits. A step at a report epoch also writes
//! what the report reads in the same pass ([`Backend::step_reported`](crate::backend::Backend::step_reported)), so
//! a progress report does not read the matrix again.
//!
//! Several models (a λ sweep: one L0 strength each, the same seed and step)
//! can be trained together ([`CpuBackend::with_models`]). Each pass then
//! reads a column's CSC entries once for all of them: the per-row vectors
//! hold the models' values side by side (8 per group), so a
//! gathered residual row or a scattered product is one 8-wide vector
//! operation, and the gate noise, which only depends on (seed, step,
//! column), is drawn once per column. Every model's sums are formed in the
//! single model's exact order, so model `k` of a batch is bit for bit the
//! model trained alone with its L0 strength.
//!
//! Each method's doc comment states the math once and names its GPU twin in
//! `kernels/` (see `super::cuda`); the kernels compute the same formulas
//! in the same precision, summing in a different (but fixed) order.
//!
//! The files: `work.rs` (threads, SIMD path, how work is split), `columns.rs`
//! (per-column state and math), `scatter.rs` (the scattered forward
//! product), `products.rs` (the other matrix products), `pass.rs` (the
//! column pass) and `backend.rs` (the backend).

// The per-column loops index several parallel slices by one counter, which
// reads as the formula and vectorises; iterator zips of five slices do not.
#![allow(clippy::needless_range_loop)]

mod backend;
mod columns;
mod pass;
mod products;
mod scatter;
mod work;

pub use backend::CpuBackend;

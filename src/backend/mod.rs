//! The compute engine's interface: one trait whose methods are the steps of
//! an epoch, implemented by the CPU backend (the executable specification)
//! and the CUDA backend. The fit loop in [`crate::engine`] is written once
//! against it.
//!
//! An epoch is:
//!
//! 1. [`Backend::sample_weights`]: `w_i = m(p_i) z_i(u(seed, step, i))`
//!    (may already have been done by the previous epoch's fused step);
//! 2. [`Backend::forward`]: `yhat = M w + b`, f64 sums (over CSR row
//!    segments; the CPU backend instead scatters it from the column passes
//!    that write the weights when the matrix has at most 65,536 rows and
//!    more than 30,720 columns, so
//!    an epoch reads the matrix once);
//! 3. [`Backend::residual`]: `e_q = (y_q - yhat_q) / d_q`,
//!    `r_q = dL/dyhat_q = -2 g_q e_q / d_q`, data loss `sum_q g_q e_q^2`;
//! 4. [`Backend::step`]: over CSC columns, `g_w,i = (M^T r)_i` (f64 sum),
//!    the per-column chain rule of [`crate::hard_concrete`] and the Adam
//!    update of `p_i` and `a_i`, optionally followed by the next epoch's
//!    sampled weight.
//!
//! Sums over rows, columns and nonzeros are accumulated in f64: a national
//! target can sum millions of products whose f32 sum would lose digits, and
//! the loss compares estimates with targets to a relative precision of 1e-6.
//! Per-column parameters and Adam moments are f32, as in the reference.
//!
//! The files: [`interface`] (the trait and what it exchanges), [`cpu`] and
//! `cuda` (the backends), [`device`] (choosing and building one).

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod device;
mod dots;
pub mod interface;
pub mod simd;

pub use device::{make_backend, make_batch_backend, BatchBackends, Device, OnePass};
pub use interface::{
    epoch_bytes, gather_bytes, step_then_report, Backend, ColumnBounds, Hyper, Losses, Noise,
    NoiseCursor, ParamState, Problem, ScalarState, WeightSummary, WEIGHT_BUCKETS,
};
